"""A client for the streaming-mode tests: every input kept, results awaited without sleeps."""

from __future__ import annotations

import asyncio
from typing import Any

import fal_realtime
from fal_realtime import ConnectionState, RealtimeConnection, RealtimeError
from fal_realtime.server import RunningGateway

from .conftest import KEY
from .gateway_tools import WAIT


class Seen:
    """What one connection reported through its public callbacks."""

    def __init__(self) -> None:
        self.results: list[Any] = []
        self.errors: list[RealtimeError] = []
        self.states: list[ConnectionState] = []
        self._changed = asyncio.Event()

    def _note(self, into: list[Any], item: Any) -> None:
        into.append(item)
        self._changed.set()

    async def until(self, predicate: Any) -> None:
        """Wait (bounded) until ``predicate()`` holds."""
        async with asyncio.timeout(WAIT):
            while not predicate():
                self._changed.clear()
                await self._changed.wait()

    def dormant_times(self) -> int:
        """Count the sessions the server ended normally (TIMEOUT or INTERNAL_ERROR)."""
        return self.states.count(ConnectionState.DORMANT)


async def streaming_connect(running: RunningGateway, app: str, seen: Seen) -> RealtimeConnection:
    """Connect to ``app`` keeping every input, in order, with no pacing."""
    return await fal_realtime.connect(
        app,
        on_result=lambda value: seen._note(seen.results, value),
        on_error=lambda error: seen._note(seen.errors, error),
        on_state_change=lambda state: seen._note(seen.states, state),
        base_url=running.ws_url,
        key=KEY,
        coalesce=False,
        throttle_interval=0,
    )
