"""The realtime client's asyncio driver: ``conn = await fal_realtime.connect(app, ...)``.

The connection's life is decided by a sans-I/O machine
(:class:`~fal_realtime._protocol.session.RealtimeSession`); this module feeds it what
the sockets do and carries out what it answers. A connection holds only the tasks it
needs at the moment:

- while it has a socket: one *driver* task that opened the socket and reads it (in
  a task group with a token refresher only when it uses tokens, a writer only while
  inputs wait for their turn, and the keep-alive);
- while it is ``dormant``, ``closed`` or ``failed``, or has not sent yet (``lazy``):
  none;
- callbacks run inline when nothing is queued (see :mod:`fal_realtime._dispatch`).

Connections on one event loop share one ``aiohttp.ClientSession`` unless given
``session=`` (see :mod:`fal_realtime._transport`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import ssl
import time
import weakref
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import aiohttp

from ._auth import TokenProvider
from ._cycles import release_socket, stop_task
from ._dispatch import Callback, Callbacks, Dispatcher
from ._keepalive import PONG_MISSED_CODE, KeepAlive
from ._options import RealtimeOptions, retry_settings, retry_sleep
from ._outbox import Outbox, Outgoing
from ._policy import RateLimitPacer, ReconnectPolicy
from ._protocol.apps import realtime_url
from ._protocol.codecs import Encoding
from ._protocol.realtime import FrameKind, classify, plain_result
from ._protocol.session import (
    Action,
    ConnectionState,
    DropToken,
    Emit,
    EnterState,
    Fail,
    Opened,
    OpenSocket,
    RealtimeSession,
    RetryAfter,
    SlowDown,
)
from ._stats import RealtimeStats
from ._transport import (
    DEFAULT_MAX_FRAME_BYTES,
    SessionLease,
    open_socket,
    receive_now,
    send_failed,
)
from .errors import CONNECTION_LOST, INVALID_INPUT, ConnectionLostError, RealtimeError, error_for

__all__ = ["ConnectionState", "RealtimeConnection", "RealtimeStats", "connect"]

log = logging.getLogger("fal_realtime")

_BINARY, _TEXT, _ERROR = aiohttp.WSMsgType.BINARY, aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.ERROR
_PING, _PONG = aiohttp.WSMsgType.PING, aiohttp.WSMsgType.PONG


def _count_error(stats: RealtimeStats) -> None:
    stats.errors += 1


class RealtimeConnection:
    """A realtime connection to one fal app; see :func:`fal_realtime.connect`."""

    def __init__(self, options: RealtimeOptions, callbacks: Callbacks) -> None:
        self.app = options.app
        self.connection_key = options.connection_key
        self.stats = RealtimeStats()
        self._options = options
        self._codec = options.codec
        self._max_frame_bytes = options.max_frame_bytes
        self._machine = RealtimeSession(
            retry=retry_settings(options.policy), uses_tokens=options.tokens is not None
        )
        self._pacer = RateLimitPacer(options.throttle_interval_s)
        # throttle_interval=0 sends each message at once: nothing to coalesce.
        coalesce = options.coalesce and options.throttle_interval_s > 0
        self._outbox = Outbox(coalesce=coalesce, max_pending=options.max_pending)
        self._loop = asyncio.get_running_loop()
        self._next_send_at = 0.0
        self._last_send_at: float | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None  # the socket, once open
        self._token: str | None = None  # the token the current socket used
        self._opened: asyncio.Future[None] = self._loop.create_future()
        self._closer: asyncio.Task[None] | None = None
        self._lease = SessionLease(options.session)
        self._driver: asyncio.Task[None] | None = None
        self._group: asyncio.TaskGroup | None = None
        self._writer: asyncio.Task[None] | None = None
        self._closing_ws: aiohttp.ClientWebSocketResponse | None = None
        self._dispatcher = Dispatcher(
            callbacks,
            max_backlog=options.max_backlog,
            on_drop=self.stats.drop,
            # Not a bound method: the dispatcher must not hold the connection, or the two
            # would form a cycle that only a full GC pass frees after close().
            on_callback_error=functools.partial(_count_error, self.stats),
            name=f"fal-realtime-callback[{options.app}]",
        )

    # -- public API ------------------------------------------------------------------

    @property
    def state(self) -> ConnectionState:
        """Return the connection's state."""
        return self._machine.state

    @property
    def throttle_interval(self) -> float:
        """Return the interval between sends in force now (raised after RATE_LIMITED)."""
        return self._pacer.interval(self._loop.time())

    @property
    def pending(self) -> int:
        """Return how many inputs wait to be sent (kept across a reconnect)."""
        return len(self._outbox)

    @property
    def closed(self) -> bool:
        """Tell whether the connection is closed or failed (it cannot be used again)."""
        return self._machine.state in (ConnectionState.CLOSED, ConnectionState.FAILED)

    def __repr__(self) -> str:
        return f"<RealtimeConnection app={str(self.app)!r} state={self.state.value}>"

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
        ws = self._ws
        if (
            ws is not None
            and not self._outbox
            and (not self._next_send_at or self._loop.time() >= self._next_send_at)
        ):
            await self._write(ws, item)
            return
        if self._outbox.coalesce:
            if self._outbox.put_latest(item):
                self.stats.coalesced += 1
        else:
            await self._outbox.put(item)
            self._check_usable()  # closed while waiting for room
        self._start_writer()

    def send_nowait(self, payload: Mapping[str, Any]) -> None:
        """Queue ``payload`` without waiting; raise ``asyncio.QueueFull`` when the queue is full."""
        item = self._prepare(payload)
        if self._outbox.coalesce:
            if self._outbox.put_latest(item):
                self.stats.coalesced += 1
        else:
            self._outbox.put_nowait(item)
        self._start_writer()

    def results(self) -> AsyncIterator[Any]:
        """Iterate over results as they arrive (ends when the connection closes)."""
        return self._dispatcher.subscribe_results().__aiter__()

    def states(self) -> AsyncIterator[ConnectionState]:
        """Iterate over state changes as they happen (ends when the connection closes)."""
        return self._dispatcher.subscribe_states().__aiter__()

    async def wait_open(self) -> None:
        """Return once the connection has opened a socket; raise its failure if it failed."""
        self._want_socket()
        await asyncio.shield(self._opened)

    async def close(self) -> None:
        """Close the connection: drop what waits to be sent, stop all tasks. Idempotent.

        The closing runs in one task owned by the connection: if the caller is
        cancelled meanwhile, the close still completes, and any later ``close()``
        waits for it.
        """
        if self._closer is None:
            self._closer = self._loop.create_task(self._close(), name="fal-realtime-close")
        await asyncio.shield(self._closer)

    # -- sending ---------------------------------------------------------------------

    def _check_usable(self) -> None:
        machine = self._machine
        if machine.failure is not None:
            raise error_for(
                machine.failure.code,
                f"the connection failed earlier ({machine.failure.message}); "
                "open a new one with fal_realtime.connect()",
            )
        if machine.closing:
            raise ConnectionLostError(
                CONNECTION_LOST,
                "send() after close(): open a new connection with fal_realtime.connect()",
            )

    def _prepare(self, payload: Mapping[str, Any]) -> Outgoing:
        if type(payload) is not dict and not isinstance(payload, Mapping):
            raise TypeError(f"payload must be a map (e.g. a dict), not {type(payload).__name__}")
        if self._ws is None:
            if self._machine.closing:
                self._check_usable()
            self._want_socket()
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
        except send_failed:
            if not self._outbox.push_front(item):
                self.stats.coalesced += 1
            return False
        self.stats.sent += 1
        self._last_send_at = time.perf_counter()
        return True

    def _start_writer(self) -> None:
        """Start the writer if inputs wait and a socket is open (it ends when none wait)."""
        if self._writer is None and self._group is not None and self._ws is not None:
            self._writer = self._group.create_task(
                self._write_loop(self._ws), name="fal-realtime-writer"
            )

    async def _write_loop(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        outbox, loop = self._outbox, self._loop
        try:
            while outbox:
                wait = self._next_send_at - loop.time()
                if wait > 0:
                    # Inside the interval: sleep to its end, then send whatever is newest.
                    await asyncio.sleep(wait)
                    continue
                if not await self._write(ws, outbox.pop()):
                    return  # the socket is going away; the frame waits for the next one
        finally:
            self._writer = None

    # -- carrying out the machine's actions ------------------------------------------

    def _want_socket(self) -> None:
        if self._machine.want_socket():
            previous = self._driver
            self._driver = self._loop.create_task(
                self._drive(previous), name=f"fal-realtime-driver[{self.app}]"
            )

    def _do(self, actions: list[Action]) -> OpenSocket | RetryAfter | None:
        """Carry out ``actions`` in order; return what the driver must do next, if anything."""
        then: OpenSocket | RetryAfter | None = None
        dispatcher = self._dispatcher
        for action in actions:
            if isinstance(action, EnterState):
                dispatcher.emit("on_state_change", action.state)
            elif isinstance(action, Emit):
                if action.name == "on_error":
                    self.stats.errors += 1
                dispatcher.emit(action.name, *action.args)
            elif isinstance(action, Opened):
                if action.reconnect:
                    self.stats.reconnects += 1
                if not self._opened.done():
                    self._opened.set_result(None)
            elif isinstance(action, DropToken):
                if self._options.tokens is not None:
                    self._options.tokens.invalidate(self._token)
            elif isinstance(action, SlowDown):
                self._pacer.rate_limited(self._loop.time())
            elif isinstance(action, Fail):
                self._failed(action.error)
            else:
                then = action
        return then

    def _failed(self, error: RealtimeError) -> None:
        _forget(self)
        if dropped := self._outbox.clear():
            self.stats.drop("failed", dropped)
        if not self._opened.done():
            self._opened.set_exception(error)
            self._opened.exception()  # retrieved: connect() may be gone

    # -- the driver task ---------------------------------------------------------------

    async def _drive(self, previous: asyncio.Task[None] | None) -> None:
        """Open sockets and read them until the machine says there is nothing to do."""
        if previous is not None:
            await asyncio.gather(previous, return_exceptions=True)
        machine, clock = self._machine, self._loop.time
        then: OpenSocket | RetryAfter | None = OpenSocket()
        try:
            while then is not None and not machine.closing:
                if isinstance(then, RetryAfter):
                    log.info("fal_realtime: %s: %s; retrying", self.app, then.error.message)
                    await retry_sleep(then.delay_s)
                    then = self._do(machine.retry_due())
                    continue
                then = self._do(await self._attempt(clock))
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug: fail loudly rather than hang
            log.exception("fal_realtime: the connection's driver crashed")
            error = RealtimeError(CONNECTION_LOST, f"internal error: {exc!r}")
            self._do([Emit("on_error", (error,)), EnterState(ConnectionState.FAILED)])
            machine.failure = error
            self._failed(error)

    async def _attempt(self, clock: Any) -> list[Action]:
        """Open one socket and run it to its end; return the machine's verdict."""
        options, machine = self._options, self._machine
        session = self._lease.session
        headers: dict[str, str] = {}
        token: str | None = None
        try:
            if options.tokens is not None:
                token = await options.tokens.get(session)
            elif options.key:
                headers["Authorization"] = f"Key {options.key}"
        except RealtimeError as exc:
            return machine.open_failed(exc, now=clock(), handshake=False)
        self._token = token
        url = realtime_url(
            options.app,
            base=options.url_base,
            path=options.path,
            token=token,
            max_buffering=options.max_buffering,
            extra_query=options.extra_query,
        )
        try:
            ws = await open_socket(
                session,
                url,
                headers=headers,
                max_frame_bytes=options.max_frame_bytes,
                open_timeout_s=options.open_timeout_s,
                close_timeout_s=options.close_timeout_s,
                ssl_context=options.ssl_context,
            )
        except RealtimeError as exc:
            return machine.open_failed(exc, now=clock())
        self._do(machine.socket_opened(now=clock()))
        # A new socket has sent nothing yet: its first frame need not wait out the
        # interval the old socket started.
        self._next_send_at = 0.0
        keepalive = KeepAlive(options.heartbeat_s)
        try:
            async with asyncio.TaskGroup() as group:
                self._group = group
                helpers = []
                if options.tokens is not None:
                    helpers.append(
                        group.create_task(self._refresh_loop(), name="fal-realtime-refresh")
                    )
                try:
                    async with asyncio.timeout(None) as reading:
                        if keepalive.enabled:
                            helpers.append(
                                group.create_task(
                                    keepalive.run(ws, reading), name="fal-realtime-keepalive"
                                )
                            )
                        code, cause = await self._read(ws, keepalive)
                except TimeoutError:
                    if not reading.expired():
                        raise
                    code, cause = PONG_MISSED_CODE, keepalive.missed
                finally:
                    self._ws = self._group = None
                    for helper in helpers:
                        helper.cancel()
                    if self._writer is not None:
                        self._writer.cancel()
        finally:
            self._ws = None
            if ws is not self._closing_ws:  # else close() finishes the close and reports it
                if not ws.closed:
                    await _close_quietly(ws)
                release_socket(ws)
        if ws is self._closing_ws:
            return []
        return machine.socket_closed(code, now=clock(), pending=bool(self._outbox), cause=cause)

    async def _refresh_loop(self) -> None:
        tokens = self._options.tokens
        assert tokens is not None
        while True:
            due = tokens.refresh_due_in()
            await asyncio.sleep(due if due is not None else 60.0)
            try:
                await tokens.get(self._lease.session)
            except Exception as exc:  # the next attempt fetches anew; never end the session
                log.info("fal_realtime: token refresh for %s failed: %s", self.app, exc)
                await asyncio.sleep(5.0)

    async def _read(
        self, ws: aiohttp.ClientWebSocketResponse, keepalive: KeepAlive
    ) -> tuple[int | None, str]:
        """Read ``ws`` until it ends; return its close code and what ended it."""
        machine, dispatcher, stats = self._machine, self._dispatcher, self.stats
        codec = self._codec
        decode, custom, fast = codec.decode, codec.custom_decode, not codec.custom_decode
        # What the server sent along with its handshake is read before the socket counts
        # as open: an immediate refusal then fails connect() itself (no fixed wait).
        msg: aiohttp.WSMessage | None = None
        while True:
            got = receive_now(ws)
            if not isinstance(got, tuple):
                break
            keepalive.heard = True
            if got.type is _BINARY or got.type is _TEXT:
                self._classified(classify(got.data, decode, custom_decode=custom), ws)
            elif got.type is _PING or got.type is _PONG:
                msg = got  # answered below, once the socket counts as open
                break
            else:
                return self._ended(got, ws)
        self._do(machine.confirm())
        if machine.confirmed and self._ws is None:
            self._ws = ws
            if self._outbox:
                self._start_writer()
        if msg is None:
            assert not isinstance(got, tuple)
            msg = await got
        while True:
            keepalive.heard = True
            kind = msg.type
            if kind is _BINARY and fast:
                # Hot path: a binary map that is plainly a result skips classification.
                try:
                    value = decode(msg.data)
                except Exception:
                    value = None
                if plain_result(value):
                    stats.results += 1
                    if self._last_send_at is not None:
                        stats.last_latency_s = time.perf_counter() - self._last_send_at
                        self._last_send_at = None
                    if machine.confirmed:
                        machine.result()
                    else:
                        self._do(machine.result())
                    dispatcher.result(value)
                    msg = await ws.receive()
                    continue
            if kind is _BINARY or kind is _TEXT:
                self._classified(classify(msg.data, decode, custom_decode=custom), ws)
            elif kind is _PING:
                with contextlib.suppress(Exception):  # closing: the next receive says so
                    await ws.pong(msg.data)
            elif kind is not _PONG:
                return self._ended(msg, ws)
            msg = await ws.receive()

    def _classified(self, frame: Any, ws: aiohttp.ClientWebSocketResponse) -> None:
        confirmed = self._machine.confirmed
        if frame.kind is FrameKind.RESULT:
            self.stats.results += 1
            if self._last_send_at is not None:
                self.stats.last_latency_s = time.perf_counter() - self._last_send_at
                self._last_send_at = None
            self._do(self._machine.frame(frame))
            self._dispatcher.result(frame.value)
        else:
            if frame.kind is FrameKind.META:
                self.stats.meta += 1
            self._do(self._machine.frame(frame))
        if not confirmed and self._machine.confirmed and self._ws is None:
            self._ws = ws
            if self._outbox:
                self._start_writer()

    def _ended(
        self, msg: aiohttp.WSMessage, ws: aiohttp.ClientWebSocketResponse
    ) -> tuple[int | None, str]:
        cause = ""
        if msg.type is _ERROR:
            cause = f"{type(msg.data).__name__}: {msg.data}"
            if ws.close_code == 1009 or "1009" in str(msg.data):
                return 1009, cause
        code = ws.close_code
        return code, cause or f"close code {code}"

    # -- closing -----------------------------------------------------------------------

    async def _close(self) -> None:
        _forget(self)
        self._machine.close_requested()
        if dropped := self._outbox.clear():
            self.stats.drop("closed", dropped)
        ws, driver = self._ws, self._driver
        if ws is not None and not ws.closed:
            # Close from here while the reader still waits: aiohttp then completes a clean
            # close handshake (1000); cancelling the reader first would make it abnormal.
            self._closing_ws = ws
            await _close_quietly(ws)
            release_socket(ws)
        if driver is not None:
            await stop_task(driver)
        if ws is not None and ws is self._closing_ws:
            self._closing_ws = None
            now = self._loop.time()
            self._do(self._machine.socket_closed(ws.close_code, now=now, pending=False))
        if not self._opened.done():
            self._opened.set_exception(
                ConnectionLostError(CONNECTION_LOST, "the connection was closed while opening")
            )
            self._opened.exception()
        self._do(self._machine.closed())
        await self._dispatcher.stop(drain_timeout_s=self._options.close_timeout_s)
        await self._lease.release()


async def _close_quietly(ws: aiohttp.ClientWebSocketResponse) -> None:
    try:
        await ws.close()
    except Exception as exc:  # the peer is gone already; nothing more to do
        log.debug("fal_realtime: closing a socket failed: %r", exc)


# connection_key -> connection, per event loop; forgotten when a connection ends.
_registry: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, RealtimeConnection]] = (
    weakref.WeakKeyDictionary()
)


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
    session: aiohttp.ClientSession | None = None,
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
        session: an ``aiohttp.ClientSession`` to use (never closed here); by default the
            connections of one event loop share one, closed with the last of them.

    Raises:
        ValueError, TypeError: bad arguments (before any I/O).
        RealtimeError: the connection could not be opened (``UNAUTHORIZED``,
            ``CONNECTION_LOST`` after the retries, ``INVALID_INPUT`` for an unknown app).
    """
    options = RealtimeOptions.build(
        app,
        throttle_interval=throttle_interval,
        max_buffering=max_buffering,
        max_frame_bytes=max_frame_bytes,
        max_backlog=max_backlog,
        reconnect=reconnect,
        encoding=encoding,
        encode_message=encode_message,
        decode_message=decode_message,
        base_url=base_url,
        key=key,
        token_provider=token_provider,
        token_expiration=token_expiration,
        use_jwt=use_jwt,
        query=query,
        path=path,
        coalesce=coalesce,
        max_pending=max_pending,
        heartbeat_s=heartbeat_s,
        open_timeout_s=open_timeout_s,
        close_timeout_s=close_timeout_s,
        ssl_context=ssl_context,
        connection_key=connection_key,
        session=session,
    )
    callbacks = Callbacks(on_result, on_error, on_open, on_close, on_state_change, on_meta)
    keyed = _registry.setdefault(asyncio.get_running_loop(), {})
    if connection_key is not None and (existing := keyed.get(connection_key)) is not None:
        if existing.app != options.app:
            raise ValueError(
                f"connection_key {connection_key!r} is in use for {existing.app}, not {options.app}"
            )
        existing._dispatcher.callbacks = callbacks
        if not lazy:
            await existing.wait_open()
        return existing
    conn = RealtimeConnection(options, callbacks)
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
