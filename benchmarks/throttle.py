"""Throttle: throttle accuracy, 200 connections sending at the 64 ms interval.

Every connection is handed a fresh input every 16 ms (one ticker task for all), four
times faster than the interval, so latest-wins sends exactly one frame per interval
and there is always one waiting when the interval ends. The stopwatch is a server:
the raw aiohttp server's ``/bench/clock/realtime`` answers each frame at once with the
time it arrived (its ``loop.time()``), so send times are measured where they land, on
a clock the client's own delays cannot touch (the raw server rather than a gateway
handler: it stamps frames as they are read, with no session machinery in between).
The throttle schedules each send one interval after the previous actual send, so the
error of a send is ``|gap between consecutive arrivals - 64 ms|``. Target: p99 of that
error <= 5 ms. The floor is the same cadence hand-written with raw aiohttp (``sleep``
to one interval after the previous send): what the event loop's timers give on this
machine under the same load. A stall of the whole process delays all 200 connections
at once, so the p99 is mostly a count of such stalls (other tenants, GC).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import ormsgpack

from ._env import Env
from ._harness import Sample, ScenarioResult, interleave, percentile
from ._rt import HEADERS, PAYLOAD, open_ours, realtime_url

NAME = "throttle"
TITLE = "throttle accuracy: 200 connections at 64 ms"
CONNECTIONS = 200
INTERVAL_S = 0.064
TICK_S = 0.016
SKIP = 2  # the first arrivals of a connection: opening, first-send-at-once


def _errors(arrivals: list[list[float]]) -> tuple[list[float], int]:
    errors = []
    for times in arrivals:
        gaps = [b - a for a, b in zip(times[SKIP:], times[SKIP + 1 :], strict=False)]
        errors += [abs(gap - INTERVAL_S) for gap in gaps]
    return errors, sum(len(t) for t in arrivals)


def _sample(arrivals: list[list[float]], seconds: float) -> Sample:
    errors, frames = _errors(arrivals)
    return {
        "err_p50_ms": percentile(errors, 50) * 1e3,
        "err_p99_ms": percentile(errors, 99) * 1e3,
        "err_max_ms": max(errors) * 1e3,
        "sends_per_s": frames / len(arrivals) / seconds,
    }


def ours(env: Env, seconds: float) -> Callable[[], Awaitable[Sample]]:
    async def measure() -> Sample:
        arrivals: list[list[float]] = [[] for _ in range(CONNECTIONS)]
        async with contextlib.AsyncExitStack() as stack:
            gate = asyncio.Semaphore(64)

            async def open_one(i: int) -> Any:
                async with gate:
                    return await stack.enter_async_context(
                        open_ours(
                            env.upstream.ws,
                            lambda r, i=i: arrivals[i].append(r["t"]),
                            app="bench/clock",
                            throttle_interval=INTERVAL_S,
                        )
                    )

            conns = await asyncio.gather(*(open_one(i) for i in range(CONNECTIONS)))
            for times in arrivals:
                times.clear()
            started = time.perf_counter()
            next_tick = started
            while time.perf_counter() - started < seconds:
                for conn in conns:
                    await conn.send(PAYLOAD)
                next_tick += TICK_S
                await asyncio.sleep(max(0.0, next_tick - time.perf_counter()))
            elapsed = time.perf_counter() - started
            await asyncio.sleep(0.2)  # the last answers
        return _sample(arrivals, elapsed)

    return measure


def raw(env: Env, seconds: float) -> Callable[[], Awaitable[Sample]]:
    frame = ormsgpack.packb(PAYLOAD)
    url = realtime_url(env.upstream.ws, "bench/clock")

    async def measure() -> Sample:
        arrivals: list[list[float]] = [[] for _ in range(CONNECTIONS)]
        loop = asyncio.get_running_loop()
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
            gate = asyncio.Semaphore(64)

            async def open_one() -> aiohttp.ClientWebSocketResponse:
                async with gate:
                    return await http.ws_connect(url, headers=HEADERS, compress=0)

            sockets = await asyncio.gather(*(open_one() for _ in range(CONNECTIONS)))
            deadline = loop.time() + seconds

            async def pace(ws: aiohttp.ClientWebSocketResponse) -> None:
                next_at = loop.time()
                while (now := loop.time()) < deadline:
                    if next_at > now:
                        await asyncio.sleep(next_at - now)
                    await ws.send_bytes(frame)
                    next_at = loop.time() + INTERVAL_S

            async def read(ws: aiohttp.ClientWebSocketResponse, times: list[float]) -> None:
                async for msg in ws:
                    times.append(ormsgpack.unpackb(msg.data)["t"])

            readers = [
                asyncio.create_task(read(ws, times))
                for ws, times in zip(sockets, arrivals, strict=True)
            ]
            started = time.perf_counter()
            try:
                await asyncio.gather(*(pace(ws) for ws in sockets))
                elapsed = time.perf_counter() - started
                await asyncio.sleep(0.2)
            finally:
                for task in readers:
                    task.cancel()
                await asyncio.gather(*readers, return_exceptions=True)
                await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)
        return _sample(arrivals, elapsed)

    return measure


async def run(env: Env) -> ScenarioResult:
    opts = env.opts
    seconds = opts.pick(2.0, 8.0)
    result = ScenarioResult(
        NAME,
        TITLE,
        {
            "err_p50_ms": "ms",
            "err_p99_ms": "ms",
            "err_max_ms": "ms",
            "sends_per_s": "sends/s/conn",
        },
        primary="err_p99_ms",
    )
    contenders = {"raw aiohttp (hand-paced)": raw(env, seconds), "fal_realtime": ours(env, seconds)}
    await interleave(result, contenders, opts.n_rounds(1, 3), timeout_s=seconds + 60, warmup=False)
    result.target_value("p99 |send - schedule|", "fal_realtime", "err_p99_ms", "<=", 5.0, "ms")
    ratio, _ = result.ratio("fal_realtime", "raw aiohttp (hand-paced)", "err_p99_ms")
    result.notes.append(f"p99 error, fal_realtime / hand-paced floor = {ratio:.2f}")
    return result
