"""What is waiting to be sent: a latest-wins slot, or a bounded first-in-first-out queue.

The outbox belongs to the connection, not to a socket: what it holds survives a
reconnect and goes out first on the new socket. It allocates nothing until something
waits (an idle connection holds thousands of these in a busy service).
"""

from __future__ import annotations

import asyncio
import collections
from typing import TypeAlias

__all__ = ["Outbox", "Outgoing"]


#: One encoded frame waiting to be sent: bytes go out as a binary frame, str as text.
Outgoing: TypeAlias = bytes | str


class Outbox:
    """Hold pending frames; ``coalesce`` keeps only the newest one."""

    __slots__ = ("_space", "coalesce", "items", "max_pending")

    def __init__(self, *, coalesce: bool, max_pending: int) -> None:
        if max_pending < 1:
            raise ValueError(f"max_pending must be >= 1, got {max_pending}")
        self.coalesce = coalesce
        self.max_pending = 1 if coalesce else max_pending
        #: What waits, oldest first; None while nothing waits (so ``items is None`` is the
        #: send path's test for an empty outbox: no call).
        self.items: collections.deque[Outgoing] | None = None
        self._space: asyncio.Event | None = None  # set while there is room (coalesce=False)

    def __len__(self) -> int:
        return len(self.items) if self.items is not None else 0

    def __bool__(self) -> bool:
        return bool(self.items)

    def _queue(self) -> collections.deque[Outgoing]:
        if self.items is None:
            self.items = collections.deque()
        return self.items

    def put_latest(self, item: Outgoing) -> bool:
        """Replace whatever waits with ``item``; return True when one was superseded."""
        items = self._queue()
        superseded = bool(items)
        items.clear()
        items.append(item)
        return superseded

    def put_nowait(self, item: Outgoing) -> None:
        """Append ``item``; raise ``asyncio.QueueFull`` when the queue is full."""
        items = self._queue()
        if len(items) >= self.max_pending:
            raise asyncio.QueueFull
        items.append(item)

    async def put(self, item: Outgoing) -> None:
        """Append ``item``, waiting while the queue is full (back-pressure)."""
        while len(self) >= self.max_pending:
            if self._space is None:
                self._space = asyncio.Event()
            self._space.clear()
            await self._space.wait()
        self.put_nowait(item)

    def pop(self) -> Outgoing:
        """Take the next frame to send."""
        items = self._queue()
        item = items.popleft()
        if not items:
            self.items = None
        self._after_remove()
        return item

    def push_front(self, item: Outgoing) -> bool:
        """Put back a frame that could not be sent, ahead of the rest.

        Return False when it is dropped instead: in latest-wins mode a newer frame
        that arrived meanwhile supersedes it.
        """
        items = self._queue()
        if self.coalesce and items:
            return False
        items.appendleft(item)
        return True

    def clear(self) -> int:
        """Drop everything waiting; return how many frames were dropped."""
        count = len(self)
        self.items = None
        self._after_remove()
        return count

    def _after_remove(self) -> None:
        if self._space is not None and len(self) < self.max_pending:
            self._space.set()
