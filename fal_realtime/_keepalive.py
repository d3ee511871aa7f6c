"""The clients' own WebSocket keep-alive: a ping every interval, a pong awaited in time.

Why not aiohttp's ``heartbeat=``: it keeps each socket it watched in reference cycles
that only a full GC pass frees (a pong-timeout callback of the socket's own on aiohttp
3.11–3.13; on Python 3.12+ an eagerly started ping task whose failure holds the socket
through its traceback), and it behaves differently from one aiohttp release to the next.
This one is a coroutine that runs in the reader's task group (:meth:`KeepAlive.run`),
or timers whose pings run there (:meth:`KeepAlive.watch`, the realtime client's: an idle
socket then holds a timer handle, not a task); either way it ends with the reader and
nothing of it outlives the socket.

The rule is aiohttp's: a socket that was silent for an interval gets a ping, and a
peer that then stays silent for half an interval more is gone. Any frame counts as a
sign of life, a pong or data: the reader sets :attr:`KeepAlive.heard` for each one
(one attribute store per frame), so a busy socket is never pinged and a slow link
that still delivers results is not declared dead. The reader opens the socket with
``autoping=False`` and answers the peer's pings itself, and it reads inside
``asyncio.timeout(None)``: when the peer is gone, :meth:`KeepAlive.run` expires that
timeout. The reader's ``receive()`` is cancelled, which leaves aiohttp's socket marked
as an abnormal closure (1006), so the owner's ``close()`` drops the transport at once
instead of waiting for a close handshake from a peer that is gone, and the reader's
``async with`` raises ``TimeoutError`` with ``scope.expired()`` true.
Nothing is raised through a task group: an exception group keeps itself in a
reference cycle (``asyncio.TaskGroup.__aexit__`` holds it in a local of the frame its
traceback holds), and a lost socket is no error.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, Protocol

__all__ = ["PONG_MISSED_CODE", "KeepAlive", "Watch"]

#: The close code a socket gets when its peer stopped answering pings (abnormal closure).
PONG_MISSED_CODE = 1006


class _Pingable(Protocol):
    async def ping(self, message: bytes = b"") -> None: ...


class KeepAlive:
    """Watch a socket: ping it after ``interval_s`` of silence; lost after ``interval_s / 2`` more.

    Args:
        interval_s: the heartbeat interval; None makes a watcher that never pings (the
            reader can mark it all the same).
    """

    __slots__ = ("_interval_s", "_timeout_s", "heard", "missed", "pings")

    def __init__(self, interval_s: float | None) -> None:
        if interval_s is not None and interval_s <= 0:
            raise ValueError(f"heartbeat_s must be > 0 (or None to disable), got {interval_s}")
        self._interval_s = interval_s
        self._timeout_s = 0.0 if interval_s is None else interval_s / 2
        #: Set by the reader for every frame it receives (data, ping or pong).
        self.heard = False
        #: Pings sent so far.
        self.pings = 0
        #: Why the socket was declared lost (empty while it is not).
        self.missed = ""

    @property
    def enabled(self) -> bool:
        """Tell whether :meth:`run` pings at all."""
        return self._interval_s is not None

    async def run(self, ws: _Pingable, reading: asyncio.Timeout) -> None:
        """Watch ``ws`` until cancelled; expire ``reading`` (the reader's scope) if it is lost."""
        if self._interval_s is None:
            return
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self._interval_s)
            if self.heard:
                self.heard = False
                continue
            try:
                await ws.ping()
            except Exception:
                # A closing socket refuses the ping (ConnectionError, aiohttp's
                # ClientError, RuntimeError): the reader sees its end and reports it.
                return
            self.pings += 1
            await asyncio.sleep(self._timeout_s)
            if not self.heard:
                self.missed = f"no pong within {self._timeout_s:g} s of a ping: the peer is gone"
                reading.reschedule(loop.time())
                return
            self.heard = False

    def watch(
        self,
        ws: _Pingable,
        reading: asyncio.Timeout,
        spawn: Callable[[Coroutine[Any, Any, None]], asyncio.Task[None]],
    ) -> Watch:
        """Watch ``ws`` by :meth:`run`'s rule with timers instead of a standing task.

        Between pings only a timer handle exists; ``spawn`` runs each ping (a short task,
        in the reader's task group). Call :meth:`Watch.stop` when the reader ends.
        """
        return Watch(self, ws, reading, spawn)


class Watch:
    """A :meth:`KeepAlive.watch` in progress: a timer, and a ping task while one is sent."""

    __slots__ = ("_handle", "_keepalive", "_loop", "_ping", "_reading", "_spawn", "_ws")

    def __init__(
        self,
        keepalive: KeepAlive,
        ws: _Pingable,
        reading: asyncio.Timeout,
        spawn: Callable[[Coroutine[Any, Any, None]], asyncio.Task[None]],
    ) -> None:
        self._keepalive = keepalive
        self._ws = ws
        self._reading = reading
        self._spawn = spawn
        self._loop = asyncio.get_running_loop()
        self._ping: asyncio.Task[None] | None = None
        self._handle: asyncio.TimerHandle | None = None
        if keepalive._interval_s is not None:
            self._handle = self._loop.call_later(keepalive._interval_s, self._interval_over)

    def stop(self) -> None:
        """Stop watching: cancel the timer and a ping in flight (breaks every reference)."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        if self._ping is not None:
            self._ping.cancel()
            self._ping = None

    def _interval_over(self) -> None:
        keepalive = self._keepalive
        assert keepalive._interval_s is not None
        if keepalive.heard:
            keepalive.heard = False
            self._handle = self._loop.call_later(keepalive._interval_s, self._interval_over)
            return
        self._handle = None
        self._ping = self._spawn(self._send_ping())

    async def _send_ping(self) -> None:
        keepalive = self._keepalive
        try:
            await self._ws.ping()
        except Exception:
            # A closing socket refuses the ping: the reader sees its end and reports it.
            return
        finally:
            self._ping = None
        keepalive.pings += 1
        self._handle = self._loop.call_later(keepalive._timeout_s, self._pong_due)

    def _pong_due(self) -> None:
        keepalive = self._keepalive
        assert keepalive._interval_s is not None
        self._handle = None
        if not keepalive.heard:
            keepalive.missed = (
                f"no pong within {keepalive._timeout_s:g} s of a ping: the peer is gone"
            )
            self._reading.reschedule(self._loop.time())
            return
        keepalive.heard = False
        self._handle = self._loop.call_later(keepalive._interval_s, self._interval_over)
