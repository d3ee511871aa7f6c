"""The realtime client: ``conn = await fal_realtime.connect(app, on_result=...)``.

A :class:`RealtimeConnection` owns two tasks: a *supervisor* that opens sockets,
runs sessions (reader, writer and token refresher in a task group) and decides
what happens when a session ends, and a *dispatcher* that delivers events to the
callbacks in order. ``close()`` cancels and awaits both.

Sessions end often and normally (SPEC §2.1): ``x-fal-error`` TIMEOUT then close
1000 means an idle session ended (state ``dormant``, no error; the next send
reconnects); another ``x-fal-error`` then close 1000 is reported to ``on_error``
and also leaves the connection ``dormant``. A lost socket (no close frame, 1006,
1011, 1012, 1013, a missed pong, a handshake 5xx/429) is retried per the
:class:`~fal_realtime.ReconnectPolicy`; what waits to be sent is kept and goes
out first on the new socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import ssl
import weakref
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import aiohttp

from ._auth import MISSING_KEY_MESSAGE, TokenProvider, TokenSource, resolve_key
from ._cycles import release_socket
from ._dispatch import Callbacks, Dispatcher
from ._outbox import Outbox, Outgoing
from ._policy import (
    RETRYABLE_CLOSE_CODES,
    RETRYABLE_HANDSHAKE_STATUSES,
    RateLimitPacer,
    ReconnectPolicy,
)
from ._protocol.apps import AppId, realtime_url, redact_url, resolve_base, token_url
from ._protocol.codecs import Codec, Encoding, make_codec
from ._protocol.realtime import FrameKind, classify, plain_result
from ._protocol.session import ConnectionState
from .errors import (
    CONNECTION_LOST,
    DECODE_ERROR,
    INVALID_INPUT,
    RATE_LIMITED,
    TIMEOUT,
    UNAUTHORIZED,
    ConnectionLostError,
    RealtimeError,
    UnauthorizedError,
    error_for,
)

__all__ = ["ConnectionState", "RealtimeConnection", "RealtimeStats", "connect"]

log = logging.getLogger("fal_realtime")

DEFAULT_MAX_FRAME_BYTES = 64 * 1024 * 1024
#: How long a new socket waits for an immediate refusal before it counts as open.
REFUSAL_GRACE_S = 0.05
Callback = Callable[..., Any]


_TERMINAL = frozenset({ConnectionState.CLOSED, ConnectionState.FAILED})


@dataclass(slots=True)
class RealtimeStats:
    """Counters of one connection (read them any time; they only grow)."""

    sent: int = 0
    coalesced: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    results: int = 0
    errors: int = 0
    meta: int = 0
    reconnects: int = 0
    last_latency_s: float | None = None

    def drop(self, reason: str, count: int = 1) -> None:
        """Count ``count`` messages dropped for ``reason``."""
        self.dropped[reason] = self.dropped.get(reason, 0) + count


def _count_error(stats: RealtimeStats) -> None:
    stats.errors += 1


class _Retryable(Exception):
    """A failure worth another attempt under the reconnect policy."""

    def __init__(self, error: RealtimeError) -> None:
        super().__init__(str(error))
        self.error = error


@dataclass(slots=True)
class _SessionEnd:
    close_code: int | None = None
    saw_timeout: bool = False
    saw_error: bool = False
    saw_unauthorized: bool = False
    proven: bool = False
    cause: str = ""


_Outcome = Literal["dormant", "lost"]

# connection_key -> connection, per event loop; forgotten when a connection ends.
_registry: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, RealtimeConnection]] = (
    weakref.WeakKeyDictionary()
)


class RealtimeConnection:
    """A realtime connection to one fal app; see :func:`connect`."""

    def __init__(
        self,
        app: AppId,
        *,
        callbacks: Callbacks,
        url_base: str,
        path: str,
        max_buffering: int | None,
        extra_query: Mapping[str, str] | None,
        tokens: TokenSource | None,
        key: str | None,
        codec: Codec,
        throttle_interval: float,
        coalesce: bool,
        max_pending: int,
        max_backlog: int,
        policy: ReconnectPolicy | None,
        heartbeat_s: float | None,
        max_frame_bytes: int,
        open_timeout_s: float,
        close_timeout_s: float,
        ssl_context: ssl.SSLContext | None,
        connection_key: str | None,
    ) -> None:
        self.app = app
        self.connection_key = connection_key
        self._url_base = url_base
        self._path = path
        self._max_buffering = max_buffering
        self._extra_query = dict(extra_query or {})
        self._tokens = tokens
        self._key = key
        self._codec = codec
        self._policy = policy
        self._heartbeat_s = heartbeat_s
        self._max_frame_bytes = max_frame_bytes
        self._open_timeout_s = open_timeout_s
        self._close_timeout_s = close_timeout_s
        self.stats = RealtimeStats()
        self._state = ConnectionState.CONNECTING
        self._pacer = RateLimitPacer(throttle_interval)
        # throttle_interval=0 sends each message at once: nothing to coalesce.
        self._outbox = Outbox(coalesce=coalesce and throttle_interval > 0, max_pending=max_pending)
        self._loop = asyncio.get_running_loop()
        self._next_send_at = 0.0
        self._last_send_at: float | None = None
        self._unauthorized_streak = 0
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._wanted = asyncio.Event()
        self._opened: asyncio.Future[None] = self._loop.create_future()
        self._failure: RealtimeError | None = None
        self._closing = False
        self._closer: asyncio.Task[None] | None = None
        self._confirmed = False
        connector = aiohttp.TCPConnector(ssl=ssl_context if ssl_context is not None else True)
        self._http = aiohttp.ClientSession(connector=connector)
        self._dispatcher = Dispatcher(
            callbacks,
            max_backlog=max_backlog,
            on_drop=self.stats.drop,
            # Not a bound method: the dispatcher must not hold the connection, or the two
            # would form a cycle that only a full GC pass frees after close().
            on_callback_error=functools.partial(_count_error, self.stats),
            name=f"fal-realtime-dispatch[{app}]",
        )
        self._supervisor: asyncio.Task[None] | None = None

    # -- public API ------------------------------------------------------------------

    @property
    def state(self) -> ConnectionState:
        """Return the connection's state."""
        return self._state

    @property
    def throttle_interval(self) -> float:
        """Return the interval between sends in force now (raised after RATE_LIMITED)."""
        return self._pacer.interval(self._loop.time())

    @property
    def closed(self) -> bool:
        """Tell whether the connection is closed or failed (it cannot be used again)."""
        return self._state in _TERMINAL

    def __repr__(self) -> str:
        return f"<RealtimeConnection app={str(self.app)!r} state={self._state.value}>"

    async def __aenter__(self) -> RealtimeConnection:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def send(self, payload: Mapping[str, Any]) -> None:
        """Queue ``payload`` (a map) to be sent, respecting the throttle.

        In latest-wins mode (the default) a payload replaces one still waiting for
        its turn, and this returns at once; with ``coalesce=False`` it waits while
        the queue is full. A dormant connection reconnects.

        Raises:
            TypeError: ``payload`` is not a map.
            RealtimeError: ``INVALID_INPUT`` when it cannot be encoded or is too large
                (nothing is sent, the connection is unharmed); the connection's
                failure when it has failed; ``CONNECTION_LOST`` after ``close()``.
        """
        item = self._prepare(payload)
        if self._can_send_now():
            ws = self._ws
            assert ws is not None
            if not await self._write(ws, item):
                self._wanted.set()
            return
        if self._outbox.coalesce:
            if self._outbox.put_latest(item):
                self.stats.coalesced += 1
        else:
            await self._outbox.put(item)
            self._check_usable()  # closed while waiting for room
        self._wanted.set()

    def send_nowait(self, payload: Mapping[str, Any]) -> None:
        """Queue ``payload`` without waiting; raise ``asyncio.QueueFull`` when the queue is full."""
        item = self._prepare(payload)
        if self._outbox.coalesce:
            if self._outbox.put_latest(item):
                self.stats.coalesced += 1
        else:
            self._outbox.put_nowait(item)
        self._wanted.set()

    def results(self) -> AsyncIterator[Any]:
        """Iterate over results as they arrive (ends when the connection closes)."""
        return self._dispatcher.subscribe_results().__aiter__()

    def states(self) -> AsyncIterator[ConnectionState]:
        """Iterate over state changes as they happen (ends when the connection closes)."""
        return self._dispatcher.subscribe_states().__aiter__()

    async def wait_open(self) -> None:
        """Return once the connection has opened a socket; raise its failure if it failed."""
        self._start()
        self._wanted.set()
        await asyncio.shield(self._opened)

    async def close(self) -> None:
        """Close the connection: drop what waits to be sent, stop all tasks. Idempotent.

        The closing runs in one task owned by the connection: if the caller is
        cancelled meanwhile, the close still completes, and any later ``close()``
        waits for it.
        """
        if self._closer is None:
            self._closing = True
            self._closer = self._loop.create_task(self._close(), name="fal-realtime-close")
        await asyncio.shield(self._closer)

    async def _close(self) -> None:
        _forget(self)
        if dropped := self._outbox.clear():
            self.stats.drop("closed", dropped)
        ws = self._ws
        if ws is not None and not ws.closed:
            # Close from here while the reader still waits: aiohttp then completes a clean
            # close handshake (1000); cancelling the reader first would make it abnormal.
            with contextlib.suppress(Exception):
                await ws.close()
            self._dispatcher.emit("on_close", ws.close_code)
            release_socket(ws)
        if self._supervisor is not None:
            self._supervisor.cancel()
            await asyncio.gather(self._supervisor, return_exceptions=True)
        if not self._opened.done():
            self._opened.set_exception(
                ConnectionLostError(CONNECTION_LOST, "the connection was closed while opening")
            )
            self._opened.exception()
        if self._state is not ConnectionState.FAILED:
            self._set_state(ConnectionState.CLOSED)
        await self._dispatcher.stop(drain_timeout_s=self._close_timeout_s)
        await self._http.close()

    # -- internals: API helpers --------------------------------------------------------

    def _replace_callbacks(self, callbacks: Callbacks) -> None:
        self._dispatcher.callbacks = callbacks

    def _check_usable(self) -> None:
        if self._state is ConnectionState.FAILED and self._failure is not None:
            raise error_for(
                self._failure.code,
                f"the connection failed earlier ({self._failure.message}); "
                "open a new one with fal_realtime.connect()",
            )
        if self._closing:
            raise ConnectionLostError(
                CONNECTION_LOST,
                "send() after close(): open a new connection with fal_realtime.connect()",
            )

    def _prepare(self, payload: Mapping[str, Any]) -> Outgoing:
        if type(payload) is not dict and not isinstance(payload, Mapping):
            raise TypeError(f"payload must be a map (e.g. a dict), not {type(payload).__name__}")
        if self._closing or self._failure is not None:
            self._check_usable()
        if self._supervisor is None:
            self._start()
        try:
            # A dict goes to the encoder as is; other mappings are copied into one.
            encoded = self._codec.encode(payload if type(payload) is dict else dict(payload))
        except (TypeError, ValueError, OverflowError) as exc:
            raise RealtimeError(INVALID_INPUT, f"cannot encode payload: {exc}") from exc
        if type(encoded) is not bytes:
            if not isinstance(encoded, bytearray | memoryview):
                raise RealtimeError(INVALID_INPUT, "encode_message must return bytes")
            encoded = bytes(encoded)
        if len(encoded) > self._max_frame_bytes:
            raise RealtimeError(
                INVALID_INPUT,
                f"payload encodes to {len(encoded)} bytes, over max_frame_bytes="
                f"{self._max_frame_bytes}; send less (e.g. upload media and send a URL)",
            )
        return Outgoing(encoded if self._codec.binary else encoded.decode())

    def _can_send_now(self) -> bool:
        """Tell whether a send may skip the outbox: socket up, nothing queued, interval over."""
        ws = self._ws
        return (
            ws is not None
            and not ws.closed
            and not self._outbox
            and (not self._next_send_at or self._loop.time() >= self._next_send_at)
        )

    async def _write(self, ws: aiohttp.ClientWebSocketResponse, item: Outgoing) -> bool:
        """Send one frame; on a dying socket keep it for the next one.

        No lock is needed between the direct path and the writer: an uncompressed frame
        is handed to the transport before ``send_bytes`` first awaits, and the interval
        is reserved before that too, so frames leave in order and on schedule.
        """
        now = self._loop.time()
        interval = self._pacer.interval(now)
        self._next_send_at = now + interval if interval > 0 else 0.0
        try:
            if isinstance(item.frame, bytes):
                await ws.send_bytes(item.frame)
            else:
                await ws.send_str(item.frame)
        except (ConnectionError, RuntimeError, aiohttp.ClientError):
            if not self._outbox.push_front(item):
                self.stats.coalesced += 1
            return False
        self.stats.sent += 1
        self._last_send_at = now
        return True

    def _start(self) -> None:
        if self._supervisor is None and not self._closing:
            self._supervisor = self._loop.create_task(
                self._supervise(), name=f"fal-realtime-supervisor[{self.app}]"
            )

    def _set_state(self, state: ConnectionState) -> None:
        if state is self._state:
            return
        self._state = state
        self._dispatcher.emit("on_state_change", state)

    def _report(self, error: RealtimeError) -> None:
        self.stats.errors += 1
        self._dispatcher.emit("on_error", error)

    # -- internals: the supervisor ---------------------------------------------------------

    async def _supervise(self) -> None:
        try:
            while True:
                await self._wanted.wait()
                if self._closing:
                    return
                try:
                    outcome = await self._outage()
                except _Retryable as exc:
                    error = exc.error
                    message = f"gave up reconnecting: {error.message}"
                    self._fail(ConnectionLostError(CONNECTION_LOST, message, status=error.status))
                    return
                except RealtimeError as error:
                    self._fail(error)
                    return
                if self._closing:
                    return
                if outcome == "dormant":
                    self._set_state(ConnectionState.DORMANT)
                    if not len(self._outbox):
                        self._wanted.clear()
                else:
                    self._set_state(ConnectionState.RECONNECTING)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug: fail loudly rather than hang
            log.exception("fal_realtime: supervisor crashed")
            self._fail(RealtimeError(CONNECTION_LOST, f"internal error: {exc!r}"))

    def _fail(self, error: RealtimeError) -> None:
        self._failure = error
        _forget(self)
        self._report(error)
        self._set_state(ConnectionState.FAILED)
        if dropped := self._outbox.clear():
            self.stats.drop("failed", dropped)
        if not self._opened.done():
            self._opened.set_exception(error)
            self._opened.exception()

    async def _outage(self) -> _Outcome:
        """Open sessions until one ends settled, retrying per the policy."""
        if self._policy is None:
            try:
                outcome = await self._session()
            except _Retryable as exc:
                raise exc.error from None
            if outcome == "lost":
                raise ConnectionLostError(
                    CONNECTION_LOST, "the socket was lost and reconnect=False"
                )
            return outcome
        return await self._policy.call(
            self._session, lambda exc: isinstance(exc, _Retryable), self._before_retry
        )

    def _before_retry(self, retry_state: Any) -> None:
        if self._state is not ConnectionState.CONNECTING:
            self._set_state(ConnectionState.RECONNECTING)
        outcome = retry_state.outcome
        cause = outcome.exception() if outcome is not None else None
        log.info(
            "fal_realtime: %s: attempt %d failed (%s); retrying",
            self.app,
            retry_state.attempt_number,
            cause,
        )

    async def _open_socket(self) -> aiohttp.ClientWebSocketResponse:
        headers: dict[str, str] = {}
        token: str | None = None
        if self._tokens is not None:
            try:
                token = await self._tokens.get(self._http)
            except RealtimeError as exc:
                # A token endpoint that is down, overloaded or slow is an outage like any
                # other; a refused key or an unusable answer is final.
                if exc.code in (CONNECTION_LOST, RATE_LIMITED, TIMEOUT):
                    raise _Retryable(exc) from None
                raise
        elif self._key:
            headers["Authorization"] = f"Key {self._key}"
        else:
            raise error_for(UNAUTHORIZED, MISSING_KEY_MESSAGE)
        url = realtime_url(
            self.app,
            base=self._url_base,
            path=self._path,
            token=token,
            max_buffering=self._max_buffering,
            extra_query=self._extra_query,
        )
        try:
            return await self._http.ws_connect(
                url,
                headers=headers,
                heartbeat=self._heartbeat_s,
                max_msg_size=self._max_frame_bytes,
                compress=0,
                timeout=aiohttp.ClientWSTimeout(ws_close=self._close_timeout_s),
            )
        except aiohttp.WSServerHandshakeError as exc:
            raise self._handshake_error(exc.status, url, token) from None
        except aiohttp.ClientConnectorCertificateError as exc:
            raise ConnectionLostError(
                CONNECTION_LOST,
                f"TLS certificate of {exc.host} was not trusted: pass ssl_context= with a "
                "context that trusts it (verification stays on)",
            ) from None
        except (aiohttp.ClientError, OSError) as exc:
            raise _Retryable(
                ConnectionLostError(
                    CONNECTION_LOST, f"cannot reach {redact_url(url)}: {type(exc).__name__}"
                )
            ) from None

    def _handshake_error(self, status: int, url: str, token: str | None) -> Exception:
        where = redact_url(url)
        if status in (401, 403):
            return self._unauthorized(token, f"handshake refused with HTTP {status}")
        if status in RETRYABLE_HANDSHAKE_STATUSES:
            code = RATE_LIMITED if status == 429 else CONNECTION_LOST
            return _Retryable(
                error_for(code, f"handshake with {where} failed: HTTP {status}", status=status)
            )
        if status == 404:
            return RealtimeError(
                INVALID_INPUT,
                f"no realtime app at {where} (HTTP 404): check the app id and path",
                status=status,
            )
        return RealtimeError(
            INVALID_INPUT, f"handshake with {where} refused: HTTP {status}", status=status
        )

    def _unauthorized(self, token: str | None, what: str) -> Exception:
        if self._tokens is not None:
            self._tokens.invalidate(token)
        self._unauthorized_streak += 1
        if self._unauthorized_streak >= 2 or self._tokens is None:
            return UnauthorizedError(
                UNAUTHORIZED,
                f"{what}, twice in a row: check the key (FAL_KEY) and the app's permissions"
                if self._tokens is not None
                else f"{what}: check the key (FAL_KEY)",
            )
        return _Retryable(UnauthorizedError(UNAUTHORIZED, f"{what}; retrying with a new token"))

    async def _session(self) -> _Outcome:
        """Open one socket and run it to its end; return how it settled or raise to retry."""
        try:
            async with asyncio.timeout(self._open_timeout_s):
                ws = await self._open_socket()
        except TimeoutError:
            raise _Retryable(
                error_for(CONNECTION_LOST, f"opening the socket took over {self._open_timeout_s} s")
            ) from None
        opened_at = self._loop.time()
        self._ws = ws
        self._confirmed = False
        # A new socket has sent nothing yet: its first frame need not wait out the
        # interval the old socket started.
        self._next_send_at = 0.0
        token = self._token_in_use()
        end = _SessionEnd()
        try:
            async with asyncio.TaskGroup() as group:
                writer = group.create_task(self._write_loop(ws), name="fal-realtime-writer")
                refresher = group.create_task(self._refresh_loop(), name="fal-realtime-refresh")
                confirm = group.create_task(self._confirm_later(), name="fal-realtime-confirm")
                try:
                    end = await self._read_loop(ws)
                finally:
                    writer.cancel()
                    refresher.cancel()
                    confirm.cancel()
        finally:
            self._ws = None
            if not self._closing:  # close() closes the socket itself and reports it
                if not ws.closed:
                    with contextlib.suppress(Exception):
                        await ws.close()
                if self._confirmed:
                    self._dispatcher.emit("on_close", ws.close_code)
                release_socket(ws)
        if self._closing:
            return "dormant"
        stayed = self._loop.time() - opened_at
        proven = end.proven or (self._policy is not None and stayed >= self._policy.stable_after_s)
        if proven:
            self._unauthorized_streak = 0
        if end.saw_unauthorized:
            raise self._unauthorized(token, "the server refused the token (Unauthorized)")
        pending = len(self._outbox) > 0
        if end.close_code == 1009:
            self._report(
                RealtimeError(
                    INVALID_INPUT,
                    "the server closed the socket: a frame was too big (1009)",
                )
            )
        normal = end.close_code in (1000, 1009) or end.saw_timeout or end.saw_error
        if normal and (proven or not pending):
            return "dormant"
        if proven:
            return "lost"
        cause = end.cause or f"close code {end.close_code}"
        raise _Retryable(
            error_for(CONNECTION_LOST, f"the socket ended before it proved itself ({cause})")
        )

    async def _confirm_later(self) -> None:
        # fal's edge refuses a token right after accepting the socket; give that refusal
        # a moment to arrive before calling the socket open (any frame confirms sooner).
        await asyncio.sleep(REFUSAL_GRACE_S)
        self._confirm_open()

    def _confirm_open(self) -> None:
        """Declare the current socket open: state, on_open, and connect() returns."""
        if self._confirmed or self._closing:
            return
        self._confirmed = True
        if self._opened.done():
            self.stats.reconnects += 1
        self._set_state(ConnectionState.OPEN)
        self._dispatcher.emit("on_open")
        if not self._opened.done():
            self._opened.set_result(None)

    def _token_in_use(self) -> str | None:
        return None if self._tokens is None else self._tokens.current()

    # -- internals: per-session tasks ------------------------------------------------------

    async def _write_loop(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        outbox, loop = self._outbox, self._loop
        while True:
            await outbox.wait_nonempty()
            wait = self._next_send_at - loop.time()
            if wait > 0:
                # Inside the interval: sleep to its end, then send whatever is newest.
                await asyncio.sleep(wait)
                continue
            if not await self._write(ws, outbox.pop()):
                return  # the socket is going away; the frame waits for the next one

    async def _refresh_loop(self) -> None:
        tokens = self._tokens
        if tokens is None:
            return
        while True:
            due = tokens.refresh_due_in()
            await asyncio.sleep(due if due is not None else 60.0)
            try:
                await tokens.get(self._http)
            except (RealtimeError, aiohttp.ClientError) as exc:
                log.info("fal_realtime: token refresh for %s failed: %s", self.app, exc)
                await asyncio.sleep(5.0)

    async def _read_loop(self, ws: aiohttp.ClientWebSocketResponse) -> _SessionEnd:
        end = _SessionEnd()
        codec, dispatcher, stats = self._codec, self._dispatcher, self.stats
        decode, fast = codec.decode, not codec.custom_decode
        while True:
            msg = await ws.receive()
            if msg.type is aiohttp.WSMsgType.BINARY or msg.type is aiohttp.WSMsgType.TEXT:
                if fast and msg.type is aiohttp.WSMsgType.BINARY:
                    # Hot path: a binary map that is plainly a result skips classification.
                    try:
                        value = decode(msg.data)
                    except Exception:
                        value = None
                    if plain_result(value):
                        self._on_result(value, end)
                        continue
                frame = classify(msg.data, decode, custom_decode=codec.custom_decode)
                kind = frame.kind
                if kind is not FrameKind.UNAUTHORIZED and not self._confirmed:
                    self._confirm_open()
                if kind is FrameKind.RESULT:
                    self._on_result(frame.value, end)
                elif kind is FrameKind.META:
                    stats.meta += 1
                    dispatcher.emit("on_meta", frame.value)
                elif kind is FrameKind.TIMEOUT:
                    end.saw_timeout = end.proven = True
                elif kind is FrameKind.ERROR:
                    end.proven = True
                    code = frame.code or "UNKNOWN_ERROR"
                    if code == RATE_LIMITED:
                        self._pacer.rate_limited(self._loop.time())
                    else:
                        end.saw_error = True
                    message = frame.reason or code
                    self._report(error_for(code, message, body=frame.value))
                elif kind is FrameKind.UNAUTHORIZED:
                    end.saw_unauthorized = True
                else:
                    self._report(RealtimeError(DECODE_ERROR, frame.reason or "undecodable frame"))
                continue
            if msg.type is aiohttp.WSMsgType.ERROR:
                end.cause = f"{type(msg.data).__name__}: {msg.data}"
                if ws.close_code == 1009 or "1009" in str(msg.data):
                    end.close_code = 1009
                    return end
            end.close_code = ws.close_code
            if end.close_code in RETRYABLE_CLOSE_CODES and not end.cause:
                end.cause = f"close code {end.close_code}"
            return end

    def _on_result(self, value: Any, end: _SessionEnd) -> None:
        if not self._confirmed:
            self._confirm_open()
        self.stats.results += 1
        end.proven = True
        if self._last_send_at is not None:
            self.stats.last_latency_s = self._loop.time() - self._last_send_at
            self._last_send_at = None
        self._dispatcher.result(value)


def _forget(conn: RealtimeConnection) -> None:
    if conn.connection_key is None:
        return
    keyed = _registry.get(conn._loop)
    if keyed is not None and keyed.get(conn.connection_key) is conn:
        del keyed[conn.connection_key]


async def connect(
    app: str,
    *,
    on_result: Callback | None = None,
    on_error: Callback | None = None,
    on_open: Callback | None = None,
    on_close: Callback | None = None,
    on_state_change: Callback | None = None,
    on_meta: Callback | None = None,
    connection_key: str | None = None,
    throttle_interval: float = 0.064,
    coalesce: bool = True,
    max_pending: int = 64,
    max_backlog: int = 1024,
    max_buffering: int | None = None,
    path: str = "/realtime",
    key: str | None = None,
    token_provider: TokenProvider | None = None,
    token_expiration: int = 120,
    use_jwt: bool = True,
    reconnect: bool | ReconnectPolicy | dict[str, Any] = True,
    encoding: Encoding = "msgpack",
    encode_message: Callable[[Any], bytes] | None = None,
    decode_message: Callable[[bytes], Any] | None = None,
    base_url: str | None = None,
    lazy: bool = False,
    heartbeat_s: float | None = 30.0,
    max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
    open_timeout_s: float = 30.0,
    close_timeout_s: float = 5.0,
    ssl_context: ssl.SSLContext | None = None,
    query: Mapping[str, str] | None = None,
) -> RealtimeConnection:
    """Open a realtime connection to ``app`` and return it once its socket is up.

    Args:
        app: the app id, ``owner/alias[/path]`` (e.g. ``"fal-ai/flux-lora-realtime"``).
        on_result: called with each result (a dict), in arrival order.
        on_error: called with each :class:`RealtimeError` (server errors, callback errors,
            the final failure).
        on_open, on_close: called when a socket opens / closes (``on_close(code)``).
        on_state_change: called with each new :class:`ConnectionState`.
        on_meta: called with ``x-fal-message`` frames (e.g. timings).
        connection_key: a live connection with this key is returned instead (its
            callbacks replaced by these); the key is forgotten when it closes.
        throttle_interval: seconds between sends (0: send each at once).
        coalesce: latest wins within an interval (default); False paces every message
            through a queue of ``max_pending`` and ``send`` waits when it is full.
        max_backlog: results waiting for slow callbacks before the oldest is dropped.
        max_buffering: ask the server to keep at most this many pending inputs (1..60).
        key: the fal key; else ``FAL_KEY``, else ``FAL_KEY_ID:FAL_KEY_SECRET``.
        token_provider: ``(app) -> token`` (sync or async) replacing the token fetch.
        token_expiration: requested token lifetime in seconds.
        use_jwt: authenticate with a short-lived token (default) or the ``Key`` header.
        reconnect: True (default policy), False, a :class:`ReconnectPolicy` or its fields.
        encoding: ``"msgpack"`` (binary frames) or ``"json"`` (text frames).
        base_url: where to connect, e.g. ``"ws://127.0.0.1:8080"``; else ``FAL_RUN_HOST``.
        lazy: return at once and open the socket on the first ``send``.
        heartbeat_s: WebSocket ping interval; a missed pong is a lost connection.
        max_frame_bytes: the largest frame sent or accepted (default 64 MiB).
        ssl_context: TLS context for ``wss://`` (verification stays on by default).
        query: extra query parameters for the realtime URL (e.g. the local gateway's
            ``fal_faults``).

    Raises:
        ValueError, TypeError: bad arguments (before any I/O).
        RealtimeError: the connection could not be opened (``UNAUTHORIZED``,
            ``CONNECTION_LOST`` after the retries, ``INVALID_INPUT`` for an unknown app).
    """
    parsed = AppId.parse(app)
    if not isinstance(throttle_interval, int | float) or throttle_interval < 0:
        raise ValueError(
            f"throttle_interval must be a number of seconds >= 0, got {throttle_interval!r}"
        )
    if max_buffering is not None:
        from ._protocol.apps import validate_max_buffering

        validate_max_buffering(max_buffering)
    if max_frame_bytes <= 0:
        raise ValueError(f"max_frame_bytes must be > 0, got {max_frame_bytes}")
    if max_backlog < 1:
        raise ValueError(f"max_backlog must be >= 1, got {max_backlog}")
    policy = ReconnectPolicy.from_option(reconnect)
    codec = make_codec(encoding, encode_message=encode_message, decode_message=decode_message)
    callbacks = Callbacks(on_result, on_error, on_open, on_close, on_state_change, on_meta)

    loop = asyncio.get_running_loop()
    keyed = _registry.setdefault(loop, {})
    if connection_key is not None and (existing := keyed.get(connection_key)) is not None:
        if existing.app != parsed:
            raise ValueError(
                f"connection_key {connection_key!r} is in use for {existing.app}, not {parsed}"
            )
        existing._replace_callbacks(callbacks)
        if not lazy:
            await existing.wait_open()
        return existing

    env = os.environ
    base = resolve_base("realtime", base_url, env)
    resolved_key = resolve_key(key, env)
    if token_provider is None and not resolved_key:
        raise UnauthorizedError(UNAUTHORIZED, MISSING_KEY_MESSAGE)
    tokens: TokenSource | None = None
    if use_jwt or token_provider is not None:
        tokens = TokenSource(
            app_alias=parsed.alias,
            app_id=str(parsed),
            token_url=token_url(base, env),
            key=resolved_key,
            token_provider=token_provider,
            token_expiration_s=float(token_expiration),
        )
    conn = RealtimeConnection(
        parsed,
        callbacks=callbacks,
        url_base=base,
        path=path,
        max_buffering=max_buffering,
        extra_query=query,
        tokens=tokens,
        key=resolved_key,
        codec=codec,
        throttle_interval=float(throttle_interval),
        coalesce=coalesce,
        max_pending=max_pending,
        max_backlog=max_backlog,
        policy=policy,
        heartbeat_s=heartbeat_s,
        max_frame_bytes=max_frame_bytes,
        open_timeout_s=open_timeout_s,
        close_timeout_s=close_timeout_s,
        ssl_context=ssl_context,
        connection_key=connection_key,
    )
    if connection_key is not None:
        keyed[connection_key] = conn
    if lazy:
        return conn
    try:
        await conn.wait_open()
    except BaseException:
        await conn.close()
        raise
    return conn
