"""What the realtime session machine asks its driver to do (records; no I/O).

See :mod:`fal_realtime._protocol.session`: each event returns a list of these, to be
carried out in order.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeAlias

import tenacity

from ..errors import RealtimeError
from .state import ConnectionState

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
    "StopStrategy",
    "WaitStrategy",
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


#: A tenacity stop strategy (``tenacity.stop_after_attempt(5)``, ``stop_a | stop_b``, or any
#: callable of a ``RetryCallState`` returning whether to give up).
StopStrategy: TypeAlias = Callable[[tenacity.RetryCallState], bool]
#: A tenacity wait strategy (``tenacity.wait_exponential_jitter()``, or any callable of a
#: ``RetryCallState`` returning the seconds to wait).
WaitStrategy: TypeAlias = Callable[[tenacity.RetryCallState], float]


@dataclass(frozen=True, slots=True)
class RetrySettings:
    """How an outage is retried: tenacity's ``stop`` and ``wait``, and when a socket is proven.

    The machine asks both on one ``tenacity.RetryCallState`` per outage, after each
    failed attempt: ``wait`` first (its answer is the state's ``upcoming_sleep``, as
    tenacity itself does it), then ``stop``.
    """

    stop: StopStrategy
    wait: WaitStrategy
    stable_after_s: float
