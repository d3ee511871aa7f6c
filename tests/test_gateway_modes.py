"""GW-MODE: the gateway hosts fal's four realtime modes as fal's runner does (SPEC §5).

The reference is tests/data/fal_runner_sequences.json: the frames fal 1.83.0's own runner
code sent for each case of tests/runner_cases.py (recorded by tests/data/record_fal_runner.py).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import threading
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pydantic
import pytest

from fal_realtime.server import Gateway, RunningGateway
from fal_realtime.server.modes import RealtimeMode, infer_shape

from .conftest import MS
from .gateway_tools import (
    WAIT,
    eventually,
    open_realtime,
    read_until_closed,
    receive_frame,
    send_msgpack,
)
from .runner_cases import CASES, Case, collect, count_sync, encode_input, shout_then_fail
from .test_cycles import _gateway_idle as gateway_idle
from .test_cycles import cycle_census

RECORDED = json.loads(
    (Path(__file__).parent / "data" / "fal_runner_sequences.json").read_text(encoding="utf-8")
)
#: Short enough that idle sessions end quickly, long enough for back-to-back inputs.
SESSION_TIMEOUT = 300 * MS
TIMEOUT_FRAME = (
    "text",
    {"type": "x-fal-error", "error": "TIMEOUT", "reason": "no inputs, reconnect when needed!"},
)


def _comparable(frames: list[tuple[str, Any]], case: dict[str, Any]) -> list[tuple[str, Any]]:
    """Return ``frames`` with what the case does not compare blanked out."""
    out = []
    for kind, value in frames:
        if not case["reason_exact"] and isinstance(value, dict) and "reason" in value:
            value = {**value, "reason": "<the decoder's or ASGI server's own text>"}
        out.append((kind, value))
    if case["runner_reorders"]:
        out.sort(key=lambda frame: (frame[0], json.dumps(frame[1], sort_keys=True)))
    return out


async def _play(http: aiohttp.ClientSession, running: RunningGateway, case: Case) -> Any:
    ws = await open_realtime(http, running, f"test/{case.name}")
    for item in case.inputs:
        frame = encode_input(item)
        await (ws.send_bytes(frame) if isinstance(frame, bytes) else ws.send_str(frame))
    return await read_until_closed(ws)


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
async def test_gw_mode_1_frames_and_close_code_match_fals_runner(
    case: Case, gateway: Gateway, running: RunningGateway, http: aiohttp.ClientSession
) -> None:
    """GW-MODE-1: per mode, the frames, error codes and close code equal fal's runner's."""
    recorded = RECORDED["cases"][case.name]
    gateway.add_realtime(f"test/{case.name}", case.handler, session_timeout=SESSION_TIMEOUT)
    transcript = await _play(http, running, case)
    expected = [(kind, value) for frame in recorded["frames"] for kind, value in frame.items()]
    assert _comparable(transcript.frames, recorded) == _comparable(expected, recorded)
    assert (transcript.close_code, transcript.clean_close) == (recorded["close"], True)
    if case.runner_reorders:  # fal's runner may reorder; the gateway keeps the yield order
        assert transcript.values() == [{"i": i} for i in range(3)]


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_gw_mode_2_mode_inferred_from_hints_as_fal_infers_it(case: Case) -> None:
    """GW-MODE-2: the mode the gateway infers from a handler's hints is the one fal inferred."""
    assert infer_shape(case.handler).mode.value == RECORDED["cases"][case.name]["mode"]


class _Callable:
    async def __call__(self, inputs: AsyncIterator[dict[str, Any]]) -> dict[str, Any]:
        return {}


class _Model:
    def stream(self, value: dict[str, Any]) -> Iterator[dict[str, Any]]:
        yield value


def test_gw_mode_3_callable_objects_and_methods_are_inferred_too() -> None:
    """GW-MODE-3: a callable object counts by its __call__, a bound method by its own hints."""
    assert infer_shape(_Callable()).mode is RealtimeMode.CLIENT_STREAMING
    shape = infer_shape(_Model().stream)
    assert shape.mode is RealtimeMode.SERVER_STREAMING and shape.runs_in_thread
    assert infer_shape(lambda value: value).mode is RealtimeMode.UNARY


async def _agen_no_hint(input):  # type: ignore[no-untyped-def]
    yield input


def _gen_no_hint(input):  # type: ignore[no-untyped-def]
    yield input


def _sync_client(inputs: AsyncIterator[dict[str, Any]]) -> dict[str, Any]:
    return {}


def _sync_bidi(inputs: AsyncIterator[dict[str, Any]]) -> AsyncIterator[dict[str, Any]]:
    raise NotImplementedError


async def _agen_client(inputs: AsyncIterator[dict[str, Any]]) -> dict[str, Any]:  # type: ignore[misc]
    yield {}


async def _client_sync_out(inputs: AsyncIterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    return iter(())


async def _sync_inputs(inputs: Iterator[dict[str, Any]]) -> dict[str, Any]:
    return {}


async def _no_input() -> dict[str, Any]:
    return {}


async def _two_inputs(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    return {}


REFUSED = [
    (_agen_no_hint, "an async generator needs '-> AsyncIterator[dict]'"),
    (_gen_no_hint, "a generator needs '-> Iterator[dict]'"),
    (_sync_client, "write async def f(inputs: AsyncIterator[dict]) -> dict"),
    (_sync_bidi, "write async def f(inputs: AsyncIterator[dict]) -> AsyncIterator[dict]"),
    (_agen_client, "streamed outputs need '-> AsyncIterator[dict]'"),
    (_client_sync_out, "streamed outputs need '-> AsyncIterator[dict]'"),
    (_sync_inputs, "streamed inputs arrive as an async iterator"),
    (_no_input, "takes no positional input"),
    (_two_inputs, "needs more than its input (b)"),
]


@pytest.mark.parametrize(("handler", "message"), REFUSED, ids=[h.__name__ for h, _ in REFUSED])
def test_gw_mode_4_unsupported_hints_are_refused_at_registration(
    handler: Any, message: str
) -> None:
    """GW-MODE-4: ambiguous or unsupported hints: TypeError at registration, naming the fix."""
    gateway = Gateway(auth=False)
    with pytest.raises(TypeError, match="write ") as refused:
        gateway.add_realtime("test/bad", handler)
    assert message in str(refused.value)
    with pytest.raises(TypeError):
        gateway.realtime("test/bad")(handler)
    assert gateway.registry.realtime == {}


async def test_gw_mode_5_sync_generator_runs_off_the_event_loop(
    gateway: Gateway, running: RunningGateway, http: aiohttp.ClientSession
) -> None:
    """GW-MODE-5: a server-streaming sync generator is advanced in worker threads."""
    threads: list[int] = []

    def count(value: dict[str, Any]) -> Iterator[dict[str, Any]]:
        for i in range(value["n"]):
            threads.append(threading.get_ident())
            yield {"i": i}

    gateway.add_realtime("test/count", count, session_timeout=None)
    ws = await open_realtime(http, running, "test/count")
    await send_msgpack(ws, {"n": 3})
    transcript = await read_until_closed(ws)
    assert transcript.frames == [("binary", {"i": i}) for i in range(3)] + [TIMEOUT_FRAME]
    assert len(threads) == 3 and threading.get_ident() not in threads


async def test_gw_mode_6_bidi_answers_each_input_while_inputs_keep_coming(
    gateway: Gateway, running: RunningGateway, http: aiohttp.ClientSession
) -> None:
    """GW-MODE-6: bidirectional: each output arrives before the next input is even sent."""

    async def caption(inputs: AsyncIterator[dict[str, Any]]) -> AsyncIterator[dict[str, Any]]:
        async for item in inputs:
            yield {"heard": item["n"]}

    gateway.add_realtime("test/caption", caption, session_timeout=SESSION_TIMEOUT)
    ws = await open_realtime(http, running, "test/caption")
    for n in range(3):
        await send_msgpack(ws, {"n": n})
        assert await receive_frame(ws) == ("binary", {"heard": n})
    transcript = await read_until_closed(ws)
    assert transcript.frames == [TIMEOUT_FRAME] and transcript.close_code == 1000


async def test_gw_mode_7_server_streaming_ignores_frames_sent_during_the_stream(
    gateway: Gateway, running: RunningGateway, http: aiohttp.ClientSession
) -> None:
    """GW-MODE-7: server streaming: frames after the first input, even bad ones, are ignored."""
    release = asyncio.Event()

    async def two(value: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        yield {"item": 0, "of": value["n"]}
        await release.wait()
        yield {"item": 1, "of": value["n"]}

    gateway.add_realtime("test/two", two, session_timeout=None)
    ws = await open_realtime(http, running, "test/two")
    await send_msgpack(ws, {"n": 1})
    assert await receive_frame(ws) == ("binary", {"item": 0, "of": 1})
    await ws.send_bytes(b"\xc1")
    await send_msgpack(ws, {"n": 2})
    release.set()
    transcript = await read_until_closed(ws)
    assert transcript.frames == [("binary", {"item": 1, "of": 1}), TIMEOUT_FRAME]
    assert transcript.close_code == 1000


async def test_gw_mode_8_timings_follow_a_whole_stream_once_and_never_streamed_inputs(
    gateway: Gateway, running: RunningGateway, http: aiohttp.ClientSession
) -> None:
    """GW-MODE-8: emit_timings: one timings frame after a server stream's last item, as fal."""

    async def stream(value: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        for i in range(2):
            yield {"i": i}

    async def collect(inputs: AsyncIterator[dict[str, Any]]) -> dict[str, Any]:
        return {"count": len([item async for item in inputs])}

    gateway.add_realtime("test/stream", stream, emit_timings=True, session_timeout=None)
    gateway.add_realtime("test/collect", collect, emit_timings=True, session_timeout=100 * MS)
    ws = await open_realtime(http, running, "test/stream")
    await send_msgpack(ws, {})
    frames = (await read_until_closed(ws)).frames
    assert [kind for kind, _ in frames] == ["binary", "binary", "text", "text"]
    assert frames[2][1]["type"] == "x-fal-message" and frames[2][1]["action"] == "timings"
    assert frames[3] == TIMEOUT_FRAME
    ws = await open_realtime(http, running, "test/collect")
    await send_msgpack(ws, {})
    assert (await read_until_closed(ws)).frames == [("binary", {"count": 1}), TIMEOUT_FRAME]


async def test_gw_mode_9_client_leaving_ends_the_inputs_and_the_session(
    gateway: Gateway, running: RunningGateway, http: aiohttp.ClientSession
) -> None:
    """GW-MODE-9: a client that leaves mid-stream ends the handler's inputs; no session stays."""
    got_one, ended = asyncio.Event(), asyncio.Event()
    seen: list[Any] = []

    async def collect(inputs: AsyncIterator[dict[str, Any]]) -> dict[str, Any]:
        async for item in inputs:
            seen.append(item["n"])
            got_one.set()
        ended.set()
        return {"count": len(seen)}

    gateway.add_realtime("test/collect", collect, session_timeout=None)
    ws = await open_realtime(http, running, "test/collect")
    await send_msgpack(ws, {"n": 1})
    async with asyncio.timeout(WAIT):
        await got_one.wait()
    await ws.close()
    async with asyncio.timeout(WAIT):
        await ended.wait()
    await eventually(lambda: not gateway._live)
    assert seen == [1]


async def test_gw_mode_10_faults_apply_to_streaming_sessions(
    gateway: Gateway, running: RunningGateway, http: aiohttp.ClientSession
) -> None:
    """GW-MODE-10: rate_limit_every answers the Nth streamed input; drop_after cuts a stream."""
    seen: list[Any] = []

    async def shout(inputs: AsyncIterator[dict[str, Any]]) -> AsyncIterator[dict[str, Any]]:
        async for item in inputs:
            seen.append(item["n"])
            yield {"n": item["n"]}

    gateway.add_realtime("test/shout", shout, session_timeout=SESSION_TIMEOUT)
    ws = await open_realtime(http, running, "test/shout", query="fal_faults=rate_limit_every=2")
    for n in range(3):
        await send_msgpack(ws, {"n": n})
    frames = (await read_until_closed(ws)).frames
    assert ("text", "RATE_LIMITED") in [(k, v.get("error")) for k, v in frames]
    assert [v for k, v in frames if k == "binary"] == [{"n": 0}, {"n": 2}] and seen == [0, 2]
    ws = await open_realtime(http, running, "test/shout", query="fal_faults=drop_after=1")
    await send_msgpack(ws, {"n": 5})
    await send_msgpack(ws, {"n": 6})
    transcript = await read_until_closed(ws)
    assert transcript.frames == [("binary", {"n": 5})] and not transcript.clean_close


async def _collect_returns_a_list(inputs: AsyncIterator[dict[str, Any]]) -> dict[str, Any]:
    return [item async for item in inputs]  # type: ignore[return-value]


async def _bidi_returns_a_map(
    inputs: AsyncIterator[dict[str, Any]],
) -> AsyncIterator[dict[str, Any]]:
    return {"not": "an iterator"}  # type: ignore[return-value]


async def _stream_returns_none(value: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
    return None  # type: ignore[return-value]


WRONG_OUTPUT = [
    (_collect_returns_a_list, "Expected a dict or pydantic model as output, got <class 'list'>"),
    (_bidi_returns_a_map, "Expected an async iterator output for bidirectional realtime"),
    (
        _stream_returns_none,
        "Expected an async iterator or iterator output for server-streaming realtime",
    ),
]


@pytest.mark.parametrize(
    ("handler", "reason"), WRONG_OUTPUT, ids=[h.__name__ for h, _ in WRONG_OUTPUT]
)
async def test_gw_mode_11_output_of_the_wrong_shape_is_internal_error_with_fals_reason(
    handler: Any,
    reason: str,
    gateway: Gateway,
    running: RunningGateway,
    http: aiohttp.ClientSession,
) -> None:
    """GW-MODE-11: an output that does not fit the mode: INTERNAL_ERROR (fal's text), 1000."""
    gateway.add_realtime("test/wrong", handler, session_timeout=100 * MS)
    ws = await open_realtime(http, running, "test/wrong")
    await send_msgpack(ws, {"n": 1})
    transcript = await read_until_closed(ws)
    error = {"type": "x-fal-error", "error": "INTERNAL_ERROR", "reason": reason}
    assert transcript.frames == [("text", error)] and transcript.close_code == 1000


async def test_gw_mode_12_streaming_sessions_ending_every_way_leave_no_reference_cycles(
    gateway: Gateway, running: RunningGateway, http: aiohttp.ClientSession
) -> None:
    """GW-MODE-12: streaming sessions that finish, fail, time out or lose the client: no cycles."""
    gateway.add_realtime("test/bidi", shout_then_fail, session_timeout=50 * MS)
    gateway.add_realtime("test/collect", collect, session_timeout=50 * MS)
    gateway.add_realtime("test/count", count_sync, session_timeout=50 * MS)
    sessions = [
        ("test/bidi", [{"text": "a"}, {"fail": True}]),
        ("test/bidi", [{"text": "a"}]),
        ("test/collect", [{"text": "a"}, b"\xc1"]),
        ("test/collect", []),
        ("test/count", [{"n": 2}]),
    ]
    with cycle_census() as census:
        for app, inputs in sessions:
            ws = await open_realtime(http, running, app)
            for item in inputs:
                await ws.send_bytes(encode_input(item))  # type: ignore[arg-type]
            transcript = await read_until_closed(ws)
            assert transcript.close_code == 1000 and transcript.frames[-1][0] == "text"
        ws = await open_realtime(http, running, "test/collect")  # the client leaves mid-stream
        await send_msgpack(ws, {"text": "a"})
        await ws.close()
        await gateway_idle(running)
        assert census.take(transports=None) == Counter()


class Prompt(pydantic.BaseModel):
    prompt: str
    steps: int = 2


class Image(pydantic.BaseModel):
    url: str


@dataclasses.dataclass
class Chunk:
    text: str


async def _draw(input: Prompt) -> Image:
    return Image(url=f"{input.prompt}/{input.steps}")


async def _lengths(inputs: AsyncIterator[Chunk]) -> AsyncIterator[dict[str, Any]]:
    async for chunk in inputs:
        yield {"length": len(chunk.text), "kind": type(chunk).__name__}


async def test_gw_mode_13_model_hints_build_inputs_and_models_are_outputs(
    gateway: Gateway, running: RunningGateway, http: aiohttp.ClientSession
) -> None:
    """GW-MODE-13: pydantic/dataclass input hints get built inputs; a model output is a map."""
    gateway.add_realtime("test/draw", _draw, session_timeout=SESSION_TIMEOUT)
    gateway.add_realtime("test/lengths", _lengths, session_timeout=SESSION_TIMEOUT)
    ws = await open_realtime(http, running, "test/draw")
    await send_msgpack(ws, {"prompt": "cat"})
    assert await receive_frame(ws) == ("binary", {"url": "cat/2"})
    await send_msgpack(ws, {"steps": 3})  # no prompt: the model refuses it, as in fal
    kind, error = await receive_frame(ws)
    assert (kind, error["error"]) == ("text", "INTERNAL_ERROR") and "prompt" in error["reason"]
    ws = await open_realtime(http, running, "test/lengths")
    await send_msgpack(ws, {"text": "four"})
    await send_msgpack(ws, {"words": "no text field"})
    frames = (await read_until_closed(ws)).frames
    assert frames[0] == ("binary", {"length": 4, "kind": "Chunk"})
    assert frames[1][1]["error"] == "INTERNAL_ERROR" and "words" in frames[1][1]["reason"]
