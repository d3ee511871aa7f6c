"""HTTP-over-WebSocket streaming throughput through the gateway: raw aiohttp vs ws().stream().

    python -m benchmarks.ws_stream [--mib 10] [--rounds 3]

An in-process upstream streams ``--mib`` MiB in 64 KiB chunks; the gateway relays it as
binary frames. Both readers run interleaved against the same gateway; medians printed.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

import aiohttp
import orjson
from aiohttp import web

import fal_realtime
from fal_realtime.server import Gateway, RunningGateway

CHUNK = b"\xab" * (64 * 1024)
KEY = "bench-key"


async def _upstream(request: web.Request) -> web.StreamResponse:
    total = (await request.json())["bytes"]
    resp = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
    await resp.prepare(request)
    for _ in range(total // len(CHUNK)):
        await resp.write(CHUNK)
    return resp


async def raw_aiohttp(running: RunningGateway, size: int) -> tuple[float, float]:
    """Read start/body/end by hand; return (seconds, time to first byte)."""
    headers = {"Authorization": f"Key {KEY}"}
    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(f"{running.ws_url}/bench/big", headers=headers, max_msg_size=0) as ws,
    ):
        started = time.perf_counter()
        await ws.send_str(orjson.dumps({"bytes": size}).decode())
        received, first = 0, 0.0
        while True:
            msg = await ws.receive()
            if msg.type is aiohttp.WSMsgType.BINARY:
                if not received:
                    first = time.perf_counter() - started
                received += len(msg.data)
            elif orjson.loads(msg.data).get("type") == "end":
                break
        assert received == size
        return time.perf_counter() - started, first


async def this_client(running: RunningGateway, size: int) -> tuple[float, float]:
    """Read with fal_realtime.ws(...).stream(); return (seconds, time to first byte)."""
    async with fal_realtime.ws("bench/big", base_url=running.ws_url, key=KEY) as conn:
        started = time.perf_counter()
        await conn.send({"bytes": size})
        received, first = 0, 0.0
        async for chunk in conn.stream():
            if not received:
                first = time.perf_counter() - started
            received += len(chunk)
        assert received == size
        return time.perf_counter() - started, first


async def run(mib: int, rounds: int) -> dict[str, tuple[float, float]]:
    """Return {contender: (median MB/s, median TTFB ms)}."""
    gateway = Gateway(keys=[KEY])
    gateway.http_app("bench/big", upstream=_upstream)
    size = mib * 1024 * 1024
    contenders = {"raw aiohttp": raw_aiohttp, "fal_realtime": this_client}
    rates: dict[str, list[float]] = {name: [] for name in contenders}
    ttfbs: dict[str, list[float]] = {name: [] for name in contenders}
    async with gateway.serve(port=0) as running:
        for _ in range(rounds):
            for name, contender in contenders.items():
                seconds, first = await contender(running, size)
                rates[name].append(size / seconds / 1e6)
                ttfbs[name].append(first * 1000)
    return {n: (statistics.median(rates[n]), statistics.median(ttfbs[n])) for n in contenders}


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--mib", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    summary = asyncio.run(run(args.mib, args.rounds))
    floor = summary["raw aiohttp"][0]
    print(f"{args.mib} MiB streamed through the gateway, {args.rounds} interleaved rounds")
    for name, (rate, ttfb) in summary.items():
        print(f"  {name:13s} {rate:7.1f} MB/s  TTFB {ttfb:6.2f} ms  ratio {rate / floor:.2f}")


if __name__ == "__main__":
    main()
