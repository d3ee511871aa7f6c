"""Deliver a connection's events to user callbacks and pull-style iterators, in order.

The socket reader only appends to a backlog; one dispatcher task per connection
invokes the callbacks (plain or ``async def``) one event at a time, so a slow
callback never stalls reading. When more than ``max_backlog`` results wait, the
oldest waiting result is dropped and counted (``stats.dropped["slow_consumer"]``):
realtime results are superseded by newer ones, as inputs are. Errors, state
changes and lifecycle events are never dropped.
"""

from __future__ import annotations

import asyncio
import collections
import inspect
import logging
import weakref
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from .errors import CALLBACK_ERROR, RealtimeError

__all__ = ["Callbacks", "Dispatcher", "Subscription"]

log = logging.getLogger("fal_realtime")

T = TypeVar("T")
Callback = Callable[..., Any]


@dataclass(slots=True)
class Callbacks:
    """The user's callbacks; any may be a plain function or ``async def``."""

    on_result: Callback | None = None
    on_error: Callback | None = None
    on_open: Callback | None = None
    on_close: Callback | None = None
    on_state_change: Callback | None = None
    on_meta: Callback | None = None


class Subscription(Generic[T]):
    """A bounded queue of events for one ``async for`` consumer; drops its oldest when full."""

    def __init__(
        self, limit: int, on_drop: Callable[[], None], on_done: Callable[[Subscription[T]], None]
    ) -> None:
        self._items: collections.deque[T] = collections.deque()
        self._limit = limit
        self._on_drop = on_drop
        self._on_done = on_done
        self._ready = asyncio.Event()
        self._ended = False

    def push(self, item: T) -> None:
        if len(self._items) >= self._limit:
            self._items.popleft()
            self._on_drop()
        self._items.append(item)
        self._ready.set()

    def end(self) -> None:
        self._ended = True
        self._ready.set()

    async def __aiter__(self) -> AsyncIterator[T]:
        try:
            while True:
                while self._items:
                    yield self._items.popleft()
                if self._ended:
                    return
                self._ready.clear()
                await self._ready.wait()
        finally:
            # A consumer that stops early (``break``) unsubscribes: nothing accumulates.
            self._on_done(self)


@dataclass(slots=True)
class _Event:
    name: str
    args: tuple[Any, ...] = field(default_factory=tuple)


_RESULT = "on_result"
_AWAIT = "__await__"
_STOP = _Event("__stop__")


class Dispatcher:
    """Own the task that invokes callbacks in event order."""

    def __init__(
        self,
        callbacks: Callbacks,
        *,
        max_backlog: int,
        on_drop: Callable[[str], None],
        on_callback_error: Callable[[], None],
        name: str,
    ) -> None:
        self._backlog: collections.deque[_Event] = collections.deque()
        self._busy = False
        self.callbacks = callbacks
        self._results_waiting = 0
        self._max_backlog = max_backlog
        self._on_drop = on_drop
        self._on_callback_error = on_callback_error
        self._ready = asyncio.Event()
        # Held weakly: an iterator the caller drops without using takes its queue with it.
        self._results: weakref.WeakSet[Subscription[Any]] = weakref.WeakSet()
        self._states: weakref.WeakSet[Subscription[Any]] = weakref.WeakSet()
        self._task = asyncio.get_running_loop().create_task(self._run(), name=name)
        self._stopped = False

    @property
    def callbacks(self) -> Callbacks:
        """Return the callbacks in use."""
        return self._callbacks

    @callbacks.setter
    def callbacks(self, callbacks: Callbacks) -> None:
        self._callbacks = callbacks
        on_result = callbacks.on_result
        # A plain on_result may run inline, from the reader, when nothing is queued ahead
        # of it: the same order, one task switch fewer per result.
        self._inline = on_result is not None and not any(
            inspect.iscoroutinefunction(c) for c in (on_result, type(on_result).__call__)
        )

    # -- producers (called from the reader and the supervisor) ---------------------

    def result(self, value: Any) -> None:
        """Deliver a result: inline when idle, else queued (the oldest dropped when full)."""
        if self._results:
            for sub in self._results:
                sub.push(value)
        if self._inline and not self._backlog and not self._busy and not self._stopped:
            self._call_inline(value)
            return
        if self._results_waiting >= self._max_backlog:
            for index, event in enumerate(self._backlog):
                if event.name == _RESULT:
                    del self._backlog[index]
                    self._results_waiting -= 1
                    self._on_drop("slow_consumer")
                    break
        self._results_waiting += 1
        self._push(_Event(_RESULT, (value,)))

    def _call_inline(self, value: Any) -> None:
        on_result = self._callbacks.on_result
        assert on_result is not None
        try:
            outcome = on_result(value)
        except Exception as exc:
            self._failed("on_result", exc)
            return
        if outcome is not None and inspect.isawaitable(outcome):
            self._push(_Event(_AWAIT, (outcome,)))  # a plain function returned a coroutine

    def emit(self, name: str, *args: Any) -> None:
        """Queue a non-result event (error, meta, state change, open, close)."""
        self._push(_Event(name, args))
        if name == "on_state_change":
            for sub in self._states:
                sub.push(args[0])

    def _push(self, event: _Event) -> None:
        if self._stopped:
            return
        self._backlog.append(event)
        self._ready.set()

    # -- pull-style consumers ----------------------------------------------------

    def subscribe_results(self) -> Subscription[Any]:
        return self._subscribe(self._results, lambda: self._on_drop("results"))

    def subscribe_states(self) -> Subscription[Any]:
        return self._subscribe(self._states, lambda: None)

    def _subscribe(
        self, subs: weakref.WeakSet[Subscription[Any]], on_drop: Callable[[], None]
    ) -> Subscription[Any]:
        sub: Subscription[Any] = Subscription(self._max_backlog, on_drop, subs.discard)
        if self._stopped:
            sub.end()
        else:
            subs.add(sub)
        return sub

    # -- the task ------------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            while not self._backlog:
                self._ready.clear()
                await self._ready.wait()
            event = self._backlog.popleft()
            if event is _STOP:
                return
            if event.name == _RESULT:
                self._results_waiting -= 1
            self._busy = True
            try:
                if event.name == _AWAIT:
                    await self._invoke(_RESULT, lambda awaitable: awaitable, event.args)
                    continue
                callback = getattr(self._callbacks, event.name)
                if callback is not None:
                    await self._invoke(event.name, callback, event.args)
            finally:
                self._busy = False

    async def _invoke(self, name: str, callback: Callback, args: tuple[Any, ...]) -> None:
        try:
            outcome = callback(*args)
            if outcome is not None and inspect.isawaitable(outcome):
                await outcome
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._failed(name, exc)

    def _failed(self, name: str, exc: Exception) -> None:
        """Log a callback's exception and report it to on_error as CALLBACK_ERROR."""
        log.exception("fal_realtime: %s callback raised", name, exc_info=exc)
        self._on_callback_error()
        if name != "on_error" and self._callbacks.on_error is not None:
            error = RealtimeError(
                CALLBACK_ERROR, f"{name} callback raised {type(exc).__name__}: {exc}"
            )
            error.__cause__ = exc
            self._backlog.appendleft(_Event("on_error", (error,)))
            self._ready.set()

    async def stop(self, *, drain_timeout_s: float) -> None:
        """Deliver what is queued (bounded by ``drain_timeout_s``), then stop the task."""
        if not self._stopped:
            self._stopped = True
            self._backlog.append(_STOP)
            self._ready.set()
            for sub in (*self._results, *self._states):
                sub.end()
        try:
            async with asyncio.timeout(drain_timeout_s):
                await asyncio.shield(self._task)
        except TimeoutError:
            log.warning("fal_realtime: callbacks still running after close; cancelled")
        finally:
            if not self._task.done():
                self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
