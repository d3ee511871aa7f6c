"""One open realtime socket and everything that lives exactly as long as it does.

A :class:`SocketLink` owns one ``aiohttp`` WebSocket: its reading (data frames taken
as aiohttp parses them where the tap applies, :mod:`fal_realtime._aiohttp_private`, else
by the task), its writing (the direct path, and a writer task while inputs wait their
turn; with latest wins, nothing is handed to the socket while what it was handed before
has not drained: :mod:`fal_realtime._backlog`), and its keep-alive (timers, a ping task
while one is in flight). :meth:`SocketLink.run` reads it to its end and reports, once,
how it ended (:class:`LinkEnd`); every task it started is cancelled and awaited before
it returns. :meth:`SocketLink.close` is the client's one way to close it (a clean 1000
handshake while the reader still waits).

The link decides nothing about the connection's life: it hands each data frame to
``on_data`` and says when the frames that came with the handshake have been read
(``on_ready``); the connection's driver feeds both to the session machine. What waits
to be sent (the outbox) and the throttle interval (the pacer) belong to the
connection and outlive the link; the link keeps what is per socket: when its next
frame may go, and when its last one went.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import NamedTuple

import aiohttp

from ._aiohttp_private import FrameTap, drop_lost, frame_tap, receive_now
from ._backlog import Backlog
from ._cycles import release_socket
from ._keepalive import PONG_MISSED_CODE, KeepAlive, Watch
from ._outbox import Outbox, Outgoing
from ._policy import RateLimitPacer
from ._recorder import Recorder
from ._stats import RealtimeStats
from ._transport import close_quietly, send_failed, socket_end

__all__ = ["LinkEnd", "SocketLink"]

_BINARY, _TEXT = aiohttp.WSMsgType.BINARY, aiohttp.WSMsgType.TEXT
_PING, _PONG = aiohttp.WSMsgType.PING, aiohttp.WSMsgType.PONG
#: How soon a frame waiting for the link looks again whether it drained, and the longest
#: it waits between looks (at most this late; the link idles no longer, as what is in
#: flight covers it).
_FIRST_POLL_S = 0.001
_MAX_POLL_S = 0.008


class LinkEnd(NamedTuple):
    """How a socket ended: its close code, what ended it, and whether the client closed it."""

    code: int | None
    cause: str
    by_client: bool


class SocketLink:
    """One realtime socket: reading, writing and keep-alive; see the module docstring.

    Args:
        ws: the open socket (the link closes it).
        outbox: what waits to be sent (the connection's; it survives the link).
        pacer: the throttle interval in force (the connection's).
        stats: the connection's counters (``sent``, ``coalesced``).
        recorder: where sent frames are recorded, if anywhere.
        heartbeat_s: the keep-alive interval (None: no pings).
        log_fields: the ``extra`` fields of its log lines (the connection's ids).
    """

    __slots__ = (
        "_backlog",
        "_closed",
        "_closing",
        "_group",
        "_heartbeat_s",
        "_log_fields",
        "_loop",
        "_outbox",
        "_pacer",
        "_recorder",
        "_stats",
        "_tap",
        "_writer",
        "keepalive",
        "last_frame_bytes",
        "last_sent_at",
        "next_send_at",
        "ws",
    )

    def __init__(
        self,
        ws: aiohttp.ClientWebSocketResponse,
        *,
        outbox: Outbox,
        pacer: RateLimitPacer,
        stats: RealtimeStats,
        recorder: Recorder | None,
        heartbeat_s: float | None,
        log_fields: Mapping[str, str] | None = None,
    ) -> None:
        self.ws = ws
        self._log_fields = log_fields
        self._outbox = outbox
        self._pacer = pacer
        self._stats = stats
        self._recorder = recorder
        self._heartbeat_s = heartbeat_s
        self._loop = asyncio.get_running_loop()
        #: When this socket's next frame may go (0: now). A new socket has sent nothing,
        #: so its first frame need not wait out an interval the last one started.
        self.next_send_at = 0.0
        #: ``time.perf_counter()`` of the last frame sent, until a result answers it.
        self.last_sent_at: float | None = None
        #: The size of the last frame handed to the socket.
        self.last_frame_bytes = 0
        self._backlog = Backlog(ws)
        #: The socket's keep-alive; the reader marks it for every frame it hears.
        self.keepalive = KeepAlive(heartbeat_s)
        self._group: asyncio.TaskGroup | None = None  # while run() reads
        self._writer: asyncio.Task[None] | None = None
        self._tap: FrameTap | None = None
        self._closing = False
        self._closed: asyncio.Event | None = None  # set once close() has closed the socket

    # -- writing ---------------------------------------------------------------------

    async def write(self, frame: Outgoing) -> bool:
        """Send one frame now; on a dying socket put it back in the outbox and return False.

        No lock is needed between the direct path and the writer: an uncompressed frame
        is handed to the transport before ``send_bytes`` first awaits, and the interval
        is reserved before that too, so frames leave in order and on schedule.
        """
        pacer = self._pacer
        if pacer.peak_s:  # else no interval applies: no clock to read
            now = self._loop.time()
            interval = pacer.interval(now)
            self.next_send_at = now + interval if interval > 0 else 0.0
        try:
            if type(frame) is bytes:
                await self.ws.send_bytes(frame)
            else:
                await self.ws.send_str(frame)  # type: ignore[arg-type]
        except send_failed:
            if not self._outbox.push_front(frame):
                self._stats.coalesced += 1
            return False
        if self._recorder is not None:
            self._recorder.sent(frame)
        self._stats.sent += 1
        self.last_sent_at = time.perf_counter()
        self.last_frame_bytes = len(frame)
        return True

    def drained(self) -> bool:
        """Tell whether everything handed to the socket so far has gone out (see _backlog.py)."""
        return not self._backlog.pending(self.last_frame_bytes)

    def interval_over(self) -> bool:
        """Tell whether the throttle interval lets the next frame go now."""
        next_at = self.next_send_at
        return not next_at or self._loop.time() >= next_at

    def start_writer(self) -> None:
        """Start the writer while inputs wait (it ends when none do); a no-op if it runs."""
        if self._writer is None and self._group is not None and not self._closing:
            self._writer = self._group.create_task(self._write_loop(), name="fal-realtime-writer")

    async def _write_loop(self) -> None:
        outbox, loop, backlog = self._outbox, self._loop, self._backlog
        poll = _FIRST_POLL_S
        try:
            while outbox:
                wait = self.next_send_at - loop.time()
                if wait > 0:
                    # Inside the interval: sleep to its end, then send whatever is newest.
                    await asyncio.sleep(wait)
                    continue
                if outbox.coalesce and backlog.pending(self.last_frame_bytes):
                    # Latest wins at the link too: the frame waits (and may be superseded)
                    # until what went before has drained. No event says when the kernel
                    # has sent its bytes: look again, less often the longer it takes.
                    await asyncio.sleep(poll)
                    poll = min(poll * 2, _MAX_POLL_S)
                    continue
                poll = _FIRST_POLL_S
                if not await self.write(outbox.pop()):
                    return  # the socket is going away; the frame waits for the next one
        finally:
            self._writer = None

    # -- reading -----------------------------------------------------------------------

    async def run(
        self,
        on_data: Callable[[aiohttp.WSMessage], None],
        on_ready: Callable[[], None],
    ) -> LinkEnd:
        """Read the socket until it ends; return how it ended (once, after every task ended).

        Args:
            on_data: called with each data frame (binary or text), in order.
            on_ready: called once the frames that came with the handshake were read (an
                immediate refusal among them is seen before the socket counts as open).
        """
        ws, keepalive = self.ws, self.keepalive
        watch: Watch | None = None
        try:
            async with asyncio.TaskGroup() as group:
                self._group = group
                try:
                    async with asyncio.timeout(None) as reading:
                        if keepalive.enabled:
                            # Timers, not a task: an idle socket costs a timer handle.
                            spawn = functools.partial(group.create_task, name="fal-realtime-ping")
                            watch = keepalive.watch(ws, reading, spawn)
                        code, cause = await self._read(on_data, on_ready)
                except TimeoutError:
                    if not reading.expired():
                        raise
                    code, cause = PONG_MISSED_CODE, keepalive.missed
                    drop_lost(ws)  # the peer is gone: no close handshake to wait for
                finally:
                    self._group = None
                    if watch is not None:
                        watch.stop()
                    if self._writer is not None:
                        self._writer.cancel()
        finally:
            if not self._closing:  # else close() finishes the close handshake
                if not ws.closed:
                    await close_quietly(ws, self._log_fields)
                release_socket(ws)
        if self._closing:
            # The reader may see the end before close() has finished the handshake:
            # the code is the one that handshake ends with.
            assert self._closed is not None
            await self._closed.wait()
            return LinkEnd(ws.close_code, "closed by the client", True)
        return LinkEnd(code, cause, False)

    async def _read(
        self,
        on_data: Callable[[aiohttp.WSMessage], None],
        on_ready: Callable[[], None],
    ) -> tuple[int | None, str]:
        ws, keepalive = self.ws, self.keepalive
        # What the server sent along with its handshake is read first, all of it (a ping
        # among it included): an immediate refusal then fails connect() itself (no fixed
        # wait).
        pings: list[bytes] = []
        while True:
            got = receive_now(ws)
            if not isinstance(got, tuple):
                break
            keepalive.heard = True
            if got.type is _BINARY or got.type is _TEXT:
                on_data(got)
            elif got.type is _PING:
                pings.append(got.data)  # answered below, once the socket counts as open
            elif got.type is not _PONG:
                return socket_end(got, ws)
        on_ready()
        # Data frames are taken as aiohttp parses them (see _aiohttp_private.py); the task
        # reads the rest. Without a tap (uvloop, aiohttp < 3.10.11) the task reads everything.
        self._tap = tap = None if self._closing else frame_tap(ws, on_data)
        # The receive() the handshake read began (its first message comes through it).
        pending: Awaitable[aiohttp.WSMessage] | None = got
        del got  # an idle socket's frame holds no message it has handled
        msg: aiohttp.WSMessage | None = None
        try:
            for data in pings:
                with contextlib.suppress(Exception):  # closing: the next receive says so
                    await ws.pong(data)
            while True:
                if msg is None:
                    if pending is not None:
                        msg, pending = await pending, None
                    elif tap is not None:
                        msg = await tap.next()
                    else:
                        msg = await ws.receive()
                keepalive.heard = True
                kind = msg.type
                if kind is _BINARY or kind is _TEXT:
                    on_data(msg)
                elif kind is _PING:
                    with contextlib.suppress(Exception):  # closing: the next receive says so
                        await ws.pong(msg.data)
                elif kind is not _PONG:
                    return socket_end(msg, ws)
                msg = None
        finally:
            if tap is not None:
                self._tap = None
                tap.detach()

    # -- closing -----------------------------------------------------------------------

    async def close(self) -> None:
        """Close the socket from the client's side (1000); :meth:`run` then ends on its own.

        The reader still waits meanwhile, so aiohttp completes a clean close handshake
        (cancelling the reader first would make it abnormal). A reader waiting on the
        tap is told to look.
        """
        self._closing = True
        self._closed = closed = asyncio.Event()
        if self._writer is not None:
            self._writer.cancel()
        if self._tap is not None:
            self._tap.wake()
        ws = self.ws
        try:
            if not ws.closed:
                await close_quietly(ws, self._log_fields)
            release_socket(ws)
        finally:
            closed.set()
