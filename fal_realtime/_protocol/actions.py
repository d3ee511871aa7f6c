"""What the realtime session machine asks its driver to do (records; no I/O).

See :mod:`fal_realtime._protocol.session`: each event returns a list of these, to be
carried out in order.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import RealtimeError

if TYPE_CHECKING:
    from .session import ConnectionState

__all__ = [
    "Action",
    "DropToken",
    "Emit",
    "EnterState",
    "Fail",
    "OpenSocket",
    "Opened",
    "RetryAfter",
    "RetrySettings",
    "SlowDown",
]


@dataclass(frozen=True, slots=True)
class EnterState:
    """The connection is now in ``state`` (emit ``on_state_change``)."""

    state: ConnectionState


@dataclass(frozen=True, slots=True)
class Emit:
    """Deliver a callback event, e.g. ``on_open()``, ``on_close(code)``, ``on_error(err)``."""

    name: str
    args: tuple[Any, ...] = ()


@dataclass(frozen=True, slots=True)
class Opened:
    """The socket counts as open: ``connect()`` may return; ``reconnect`` when not the first."""

    reconnect: bool


@dataclass(frozen=True, slots=True)
class OpenSocket:
    """Open a socket now (fetching a token first when the connection uses them)."""


@dataclass(frozen=True, slots=True)
class RetryAfter:
    """Wait ``delay_s``, then open a socket again; ``error`` says why the last attempt failed."""

    delay_s: float
    error: RealtimeError


@dataclass(frozen=True, slots=True)
class DropToken:
    """Forget the token the refused socket used, so the next attempt fetches a new one."""


@dataclass(frozen=True, slots=True)
class SlowDown:
    """The server said RATE_LIMITED: back the throttle interval off."""


@dataclass(frozen=True, slots=True)
class Fail:
    """Give up: the connection is ``failed`` with ``error`` (reported, raised by ``send``)."""

    error: RealtimeError


Action = EnterState | Emit | Opened | OpenSocket | RetryAfter | DropToken | SlowDown | Fail


@dataclass(frozen=True, slots=True)
class RetrySettings:
    """How an outage is retried: the bounds, and the backoff delays (a generator factory)."""

    max_attempts: int | None
    deadline_s: float | None
    stable_after_s: float
    delays: Callable[[], Iterator[float]]
