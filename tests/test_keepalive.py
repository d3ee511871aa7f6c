"""The clients' own keep-alive (``_keepalive.py``) and their clock, on every event loop.

The clients no longer use aiohttp's ``heartbeat=`` (it keeps sockets in reference
cycles that differ per release): they ping a silent socket themselves, count any frame
as a sign of life, and declare a socket lost when a ping goes unanswered. Latencies are
measured with ``time.perf_counter``, so uvloop (whose ``loop.time()`` ticks in whole
milliseconds) and stock asyncio report the same.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

import fal_realtime
from fal_realtime.server import Gateway, RunningGateway
from fal_realtime.server.demo import register_demo_apps
from fal_realtime.server.proxy import FaultProxy

from .conftest import KEY, MS
from .gateway_tools import eventually


async def test_rt_keepalive_1_a_busy_socket_needs_no_pong(
    gateway: Gateway, running: RunningGateway
) -> None:
    """RT-KEEPALIVE-1: with a peer that never answers pings, results arriving keep it open."""
    gateway.set_faults("fal-ai/echo", "ignore_pings=1")
    results: list[Any] = []
    closes: list[int | None] = []
    async with await fal_realtime.connect(
        "fal-ai/echo",
        on_result=results.append,
        on_close=closes.append,
        base_url=running.ws_url,
        key=KEY,
        throttle_interval=0,
        heartbeat_s=200 * MS,
    ) as conn:
        for n in range(80):  # 800 ms of traffic: four heartbeat intervals
            await conn.send({"n": n})
            await eventually(lambda n=n: len(results) == n + 1)
            await asyncio.sleep(10 * MS)
        assert closes == [] and conn.stats.reconnects == 0
        # Silent now: the unanswered ping makes it lost (1006), and it reconnects.
        await eventually(lambda: closes == [1006])
    assert results == [{"echo": {"n": n}} for n in range(80)]


async def test_ws_keepalive_1_a_stalled_link_is_dropped_and_the_next_request_reopens(
    gateway: Gateway, proxy: FaultProxy
) -> None:
    """WS-KEEPALIVE-1: HTTP over WS: an unanswered ping drops the socket; the next request opens
    a new one (without the keep-alive the stalled socket would be reused)."""
    async with fal_realtime.ws(
        "fal-ai/any-llm", base_url=proxy.ws_url, key=KEY, heartbeat_s=50 * MS
    ) as conn:
        first = await conn.request({"prompt": "hello in 3 words"})
        assert first.status == 200 and proxy.accepted == 1
        proxy.stall(300 * MS)
        await eventually(lambda: proxy.active == 0)  # the client dropped the stalled socket
        proxy.resume()
        second = await conn.request({"prompt": "hello in 3 words"})
    assert second.json() == first.json() and proxy.accepted == 2


def _uvloop_factory() -> Callable[[], asyncio.AbstractEventLoop]:
    uvloop = pytest.importorskip("uvloop", reason="uvloop is not installed (pip install uvloop)")
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_rt_clock_1_sub_millisecond_latency_reads_the_same_on_every_loop(loop: str) -> None:
    """RT-CLOCK-1: a sub-millisecond round trip has a latency > 0 on asyncio and on uvloop."""
    factory = asyncio.new_event_loop if loop == "asyncio" else _uvloop_factory()

    async def round_trips() -> list[float]:
        gateway = Gateway(keys=[KEY], heartbeat_s=None)
        register_demo_apps(gateway)
        latencies: list[float] = []
        async with gateway.serve(port=0) as running:
            results: list[Any] = []
            async with await fal_realtime.connect(
                "fal-ai/echo",
                on_result=results.append,
                base_url=running.ws_url,
                key=KEY,
                throttle_interval=0,
            ) as conn:
                for n in range(30):
                    await conn.send({"n": n})
                    await eventually(lambda n=n: len(results) == n + 1)
                    assert conn.stats.last_latency_s is not None
                    latencies.append(conn.stats.last_latency_s)
        return latencies

    with asyncio.Runner(loop_factory=factory, debug=True) as runner:
        latencies = runner.run(round_trips())
        running_loop = type(runner.get_loop()).__module__
    assert running_loop.startswith("uvloop" if loop == "uvloop" else "asyncio")
    # loop.time() on uvloop would read most of these as exactly 0.0 (1 ms ticks).
    assert min(latencies) > 0 and max(latencies) < 1.0
