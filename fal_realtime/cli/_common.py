"""What the subcommands share: JSON arguments, printing results, error exits, Ctrl-C."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import signal
import sys
from collections.abc import Callable, Iterator
from typing import Any, Literal, NoReturn

from .._validate import check_seconds
from ..errors import TIMEOUT, RealtimeError, RealtimeTimeoutError

_JSON_TYPES = {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}


def parse_json(text: str) -> Any:
    """Return the JSON value in ``text``; raise ValueError with a one-line reason."""
    import orjson

    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"JSON argument is not valid JSON: {exc}") from None


def parse_payload(text: str) -> dict[str, Any]:
    """Return the JSON object in ``text``; raise ValueError with a one-line reason."""
    value = parse_json(text)
    if not isinstance(value, dict):
        kind = _JSON_TYPES.get(type(value), "a number")
        raise ValueError(f"JSON argument must be an object ({{...}}), not {kind}")
    return value


class Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line on stderr, exit status 2."""

    def error(self, message: str) -> NoReturn:
        """Print ``message`` as one ``fal-realtime: error:`` line and exit with status 2."""
        print(f"fal-realtime: error: {message} (see: {self.prog} --help)", file=sys.stderr)
        raise SystemExit(2)


def _integer(text: str, *, high: int | None, expected: str) -> int:
    """Return the integer in ``text`` if it is 0..``high``; else raise ArgumentTypeError."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0 or (high is not None and value > high):
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
    return value


def port(text: str) -> int:
    """Return the TCP port in ``text`` (0..65535; 0 picks a free one), for ``type=``."""
    return _integer(text, high=65535, expected="a port 0..65535")


def count(text: str) -> int:
    """Return the integer >= 0 in ``text``, for ``type=``."""
    return _integer(text, high=None, expected="an integer >= 0")


def factor(text: str) -> float:
    """Return the finite number >= 0 in ``text``, for ``type=``."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {text!r}")
    return value


def check_timeout(timeout_s: float) -> None:
    """Refuse a ``--timeout`` that is not a finite positive number of seconds (ValueError)."""
    check_seconds("--timeout", timeout_s, zero_ok=False)


def check_client_options(
    args: argparse.Namespace, protocol: Literal["realtime", "http_ws"]
) -> None:
    """Refuse a bad ``--base-url``, ``--timeout`` or a missing key, naming the flag (ValueError)."""
    from .._auth import resolve_key
    from .._protocol.apps import resolve_base

    check_timeout(args.timeout)
    resolve_base(protocol, args.base_url, os.environ, option="--base-url")
    if args.key == "":
        raise ValueError("--key is empty")
    if not resolve_key(args.key, os.environ):
        raise ValueError(
            "no fal key found: set FAL_KEY (or FAL_KEY_ID and FAL_KEY_SECRET), or pass --key KEY"
        )


@contextlib.contextmanager
def flag(name: str, value: str) -> Iterator[None]:
    """Turn a ValueError, TypeError or OSError of the block into one naming ``name value``."""
    try:
        yield
    except (ValueError, TypeError, OSError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ValueError(f"{name} {value!r}: {reason}") from None


def _printable(value: Any) -> Any:
    """Return ``value`` with binary values replaced by ``"<N bytes>"``, ready for JSON."""
    if isinstance(value, bytes | bytearray):
        return f"<{len(value)} bytes>"
    if isinstance(value, memoryview):
        return f"<{value.nbytes} bytes>"
    if isinstance(value, dict):
        return {
            (_printable(k) if isinstance(k, bytes | bytearray) else k): _printable(v)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [_printable(item) for item in value]
    return value


def format_result(result: Any, *, compact: bool) -> str:
    """Return ``result`` as JSON: indented, or one line if ``compact``; bytes as ``<N bytes>``."""
    import orjson

    option = orjson.OPT_NON_STR_KEYS | (0 if compact else orjson.OPT_INDENT_2)
    return orjson.dumps(_printable(result), option=option, default=repr).decode()


def bad_argument(message: str) -> int:
    """Print a bad-argument ``message`` as one line on stderr; return exit status 2."""
    print(f"fal-realtime: error: {message}", file=sys.stderr)
    return 2


def report_error(error: RealtimeError) -> int:
    """Print ``error`` as one line on stderr; return exit status 1."""
    text = " ".join(str(error).split())
    print(f"fal-realtime: error: {text}", file=sys.stderr, flush=True)
    return 1


async def wait_for_stop() -> None:
    """Wait for SIGINT or SIGTERM (Ctrl-C), then restore their default handling."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(sig)


class Outcomes:
    """A demo connection's errors, and waits until its results say enough (or it fails).

    The owner calls :meth:`changed` after each result it records; :meth:`on_error` is the
    connection's ``on_error``.
    """

    def __init__(self, *, wait_s: float) -> None:
        self.wait_s = wait_s
        self.errors: list[RealtimeError] = []
        self._changed = asyncio.Event()

    def changed(self) -> None:
        """Wake :meth:`wait_for` to look again."""
        self._changed.set()

    def on_error(self, error: RealtimeError) -> None:
        """Keep ``error``: the wait in progress (or the next one) raises it."""
        self.errors.append(error)
        self._changed.set()

    async def wait_for(self, done: Callable[[], bool], what: str) -> None:
        """Wait until ``done()`` holds; raise the first error, or TIMEOUT after ``wait_s``."""
        try:
            async with asyncio.timeout(self.wait_s):
                while not (self.errors or done()):
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            raise RealtimeTimeoutError(TIMEOUT, f"no {what} within {self.wait_s:.0f} s") from None
        if self.errors:
            raise self.errors[0]
