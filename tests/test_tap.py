"""RT-TAP: data frames taken as aiohttp parses them (``fal_realtime/_tap.py``), over real sockets.

The tap reads private aiohttp state; these tests fail when the installed aiohttp no
longer offers it (the tap would quietly stop being used), and check that what the tap
delivers, and what it leaves to the reading task, arrives whole and in order, with the
tap and without it (uvloop, older aiohttp).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import aiohttp
import ormsgpack
import pytest
from aiohttp import web

import fal_realtime
from fal_realtime import ConnectionState, _reading
from fal_realtime import _aiohttp_private as _tap
from fal_realtime.server import Gateway, RunningGateway
from fal_realtime.server.proxy import FaultProxy

from .conftest import KEY, MS
from .gateway_tools import eventually


def _tappable_here() -> bool:
    """Tell whether the tap should be in use: a new enough aiohttp on asyncio's own loop."""
    return _tap.SUPPORTED and isinstance(asyncio.get_running_loop(), asyncio.BaseEventLoop)


@pytest.fixture(params=["tapped", "task-read"])
def tap_mode(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Run the test with the tap where it applies, and with the task reading everything."""
    if request.param == "task-read":
        monkeypatch.setattr(_reading, "frame_tap", lambda ws, on_data: None)
    yield request.param


def _scripted_gateway(pongs: list[bytes], closes: list[int | None]) -> Gateway:
    """Serve test/script: on the first input, results 1-3 around a ping; 4 after the pong."""
    gateway = Gateway(keys=[KEY], heartbeat_s=None)

    async def script(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=False)
        await ws.prepare(request)
        await ws.receive()  # the first input
        await ws.send_bytes(ormsgpack.packb({"n": 1}))
        await ws.ping(b"tap")
        await ws.send_bytes(ormsgpack.packb({"n": 2}))
        await ws.send_str('{"n": 3}')  # a text frame: JSON, classified on the way
        async for msg in ws:
            if msg.type is aiohttp.WSMsgType.PONG:
                pongs.append(msg.data)
                await ws.send_bytes(ormsgpack.packb({"n": 4}))
        closes.append(ws.close_code)
        return ws

    gateway.add_routes([web.get("/test/script/realtime", script)])
    return gateway


def test_rt_tap_1_the_installed_aiohttp_can_be_tapped() -> None:
    """RT-TAP-1: aiohttp >= 3.10.11 is tappable: a release that drops what the tap reads fails."""
    version = tuple(int(part) for part in aiohttp.__version__.split(".")[:3] if part.isdigit())
    assert _tap.SUPPORTED is (version >= (3, 10, 11))


async def test_rt_tap_2_results_come_from_data_received_where_the_tap_applies(
    running: RunningGateway,
) -> None:
    """RT-TAP-2: on asyncio's loop a result reaches on_result from data_received, not a task."""
    tasks: list[asyncio.Task[Any] | None] = []
    conn = await fal_realtime.connect(
        "fal-ai/echo",
        on_result=lambda result: tasks.append(asyncio.current_task()),
        base_url=running.ws_url,
        key=KEY,
        use_jwt=False,
    )
    try:
        for n in range(3):
            await conn.send({"n": n})
            await eventually(lambda n=n: len(tasks) == n + 1)
    finally:
        await conn.close()
    # The first result after the handshake comes through the task's receive(); the
    # rest come straight from the protocol when the tap applies.
    assert (tasks[1:] == [None, None]) is _tappable_here()


async def test_rt_tap_3_data_and_control_frames_keep_their_order(tap_mode: str) -> None:
    """RT-TAP-3: results around a ping arrive whole and in order; the ping is answered."""
    pongs: list[bytes] = []
    closes: list[int | None] = []
    results: list[Any] = []
    async with _scripted_gateway(pongs, closes).serve(port=0) as running:
        conn = await fal_realtime.connect(
            "test/script",
            on_result=results.append,
            base_url=running.ws_url,
            key=KEY,
            use_jwt=False,
        )
        try:
            await conn.send({"go": True})
            await eventually(lambda: len(results) == 4)
        finally:
            await conn.close()
        await eventually(lambda: closes != [])
    assert results == [{"n": 1}, {"n": 2}, {"n": 3}, {"n": 4}]
    assert pongs == [b"tap"]
    assert closes == [1000]  # the client's close handshake stays clean with the tap
    assert conn.stats.errors == 0


async def test_rt_tap_4_a_dropped_socket_wakes_the_tapped_reader(tap_mode: str) -> None:
    """RT-TAP-4: a socket the server drops mid-session is noticed at once and reopened."""
    sockets: list[web.WebSocketResponse] = []
    gateway = Gateway(keys=[KEY], heartbeat_s=None)

    async def drop_after_one(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        sockets.append(ws)
        async for msg in ws:
            await ws.send_bytes(ormsgpack.packb({"socket": len(sockets)}))
            if len(sockets) == 1:
                assert request.transport is not None
                request.transport.abort()  # no close frame: the stream just ends
                break
            del msg
        return ws

    gateway.add_routes([web.get("/test/drop/realtime", drop_after_one)])
    results: list[Any] = []
    async with gateway.serve(port=0) as running:
        conn = await fal_realtime.connect(
            "test/drop",
            on_result=results.append,
            base_url=running.ws_url,
            key=KEY,
            use_jwt=False,
            heartbeat_s=None,  # only the end of the stream can tell the reader
        )
        try:
            await conn.send({"n": 1})
            await eventually(lambda: conn.stats.reconnects == 1)
            await conn.send({"n": 2})
            await eventually(lambda: len(results) == 2)
        finally:
            await conn.close()
    assert results == [{"socket": 1}, {"socket": 2}]


async def test_rt_tap_5_a_lost_link_is_dropped_without_waiting_for_a_close_handshake(
    proxy: FaultProxy, tap_mode: str
) -> None:
    """RT-TAP-5: a missed pong drops the socket at once, tapped or not (no close handshake wait)."""
    states: list[ConnectionState] = []
    conn = await fal_realtime.connect(
        "fal-ai/echo",
        base_url=proxy.ws_url,
        key=KEY,
        use_jwt=False,
        heartbeat_s=80 * MS,
        close_timeout_s=30.0,  # a close handshake on the dead link would wait this long
        on_state_change=states.append,
    )
    try:
        proxy.stall()  # until resumed: nothing either way
        # Lost after 80 + 40 ms of silence; well within 2 s unless the close waits 30 s.
        await eventually(lambda: ConnectionState.RECONNECTING in states, within=2.0)
        proxy.resume()
        await eventually(lambda: states[-1] is ConnectionState.OPEN)
    finally:
        await conn.close()
    assert conn.stats.reconnects == 1
