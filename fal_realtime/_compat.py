"""Differences between the dependency releases this package supports, in one place.

Each helper names the release that changed the behaviour it bridges, so it can go
once the floor in pyproject.toml passes that release.
"""

from __future__ import annotations

import asyncio
import functools
import sys
from collections.abc import Coroutine
from typing import Any, TypeVar

import aiohttp
import tenacity

T = TypeVar("T")

__all__ = ["eager_task", "reset_retrying", "ws_close_timeout"]

#: aiohttp 3.11 replaced ``ws_connect(timeout=seconds)`` by ``ClientWSTimeout`` (and
#: deprecated the float).
_ClientWSTimeout: Any = getattr(aiohttp, "ClientWSTimeout", None)


def ws_close_timeout(seconds: float) -> dict[str, Any]:
    """Return the ``ws_connect`` keyword that bounds the close handshake to ``seconds``."""
    if _ClientWSTimeout is None:
        return {"timeout": seconds}
    return {"timeout": _ws_timeout(seconds)}


@functools.lru_cache(maxsize=16)  # frozen: every socket with the same bound shares one
def _ws_timeout(seconds: float) -> Any:
    return _ClientWSTimeout(ws_close=seconds)


def reset_retrying(retrying: tenacity.AsyncRetrying) -> None:
    """Break the reference cycle a used tenacity controller keeps.

    tenacity 8.3 moved the per-call state into ``iter_state`` (per thread), which keeps
    bound methods of the controller: a cycle that only a full GC pass frees. Older
    releases keep no such state.
    """
    state = getattr(retrying, "iter_state", None)
    if state is not None:
        state.reset()


def eager_task(
    loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, T], *, name: str
) -> asyncio.Task[T]:
    """Start ``coro`` in a task that runs at once, up to its first wait (Python 3.12+).

    Python 3.11 has no eager tasks: the task starts on the loop's next turn.
    """
    if sys.version_info >= (3, 12):
        return asyncio.Task(coro, loop=loop, name=name, eager_start=True)
    return loop.create_task(coro, name=name)
