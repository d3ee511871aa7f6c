"""Reconnect: reconnect after a server-side drop without a close frame.

Before each trial the gateway is told ``drop_after=1;connections=1`` for ``fal-ai/echo``
(``Gateway.set_faults``): the next connection gets one result, then its TCP connection
is aborted (no close frame). A trial opens a connection, sends one input, and times
from that first result to the first result on the new socket. The client resends
nothing: a fresh input is sent as soon as the drop is seen (``on_state_change`` ->
``reconnecting``). Target: p50 <= 100 ms with the default reconnect policy. Shown:
this client with every default (the 64 ms throttle included: the fresh input waits
for the interval that the first send opened) and with the throttle off; the floor is
a hand-written raw aiohttp loop that reconnects at once. Each trial is one "round".
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import ormsgpack

import fal_realtime

from ._env import Env
from ._harness import Sample, ScenarioResult, interleave, percentile
from ._rt import HEADERS, PAYLOAD, open_ours, realtime_url

NAME = "reconnect"
TITLE = "reconnect: drop without close frame -> first result on the new socket"
APP = "fal-ai/echo"
FAULT = "drop_after=1;connections=1"
TRIAL_TIMEOUT_S = 10.0


def ours(env: Env, throttle_interval: float) -> Callable[[], Awaitable[Sample]]:
    async def measure() -> Sample:
        await env.set_faults(APP, FAULT)
        loop = asyncio.get_running_loop()
        results: list[float] = []
        dropped: list[float] = []
        second = loop.create_future()
        holder: list[fal_realtime.RealtimeConnection] = []

        def on_result(_result: Any) -> None:
            results.append(time.perf_counter())
            if len(results) == 2 and not second.done():
                second.set_result(None)

        async def on_state_change(state: fal_realtime.ConnectionState) -> None:
            if state is fal_realtime.ConnectionState.RECONNECTING and not dropped:
                dropped.append(time.perf_counter())
                await holder[0].send(PAYLOAD)

        async with open_ours(
            env.gateway.ws,
            on_result,
            throttle_interval=throttle_interval,
            on_state_change=on_state_change,
        ) as conn:
            holder.append(conn)
            await conn.send(PAYLOAD)
            async with asyncio.timeout(TRIAL_TIMEOUT_S):
                await second
            reconnects = conn.stats.reconnects
        if reconnects != 1:
            raise RuntimeError(f"expected one reconnect, saw {reconnects}")
        return {
            "reconnect_ms": (results[1] - results[0]) * 1e3,
            "detect_ms": (dropped[0] - results[0]) * 1e3,
        }

    return measure


def raw(env: Env) -> Callable[[], Awaitable[Sample]]:
    url = realtime_url(env.gateway.ws, APP)
    frame = ormsgpack.packb(PAYLOAD)

    async def measure() -> Sample:
        await env.set_faults(APP, FAULT)
        async with aiohttp.ClientSession() as http, asyncio.timeout(TRIAL_TIMEOUT_S):
            async with http.ws_connect(url, headers=HEADERS, compress=0) as ws:
                await ws.send_bytes(frame)
                msg = await ws.receive()
                ormsgpack.unpackb(msg.data)
                first = time.perf_counter()
                msg = await ws.receive()  # the drop: ERROR / CLOSED, no close frame
                assert msg.type not in (aiohttp.WSMsgType.BINARY, aiohttp.WSMsgType.TEXT)
                detected = time.perf_counter()
            async with http.ws_connect(url, headers=HEADERS, compress=0) as ws:
                await ws.send_bytes(frame)
                msg = await ws.receive()
                ormsgpack.unpackb(msg.data)
                second = time.perf_counter()
        return {"reconnect_ms": (second - first) * 1e3, "detect_ms": (detected - first) * 1e3}

    return measure


async def run(env: Env) -> ScenarioResult:
    opts = env.opts
    trials = opts.n_rounds(10, 40)
    result = ScenarioResult(
        NAME,
        TITLE,
        {"reconnect_ms": "ms", "detect_ms": "ms"},
        primary="reconnect_ms",
        per_trial=True,
    )
    contenders = {
        "raw aiohttp (reconnects at once)": raw(env),
        "fal_realtime (defaults)": ours(env, 0.064),
        "fal_realtime (throttle off)": ours(env, 0.0),
    }
    try:
        await interleave(result, contenders, trials, timeout_s=TRIAL_TIMEOUT_S + 5, warmup=False)
    finally:
        await env.set_faults(APP, None)
    result.target_value(
        "p50 drop -> first result (defaults)",
        "fal_realtime (defaults)",
        "reconnect_ms",
        "<=",
        100,
        "ms",
    )
    for name, row in result.rows.items():
        values = row["reconnect_ms"].values
        result.notes.append(
            f"{name}: p90 {percentile(values, 90):.1f} ms, max {max(values):.1f} ms "
            f"over {len(values)} trials"
        )
    return result
