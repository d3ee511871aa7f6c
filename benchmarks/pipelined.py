"""Pipelined: realtime pipelined throughput, 32 inputs in flight (throttle off).

A sender keeps at most ``WINDOW`` inputs unanswered on one socket to ``fal-ai/echo``;
each result frees a slot. Results per second over the timed window are reported.
Target: this client >= 0.90 x the floor (raw aiohttp).
fal-client (``wss://``) and this client over ``wss://`` are shown for reference; the
full run adds the three plain contenders against the raw aiohttp echo server
(client-bound).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Any

import ormsgpack

from ._env import Env
from ._harness import Sample, ScenarioResult, interleave
from ._rt import PAYLOAD, contenders, open_fal_client, open_ours, open_raw, open_websockets

NAME = "pipelined"
TITLE = "realtime pipelined throughput, window 32 (throttle off)"
WINDOW = 32
MAX_MESSAGES = 5_000_000
DRAIN_S = 5.0


class _Window:
    """Count results; keep at most WINDOW in flight; time the measured span."""

    def __init__(self, seconds: float) -> None:
        self.slots = asyncio.Semaphore(WINDOW)
        self.seconds = seconds
        self.received = 0
        self.sent = 0
        self.counting = False
        self.counted = 0
        self.stopped = False
        self.all_in = asyncio.Event()

    def on_result(self, _result: Any = None) -> None:
        self.received += 1
        if self.counting:
            self.counted += 1
        self.slots.release()
        if self.received >= self.sent and self.stopped:
            self.all_in.set()

    async def run(self, send: Callable[[], Awaitable[None]]) -> Sample:
        """Send through the window; measure results/s for ``seconds``; drain the rest."""

        async def sender() -> None:
            while self.sent < MAX_MESSAGES:
                await self.slots.acquire()
                await send()
                self.sent += 1

        task = asyncio.create_task(sender())
        try:
            await asyncio.sleep(min(0.1, self.seconds / 4))  # fill the pipe
            cpu0 = time.process_time()
            self.counting, started = True, time.perf_counter()
            await asyncio.sleep(self.seconds)
            self.counting, elapsed = False, time.perf_counter() - started
            cpu = time.process_time() - cpu0
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.stopped = True
        if self.received < self.sent:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(DRAIN_S):
                    await self.all_in.wait()
        return {
            "msgs_per_s": self.counted / elapsed,
            "cpu_us": cpu / max(self.counted, 1) * 1e6,
        }


def raw(url: str, seconds: float) -> Callable[[], Awaitable[Sample]]:
    async def measure() -> Sample:
        window = _Window(seconds)
        async with open_raw(url) as ws:

            async def reader() -> None:
                async for msg in ws:
                    ormsgpack.unpackb(msg.data)
                    window.on_result()

            task = asyncio.create_task(reader())
            try:
                return await window.run(lambda: ws.send_bytes(ormsgpack.packb(PAYLOAD)))
            finally:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    return measure


def websockets_(url: str, seconds: float) -> Callable[[], Awaitable[Sample]]:
    async def measure() -> Sample:
        window = _Window(seconds)
        async with open_websockets(url) as ws:

            async def reader() -> None:
                async for frame in ws:
                    ormsgpack.unpackb(frame)
                    window.on_result()

            task = asyncio.create_task(reader())
            try:
                return await window.run(lambda: ws.send(ormsgpack.packb(PAYLOAD)))
            finally:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    return measure


def ours(
    base: str, seconds: float, env: Env, app: str = "fal-ai/echo"
) -> Callable[[], Awaitable[Sample]]:
    async def measure() -> Sample:
        window = _Window(seconds)
        # Every input must be answered (the window counts results): the server keeps every
        # pending input, as it does for the other contenders, whose sockets ask nothing.
        # Latest wins at the link stays on (coalesce=True), as by default.
        async with open_ours(
            base, window.on_result, env=env, app=app, max_buffering=WINDOW
        ) as conn:
            return await window.run(lambda: conn.send(PAYLOAD))

    return measure


def fal_client(env: Env, seconds: float) -> Callable[[], Awaitable[Sample]]:
    async def measure() -> Sample:
        window = _Window(seconds)
        async with open_fal_client(env) as conn:

            async def reader() -> None:
                while True:
                    await conn.recv()
                    window.on_result()

            task = asyncio.create_task(reader())
            try:
                return await window.run(lambda: conn.send(PAYLOAD))
            finally:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    return measure


async def run(env: Env) -> ScenarioResult:
    opts = env.opts
    seconds = opts.pick(0.3, 0.5)
    result = ScenarioResult(
        NAME, TITLE, {"msgs_per_s": "msg/s", "cpu_us": "µs CPU/msg"}, primary="msgs_per_s"
    )
    table = contenders(
        env, seconds, raw=raw, websockets_=websockets_, ours=ours, fal_client=fal_client
    )
    await interleave(
        result,
        table,
        opts.n_rounds(3, 15),
        timeout_s=seconds + DRAIN_S + 20,
        warmup=not opts.quick,
    )
    result.target_ratio(
        "msg/s vs raw aiohttp", "fal_realtime", "raw aiohttp", "msgs_per_s", ">=", 0.90
    )
    value, _ = result.ratio("fal_realtime (wss)", "fal-client (wss)", "msgs_per_s")
    result.notes.append(f"fal_realtime (wss) / fal-client (wss) = {value:.2f}")
    if not opts.quick:
        value, _ = result.ratio("fal_realtime @raw-echo", "raw aiohttp @raw-echo", "msgs_per_s")
        result.notes.append(f"client-bound (raw echo server): fal_realtime / raw = {value:.2f}")
    return result
