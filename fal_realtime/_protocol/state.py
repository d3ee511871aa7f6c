"""A realtime connection's lifecycle states (imported by the machine and its actions alike)."""

from __future__ import annotations

import enum

__all__ = ["ConnectionState"]


class ConnectionState(enum.StrEnum):
    """Where a realtime connection is in its life."""

    CONNECTING = "connecting"
    OPEN = "open"
    DORMANT = "dormant"
    RECONNECTING = "reconnecting"
    CLOSED = "closed"
    FAILED = "failed"
