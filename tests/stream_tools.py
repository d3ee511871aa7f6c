"""A client for the streaming-mode tests: every input kept, results awaited without sleeps."""

from __future__ import annotations

import fal_realtime
from fal_realtime import RealtimeConnection
from fal_realtime.server import RunningGateway

from .callbacks import Recorder
from .conftest import KEY


async def streaming_connect(
    running: RunningGateway, app: str, seen: Recorder
) -> RealtimeConnection:
    """Connect to ``app`` keeping every input, in order, with no pacing."""
    return await fal_realtime.connect(
        app,
        **seen.hooks(),
        base_url=running.ws_url,
        key=KEY,
        coalesce=False,
        throttle_interval=0,
    )
