"""RT-FAULT-8 / WS-FAULT-6: every proxy fault in every phase, for both clients.

Faults (through :class:`FaultProxy`): a cut with no close frame, a stall (no bytes either
way: the heartbeat must notice), a cut in the middle of a frame, connections refused for
a while, and added delay. Phases: idle, a send burst (realtime) or a streamed response
(HTTP over WebSockets), and the handshake. After each, the client must end in the right
state with the right errors, and what was pending must arrive exactly once.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest

import fal_realtime
from fal_realtime import ConnectionState
from fal_realtime.server.proxy import FaultProxy

from .callbacks import Recorder
from .conftest import KEY, MS
from .gateway_tools import eventually

FAULTS = ["cut", "stall", "cut_mid_frame", "refuse", "delay"]
HEARTBEAT_S = 80 * MS
STALL_S = 400 * MS


def inject(proxy: FaultProxy, fault: str) -> None:
    """Break the link through ``proxy`` as ``fault`` says."""
    if fault == "cut":
        proxy.cut()
    elif fault == "stall":
        proxy.stall(STALL_S)
    elif fault == "cut_mid_frame":
        proxy.cut_mid_frame()
    elif fault == "refuse":
        proxy.refuse_for(200 * MS)
        proxy.cut()
    else:
        proxy.delay_s = 30 * MS


async def _realtime(
    proxy: FaultProxy, seen: Recorder, **kwargs: Any
) -> fal_realtime.RealtimeConnection:
    kwargs.setdefault("throttle_interval", 0)
    conn = await fal_realtime.connect(
        "fal-ai/echo",
        base_url=proxy.ws_url,
        key=KEY,
        use_jwt=False,
        heartbeat_s=HEARTBEAT_S,
        **seen.hooks(),
        reconnect={"max_attempts": None, "deadline_s": 10, "initial_delay_s": 20 * MS},
        **kwargs,
    )
    seen.conn = conn
    return conn


async def _until_open_again(seen: Recorder, fault: str) -> None:
    """Wait until a reconnect (when the fault forces one) has finished."""
    if fault in ("delay",):
        return
    await eventually(lambda: ConnectionState.RECONNECTING in seen.states)
    await eventually(lambda: seen.states[-1] is ConnectionState.OPEN)


@pytest.mark.parametrize("phase", ["idle", "burst", "handshake"])
@pytest.mark.parametrize("fault", FAULTS)
async def test_rt_fault_8_every_fault_in_every_phase(
    proxy: FaultProxy, fault: str, phase: str
) -> None:
    """RT-FAULT-8: each proxy fault while idle, mid-burst or mid-handshake: the realtime
    client recovers with no error, delivers each later input once, in order."""
    seen = Recorder(result=lambda value: value["echo"]["i"])
    if phase == "handshake":
        conn = await _realtime(proxy, seen, lazy=True, open_timeout_s=1.0)
        proxy.stall()
        await conn.send({"i": 0})
        await eventually(lambda: proxy.held >= 1)  # the upgrade is in flight, stuck
        proxy.resume()
        inject(proxy, fault if fault != "stall" else "cut")
        if fault == "stall":
            proxy.stall(STALL_S)
        await eventually(lambda: seen.results == [0], within=8.0)
    elif phase == "idle":
        conn = await _realtime(proxy, seen)
        await conn.send({"i": 0})
        await eventually(lambda: seen.results == [0])
        inject(proxy, fault)
        if fault == "cut_mid_frame":
            await conn.send({"i": 1})  # the frame that gets cut: its result is lost
        await _until_open_again(seen, fault)
        await conn.send({"i": 2})
        await eventually(lambda: seen.results[-1:] == [2])
    else:
        conn = await _realtime(proxy, seen, throttle_interval=5 * MS, coalesce=False)
        for i in range(40):
            await conn.send({"i": i})
            if i == 15:
                inject(proxy, fault)
        await eventually(lambda: seen.results[-1:] == [39], within=8.0)
        if seen.sent_when_reconnecting:
            # Whatever waited while reconnecting was delivered after recovery.
            assert set(range(seen.sent_when_reconnecting[0], 40)) <= set(seen.results)
    try:
        assert seen.results == sorted(set(seen.results)), "duplicated or out of order"
        assert seen.errors == []
        assert conn.state is ConnectionState.OPEN
    finally:
        await conn.close()


def _ws(
    proxy: FaultProxy, app: str = "fal-ai/echo", **kwargs: Any
) -> fal_realtime.HttpWsConnection:
    return fal_realtime.ws(
        app,
        base_url=proxy.ws_url,
        key=KEY,
        heartbeat_s=HEARTBEAT_S,
        reconnect={"max_attempts": None, "deadline_s": 10, "initial_delay_s": 20 * MS},
        **kwargs,
    )


async def _echo(conn: fal_realtime.HttpWsConnection, n: int) -> None:
    await conn.send({"n": n})
    assert orjson.loads(await conn.recv()) == {"echo": {"n": n}}


@pytest.mark.parametrize("phase", ["idle", "stream", "handshake"])
@pytest.mark.parametrize("fault", FAULTS)
async def test_ws_fault_6_every_fault_in_every_phase(
    proxy: FaultProxy, slow_upstream: asyncio.Event, fault: str, phase: str
) -> None:
    """WS-FAULT-6: each proxy fault while idle, mid-response or mid-handshake: a response it
    broke raises CONNECTION_LOST (never garbage), and the next request works."""
    if phase == "handshake":
        conn = _ws(proxy, open_timeout_s=300 * MS)
        proxy.stall(150 * MS)
        inject(proxy, fault if fault != "stall" else "delay")
        async with conn:
            await _echo(conn, 1)
        return
    if phase == "idle":
        async with _ws(proxy) as conn:
            await _echo(conn, 1)
            inject(proxy, fault)
            if fault == "stall":
                await asyncio.sleep(STALL_S + 100 * MS)  # the heartbeat notices meanwhile
            else:
                await asyncio.sleep(30 * MS)
            if fault == "cut_mid_frame":
                # Armed for the next response's first chunk: that request fails once.
                await conn.send({"n": 2})
                with pytest.raises(fal_realtime.ConnectionLostError):
                    await conn.recv()
            await _echo(conn, 3)
        return
    async with _ws(proxy, "test/slow") as conn:
        await conn.send({})
        chunks: list[bytes] = []
        broke = None
        try:
            async for chunk in conn.stream():
                chunks.append(chunk)
                if len(chunks) == 1:
                    inject(proxy, fault)
                    slow_upstream.set()
        except fal_realtime.ConnectionLostError as exc:
            broke = exc
        if fault == "delay":
            assert broke is None and b"".join(chunks) == b"first-rest"
        elif fault == "cut_mid_frame" and b"".join(chunks) == b"first-rest":
            pass  # the rest came in one chunk before the cut was armed: nothing to break
        else:
            assert broke is not None, f"{fault} mid-stream must raise CONNECTION_LOST"
            assert b"".join(chunks) in (b"first", b"first-rest")
        await conn.send({})
        assert await conn.recv() == b"first-rest"
