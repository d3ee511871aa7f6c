"""Helpers for driving the gateway with a plain aiohttp WebSocket client."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import aiohttp
import orjson
import ormsgpack

from fal_realtime._compat import ws_close_timeout
from fal_realtime.server import Gateway, RunningGateway

from .conftest import AUTH, MS

#: The longest any single wait in a gateway test may take.
WAIT = 5000 * MS

T = TypeVar("T")


@dataclass
class Transcript:
    """Everything a client saw on one socket until it closed."""

    frames: list[tuple[str, Any]] = field(default_factory=list)
    close_code: int | None = None
    clean_close: bool = False

    def kinds(self) -> list[str]:
        return [kind for kind, _ in self.frames]

    def values(self, kind: str = "binary") -> list[Any]:
        return [value for k, value in self.frames if k == kind]


def decode(msg: aiohttp.WSMessage) -> tuple[str, Any]:
    """Return ("binary", msgpack value) or ("text", JSON value or raw str)."""
    if msg.type == aiohttp.WSMsgType.BINARY:
        return "binary", ormsgpack.unpackb(msg.data)
    try:
        return "text", orjson.loads(msg.data)
    except orjson.JSONDecodeError:
        return "text", msg.data


async def read_until_closed(ws: aiohttp.ClientWebSocketResponse) -> Transcript:
    """Read every frame until the socket closes; record how it closed."""
    transcript = Transcript()
    async with asyncio.timeout(WAIT):
        while True:
            msg = await ws.receive()
            if msg.type in (aiohttp.WSMsgType.BINARY, aiohttp.WSMsgType.TEXT):
                transcript.frames.append(decode(msg))
                continue
            transcript.clean_close = msg.type == aiohttp.WSMsgType.CLOSE or (
                msg.type == aiohttp.WSMsgType.CLOSED and ws.close_code not in (None, 1006)
            )
            break
    transcript.close_code = ws.close_code
    await ws.close()  # answer the server's close frame and release the connection
    return transcript


async def receive_frame(ws: aiohttp.ClientWebSocketResponse) -> tuple[str, Any]:
    """Receive the next data frame (bounded wait); fail on a close."""
    async with asyncio.timeout(WAIT):
        msg = await ws.receive()
    assert msg.type in (aiohttp.WSMsgType.BINARY, aiohttp.WSMsgType.TEXT), msg
    return decode(msg)


def realtime_url(
    running: RunningGateway, app: str = "fal-ai/echo", query: str = "", path: str = "/realtime"
) -> str:
    """Return the realtime URL of ``app`` on ``running``."""
    return f"{running.ws_url}/{app}{path}" + (f"?{query}" if query else "")


async def open_realtime(
    http: aiohttp.ClientSession,
    running: RunningGateway,
    app: str = "fal-ai/echo",
    *,
    query: str = "",
    headers: dict[str, str] | None = None,
) -> aiohttp.ClientWebSocketResponse:
    """Open a realtime socket with the test key (or ``headers``)."""
    return await http.ws_connect(
        realtime_url(running, app, query),
        headers=AUTH if headers is None else headers,
        autoclose=False,
        **ws_close_timeout(WAIT),
    )


async def send_msgpack(ws: aiohttp.ClientWebSocketResponse, value: Any) -> None:
    """Send ``value`` as one binary msgpack frame."""
    await ws.send_bytes(ormsgpack.packb(value))


async def http_ws_request(
    ws: aiohttp.ClientWebSocketResponse,
) -> tuple[dict[str, Any], list[bytes | str], dict[str, Any]]:
    """Read one HTTP-over-WS response: (start, body frames, end)."""
    kind, start = await receive_frame(ws)
    assert kind == "text" and isinstance(start, dict) and start["type"] == "start", start
    body: list[bytes | str] = []
    async with asyncio.timeout(WAIT):
        while True:
            msg = await ws.receive()
            assert msg.type in (aiohttp.WSMsgType.BINARY, aiohttp.WSMsgType.TEXT), msg
            if msg.type == aiohttp.WSMsgType.TEXT:
                try:
                    value = orjson.loads(msg.data)
                except orjson.JSONDecodeError:
                    value = None
                if isinstance(value, dict) and value.get("type") == "end":
                    return start, body, value
            body.append(msg.data)


def joined(body: list[bytes | str]) -> bytes:
    """Join body frames as bytes (text frames as UTF-8)."""
    return b"".join(part.encode() if isinstance(part, str) else part for part in body)


async def eventually(predicate: Any, *, step: float = MS, within: float = WAIT) -> None:
    """Poll ``predicate()`` every ``step`` seconds until it holds; fail after ``within``."""
    async with asyncio.timeout(within):
        # Polling on purpose: the condition spans objects that signal no event.
        while not predicate():  # noqa: ASYNC110
            await asyncio.sleep(step)


async def on_io_alone(awaitable: Awaitable[T], *, within: float = WAIT) -> T:
    """Await ``awaitable`` with the event loop's clock stopped; fail if it waits on a timer.

    With ``loop.time()`` frozen no timer ever comes due (``asyncio.sleep``, timeouts,
    backoff), so only I/O can move the awaitable along: "returns at once, no fixed wait"
    without reading a clock. A guard thread gives up after ``within`` real seconds.
    uvloop's timers do not read ``loop.time()``: there it only awaits (the stock loop's
    run of the same test is the check).
    """
    loop = asyncio.get_running_loop()
    if "uvloop" in type(loop).__module__:
        return await awaitable
    task = asyncio.ensure_future(awaitable)
    fired = threading.Event()

    def give_up() -> None:
        fired.set()
        loop.call_soon_threadsafe(task.cancel)

    frozen = loop.time()
    loop.time = lambda: frozen  # type: ignore[method-assign]
    guard = threading.Timer(within, give_up)
    guard.start()
    try:
        return await task
    except asyncio.CancelledError:
        if fired.is_set():
            raise AssertionError(f"still waiting after {within:g} s: it waits on a timer") from None
        raise
    finally:
        guard.cancel()
        del loop.time  # the class's own clock again


def count_handshakes(gateway: Gateway) -> Callable[[], int]:
    """Count credential checks on ``gateway`` (one per WebSocket handshake)."""
    calls = [0]
    check = gateway.authenticator.check

    def counting(**kwargs: Any) -> Any:
        calls[0] += 1
        return check(**kwargs)

    gateway.authenticator.check = counting  # type: ignore[method-assign]
    return lambda: calls[0]


def count_upgrades(gateway: Gateway) -> Callable[[], int]:
    """Count WebSocket requests that reached an app on ``gateway``, refused or not."""
    calls = [0]
    take = gateway.registry.take_faults

    def counting(app_id: Any) -> Any:
        calls[0] += 1
        return take(app_id)

    gateway.registry.take_faults = counting  # type: ignore[method-assign]
    return lambda: calls[0]


class FramesRead:
    """Count the data frames the gateway's WebSocket readers take off their sockets.

    A signal instead of a sleep: once ``until(n)`` returns, the gateway has read ``n``
    frames (and acted on each: its reader handles a frame before it reads the next).
    ``pongs`` counts the pings the gateway answered.
    """

    def __init__(self, monkeypatch: Any) -> None:
        from aiohttp import web

        self.count = 0
        self.pongs = 0
        self._changed = asyncio.Event()
        receive, pong = web.WebSocketResponse.receive, web.WebSocketResponse.pong

        async def answering(ws: web.WebSocketResponse, message: bytes = b"") -> None:
            self.pongs += 1
            self._changed.set()
            await pong(ws, message)

        monkeypatch.setattr(web.WebSocketResponse, "pong", answering)

        async def counting(ws: web.WebSocketResponse, *args: Any, **kwargs: Any) -> Any:
            msg = await receive(ws, *args, **kwargs)
            if msg.type in (aiohttp.WSMsgType.BINARY, aiohttp.WSMsgType.TEXT):
                self.count += 1
                self._changed.set()
            return msg

        monkeypatch.setattr(web.WebSocketResponse, "receive", counting)

    async def until(self, count: int = 0, *, pongs: int = 0) -> None:
        """Wait (bounded) until the gateway has read ``count`` data frames and sent ``pongs``."""
        async with asyncio.timeout(WAIT):
            while self.count < count or self.pongs < pongs:
                self._changed.clear()
                await self._changed.wait()
