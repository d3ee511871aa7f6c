"""Take a socket's data frames as aiohttp parses them, not one event-loop pass later.

The upstream behaviour this works around: aiohttp hands a parsed frame to whoever
awaits ``ws.receive()`` by resolving a future, so the reading task runs one event-loop
pass after the bytes arrived. For a callback API that pass is one too many: the reader
runs, calls ``on_result``, the callback resolves the user's future, and the user's task
runs one pass later still. Hand-written lock-step code that awaits ``receive()`` itself
pays one pass; a callback paid two. The tap delivers each data frame from within the
protocol's ``data_received``, so a callback costs what awaiting ``receive()`` costs.

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

Private aiohttp state used here, and only here (``tests/test_tap.py`` checks that the
tap is in use with the installed aiohttp, so a release that moves any of it fails a
test rather than quietly slowing down):

- ``ws._response.connection.protocol``: the protocol whose ``data_received`` and
  ``connection_lost`` are wrapped (instance attributes, removed by :meth:`detach`);
- ``ws._reader``: the queue of parsed messages; its ``_buffer`` (``(message, size)``
  pairs) is peeked at, its ``read()`` and ``is_eof()`` called;
- ``ws._closing`` and ``ws._closed`` (``closed`` without the property's call): a socket
  whose close began is read by the task only.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, Final

import aiohttp

__all__ = ["SUPPORTED", "FrameTap", "frame_tap"]

log = logging.getLogger("fal_realtime")

# Compared by identity: hashing an enum member runs Python code, once per frame here.
_BINARY: Final = aiohttp.WSMsgType.BINARY
_TEXT: Final = aiohttp.WSMsgType.TEXT
#: Transports that call ``protocol.data_received`` afresh for every read.
_LOOKUP_TRANSPORTS: Final = frozenset({"asyncio.selector_events", "asyncio.sslproto"})


def _version(text: str) -> tuple[int, ...]:
    parts = []
    for part in text.split(".")[:3]:
        digits = "".join(ch for ch in part if ch.isdigit())
        parts.append(int(digits or 0))
    return tuple(parts)


#: Whether the installed aiohttp can be tapped (older: ``receive()`` always enters a
#: timeout, and the message queue differs).
SUPPORTED: Final = _version(aiohttp.__version__) >= (3, 10, 11)


class FrameTap:
    """Deliver one socket's data frames from ``data_received``; see the module docstring."""

    __slots__ = ("_attention", "_on_data", "_protocol", "_queue", "_ws")

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
        #: Set while the task waits in next(): only then may data_received read.
        self._attention: asyncio.Future[None] | None = None
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
            except BaseException as exc:  # a bug here must not take the transport down
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
        """Stop tapping: give the protocol its own methods back."""
        for name in ("data_received", "connection_lost"):
            vars(self._protocol).pop(name, None)
        self._attention = None

    async def next(self) -> aiohttp.WSMessage:
        """Return the next message that is not a data frame; data frames go to ``on_data``."""
        loop = asyncio.get_running_loop()
        while True:
            if self._take():
                msg = await self._ws.receive()
                if msg.type is _BINARY or msg.type is _TEXT:  # arrived meanwhile
                    self._on_data(msg)
                    continue
                return msg
            # No local holds the future: a cancelled one keeps its CancelledError, whose
            # traceback would hold this frame, and so the future, in a cycle.
            self._attention = loop.create_future()
            try:
                await self._attention
            finally:
                self._attention = None

    def _take(self) -> bool:
        """Take the data frames at the head of the queue; tell whether the task must read."""
        queue, ws, on_data = self._queue, self._ws, self._on_data
        buffer = queue._buffer
        while buffer:
            kind = buffer[0][0].type
            if (kind is not _BINARY and kind is not _TEXT) or ws._closing or ws._closed:
                return True
            reading = queue.read()
            try:
                reading.send(None)
            except StopIteration as done:
                on_data(done.value)
            else:  # cannot happen with a message buffered; never leave it hanging
                reading.close()
                raise RuntimeError("aiohttp's message queue waited with a message buffered")
        return bool(queue.is_eof() or ws._closing or ws._closed)


def frame_tap(
    ws: aiohttp.ClientWebSocketResponse, on_data: Callable[[aiohttp.WSMessage], None]
) -> FrameTap | None:
    """Return a tap on ``ws``, or None where it can't be tapped (the task then reads)."""
    if not SUPPORTED:
        return None
    try:
        protocol: Any = ws._response.connection.protocol  # type: ignore[union-attr]
        queue: Any = ws._reader
        for probe in (queue._buffer, queue.read, queue.is_eof, ws._closing, ws._closed):
            del probe  # each must exist: the tap uses them all
        transport = protocol.transport
    except AttributeError:
        return None
    if transport is None or type(transport).__module__ not in _LOOKUP_TRANSPORTS:
        return None
    return FrameTap(ws, protocol, queue, on_data)


def write_transports(ws: aiohttp.ClientWebSocketResponse) -> tuple[Any, ...]:
    """Return the transports whose write buffers hold what ``ws`` was handed and not yet sent.

    The upstream gap this fills: aiohttp does not expose a client socket's transport
    (``ws.get_extra_info`` passes names through to it, but gives no buffer sizes), and
    asyncio's TLS transport counts only its own buffer, not the one of the TCP transport
    beneath it. The socket's link needs both to keep latest-wins at the link
    (:mod:`fal_realtime._backlog`). Each is asked only ``get_write_buffer_size()``,
    public asyncio API.

    Private state used: ``ws._response.connection.transport``; under TLS, asyncio's
    ``_SSLProtocolTransport._ssl_protocol._transport``. On any shape not recognised,
    the transports that were found are returned (none at all: an empty tuple), and the
    link measures what it can (the kernel's unsent bytes) without them.
    """
    found: list[Any] = []
    try:
        transport: Any = ws._response.connection.transport  # type: ignore[union-attr]
    except AttributeError:
        return ()
    while transport is not None and callable(getattr(transport, "get_write_buffer_size", None)):
        found.append(transport)
        # Under TLS, the TCP transport the TLS one writes into (None when not TLS).
        transport = getattr(getattr(transport, "_ssl_protocol", None), "_transport", None)
        if len(found) > 2:
            break
    return tuple(found)
