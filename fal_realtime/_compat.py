"""Differences between the dependency releases this package supports, in one place.

Each helper names the release that changed the behaviour it bridges, so it can go
once the floor in pyproject.toml passes that release.
"""

from __future__ import annotations

import asyncio
import collections.abc
import contextvars
import sys
from collections.abc import Coroutine, Generator
from typing import Any

import aiohttp
import tenacity

__all__ = ["reset_retrying", "start_task", "ws_close_timeout"]

#: aiohttp 3.11 replaced ``ws_connect(timeout=seconds)`` by ``ClientWSTimeout`` (and
#: deprecated the float).
_ClientWSTimeout: Any = getattr(aiohttp, "ClientWSTimeout", None)


def ws_close_timeout(seconds: float) -> dict[str, Any]:
    """Return the ``ws_connect`` keyword that bounds the close handshake to ``seconds``."""
    if _ClientWSTimeout is None:
        return {"timeout": seconds}
    return {"timeout": _ClientWSTimeout(ws_close=seconds)}


def reset_retrying(retrying: tenacity.AsyncRetrying) -> None:
    """Break the reference cycle a used tenacity controller keeps.

    tenacity 8.3 moved the per-call state into ``iter_state`` (per thread), which keeps
    bound methods of the controller: a cycle that only a full GC pass frees. Older
    releases keep no such state.
    """
    state = getattr(retrying, "iter_state", None)
    if state is not None:
        state.reset()


# -- eager tasks --------------------------------------------------------------------------

if sys.version_info >= (3, 12):

    def start_task(
        loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, Any], name: str
    ) -> tuple[asyncio.Task[Any], bool]:
        """Start ``coro`` in a task, its first step now; return it and whether it is done.

        Python 3.12 added eager tasks (``eager_start=True``): a coroutine that finishes
        without suspending costs no trip through the event loop.
        """
        task: asyncio.Task[Any] = asyncio.Task(  # type: ignore[call-arg,unused-ignore]
            coro, loop=loop, name=name, eager_start=True
        )
        return task, task.done()

else:

    def start_task(
        loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, Any], name: str
    ) -> tuple[asyncio.Task[Any], bool]:
        """Python 3.11 has no eager tasks: make one of a task and a first step run now.

        The first step runs at once, as the new task's (``asyncio.current_task()`` and
        ``asyncio.timeout()`` see the task, its context is the task's own), through
        ``asyncio.tasks._enter_task``/``_leave_task`` (named in that module's
        ``__all__``). The task's own first step, one loop pass later, then only
        finishes, or goes on where the coroutine suspended. Returns the task and whether
        the coroutine is done already.
        """
        first = _FirstStepTaken(coro)
        context = contextvars.copy_context()
        task = loop.create_task(first, name=name, context=context)
        running = asyncio.tasks.current_task(loop)
        if running is not None:
            asyncio.tasks._leave_task(loop, running)
        asyncio.tasks._enter_task(loop, task)
        try:
            context.run(first.step)
        finally:
            asyncio.tasks._leave_task(loop, task)
            if running is not None:
                asyncio.tasks._enter_task(loop, running)
        return task, first.done


class _FirstStepTaken(collections.abc.Coroutine[Any, Any, Any]):
    """A coroutine whose first step was taken before its task ran it (Python 3.11)."""

    __slots__ = ("_coro", "_failure", "_pending", "_result", "done")

    def __init__(self, coro: Coroutine[Any, Any, Any]) -> None:
        self._coro = coro
        self._pending: Any = None  # what the first step suspended on, until the task sees it
        self._result: Any = None
        self._failure: BaseException | None = None
        self.done = False

    def step(self) -> None:
        """Take the first step (as the task, in its context)."""
        try:
            self._pending = self._coro.send(None)
        except StopIteration as stop:
            self.done, self._result = True, stop.value
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:
            self.done, self._failure = True, exc

    def _finished(self) -> Any:
        failure, self._failure = self._failure, None
        if failure is not None:
            raise failure
        raise StopIteration(self._result)

    def send(self, value: Any) -> Any:
        if self.done:
            return self._finished()
        pending, self._pending = self._pending, None
        if pending is not None:  # the task's first step: wait for what the coroutine waits on
            return pending
        return self._coro.send(value)

    def throw(self, typ: Any, val: Any = None, tb: Any = None) -> Any:
        if self.done:
            raise typ if val is None else val
        self._pending = None
        return self._coro.throw(typ if val is None else val)

    def close(self) -> None:
        self._coro.close()

    def __await__(self) -> Generator[Any, Any, Any]:  # a task drives it; nothing awaits it
        raise TypeError("not awaitable")
