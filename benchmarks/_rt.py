"""Opening a realtime socket with each contender, the same way in every scenario.

- ``raw aiohttp`` (the floor): ``ClientSession.ws_connect`` + ormsgpack by hand.
- ``websockets``: ``websockets.asyncio.client.connect`` + ormsgpack by hand.
- ``fal_realtime``: :func:`fal_realtime.connect` (throttle off unless asked, ``Key`` header).
- ``fal-client``: ``AsyncClient.realtime`` over ``wss://`` (it always uses TLS and a token).

The ``scale`` and ``coldstart`` comparisons also use *the careful user's* raw aiohttp:
one shared ``ClientSession`` (no connector limit) and ``ws_connect(..., heartbeat=30)``
per socket (:func:`careful_session`, :func:`careful_ws_connect`); this client runs there
with its defaults and with ``session=`` (one shared ``ClientSession``, as the floor has).
"""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp

import fal_realtime

from ._env import KEY, Env
from ._harness import Sample

__all__ = [
    "HEARTBEAT_S",
    "PAYLOAD",
    "careful_session",
    "careful_ws_connect",
    "contenders",
    "open_fal_client",
    "open_ours",
    "open_raw",
    "open_websockets",
    "realtime_url",
]

#: A small realtime input, as a prompt-driven app gets.
PAYLOAD: dict[str, Any] = {"prompt": "a photo of a cat", "seed": 42, "steps": 2}
HEADERS = {"Authorization": f"Key {KEY}"}
#: The ping interval of both sides in the careful-user comparisons (this client's default).
HEARTBEAT_S = 30.0


def careful_session() -> aiohttp.ClientSession:
    """Return the one shared session a careful raw aiohttp user holds (no connector cap)."""
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))


async def careful_ws_connect(
    session: aiohttp.ClientSession, url: str
) -> aiohttp.ClientWebSocketResponse:
    """Open one socket the careful user's way: ``Key`` header, heartbeat on, no compression."""
    return await session.ws_connect(url, headers=HEADERS, heartbeat=HEARTBEAT_S, compress=0)


def realtime_url(base: str, app: str = "fal-ai/echo") -> str:
    """Return the realtime endpoint of ``app`` under ``base`` (``ws://host:port``)."""
    return f"{base}/{app}/realtime"


Measure = Callable[[], Awaitable[Sample]]


def contenders(
    env: Env,
    seconds: float,
    *,
    raw: Callable[[str, float], Measure],
    websockets_: Callable[[str, float], Measure],
    ours: Callable[..., Measure],
    fal_client: Callable[[Env, float], Measure],
    full_extra: dict[str, Measure] | None = None,
    ours_variants: dict[str, Measure] | None = None,
    floor_variants: dict[str, Measure] | None = None,
) -> dict[str, Measure]:
    """Return a realtime scenario's contenders, in run order, built from its measures.

    The pairs that targets compare run next to each other: ``floor_variants`` (e.g. raw
    aiohttp with a callback) right after ``raw aiohttp``, then ``fal_realtime`` and
    ``ours_variants`` (e.g. an ``async def`` callback), in quick runs too. The full run
    adds ``full_extra``, then each client against the raw echo server (where the
    client, not the gateway, is the bottleneck).
    """
    gw = env.gateway
    table = {
        "raw aiohttp": raw(realtime_url(gw.ws), seconds),
        **(floor_variants or {}),
        "fal_realtime": ours(gw.ws, seconds, env),
        **(ours_variants or {}),
        "websockets": websockets_(realtime_url(gw.ws), seconds),
        "fal-client (wss)": fal_client(env, seconds),
        "fal_realtime (wss)": ours(gw.wss, seconds, env),
    }
    if not env.opts.quick:
        echo = realtime_url(env.upstream.ws, "bench/echo")
        table |= full_extra or {}
        table |= {
            "raw aiohttp @raw-echo": raw(echo, seconds),
            "websockets @raw-echo": websockets_(echo, seconds),
            "fal_realtime @raw-echo": ours(env.upstream.ws, seconds, env, app="bench/echo"),
        }
    return table


@contextlib.asynccontextmanager
async def open_raw(
    url: str, ssl_context: ssl.SSLContext | None = None
) -> AsyncIterator[aiohttp.ClientWebSocketResponse]:
    """Open the floor's socket: aiohttp ws_connect, no extras."""
    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(
            url,
            headers=HEADERS,
            max_msg_size=64 * 1024 * 1024,
            compress=0,
            ssl=ssl_context if ssl_context is not None else True,
        ) as ws,
    ):
        yield ws


@contextlib.asynccontextmanager
async def open_websockets(url: str) -> AsyncIterator[Any]:
    """Open a websockets (asyncio implementation) connection."""
    from websockets.asyncio.client import connect

    async with connect(url, additional_headers=HEADERS, max_size=None, compression=None) as ws:
        yield ws


@contextlib.asynccontextmanager
async def open_ours(
    base: str,
    on_result: Callable[[Any], Any],
    *,
    env: Env | None = None,
    app: str = "fal-ai/echo",
    throttle_interval: float = 0.0,
    **options: Any,
) -> AsyncIterator[fal_realtime.RealtimeConnection]:
    """Open this project's realtime connection (``Key`` header, no token fetches)."""
    if base.startswith("wss://") and env is not None:
        options.setdefault("ssl_context", env.ssl_context)
    conn = await fal_realtime.connect(
        app,
        on_result=on_result,
        base_url=base,
        key=KEY,
        use_jwt=False,
        throttle_interval=throttle_interval,
        **options,
    )
    try:
        yield conn
    finally:
        await conn.close()


@contextlib.asynccontextmanager
async def open_fal_client(env: Env, app: str = "fal-ai/echo") -> AsyncIterator[Any]:
    """Open fal-client's ``AsyncClient.realtime`` connection to the TLS gateway."""
    if env.fal_client is None:
        raise RuntimeError("fal-client is not installed (pip install -e '.[bench]')")
    client = env.fal_client.AsyncClient(key=KEY)
    try:
        async with client.realtime(app) as conn:
            yield conn
    finally:
        # fal_client has no public close; its cached httpx client owns the pooled sockets.
        await (await client._client).aclose()
