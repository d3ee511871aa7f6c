"""Every use of aiohttp's private state, in one module, each failing safe to public API.

aiohttp is reached through its public API everywhere else (:mod:`._transport` is the
boundary). Here, and only here, the package reads what aiohttp keeps private, where a
measured need could not be met through public API. Each use checks the shape it relies
on and, on anything else, does what public API alone would do (it never raises into
aiohttp or at the user); ``tests/test_tap.py`` and ``tests/test_cycles.py`` fail when
the installed aiohttp stops offering what a use reads, and prove each fallback.

The inventory: every private attribute the package reads, aiohttp's and CPython's.

1. The frame tap (:func:`frame_tap`, :class:`FrameTap`).
   Reads: ``ws._response.connection.protocol``, whose ``data_received`` and
   ``connection_lost`` get instance-attribute wrappers (removed by :meth:`FrameTap.detach`);
   ``ws._reader``, its ``_buffer`` (a deque of ``(WSMessage, size)`` pairs), its ``read()``
   (a coroutine that returns at its first step when a message is buffered) and
   ``is_eof()``; ``ws._closing`` and ``ws._closed`` (a socket whose close began is read
   by the task only).
   Works around: ``receive()`` hands each frame over by resolving a future, so a
   callback runs one event-loop pass late (see below).
   Fails safe: when attaching, the buffer must be a deque of such pairs, ``read`` a
   coroutine function, ``is_eof()`` and the two flags bools, and the protocol's two
   methods its own (else no tap); while tapping, every entry must be such a pair and
   ``read()`` must return its message at its first step (else the tap detaches itself
   mid-stream, leaving the entry in place, or handing over what ``read()`` gave). Either
   way the task reads with plain ``await ws.receive()``, which delivers the frame not
   understood, in order. Nothing raises inside ``data_received``; each cause of a
   fallback is logged once per process, at DEBUG. Tests: RT-TAP-1 (a live socket is
   tapped with the installed aiohttp), RT-TAP-6 (aiohttp 4.0's queue, and ``read()``s
   that wait or return another object, met while tapping), RT-TAP-7 (when attaching).
2. :func:`receive_now`: no private attribute, but ``ws.receive()``'s coroutine is stepped
   by hand (``send(None)``), relying on it to return at its first step when a message is
   buffered.
   Works around: aiohttp has no ``receive_nowait()``; what a server sent with its
   handshake could be read only a loop pass later, or after a fixed wait.
   Fails safe: a ``receive()`` that is not a coroutine is returned as is, to be awaited.
   Test: RT-TAP-8.
3. :func:`socket_transport` (for ``_cycles.release_socket``): ``ws._writer.transport``.
   Works around: a socket offers its transport's ``get_extra_info``, not the transport,
   whose references to itself must be cleared (item 5). Fails safe: None, nothing
   cleared. Test: ``tests/test_cycles.py``.
4. :func:`drop_heartbeat_callback` (for ``_cycles.release_socket``): a server socket's
   ``ws._req.protocol._data_received_cb``.
   Works around: aiohttp's server-side ``heartbeat=`` leaves a callback of the socket on
   the protocol, a cycle (:mod:`._cycles`). Fails safe: ``getattr`` with a default,
   left alone. Test: ``tests/test_cycles.py``.
5. CPython, not aiohttp, in ``_cycles.release_transport``: a selector transport's
   ``_read_ready_cb`` and ``_write_ready``.
   Works around: 3.11 never clears these bound methods of itself, 3.12 and 3.13 not after
   ``abort()``. Fails safe: ``getattr`` with a default, left alone. Test:
   ``tests/test_cycles.py``.
6. :func:`write_transports` (for the socket's backlog, :mod:`._backlog`): the transport
   of item 3, and under TLS asyncio's ``_SSLProtocolTransport._ssl_protocol._transport``,
   the TCP transport beneath it.
   Works around: latest wins at the link needs what a socket holds unsent, and a socket
   offers no transport (item 3); asyncio's TLS transport counts its own buffer only.
   Each transport found is asked only ``get_write_buffer_size()``, public asyncio API.
   Fails safe: the transports recognised (none: an empty tuple); the backlog then counts
   the kernel's unsent bytes only. Tests: RT-MEDIA-1, RT-MEDIA-6.
7. :func:`drop_lost` (for the link, when the keep-alive declares the peer gone): the
   transport of item 3, aborted.
   Works around: ``receive()`` marks a socket 1006 when its wait is cancelled, so its
   close drops the transport at once; a socket the tap reads waits elsewhere, and its
   close would wait out the close timeout for a peer that is gone. Fails safe: no
   transport found, the socket is closed as before (bounded by the close timeout).
   Test: RT-TAP-5.
8. CPython, typing only: ``argparse._SubParsersAction`` in the annotations of
   ``cli/*.add_parser`` (``add_subparsers()`` returns it; no public name exists). Never
   evaluated at run time.

Why the frame tap: aiohttp hands a parsed frame to whoever awaits ``ws.receive()`` by
resolving a future, so the reading task runs one event-loop pass after the bytes
arrived. For a callback API that pass is one too many: the reader runs, calls
``on_result``, the callback resolves the user's future, and the user's task runs one
pass later still. Hand-written lock-step code that awaits ``receive()`` itself pays one
pass; a callback paid two. The tap delivers each data frame from within the protocol's
``data_received``, so a callback costs what awaiting ``receive()`` costs.

How: while the task waits in :meth:`FrameTap.next`, the protocol's ``data_received``
(wrapped by the tap) lets aiohttp parse the bytes, then takes the *data* frames (text
or binary) at the head of aiohttp's message queue with the queue's own ``read()``,
which returns at once when a message is buffered, and hands each one to ``on_data``.
Anything else (a ping, a close frame, the end of the stream, an error, a socket that
is closing) wakes the task, which reads it with ``ws.receive()`` as before, so
aiohttp's close handling and timeouts run in a task as they expect. The protocol's
``connection_lost`` is wrapped too, to wake the task when the stream ends.

Only event loops that look ``data_received`` up on every call can be tapped: asyncio's
own selector and TLS transports. uvloop binds the method once, before the tap could
wrap it; there, and with aiohttp older than 3.10.11, the task reads everything.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Generator
from dataclasses import dataclass
from typing import Any, Final

import aiohttp

__all__ = [
    "SUPPORTED",
    "FrameTap",
    "drop_heartbeat_callback",
    "drop_lost",
    "frame_tap",
    "receive_now",
    "socket_transport",
    "write_transports",
]

log = logging.getLogger("fal_realtime")

# Compared by identity: hashing an enum member runs Python code, once per frame here.
_BINARY: Final = aiohttp.WSMsgType.BINARY
_TEXT: Final = aiohttp.WSMsgType.TEXT
#: The class of every message in aiohttp 3's queue (4.0 has one class per kind).
_MESSAGE: Final = aiohttp.WSMessage
#: Transports that call ``protocol.data_received`` afresh for every read.
_LOOKUP_TRANSPORTS: Final = frozenset({"asyncio.selector_events", "asyncio.sslproto"})
#: What the tap wraps on the protocol (as instance attributes).
_WRAPPED: Final = ("data_received", "connection_lost")


def _version(text: str) -> tuple[int, ...]:
    parts = []
    for part in text.split(".")[:3]:
        digits = "".join(ch for ch in part if ch.isdigit())
        parts.append(int(digits or 0))
    return tuple(parts)


#: Whether the installed aiohttp is new enough to tap (older: ``receive()`` always
#: enters a timeout, and the message queue differs). Newer ones are checked for the
#: shape the tap relies on, socket by socket: see :func:`frame_tap`.
SUPPORTED: Final = _version(aiohttp.__version__) >= (3, 10, 11)

#: The fallbacks logged so far (each is logged once per process, at DEBUG).
_logged: set[str] = set()


def _fall_back(what: str) -> None:
    if what not in _logged:
        _logged.add(what)
        log.debug("fal_realtime: %s; the socket is read with ws.receive() instead", what)


def _recognised(entry: Any) -> bool:
    """Tell whether a queue entry is a ``(WSMessage, size)`` pair, as in aiohttp 3."""
    return entry.__class__ is tuple and len(entry) == 2 and entry[0].__class__ is _MESSAGE


class FrameTap:
    """Deliver one socket's data frames from ``data_received``; see the module docstring.

    A tap that meets a queue it does not recognise detaches itself, and :meth:`next`
    then reads with plain ``ws.receive()``: see :attr:`tapping`.
    """

    __slots__ = ("_attention", "_held", "_on_data", "_protocol", "_queue", "_ws", "tapping")

    def __init__(
        self,
        ws: aiohttp.ClientWebSocketResponse,
        protocol: Any,
        queue: Any,
        on_data: Callable[[aiohttp.WSMessage], None],
    ) -> None:
        self._ws = ws
        self._protocol = protocol
        self._queue = queue
        self._on_data = on_data
        #: Whether data frames are taken from ``data_received`` (False once fallen back).
        self.tapping = True
        #: Set while the task waits in next(): only then may data_received read.
        self._attention: asyncio.Future[None] | None = None
        #: A message read() gave that was not the one peeked at: the task's to handle.
        self._held: Any = None
        received, lost = protocol.data_received, protocol.connection_lost

        def data_received(data: bytes) -> None:
            received(data)
            attention = self._attention
            if attention is None or attention.done():
                return
            try:
                if self._take():
                    attention.set_result(None)
            except (KeyboardInterrupt, SystemExit):
                raise
            except BaseException as exc:  # on_data's bug must not take the transport down
                attention.set_exception(exc)

        def connection_lost(exc: BaseException | None) -> None:
            lost(exc)
            self.wake()

        protocol.data_received = data_received
        protocol.connection_lost = connection_lost

    def wake(self) -> None:
        """Make the waiting task look at the socket now (its close began elsewhere)."""
        attention = self._attention
        if attention is not None and not attention.done():
            attention.set_result(None)

    def detach(self) -> None:
        """Stop tapping: give the protocol its own methods back. Idempotent."""
        self.tapping = False
        for name in _WRAPPED:
            vars(self._protocol).pop(name, None)
        self._attention = None

    async def next(self) -> aiohttp.WSMessage:
        """Return the next message that is not a data frame; data frames go to ``on_data``.

        Once the tap has fallen back, the messages come from plain ``ws.receive()``.
        """
        loop = asyncio.get_running_loop()
        while True:
            msg: aiohttp.WSMessage | None = self._held
            if msg is not None:
                self._held = None
            elif not self.tapping or self._take():
                if self._held is not None:
                    continue  # _take() read a message it did not expect: that one first
                msg = await self._ws.receive()
            else:
                # No local holds the future: a cancelled one keeps its CancelledError,
                # whose traceback would hold this frame, and so the future, in a cycle.
                self._attention = loop.create_future()
                try:
                    await self._attention
                finally:
                    self._attention = None
                continue
            if msg.type is _BINARY or msg.type is _TEXT:  # arrived meanwhile, or untapped
                self._on_data(msg)
                continue
            return msg

    def _take(self) -> bool:
        """Take the data frames at the head of the queue; tell whether the task must read.

        Never raises for aiohttp's sake: an entry or a ``read()`` it does not recognise
        detaches the tap (only ``on_data``'s own errors propagate).
        """
        queue, ws, on_data = self._queue, self._ws, self._on_data
        buffer = queue._buffer
        while buffer:
            entry = buffer[0]
            if entry.__class__ is not tuple or len(entry) != 2:  # aiohttp 4.0: a message
                return self._stop("aiohttp's message queue holds something other than pairs")
            msg: Any = entry[0]
            if msg.__class__ is not _MESSAGE:
                return self._stop("aiohttp's message queue holds an unknown message type")
            kind = msg.type
            if (kind is not _BINARY and kind is not _TEXT) or ws._closing or ws._closed:
                return True
            reading = queue.read()
            try:
                reading.send(None)
            except StopIteration as done:
                got = done.value
            except Exception:
                return self._stop("aiohttp's message queue failed a read with a message buffered")
            else:  # it waits: unwind it as a cancelled receive() would, the message stays
                _unwind(reading)
                return self._stop("aiohttp's message queue waited with a message buffered")
            if got is not msg:  # taken, yet not the message peeked at: the task's now
                self._held = got
                return self._stop("aiohttp's message queue read another message than its head")
            on_data(got)
        return bool(queue.is_eof() or ws._closing or ws._closed)

    def _stop(self, what: str) -> bool:
        """Fall back to the task's reading for good; tell that the task must read."""
        _fall_back(what)
        self.detach()  # (data_received wakes the task through its own reference)
        return True


def _unwind(coro: Coroutine[Any, Any, Any]) -> None:
    """End a suspended coroutine the way a cancellation would (its cleanup runs)."""
    try:
        coro.throw(asyncio.CancelledError())
    except (asyncio.CancelledError, Exception):
        return
    coro.close()


def frame_tap(
    ws: aiohttp.ClientWebSocketResponse, on_data: Callable[[aiohttp.WSMessage], None]
) -> FrameTap | None:
    """Return a tap on ``ws``, or None where it can't be tapped (the task then reads)."""
    if not SUPPORTED:
        return None
    try:
        protocol: Any = ws._response.connection.protocol  # type: ignore[union-attr]
        transport = protocol.transport
    except AttributeError:
        _fall_back("aiohttp's socket has no protocol where the tap looks")
        return None
    if transport is None or type(transport).__module__ not in _LOOKUP_TRANSPORTS:
        return None  # uvloop, or a socket already gone: the task reads, as designed
    what = _unknown_shape(ws, protocol)
    if what:
        _fall_back(what)
        return None
    return FrameTap(ws, protocol, ws._reader, on_data)


@functools.lru_cache(maxsize=8)  # asked per socket, answered per class
def _reads_by_coroutine(queue_class: Any) -> bool:
    return inspect.iscoroutinefunction(getattr(queue_class, "read", None))


def _unknown_shape(ws: aiohttp.ClientWebSocketResponse, protocol: Any) -> str:
    """Return what ``ws`` lacks of what the tap relies on; empty when it has it all."""
    try:
        queue: Any = ws._reader
        buffer = queue._buffer
        if not isinstance(buffer, deque):
            return "aiohttp's message queue is not a deque"
        if not all(_recognised(entry) for entry in buffer):
            return "aiohttp's message queue holds something other than (WSMessage, size)"
        if not _reads_by_coroutine(queue.__class__):
            return "aiohttp's message queue's read() is not a coroutine function"
        if queue.is_eof().__class__ is not bool:
            return "aiohttp's message queue's is_eof() does not answer a bool"
        if ws._closing.__class__ is not bool or ws._closed.__class__ is not bool:
            return "aiohttp's socket has no _closing/_closed flags"
        methods = vars(protocol)
        if any(name in methods or not callable(getattr(protocol, name)) for name in _WRAPPED):
            return "aiohttp's protocol methods are already replaced"
    except Exception:  # an attribute gone, a vars() refused: the tap cannot know
        return "aiohttp's socket lacks what the tap reads"
    return ""


# -- the handshake's frames: receive() stepped by hand ----------------------------------


def receive_now(
    ws: aiohttp.ClientWebSocketResponse,
) -> aiohttp.WSMessage | Awaitable[aiohttp.WSMessage]:
    """Return a message the socket has already buffered, else an awaitable for the next one.

    The awaitable *is* ``ws.receive()``, already started: awaiting it waits exactly as
    ``await ws.receive()`` would. This lets the driver read what a server sent along
    with its handshake (fal's edge refuses a token right after accepting the socket)
    before it counts the socket open, without a fixed wait. A ``receive()`` that is
    not a coroutine is returned as it is (awaiting it is the public path).
    """
    receiving: Any = ws.receive()
    if not isinstance(receiving, Coroutine):
        _fall_back("aiohttp's ws.receive() is not a coroutine")
        return receiving  # type: ignore[no-any-return]
    try:
        waiting_on = receiving.send(None)
    except StopIteration as done:
        message = done.value
        if isinstance(message, tuple):
            return message  # type: ignore[return-value]
        _fall_back("aiohttp's ws.receive() returned something other than a tuple")
        return _returning(message)
    return _Started(receiving, waiting_on)


async def _returning(message: Any) -> aiohttp.WSMessage:
    """Return what a ``receive()`` already returned, when it is not a message we know."""
    return message  # type: ignore[no-any-return]


@dataclass(slots=True)
class _Started:
    """A coroutine already run to its first suspension; awaiting it resumes it in place."""

    coro: Any
    waiting_on: Any

    def __await__(self) -> Generator[Any, Any, aiohttp.WSMessage]:
        coro, pending = self.coro, self.waiting_on
        while True:
            try:
                sent = yield pending
            except BaseException as exc:  # cancellation and the like go to the coroutine
                try:
                    pending = coro.throw(exc)
                except StopIteration as done:
                    return done.value  # type: ignore[no-any-return]
                continue
            try:
                pending = coro.send(sent)
            except StopIteration as done:
                return done.value  # type: ignore[no-any-return]


# -- what the cycle breaker (_cycles.py) needs to reach ----------------------------------


def socket_transport(ws: Any) -> asyncio.BaseTransport | None:
    """Return the transport under an aiohttp WebSocket (client or server), if it has one."""
    transport = getattr(getattr(ws, "_writer", None), "transport", None)
    return transport if isinstance(transport, asyncio.BaseTransport) else None


def drop_heartbeat_callback(ws: Any) -> None:
    """Drop the callback aiohttp's server-side ``heartbeat=`` leaves on the request's protocol."""
    # A protocol is also a queue (it has __len__): compare with None.
    protocol = getattr(getattr(ws, "_req", None), "protocol", None)
    if protocol is not None and getattr(protocol, "_data_received_cb", None) is not None:
        protocol._data_received_cb = None


def write_transports(ws: Any) -> tuple[asyncio.WriteTransport, ...]:
    """Return the transports whose write buffers hold what ``ws`` was handed, not yet sent.

    The socket's own transport (:func:`socket_transport`) and, under TLS, the TCP
    transport the TLS one writes into; an empty tuple when none is recognised.
    """
    found: list[asyncio.WriteTransport] = []
    transport: Any = getattr(getattr(ws, "_writer", None), "transport", None)
    # Asked only get_write_buffer_size(): any transport that has it will do (uvloop's
    # are not asyncio.WriteTransport subclasses, but have it).
    while callable(getattr(transport, "get_write_buffer_size", None)) and len(found) < 2:
        found.append(transport)
        transport = getattr(getattr(transport, "_ssl_protocol", None), "_transport", None)
    return tuple(found)


def drop_lost(ws: Any) -> bool:
    """Drop the connection of a socket whose peer is gone (no close handshake to wait for).

    ``receive()`` marks a socket abnormally closed (1006) when the wait it is in is
    cancelled, and a close then drops the transport at once; a socket read by the tap
    waits elsewhere, so its close would wait out the close timeout for a peer that
    stopped answering. Aborting the transport (public asyncio API, on the transport of
    item 3) ends it as a lost connection does. Returns False, leaving the socket to
    its close, where the transport is not found.
    """
    abort = getattr(socket_transport(ws), "abort", None)
    if not callable(abort):
        return False
    abort()
    return True
