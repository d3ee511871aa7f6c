"""RT-POLICY: the pure reconnect and pacing policy (no event loop, no sockets)."""

from __future__ import annotations

import random

import pytest
import tenacity
from hypothesis import given
from hypothesis import strategies as st

from fal_realtime._policy import RateLimitPacer, ReconnectPolicy


def _waits(policy: ReconnectPolicy, attempts: int) -> list[float]:
    wait = policy.retrying(lambda exc: True).wait
    waits = []
    for number in range(1, attempts + 1):
        state = tenacity.RetryCallState(retry_object=None, fn=None, args=(), kwargs={})  # type: ignore[arg-type]
        state.attempt_number = number
        waits.append(wait(state))
    return waits


@given(st.integers(min_value=0, max_value=2**32))
def test_rt_policy_1_full_jitter_backoff_formula(seed: int) -> None:
    """RT-POLICY-1: wait n is in [0, min(cap, initial * 2**(n-1))]: first within 100 ms."""
    random.seed(seed)
    policy = ReconnectPolicy(initial_delay_s=0.1, max_delay_s=2.0)
    for number, wait in enumerate(_waits(policy, 12), start=1):
        assert 0 <= wait <= min(2.0, 0.1 * 2 ** (number - 1)) + 1e-9


def test_rt_policy_2_attempts_and_deadline_bound_an_outage() -> None:
    """RT-POLICY-2: max_attempts and deadline_s stop retries; at least one must be set."""
    retrying = ReconnectPolicy(max_attempts=3, deadline_s=None).retrying(lambda exc: True)
    state = tenacity.RetryCallState(retry_object=retrying, fn=None, args=(), kwargs={})
    state.attempt_number = 3
    assert retrying.stop(state)
    state.attempt_number = 2
    assert not retrying.stop(state)
    with pytest.raises(ValueError, match="max_attempts or deadline_s"):
        ReconnectPolicy(max_attempts=None, deadline_s=None)
    with pytest.raises(ValueError, match="max_attempts must be >= 1"):
        ReconnectPolicy(max_attempts=0)


def test_rt_policy_3_reconnect_option_forms() -> None:
    """RT-POLICY-3: reconnect=True/False/policy/dict map to a policy or None; others raise."""
    assert ReconnectPolicy.from_option(True) == ReconnectPolicy()
    assert ReconnectPolicy.from_option(False) is None
    custom = ReconnectPolicy(max_attempts=2)
    assert ReconnectPolicy.from_option(custom) is custom
    assert ReconnectPolicy.from_option({"max_attempts": 5}).max_attempts == 5  # type: ignore[union-attr]
    with pytest.raises(TypeError, match="reconnect must be"):
        ReconnectPolicy.from_option("yes")  # type: ignore[arg-type]


def test_rt_policy_4_rate_limit_doubles_to_a_cap_and_decays_back() -> None:
    """RT-POLICY-4: RATE_LIMITED doubles the interval up to the cap; it halves back per second."""
    pacer = RateLimitPacer(0.064, cap_s=1.0, decay_after_s=1.0)
    assert pacer.interval(0.0) == 0.064
    assert pacer.rate_limited(10.0) == 0.128
    assert pacer.rate_limited(10.0) == 0.256
    for _ in range(5):
        pacer.rate_limited(10.0)
    assert pacer.interval(10.0) == 1.0  # capped
    assert pacer.interval(10.5) == 1.0
    assert pacer.interval(11.0) == 0.5
    assert pacer.interval(12.0) == 0.25
    assert pacer.interval(30.0) == 0.064  # back to the configured interval


def test_rt_policy_5_zero_interval_backs_off_from_a_floor() -> None:
    """RT-POLICY-5: with throttling off, RATE_LIMITED still paces sends from the floor up."""
    pacer = RateLimitPacer(0.0, floor_s=0.05, decay_after_s=1.0)
    assert pacer.interval(0.0) == 0.0
    assert pacer.rate_limited(1.0) == 0.05
    assert pacer.rate_limited(1.0) == 0.1
    assert pacer.interval(100.0) == 0.0


def test_rt_policy_7_user_strategies_replace_the_shorthands() -> None:
    """RT-POLICY-7: stop= and wait= are tenacity strategies used as given, fields or not."""
    wait = tenacity.wait_exponential(multiplier=0.5, max=4.0)
    stop = tenacity.stop_after_delay(60)
    policy = ReconnectPolicy(max_attempts=None, deadline_s=None, stop=stop, wait=wait)
    assert policy.stop_strategy() is stop and policy.wait_strategy() is wait
    retrying = policy.retrying(lambda exc: True)
    assert retrying.stop is stop and retrying.wait is wait
    assert _waits(policy, 4) == [0.5, 1.0, 2.0, 4.0]
    with pytest.raises(TypeError, match="tenacity stop strategy"):
        ReconnectPolicy(stop=3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="tenacity wait strategy"):
        ReconnectPolicy(wait=0.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="deadline_s must be a finite number"):
        ReconnectPolicy(deadline_s=float("nan"))


def test_rt_policy_8_the_machine_asks_tenacity_per_outage() -> None:
    """RT-POLICY-8: the session machine's waits and its giving up are the strategies' answers."""
    from fal_realtime._options import retry_settings
    from fal_realtime._protocol.session import Fail, RealtimeSession, RetryAfter
    from fal_realtime.errors import error_for

    seen: list[tuple[int, float | None]] = []

    def wait(state: tenacity.RetryCallState) -> float:
        seen.append((state.attempt_number, state.seconds_since_start))
        return 0.25 * state.attempt_number

    policy = ReconnectPolicy(
        stop=tenacity.stop_after_attempt(3) | tenacity.stop_after_delay(100), wait=wait
    )
    session = RealtimeSession(retry=retry_settings(policy), uses_tokens=False)
    session.want_socket()
    lost = error_for("CONNECTION_LOST", "down")
    first = session.open_failed(lost, now=50.0)
    second = session.open_failed(lost, now=51.0)
    assert [a.delay_s for a in first + second if isinstance(a, RetryAfter)] == [0.25, 0.5]
    assert isinstance(session.open_failed(lost, now=52.0)[-1], Fail)
    assert seen == [(1, 0.0), (2, 1.0), (3, 2.0)]  # the events' clock, not the machine's


def test_rt_policy_9_stop_before_delay_sees_the_upcoming_sleep() -> None:
    """RT-POLICY-9: a stop strategy reading upcoming_sleep gets this attempt's wait."""
    if not hasattr(tenacity, "stop_before_delay"):
        pytest.skip("this tenacity has no stop_before_delay (added in 8.3)")
    from fal_realtime._options import retry_settings
    from fal_realtime._protocol.session import Fail, RealtimeSession, RetryAfter
    from fal_realtime.errors import error_for

    policy = ReconnectPolicy(stop=tenacity.stop_before_delay(10), wait=tenacity.wait_fixed(4))
    session = RealtimeSession(retry=retry_settings(policy), uses_tokens=False)
    session.want_socket()
    lost = error_for("CONNECTION_LOST", "down")
    assert isinstance(session.open_failed(lost, now=0.0)[-1], RetryAfter)  # 0 + 4 < 10
    assert isinstance(session.open_failed(lost, now=5.0)[-1], RetryAfter)  # 5 + 4 < 10
    assert isinstance(session.open_failed(lost, now=6.5)[-1], Fail)  # 6.5 + 4 >= 10
