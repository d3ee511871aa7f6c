"""GW-REPLAY: the gateway serves a recording as the app it came from (issue 14, SPEC §7).

Recordings here are made by a plain aiohttp client calling the same Recorder the clients
call, so these tests hold whatever the clients' internals look like.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import ormsgpack
import pytest

from fal_realtime._compat import ws_close_timeout
from fal_realtime._recorder import Recorder
from fal_realtime.server import Gateway, RunningGateway

from .conftest import AUTH, KEY, MS
from .gateway_tools import WAIT, on_io_alone
from .runner_cases import collect, count, echo, greet_then_shout

SESSION_TIMEOUT = 100 * MS


@dataclass
class Seen:
    """The raw frames one socket received, and how it closed."""

    frames: list[bytes | str] = field(default_factory=list)
    close_code: int | None = None


async def exchange(
    http: aiohttp.ClientSession,
    url: str,
    inputs: Sequence[bytes | str],
    *,
    recorder: Recorder | None = None,
    close_after: int | None = None,
) -> Seen:
    """Send ``inputs``, read until the server closes (or ``close_after`` frames), recording."""
    seen = Seen()
    ws = await http.ws_connect(url, headers=AUTH, autoclose=False, **ws_close_timeout(WAIT))
    if recorder is not None:
        recorder.opened(url)
    for frame in inputs:
        await (ws.send_str(frame) if isinstance(frame, str) else ws.send_bytes(frame))
        if recorder is not None:
            recorder.sent(frame)
    async with asyncio.timeout(WAIT):
        while close_after is None or len(seen.frames) < close_after:
            msg = await ws.receive()
            if msg.type not in (aiohttp.WSMsgType.BINARY, aiohttp.WSMsgType.TEXT):
                break
            seen.frames.append(msg.data)
            if recorder is not None:
                recorder.received(msg.data)
    by_client = close_after is not None and len(seen.frames) >= close_after
    await ws.close()
    seen.close_code = ws.close_code
    if recorder is not None:
        recorder.closed(ws.close_code, by="client" if by_client else "server")
    return seen


def realtime_recorder(path: Path, app: str) -> Recorder:
    """Return a Recorder for a realtime connection to ``app`` at the default path."""
    return Recorder(path, protocol="realtime", app=app, path_option="/realtime")


def pack(value: Any) -> bytes:
    return ormsgpack.packb(value)


@pytest.fixture
async def replayer() -> AsyncIterator[tuple[Gateway, list[RunningGateway]]]:
    """Return a gateway for replays and a slot for its running server (started by the test)."""
    gateway = Gateway(keys=[KEY], heartbeat_s=None)
    started: list[RunningGateway] = []
    yield gateway, started
    for running in started:
        await running.stop()


async def serve(replayer: tuple[Gateway, list[RunningGateway]]) -> RunningGateway:
    gateway, started = replayer
    started.append(await gateway.start())
    return started[-1]


MODES = {
    "unary": (echo, [pack({"n": 1}), pack({"n": 2})]),
    "server_streaming": (count, [pack({"n": 3})]),
    "client_streaming": (collect, [pack({"text": "a"}), pack({"text": "b"})]),
    "bidi": (greet_then_shout, [pack({"text": "hi"}), pack({"text": "yo"})]),
}


@pytest.mark.parametrize("mode", sorted(MODES))
async def test_gw_replay_1_each_mode_replays_byte_for_byte(
    mode: str,
    gateway: Gateway,
    running: RunningGateway,
    http: aiohttp.ClientSession,
    replayer: tuple[Gateway, list[RunningGateway]],
    tmp_path: Path,
) -> None:
    """GW-REPLAY-1: a recording of each realtime mode replays the same bytes and the same end."""
    handler, inputs = MODES[mode]
    gateway.realtime(f"test/{mode}", session_timeout=SESSION_TIMEOUT)(handler)
    path = tmp_path / f"{mode}.jsonl"
    recorder = realtime_recorder(path, f"test/{mode}")
    live = await exchange(http, f"{running.ws_url}/test/{mode}/realtime", inputs, recorder=recorder)
    assert live.frames[-1].endswith(
        '"error":"TIMEOUT","reason":"no inputs, reconnect when needed!"}'
    )
    replayer[0].replay(f"test/{mode}", path, speed=0)
    replaying = await serve(replayer)
    replayed = await exchange(http, f"{replaying.ws_url}/test/{mode}/realtime", inputs)
    assert replayed.frames == live.frames
    assert replayed.close_code == live.close_code == 1000


async def test_gw_replay_2_delays_follow_the_recording_times_speed(
    http: aiohttp.ClientSession,
    replayer: tuple[Gateway, list[RunningGateway]],
    tmp_path: Path,
) -> None:
    """GW-REPLAY-2: recorded delays are kept (times speed); speed=0 sends at once."""
    path = tmp_path / "slow.jsonl"
    lines = [
        '{"recording":"fal-realtime","version":1,"protocol":"realtime","app":"t/slow",'
        '"path":"/realtime"}',
        '{"t":0.0,"event":"open","url":"ws://h/t/slow/realtime"}',
        '{"t":0.0,"event":"send","text":"go"}',
        '{"t":0.6,"event":"recv","text":"late"}',
        '{"t":0.6,"event":"close","code":1000,"by":"server"}',
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    gateway = replayer[0]
    gateway.replay("t/slow", path, speed=1.0)
    gateway.replay("t/fast", path, speed=0)
    gateway.replay("t/half", path, speed=0.5)
    replaying = await serve(replayer)
    took = {}
    for app in ("t/slow", "t/half"):
        started = time.perf_counter()
        seen = await exchange(http, f"{replaying.ws_url}/{app}/realtime", ["go"])
        took[app] = time.perf_counter() - started
        assert seen.frames == ["late"] and seen.close_code == 1000
    assert took["t/slow"] >= 600 * MS
    assert 300 * MS <= took["t/half"] < took["t/slow"]
    # speed=0: no recorded delay is waited out at all (on I/O alone, no clock read).
    seen = await on_io_alone(exchange(http, f"{replaying.ws_url}/t/fast/realtime", ["go"]))
    assert seen.frames == ["late"] and seen.close_code == 1000


async def test_gw_replay_3_strict_mode_names_the_first_differing_field(
    gateway: Gateway,
    running: RunningGateway,
    http: aiohttp.ClientSession,
    replayer: tuple[Gateway, list[RunningGateway]],
    tmp_path: Path,
) -> None:
    """GW-REPLAY-3: strict replay answers a differing input with INVALID_INPUT naming the field."""
    gateway.realtime("test/echo", session_timeout=SESSION_TIMEOUT)(echo)
    path = tmp_path / "echo.jsonl"
    recorder = realtime_recorder(path, "test/echo")
    inputs = [pack({"prompt": "a cat"}), pack({"prompt": "a dog"})]
    live = await exchange(http, f"{running.ws_url}/test/echo/realtime", inputs, recorder=recorder)
    replayer[0].replay("test/echo", path, speed=0, strict=True)
    replayer[0].replay("test/lenient", path, path="/realtime", speed=0)
    replaying = await serve(replayer)
    wrong = [pack({"prompt": "a bird"}), inputs[1]]
    strict = await exchange(http, f"{replaying.ws_url}/test/echo/realtime", wrong)
    assert [orjson.loads(frame) for frame in strict.frames] == [
        {
            "type": "x-fal-error",
            "error": "INVALID_INPUT",
            "reason": "input 1 differs from the recording: "
            "field 'prompt': recorded 'a cat', got 'a bird'",
        }
    ]
    assert strict.close_code == 1000
    # the same inputs as recorded pass the strict check
    same = await exchange(http, f"{replaying.ws_url}/test/echo/realtime", inputs)
    assert same.frames == live.frames
    # matched in order by default: the recorded answers, whatever the input says
    lenient = await exchange(http, f"{replaying.ws_url}/test/lenient/realtime", wrong)
    assert lenient.frames == live.frames
    # a session ends as recorded, even with inputs still coming
    extra = await exchange(http, f"{replaying.ws_url}/test/lenient/realtime", [*inputs, b"x"])
    assert extra.frames == live.frames


async def test_gw_replay_4_an_input_past_the_recording_is_invalid_input(
    gateway: Gateway,
    running: RunningGateway,
    http: aiohttp.ClientSession,
    replayer: tuple[Gateway, list[RunningGateway]],
    tmp_path: Path,
) -> None:
    """GW-REPLAY-4: in a session the client closed, one input too many gets INVALID_INPUT."""
    path = tmp_path / "echo.jsonl"
    recorder = realtime_recorder(path, "fal-ai/echo")
    url = f"{running.ws_url}/fal-ai/echo/realtime"
    live = await exchange(http, url, [pack({"n": 1})], recorder=recorder, close_after=1)
    replayer[0].replay("fal-ai/echo", path, speed=0)
    replaying = await serve(replayer)
    url = f"{replaying.ws_url}/fal-ai/echo/realtime"
    extra = await exchange(http, url, [pack({"n": 1}), pack({"n": 2})])
    assert extra.frames[0] == live.frames[0]
    error = orjson.loads(extra.frames[1])
    assert error["error"] == "INVALID_INPUT"
    assert error["reason"] == "input 2 is past the recording (1 inputs in this session)"
    assert extra.close_code == 1000


async def test_gw_replay_5_http_over_ws_replays_start_body_end(
    running: RunningGateway,
    http: aiohttp.ClientSession,
    replayer: tuple[Gateway, list[RunningGateway]],
    tmp_path: Path,
) -> None:
    """GW-REPLAY-5: an HTTP-over-WS recording replays its start, body frames and end exactly."""
    path = tmp_path / "llm.jsonl"
    payloads = ['{"prompt": "hi in 5 words"}', '{"prompt": "bye in 3 words"}']
    recorder = Recorder(path, protocol="http_ws", app="fal-ai/any-llm/stream", path_option="")
    ws = await http.ws_connect(f"{running.ws_url}/fal-ai/any-llm/stream", headers=AUTH)
    recorder.opened(str(ws._response.url))
    live_frames: list[bytes | str] = []
    for payload in payloads:
        await ws.send_str(payload)
        recorder.sent(payload)
        while True:
            msg = await asyncio.wait_for(ws.receive(), WAIT)
            live_frames.append(msg.data)
            recorder.received(msg.data)
            if msg.type == aiohttp.WSMsgType.TEXT and '"type":"end"' in msg.data:
                break
    await ws.close()
    recorder.closed(ws.close_code, by="client")
    replayer[0].replay("fal-ai/any-llm/stream", path, speed=0)
    replaying = await serve(replayer)
    replayed = await exchange(
        http,
        f"{replaying.ws_url}/fal-ai/any-llm/stream",
        payloads,
        close_after=len(live_frames),
    )
    assert replayed.frames == live_frames
    kinds = [orjson.loads(f).get("type") for f in live_frames if isinstance(f, str)]
    assert kinds[0] == "start" and kinds[-1] == "end"


@pytest.mark.parametrize(
    ("spec", "code"),
    [("drop_after=2", 1006), ("drop_after=2;drop_mode=close;close_code=1011", 1011)],
)
async def test_gw_replay_6_lost_sockets_and_close_codes_end_as_recorded(
    spec: str,
    code: int,
    running: RunningGateway,
    http: aiohttp.ClientSession,
    replayer: tuple[Gateway, list[RunningGateway]],
    tmp_path: Path,
) -> None:
    """GW-REPLAY-6: a socket lost (1006) or closed with a code mid-session replays the same way."""
    path = tmp_path / "dropped.jsonl"
    recorder = realtime_recorder(path, "fal-ai/echo")
    url = f"{running.ws_url}/fal-ai/echo/realtime?fal_faults={spec}"
    inputs = [pack({"n": n}) for n in range(3)]
    live = await exchange(http, url, inputs, recorder=recorder)
    assert len(live.frames) == 2 and live.close_code == code
    replayer[0].replay("fal-ai/echo", path, speed=0)
    replaying = await serve(replayer)
    replayed = await exchange(http, f"{replaying.ws_url}/fal-ai/echo/realtime", inputs)
    assert replayed.frames == live.frames
    assert replayed.close_code == code


async def test_gw_replay_7_sockets_get_the_recorded_sessions_in_turn_and_keys_are_checked(
    http: aiohttp.ClientSession,
    replayer: tuple[Gateway, list[RunningGateway]],
    tmp_path: Path,
) -> None:
    """GW-REPLAY-7: the n-th socket gets the n-th session (then the first again); keys count."""
    path = tmp_path / "two.jsonl"
    recorder = realtime_recorder(path, "t/two")
    for answer in ("first", "second"):
        recorder.opened("ws://h/t/two/realtime")
        recorder.sent("in")
        recorder.received(answer)
        recorder.closed(1000, by="server")
    replayer[0].replay("t/two", path, speed=0)
    replaying = await serve(replayer)
    url = f"{replaying.ws_url}/t/two/realtime"
    answers = [(await exchange(http, url, ["in"])).frames for _ in range(3)]
    assert answers == [["first"], ["second"], ["first"]]
    async with http.ws_connect(url, headers={"Authorization": "Key wrong"}) as ws:
        msg = await asyncio.wait_for(ws.receive(), WAIT)
        assert orjson.loads(msg.data) == {"status": "error", "error": "Unauthorized"}
        await asyncio.wait_for(ws.receive(), WAIT)
        assert ws.close_code == 1008


def test_gw_replay_8_bad_replays_are_refused_at_registration(tmp_path: Path) -> None:
    """GW-REPLAY-8: a negative speed, a non-recording, a recording with no socket: ValueError."""
    gateway = Gateway(keys=[KEY])
    empty = tmp_path / "empty.jsonl"
    Recorder(empty, protocol="realtime", app="t/x", path_option="/realtime")
    with pytest.raises(ValueError, match="no session to replay"):
        gateway.replay("t/x", empty)
    with pytest.raises(ValueError, match="speed must be >= 0"):
        gateway.replay("t/x", empty, speed=-1)
    (tmp_path / "junk").write_text("hello\n", encoding="utf-8")
    with pytest.raises(ValueError, match="line 1: not JSON"):
        gateway.replay("t/x", tmp_path / "junk")
