"""RT-FAULT / WS-FAULT: both clients through a fault-injecting TCP proxy (real sockets)."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest
from aiohttp import web

import fal_realtime
from fal_realtime import ConnectionState, ReconnectPolicy
from fal_realtime.server import Gateway
from fal_realtime.server.proxy import FaultProxy

from .callbacks import Recorder
from .conftest import KEY, MS
from .gateway_tools import eventually

WAIT = 5000 * MS


async def _open(
    proxy: FaultProxy, seen: Recorder, **kwargs: Any
) -> fal_realtime.RealtimeConnection:
    options: dict[str, Any] = {
        **seen.hooks(),
        "base_url": proxy.ws_url,
        "key": KEY,
        "throttle_interval": 0,
        **kwargs,
    }
    conn = await fal_realtime.connect("fal-ai/echo", **options)
    seen.conn = conn
    return conn


async def _round_trip(conn: fal_realtime.RealtimeConnection, seen: Recorder, value: Any) -> None:
    before = len(seen.results)
    await conn.send({"v": value})
    await eventually(lambda: len(seen.results) > before)
    assert seen.results[-1] == {"echo": {"v": value}}


# -- realtime -------------------------------------------------------------------------------


async def test_rt_fault_1_cut_while_idle_reconnects_without_error(
    proxy: FaultProxy, recorder: Recorder
) -> None:
    """RT-FAULT-1: a cut (no close frame) while idle: reconnecting, open again, no error."""
    seen = recorder
    async with await _open(proxy, seen) as conn:
        await _round_trip(conn, seen, 1)
        assert proxy.cut() == 1
        await eventually(
            lambda: seen.states[-1:] == [ConnectionState.OPEN] and len(seen.states) > 1
        )
        await _round_trip(conn, seen, 2)
        assert conn.stats.reconnects == 1 and seen.errors == []
        assert ConnectionState.RECONNECTING in seen.states


async def test_rt_fault_2_cut_during_a_burst_delivers_pending_exactly_once(
    proxy: FaultProxy,
    recorder: Recorder,
) -> None:
    """RT-FAULT-2: a cut mid-burst: everything still pending arrives once, in order, none twice."""
    seen = recorder
    async with await _open(proxy, seen, throttle_interval=5 * MS, coalesce=False) as conn:
        for i in range(60):
            await conn.send({"i": i})
            if i == 20:
                proxy.refuse_for(200 * MS)  # keep it reconnecting long enough to queue more
                proxy.cut()
        await eventually(lambda: seen.results and seen.results[-1]["echo"]["i"] == 59)
        delivered = [r["echo"]["i"] for r in seen.results]
        assert delivered == sorted(set(delivered))  # in order, no duplicates
        (sent_at_cut,) = seen.sent_when_reconnecting
        # Frames that waited while reconnecting were all delivered after recovery.
        assert set(range(sent_at_cut, 60)) <= set(delivered)
        assert seen.errors == [] and conn.stats.reconnects == 1


async def test_rt_fault_3_stall_is_detected_by_the_heartbeat(
    proxy: FaultProxy, recorder: Recorder
) -> None:
    """RT-FAULT-3: a stalled link (no bytes either way): a missed pong, 1006, reconnect."""
    seen = recorder
    async with await _open(proxy, seen, heartbeat_s=80 * MS) as conn:
        await _round_trip(conn, seen, 1)
        proxy.stall(400 * MS)
        await eventually(lambda: ConnectionState.RECONNECTING in seen.states)
        await eventually(lambda: seen.states[-1] is ConnectionState.OPEN)
        await _round_trip(conn, seen, 2)
        assert seen.errors == [] and conn.stats.reconnects == 1


async def test_rt_fault_4_cut_mid_frame_never_delivers_half_a_result(
    proxy: FaultProxy, recorder: Recorder
) -> None:
    """RT-FAULT-4: a result frame cut in half is never delivered; the connection recovers."""
    seen = recorder
    async with await _open(proxy, seen) as conn:
        proxy.cut_mid_frame()
        await conn.send({"v": "x" * 1000})
        await eventually(lambda: ConnectionState.RECONNECTING in seen.states)
        await eventually(lambda: seen.states[-1] is ConnectionState.OPEN)
        assert seen.results == [] and seen.errors == []
        await _round_trip(conn, seen, "after")


async def test_rt_fault_5_delay_is_survived_and_measured(
    proxy: FaultProxy, recorder: Recorder
) -> None:
    """RT-FAULT-5: 40 ms each way: results still arrive; the latency stat shows the delay."""
    seen = recorder
    async with await _open(proxy, seen) as conn:
        proxy.delay_s = 40 * MS
        await _round_trip(conn, seen, 1)
        # Two 40 ms delays; libuv's timers (uvloop) may end each up to 1 ms early.
        assert conn.stats.last_latency_s is not None and conn.stats.last_latency_s >= 78 * MS
        assert seen.errors == []


async def test_rt_fault_6_refused_reconnects_back_off_then_succeed_or_fail(
    proxy: FaultProxy,
) -> None:
    """RT-FAULT-6: refused handshakes: retried until the window ends; past the policy: failed."""
    seen = Recorder()
    policy = ReconnectPolicy(max_attempts=None, deadline_s=5, initial_delay_s=20 * MS)
    async with await _open(proxy, seen, reconnect=policy) as conn:
        proxy.refuse_for(300 * MS)
        proxy.cut()
        # Sent once the client knows: a frame written in the instant a link dies is lost
        # to TCP itself (the protocol has no acknowledgements).
        await eventually(lambda: ConnectionState.RECONNECTING in seen.states)
        await conn.send({"v": "queued during refusal"})
        await eventually(lambda: seen.results)
        assert seen.results == [{"echo": {"v": "queued during refusal"}}]
        assert proxy.refused >= 1 and seen.errors == []

    seen = Recorder()
    policy = ReconnectPolicy(max_attempts=3, deadline_s=None, initial_delay_s=10 * MS)
    conn = await _open(proxy, seen, reconnect=policy)
    try:
        proxy.refuse_for(60.0)
        proxy.cut()
        await eventually(lambda: conn.state is ConnectionState.FAILED)
        assert [e.code for e in seen.errors] == ["CONNECTION_LOST"]
    finally:
        await conn.close()


async def test_rt_fault_7_cut_during_the_handshake_is_retried(
    proxy: FaultProxy, recorder: Recorder
) -> None:
    """RT-FAULT-7: a link cut while the handshake hangs: the attempt fails, the retry opens."""
    seen = recorder
    conn = await _open(proxy, seen, lazy=True, open_timeout_s=2.0)
    try:
        proxy.stall()
        await conn.send({"v": 1})
        await eventually(lambda: proxy.held >= 1)  # the upgrade is in flight, stuck
        proxy.cut()
        proxy.resume()
        await eventually(lambda: seen.results)
        assert seen.results == [{"echo": {"v": 1}}] and seen.errors == []
    finally:
        await conn.close()


# -- HTTP over WebSockets ---------------------------------------------------------------------


def _ws(proxy: FaultProxy, app: str, **kwargs: Any) -> fal_realtime.HttpWsConnection:
    return fal_realtime.ws(app, base_url=proxy.ws_url, key=KEY, **kwargs)


async def test_ws_fault_1_cut_while_idle_next_send_reconnects(proxy: FaultProxy) -> None:
    """WS-FAULT-1: a cut between requests: the next send opens a new socket transparently."""
    async with _ws(proxy, "fal-ai/echo") as conn:
        await conn.send({"n": 1})
        assert orjson.loads(await conn.recv()) == {"echo": {"n": 1}}
        proxy.cut()
        await asyncio.sleep(30 * MS)
        await conn.send({"n": 2})
        assert orjson.loads(await conn.recv()) == {"echo": {"n": 2}}
    assert proxy.accepted == 2


async def test_ws_fault_2_cut_during_a_streamed_response(
    proxy: FaultProxy, slow_upstream: asyncio.Event
) -> None:
    """WS-FAULT-2: a cut mid-stream raises CONNECTION_LOST from the reader; recovery after."""
    async with _ws(proxy, "test/slow") as conn:
        await conn.send({})
        chunks = []
        with pytest.raises(fal_realtime.ConnectionLostError):
            async for chunk in conn.stream():
                chunks.append(chunk)
                proxy.cut()
        assert chunks == [b"first"]
        slow_upstream.set()
        await conn.send({})
        assert await conn.recv() == b"first-rest"


async def test_ws_fault_3_cut_mid_frame_is_connection_lost_not_garbage(
    gateway: Gateway, proxy: FaultProxy
) -> None:
    """WS-FAULT-3: a body frame cut in half: CONNECTION_LOST, never a truncated chunk."""

    async def big(request: web.Request) -> web.StreamResponse:
        return web.Response(body=b"z" * 200_000, content_type="application/octet-stream")

    gateway.http_app("test/big", upstream=big)
    async with _ws(proxy, "test/big") as conn:
        await conn.send({})
        await asyncio.sleep(0)
        proxy.cut_mid_frame()
        received = 0
        with pytest.raises(fal_realtime.ConnectionLostError):
            async for chunk in conn.stream():
                received += len(chunk)
        assert received < 200_000
        await conn.send({})
        assert await conn.recv() == b"z" * 200_000


async def test_ws_fault_4_stalled_handshake_times_out_and_retries(proxy: FaultProxy) -> None:
    """WS-FAULT-4: a handshake that hangs hits open_timeout_s and is retried after the stall."""
    proxy.stall(300 * MS)
    conn = _ws(proxy, "fal-ai/echo", open_timeout_s=100 * MS, reconnect={"deadline_s": 5})
    async with conn:
        await conn.send({"late": True})
        assert orjson.loads(await conn.recv()) == {"echo": {"late": True}}
    assert proxy.accepted >= 2


async def test_ws_fault_5_refused_connections_are_retried(proxy: FaultProxy) -> None:
    """WS-FAULT-5: connections refused for a while: opening retries, then works."""
    proxy.refuse_for(200 * MS)
    async with _ws(proxy, "fal-ai/echo", reconnect={"deadline_s": 5}) as conn:
        await conn.send({"ok": 1})
        assert orjson.loads(await conn.recv()) == {"echo": {"ok": 1}}
    assert proxy.refused >= 1
