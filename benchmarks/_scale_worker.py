"""One scale measurement in a fresh child process: ``python -m benchmarks._scale_worker``.

    python -m benchmarks._scale_worker KIND BASE N

KIND is ``raw`` (the careful user's raw aiohttp: one shared ``ClientSession``,
``ws_connect`` with heartbeat per socket, a reader task per socket), ``websockets``,
``ours`` (:func:`fal_realtime.connect`, defaults) or ``ours-session`` (the same with
``session=``: one shared ``ClientSession``). The worker raises its open-files limit,
opens and closes one connection (imports, caches, one-time set-up), reads its RSS (the
baseline), then opens N connections to ``fal-ai/echo`` 100 at a time (each sends one
input and waits for its result), lets them sit idle, reads its RSS again after
``gc.collect()``, and closes them all at once.
It prints one JSON line: the timings, the RSS, and the errors counted on the way.

Only the public API of each library is used, so the same worker measures this client
before and after its core changes.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import resource
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import ormsgpack

from ._env import KEY
from ._rt import HEADERS, PAYLOAD, careful_session, careful_ws_connect, realtime_url
from ._servers import raise_fd_limit, rss_bytes

#: Connections opening at once (the scale target: "100 at a time").
CONCURRENCY = 100
IDLE_S = 1.0
#: How long one connection may take to open and answer before it counts as an error.
OPEN_TIMEOUT_S = 60.0
KINDS = ("raw", "websockets", "ours", "ours-session")

Closer = Callable[[], Awaitable[None]]


class _Tally:
    """Errors by kind; an error is a connection that did not do what it should."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.first: dict[str, str] = {}

    def add(self, kind: str, detail: str = "") -> None:
        self.counts[kind] += 1
        self.first.setdefault(kind, detail)


class _Contender:
    """Open one connection of a kind (send one input, get its result); close it."""

    def __init__(self, kind: str, base: str, tally: _Tally) -> None:
        self.kind = kind
        self.base = base
        self.url = realtime_url(base)
        self.tally = tally
        self.session: Any = None
        self.frame = ormsgpack.packb(PAYLOAD)

    async def __aenter__(self) -> _Contender:
        if self.kind in ("raw", "ours-session"):
            self.session = careful_session()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self.session is not None:
            await self.session.close()

    async def open(self) -> Closer:
        """Open a connection, send one input, wait for its result; return its closer."""
        if self.kind == "raw":
            return await self._open_raw()
        if self.kind == "websockets":
            return await self._open_websockets()
        return await self._open_ours()

    async def _open_raw(self) -> Closer:
        ws = await careful_ws_connect(self.session, self.url)
        try:
            await ws.send_bytes(self.frame)
            msg = await ws.receive()
            ormsgpack.unpackb(msg.data)
        except BaseException:
            await ws.close()
            raise

        async def reader() -> None:
            # The careful user reads every socket: results, close frames and pongs.
            async for msg in ws:
                ormsgpack.unpackb(msg.data)

        task = asyncio.create_task(reader())

        async def close() -> None:
            await ws.close()
            await task
            if ws.close_code != 1000:
                self.tally.add(f"close code {ws.close_code}")

        return close

    async def _open_websockets(self) -> Closer:
        from websockets.asyncio.client import connect

        ws = await connect(self.url, additional_headers=HEADERS, compression=None)
        try:
            await ws.send(self.frame)
            ormsgpack.unpackb(await ws.recv())
        except BaseException:
            await ws.close()
            raise

        async def close() -> None:
            await ws.close()
            if ws.close_code != 1000:
                self.tally.add(f"close code {ws.close_code}")

        return close

    async def _open_ours(self) -> Closer:
        import fal_realtime

        loop = asyncio.get_running_loop()
        answered: asyncio.Future[None] = loop.create_future()
        closed_with: list[int | None] = []

        def on_result(_result: Any) -> None:
            if not answered.done():
                answered.set_result(None)

        def on_error(error: Any) -> None:
            self.tally.add(f"on_error {getattr(error, 'code', '?')}", str(error))

        options: dict[str, Any] = {}
        if self.kind == "ours-session":
            options["session"] = self.session
        conn = await fal_realtime.connect(
            "fal-ai/echo",
            on_result=on_result,
            on_error=on_error,
            on_close=closed_with.append,
            base_url=self.base,
            key=KEY,
            use_jwt=False,
            **options,
        )
        try:
            await conn.send(PAYLOAD)
            await answered
        except BaseException:
            await conn.close()
            raise

        async def close() -> None:
            await conn.close()
            if conn.state is not fal_realtime.ConnectionState.CLOSED:
                self.tally.add(f"state {conn.state} after close")
            if closed_with and closed_with[-1] != 1000:
                self.tally.add(f"close code {closed_with[-1]}")

        return close


async def _worker(kind: str, base: str, n: int) -> dict[str, Any]:
    tally = _Tally()
    async with _Contender(kind, base, tally) as contender:
        # One connection first: imports, caches, one-time set-up are not per connection.
        await (await contender.open())()
        gc.collect()
        baseline = rss_bytes()
        tasks_before = len(asyncio.all_tasks())
        gate = asyncio.Semaphore(CONCURRENCY)
        closers: list[Closer] = []

        async def open_one() -> None:
            async with gate:
                try:
                    async with asyncio.timeout(OPEN_TIMEOUT_S):
                        closers.append(await contender.open())
                except Exception as exc:  # counted: the run reports it, and goes on
                    tally.add("open", f"{type(exc).__name__}: {exc}")

        started = time.perf_counter()
        await asyncio.gather(*(open_one() for _ in range(n)))
        open_s = time.perf_counter() - started

        cpu0, idle0 = time.process_time(), time.perf_counter()
        await asyncio.sleep(IDLE_S)  # the measured idle period itself
        idle_cpu_s, idle_s = time.process_time() - cpu0, time.perf_counter() - idle0
        gc.collect()
        rss = rss_bytes()
        opened = len(closers)

        async def close_one(close: Closer) -> None:
            try:
                await close()
            except Exception as exc:  # counted
                tally.add("close", f"{type(exc).__name__}: {exc}")

        started = time.perf_counter()
        await asyncio.gather(*(close_one(close) for close in closers))
        close_s = time.perf_counter() - started
        closers.clear()
        left = len(asyncio.all_tasks()) - tasks_before
        if left > 0:
            tally.counts["tasks left after close"] += left
    return {
        "kind": kind,
        "n": n,
        "opened": opened,
        "baseline": baseline,
        "rss": rss,
        "open_s": open_s,
        "close_s": close_s,
        "idle_cpu_s": idle_cpu_s,
        "idle_s": idle_s,
        "errors": dict(tally.counts),
        "first_errors": tally.first,
        "fd_limit": resource.getrlimit(resource.RLIMIT_NOFILE)[0],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description="one scale measurement (child process)")
    parser.add_argument("kind", choices=KINDS)
    parser.add_argument("base")
    parser.add_argument("n", type=int)
    args = parser.parse_args()
    needed = args.n + 256
    soft = raise_fd_limit(args.n * 2 + 1024)
    if soft != resource.RLIM_INFINITY and soft < needed:
        sys.exit(f"the open-files limit is {soft}, {args.n} connections need about {needed}")
    report = asyncio.run(_worker(args.kind, args.base, args.n))
    print(orjson.dumps(report).decode(), flush=True)


if __name__ == "__main__":
    main()
