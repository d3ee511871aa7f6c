"""Lock-step: realtime lock-step round trips per second (throttle off).

Each round trip sends one msgpack input to ``fal-ai/echo`` and waits for its result
before the next; every contender encodes each input it sends, as a user's inputs
differ. This client runs twice, with a plain ``def on_result`` and with an
``async def on_result`` (the design card's coroutine callbacks), both interleaved with
the floor in the same rounds. Targets: each >= 0.95 x the floor (raw aiohttp,
same plain ``ws://`` gateway); and >= 1.25 x fal-client (both over ``wss://``
to the same gateway: fal-client always uses TLS, so the TLS pair is compared). Beside the
floor run two *callback floors*, raw aiohttp with a reader task that calls a plain or an
``async def`` ``on_result`` (:func:`raw_callback`): what a callback costs whoever writes
it (one more event-loop pass per round trip than awaiting ``receive()`` in the sender;
for ``async def``, a task), so the notes show both that price and this client against
the floor of its own shape. p50/p99
latency and the client's own CPU time per round trip (``time.process_time``; the servers
run in other processes) are reported. With the full run the three plain contenders also run
against the raw aiohttp echo server, where the client is the bottleneck. The
"OpenTelemetry on" contender records into a real SDK (meter and tracer providers with an
in-memory reader and exporter; by default one result's latency per 0.1 s goes to the
histogram); target >= 0.95 x this client with no provider configured ("off").
Beside it, the same recording every result's latency (a note, no target).
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import ormsgpack

import fal_realtime

from ._env import Env
from ._harness import Sample, ScenarioResult, interleave, percentile
from ._rt import (
    PAYLOAD,
    contenders,
    open_fal_client,
    open_ours,
    open_raw,
    open_websockets,
    realtime_url,
)

NAME = "lockstep"
TITLE = "realtime lock-step round trips (throttle off)"
WARMUP = 50
#: This client with a coroutine ``on_result`` (the plain ``def`` one is ``fal_realtime``).
ASYNC = "fal_realtime (async def)"
#: This client recording into a real OpenTelemetry SDK: metrics and traces on.
OTEL = "fal_realtime (OpenTelemetry on)"
#: The same, recording every result's latency (the default samples one per 0.1 s).
OTEL_EVERY = "fal_realtime (OpenTelemetry on, every latency)"
MAX_ROUND_TRIPS = 2_000_000
#: The floors of a callback API: raw aiohttp with a reader task calling on_result.
FLOOR_DEF = "raw aiohttp + def callback"
FLOOR_ASYNC = "raw aiohttp + async def callback"
EAGER = sys.version_info >= (3, 12)


async def _loop(roundtrip: Callable[[], Awaitable[Any]], seconds: float) -> Sample:
    """Run round trips for ``seconds`` (bounded in count too); return rate, latency, CPU."""
    for _ in range(WARMUP):
        await roundtrip()
    latencies: list[float] = []
    clock = time.perf_counter
    cpu0 = time.process_time()
    started = clock()
    deadline = started + seconds
    while len(latencies) < MAX_ROUND_TRIPS:
        begin = clock()
        if begin >= deadline:
            break
        await roundtrip()
        latencies.append(clock() - begin)
    elapsed = clock() - started
    cpu = time.process_time() - cpu0
    return {
        "rt_per_s": len(latencies) / elapsed,
        "p50_ms": percentile(latencies, 50) * 1e3,
        "p99_ms": percentile(latencies, 99) * 1e3,
        "cpu_us": cpu / len(latencies) * 1e6,
    }


def raw(url: str, seconds: float, env: Env | None = None) -> Callable[[], Awaitable[Sample]]:
    context = env.ssl_context if env is not None and url.startswith("wss://") else None

    async def measure() -> Sample:
        async with open_raw(url, context) as ws:

            async def roundtrip() -> None:
                await ws.send_bytes(ormsgpack.packb(PAYLOAD))
                msg = await ws.receive()
                ormsgpack.unpackb(msg.data)

            return await _loop(roundtrip, seconds)

    return measure


def raw_callback(url: str, seconds: float, *, coroutine: bool) -> Callable[[], Awaitable[Sample]]:
    """The floor of *any* callback API on aiohttp: raw aiohttp, a reader task, ``on_result``.

    What a careful user hand-writes to get results on a callback: one task reads the
    socket and calls ``on_result``; the sender waits on a future the callback resolves,
    as with this client. An ``async def`` callback starts as an eager task (3.12+; a
    plain task on 3.11), the cheapest way that gives it a task of its own.
    """

    async def measure() -> Sample:
        loop = asyncio.get_running_loop()
        waiter: list[asyncio.Future[Any]] = [loop.create_future()]
        running: set[asyncio.Task[None]] = set()

        def on_result(result: Any) -> None:
            if not waiter[0].done():
                waiter[0].set_result(result)

        async def on_result_async(result: Any) -> None:
            on_result(result)

        def start(result: Any) -> None:
            coro = on_result_async(result)
            if EAGER:
                task = asyncio.Task(coro, loop=loop, eager_start=True)  # type: ignore[call-arg,unused-ignore]
            else:
                task = loop.create_task(coro)
            if not task.done():
                running.add(task)
                task.add_done_callback(running.discard)

        deliver = start if coroutine else on_result

        async with open_raw(url) as ws:

            async def read() -> None:
                async for msg in ws:
                    deliver(ormsgpack.unpackb(msg.data))

            async def roundtrip() -> None:
                waiter[0] = loop.create_future()
                await ws.send_bytes(ormsgpack.packb(PAYLOAD))
                await waiter[0]

            async with asyncio.TaskGroup() as group:
                reader = group.create_task(read())
                try:
                    return await _loop(roundtrip, seconds)
                finally:
                    reader.cancel()

    return measure


def websockets_(url: str, seconds: float) -> Callable[[], Awaitable[Sample]]:
    async def measure() -> Sample:
        async with open_websockets(url) as ws:

            async def roundtrip() -> None:
                await ws.send(ormsgpack.packb(PAYLOAD))
                ormsgpack.unpackb(await ws.recv())

            return await _loop(roundtrip, seconds)

    return measure


def ours(
    base: str,
    seconds: float,
    env: Env,
    app: str = "fal-ai/echo",
    *,
    coroutine: bool = False,
    otel: bool = False,
    otel_every: bool = False,
) -> Callable[[], Awaitable[Sample]]:
    async def measure() -> Sample:
        if otel:
            with _otel(every=otel_every) as telemetry:
                return await _measure(telemetry)
        return await _measure(None)

    async def _measure(telemetry: Any) -> Sample:
        loop = asyncio.get_running_loop()
        waiter: list[asyncio.Future[Any]] = [loop.create_future()]

        def on_result(result: Any) -> None:
            if not waiter[0].done():
                waiter[0].set_result(result)

        async def on_result_async(result: Any) -> None:
            on_result(result)

        callback = on_result_async if coroutine else on_result
        options = {} if telemetry is None else {"telemetry": telemetry}
        async with open_ours(base, callback, env=env, app=app, **options) as conn:

            async def roundtrip() -> None:
                waiter[0] = loop.create_future()
                await conn.send(PAYLOAD)
                await waiter[0]

            return await _loop(roundtrip, seconds)

    return measure


@contextlib.contextmanager
def _otel(*, every: bool = False) -> Iterator[Any]:
    """Yield a Telemetry over real SDK providers (in-memory reader and span exporter).

    Collected once at the end, so the observable counters' callbacks run too.
    """
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    reader = InMemoryMetricReader()
    meters = MeterProvider(metric_readers=[reader])
    tracers = TracerProvider()
    tracers.add_span_processor(SimpleSpanProcessor(InMemorySpanExporter()))
    try:
        yield fal_realtime.Telemetry(
            meter_provider=meters,
            tracer_provider=tracers,
            latency_sample_interval_s=0 if every else 0.1,
        )
        reader.get_metrics_data()
    finally:
        meters.shutdown()
        tracers.shutdown()


def fal_client(env: Env, seconds: float) -> Callable[[], Awaitable[Sample]]:
    async def measure() -> Sample:
        async with open_fal_client(env) as conn:

            async def roundtrip() -> None:
                await conn.send(PAYLOAD)
                await conn.recv()

            return await _loop(roundtrip, seconds)

    return measure


async def run(env: Env) -> ScenarioResult:
    opts = env.opts
    seconds = opts.pick(0.3, 0.5)
    result = ScenarioResult(
        NAME,
        TITLE,
        {"rt_per_s": "rt/s", "p50_ms": "ms", "p99_ms": "ms", "cpu_us": "µs CPU/rt"},
        primary="rt_per_s",
    )
    # Over TLS, the ceiling of any aiohttp-based client, next to fal-client.
    tls_ceiling = {"raw aiohttp (wss)": raw(realtime_url(env.gateway.wss), seconds, env)}
    table = contenders(
        env,
        seconds,
        raw=raw,
        websockets_=websockets_,
        ours=ours,
        fal_client=fal_client,
        full_extra=tls_ceiling,
        ours_variants={
            ASYNC: ours(env.gateway.ws, seconds, env, coroutine=True),
            OTEL: ours(env.gateway.ws, seconds, env, otel=True),
            OTEL_EVERY: ours(env.gateway.ws, seconds, env, otel=True, otel_every=True),
        },
        floor_variants={
            FLOOR_DEF: raw_callback(realtime_url(env.gateway.ws), seconds, coroutine=False),
            FLOOR_ASYNC: raw_callback(realtime_url(env.gateway.ws), seconds, coroutine=True),
        },
    )
    await interleave(
        result,
        table,
        opts.n_rounds(3, 15),
        timeout_s=seconds * 4 + 20,
        warmup=not opts.quick,
    )
    result.target_ratio(
        "rt/s vs raw aiohttp (def on_result)",
        "fal_realtime",
        "raw aiohttp",
        "rt_per_s",
        ">=",
        0.95,
    )
    result.target_ratio(
        "rt/s vs raw aiohttp (async def on_result)", ASYNC, "raw aiohttp", "rt_per_s", ">=", 0.95
    )
    result.target_ratio(
        "rt/s with OpenTelemetry on vs off", OTEL, "fal_realtime", "rt_per_s", ">=", 0.95
    )
    result.target_ratio(
        "rt/s vs fal-client (both wss)",
        "fal_realtime (wss)",
        "fal-client (wss)",
        "rt_per_s",
        ">=",
        1.25,
    )
    value, spread = result.ratio(OTEL_EVERY, "fal_realtime", "rt_per_s")
    result.notes.append(
        f"OpenTelemetry recording every result's latency / off = {value:.3f} (±{spread:.0%})"
    )
    # What a callback costs at all, whoever writes it: the floors against raw aiohttp, and
    # this client against the floor of its own shape.
    for floor, mine in ((FLOOR_DEF, "fal_realtime"), (FLOOR_ASYNC, ASYNC)):
        value, spread = result.ratio(floor, "raw aiohttp", "rt_per_s")
        mine_value, mine_spread = result.ratio(mine, floor, "rt_per_s")
        result.notes.append(
            f"callback floor: {floor} / raw aiohttp = {value:.3f} (±{spread:.0%}); "
            f"{mine} / {floor} = {mine_value:.3f} (±{mine_spread:.0%})"
        )
    if not opts.quick:
        value, _ = result.ratio("fal_realtime @raw-echo", "raw aiohttp @raw-echo", "rt_per_s")
        result.notes.append(f"client-bound (raw echo server): fal_realtime / raw = {value:.2f}")
        value, _ = result.ratio("raw aiohttp (wss)", "fal-client (wss)", "rt_per_s")
        result.notes.append(f"ceiling over TLS: raw aiohttp (wss) / fal-client (wss) = {value:.2f}")
    return result
