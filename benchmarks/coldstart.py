"""Cold start: from ``connect()`` to the first result of one ``send()``.

One sample opens a new connection to ``fal-ai/echo`` on the gateway, sends one input
and stops the clock at its result; the connection is then closed, off the clock.
Contenders, interleaved sample by sample (the starting one rotates), 40 samples each
in ``--quick``, 100 in the full run (``--rounds`` sets it, never below 40):

- ``raw aiohttp``: the careful user's shared ``ClientSession``, created beforehand;
  ``ws_connect`` (heartbeat on), ``send_bytes``, ``receive``.
- ``fal_realtime``: ``await connect(...)``, ``await conn.send(...)``, the result in
  ``on_result`` (every option at its default, ``Key`` auth).
- ``fal_realtime lazy=True``: the same with ``lazy=True`` (``connect()`` returns at once
  and the socket opens on the first ``send``).
- with ``session=``: both of the above again, given one ``ClientSession`` created
  beforehand.

Reported: the median and p90 per contender. Target: each of this client's variants
<= 1.3 x raw aiohttp, judged on the ratio of the medians (its ± is over five slices of
the samples, each slice's ratio of medians).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import ormsgpack

import fal_realtime

from ._env import KEY, Env
from ._harness import Sample, ScenarioResult, interleave, percentile
from ._rt import (
    PAYLOAD,
    careful_session,
    careful_ws_connect,
    realtime_url,
)

NAME = "coldstart"
TITLE = "cold start: connect() -> send() -> first result"
RAW = "raw aiohttp"
SLICES = 5
THRESHOLD = 1.3
#: Samples per contender, at least (a median of 40 or more); ``--rounds`` cannot go lower.
MIN_SAMPLES = 40

Measure = Callable[[], Awaitable[Sample]]


def raw(session: aiohttp.ClientSession, url: str) -> Measure:
    frame = ormsgpack.packb(PAYLOAD)

    async def measure() -> Sample:
        started = time.perf_counter()
        ws = await careful_ws_connect(session, url)
        try:
            await ws.send_bytes(frame)
            msg = await ws.receive()
            ormsgpack.unpackb(msg.data)
            elapsed = time.perf_counter() - started
        finally:
            await ws.close()
        return {"first_result_ms": elapsed * 1e3}

    return measure


def ours(base: str, **options: Any) -> Measure:
    async def measure() -> Sample:
        loop = asyncio.get_running_loop()
        answered: asyncio.Future[None] = loop.create_future()

        def on_result(_result: Any) -> None:
            if not answered.done():
                answered.set_result(None)

        started = time.perf_counter()
        conn = await fal_realtime.connect(
            "fal-ai/echo", on_result=on_result, base_url=base, key=KEY, use_jwt=False, **options
        )
        try:
            await conn.send(PAYLOAD)
            await answered
            elapsed = time.perf_counter() - started
        finally:
            await conn.close()
        return {"first_result_ms": elapsed * 1e3}

    return measure


async def run(env: Env) -> ScenarioResult:
    opts = env.opts
    base = env.gateway.ws
    result = ScenarioResult(
        NAME, TITLE, {"first_result_ms": "ms to first result"}, primary="first_result_ms"
    )
    result.per_trial = True
    # The floor's shared session, and the one handed to connect(session=).
    async with careful_session() as floor, careful_session() as ours_session:
        table: dict[str, Measure] = {
            RAW: raw(floor, realtime_url(base)),
            "fal_realtime": ours(base),
            "fal_realtime lazy=True": ours(base, lazy=True),
            "fal_realtime (session=)": ours(base, session=ours_session),
            "fal_realtime lazy=True (session=)": ours(base, lazy=True, session=ours_session),
        }
        samples = max(MIN_SAMPLES, opts.n_rounds(MIN_SAMPLES, 100))
        await interleave(result, table, samples, timeout_s=30)
    for name in table:
        if name == RAW:
            continue
        result.target_ratio_of_medians(
            f"{name} vs raw aiohttp", name, RAW, "first_result_ms", "<=", THRESHOLD, SLICES
        )
    for name, row in result.rows.items():
        values = [v for v in row["first_result_ms"].values if not math.isnan(v)]
        result.notes.append(
            f"{name}: p50 {percentile(values, 50):.2f} ms, p90 {percentile(values, 90):.2f} ms "
            f"over {len(values)} samples"
        )
    return result
