"""Camera streams for the media scenarios: the same frames through every contender.

A *camera* produces a 50 KB JPEG-sized frame every 1/30 s and hands it to the
contender's send, as an app streaming a webcam to an image-to-image model does.
The payload is ``{"prompt", "image_bytes": <frame>, "t": capture time, "seq"}``;
the gateway's bench apps answer each input with its ``t`` (``bench/stamp`` at
once, ``bench/slow`` after 80 ms, ``bench/media`` with the frame back as an
image), so latency is ``now - t`` on the client's own clock: from capture to
result, whatever waited where.

The camera does not wait for the sender: a contender whose ``send`` blocks (raw
aiohttp and websockets await the socket's drain; so does fal-client) misses the
frames the camera produced meanwhile, as a capture loop that reads the newest
frame after each send does (:attr:`StreamLog.sent` < :attr:`StreamLog.captured`).
fal_realtime's ``send`` returns at once and supersedes what waits instead.

Contenders, each written the way its users would:

- ``fal_realtime``: :func:`fal_realtime.connect`, ``await conn.send(payload)``,
  results on ``on_result``; its ``stats`` say what it superseded.
- ``raw aiohttp``: ``ws_connect``, ``await ws.send_bytes(ormsgpack.packb(payload))``,
  a reader task.
- ``websockets``: ``await ws.send(ormsgpack.packb(payload))``, a reader task.
- ``fal-client``: ``AsyncClient.realtime(app)`` (``wss://``, a JWT),
  ``await conn.send(payload)``, a task awaiting ``conn.recv()``.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import ormsgpack

import fal_realtime

from ._env import KEY, Env
from ._harness import MIB, Sample, percentile
from ._rt import HEADERS, open_ours, open_websockets, realtime_url
from ._servers import rss_bytes

__all__ = [
    "DEFAULT_THROTTLE_S",
    "FPS",
    "FRAME_BYTES",
    "Sender",
    "StreamLog",
    "frames",
    "run_cameras",
    "sender_fal_client",
    "sender_ours",
    "sender_raw",
    "sender_websockets",
    "summarize",
    "superseded_by",
]

FPS = 30
FRAME_BYTES = 50_000
PROMPT = "a watercolor portrait, soft light"
#: fal_realtime.connect()'s default throttle_interval (read, so a new default is measured).
DEFAULT_THROTTLE_S: float = (
    inspect.signature(fal_realtime.connect).parameters["throttle_interval"].default
)
_FRAME_COUNT = 30


def frames(count: int = _FRAME_COUNT, size: int = FRAME_BYTES) -> list[bytes]:
    """Return ``count`` distinct JPEG-looking frames of ``size`` bytes (random scan data).

    Random bytes between a JPEG start-of-image/JFIF header and an end-of-image
    marker: incompressible and of a real frame's size, with no encoding cost.
    """
    rng = random.Random(19)
    head = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    tail = b"\xff\xd9"
    body = size - len(head) - len(tail)
    return [head + rng.randbytes(body) + tail for _ in range(count)]


FRAMES = frames()


@dataclass(slots=True)
class StreamLog:
    """What one camera stream saw: captures, sends, and each result's latency."""

    started: float = 0.0
    captured: int = 0
    sent: int = 0
    #: (arrival time, latency s) per result, on the loop's clock.
    results: list[tuple[float, float]] = field(default_factory=list)
    #: Frames the client reported superseded (fal_realtime's stats), else 0.
    superseded: int = 0
    #: Frames handed to the socket when the client counts them apart from sends.
    went_out: int | None = None
    #: Set when the first result arrives (the stream is up end to end).
    first: asyncio.Event = field(default_factory=asyncio.Event)

    def on_result(self, result: Any) -> None:
        now = asyncio.get_running_loop().time()
        self.results.append((now, now - result["t"]))
        self.first.set()


#: Open a stream's sender: yields ``send(payload)`` while the connection is up.
Send = Callable[[Any], Awaitable[Any]]
Sender = Callable[[StreamLog], contextlib.AbstractAsyncContextManager[Send]]


def superseded_by(stats: Any) -> int:
    """Return what a fal_realtime connection superseded: in its throttle and at its link.

    ``stats.coalesced`` counts both (``stats.superseded_at_link`` is the part that
    waited for the link).
    """
    return int(stats.coalesced)


def sender_ours(base: str, env: Env, app: str, **options: Any) -> Sender:
    """Return fal_realtime's sender (``options`` go to ``connect()``)."""

    @contextlib.asynccontextmanager
    async def open_(log: StreamLog) -> AsyncIterator[Callable[[Any], Awaitable[Any]]]:
        async with open_ours(base, log.on_result, env=env, app=app, **options) as conn:
            try:
                yield conn.send
            finally:
                log.superseded = superseded_by(conn.stats)
                log.went_out = conn.stats.sent - 1  # less the opening frame

    return open_


def sender_raw(url: str) -> Sender:
    """Return raw aiohttp's sender: ``await ws.send_bytes(packb(payload))``."""

    @contextlib.asynccontextmanager
    async def open_(log: StreamLog) -> AsyncIterator[Callable[[Any], Awaitable[Any]]]:
        async with (
            aiohttp.ClientSession() as http,
            http.ws_connect(url, headers=HEADERS, max_msg_size=64 * MIB, compress=0) as ws,
        ):

            async def read() -> None:
                async for msg in ws:
                    if msg.type is aiohttp.WSMsgType.BINARY:
                        log.on_result(ormsgpack.unpackb(msg.data))

            async def send(payload: Any) -> None:
                await ws.send_bytes(ormsgpack.packb(payload))

            async with _owned(read()):
                yield send

    return open_


def sender_websockets(url: str) -> Sender:
    """Return websockets' sender: ``await ws.send(packb(payload))``."""

    @contextlib.asynccontextmanager
    async def open_(log: StreamLog) -> AsyncIterator[Callable[[Any], Awaitable[Any]]]:
        async with open_websockets(url) as ws:

            async def read() -> None:
                async for data in ws:
                    if isinstance(data, bytes):
                        log.on_result(ormsgpack.unpackb(data))

            async def send(payload: Any) -> None:
                await ws.send(ormsgpack.packb(payload))

            async with _owned(read()):
                yield send

    return open_


def sender_fal_client(env: Env, wss_base: str, app: str) -> Sender:
    """Return fal-client's sender: ``AsyncClient.realtime(app)`` to ``wss_base``."""

    @contextlib.asynccontextmanager
    async def open_(log: StreamLog) -> AsyncIterator[Callable[[Any], Awaitable[Any]]]:
        if env.fal_client is None:
            raise RuntimeError("fal-client is not installed (pip install -e '.[bench]')")
        module = env.fal_client.client
        saved = module.REALTIME_URL_FORMAT
        module.REALTIME_URL_FORMAT = f"{wss_base}/"
        client = env.fal_client.AsyncClient(key=KEY)
        try:
            async with client.realtime(app) as conn:

                async def read() -> None:
                    while (result := await conn.recv()) is not None:
                        log.on_result(result)

                async with _owned(read()):
                    yield conn.send
        finally:
            module.REALTIME_URL_FORMAT = saved
            await (await client._client).aclose()

    return open_


@contextlib.asynccontextmanager
async def _owned(coro: Any) -> AsyncIterator[None]:
    """Run ``coro`` as a task for the block's duration; cancel and await it after."""
    task = asyncio.get_running_loop().create_task(coro)
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task


async def _camera(send: Callable[[Any], Awaitable[Any]], log: StreamLog, until: float) -> None:
    loop = asyncio.get_running_loop()
    period = 1 / FPS
    next_at = loop.time()
    while (now := loop.time()) < until:
        log.captured += 1
        await send(
            {
                "prompt": PROMPT,
                "image_bytes": FRAMES[log.captured % len(FRAMES)],
                "t": now,
                "seq": log.captured,
            }
        )
        log.sent += 1
        next_at += period
        now = loop.time()
        if next_at < now:
            # The send blocked past the next frames: the camera went on without us.
            missed = int((now - next_at) / period) + 1
            log.captured += missed
            next_at += missed * period
        await asyncio.sleep(next_at - now)


@dataclass(slots=True)
class RunLog:
    """All streams of one measurement, and the client's RSS over it."""

    streams: list[StreamLog]
    started: float
    seconds: float
    cpu_s: float
    #: (loop time, RSS bytes) every half second.
    rss: list[tuple[float, int]]


async def run_cameras(
    sender: Sender,
    seconds: float,
    *,
    streams: int = 1,
    on_started: Callable[[], Any] | None = None,
    on_stopped: Callable[[], Any] | None = None,
) -> RunLog:
    """Stream ``streams`` cameras through ``sender`` for ``seconds``; return the logs.

    Each stream opens its connection and waits for its first result before the
    clock starts (opening is not what is measured); the streams' cameras start
    spread over one frame period. ``on_started`` runs when the clock starts,
    ``on_stopped`` when the cameras stop (before the connections close).
    """
    loop = asyncio.get_running_loop()
    logs = [StreamLog() for _ in range(streams)]
    async with contextlib.AsyncExitStack() as stack:
        sends = []
        for log in logs:
            send = await stack.enter_async_context(sender(log))
            await send({"prompt": PROMPT, "image_bytes": FRAMES[0], "t": loop.time(), "seq": 0})
            sends.append(send)
        async with asyncio.timeout(30):
            for log in logs:
                await log.first.wait()
        for log in logs:
            log.results.clear()
        rss: list[tuple[float, int]] = []

        async def sample_rss() -> None:
            while True:
                rss.append((loop.time(), rss_bytes()))
                await asyncio.sleep(0.5)

        cpu0 = time.process_time()
        started = loop.time()
        if on_started is not None:
            on_started()
        until = started + seconds
        async with _owned(sample_rss()):
            cameras = []
            for i, (send, log) in enumerate(zip(sends, logs, strict=True)):
                log.started = started
                cameras.append(_delayed(i / streams / FPS, _camera(send, log, until)))
            await asyncio.gather(*cameras)
        cpu_s = time.process_time() - cpu0
        elapsed = loop.time() - started
        if on_stopped is not None:
            on_stopped()
    return RunLog(logs, started, elapsed, cpu_s, rss)


async def _delayed(delay: float, coro: Awaitable[None]) -> None:
    await asyncio.sleep(delay)
    await coro


def summarize(run: RunLog, window_s: float) -> Sample:
    """Return a run's latency, trend, throughput, memory and superseded counts.

    ``window_s`` is the length of the first and last windows compared for a trend
    (results by arrival time; memory by sample time).
    """
    start, end = run.started, run.started + run.seconds
    results = [r for log in run.streams for r in log.results if r[0] <= end]
    latencies = [lat for _, lat in results]
    first = [lat for at, lat in results if at < start + window_s]
    last = [lat for at, lat in results if at >= end - window_s]
    rss_first = [b for at, b in run.rss if at < start + window_s]
    rss_last = [b for at, b in run.rss if at >= end - window_s]
    captured = sum(log.captured for log in run.streams)
    sent = sum(log.sent if log.went_out is None else log.went_out for log in run.streams)
    superseded = sum(log.superseded for log in run.streams)
    p99_first, p99_last = percentile(first, 99), percentile(last, 99)
    return {
        "p50_ms": percentile(latencies, 50) * 1e3,
        "p99_ms": percentile(latencies, 99) * 1e3,
        "p99_first_ms": p99_first * 1e3,
        "p99_last_ms": p99_last * 1e3,
        "trend": p99_last / p99_first if p99_first else float("nan"),
        "results_per_s": len(results) / run.seconds,
        "sent_per_s": sent / run.seconds,
        # The camera's frames that never went out: superseded in the client (ours),
        # or missed while a blocking send held the loop (the others).
        "superseded_pct": 100 * (1 - sent / captured) if captured else float("nan"),
        "superseded_stats": float(superseded),
        "rss_growth_mib": (
            (percentile(rss_last, 50) - percentile(rss_first, 50)) / MIB
            if rss_first and rss_last
            else float("nan")
        ),
        "cpu_ms_per_result": run.cpu_s / len(results) * 1e3 if results else float("nan"),
    }


def ws_url(base: str, app: str) -> str:
    """Return the realtime URL of ``app`` under ``base``."""
    return realtime_url(base, app)
