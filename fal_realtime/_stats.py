"""A realtime connection's counters."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["RealtimeStats"]


@dataclass(slots=True)
class RealtimeStats:
    """Counters of one connection (read them any time; they only grow)."""

    #: Frames handed to a socket.
    sent: int = 0
    #: Inputs superseded by a newer one before they went out (latest wins), whether they
    #: waited for the throttle interval or for the link.
    coalesced: int = 0
    #: Of those, the ones that waited for the link: the socket had not yet sent what it
    #: was handed before (a slow uplink).
    superseded_at_link: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    results: int = 0
    errors: int = 0
    #: ``errors`` by code (SPEC §4), e.g. ``{"RATE_LIMITED": 2}``.
    errors_by_code: dict[str, int] = field(default_factory=dict)
    meta: int = 0
    reconnects: int = 0
    last_latency_s: float | None = None

    def drop(self, reason: str, count: int = 1) -> None:
        """Count ``count`` messages dropped for ``reason``.

        Args:
            reason: why they were dropped (a key of ``dropped``).
            count: how many.
        """
        self.dropped[reason] = self.dropped.get(reason, 0) + count

    def error(self, code: str) -> None:
        """Count one error with ``code``.

        Args:
            code: the error's code (an :class:`~fal_realtime.ErrorCode` or the server's own).
        """
        self.errors += 1
        self.errors_by_code[code] = self.errors_by_code.get(code, 0) + 1
