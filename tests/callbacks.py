"""One recorder for what a realtime connection reports through its public callbacks.

    rec = Recorder()                      # or the ``recorder`` fixture (tests/conftest.py)
    conn = await fal_realtime.connect(app, **rec.hooks(), ...)
    rec.conn = conn                       # optional: notes stats.sent at each RECONNECTING
    await rec.until(lambda: len(rec.results) == 3)   # woken by the callbacks, no polling
    first = await rec.next_result()       # results handed out one at a time, in order

Every wait is bounded by ``WAIT``; a callback wakes the waiters, so nothing sleeps.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import fal_realtime
from fal_realtime import ConnectionState, RealtimeError

from .gateway_tools import WAIT


class Recorder:
    """Collect everything a connection reports through its callbacks; wait on it."""

    def __init__(self, *, result: Callable[[Any], Any] | None = None) -> None:
        """Record each result as ``result(value)`` (the value itself by default)."""
        self.results: list[Any] = []
        self.errors: list[RealtimeError] = []
        self.states: list[ConnectionState] = []
        self.meta: list[Any] = []
        self.opens = 0
        self.closes: list[int | None] = []
        #: ``conn.stats.sent`` each time the connection went RECONNECTING (needs ``conn``).
        self.sent_when_reconnecting: list[int] = []
        self.conn: fal_realtime.RealtimeConnection | None = None
        self._pick = result
        self._taken = 0
        self._changed = asyncio.Event()

    def hooks(self) -> dict[str, Any]:
        """Return the callbacks to pass to ``connect()``."""
        return {
            "on_result": self.on_result,
            "on_error": self.on_error,
            "on_state_change": self.on_state_change,
            "on_meta": self.on_meta,
            "on_open": self.on_open,
            "on_close": self.on_close,
        }

    def on_result(self, value: Any) -> None:
        self.results.append(value if self._pick is None else self._pick(value))
        self._changed.set()

    def on_error(self, error: RealtimeError) -> None:
        self.errors.append(error)
        self._changed.set()

    def on_state_change(self, state: ConnectionState) -> None:
        self.states.append(state)
        if state is ConnectionState.RECONNECTING and self.conn is not None:
            self.sent_when_reconnecting.append(self.conn.stats.sent)
        self._changed.set()

    def on_meta(self, value: Any) -> None:
        self.meta.append(value)
        self._changed.set()

    def on_open(self) -> None:
        self.opens += 1
        self._changed.set()

    def on_close(self, code: int | None) -> None:
        self.closes.append(code)
        self._changed.set()

    async def until(self, predicate: Callable[[], Any], *, within: float = WAIT) -> None:
        """Wait (bounded) until ``predicate()`` holds; a callback re-checks it."""
        async with asyncio.timeout(within):
            while not predicate():
                self._changed.clear()
                await self._changed.wait()

    async def next_result(self) -> Any:
        """Return the next result not handed out yet, waiting (bounded) for it."""
        await self.until(lambda: len(self.results) > self._taken)
        self._taken += 1
        return self.results[self._taken - 1]

    def dormant_times(self) -> int:
        """Count the sessions the server ended normally (TIMEOUT or INTERNAL_ERROR)."""
        return self.states.count(ConnectionState.DORMANT)
