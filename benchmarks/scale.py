"""Scenario 5: 1,000 concurrent idle realtime connections in one process.

Each measurement runs in a fresh child process (``python -m benchmarks.scale``), so
memory freed by one contender cannot be reused by the next: the child imports its
library, opens and closes one connection (one-time costs), reads its RSS from
``/proc/self/statm`` (the baseline), opens N connections to the gateway (another
process), 64 at a time, lets them sit idle, and reads its RSS again. Reported: RSS
per connection above the baseline, the time to open all N, and the CPU the idle
connections use. Target: this client <= 64 KiB per connection. fal-client is left
out: it fetches a token and makes a TLS handshake per connection, so its numbers
would measure neither the same work nor the same memory.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from ._env import Env
from ._harness import Sample, ScenarioResult, interleave

NAME = "scale"
TITLE = "1,000 concurrent idle realtime connections in one process"
CONCURRENCY = 64
IDLE_S = 1.0


def contender(kind: str, base: str, n: int) -> Callable[[], Awaitable[Sample]]:
    async def measure() -> Sample:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "benchmarks.scale",
            kind,
            base,
            str(n),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            async with asyncio.timeout(120):
                out, err = await proc.communicate()
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise
        if proc.returncode != 0:
            raise RuntimeError(f"worker failed ({proc.returncode}): {err.decode()[-500:]}")
        report = orjson.loads(out.splitlines()[-1])
        return {
            "kib_per_conn": (report["rss"] - report["baseline"]) / n / 1024,
            "open_s": report["open_s"],
            "idle_cpu_pct": report["idle_cpu_s"] / report["idle_s"] * 100,
        }

    return measure


async def run(env: Env) -> ScenarioResult:
    opts = env.opts
    n = 1000
    result = ScenarioResult(
        NAME,
        TITLE,
        {"kib_per_conn": "KiB/conn", "open_s": "s to open all", "idle_cpu_pct": "% CPU idle"},
        primary="kib_per_conn",
    )
    base = env.gateway.ws
    contenders = {
        "raw aiohttp": contender("raw", base, n),
        "websockets": contender("websockets", base, n),
        "fal_realtime": contender("ours", base, n),
    }
    await interleave(result, contenders, opts.n_rounds(1, 3), timeout_s=150, warmup=False)
    result.target_value("RSS per connection", "fal_realtime", "kib_per_conn", "<=", 64, "KiB")
    ratio, _ = result.ratio("fal_realtime", "raw aiohttp", "open_s")
    result.notes.append(f"time to open all: fal_realtime / raw aiohttp = {ratio:.2f}")
    return result


# -- the worker (a child process per measurement) -----------------------------------------


async def _worker(kind: str, base: str, n: int) -> dict[str, Any]:
    from ._rt import PAYLOAD, open_ours, open_websockets, realtime_url
    from ._servers import rss_bytes

    url = realtime_url(base)
    opener: Callable[[], Any]
    if kind == "raw":
        import aiohttp

        from ._rt import HEADERS

        http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))

        def opener() -> Any:
            return http.ws_connect(url, headers=HEADERS, compress=0)

    elif kind == "websockets":

        def opener() -> Any:
            return open_websockets(url)

    else:

        def opener() -> Any:
            return open_ours(base, lambda _r: None, throttle_interval=0.064)

    async with contextlib.AsyncExitStack() as stack:
        if kind == "raw":
            stack.push_async_callback(http.close)
        # One connection opened and closed first: imports, caches, one-time set-up.
        async with opener() as first:
            if kind == "ours":
                await first.send(PAYLOAD)
        await asyncio.sleep(0.1)
        gc.collect()
        baseline = rss_bytes()
        gate = asyncio.Semaphore(CONCURRENCY)

        async def open_one() -> None:
            async with gate:
                await stack.enter_async_context(opener())

        started = time.perf_counter()
        await asyncio.gather(*(open_one() for _ in range(n)))
        open_s = time.perf_counter() - started
        cpu0, idle0 = time.process_time(), time.perf_counter()
        await asyncio.sleep(IDLE_S)
        idle_cpu_s, idle_s = time.process_time() - cpu0, time.perf_counter() - idle0
        gc.collect()
        rss = rss_bytes()
    return {
        "baseline": baseline,
        "rss": rss,
        "open_s": open_s,
        "idle_cpu_s": idle_cpu_s,
        "idle_s": idle_s,
    }


def main() -> None:
    from ._servers import raise_fd_limit

    parser = argparse.ArgumentParser(description="one scale measurement (child process)")
    parser.add_argument("kind", choices=["raw", "websockets", "ours"])
    parser.add_argument("base")
    parser.add_argument("n", type=int)
    args = parser.parse_args()
    raise_fd_limit(args.n * 2 + 256)
    report = asyncio.run(_worker(args.kind, args.base, args.n))
    print(orjson.dumps(report).decode(), flush=True)


if __name__ == "__main__":
    main()
