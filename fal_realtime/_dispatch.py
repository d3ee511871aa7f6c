"""Deliver a connection's events to user callbacks and pull-style iterators, in order.

No task stands by: an event is delivered at once, from the reader, when nothing is
queued ahead of it. A plain callback runs inline; an ``async def`` one is started
eagerly (Python 3.12+: ``asyncio.Task(..., eager_start=True)``), so one that finishes
without suspending costs no task switch. A callback that does suspend goes on in its
own task; events arriving meanwhile queue behind it and are delivered, in order, when
it is done — so a slow callback never stalls reading. When more than ``max_backlog``
results wait, the oldest waiting result is dropped and counted
(``stats.dropped["slow_consumer"]``): realtime results are superseded by newer ones,
as inputs are. Errors, state changes and lifecycle events are never dropped.

On Python 3.11 (no eager tasks) an ``async def`` callback runs in a task of its own,
started at once; the order and the backlog rules are the same.
"""

from __future__ import annotations

import asyncio
import collections
import inspect
import logging
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from types import CoroutineType
from typing import Any, Generic, TypeVar

from ._callbacks import OnClose, OnError, OnMeta, OnOpen, OnResult, OnStateChange
from ._compat import eager_task
from .errors import CALLBACK_ERROR, RealtimeError

__all__ = ["Callbacks", "Dispatcher", "Subscription"]

log = logging.getLogger("fal_realtime")

T = TypeVar("T")
Callback = Callable[..., Any]


@dataclass(slots=True)
class Callbacks:
    """The user's callbacks; any may be a plain function or ``async def``."""

    on_result: OnResult | None = None
    on_error: OnError | None = None
    on_open: OnOpen | None = None
    on_close: OnClose | None = None
    on_state_change: OnStateChange | None = None
    on_meta: OnMeta | None = None


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


_RESULT = "on_result"


class Dispatcher:
    """Invoke callbacks in event order, inline when idle; see the module docstring."""

    __slots__ = (
        "_backlog",
        "_busy",
        "_callbacks",
        "_idle",
        "_log",
        "_max_backlog",
        "_name",
        "_on_callback_error",
        "_on_drop",
        "_results",
        "_results_waiting",
        "_running",
        "_states",
        "_stopped",
    )

    def __init__(
        self,
        callbacks: Callbacks,
        *,
        max_backlog: int,
        on_drop: Callable[[str], None],
        on_callback_error: Callable[[], None],
        name: str,
        log: logging.Logger | logging.LoggerAdapter[logging.Logger] = log,
    ) -> None:
        # Made when something must wait (a callback suspended), dropped once drained.
        self._backlog: collections.deque[tuple[str, tuple[Any, ...]]] | None = None
        self._results_waiting = 0
        self._max_backlog = max_backlog
        self._on_drop = on_drop
        self._on_callback_error = on_callback_error
        self._name = name
        self._log = log  # the connection's: its lines carry its app id and connection id
        self._running = False  # delivering now (guards against re-entry from a callback)
        self._busy: asyncio.Task[Any] | None = None  # a callback that suspended
        self._idle: asyncio.Future[None] | None = None
        self._stopped = False
        # Held weakly: an iterator the caller drops without using takes its queue with it.
        # Made on first use: most connections never iterate.
        self._results: weakref.WeakSet[Subscription[Any]] | None = None
        self._states: weakref.WeakSet[Subscription[Any]] | None = None
        self.callbacks = callbacks

    @property
    def callbacks(self) -> Callbacks:
        """Return the callbacks in use."""
        return self._callbacks

    @callbacks.setter
    def callbacks(self, callbacks: Callbacks) -> None:
        self._callbacks = callbacks

    # -- producers (called from the driver) ---------------------------------------------

    def result(self, value: Any) -> None:
        """Deliver a result: at once when idle, else queued (the oldest dropped when full)."""
        if self._results:
            for sub in self._results:
                sub.push(value)
        if self._stopped:
            return
        if self._busy is None and not self._running and not self._backlog:
            callback = self._callbacks.on_result
            if callback is not None:
                self._deliver_now(_RESULT, callback, (value,))
            return
        backlog = self._queue()
        if self._results_waiting >= self._max_backlog:
            for index, (name, _) in enumerate(backlog):
                if name == _RESULT:
                    del backlog[index]
                    self._results_waiting -= 1
                    self._on_drop("slow_consumer")
                    break
        self._results_waiting += 1
        backlog.append((_RESULT, (value,)))

    def emit(self, name: str, *args: Any) -> None:
        """Deliver a non-result event (error, meta, state change, open, close) in order."""
        if name == "on_state_change" and self._states:
            for sub in self._states:
                sub.push(args[0])
        if self._stopped:
            return
        if self._busy is None and not self._running and not self._backlog:
            callback = getattr(self._callbacks, name)
            if callback is not None:
                self._deliver_now(name, callback, args)
        else:
            self._queue().append((name, args))

    def _queue(self) -> collections.deque[tuple[str, tuple[Any, ...]]]:
        if self._backlog is None:
            self._backlog = collections.deque()
        return self._backlog

    # -- delivery -------------------------------------------------------------------------

    def _deliver_now(self, name: str, callback: Callback, args: tuple[Any, ...]) -> None:
        """Call the callback for an event nothing waits ahead of, then what it queued."""
        self._running = True
        try:
            self._call(name, callback, args)
        finally:
            self._running = False
        if self._backlog and self._busy is None:
            self._drain()

    def _drain(self) -> None:
        """Deliver queued events until one suspends or none is left."""
        self._running = True
        try:
            backlog = self._backlog
            while backlog and self._busy is None:
                name, args = backlog.popleft()
                if name == _RESULT:
                    self._results_waiting -= 1
                callback = getattr(self._callbacks, name)
                if callback is not None:
                    self._call(name, callback, args)
        finally:
            self._running = False
        if self._busy is None:
            self._backlog = None
            if self._idle is not None and not self._idle.done():
                self._idle.set_result(None)

    def _call(self, name: str, callback: Callback, args: tuple[Any, ...]) -> None:
        try:
            outcome = callback(*args)
        except Exception as exc:
            self._failed(name, exc)
            return
        if outcome is not None:
            self._started(name, outcome)

    def _started(self, name: str, outcome: Any) -> None:
        """Run what a callback returned, if it is awaitable (an ``async def`` callback)."""
        if type(outcome) is not CoroutineType and not inspect.isawaitable(outcome):
            return
        # The task's body finishes the work (no done callback: one handle fewer per call).
        task = eager_task(asyncio.get_running_loop(), self._run(name, outcome), name=self._name)
        if not task.done():  # it suspended (or, on 3.11, has not started): the rest waits
            self._busy = task

    async def _run(self, name: str, awaitable: Awaitable[Any]) -> None:
        """Run one callback's awaitable in its task; report its failure, then deliver on."""
        try:
            await awaitable
        except Exception as exc:
            self._failed(name, exc)
        except (asyncio.CancelledError, KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:  # neither ours to swallow silently nor to crash with
            self._log.error("fal_realtime: %s callback raised %r", name, exc)
        finally:
            # Only a callback that suspended is ``_busy`` (one at a time): it was what
            # the queue waited for. One that never suspended is still inside _call.
            if self._busy is not None:
                self._busy = None
                self._drain()

    def _failed(self, name: str, exc: Exception) -> None:
        """Log a callback's exception and report it to on_error as CALLBACK_ERROR."""
        self._log.exception("fal_realtime: %s callback raised", name, exc_info=exc)
        self._on_callback_error()
        if name != "on_error" and self._callbacks.on_error is not None and not self._stopped:
            error = RealtimeError(
                CALLBACK_ERROR, f"{name} callback raised {type(exc).__name__}: {exc}"
            )
            error.__cause__ = exc
            self._queue().appendleft(("on_error", (error,)))

    # -- pull-style consumers ----------------------------------------------------

    def subscribe_results(self) -> Subscription[Any]:
        if self._results is None:
            self._results = weakref.WeakSet()
        return self._subscribe(self._results, lambda: self._on_drop("results"))

    def subscribe_states(self) -> Subscription[Any]:
        if self._states is None:
            self._states = weakref.WeakSet()
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

    # -- the end -------------------------------------------------------------------------

    async def stop(self, *, drain_timeout_s: float) -> None:
        """Deliver what is queued (bounded by ``drain_timeout_s``), then stop delivering."""
        if self._busy is not None or self._backlog:
            self._idle = asyncio.get_running_loop().create_future()
            if self._busy is None and not self._running:
                self._drain()
            try:
                async with asyncio.timeout(drain_timeout_s):
                    await asyncio.shield(self._idle)
            except TimeoutError:
                self._log.warning("fal_realtime: callbacks still running after close; cancelled")
        self._stopped = True
        self._backlog = None
        for sub in (*(self._results or ()), *(self._states or ())):
            sub.end()
        busy = self._busy
        if busy is not None:
            busy.cancel()
            await asyncio.gather(busy, return_exceptions=True)
        self._idle = None
