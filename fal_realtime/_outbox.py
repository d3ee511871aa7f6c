"""What is waiting to be sent: a latest-wins slot, or a bounded first-in-first-out queue.

The outbox belongs to the connection, not to a socket: what it holds survives a
reconnect and goes out first on the new socket.
"""

from __future__ import annotations

import asyncio
import collections
from dataclasses import dataclass

__all__ = ["Outbox", "Outgoing"]


@dataclass(slots=True)
class Outgoing:
    """One encoded frame waiting to be sent."""

    frame: bytes | str


class Outbox:
    """Hold pending frames; ``coalesce`` keeps only the newest one."""

    def __init__(self, *, coalesce: bool, max_pending: int) -> None:
        if max_pending < 1:
            raise ValueError(f"max_pending must be >= 1, got {max_pending}")
        self.coalesce = coalesce
        self.max_pending = 1 if coalesce else max_pending
        self._items: collections.deque[Outgoing] = collections.deque()
        self._nonempty = asyncio.Event()
        self._space = asyncio.Event()
        self._space.set()

    def __len__(self) -> int:
        return len(self._items)

    def __bool__(self) -> bool:
        return bool(self._items)

    def put_latest(self, item: Outgoing) -> bool:
        """Replace whatever waits with ``item``; return True when one was superseded."""
        superseded = bool(self._items)
        self._items.clear()
        self._items.append(item)
        self._nonempty.set()
        return superseded

    def put_nowait(self, item: Outgoing) -> None:
        """Append ``item``; raise ``asyncio.QueueFull`` when the queue is full."""
        if len(self._items) >= self.max_pending:
            raise asyncio.QueueFull
        self._items.append(item)
        self._nonempty.set()
        if len(self._items) >= self.max_pending:
            self._space.clear()

    async def put(self, item: Outgoing) -> None:
        """Append ``item``, waiting while the queue is full (back-pressure)."""
        while len(self._items) >= self.max_pending:
            self._space.clear()
            await self._space.wait()
        self.put_nowait(item)

    async def wait_nonempty(self) -> None:
        """Return once something is waiting to be sent."""
        while not self._items:
            self._nonempty.clear()
            await self._nonempty.wait()

    def pop(self) -> Outgoing:
        """Take the next frame to send."""
        item = self._items.popleft()
        self._after_remove()
        return item

    def push_front(self, item: Outgoing) -> bool:
        """Put back a frame that could not be sent, ahead of the rest.

        Return False when it is dropped instead: in latest-wins mode a newer frame
        that arrived meanwhile supersedes it.
        """
        if self.coalesce and self._items:
            return False
        self._items.appendleft(item)
        self._nonempty.set()
        if len(self._items) >= self.max_pending:
            self._space.clear()
        return True

    def clear(self) -> int:
        """Drop everything waiting; return how many frames were dropped."""
        count = len(self._items)
        self._items.clear()
        self._after_remove()
        return count

    def _after_remove(self) -> None:
        if len(self._items) < self.max_pending:
            self._space.set()
        if not self._items:
            self._nonempty.clear()
