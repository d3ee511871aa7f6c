"""Stream: HTTP-over-WebSocket streaming, a 16 MiB body in 64 KiB chunks.

The upstream (raw aiohttp, its own process) writes 16 MiB in 64 KiB chunks; the
gateway relays it as binary frames on ``bench/up/stream``. Each contender sends the
request and reads start, body and end; MB/s (10^6 bytes) and time to first body byte
are reported. Target: ``fal_realtime.ws(...).stream()`` >= 0.90 x the floor (raw
aiohttp reading the frames by hand). fal-client's ``AsyncClient.ws_connect`` (over
``wss://``, frames read by hand) and this client over ``wss://`` are shown for reference.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import orjson

import fal_realtime

from ._env import KEY, Env
from ._harness import MIB, Sample, ScenarioResult, interleave
from ._rt import HEADERS

NAME = "stream"
TITLE = "HTTP-over-WS streaming: 16 MiB in 64 KiB chunks"
SIZE = 16 * MIB
CHUNK = 64 * 1024
APP = "bench/up"
REQUEST = {"bytes": SIZE, "chunk": CHUNK}


def _control(frame: str) -> dict[str, Any] | None:
    """Return a start/end control frame, else None (body)."""
    try:
        value = orjson.loads(frame)
    except orjson.JSONDecodeError:
        return None
    if isinstance(value, dict) and value.get("type") in ("start", "end"):
        return value
    return None


async def _timed(
    transfers: int, one: Callable[[], AsyncIterator[bytes]], size: int = SIZE
) -> Sample:
    """Run ``transfers`` requests; return total MB/s and the median time to first byte."""
    ttfbs: list[float] = []
    total_s = 0.0
    for _ in range(transfers):
        started = time.perf_counter()
        received = 0
        async for chunk in one():
            if not received:
                ttfbs.append(time.perf_counter() - started)
            received += len(chunk)
        total_s += time.perf_counter() - started
        if received != size:
            raise RuntimeError(f"received {received} bytes, expected {size}")
    ttfbs.sort()
    return {"mb_per_s": size * transfers / total_s / 1e6, "ttfb_ms": ttfbs[len(ttfbs) // 2] * 1e3}


def raw(
    base: str, transfers: int, request: dict[str, int] = REQUEST
) -> Callable[[], Awaitable[Sample]]:
    async def measure() -> Sample:
        async with (
            aiohttp.ClientSession() as http,
            http.ws_connect(
                f"{base}/{APP}/stream", headers=HEADERS, max_msg_size=64 * MIB, compress=0
            ) as ws,
        ):

            async def one() -> AsyncIterator[bytes]:
                await ws.send_str(orjson.dumps(request).decode())
                while True:
                    msg = await ws.receive()
                    if msg.type is aiohttp.WSMsgType.BINARY:
                        yield msg.data
                    elif msg.type is aiohttp.WSMsgType.TEXT:
                        control = _control(msg.data)
                        if control is None:
                            yield msg.data.encode()
                        elif control["type"] == "end":
                            return
                    else:
                        raise RuntimeError(f"socket ended: {msg.type}")

            return await _timed(transfers, one, request["bytes"])

    return measure


def _by_hand(ws: Any, request: dict[str, int]) -> Callable[[], AsyncIterator[bytes]]:
    """Read start, body, end from a websockets connection (websockets, fal-client)."""

    async def one() -> AsyncIterator[bytes]:
        await ws.send(orjson.dumps(request).decode())
        while True:
            frame = await ws.recv()
            if isinstance(frame, bytes):
                yield frame
                continue
            control = _control(frame)
            if control is None:
                yield frame.encode()
            elif control["type"] == "end":
                return

    return one


def websockets_(base: str, transfers: int) -> Callable[[], Awaitable[Sample]]:
    async def measure() -> Sample:
        from websockets.asyncio.client import connect

        async with connect(
            f"{base}/{APP}/stream", additional_headers=HEADERS, max_size=None, compression=None
        ) as ws:
            return await _timed(transfers, _by_hand(ws, REQUEST))

    return measure


def fal_client(env: Env, transfers: int) -> Callable[[], Awaitable[Sample]]:
    async def measure() -> Sample:
        if env.fal_client is None:
            raise RuntimeError("fal-client is not installed")
        client = env.fal_client.AsyncClient(key=KEY)
        try:
            async with client.ws_connect(APP, path="stream") as ws:
                return await _timed(transfers, _by_hand(ws, REQUEST))
        finally:
            await (await client._client).aclose()

    return measure


def ours(
    base: str, transfers: int, env: Env, request: dict[str, int] = REQUEST
) -> Callable[[], Awaitable[Sample]]:
    async def measure() -> Sample:
        context = env.ssl_context if base.startswith("wss://") else None
        async with fal_realtime.ws(
            APP, path="stream", base_url=base, key=KEY, ssl_context=context
        ) as conn:

            async def one() -> AsyncIterator[bytes]:
                await conn.send(request)
                async for chunk in conn.stream():
                    yield chunk

            return await _timed(transfers, one, request["bytes"])

    return measure


async def run(env: Env) -> ScenarioResult:
    opts = env.opts
    transfers = opts.pick(3, 5)
    result = ScenarioResult(NAME, TITLE, {"mb_per_s": "MB/s", "ttfb_ms": "ms"}, primary="mb_per_s")
    gw = env.gateway
    contenders = {
        "raw aiohttp": raw(gw.ws, transfers),
        "websockets": websockets_(gw.ws, transfers),
        "fal_realtime": ours(gw.ws, transfers, env),
        "fal-client (wss)": fal_client(env, transfers),
        "fal_realtime (wss)": ours(gw.wss, transfers, env),
    }
    await interleave(result, contenders, opts.n_rounds(3, 7), timeout_s=60, warmup=not opts.quick)
    result.target_ratio(
        "MB/s vs raw aiohttp", "fal_realtime", "raw aiohttp", "mb_per_s", ">=", 0.90
    )
    ttfb, _ = result.difference("fal_realtime", "raw aiohttp", "ttfb_ms")
    result.notes.append(f"time to first byte: fal_realtime - raw aiohttp = {ttfb:+.2f} ms")
    return result
