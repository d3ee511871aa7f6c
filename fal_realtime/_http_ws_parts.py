"""The pieces of an HTTP-over-WebSocket connection: its sockets, responses, and their reading.

One reader task per socket moves frames into a small bounded queue (so a large body
is never held whole, and a socket that drops while idle is noticed);
:class:`ResponseReader` takes responses off it one at a time, in request order.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Coroutine, Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson
from multidict import CIMultiDictProxy

from ._cycles import release_socket, stop_task
from ._keepalive import PONG_MISSED_CODE, KeepAlive, Watch
from ._protocol.http_ws import Body, End, ResponseAssembler, Start
from ._recorder import Recorder
from .errors import (
    CONNECTION_LOST,
    INTERNAL_ERROR,
    INVALID_INPUT,
    RATE_LIMITED,
    UNAUTHORIZED,
    ConnectionLostError,
    RealtimeError,
    error_for,
)

__all__ = [
    "QUEUE_FRAMES",
    "Lost",
    "Reading",
    "Response",
    "Responses",
    "Socket",
    "error_for_status",
]

#: Frames the reader may hold ahead of the consumer (memory stays bounded).
QUEUE_FRAMES = 16


def error_for_status(
    status: int, body: Any, request_id: str | None, *, what: str = "request"
) -> RealtimeError:
    """Return the RealtimeError for an HTTP error status answered to a request."""
    if status in (401, 403):
        code = UNAUTHORIZED
    elif status == 429:
        code = RATE_LIMITED
    elif status < 500:
        code = INVALID_INPUT
    else:
        code = INTERNAL_ERROR
    detail = body
    if isinstance(body, bytes | bytearray):
        text = bytes(body[:300]).decode("utf-8", "replace")
        try:
            parsed = orjson.loads(body)
            detail = parsed.get("detail", text) if isinstance(parsed, dict) else text
        except orjson.JSONDecodeError:
            detail = text
    return error_for(
        code,
        f"{what} failed with HTTP {status}: {detail}",
        status=status,
        body=body,
        request_id=request_id,
    )


@dataclass(slots=True)
class Response:
    """One whole response: status, headers, body and timings."""

    status: int
    headers: CIMultiDictProxy[str]
    request_id: str
    content: bytes
    time_to_first_byte: float | None = None
    server_time_to_first_byte: float | None = None
    elapsed: float = 0.0
    end: Mapping[str, Any] = field(default_factory=dict)

    @property
    def text(self) -> str:
        """Return the body decoded as UTF-8."""
        return self.content.decode("utf-8", "replace")

    def json(self) -> Any:
        """Return the body parsed as JSON."""
        return orjson.loads(self.content)

    @property
    def ok(self) -> bool:
        """Tell whether the status is below 400."""
        return self.status < 400

    def raise_for_status(self) -> Response:
        """Raise :class:`RealtimeError` when the status is 400 or more; else return self."""
        if self.status >= 400:
            raise error_for_status(self.status, self.content, self.request_id)
        return self


class Lost:
    """The reader's marker: the socket ended."""

    __slots__ = ("close_code", "reason")

    def __init__(self, close_code: int | None, reason: str) -> None:
        self.close_code = close_code
        self.reason = reason


class Socket:
    """One WebSocket, the task reading it, and the requests it still owes answers to."""

    def __init__(
        self,
        ws: aiohttp.ClientWebSocketResponse,
        heartbeat_s: float | None,
        recorder: Recorder | None = None,
    ) -> None:
        self.ws = ws
        #: Writes this socket's frames and end (``record=PATH``); None once it has ended.
        self.recorder = recorder
        self.keepalive = KeepAlive(heartbeat_s)
        self.queue: asyncio.Queue[aiohttp.WSMessage | Lost] = asyncio.Queue(QUEUE_FRAMES)
        self.pending = 0
        self.assembler = ResponseAssembler()
        self.lost: Lost | None = None
        self.reader = asyncio.get_running_loop().create_task(
            self._read(), name="fal-realtime-http-ws-reader"
        )

    @property
    def alive(self) -> bool:
        return self.lost is None and not self.ws.closed

    async def _read(self) -> None:
        keepalive = self.keepalive
        watch: Watch | None = None
        pings: set[asyncio.Task[None]] = set()

        def spawn(coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
            task = asyncio.get_running_loop().create_task(coro, name="fal-realtime-http-ws-ping")
            pings.add(task)
            task.add_done_callback(pings.discard)
            return task

        try:
            async with asyncio.timeout(None) as reading:
                if keepalive.enabled:
                    watch = keepalive.watch(self.ws, reading, spawn)
                lost = await self._receive(keepalive)
        except TimeoutError:
            if not reading.expired():
                raise
            lost = Lost(PONG_MISSED_CODE, keepalive.missed)
            # The cancelled receive() marked it 1006: close() drops the transport at once
            # (bounded: a stalled link may not even take the close frame).
            with contextlib.suppress(Exception):
                async with asyncio.timeout(1.0):
                    await self.ws.close()
        finally:
            if watch is not None:
                watch.stop()
            for task in list(pings):  # a ping in flight: cancelled by stop(), awaited here
                await stop_task(task)
        self.lost = lost
        if self.recorder is not None:
            self.recorder.closed(lost.close_code, by="server")
            self.recorder = None
        await self.queue.put(lost)

    async def _receive(self, keepalive: KeepAlive) -> Lost:
        ws = self.ws
        while True:
            msg = await ws.receive()
            keepalive.heard = True
            if msg.type is aiohttp.WSMsgType.TEXT or msg.type is aiohttp.WSMsgType.BINARY:
                if self.recorder is not None:
                    self.recorder.received(msg.data)
                await self.queue.put(msg)
            elif msg.type is aiohttp.WSMsgType.PING:
                with contextlib.suppress(Exception):  # closing: the next receive says so
                    await ws.pong(msg.data)
            elif msg.type is not aiohttp.WSMsgType.PONG:
                reason = f"{type(msg.data).__name__}: {msg.data}" if msg.data else msg.type.name
                return Lost(ws.close_code, reason)

    def _closing(self) -> None:
        """Record that this side closes the socket (the reader records any other end)."""
        recorder, self.recorder = self.recorder, None
        if recorder is not None:
            recorder.closed(1000, by="client")

    async def close(self) -> None:
        self._closing()
        if not self.ws.closed:
            with contextlib.suppress(Exception):
                await self.ws.close()
        await stop_task(self.reader)
        release_socket(self.ws)

    async def abort(self) -> None:
        """Drop the socket without a close handshake (a response was abandoned)."""
        self._closing()
        await stop_task(self.reader)
        with contextlib.suppress(Exception):
            await self.ws.close(code=1000, message=b"response abandoned")
        release_socket(self.ws)


class Reading:
    """Marks one response being read; a new read abandons an unfinished one."""

    __slots__ = ("done", "socket")

    def __init__(self, socket: Socket) -> None:
        self.socket = socket
        self.done = False


class Responses:
    """The responses a connection's sockets owe, read one at a time, in the order requested.

    The connection has one (composed, not inherited): it holds the live socket and the
    reading in progress. The protocol cannot abort one response: a read cancelled
    mid-response, or a new read while the previous response is unfinished, retires the
    socket (the next ``send`` opens a new one); responses it still owed are lost, never
    resent.
    """

    __slots__ = (
        "_awaiting_frame",
        "_reading",
        "_to_close",
        "last_end",
        "last_start",
        "lost",
        "socket",
    )

    def __init__(self) -> None:
        #: The socket requests are sent on (None until one is opened, or after it retired).
        self.socket: Socket | None = None
        #: Requests whose responses were lost with a retired socket, not yet reported.
        self.lost = 0
        #: The ``start`` and ``end`` frames of the last response read (also after stream()).
        self.last_start: Start | None = None
        self.last_end: End | None = None
        self._reading: Reading | None = None
        self._awaiting_frame = False
        # Sockets retired from synchronous code; closed (and their readers awaited) at
        # the next async entry point or at close().
        self._to_close: list[Socket] = []

    @property
    def pending(self) -> int:
        """Return how many requests were sent whose responses have not been read."""
        live = self.socket.pending if self.socket is not None else 0
        return self.lost + live

    def retire(self) -> None:
        """Retire the live socket (closed at the next :meth:`reap`)."""
        socket, self.socket = self.socket, None
        if socket is not None:
            self._to_close.append(socket)

    async def reap(self) -> None:
        """Close the sockets retired so far (their readers awaited)."""
        while self._to_close:
            await self._to_close.pop().abort()

    async def begin_read(self) -> Reading:
        """Start reading the next response (finishing or retiring an unfinished one first)."""
        if self._awaiting_frame:
            raise RuntimeError(
                "concurrent reads are not allowed: recv(), stream(), events() and request() "
                "read responses in order, one at a time"
            )
        previous = self._reading
        if previous is not None and not previous.done:
            await self._skip_rest(previous)
        await self.reap()
        if self.lost:
            self.lost -= 1
            raise ConnectionLostError(
                CONNECTION_LOST,
                "the connection dropped before this request's response arrived; "
                "it was not resent (it may have been processed)",
            )
        socket = self.socket
        if socket is None or socket.pending == 0:
            raise RuntimeError("no request is waiting for a response: call send() first")
        reading = Reading(socket)
        self._reading = reading
        return reading

    def end_read(self, reading: Reading, *, abandoned: bool = False) -> None:
        """Finish ``reading``: a response left mid-way retires its socket."""
        if not reading.done and not abandoned:
            # Cancelled mid-response: the protocol cannot abort one response, so the
            # socket is out of step; drop it (the next send opens a new one).
            self._drop_socket(reading)

    async def _skip_rest(self, previous: Reading) -> None:
        """Deal with a response left unfinished by a stream() the caller stopped iterating."""
        socket = previous.socket
        if self.socket is not socket or socket.pending <= 1:
            # Nothing else is owed on that socket: dropping it is cheaper than draining.
            self._drop_socket(previous)
            return
        # Later requests wait behind it on this socket: read the rest away to reach them.
        try:
            while not previous.done:
                event = await self._next_event(previous)
                if isinstance(event, End):
                    socket.pending -= 1
                    previous.done = True
        except BaseException:
            self._drop_socket(previous)
            raise

    def _drop_socket(self, reading: Reading) -> None:
        """Retire the reading's socket: responses it still owes are lost (never resent)."""
        reading.done = True
        socket = reading.socket
        if self.socket is socket:
            self.socket = None
            self.lost += max(0, socket.pending - 1)
            socket.pending = 0
            socket.reader.cancel()
            self._to_close.append(socket)

    async def _next_event(self, reading: Reading) -> Start | Body | End:
        if reading.done or reading is not self._reading:
            raise RuntimeError(
                "this response was abandoned (the next one was read, or its socket dropped)"
            )
        socket = reading.socket
        self._awaiting_frame = True
        try:
            item = await socket.queue.get()
        finally:
            self._awaiting_frame = False
        if isinstance(item, Lost):
            self._drop_socket(reading)
            raise ConnectionLostError(
                CONNECTION_LOST,
                f"the connection dropped mid-response ({item.reason}); the request was not resent",
            )
        try:
            return socket.assembler.feed(item.data)
        except RealtimeError:
            self._drop_socket(reading)
            raise

    async def start(self, reading: Reading) -> Start:
        """Return the response's start frame."""
        event = await self._next_event(reading)
        if not isinstance(event, Start):  # the assembler refuses body/end before start
            raise RealtimeError(INTERNAL_ERROR, "expected a start frame")
        self.last_start = event
        self.last_end = None
        return event

    async def body(self, reading: Reading) -> AsyncIterator[bytes]:
        """Yield the response's body chunks until its end frame."""
        while True:
            event = await self._next_event(reading)
            if isinstance(event, Body):
                yield event.data
                continue
            if isinstance(event, End):
                self.last_end = event
                reading.socket.pending -= 1
                reading.done = True
                return
            raise RealtimeError(INTERNAL_ERROR, "a start frame arrived inside a response")
