"""Pure policy: reconnect backoff, retry decisions, and rate-limit pacing (no I/O).

Reconnect backoff is full-jitter exponential (:meth:`ReconnectPolicy.delays`, the same
formula as tenacity's ``wait_random_exponential``, which :meth:`ReconnectPolicy.call` uses):
the wait before retry *n* (n = 1, 2, ...) is ``uniform(0, min(max_delay_s,
initial_delay_s * 2 ** (n - 1)))`` — so the first retry comes within
``initial_delay_s`` (100 ms by default) and no wait exceeds ``max_delay_s``.
Attempts stop after ``max_attempts`` or ``deadline_s``, whichever comes first.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import random
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any, Final, TypeVar

import tenacity

from ._compat import reset_retrying
from ._validate import check_count, check_seconds

__all__ = ["RateLimitPacer", "ReconnectPolicy", "retry_sleep", "set_testing"]

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
    """How a lost realtime connection is retried.

    Args:
        max_attempts: connection attempts per outage (None: no limit but the deadline).
        deadline_s: give up an outage after this many seconds (None: no deadline).
        initial_delay_s: the first retry waits ``uniform(0, initial_delay_s)``.
        max_delay_s: the cap on any single wait.
        stable_after_s: a new socket counts as proven (the backoff resets) once it has
            stayed open this long or delivered a result.
    """

    max_attempts: int | None = 8
    deadline_s: float | None = 30.0
    initial_delay_s: float = 0.1
    max_delay_s: float = 5.0
    stable_after_s: float = 5.0

    def __post_init__(self) -> None:
        if self.max_attempts is None and self.deadline_s is None:
            raise ValueError("ReconnectPolicy needs max_attempts or deadline_s (or both)")
        if self.max_attempts is not None:
            check_count("max_attempts", self.max_attempts, minimum=1)
        check_seconds("deadline_s", self.deadline_s, zero_ok=False, none_ok=True)
        for name in ("initial_delay_s", "max_delay_s", "stable_after_s"):
            check_seconds(name, getattr(self, name), zero_ok=True)

    def delays(self) -> Iterator[float]:
        """Yield the waits before retry 1, 2, ...: ``uniform(0, min(max, initial * 2**(n-1)))``."""
        for attempt in itertools.count():
            yield random.uniform(
                0, min(self.max_delay_s, self.initial_delay_s * 2.0 ** min(attempt, 64))
            )

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
        stop: Any = tenacity.stop_never
        if self.max_attempts is not None:
            stop = tenacity.stop_after_attempt(self.max_attempts)
        if self.deadline_s is not None:
            by_time = tenacity.stop_after_delay(self.deadline_s)
            stop = by_time if self.max_attempts is None else stop | by_time
        return tenacity.AsyncRetrying(
            stop=stop,
            wait=tenacity.wait_random_exponential(
                multiplier=self.initial_delay_s, max=self.max_delay_s
            ),
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
