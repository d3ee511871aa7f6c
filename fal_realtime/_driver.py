"""The realtime client's asyncio driver: it feeds the session machine and carries out its actions.

The connection's life is decided by a sans-I/O machine
(:class:`~fal_realtime._protocol.session.RealtimeSession`); :class:`Driver` feeds it
what the sockets do and carries out what it answers. A connection holds only the
tasks it needs at the moment:

- while it has a socket: one *driver* task that opened the socket and reads it (in
  a task group with a token refresher only when it uses tokens, a writer only while
  inputs wait for their turn, and a ping only while one is sent: the keep-alive
  between pings is a timer handle);
- while it is ``dormant``, ``closed`` or ``failed``, or has not sent yet (``lazy``):
  none;
- callbacks run inline when nothing is queued (see :mod:`fal_realtime._dispatch`).

Reading a socket is :mod:`fal_realtime._reading`'s (a mixin of the driver).

Connections on one event loop share one ``aiohttp.ClientSession`` unless given
``session=`` (see :mod:`fal_realtime._transport`).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from typing import Any

import aiohttp

from ._aiohttp_private import FrameTap
from ._cycles import release_socket
from ._dispatch import Callbacks, Dispatcher
from ._keepalive import PONG_MISSED_CODE, KeepAlive, Watch
from ._options import RealtimeOptions
from ._outbox import Outbox, Outgoing
from ._policy import RateLimitPacer, retry_sleep
from ._protocol.apps import realtime_url
from ._protocol.session import (
    Action,
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
from ._reading import Reading
from ._stats import RealtimeStats
from ._transport import (
    SessionLease,
    close_quietly,
    open_socket,
    send_failed,
)
from .errors import CONNECTION_LOST, RealtimeError

__all__ = ["Driver"]

log = logging.getLogger("fal_realtime")

_BINARY, _TEXT = aiohttp.WSMsgType.BINARY, aiohttp.WSMsgType.TEXT
_PING, _PONG = aiohttp.WSMsgType.PING, aiohttp.WSMsgType.PONG

_OPEN_SOCKET = OpenSocket()


def _count_error(stats: RealtimeStats) -> None:
    stats.errors += 1


class Driver(Reading):
    """The asyncio side of a realtime connection (the public API is its subclass's)."""

    # Slots: a service holds thousands of idle connections.
    __slots__ = (
        "__weakref__",
        "_closer",
        "_closing_ws",
        "_codec",
        "_dispatcher",
        "_driver",
        "_group",
        "_lease",
        "_loop",
        "_machine",
        "_max_frame_bytes",
        "_next_send_at",
        "_opened",
        "_options",
        "_outbox",
        "_pacer",
        "_token",
        "_writer",
        "app",
        "connection_key",
        "stats",
    )

    def __init__(self, options: RealtimeOptions, callbacks: Callbacks) -> None:
        self.app = options.app
        self.connection_key = options.connection_key
        self.stats = RealtimeStats()
        self._options = options
        self._codec = options.codec
        self._max_frame_bytes = options.max_frame_bytes
        self._machine = RealtimeSession(retry=options.retry, uses_tokens=options.tokens is not None)
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
        self._tap: FrameTap | None = None  # while the socket's data frames are tapped
        self._closing_ws: aiohttp.ClientWebSocketResponse | None = None
        self._dispatcher = Dispatcher(
            callbacks,
            max_backlog=options.max_backlog,
            on_drop=self.stats.drop,
            # Not a bound method: the dispatcher must not hold the connection, or the two
            # would form a cycle that only a full GC pass frees after close().
            on_callback_error=functools.partial(_count_error, self.stats),
            name=f"fal-realtime-callback[{options.label}]",
        )

    def _forget(self) -> None:
        """Leave the ``connection_key`` registry (the subclass knows it)."""

    async def _write(self, ws: aiohttp.ClientWebSocketResponse, frame: Outgoing) -> bool:
        """Send one frame; on a dying socket keep it for the next one.

        No lock is needed between the direct path and the writer: an uncompressed frame
        is handed to the transport before ``send_bytes`` first awaits, and the interval
        is reserved before that too, so frames leave in order and on schedule.
        """
        pacer = self._pacer
        if pacer.peak_s:  # else no interval applies: no clock to read
            now = self._loop.time()
            interval = pacer.interval(now)
            self._next_send_at = now + interval if interval > 0 else 0.0
        try:
            if type(frame) is bytes:
                await ws.send_bytes(frame)
            else:
                await ws.send_str(frame)  # type: ignore[arg-type]
        except send_failed:
            if not self._outbox.push_front(frame):
                self.stats.coalesced += 1
            return False
        if self._options.recorder is not None:
            self._options.recorder.sent(frame)
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
                self._drive(previous), name=f"fal-realtime-driver[{self._options.label}]"
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
        self._forget()
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
        then: OpenSocket | RetryAfter | None = _OPEN_SOCKET
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
            self._do(machine.crashed(RealtimeError(CONNECTION_LOST, f"internal error: {exc!r}")))

    async def _attempt(self, clock: Any) -> list[Action]:
        """Open one socket and run it to its end; return the machine's verdict."""
        options, machine = self._options, self._machine
        session = self._lease.session
        tokens, url = options.tokens, options.url
        if tokens is not None:  # each socket gets the current token
            try:
                token = await tokens.get(session)
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
        assert url is not None  # options.url is set exactly when no token is used
        try:
            ws = await open_socket(
                session,
                url,
                headers=options.headers,
                max_frame_bytes=options.max_frame_bytes,
                open_timeout_s=options.open_timeout_s,
                close_timeout_s=options.close_timeout_s,
                ssl_context=options.ssl_context,
            )
        except RealtimeError as exc:
            return machine.open_failed(exc, now=clock())
        if options.recorder is not None:
            options.recorder.opened(url)
        self._do(machine.socket_opened(now=clock()))
        # A new socket has sent nothing yet: its first frame need not wait out the
        # interval the old socket started.
        self._next_send_at = 0.0
        keepalive = KeepAlive(options.heartbeat_s)
        try:
            async with asyncio.TaskGroup() as group:
                self._group = group
                refresher: asyncio.Task[None] | None = None
                if tokens is not None:
                    refresher = group.create_task(
                        tokens.keep_fresh(session), name="fal-realtime-refresh"
                    )
                watch: Watch | None = None
                try:
                    async with asyncio.timeout(None) as reading:
                        if keepalive.enabled:
                            # Timers, not a task: an idle socket costs a timer handle.
                            watch = keepalive.watch(
                                ws,
                                reading,
                                functools.partial(group.create_task, name="fal-realtime-ping"),
                            )
                        code, cause = await self._read(ws, keepalive)
                except TimeoutError:
                    if not reading.expired():
                        raise
                    code, cause = PONG_MISSED_CODE, keepalive.missed
                finally:
                    self._ws = self._group = None
                    if watch is not None:
                        watch.stop()
                    if refresher is not None:
                        refresher.cancel()
                    if self._writer is not None:
                        self._writer.cancel()
        finally:
            self._ws = None
            if options.recorder is not None:  # close() sends 1000; else what the server did
                if ws is self._closing_ws:
                    options.recorder.closed(1000, by="client")
                else:
                    options.recorder.closed(ws.close_code, by="server")
            if ws is not self._closing_ws:  # else close() finishes the close and reports it
                if not ws.closed:
                    await close_quietly(ws)
                release_socket(ws)
        if ws is self._closing_ws:
            return []
        return machine.socket_closed(code, now=clock(), pending=bool(self._outbox), cause=cause)
