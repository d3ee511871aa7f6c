"""Finished sockets leave no reference cycles behind, on the client or the gateway.

A socket caught in a reference cycle is freed only by a full GC pass, which in a busy
process comes minutes apart: the soak measured +10% RSS in 10 minutes from exactly
that. Each test runs its scenario with the automatic collector off, then has the
collector save (instead of free) every object it finds in a cycle, and checks that none
of them is ours, aiohttp's or tenacity's, nor (where only our code touched the socket)
a socket transport: Python 3.11's keeps a reference to itself unless released.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web

import fal_realtime
from fal_realtime import ConnectionState, ReconnectPolicy
from fal_realtime.server import Gateway, RunningGateway
from fal_realtime.server.proxy import FaultProxy

from .conftest import AUTH, KEY, MS
from .gateway_tools import eventually

#: Where the objects we answer for come from.
OURS = ("aiohttp.", "fal_realtime.", "tenacity.", "multidict.", "yarl.")
#: Built-in kinds that show an exception or a task was caught in a cycle.
TELLTALES = {"frame", "traceback", "coroutine", "Task", "Future"}


def _any(transport: asyncio.BaseTransport) -> bool:
    return True


def _not_upstream_server_side(transport: asyncio.BaseTransport) -> bool:
    # The in-process upstream is an aiohttp web server on a Unix socket: the server
    # side of a connection the bridge gave up is aiohttp's to release, not ours.
    return not str(transport.get_extra_info("sockname") or "").endswith("upstream.sock")


class Census:
    """What the cycle collector found since the scenario began."""

    def __init__(self) -> None:
        self.found: Counter[str] = Counter()

    def take(
        self, *, transports: Callable[[asyncio.BaseTransport], bool] | None = _any
    ) -> Counter[str]:
        """Collect now, keeping what was in cycles; return the kinds we answer for.

        Args:
            transports: which socket transports count (None: none, when a raw aiohttp
                client, which does not release them, took part).
        """
        gc.set_debug(gc.DEBUG_SAVEALL)
        try:
            gc.collect()
            for obj in gc.garbage:
                kind = type(obj)
                name = f"{kind.__module__}.{kind.__qualname__}"
                if (
                    name.startswith(OURS)
                    or kind.__name__ in TELLTALES
                    or (
                        transports is not None
                        and isinstance(obj, asyncio.BaseTransport)
                        and transports(obj)
                    )
                ):
                    self.found[name] += 1
        finally:
            gc.set_debug(0)
            gc.garbage.clear()
        return self.found


@contextlib.contextmanager
def cycle_census() -> Iterator[Census]:
    """Run the block with the automatic collector off; ``take()`` counts the cycles."""
    gc.collect()
    gc.disable()
    try:
        yield Census()
    finally:
        gc.enable()


async def _gateway_idle(running: RunningGateway) -> None:
    """Wait until the gateway has finished every connection (after the clients' close)."""
    server = running.runner.server
    assert server is not None
    await eventually(lambda: not server.connections)


async def _fault_and_recover(
    conn: fal_realtime.RealtimeConnection, proxy: FaultProxy, fault: str
) -> None:
    reconnects = conn.stats.reconnects
    if fault == "stall":
        proxy.stall(300 * MS)
        # Inputs held by the stall reach the gateway after the client has given up: the
        # gateway's answers then meet a closed socket.
        for n in range(3):
            await conn.send({"stalled": n})
    else:
        getattr(proxy, fault)()
    await eventually(
        lambda: conn.stats.reconnects > reconnects and conn.state is ConnectionState.OPEN
    )


async def test_rt_fault_9_lost_sockets_leave_no_reference_cycles(
    running: RunningGateway, proxy: FaultProxy, instant_retries: None
) -> None:
    """RT-FAULT-9: sockets lost to cuts, cuts mid-frame and stalls leave no cycles behind."""
    results: list[Any] = []
    with cycle_census() as census:
        conn = await fal_realtime.connect(
            "fal-ai/echo",
            on_result=results.append,
            base_url=proxy.ws_url,
            key=KEY,
            use_jwt=False,
            throttle_interval=0,
            heartbeat_s=50 * MS,
        )
        for n, fault in enumerate(("cut", "cut_mid_frame", "stall") * 2):
            await conn.send({"n": n})
            await eventually(lambda n=n: results[-1:] == [{"echo": {"n": n}}])
            await _fault_and_recover(conn, proxy, fault)
        await conn.send({"after": True})
        await eventually(lambda: results[-1] == {"echo": {"after": True}})
        await conn.close()
        assert conn.stats.reconnects == 6
        await _gateway_idle(running)
        assert census.take() == Counter()


async def test_gw_rt_19_sessions_ending_every_way_leave_no_reference_cycles(
    gateway: Gateway, running: RunningGateway, http: aiohttp.ClientSession
) -> None:
    """GW-RT-19: client close, handler error, idle timeout and refusal leave no cycles."""

    @gateway.realtime("test/fails")
    async def fails(value: dict[str, Any]) -> dict[str, Any]:
        raise ValueError("no")

    gateway.realtime("test/idle", session_timeout=50 * MS)(lambda value: value)
    url = running.ws_url

    async def session(app: str, headers: dict[str, str], send: bool) -> aiohttp.WSMessage:
        async with http.ws_connect(f"{url}/{app}/realtime", headers=headers) as ws:
            if send:
                await ws.send_bytes(b"\x81\xa1a\x01")  # msgpack {"a": 1}
            return await ws.receive()

    with cycle_census() as census:
        echoed = await session("fal-ai/echo", AUTH, send=True)
        failed = await session("test/fails", AUTH, send=True)
        idled = await session("test/idle", AUTH, send=False)
        refused = await session("fal-ai/echo", {"Authorization": "Key wrong"}, send=False)
        await _gateway_idle(running)
        assert echoed.type is aiohttp.WSMsgType.BINARY
        assert "INTERNAL_ERROR" in failed.data
        assert "TIMEOUT" in idled.data
        assert "Unauthorized" in refused.data
        assert census.take(transports=None) == Counter()


async def test_ws_fault_7_lost_and_abandoned_sockets_leave_no_reference_cycles(
    gateway: Gateway, proxy: FaultProxy, instant_retries: None
) -> None:
    """WS-FAULT-7: HTTP-over-WS sockets cut, abandoned or closed mid-response leave no cycles."""
    release = asyncio.Event()

    async def slow(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        await resp.prepare(request)
        await resp.write(b"first")
        await release.wait()
        # The gateway drops the upstream request of a response nobody reads any more.
        with contextlib.suppress(ConnectionResetError):
            await resp.write(b"-rest")
        return resp

    gateway.http_app("test/slow", upstream=slow)
    with cycle_census() as census:
        async with fal_realtime.ws(
            "test/slow", base_url=proxy.ws_url, key=KEY, heartbeat_s=50 * MS
        ) as conn:
            for _ in range(2):
                await conn.send({})
                chunks = conn.stream()
                assert await anext(chunks) == b"first"
                proxy.cut()
                with pytest.raises(fal_realtime.RealtimeError):
                    await anext(chunks)
            await conn.send({})
            async for chunk in conn.stream():  # abandoned after its first chunk
                assert chunk == b"first"
                break
        async with fal_realtime.ws("test/slow", base_url=proxy.ws_url, key=KEY) as conn:
            await conn.send({})
            assert await anext(conn.stream()) == b"first"
            # Closed in the middle of the response.
        async with fal_realtime.ws("test/slow", base_url=proxy.ws_url, key=KEY) as conn:
            release.set()
            await conn.send({})
            assert await conn.recv() == b"first-rest"
        assert census.take(transports=_not_upstream_server_side) == Counter()


async def test_rt_33_closed_connections_leave_no_reference_cycles(
    running: RunningGateway,
) -> None:
    """RT-33: a closed realtime connection, once dropped, is freed without the collector."""

    def raises(result: Any) -> None:
        raise ValueError("a callback that raises")

    errors: list[fal_realtime.RealtimeError] = []
    results: list[Any] = []
    with cycle_census() as census:
        for on_result in (raises, results.append):  # with and without a callback error
            conn = await fal_realtime.connect(
                "fal-ai/echo",
                on_result=on_result,
                on_error=errors.append,
                base_url=running.ws_url,
                key=KEY,
                use_jwt=False,
                heartbeat_s=50 * MS,
            )
            await conn.send({"a": 1})
            await eventually(lambda conn=conn: conn.stats.results == 1)
            await conn.close()
            del conn
        await _gateway_idle(running)
        assert census.take() == Counter()
    assert [error.code for error in errors] == ["CALLBACK_ERROR"]
    assert results == [{"echo": {"a": 1}}]


async def test_rt_policy_6_call_retries_and_leaves_no_reference_cycles(
    instant_retries: None,
) -> None:
    """RT-POLICY-6: call() retries what is retryable, re-raises the rest, leaves no cycle."""
    attempts: list[int] = []

    async def flaky() -> str:
        attempts.append(len(attempts) + 1)
        if len(attempts) < 3:
            raise ConnectionError("not yet")
        return "ok"

    def retryable(exc: BaseException) -> bool:
        return isinstance(exc, ConnectionError)

    policy = ReconnectPolicy(max_attempts=3, deadline_s=None)
    with cycle_census() as census:
        assert await policy.call(flaky, retryable) == "ok"
        assert attempts == [1, 2, 3]
        assert census.take() == Counter()
    attempts.clear()
    with pytest.raises(ConnectionError, match="not yet"):
        await ReconnectPolicy(max_attempts=2, deadline_s=None).call(flaky, retryable)
    assert attempts == [1, 2]

    async def refused() -> str:
        raise PermissionError("final")

    with pytest.raises(PermissionError):
        await policy.call(refused, retryable)
