"""Measure the gateway's realtime echo round trips per second with a raw aiohttp client.

    python -m benchmarks.raw_echo [--seconds 3] [--connections 1]

Lock-step: each connection sends one msgpack frame and waits for its result before
the next. This is the floor a library client is compared with (issue: benchmarks).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

import aiohttp
import ormsgpack

from fal_realtime.server import Gateway
from fal_realtime.server.demo import register_demo_apps


async def _lockstep(url: str, seconds: float, latencies: list[float]) -> int:
    count = 0
    frame = ormsgpack.packb({"prompt": "hello", "n": 1})
    async with aiohttp.ClientSession() as http, http.ws_connect(url) as ws:
        deadline = time.perf_counter() + seconds
        while (now := time.perf_counter()) < deadline:
            await ws.send_bytes(frame)
            msg = await ws.receive()
            assert msg.type == aiohttp.WSMsgType.BINARY, msg
            latencies.append(time.perf_counter() - now)
            count += 1
    return count


async def run(seconds: float, connections: int) -> dict[str, float]:
    """Return round trips per second and latency percentiles (ms)."""
    gateway = Gateway(auth=False)
    register_demo_apps(gateway)
    async with gateway.serve(port=0) as running:
        url = f"{running.ws_url}/fal-ai/echo/realtime"
        latencies: list[float] = []
        started = time.perf_counter()
        counts = await asyncio.gather(
            *(_lockstep(url, seconds, latencies) for _ in range(connections))
        )
        elapsed = time.perf_counter() - started
    latencies.sort()
    return {
        "round_trips_per_s": sum(counts) / elapsed,
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": latencies[int(len(latencies) * 0.99) - 1] * 1000,
        "round_trips": float(sum(counts)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--connections", type=int, default=1)
    args = parser.parse_args()
    result = asyncio.run(run(args.seconds, args.connections))
    print(
        f"gateway echo, raw aiohttp client, {args.connections} connection(s), lock-step: "
        f"{result['round_trips_per_s']:.0f} round trips/s "
        f"(p50 {result['p50_ms']:.3f} ms, p99 {result['p99_ms']:.3f} ms, "
        f"{result['round_trips']:.0f} round trips)"
    )


if __name__ == "__main__":
    main()
