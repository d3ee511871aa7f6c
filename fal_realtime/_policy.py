"""Pure policy: how an outage is retried, and rate-limit pacing (no I/O).

tenacity is the one retry engine. A :class:`ReconnectPolicy` is a pair of tenacity
strategies, ``stop`` and ``wait``: the realtime session machine asks them on a
``tenacity.RetryCallState`` it keeps per outage (no I/O: its clock is the events'
``now``), and :func:`fal_realtime.ws` hands them to ``tenacity.AsyncRetrying``. Users
compose their own (``wait=tenacity.wait_exponential_jitter(...)``,
``stop=tenacity.stop_after_delay(60)``, ...); without them the policy's fields are
shorthands for the defaults:

- ``wait``: full-jitter exponential backoff, ``wait_random_exponential(multiplier=
  initial_delay_s, max=max_delay_s)``: the wait before retry *n* (n = 1, 2, ...) is
  ``uniform(0, min(max_delay_s, initial_delay_s * 2 ** (n - 1)))``, so the first retry
  comes within ``initial_delay_s`` (100 ms by default) and no wait exceeds ``max_delay_s``;
- ``stop``: ``stop_after_attempt(max_attempts) | stop_after_delay(deadline_s)``, the one
  that is set, or both: attempts stop after ``max_attempts`` or ``deadline_s``, whichever
  comes first.

:func:`set_testing` makes every wait instant (attempts are still counted and bounded).
"""

from __future__ import annotations

import asyncio
import functools
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final, TypeVar

import tenacity

from ._compat import reset_retrying
from ._protocol.actions import StopStrategy, WaitStrategy
from ._validate import check_count, check_seconds

__all__ = [
    "RateLimitPacer",
    "ReconnectPolicy",
    "StopStrategy",
    "WaitStrategy",
    "retry_sleep",
    "set_testing",
]

T = TypeVar("T")

_testing = False


def set_testing(enabled: bool) -> None:
    """Make every reconnect wait instant (for tests); attempts are still counted and bounded.

    Args:
        enabled: True to skip the waits between attempts, False to restore them.
    """
    global _testing
    _testing = enabled


async def retry_sleep(seconds: float) -> None:
    """Wait ``seconds`` before a retry (no wait at all under :func:`set_testing`)."""
    await asyncio.sleep(0 if _testing else seconds)


@dataclass(frozen=True, slots=True)
class ReconnectPolicy:
    """How a lost connection is retried: tenacity's ``stop`` and ``wait``, and when a socket counts.

    Args:
        max_attempts: connection attempts per outage (None: no limit but the deadline);
            ignored when ``stop`` is given.
        deadline_s: give up an outage after this many seconds (None: no deadline);
            ignored when ``stop`` is given.
        initial_delay_s: the first retry waits ``uniform(0, initial_delay_s)``; ignored
            when ``wait`` is given.
        max_delay_s: the cap on any single wait; ignored when ``wait`` is given.
        stable_after_s: a new socket counts as proven (the outage is over, the next loss
            starts a new one) once it has stayed open this long or delivered a result.
        stop: a tenacity stop strategy, asked after each failed attempt of an outage
            (its ``RetryCallState`` counts the outage's attempts and time); replaces
            ``max_attempts`` and ``deadline_s``.
        wait: a tenacity wait strategy giving the wait before each retry; replaces
            ``initial_delay_s`` and ``max_delay_s``.
    """

    max_attempts: int | None = 8
    deadline_s: float | None = 30.0
    initial_delay_s: float = 0.1
    max_delay_s: float = 5.0
    stable_after_s: float = 5.0
    stop: StopStrategy | None = None
    wait: WaitStrategy | None = None

    def __post_init__(self) -> None:
        if self.stop is None:
            if self.max_attempts is None and self.deadline_s is None:
                raise ValueError(
                    "ReconnectPolicy needs max_attempts or deadline_s (or both), or stop="
                )
            if self.max_attempts is not None:
                check_count("max_attempts", self.max_attempts, minimum=1)
        elif not callable(self.stop):
            raise TypeError(f"stop must be a tenacity stop strategy, not {self.stop!r}")
        if self.wait is not None and not callable(self.wait):
            raise TypeError(f"wait must be a tenacity wait strategy, not {self.wait!r}")
        check_seconds("deadline_s", self.deadline_s, zero_ok=False, none_ok=True)
        for name in ("initial_delay_s", "max_delay_s", "stable_after_s"):
            check_seconds(name, getattr(self, name), zero_ok=True)

    def stop_strategy(self) -> StopStrategy:
        """Return the tenacity stop strategy: ``stop=``, else the one the fields describe."""
        if self.stop is not None:
            return self.stop
        return _stop_for(self.max_attempts, self.deadline_s)

    def wait_strategy(self) -> WaitStrategy:
        """Return the tenacity wait strategy: ``wait=``, else full-jitter exponential."""
        if self.wait is not None:
            return self.wait
        return _wait_for(self.initial_delay_s, self.max_delay_s)

    def retrying(
        self,
        is_retryable: Callable[[BaseException], bool],
        before_sleep: Callable[[tenacity.RetryCallState], Awaitable[None] | None] | None = None,
    ) -> tenacity.AsyncRetrying:
        """Return a fresh tenacity controller for one outage.

        Args:
            is_retryable: tells whether an attempt's exception is worth another attempt.
            before_sleep: called (sync or async) before each wait, with tenacity's state.
        """
        return tenacity.AsyncRetrying(
            stop=self.stop_strategy(),
            wait=self.wait_strategy(),
            retry=tenacity.retry_if_exception(is_retryable),
            reraise=True,
            sleep=retry_sleep,
            before_sleep=before_sleep,
        )

    async def call(
        self,
        fn: Callable[[], Awaitable[T]],
        is_retryable: Callable[[BaseException], bool],
        before_sleep: Callable[[tenacity.RetryCallState], Awaitable[None] | None] | None = None,
    ) -> T:
        """Await ``fn()`` until it succeeds, retrying per this policy; re-raise the last error.

        Args:
            fn: one attempt.
            is_retryable: whether an exception from ``fn`` is worth another attempt.
            before_sleep: called before each wait (for logging and state).
        """
        retrying = self.retrying(is_retryable, before_sleep)
        try:
            return await retrying(fn)
        finally:
            # A used controller sits in a reference cycle that only a full GC pass frees;
            # in a process that reconnects for weeks those pile up between passes.
            reset_retrying(retrying)

    @classmethod
    def from_option(cls, option: bool | ReconnectPolicy | dict[str, Any]) -> ReconnectPolicy | None:
        """Turn the ``reconnect=`` argument into a policy (None: never reconnect).

        Args:
            option: True (the default policy), False, a policy, or a dict of its fields.
        """
        if option is True:
            # The policy is frozen: every connection with the defaults shares one.
            return _DEFAULT_POLICY if cls is ReconnectPolicy else cls()
        if option is False:
            return None
        if isinstance(option, ReconnectPolicy):
            return option
        if isinstance(option, dict):
            return cls(**option)
        raise TypeError(
            f"reconnect must be True, False, a ReconnectPolicy or a dict of its fields, "
            f"not {option!r}"
        )


# The strategies are frozen in effect (tenacity never changes them): equal fields share one.
@functools.lru_cache(maxsize=64)
def _stop_for(max_attempts: int | None, deadline_s: float | None) -> StopStrategy:
    stop: Any = None
    if max_attempts is not None:
        stop = tenacity.stop_after_attempt(max_attempts)
    if deadline_s is not None:
        by_time = tenacity.stop_after_delay(deadline_s)
        stop = by_time if stop is None else stop | by_time
    return stop  # type: ignore[no-any-return]


@functools.lru_cache(maxsize=64)
def _wait_for(initial_delay_s: float, max_delay_s: float) -> WaitStrategy:
    return tenacity.wait_random_exponential(multiplier=initial_delay_s, max=max_delay_s)


_DEFAULT_POLICY: Final = ReconnectPolicy()


class RateLimitPacer:
    """The effective throttle interval: doubled on RATE_LIMITED, decaying back over time.

    Each RATE_LIMITED doubles the interval (at least ``floor_s``) up to ``cap_s``;
    every ``decay_after_s`` without another one halves it, down to the configured value.
    """

    __slots__ = ("_changed_at", "cap_s", "configured_s", "decay_after_s", "floor_s", "peak_s")

    def __init__(
        self,
        configured_s: float,
        *,
        cap_s: float = 2.0,
        floor_s: float = 0.05,
        decay_after_s: float = 1.0,
    ) -> None:
        self.configured_s = configured_s
        self.cap_s = max(cap_s, configured_s)
        self.floor_s = floor_s
        self.decay_after_s = decay_after_s
        #: The interval last set: the configured one, or a RATE_LIMITED boost not yet
        #: decayed back to it; never below the configured one. 0 means no interval can
        #: apply (the send path reads it per frame to skip the clock).
        self.peak_s = configured_s
        self._changed_at = 0.0

    def rate_limited(self, now: float) -> float:
        """Record a RATE_LIMITED answer at ``now``; return the new interval."""
        current = self.interval(now)
        self.peak_s = min(self.cap_s, max(current * 2, self.floor_s))
        self._changed_at = now
        return self.peak_s

    def interval(self, now: float) -> float:
        """Return the interval in force at ``now``."""
        if self.peak_s <= self.configured_s:
            return self.configured_s
        halvings = int((now - self._changed_at) / self.decay_after_s) if self.decay_after_s else 64
        if halvings <= 0:
            return self.peak_s
        decayed = math.ldexp(self.peak_s, -min(halvings, 64))
        if decayed <= max(self.configured_s, self.floor_s / 2):
            self.peak_s = self.configured_s
            return self.configured_s
        return decayed
