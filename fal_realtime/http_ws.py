"""HTTP over WebSockets: ``async with fal_realtime.ws(app) as conn:``.

Each ``send(payload)`` is one request (a JSON text frame); the server answers each
with ``start``, body frames and ``end``, one response after another in the order the
requests were sent, so several may be sent before reading (pipelining).

    async with fal_realtime.ws("fal-ai/any-llm") as conn:
        response = await conn.request({"prompt": "hi"})
        print(response.json())

One reader task per socket moves frames into a small bounded queue (so a large body
is never held whole, and a socket that drops while idle is noticed). The protocol
cannot abort one response: cancelling a ``recv()``/``stream()`` mid-response, or
starting to read the next response before the previous one was read to its end,
closes the socket, and the next ``send`` opens a new one. Requests whose responses
were lost with a socket are never resent; their ``recv()`` raises ``CONNECTION_LOST``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import ssl
import time
from collections.abc import AsyncGenerator
from types import TracebackType
from typing import Any

import aiohttp
import orjson
import yarl
from multidict import CIMultiDict, CIMultiDictProxy

from ._auth import MISSING_KEY_MESSAGE, resolve_key
from ._http_ws_parts import Response, Responses, Socket, error_for_status
from ._policy import ReconnectPolicy
from ._protocol.apps import AppId, http_ws_url, redact_url, resolve_base
from ._protocol.http_ws import End, Start
from ._protocol.session import retryable
from ._protocol.sse import SSEParser
from ._recorder import Recorder
from ._telemetry import Telemetry, for_ws
from ._transport import DEFAULT_MAX_FRAME_BYTES, SessionLease, open_socket, send_failed
from ._validate import check_count, check_seconds
from .errors import (
    CONNECTION_LOST,
    INVALID_INPUT,
    UNAUTHORIZED,
    ConnectionLostError,
    RealtimeError,
    UnauthorizedError,
)

__all__ = ["HttpWsConnection", "Response", "ws"]


class HttpWsConnection:
    """One HTTP-over-WebSocket connection to an app; see :func:`ws`.

    It has its sockets' :class:`~fal_realtime._http_ws_parts.Responses` (the live socket
    and the responses it owes, read in order) and opens sockets per its retry policy.
    """

    def __init__(
        self,
        app: AppId,
        *,
        path: str,
        url_base: str,
        key: str,
        policy: ReconnectPolicy | None,
        max_frame_bytes: int,
        open_timeout_s: float,
        heartbeat_s: float | None,
        ssl_context: ssl.SSLContext | None,
        session: aiohttp.ClientSession | None = None,
        recorder: Recorder | None = None,
        telemetry: Telemetry | None = None,
    ) -> None:
        self.app = app
        self._recorder = recorder
        self._path = path
        self._url = http_ws_url(app, base=url_base, path=path)
        self._key = key
        self._policy = policy
        self._max_frame_bytes = max_frame_bytes
        self._open_timeout_s = open_timeout_s
        self._heartbeat_s = heartbeat_s
        self._ssl_context = ssl_context
        self._lease = SessionLease(session)
        self._responses = Responses()
        self._request_lock = asyncio.Lock()
        self._closed = False
        url = yarl.URL(self._url)
        self._telemetry = for_ws(telemetry, app, (url.host, url.port))

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open" if self._responses.socket else "idle"
        return f"<HttpWsConnection url={redact_url(self._url)!r} {state}>"

    async def __aenter__(self) -> HttpWsConnection:
        try:
            await self.open()
        except BaseException:
            await self.close()  # __aexit__ does not run when __aenter__ raises
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    @property
    def pending(self) -> int:
        """Return how many requests were sent whose responses have not been read."""
        return self._responses.pending

    @property
    def last_start(self) -> Start | None:
        """Return the ``start`` frame of the last response read (also after ``stream()``)."""
        return self._responses.last_start

    @property
    def last_end(self) -> End | None:
        """Return the ``end`` frame of the last response read (also after ``stream()``)."""
        return self._responses.last_end

    async def open(self) -> None:
        """Open the socket now (``send`` opens one when needed)."""
        self._check_open()
        await self._responses.reap()
        socket = self._responses.socket
        if socket is None or not socket.alive:
            await self._reconnect()

    async def close(self) -> None:
        """Close the socket and stop its reader. Idempotent."""
        self._closed = True
        self._responses.retire()
        await self._responses.reap()
        await self._lease.release()

    # -- requests ---------------------------------------------------------------------

    async def send(self, payload: Any) -> None:
        """Send one request: ``payload`` as a JSON text frame.

        Args:
            payload: the request body, any JSON value.

        Raises:
            TypeError: ``payload`` cannot be encoded as JSON (nothing is sent).
            RealtimeError: ``INVALID_INPUT`` when it is over ``max_frame_bytes``;
                ``UNAUTHORIZED`` or ``CONNECTION_LOST`` when no socket can be opened.
        """
        self._check_open()
        try:
            frame = orjson.dumps(payload).decode()
        except TypeError as exc:
            raise TypeError(f"payload cannot be encoded as JSON: {exc}") from exc
        if len(frame) > self._max_frame_bytes:
            raise RealtimeError(
                INVALID_INPUT,
                f"payload encodes to {len(frame)} bytes, over max_frame_bytes="
                f"{self._max_frame_bytes}",
            )
        await self._responses.reap()
        socket = self._responses.socket
        if socket is None or not socket.alive:
            socket = await self._reconnect()
        try:
            await socket.ws.send_str(frame)
        except send_failed:
            # The socket died between requests; nothing was sent, so it is safe to retry once.
            if socket.pending:
                raise ConnectionLostError(
                    CONNECTION_LOST, "the connection dropped while requests were in flight"
                ) from None
            socket = await self._reconnect()
            await socket.ws.send_str(frame)
        if socket.recorder is not None:
            socket.recorder.sent(frame)
        socket.pending += 1

    async def recv(self) -> bytes:
        """Return the next response's whole body; raise ``RealtimeError`` on status >= 400."""
        start, chunks, end = await self._read_whole()
        body = b"".join(chunks)
        error = None
        if start.status >= 400:
            error = error_for_status(start.status, body, start.request_id)
        if self._telemetry is not None:
            self._telemetry.response(start.status, error)
        if error is not None:
            raise error
        return body

    async def request(self, payload: Any) -> Response:
        """Send ``payload`` and return its whole :class:`Response` (no raise on 4xx/5xx).

        Args:
            payload: the request body, any JSON value (sent as one text frame).
        """
        if self._telemetry is None:
            return await self._request(payload)
        with self._telemetry.request() as record:  # a span, a count, the time to first byte
            response = await self._request(payload)
            record.status, record.time_to_first_byte = response.status, response.time_to_first_byte
            if response.status >= 400:
                record.error = error_for_status(
                    response.status, response.content, response.request_id
                )
        return response

    async def _request(self, payload: Any) -> Response:
        async with self._request_lock:
            sent = time.perf_counter()
            await self.send(payload)
            first: list[float] = []
            start, chunks, end = await self._read_whole(first_byte=first)
        now = time.perf_counter()
        return Response(
            status=start.status,
            headers=CIMultiDictProxy(CIMultiDict(start.headers)),
            request_id=start.request_id,
            content=b"".join(chunks),
            time_to_first_byte=(first[0] - sent) if first else None,
            server_time_to_first_byte=end.time_to_first_byte_seconds,
            elapsed=now - sent,
            end=end.raw,
        )

    async def stream(self) -> AsyncGenerator[bytes, None]:
        """Yield the next response's body chunks as they arrive (text frames as UTF-8).

        A status >= 400 raises ``RealtimeError`` (with the error body) before any chunk.
        """
        self._check_open()
        responses = self._responses
        reading = await responses.begin_read()
        abandoned = False
        try:
            start = await responses.start(reading)
            if start.status >= 400:
                chunks = [chunk async for chunk in responses.body(reading)]
                error = error_for_status(start.status, b"".join(chunks), start.request_id)
                if self._telemetry is not None:
                    self._telemetry.response(start.status, error)
                raise error
            if self._telemetry is not None:
                self._telemetry.response(start.status)
            async for chunk in responses.body(reading):
                yield chunk
        except GeneratorExit:
            abandoned = True  # left with break / aclose(): the next read skips the rest
            raise
        finally:
            responses.end_read(reading, abandoned=abandoned)

    async def events(self) -> AsyncGenerator[dict[str, Any], None]:
        """Yield the next response parsed as Server-Sent Events.

        Each event is ``{"event": ..., "data": ..., "id": ...}``; ``data`` is decoded as
        JSON when it is JSON, else left as text. Events split across frames are joined.
        """
        parser = SSEParser()
        async with contextlib.aclosing(self.stream()) as chunks:
            async for chunk in chunks:
                for event in parser.feed(chunk):
                    try:
                        data: Any = orjson.loads(event.data)
                    except orjson.JSONDecodeError:
                        data = event.data
                    yield {"event": event.event, "data": data, "id": event.id}

    # -- reading ----------------------------------------------------------------------

    async def _read_whole(
        self, first_byte: list[float] | None = None
    ) -> tuple[Start, list[bytes], End]:
        self._check_open()
        responses = self._responses
        reading = await responses.begin_read()
        try:
            start = await responses.start(reading)
            chunks = []
            async for chunk in responses.body(reading):
                if first_byte is not None and not first_byte:
                    first_byte.append(time.perf_counter())
                chunks.append(chunk)
            assert responses.last_end is not None
            return start, chunks, responses.last_end
        finally:
            responses.end_read(reading)

    # -- connecting ----------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise ConnectionLostError(
                CONNECTION_LOST, "the connection is closed: open a new one with fal_realtime.ws()"
            )

    async def _reconnect(self) -> Socket:
        responses = self._responses
        old, responses.socket = responses.socket, None
        if old is not None:
            responses.lost += old.pending
            await old.close()
        await responses.reap()
        if self._policy is None:
            ws = await self._open_once()
        else:
            ws = await self._open_with_retries(self._policy)
        socket = responses.socket = Socket(ws, self._heartbeat_s, self._recorder)
        if self._recorder is not None:
            self._recorder.opened(self._url)
        return socket

    async def _open_with_retries(self, policy: ReconnectPolicy) -> aiohttp.ClientWebSocketResponse:
        try:
            return await policy.call(self._open_once, _worth_retrying)
        except RealtimeError as exc:
            if not retryable(exc):
                raise
            raise ConnectionLostError(
                CONNECTION_LOST, f"gave up opening {redact_url(self._url)}: {exc.message}"
            ) from None

    async def _open_once(self) -> aiohttp.ClientWebSocketResponse:
        return await open_socket(
            self._lease.session,
            self._url,
            headers={"Authorization": f"Key {self._key}"},
            max_frame_bytes=self._max_frame_bytes,
            open_timeout_s=self._open_timeout_s,
            ssl_context=self._ssl_context,
        )


def _worth_retrying(exc: BaseException) -> bool:
    return isinstance(exc, RealtimeError) and retryable(exc)


def ws(
    app: str,
    *,
    path: str = "",
    key: str | None = None,
    base_url: str | None = None,
    reconnect: bool | ReconnectPolicy | dict[str, Any] = True,
    max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
    open_timeout_s: float = 30.0,
    heartbeat_s: float | None = 30.0,
    ssl_context: ssl.SSLContext | None = None,
    session: aiohttp.ClientSession | None = None,
    record: str | os.PathLike[str] | None = None,
    telemetry: Telemetry | None = None,
) -> HttpWsConnection:
    """Return an HTTP-over-WebSocket connection to ``app``; use it with ``async with``.

    Args:
        app: the app id, ``owner/alias[/path]`` (e.g. ``"fal-ai/any-llm"``).
        path: a path under the app (e.g. ``"stream"``); not doubled if the id ends with it.
        key: the fal key; else ``FAL_KEY``, else ``FAL_KEY_ID:FAL_KEY_SECRET``. Sent as
            ``Authorization: Key ...``.
        base_url: where to connect, e.g. ``"ws://127.0.0.1:8080"``; else ``FAL_WS_RUN_HOST``,
            else ``wss://ws.fal.run``.
        reconnect: how opening a socket is retried (never a request): True, False, a
            :class:`ReconnectPolicy` or its fields.
        max_frame_bytes: the largest frame sent or accepted (default 64 MiB).
        open_timeout_s: the longest one socket may take to open.
        heartbeat_s: WebSocket ping interval; a missed pong is a lost connection
            (None: no pings).
        ssl_context: TLS context for ``wss://`` (verification stays on by default).
        session: an ``aiohttp.ClientSession`` to use (never closed here); by default the
            connections of one event loop share one, closed with the last of them.
        record: write what the connection sends and receives to this file (one JSON line
            per frame, with timing), for ``Gateway.replay``; headers (the key) never.
        telemetry: where OpenTelemetry metrics and spans go (a
            :class:`~fal_realtime.Telemetry`); by default the global providers when one
            is configured, else nothing is recorded (docs/observability.md).

    Raises:
        ValueError: a bad app id or base URL (before any I/O).
        UnauthorizedError: no key is configured.
    """
    parsed = AppId.parse(app)
    env = os.environ
    resolved = resolve_key(key, env)
    if not resolved:
        raise UnauthorizedError(UNAUTHORIZED, MISSING_KEY_MESSAGE)
    check_count("max_frame_bytes", max_frame_bytes, minimum=1)
    check_seconds("open_timeout_s", open_timeout_s, zero_ok=False)
    check_seconds("heartbeat_s", heartbeat_s, zero_ok=False, none_ok=True)
    return HttpWsConnection(
        parsed,
        path=path,
        url_base=resolve_base("http_ws", base_url, env),
        key=resolved,
        policy=ReconnectPolicy.from_option(reconnect),
        max_frame_bytes=max_frame_bytes,
        open_timeout_s=open_timeout_s,
        heartbeat_s=heartbeat_s,
        ssl_context=ssl_context,
        session=session,
        recorder=None
        if record is None
        else Recorder(record, protocol="http_ws", app=app, path_option=path),
        telemetry=telemetry,
    )
