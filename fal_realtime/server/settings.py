"""What a WebSocket endpoint needs from the gateway, handed to it as one small record.

Endpoints (realtime sessions, the HTTP bridge) receive a :class:`Settings` rather than the
:class:`~fal_realtime.server.Gateway`, so that the imports run one way: the gateway builds
the record and the routes; nothing it serves imports it back.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass

from .auth import Authenticator
from .common import json_error

__all__ = ["ConnectionSlots", "Settings"]


class ConnectionSlots:
    """Count the live WebSockets of each subject (key or token owner); cap them."""

    def __init__(self, cap: int | None) -> None:
        self.cap = cap
        #: Live sockets per subject; a subject leaves the map with its last socket.
        self.live: dict[str, int] = {}

    @contextlib.contextmanager
    def slot(self, subject: str) -> Iterator[None]:
        """Hold one of ``subject``'s WebSocket slots; raise HTTP 429 when none is free."""
        live = self.live.get(subject, 0)
        if self.cap is not None and live >= self.cap:
            raise json_error(
                429, f"too many connections for this key ({self.cap}); close some and retry"
            )
        self.live[subject] = live + 1
        try:
            yield
        finally:
            left = self.live[subject] - 1
            if left:
                self.live[subject] = left
            else:
                del self.live[subject]


@dataclass(frozen=True, slots=True)
class Settings:
    """The gateway-wide facts a WebSocket endpoint uses."""

    authenticator: Authenticator
    max_frame_bytes: int
    heartbeat_s: float | None
    connection_slot: Callable[[str], AbstractContextManager[None]]
