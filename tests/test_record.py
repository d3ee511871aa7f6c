"""GW-REC: record=PATH on both clients writes a replayable recording, never a secret.

A recording made through the gateway, replayed by the gateway, and recorded again with
the same inputs gives the same frames, byte for byte, and the same ends.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

import fal_realtime
from fal_realtime._protocol.recording import Event, Recording, parse_recording
from fal_realtime.server import Gateway, RunningGateway

from .conftest import KEY, MS
from .gateway_tools import WAIT
from .runner_cases import count

SESSION_TIMEOUT = 100 * MS


def read(path: Path) -> Recording:
    return parse_recording(path.read_text(encoding="utf-8").splitlines())


def received(recording: Recording) -> list[Any]:
    """Return what the recording received and how each socket ended, in order."""
    return [
        e.frame if e.kind == "recv" else (e.kind, e.code, e.by)
        for e in recording.events
        if e.kind in ("recv", "close")
    ]


async def realtime_session(
    base_url: str, app: str, inputs: list[dict[str, Any]], path: Path, *, sessions: int = 1
) -> None:
    """Send ``inputs`` on one connection recording to ``path``; wait for ``sessions`` to end."""
    dormant = asyncio.Semaphore(0)
    results: asyncio.Queue[Any] = asyncio.Queue()

    def on_state_change(state: str) -> None:
        if state == "dormant":
            dormant.release()

    conn = await fal_realtime.connect(
        app,
        on_result=results.put_nowait,
        on_state_change=on_state_change,
        base_url=base_url,
        key=KEY,
        throttle_interval=0,
        record=path,
    )
    try:
        for _ in range(sessions):
            for value in inputs:
                await conn.send(value)
            async with asyncio.timeout(WAIT):
                await dormant.acquire()  # the session's TIMEOUT and close 1000
    finally:
        await conn.close()


async def test_gw_rec_7_connect_records_each_session_without_secrets(
    gateway: Gateway, running: RunningGateway, tmp_path: Path
) -> None:
    """GW-REC-7: connect(record=) writes each socket's frames and end; no key or token."""
    gateway.realtime("test/count", session_timeout=SESSION_TIMEOUT)(count)
    path = tmp_path / "count.jsonl"
    await realtime_session(running.ws_url, "test/count", [{"n": 2}], path, sessions=2)
    text = path.read_text(encoding="utf-8")
    assert KEY not in text and "test-key-secret" not in text
    recording = read(path)
    assert recording.header.app == "test/count" and recording.header.path == "/realtime"
    kinds = [e.kind for e in recording.events]
    assert kinds == ["open", "send", "recv", "recv", "recv", "close"] * 2
    opens = [e for e in recording.events if e.kind == "open"]
    assert all("fal_jwt_token=***" in (e.url or "") for e in opens)
    closes = [e for e in recording.events if e.kind == "close"]
    assert closes == [Event(closes[0].t, "close", code=1000, by="server"), closes[1]]
    times = [e.t for e in recording.events]
    assert times == sorted(times)


async def test_gw_rec_8_a_client_recording_replays_byte_for_byte(
    gateway: Gateway, running: RunningGateway, tmp_path: Path
) -> None:
    """GW-REC-8: record, replay, record the replay: the same frames and ends, exactly."""
    gateway.realtime("test/count", session_timeout=SESSION_TIMEOUT)(count)
    live, again = tmp_path / "live.jsonl", tmp_path / "again.jsonl"
    await realtime_session(running.ws_url, "test/count", [{"n": 3}], live)
    replayer = Gateway(keys=[KEY], heartbeat_s=None)
    replayer.replay("test/count", live, speed=0)
    async with replayer.serve(port=0) as replaying:
        await realtime_session(replaying.ws_url, "test/count", [{"n": 3}], again)
    assert received(read(again)) == received(read(live))
    sent = [[e.frame for e in read(p).events if e.kind == "send"] for p in (live, again)]
    assert sent[0] == sent[1]


@pytest.mark.parametrize("stream", [False, True])
async def test_gw_rec_9_ws_records_and_replays_start_body_end(
    running: RunningGateway, tmp_path: Path, stream: bool
) -> None:
    """GW-REC-9: ws(record=) writes start, body frames, end; the replay gives the same bytes."""
    app = "fal-ai/any-llm/stream" if stream else "fal-ai/any-llm"
    live, again = tmp_path / "live.jsonl", tmp_path / "again.jsonl"

    async def ask(base_url: str, path: Path) -> list[bytes]:
        async with fal_realtime.ws(app, base_url=base_url, key=KEY, record=path) as client:
            return [
                (await client.request({"prompt": f"say it in {n} words"})).content for n in (2, 5)
            ]

    bodies = await ask(running.ws_url, live)
    assert KEY not in live.read_text(encoding="utf-8")  # the Key header is never written
    recording = read(live)
    assert recording.header.protocol == "http_ws" and recording.header.app == app
    assert [e.kind for e in recording.events][:2] == ["open", "send"]
    assert recording.events[-1].kind == "close" and recording.events[-1].by == "client"
    replayer = Gateway(keys=[KEY], heartbeat_s=None)
    replayer.replay(app, live, speed=0)
    async with replayer.serve(port=0) as replaying:
        assert await ask(replaying.ws_url, again) == bodies
    assert received(read(again))[:-1] == received(recording)[:-1]


async def test_gw_rec_10_a_key_in_the_header_is_never_written(
    running: RunningGateway, tmp_path: Path
) -> None:
    """GW-REC-10: with use_jwt=False (the Key header) the recording still holds no key."""
    path = tmp_path / "echo.jsonl"
    results: asyncio.Queue[Any] = asyncio.Queue()
    conn = await fal_realtime.connect(
        "fal-ai/echo",
        on_result=results.put_nowait,
        base_url=running.ws_url,
        key=KEY,
        use_jwt=False,
        record=path,
    )
    try:
        await conn.send({"secret": "not a key"})
        assert await asyncio.wait_for(results.get(), WAIT) == {"echo": {"secret": "not a key"}}
    finally:
        await conn.close()
    text = path.read_text(encoding="utf-8")
    assert KEY not in text and "test-key-secret" not in text
    assert [e.kind for e in read(path).events] == ["open", "send", "recv", "close"]
