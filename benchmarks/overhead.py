"""Overhead: the gateway's overhead, the same upstream fetched directly vs through the gateway.

The upstream is the raw aiohttp server's ``POST /stream``. *direct* is an aiohttp
``ClientSession.post`` to it (keep-alive); *via gateway* sends the same JSON payload
over HTTP-over-WebSockets to the gateway's ``bench/up`` bridge, read by hand with raw
aiohttp (so only the gateway is added), and with this project's ``ws()`` client for
reference. Time to first byte is the p50 over lock-step requests for a 4 KiB body;
throughput is a 16 MiB body in 64 KiB chunks. Targets: TTFB overhead (via - direct,
paired per round) <= 2 ms at p50; throughput via the gateway >= 0.70 x direct.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import orjson

import fal_realtime

from ._env import KEY, Env
from ._harness import MIB, Sample, ScenarioResult, interleave, percentile
from ._rt import HEADERS

NAME = "overhead"
TITLE = "gateway overhead: upstream direct vs through the HTTP-over-WS bridge"
SMALL = {"bytes": 4096, "chunk": 4096}
BIG = {"bytes": 16 * MIB, "chunk": 64 * 1024}
APP = "bench/up"

Fetch = Callable[[dict[str, int]], AsyncIterator[bytes]]


async def _measure(fetch: Fetch, requests: int, transfers: int) -> Sample:
    ttfbs = []
    for _ in range(requests):
        started = time.perf_counter()
        first = None
        async for _chunk in fetch(SMALL):
            if first is None:
                first = time.perf_counter() - started
        assert first is not None
        ttfbs.append(first)
    total_s = 0.0
    for _ in range(transfers):
        started = time.perf_counter()
        received = 0
        async for chunk in fetch(BIG):
            received += len(chunk)
        total_s += time.perf_counter() - started
        if received != BIG["bytes"]:
            raise RuntimeError(f"received {received} bytes, expected {BIG['bytes']}")
    return {
        "ttfb_p50_ms": percentile(ttfbs, 50) * 1e3,
        "ttfb_p99_ms": percentile(ttfbs, 99) * 1e3,
        "mb_per_s": BIG["bytes"] * transfers / total_s / 1e6,
    }


def direct(env: Env, requests: int, transfers: int) -> Callable[[], Awaitable[Sample]]:
    url = f"{env.upstream.http}/stream"

    async def measure() -> Sample:
        async with aiohttp.ClientSession() as http:

            async def fetch(payload: dict[str, int]) -> AsyncIterator[bytes]:
                async with http.post(
                    url, data=orjson.dumps(payload), headers={"Content-Type": "application/json"}
                ) as resp:
                    resp.raise_for_status()
                    async for chunk in resp.content.iter_any():
                        yield chunk

            return await _measure(fetch, requests, transfers)

    return measure


def via_raw(env: Env, requests: int, transfers: int) -> Callable[[], Awaitable[Sample]]:
    url = f"{env.gateway.ws}/{APP}/stream"

    async def measure() -> Sample:
        async with (
            aiohttp.ClientSession() as http,
            http.ws_connect(url, headers=HEADERS, max_msg_size=64 * MIB, compress=0) as ws,
        ):

            async def fetch(payload: dict[str, int]) -> AsyncIterator[bytes]:
                await ws.send_str(orjson.dumps(payload).decode())
                while True:
                    msg = await ws.receive()
                    if msg.type is aiohttp.WSMsgType.BINARY:
                        yield msg.data
                    elif msg.type is aiohttp.WSMsgType.TEXT:
                        control: Any = orjson.loads(msg.data)
                        if control.get("type") == "end":
                            return
                    else:
                        raise RuntimeError(f"socket ended: {msg.type}")

            return await _measure(fetch, requests, transfers)

    return measure


def via_ours(env: Env, requests: int, transfers: int) -> Callable[[], Awaitable[Sample]]:
    async def measure() -> Sample:
        async with fal_realtime.ws(APP, path="stream", base_url=env.gateway.ws, key=KEY) as conn:

            async def fetch(payload: dict[str, int]) -> AsyncIterator[bytes]:
                await conn.send(payload)
                async for chunk in conn.stream():
                    yield chunk

            return await _measure(fetch, requests, transfers)

    return measure


async def run(env: Env) -> ScenarioResult:
    opts = env.opts
    requests, transfers = opts.pick((40, 2), (200, 4))
    result = ScenarioResult(
        NAME,
        TITLE,
        {"ttfb_p50_ms": "ms", "ttfb_p99_ms": "ms", "mb_per_s": "MB/s"},
        primary="mb_per_s",
    )
    contenders = {
        "direct aiohttp": direct(env, requests, transfers),
        "via gateway (raw aiohttp ws)": via_raw(env, requests, transfers),
        "via gateway (fal_realtime.ws)": via_ours(env, requests, transfers),
    }
    await interleave(result, contenders, opts.n_rounds(3, 7), timeout_s=60, warmup=not opts.quick)
    overhead, spread = result.difference(
        "via gateway (raw aiohttp ws)", "direct aiohttp", "ttfb_p50_ms"
    )
    result.targets.append(
        _target("TTFB overhead at p50 (gateway - direct)", overhead, "<=", 2.0, "ms", spread)
    )
    result.target_ratio(
        "throughput via gateway vs direct",
        "via gateway (raw aiohttp ws)",
        "direct aiohttp",
        "mb_per_s",
        ">=",
        0.70,
    )
    ours, _ = result.difference("via gateway (fal_realtime.ws)", "direct aiohttp", "ttfb_p50_ms")
    ratio, _ = result.ratio("via gateway (fal_realtime.ws)", "direct aiohttp", "mb_per_s")
    result.notes.append(
        f"with this project's client end to end: TTFB overhead {ours:+.2f} ms, "
        f"throughput {ratio:.2f} x direct"
    )
    return result


def _target(label: str, value: float, op: str, threshold: float, unit: str, spread: float) -> Any:
    from ._harness import Target

    return Target(label, value, op, threshold, unit, None, f"range over rounds {spread:.2f} ms")
