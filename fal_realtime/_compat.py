"""Differences between the dependency releases this package supports, in one place.

Each helper names the release that changed the behaviour it bridges, so it can go
once the floor in pyproject.toml passes that release.
"""

from __future__ import annotations

from typing import Any

import aiohttp
import tenacity

__all__ = ["reset_retrying", "ws_close_timeout"]

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
