"""What the subcommands share: JSON arguments, printing results, error exits, Ctrl-C."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from typing import Any

from ..errors import RealtimeError

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


def check_timeout(timeout_s: float) -> None:
    """Refuse a ``--timeout`` that is not a positive number of seconds (ValueError)."""
    if not timeout_s > 0:
        raise ValueError(f"--timeout must be > 0 seconds, got {timeout_s}")


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
