"""Lock-step realtime echo round trips per second: raw aiohttp (the floor) vs this client.

    python -m benchmarks.raw_echo [--seconds 2] [--rounds 3]

Both run against the project's gateway on 127.0.0.1, interleaved (A B A B ...) so that
the ratio is measured side by side; medians over the rounds are printed. Lock-step:
each round trip sends one msgpack frame and waits for its result before the next.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import ormsgpack

import fal_realtime
from fal_realtime.server import Gateway, RunningGateway
from fal_realtime.server.demo import register_demo_apps

PAYLOAD = {"prompt": "hello", "n": 1}


async def raw_aiohttp(running: RunningGateway, seconds: float) -> tuple[int, list[float]]:
    """Run the floor: a hand-written loop on aiohttp ws_connect + ormsgpack."""
    latencies: list[float] = []
    frame = ormsgpack.packb(PAYLOAD)
    url = f"{running.ws_url}/fal-ai/echo/realtime"
    async with aiohttp.ClientSession() as http, http.ws_connect(url) as ws:
        deadline = time.perf_counter() + seconds
        while (now := time.perf_counter()) < deadline:
            await ws.send_bytes(frame)
            msg = await ws.receive()
            ormsgpack.unpackb(msg.data)
            latencies.append(time.perf_counter() - now)
    return len(latencies), latencies


async def this_client(running: RunningGateway, seconds: float) -> tuple[int, list[float]]:
    """Run fal_realtime.connect() with throttling off, waiting for each result."""
    latencies: list[float] = []
    loop = asyncio.get_running_loop()
    waiter: asyncio.Future[Any] = loop.create_future()

    def on_result(result: Any) -> None:
        if not waiter.done():
            waiter.set_result(result)

    conn = await fal_realtime.connect(
        "fal-ai/echo",
        on_result=on_result,
        base_url=running.ws_url,
        key="bench",
        use_jwt=False,
        throttle_interval=0,
    )
    try:
        deadline = time.perf_counter() + seconds
        while (now := time.perf_counter()) < deadline:
            waiter = loop.create_future()
            await conn.send(PAYLOAD)
            await waiter
            latencies.append(time.perf_counter() - now)
    finally:
        await conn.close()
    return len(latencies), latencies


Contender = Callable[[RunningGateway, float], Awaitable[tuple[int, list[float]]]]
CONTENDERS: dict[str, Contender] = {"raw aiohttp": raw_aiohttp, "fal_realtime": this_client}


async def run(seconds: float, rounds: int) -> dict[str, dict[str, float]]:
    """Interleave the contenders for ``rounds``; return medians per contender."""
    gateway = Gateway(auth=False)
    register_demo_apps(gateway)
    rates: dict[str, list[float]] = {name: [] for name in CONTENDERS}
    lats: dict[str, list[float]] = {name: [] for name in CONTENDERS}
    async with gateway.serve(port=0) as running:
        for _ in range(rounds):
            for name, contender in CONTENDERS.items():
                count, latencies = await contender(running, seconds)
                rates[name].append(count / seconds)
                lats[name].extend(latencies)
    summary = {}
    for name in CONTENDERS:
        ordered = sorted(lats[name])
        summary[name] = {
            "round_trips_per_s": statistics.median(rates[name]),
            "spread": (max(rates[name]) - min(rates[name])) / statistics.median(rates[name]),
            "p50_ms": ordered[len(ordered) // 2] * 1000,
            "p99_ms": ordered[int(len(ordered) * 0.99)] * 1000,
        }
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="per contender per round")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    summary = asyncio.run(run(args.seconds, args.rounds))
    floor = summary["raw aiohttp"]["round_trips_per_s"]
    print(f"lock-step echo via the gateway, {args.rounds} interleaved rounds of {args.seconds} s")
    for name, row in summary.items():
        print(
            f"  {name:13s} {row['round_trips_per_s']:8.0f} round trips/s "
            f"(spread {row['spread']:.0%}, p50 {row['p50_ms']:.3f} ms, p99 {row['p99_ms']:.3f} ms) "
            f"ratio {row['round_trips_per_s'] / floor:.2f}"
        )


if __name__ == "__main__":
    main()
