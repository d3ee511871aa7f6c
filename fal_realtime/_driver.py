"""A realtime connection's life in asyncio: feed the session machine, carry out its actions.

The connection's life is decided by a sans-I/O machine
(:class:`~fal_realtime._protocol.session.RealtimeSession`); a :class:`Driver`, which the
connection has (it is not the connection's base class), feeds it what the sockets do
and carries out what it answers. Each socket is a
:class:`~fal_realtime._link.SocketLink` that owns its reading, writing and keep-alive
and reports once how it ended. The driver publishes a link (:attr:`Driver.link`, what
``send`` writes to) only on the machine's ``Opened`` action, and withdraws it when the
link's run ends; the client closes a socket only through :meth:`Driver.close`.

A connection holds only the tasks it needs at the moment:

- while it has a socket: one *driver* task that opened the socket and runs its link
  (a token refresher beside it only when it uses tokens; the link's writer only while
  inputs wait their turn, and a ping only while one is sent);
- while it is ``dormant``, ``closed`` or ``failed``, or has not sent yet (``lazy``):
  none;
- callbacks run inline when nothing is queued (see :mod:`fal_realtime._dispatch`).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable

import aiohttp

from ._cycles import stop_task
from ._dispatch import Callbacks, Dispatcher
from ._link import SocketLink
from ._options import RealtimeOptions
from ._outbox import Outbox
from ._policy import RateLimitPacer, retry_sleep
from ._protocol.apps import realtime_url
from ._protocol.realtime import FrameKind, classify, plain_result
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
from ._stats import RealtimeStats
from ._telemetry import ConnectionLog, Telemetry, for_connection, log_fields
from ._transport import SessionLease, open_socket
from .errors import CALLBACK_ERROR, CONNECTION_LOST, ConnectionLostError, RealtimeError

__all__ = ["Driver"]

log = logging.getLogger("fal_realtime")

_BINARY = aiohttp.WSMsgType.BINARY
_OPEN_SOCKET = OpenSocket()


def _count_error(stats: RealtimeStats) -> None:
    stats.error(CALLBACK_ERROR)


class Driver:
    """Run one connection's life: its sockets, the machine's actions, the tasks.

    Args:
        options: what the connection was asked to be.
        callbacks: the user's callbacks (the dispatcher's; replaceable).
        outbox: what waits to be sent (shared with the connection's send path).
        pacer: the throttle interval in force (shared with the send path).
        stats: the connection's counters.
        forget: called when the connection fails (it leaves the ``connection_key``
            registry); it must not hold the connection, or the two form a cycle.
        connection_id: the connection's short id, in log lines and spans.
        telemetry: where metrics and spans go (None: the global OpenTelemetry providers,
            when configured); see :mod:`fal_realtime._telemetry`.
    """

    # Slots: a service holds thousands of idle connections.
    __slots__ = (
        "_current",
        "_forget",
        "_lease",
        "_log",
        "_log_fields",
        "_loop",
        "_options",
        "_outbox",
        "_pacer",
        "_stats",
        "_task",
        "_telemetry",
        "_token",
        "dispatcher",
        "link",
        "machine",
        "opened",
    )

    def __init__(
        self,
        options: RealtimeOptions,
        callbacks: Callbacks,
        *,
        outbox: Outbox,
        pacer: RateLimitPacer,
        stats: RealtimeStats,
        forget: Callable[[], None],
        connection_id: str = "",
        telemetry: Telemetry | None = None,
    ) -> None:
        self._options = options
        self._outbox = outbox
        self._pacer = pacer
        self._stats = stats
        self._forget = forget
        self._loop = asyncio.get_running_loop()
        self.machine = RealtimeSession(retry=options.retry, uses_tokens=options.tokens is not None)
        #: The socket ``send`` writes to: published on the machine's Opened action only.
        self.link: SocketLink | None = None
        #: Resolved when the connection first opens (or set to its failure).
        self.opened: asyncio.Future[None] = self._loop.create_future()
        self._current: SocketLink | None = None  # the socket being run, open or not yet
        self._token: str | None = None  # the token the current socket used
        self._task: asyncio.Task[None] | None = None
        self._lease = SessionLease(options.session)
        #: Every line about this connection carries its app id and connection id.
        self._log_fields = log_fields(options.app, connection_id)
        self._log = ConnectionLog(log, self._log_fields)
        self._telemetry = for_connection(
            telemetry,
            app_id=options.label,
            connection_id=connection_id,
            stats=stats,
            state=functools.partial(getattr, self.machine, "state"),
        )
        self.dispatcher = Dispatcher(
            callbacks,
            max_backlog=options.max_backlog,
            on_drop=stats.drop,
            # Not a bound method: the dispatcher must not hold the driver, or the two
            # would form a cycle that only a full GC pass frees after close().
            on_callback_error=functools.partial(_count_error, stats),
            name=f"fal-realtime-callback[{options.label}]",
            log=self._log,
        )

    # -- what the connection asks ------------------------------------------------------

    def want_socket(self) -> None:
        """Open a socket unless one is open, on its way, or the machine says no."""
        if self.machine.want_socket():
            previous = self._task
            self._task = self._loop.create_task(
                self._drive(previous), name=f"fal-realtime-driver[{self._options.label}]"
            )

    def start_writer(self) -> None:
        """Have the open socket's writer send what waits (it starts once one is open)."""
        if self.link is not None:
            self.link.start_writer()

    async def close(self) -> None:
        """Close the socket and stop every task; report what the machine says. Once only.

        The socket is closed from here while its reader still waits (a clean 1000); the
        driver task then sees the link's end, reports it to the machine (``on_close``),
        and ends on its own. A task still opening a socket or waiting to retry is
        cancelled.
        """
        machine = self.machine
        machine.close_requested()
        link, task = self._current, self._task
        if link is not None:
            await link.close()
        if task is not None:
            if link is not None and not task.done():
                # The link's socket is closed (within close_timeout_s): its run ends on its
                # own, and the task reports that end to the machine (on_close) and ends.
                await asyncio.wait((task,))
            await stop_task(task)
        if not self.opened.done():
            self.opened.set_exception(
                ConnectionLostError(CONNECTION_LOST, "the connection was closed while opening")
            )
            self.opened.exception()
        self.do(machine.closed())
        await self.dispatcher.stop(drain_timeout_s=self._options.close_timeout_s)
        self._telemetry.retire()
        await self._lease.release()

    # -- carrying out the machine's actions --------------------------------------------

    def do(self, actions: list[Action]) -> OpenSocket | RetryAfter | None:
        """Carry out ``actions`` in order; return what the driver must do next, if anything."""
        then: OpenSocket | RetryAfter | None = None
        dispatcher, telemetry = self.dispatcher, self._telemetry
        for action in actions:
            if isinstance(action, EnterState):
                telemetry.state(action.state)
                dispatcher.emit("on_state_change", action.state)
            elif isinstance(action, Emit):
                if action.name == "on_error":
                    error = action.args[0]
                    self._stats.error(error.code)
                    telemetry.error(error)
                dispatcher.emit(action.name, *action.args)
            elif isinstance(action, Opened):
                self._publish(action)
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

    def _publish(self, action: Opened) -> None:
        """The socket counts as open: ``send`` may write to it, and what waited goes out."""
        if action.reconnect:
            self._stats.reconnects += 1
        link = self._current
        if link is not None:
            self.link = link
            if self._outbox:
                link.start_writer()
        if not self.opened.done():
            self.opened.set_result(None)

    def _failed(self, error: RealtimeError) -> None:
        self._forget()
        if dropped := self._outbox.clear():
            self._stats.drop("failed", dropped)
        if not self.opened.done():
            self.opened.set_exception(error)
            self.opened.exception()  # retrieved: connect() may be gone

    # -- the driver task ---------------------------------------------------------------

    async def _drive(self, previous: asyncio.Task[None] | None) -> None:
        """Open sockets and run them until the machine says there is nothing to do."""
        if previous is not None:
            await asyncio.gather(previous, return_exceptions=True)
        machine = self.machine
        then: OpenSocket | RetryAfter | None = _OPEN_SOCKET
        try:
            while then is not None and not machine.closing:
                if isinstance(then, RetryAfter):
                    app, reason = self._options.app, then.error.message
                    self._log.info("fal_realtime: %s: %s; retrying", app, reason)
                    self._telemetry.retrying(then.error, then.delay_s)
                    await retry_sleep(then.delay_s)
                    then = self.do(machine.retry_due())
                    continue
                then = self.do(await self._attempt())
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug: fail loudly rather than hang
            self._log.exception("fal_realtime: the connection's driver crashed")
            self.do(machine.crashed(RealtimeError(CONNECTION_LOST, f"internal error: {exc!r}")))

    async def _attempt(self) -> list[Action]:
        """Open one socket and run its link to its end; return the machine's verdict."""
        options, machine, clock = self._options, self.machine, self._loop.time
        session = self._lease.session
        tokens, url = options.tokens, options.url
        with self._telemetry.opening() as opening:  # a span (token fetch as a child), a clock
            if tokens is not None:  # each socket gets the current token
                try:
                    with self._telemetry.fetching_token():
                        token = await tokens.get(session)
                except RealtimeError as exc:
                    opening.failed(exc)
                    return machine.open_failed(exc, now=clock(), handshake=False)
                self._token = token
                url = realtime_url(
                    options.app,
                    base=options.url_base,
                    path=options.path,
                    token=token,
                    max_buffering=options.server_buffering,
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
                opening.failed(exc)
                return machine.open_failed(exc, now=clock())
        recorder = options.recorder
        if recorder is not None:
            recorder.opened(url)
        self._current = link = SocketLink(
            ws,
            outbox=self._outbox,
            pacer=self._pacer,
            stats=self._stats,
            recorder=recorder,
            heartbeat_s=options.heartbeat_s,
            log_fields=self._log_fields,
        )
        self.do(machine.socket_opened(now=clock()))
        refresher: asyncio.Task[None] | None = None
        if tokens is not None:
            refresher = self._loop.create_task(
                tokens.keep_fresh(session), name="fal-realtime-refresh"
            )
        try:
            end = await link.run(self._data_handler(link), self._ready)
        finally:
            self.link = self._current = None
            if refresher is not None:
                await stop_task(refresher)
        if recorder is not None:
            if end.by_client:
                recorder.closed(1000, by="client")
            else:
                recorder.closed(ws.close_code, by="server")
        return machine.socket_closed(
            end.code, now=clock(), pending=bool(self._outbox), cause=end.cause
        )

    def _ready(self) -> None:
        """The frames that came with the handshake were read: confirm the socket."""
        self.do(self.machine.confirm())

    # -- reading: each data frame, classified and dispatched -------------------------

    def _data_handler(self, link: SocketLink) -> Callable[[aiohttp.WSMessage], None]:
        """Return what handles one data frame of ``link`` (its hot path: locals, no lookups)."""
        machine, dispatcher, stats = self.machine, self.dispatcher, self._stats
        codec, recorder, keepalive = self._options.codec, self._options.recorder, link.keepalive
        latency = self._telemetry.latency  # None unless a meter provider records
        decode, custom, fast = codec.decode, codec.custom_decode, not codec.custom_decode
        do = self.do
        proven = False

        def on_data(msg: aiohttp.WSMessage) -> None:
            nonlocal proven
            keepalive.heard = True
            data = msg.data
            if recorder is not None:
                recorder.received(data)
            if fast and msg.type is _BINARY:
                # A binary map that is plainly a result skips classification.
                try:
                    value = decode(data)
                except Exception:
                    value = None
                if plain_result(value):
                    stats.results += 1
                    if link.last_sent_at is not None:
                        stats.last_latency_s = seconds = time.perf_counter() - link.last_sent_at
                        link.last_sent_at = None
                        if latency is not None:
                            latency(seconds)
                    if not proven:  # the machine hears of the first result only: see result()
                        proven = True
                        do(machine.result())
                    dispatcher.result(value)
                    return
            frame = classify(data, decode, custom_decode=custom)
            if frame.kind is FrameKind.RESULT:
                stats.results += 1
                if link.last_sent_at is not None:
                    stats.last_latency_s = seconds = time.perf_counter() - link.last_sent_at
                    link.last_sent_at = None
                    if latency is not None:
                        latency(seconds)
                do(machine.frame(frame))
                dispatcher.result(frame.value)
            else:
                if frame.kind is FrameKind.META:
                    stats.meta += 1
                do(machine.frame(frame))

        return on_data
