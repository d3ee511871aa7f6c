"""The realtime client: ``conn = await fal_realtime.connect(app, on_result=...)``.

:func:`connect` validates its arguments into one frozen
:class:`~fal_realtime._options.RealtimeOptions` and returns a
:class:`RealtimeConnection` once its socket is open. The connection's life is decided
by a sans-I/O machine (:mod:`fal_realtime._protocol.session`) and carried out by the
asyncio driver (:mod:`fal_realtime._driver`): sessions end often and normally
(``x-fal-error`` then close 1000: ``dormant``, the next send reconnects); a lost
socket is retried per the :class:`~fal_realtime.ReconnectPolicy`, and what waits to
be sent is kept and goes out first on the new socket.
"""

from __future__ import annotations

import asyncio
import functools
import os
import secrets
import ssl
import weakref
from collections.abc import AsyncIterator, Callable, Generator, Mapping
from typing import TYPE_CHECKING, Any

import aiohttp

from ._auth import TokenProvider
from ._callbacks import OnClose, OnError, OnMeta, OnOpen, OnResult, OnStateChange
from ._compat import eager_task
from ._dispatch import Callbacks
from ._driver import Driver
from ._options import RealtimeOptions
from ._outbox import Outbox, Outgoing
from ._policy import RateLimitPacer, ReconnectPolicy
from ._protocol.codecs import Encoding
from ._protocol.state import ConnectionState
from ._stats import RealtimeStats
from ._telemetry import Telemetry
from ._transport import DEFAULT_MAX_FRAME_BYTES
from .errors import CONNECTION_LOST, INVALID_INPUT, ConnectionLostError, RealtimeError, error_for

__all__ = ["Connecting", "ConnectionState", "RealtimeConnection", "RealtimeStats", "connect"]


class RealtimeConnection:
    """A realtime connection to one fal app; see :func:`fal_realtime.connect`.

    It has a :class:`~fal_realtime._driver.Driver` (the connection's life: the session
    machine, its sockets and tasks) and holds what the send path needs: the outbox,
    the throttle pacer and the codec.
    """

    # Slots: a service holds thousands of idle connections.
    __slots__ = (
        "__weakref__",
        "_closer",
        "_codec",
        "_driver",
        "_loop",
        "_max_frame_bytes",
        "_options",
        "_outbox",
        "_pacer",
        "app",
        "connection_key",
        "id",
        "stats",
    )

    def __init__(self, options: RealtimeOptions, callbacks: Callbacks) -> None:
        self.app = options.app
        self.connection_key = options.connection_key
        #: A short random id, in log lines (``fal_connection_id``) and spans; not secret.
        self.id = secrets.token_hex(4)
        self.stats = RealtimeStats()
        self._options = options
        self._codec = options.codec
        self._max_frame_bytes = options.max_frame_bytes
        self._loop = loop = asyncio.get_running_loop()
        self._pacer = RateLimitPacer(options.throttle_interval_s)
        # Latest wins within the interval and at the link (with throttle_interval=0 too).
        self._outbox = Outbox(coalesce=options.coalesce, max_pending=options.max_pending)
        self._closer: asyncio.Task[None] | None = None
        self._driver = Driver(
            options,
            callbacks,
            outbox=self._outbox,
            pacer=self._pacer,
            stats=self.stats,
            # Not a bound method: the driver must not hold the connection (a cycle).
            forget=functools.partial(_forget, loop, options.connection_key, self._outbox),
            connection_id=self.id,
            telemetry=options.telemetry,
        )

    # -- public API ------------------------------------------------------------------

    @property
    def state(self) -> ConnectionState:
        """Return the connection's state."""
        return self._driver.machine.state

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
        return self._driver.machine.state in (ConnectionState.CLOSED, ConnectionState.FAILED)

    def __repr__(self) -> str:
        return f"<RealtimeConnection app={str(self.app)!r} id={self.id} state={self.state.value}>"

    async def __aenter__(self) -> RealtimeConnection:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def send(self, payload: Mapping[str, Any]) -> None:
        """Queue ``payload`` (a map) to be sent, respecting the throttle.

        In latest-wins mode (the default) a payload replaces one still waiting for
        its turn, and this returns at once; with ``coalesce=False`` it waits while
        the queue is full. A dormant connection reconnects.

        Args:
            payload: the input, a map (e.g. ``{"prompt": "..."}``); msgpack by default.

        Raises:
            TypeError: ``payload`` is not a map.
            RealtimeError: ``INVALID_INPUT`` when it cannot be encoded or is too large
                (nothing is sent, the connection is unharmed); the connection's
                failure when it has failed; ``CONNECTION_LOST`` after ``close()``.
        """
        item = self._prepare(payload)
        link = self._driver.link
        outbox = self._outbox
        if link is not None and outbox.items is None:
            # The direct path (its checks written out: this is the hot path): the interval
            # is over, and with latest wins the socket has sent what it was handed.
            next_at = link.next_send_at
            if (not next_at or self._loop.time() >= next_at) and (
                not outbox.coalesce or link.drained()
            ):
                await link.write(item)
                return
        if outbox.coalesce:
            self._put_latest(item)
        else:
            await outbox.put(item)
            self._check_usable()  # closed while waiting for room
        self._driver.start_writer()

    def send_nowait(self, payload: Mapping[str, Any]) -> None:
        """Queue ``payload`` without waiting; raise ``asyncio.QueueFull`` when the queue is full.

        Args:
            payload: the input, a map (encoded as ``send`` encodes it).
        """
        item = self._prepare(payload)
        if self._outbox.coalesce:
            self._put_latest(item)
        else:
            self._outbox.put_nowait(item)
        self._driver.start_writer()

    def results(self) -> AsyncIterator[Any]:
        """Iterate over results as they arrive (ends when the connection closes)."""
        return self._driver.dispatcher.subscribe_results().__aiter__()

    def states(self) -> AsyncIterator[ConnectionState]:
        """Iterate over state changes as they happen (ends when the connection closes)."""
        return self._driver.dispatcher.subscribe_states().__aiter__()

    async def wait_open(self) -> None:
        """Return once the connection has opened a socket; raise its failure if it failed."""
        self._driver.want_socket()
        await asyncio.shield(self._driver.opened)

    async def close(self) -> None:
        """Close the connection: drop what waits to be sent, stop all tasks. Idempotent.

        The closing runs in one task owned by the connection: if the caller is
        cancelled meanwhile, the close still completes, and any later ``close()``
        waits for it.
        """
        closer = self._closer
        if closer is not None:
            await asyncio.shield(closer)
            return
        # The first caller waits on a future the closing task completes itself: it
        # wakes on the loop's next turn (a shield takes two), and cancelling it cancels
        # only the future, never the closing.
        done = self._loop.create_future()
        self._closer = eager_task(self._loop, self._closing(done), name="fal-realtime-close")
        await done

    # -- sending ---------------------------------------------------------------------

    def _put_latest(self, item: Outgoing) -> None:
        """Make ``item`` the one frame waiting, counting the one it supersedes, and where."""
        if self._outbox.put_latest(item):
            stats = self.stats
            stats.coalesced += 1
            link = self._driver.link
            if link is not None and link.interval_over():
                stats.superseded_at_link += 1  # it waited for the link, not its interval

    def _check_usable(self) -> None:
        machine = self._driver.machine
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
        driver = self._driver
        if driver.link is None:
            if driver.machine.closing:
                self._check_usable()
            driver.want_socket()
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
        return encoded if self._codec.binary else encoded.decode()

    # -- closing -----------------------------------------------------------------------

    async def _closing(self, done: asyncio.Future[None]) -> None:
        try:
            self._forget()
            if dropped := self._outbox.clear():
                self.stats.drop("closed", dropped)
            await self._driver.close()
        except BaseException as exc:
            if not done.done():
                if isinstance(exc, asyncio.CancelledError):
                    done.cancel()
                else:
                    done.set_exception(exc)
            raise
        if not done.done():
            done.set_result(None)

    def _forget(self) -> None:
        _forget(self._loop, self.connection_key, self._outbox)


def _forget(loop: asyncio.AbstractEventLoop, key: str | None, outbox: Outbox) -> None:
    """Leave the ``connection_key`` registry, if the key still names this connection.

    The connection is known by its outbox (one per connection): the driver calls this
    when the connection fails, and must not hold the connection itself.
    """
    if key is None:
        return
    keyed = _registry.get(loop)
    if keyed is not None and (conn := keyed.get(key)) is not None and conn._outbox is outbox:
        del keyed[key]


# connection_key -> connection, per event loop; forgotten when a connection ends.
_registry: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, RealtimeConnection]] = (
    weakref.WeakKeyDictionary()
)


class Connecting:
    """A connection being opened: ``await`` it, or use it with ``async with``.

    Made by :func:`connect`, which has checked the arguments already; nothing is
    opened (no coroutine even exists) until it is awaited or entered::

        conn = await fal_realtime.connect(app, on_result=...)   # close it yourself
        async with fal_realtime.connect(app, on_result=...) as conn:
            ...                                                   # closed on exit

    Each ``await`` opens (or, with a live ``connection_key``, finds) a connection.
    """

    __slots__ = ("_callbacks", "_conn", "_lazy", "_options")

    def __init__(self, options: RealtimeOptions, callbacks: Callbacks, *, lazy: bool) -> None:
        self._options = options
        self._callbacks = callbacks
        self._lazy = lazy
        self._conn: RealtimeConnection | None = None

    def __repr__(self) -> str:
        return f"<Connecting app={str(self._options.app)!r}>"

    def __await__(self) -> Generator[Any, None, RealtimeConnection]:
        return self._open().__await__()

    if not TYPE_CHECKING:  # a type checker must still see no such attributes

        def __getattr__(self, name: str) -> Any:
            # Reached only for a name Connecting lacks: most often a forgotten await.
            raise AttributeError(
                f"'Connecting' object has no attribute {name!r}: await connect(...) (or use "
                "'async with connect(...) as conn') to get the RealtimeConnection"
            )

    async def __aenter__(self) -> RealtimeConnection:
        if self._conn is not None:
            raise RuntimeError(
                "this connect() is already in use by an 'async with': call connect() again"
            )
        self._conn = await self._open()
        return self._conn

    async def __aexit__(self, *exc_info: object) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await conn.close()

    async def _open(self) -> RealtimeConnection:
        options, callbacks, lazy = self._options, self._callbacks, self._lazy
        connection_key = options.connection_key
        if connection_key is None:
            conn = RealtimeConnection(options.with_recorder(), callbacks)
        else:
            keyed = _registry.setdefault(asyncio.get_running_loop(), {})
            if (existing := keyed.get(connection_key)) is not None:
                _check_same(connection_key, existing._options, options)
                existing._driver.dispatcher.callbacks = callbacks
                if not lazy:
                    await existing.wait_open()
                return existing
            conn = keyed[connection_key] = RealtimeConnection(options.with_recorder(), callbacks)
        if lazy:
            return conn
        try:
            if connection_key is None:
                # Nobody else can hold this connection yet, so nobody else waits on the
                # future: it is awaited without a shield (cancelling it changes nothing for
                # anyone, and close() below ends the connection).
                conn._driver.want_socket()
                await conn._driver.opened
            else:
                await conn.wait_open()
        except BaseException:
            await conn.close()
            raise
        return conn


def _check_same(connection_key: str, live: RealtimeOptions, asked: RealtimeOptions) -> None:
    """Refuse a ``connect()`` whose options differ from those of the live keyed connection."""
    if live.app != asked.app:
        raise ValueError(
            f"connection_key {connection_key!r} is in use for {live.app}, not {asked.app}"
        )
    if differing := live.differing(asked):
        raise ValueError(
            f"connection_key {connection_key!r} is in use by a connection opened with other "
            f"{', '.join(differing)}: pass the same options (only the callbacks may change), "
            "or use another key"
        )


def connect(
    app: str,
    *,
    on_result: OnResult | None = None,
    on_error: OnError | None = None,
    on_open: OnOpen | None = None,
    on_close: OnClose | None = None,
    on_state_change: OnStateChange | None = None,
    on_meta: OnMeta | None = None,
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
    session: aiohttp.ClientSession | None = None,
    record: str | os.PathLike[str] | None = None,
    telemetry: Telemetry | None = None,
) -> Connecting:
    """Open a realtime connection to ``app``: ``await`` it, or ``async with`` it.

    ``conn = await connect(...)`` returns the connection once its socket is up (close it
    with ``await conn.close()``); ``async with connect(...) as conn:`` also closes it on
    exit. The arguments are checked here, at the call, before any I/O.

    Args:
        app: the app id, ``owner/alias[/path]`` (e.g. ``"fal-ai/flux-lora-realtime"``).
        on_result: called with each result (a dict), in arrival order.
        on_error: called with each :class:`RealtimeError` (server errors, callback errors,
            the final failure).
        on_open: called (no arguments) each time a socket opens, reconnects included.
        on_close: called with the close code (None for a lost socket) each time a socket
            that was open closes.
        on_state_change: called with each new :class:`ConnectionState`.
        on_meta: called with ``x-fal-message`` frames (e.g. timings).
        connection_key: a live connection with this key is returned instead (its
            callbacks replaced by these; its other options must be the same, else
            ``ValueError``); the key is forgotten when it closes.
        throttle_interval: seconds between sends (0: send each at once).
        coalesce: latest wins within an interval (default); False paces every message
            through a queue of ``max_pending`` and ``send`` waits when it is full.
        max_pending: with ``coalesce=False``, how many inputs may wait to be sent.
        max_backlog: results waiting for slow callbacks before the oldest is dropped.
        max_buffering: ask the server to keep at most this many pending inputs (1..60).
        path: the endpoint under the app (default ``"/realtime"``; not doubled when the
            app id already ends with it).
        key: the fal key; else ``FAL_KEY``, else ``FAL_KEY_ID:FAL_KEY_SECRET``.
        token_provider: ``(app) -> token`` (sync or async) replacing the token fetch.
        token_expiration: requested token lifetime in seconds.
        use_jwt: authenticate with a short-lived token (default) or the ``Key`` header.
        reconnect: True (default policy), False, a :class:`ReconnectPolicy` or its fields.
        encoding: ``"msgpack"`` (binary frames) or ``"json"`` (text frames).
        encode_message: ``(payload) -> bytes`` replacing the encoder of ``encoding``.
        decode_message: ``(frame bytes) -> value`` replacing the decoder; every frame it
            decodes is a result.
        base_url: where to connect, e.g. ``"ws://127.0.0.1:8080"``; else ``FAL_RUN_HOST``.
        lazy: return at once and open the socket on the first ``send``.
        heartbeat_s: WebSocket ping interval; a missed pong is a lost connection
            (None: no pings).
        max_frame_bytes: the largest frame sent or accepted (default 64 MiB).
        open_timeout_s: the longest one socket may take to open (token fetch apart).
        close_timeout_s: the longest ``close()`` waits for the server's close frame and
            for callbacks still running.
        ssl_context: TLS context for ``wss://`` (verification stays on by default).
        session: an ``aiohttp.ClientSession`` to use (never closed here); by default the
            connections of one event loop share one, closed with the last of them.
        record: write what the connection sends and receives to this file (one JSON line
            per frame, with timing), for ``Gateway.replay``; never a key or a token.
        telemetry: where OpenTelemetry metrics and spans go (a
            :class:`~fal_realtime.Telemetry`); by default the global providers when one
            is configured, else nothing is recorded (docs/observability.md).

    Returns:
        A :class:`Connecting`: awaiting it gives the :class:`RealtimeConnection`.

    Raises:
        ValueError, TypeError: bad arguments (at the call, before any I/O); a
            ``connection_key`` in use with other options (when awaited).
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
        path=path,
        coalesce=coalesce,
        max_pending=max_pending,
        heartbeat_s=heartbeat_s,
        open_timeout_s=open_timeout_s,
        close_timeout_s=close_timeout_s,
        ssl_context=ssl_context,
        connection_key=connection_key,
        session=session,
        record=record,
        telemetry=telemetry,
    )
    callbacks = Callbacks(on_result, on_error, on_open, on_close, on_state_change, on_meta)
    return Connecting(options, callbacks, lazy=lazy)
