"""The clients' own WebSocket keep-alive: a ping every interval, a pong awaited in time.

Why not aiohttp's ``heartbeat=``: it keeps each socket it watched in reference cycles
that only a full GC pass frees (a pong-timeout callback of the socket's own on aiohttp
3.11–3.13; on Python 3.12+ an eagerly started ping task whose failure holds the socket
through its traceback), and it behaves differently from one aiohttp release to the next.
This one is timers whose pings run as short tasks the reader owns
(:meth:`KeepAlive.watch`): an idle socket holds a timer handle, not a task, and
nothing of it outlives the reader.

The rule is aiohttp's: a socket that was silent for an interval gets a ping, and a
peer that then stays silent for half an interval more is gone. Any frame counts as a
sign of life, a pong or data: the reader sets :attr:`KeepAlive.heard` for each one
(one attribute store per frame), so a busy socket is never pinged and a slow link
that still delivers results is not declared dead. The reader opens the socket with
``autoping=False`` and answers the peer's pings itself, and it reads inside
``asyncio.timeout(None)``: when the peer is gone, the watch expires that timeout.
The reader's ``receive()`` is cancelled, which leaves aiohttp's socket marked as an
abnormal closure (1006), so the owner's ``close()`` drops the transport at once instead
of waiting for a close handshake from a peer that is gone, and the reader's
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
        """Tell whether :meth:`watch` pings at all."""
        return self._interval_s is not None

    def watch(
        self,
        ws: _Pingable,
        reading: asyncio.Timeout,
        spawn: Callable[[Coroutine[Any, Any, None]], asyncio.Task[None]],
    ) -> Watch:
        """Watch ``ws``, expiring ``reading`` (the reader's scope) when it is lost.

        Timers, not a standing task: between pings only a timer handle exists; ``spawn``
        runs each ping as a short task, which its owner awaits. Call :meth:`Watch.stop`
        when the reader ends.
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
