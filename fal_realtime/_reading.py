"""How the realtime driver reads a socket: the handshake's frames, then data frames as they come.

A mixin of :class:`~fal_realtime._driver.Driver` (it uses the driver's state): what
the server sent with its handshake is read before the socket counts as open; after
that, data frames are taken as aiohttp parses them (:mod:`fal_realtime._tap`) and
handed to the session machine and the dispatcher, and the driver's task reads
everything else (pings, close frames, the end of the stream).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Awaitable, Callable

import aiohttp

from ._dispatch import Dispatcher
from ._keepalive import KeepAlive
from ._options import RealtimeOptions
from ._outbox import Outbox
from ._protocol.codecs import Codec
from ._protocol.realtime import Frame, FrameKind, classify, plain_result
from ._protocol.session import Action, OpenSocket, RealtimeSession, RetryAfter
from ._stats import RealtimeStats
from ._tap import FrameTap, frame_tap
from ._transport import receive_now, socket_end

__all__ = ["Reading"]

_BINARY, _TEXT = aiohttp.WSMsgType.BINARY, aiohttp.WSMsgType.TEXT
_PING, _PONG = aiohttp.WSMsgType.PING, aiohttp.WSMsgType.PONG


class Reading:
    """The reading half of the driver (its state lives in the driver's slots)."""

    # What reading sets; the driver's __init__ gives them their first values.
    __slots__ = ("_last_send_at", "_tap", "_ws")

    _last_send_at: float | None
    _tap: FrameTap | None
    _ws: aiohttp.ClientWebSocketResponse | None
    # The driver's, read here.
    _codec: Codec
    _dispatcher: Dispatcher
    _machine: RealtimeSession
    _options: RealtimeOptions
    _outbox: Outbox
    stats: RealtimeStats

    def _do(self, actions: list[Action]) -> OpenSocket | RetryAfter | None:
        raise NotImplementedError  # the driver carries out the machine's actions

    def _start_writer(self) -> None:
        raise NotImplementedError  # the driver owns the writer

    async def _read(
        self, ws: aiohttp.ClientWebSocketResponse, keepalive: KeepAlive
    ) -> tuple[int | None, str]:
        """Read ``ws`` until it ends; return its close code and what ended it."""
        machine = self._machine
        on_data = self._data_handler(ws, keepalive)
        # What the server sent along with its handshake is read before the socket counts
        # as open, all of it (a ping among it included): an immediate refusal then fails
        # connect() itself (no fixed wait).
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
        self._do(machine.confirm())
        if machine.confirmed and self._ws is None:
            self._ws = ws
            if self._outbox:
                self._start_writer()
        # Data frames are taken as aiohttp parses them (see _tap.py); the task reads the
        # rest. Without a tap (uvloop, aiohttp < 3.10.11) the task reads everything.
        self._tap = tap = frame_tap(ws, on_data)
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

    def _data_handler(
        self, ws: aiohttp.ClientWebSocketResponse, keepalive: KeepAlive
    ) -> Callable[[aiohttp.WSMessage], None]:
        """Return what handles one data frame of ``ws`` (its hot path: locals, no lookups)."""
        machine, dispatcher, stats = self._machine, self._dispatcher, self.stats
        codec, recorder = self._codec, self._options.recorder
        decode, custom, fast = codec.decode, codec.custom_decode, not codec.custom_decode
        classified = self._classified
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
                    if self._last_send_at is not None:
                        stats.last_latency_s = time.perf_counter() - self._last_send_at
                        self._last_send_at = None
                    if not proven:  # the machine hears of the first result only: see result()
                        proven = True
                        self._do(machine.result())
                    dispatcher.result(value)
                    return
            classified(classify(data, decode, custom_decode=custom), ws)

        return on_data

    def _classified(self, frame: Frame, ws: aiohttp.ClientWebSocketResponse) -> None:
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
