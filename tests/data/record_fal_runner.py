"""Record the frames fal's own runner sends for each case of tests/runner_cases.py.

    pip download --no-deps fal==1.83.0 -d /tmp/falpkg && unzip /tmp/falpkg/*.whl -d /tmp/falsrc
    python tests/data/record_fal_runner.py /tmp/falsrc > tests/data/fal_runner_sequences.json

It loads ``fal/realtime.py`` from the unpacked wheel (fal itself is not installed: its
dependencies are heavy; only ``fal.api.RouteSignature`` and ``fal._typing`` are stood in for,
copied from fal 1.83.0 ``fal/api/api.py`` lines 2153-2166 and ``fal/_typing.py``), builds each
endpoint with fal's ``realtime(path, session_timeout=...)`` decorator, and runs it on a
Starlette ``WebSocket`` whose ASGI ``receive`` plays the case's frames and then stays silent,
so that the session ends as fal ends it. Needs fastapi and msgpack (the test extra has both).
"""

from __future__ import annotations

import asyncio
import importlib.util
import inspect
import json
import sys
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.runner_cases import CASES, Case, encode_input  # noqa: E402

#: fal's session_timeout for the recording: short, so that idle sessions end quickly.
SESSION_TIMEOUT_S = 0.2


class RouteSignature(NamedTuple):
    """fal 1.83.0 ``fal/api/api.py`` lines 2153-2166 (health_check's type simplified)."""

    path: str
    is_websocket: bool = False
    health_check: Any = None
    input_modal: type | None = None
    output_modal: type | None = None
    realtime_mode: str | None = None
    content_type: str | None = None
    buffering: int | None = None
    session_timeout: float | None = None
    max_batch_size: int = 1
    emit_timings: bool = False
    encode_message: Callable[[Any], bytes] | None = None
    decode_message: Callable[[bytes], Any] | None = None


def load_fal_realtime(src: Path) -> types.ModuleType:
    """Import ``fal/realtime.py`` from an unpacked wheel with the two stand-ins above."""
    package = types.ModuleType("fal")
    package.__path__ = []
    typing_mod = types.ModuleType("fal._typing")
    typing_mod.EndpointT = typing.TypeVar("EndpointT", bound=Callable[..., Any])  # type: ignore[attr-defined]
    api = types.ModuleType("fal.api")
    api.RouteSignature = RouteSignature  # type: ignore[attr-defined]
    sys.modules.update({"fal": package, "fal._typing": typing_mod, "fal.api": api})
    spec = importlib.util.spec_from_file_location("fal.realtime", src / "fal" / "realtime.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["fal.realtime"] = module
    spec.loader.exec_module(module)
    return module


def as_method(func: Any) -> Any:
    """Wrap a plain handler as fal wants it (``self`` first), keeping its kind and hints."""
    hints = typing.get_type_hints(func)
    first = next(iter(inspect.signature(func).parameters))
    if inspect.isasyncgenfunction(func):

        async def method(self: Any, value: Any) -> Any:
            async for item in func(value):
                yield item

    elif inspect.iscoroutinefunction(func):

        async def method(self: Any, value: Any) -> Any:
            return await func(value)

    elif inspect.isgeneratorfunction(func):

        def method(self: Any, value: Any) -> Any:
            yield from func(value)

    else:

        def method(self: Any, value: Any) -> Any:
            return func(value)

    method.__annotations__ = {
        ("value" if name == first else name): hint for name, hint in hints.items()
    }
    # No __wrapped__: fal reads the wrapper's own signature, whose input is ``value``.
    method.__name__ = method.__qualname__ = func.__name__
    return method


def _decoded(message: dict[str, Any]) -> dict[str, Any]:
    import msgpack

    if message.get("bytes") is not None:
        return {"binary": msgpack.unpackb(message["bytes"], raw=False)}
    return {"text": json.loads(message["text"])}


async def record(fal_realtime: types.ModuleType, case: Case) -> dict[str, Any]:
    """Run one case through fal's endpoint; return its mode and the frames it sent."""
    from starlette.websockets import WebSocket

    endpoint = fal_realtime.realtime("/realtime", session_timeout=SESSION_TIMEOUT_S)(
        as_method(case.handler)
    )
    script: list[dict[str, Any]] = [{"type": "websocket.connect"}]
    for item in case.inputs:
        frame = encode_input(item)
        key = "bytes" if isinstance(frame, bytes) else "text"
        script.append({"type": "websocket.receive", key: frame})
    silent = asyncio.Event()  # never set: after its frames the client says nothing more
    sent: list[dict[str, Any]] = []
    closed: int | None = None

    async def receive() -> dict[str, Any]:
        await asyncio.sleep(0)  # a socket read gives the loop a turn, as this does
        if script:
            return script.pop(0)
        await silent.wait()
        raise AssertionError("unreachable")

    async def send(message: dict[str, Any]) -> None:
        nonlocal closed
        if message["type"] == "websocket.send":
            sent.append(_decoded(message))
        elif message["type"] == "websocket.close":
            closed = message.get("code", 1000)

    websocket = WebSocket({"type": "websocket", "path": "/realtime"}, receive, send)
    await asyncio.wait_for(endpoint(None, websocket), timeout=10 * SESSION_TIMEOUT_S + 5)
    return {
        "mode": endpoint.route_signature.realtime_mode,
        "frames": sent,
        "close": closed,
    }


async def main(src: Path, version: str) -> None:
    fal_realtime = load_fal_realtime(src)
    cases: dict[str, Any] = {}
    for case in CASES:
        recorded = await record(fal_realtime, case)
        assert recorded["mode"] == case.mode, (case.name, recorded["mode"])
        cases[case.name] = {
            **recorded,
            "reason_exact": case.reason_exact,
            "runner_reorders": case.runner_reorders,
        }
    out = {
        "fal_version": version,
        "recorded_by": "tests/data/record_fal_runner.py (fal's code run in-process)",
        "source": {
            "mode inference": "fal/realtime.py 32-110, 580-594, 661-669",
            "unary": "fal/realtime.py 124-147 (_mirror_input), 227-302 (_mirror_output), "
            "461-545 (_run_websocket_session)",
            "server_streaming": "fal/realtime.py 150-168, 190-205, 340-386",
            "client_streaming": "fal/realtime.py 171-187, 388-407",
            "bidi": "fal/realtime.py 409-446",
            "session end": "fal/realtime.py 546-567: INTERNAL_ERROR or TIMEOUT, then close()",
        },
        "session_timeout_s": SESSION_TIMEOUT_S,
        "cases": cases,
    }
    print(json.dumps(out, indent=1, sort_keys=False))


if __name__ == "__main__":
    source = Path(sys.argv[1])
    wheel = next(source.glob("fal-*.dist-info")).name
    asyncio.run(main(source, wheel.removeprefix("fal-").removesuffix(".dist-info")))
