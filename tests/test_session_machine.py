"""RT-MACHINE: every dormant / lost / retry / failed / UNAUTHORIZED decision, with no loop.

The sans-I/O session machine (``fal_realtime._protocol.session``) is fed the events a
socket would produce and its actions are checked, row by row (SPEC §2.1, §3, §4).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
import tenacity

from fal_realtime import ConnectionState
from fal_realtime._protocol.realtime import Frame, FrameKind
from fal_realtime._protocol.session import (
    TRANSITIONS,
    Action,
    DropToken,
    Emit,
    EnterState,
    Fail,
    IllegalTransition,
    Opened,
    OpenSocket,
    RealtimeSession,
    RetryAfter,
    RetrySettings,
    SlowDown,
    retryable,
)
from fal_realtime.errors import (
    CONNECTION_LOST,
    INVALID_INPUT,
    RATE_LIMITED,
    TIMEOUT,
    UNAUTHORIZED,
    ConnectionLostError,
    RealtimeError,
    UntrustedCertificateError,
    error_for,
)

S = ConnectionState


def _linear(state: tenacity.RetryCallState) -> float:
    """Wait 0.1 s times the attempt number (a custom strategy, as a user may pass)."""
    return 0.1 * state.attempt_number


def _retry(*, stop: Any, wait: Any = _linear) -> RetrySettings:
    return RetrySettings(stop=stop, wait=wait, stable_after_s=5.0)


RETRY = _retry(stop=tenacity.stop_after_attempt(4))


def machine(*, retry: RetrySettings | None = RETRY, tokens: bool = True) -> RealtimeSession:
    """Return a machine whose first socket is open and confirmed (connect() has returned)."""
    session = RealtimeSession(retry=retry, uses_tokens=tokens)
    assert session.want_socket() == [OpenSocket()]
    session.socket_opened(now=0.0)
    assert session.confirm() == [EnterState(S.OPEN), Emit("on_open"), Opened(reconnect=False)]
    return session


def frame(kind: FrameKind, code: str | None = None, reason: str | None = None) -> Frame:
    return Frame(kind, {"type": "x-fal-error", "error": code}, code=code, reason=reason)


def names(actions: list[Action]) -> list[str]:
    """Summarise actions as short strings, e.g. ``state:dormant``, ``on_error:TIMEOUT``."""
    out = []
    for action in actions:
        if isinstance(action, EnterState):
            out.append(f"state:{action.state.value}")
        elif isinstance(action, Emit):
            first = action.args[0] if action.args else None
            detail = first.code if isinstance(first, RealtimeError) else first
            out.append(action.name if not action.args else f"{action.name}:{detail}")
        elif isinstance(action, RetryAfter):
            out.append(f"retry:{action.error.code}")
        elif isinstance(action, Fail):
            out.append(f"fail:{action.error.code}")
        else:
            out.append(type(action).__name__)
    return out


# -- sessions that end: one row per SPEC decision ------------------------------------------


@dataclass(frozen=True)
class End:
    """A socket's last frames, its close code, and whether inputs wait to be sent."""

    frames: tuple[Frame, ...]
    code: int | None
    pending: bool
    proven_by_result: bool = False


ENDINGS: dict[str, tuple[End, list[str], S]] = {
    "timeout_then_1000_is_dormant_no_error": (
        End((frame(FrameKind.TIMEOUT, "TIMEOUT"),), 1000, pending=False),
        ["on_close:1000", "state:dormant"],
        S.DORMANT,
    ),
    "internal_error_then_1000_reports_and_is_dormant": (
        End((frame(FrameKind.ERROR, "INTERNAL_ERROR", "boom"),), 1000, pending=False),
        ["on_error:INTERNAL_ERROR", "on_close:1000", "state:dormant"],
        S.DORMANT,
    ),
    "dormant_with_pending_inputs_reopens_at_once": (
        End((frame(FrameKind.TIMEOUT, "TIMEOUT"),), 1000, pending=True),
        ["on_close:1000", "state:dormant", "OpenSocket"],
        S.DORMANT,
    ),
    "close_1000_unproven_with_pending_is_a_failed_attempt": (
        End((), 1000, pending=True),
        ["on_close:1000", "state:reconnecting", "retry:CONNECTION_LOST"],
        S.RECONNECTING,
    ),
    "close_1000_unproven_nothing_pending_is_dormant": (
        End((), 1000, pending=False),
        ["on_close:1000", "state:dormant"],
        S.DORMANT,
    ),
    "frame_too_big_1009_reports_invalid_input_and_is_dormant": (
        End((), 1009, pending=False),
        ["on_close:1009", "on_error:INVALID_INPUT", "state:dormant"],
        S.DORMANT,
    ),
    "proven_socket_lost_1006_reconnects_at_once": (
        End((), 1006, pending=False, proven_by_result=True),
        ["on_close:1006", "state:reconnecting", "OpenSocket"],
        S.RECONNECTING,
    ),
    "proven_socket_edge_1011_reconnects_at_once": (
        End((), 1011, pending=True, proven_by_result=True),
        ["on_close:1011", "state:reconnecting", "OpenSocket"],
        S.RECONNECTING,
    ),
    "unproven_socket_lost_backs_off": (
        End((), 1006, pending=False),
        ["on_close:1006", "state:reconnecting", "retry:CONNECTION_LOST"],
        S.RECONNECTING,
    ),
    "rate_limited_frame_slows_down_and_proves_the_socket": (
        End((frame(FrameKind.ERROR, RATE_LIMITED),), 1012, pending=False),
        ["SlowDown", "on_error:RATE_LIMITED", "on_close:1012", "state:reconnecting", "OpenSocket"],
        S.RECONNECTING,
    ),
}


@pytest.mark.parametrize("row", ENDINGS, ids=list(ENDINGS))
def test_rt_machine_1_session_endings(row: str) -> None:
    """RT-MACHINE-1: how a session ends decides dormant, reconnect or backoff (SPEC §2.1)."""
    end, expected, state = ENDINGS[row]
    session = machine()
    actions: list[Action] = []
    if end.proven_by_result:
        actions += session.result()
    for item in end.frames:
        actions += session.frame(item)
    actions += session.socket_closed(end.code, now=0.1, pending=end.pending)
    assert names(actions) == expected
    assert session.state is state


def test_rt_machine_2_staying_up_proves_a_socket() -> None:
    """RT-MACHINE-2: a socket open stable_after_s counts as proven: a loss reconnects at once."""
    session = machine()
    assert names(session.socket_closed(1006, now=5.0, pending=False))[-1] == "OpenSocket"
    session = machine()
    assert names(session.socket_closed(1006, now=4.9, pending=False))[-1] == "retry:CONNECTION_LOST"


def test_rt_machine_3_meta_and_undecodable_frames() -> None:
    """RT-MACHINE-3: meta goes to on_meta; an undecodable frame is a DECODE_ERROR; both confirm."""
    session = RealtimeSession(retry=RETRY, uses_tokens=False)
    session.want_socket()
    session.socket_opened(now=0.0)
    meta = Frame(FrameKind.META, {"type": "x-fal-message"})
    actions = session.frame(meta)
    assert names(actions) == [
        "state:open",
        "on_open",
        "Opened",
        "on_meta:{'type': 'x-fal-message'}",
    ]
    bad = Frame(FrameKind.UNDECODABLE, b"\xc1", reason="cannot decode binary frame")
    assert names(session.frame(bad)) == ["on_error:DECODE_ERROR"]


# -- refusals ----------------------------------------------------------------------------------


def test_rt_machine_4_refusal_before_confirm_retries_once_then_fails() -> None:
    """RT-MACHINE-4: an Unauthorized frame first: never open; new token once; twice is final."""
    session = RealtimeSession(retry=RETRY, uses_tokens=True)
    session.want_socket()
    for attempt in (1, 2):
        session.socket_opened(now=0.0)
        assert session.frame(Frame(FrameKind.UNAUTHORIZED, {})) == []
        assert session.confirm() == []  # a refused socket never counts as open
        actions = session.socket_closed(1008, now=0.01, pending=False)
        if attempt == 1:
            assert names(actions) == ["DropToken", "retry:UNAUTHORIZED"]
            assert "retrying once with a new token" in actions[-1].error.message  # type: ignore[union-attr]
            assert session.state is S.CONNECTING
            assert session.retry_due() == [OpenSocket()]
    assert names(actions) == [
        "DropToken",
        "on_error:UNAUTHORIZED",
        "state:failed",
        "fail:UNAUTHORIZED",
    ]
    assert session.failure is not None and "twice in a row" in session.failure.message


def test_rt_machine_5_late_refusal_after_open_is_reported_and_failed() -> None:
    """RT-MACHINE-5: refusals after connect() returned: reconnect once, then on_error + failed."""
    session = machine()
    session.frame(Frame(FrameKind.UNAUTHORIZED, {}))
    actions = session.socket_closed(1008, now=0.01, pending=False)
    assert names(actions) == [
        "on_close:1008",
        "DropToken",
        "state:reconnecting",
        "retry:UNAUTHORIZED",
    ]
    session.retry_due()
    session.socket_opened(now=0.2)
    session.confirm()
    session.frame(Frame(FrameKind.UNAUTHORIZED, {}))
    actions = session.socket_closed(1008, now=0.21, pending=True)
    assert names(actions) == [
        "on_close:1008",
        "DropToken",
        "on_error:UNAUTHORIZED",
        "state:failed",
        "fail:UNAUTHORIZED",
    ]
    assert session.want_socket() == [] and session.state is S.FAILED


def test_rt_machine_6_a_proven_socket_resets_the_refusal_streak() -> None:
    """RT-MACHINE-6: refused, then a socket that delivered results: the next refusal retries."""
    session = machine()
    session.frame(Frame(FrameKind.UNAUTHORIZED, {}))
    session.socket_closed(1008, now=0.0, pending=False)
    session.socket_opened(now=0.1)
    session.result()
    session.socket_closed(1006, now=0.2, pending=False)
    session.socket_opened(now=0.3)
    session.frame(Frame(FrameKind.UNAUTHORIZED, {}))
    assert "retry:UNAUTHORIZED" in names(session.socket_closed(1008, now=0.4, pending=False))


HANDSHAKES: dict[str, tuple[RealtimeError, bool, bool, list[str]]] = {
    "handshake_401_with_tokens_retries_once": (
        error_for(UNAUTHORIZED, "refused", status=401),
        True,
        True,
        ["DropToken", "retry:UNAUTHORIZED"],
    ),
    "handshake_403_with_key_header_is_final": (
        error_for(UNAUTHORIZED, "refused", status=403),
        True,
        False,
        ["on_error:UNAUTHORIZED", "state:failed", "fail:UNAUTHORIZED"],
    ),
    "token_endpoint_401_is_final": (
        error_for(UNAUTHORIZED, "key refused", status=401),
        False,
        True,
        ["on_error:UNAUTHORIZED", "state:failed", "fail:UNAUTHORIZED"],
    ),
    "handshake_503_is_retried": (
        error_for(CONNECTION_LOST, "HTTP 503", status=503),
        True,
        True,
        ["retry:CONNECTION_LOST"],
    ),
    "handshake_429_is_retried": (
        error_for(RATE_LIMITED, "HTTP 429", status=429),
        True,
        True,
        ["retry:RATE_LIMITED"],
    ),
    "token_endpoint_timeout_is_retried": (
        error_for(TIMEOUT, "token request took over 15 s"),
        False,
        True,
        ["retry:TIMEOUT"],
    ),
    "unknown_app_404_is_final": (
        error_for(INVALID_INPUT, "no app (HTTP 404)", status=404),
        True,
        True,
        ["on_error:INVALID_INPUT", "state:failed", "fail:INVALID_INPUT"],
    ),
    "untrusted_certificate_is_final": (
        UntrustedCertificateError(CONNECTION_LOST, "not trusted"),
        True,
        True,
        ["on_error:CONNECTION_LOST", "state:failed", "fail:CONNECTION_LOST"],
    ),
}


@pytest.mark.parametrize("row", HANDSHAKES, ids=list(HANDSHAKES))
def test_rt_machine_7_failed_openings(row: str) -> None:
    """RT-MACHINE-7: a failed token fetch or handshake is retried, refreshed once, or final."""
    error, handshake, tokens, expected = HANDSHAKES[row]
    session = RealtimeSession(retry=RETRY, uses_tokens=tokens)
    session.want_socket()
    assert names(session.open_failed(error, now=0.0, handshake=handshake)) == expected


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (error_for(CONNECTION_LOST, "x"), True),
        (error_for(TIMEOUT, "x"), True),
        (error_for(RATE_LIMITED, "x", status=429), True),
        (error_for(UNAUTHORIZED, "x", status=401), False),
        (error_for(INVALID_INPUT, "x", status=404), False),
        (UntrustedCertificateError(CONNECTION_LOST, "x"), False),
        (error_for("INTERNAL_ERROR", "x"), False),
    ],
    ids=lambda value: getattr(value, "code", str(value)),
)
def test_rt_machine_8_retryable_is_a_function_of_the_error(error: Any, expected: bool) -> None:
    """RT-MACHINE-8: retryable(error) decides from the error alone (code and kind)."""
    assert retryable(error) is expected


# -- outages and their bounds ------------------------------------------------------------------


def test_rt_machine_9_attempts_are_bounded_then_failed() -> None:
    """RT-MACHINE-9: four failed attempts: three retries, growing delays, then CONNECTION_LOST."""
    session = RealtimeSession(retry=RETRY, uses_tokens=False)
    session.want_socket()
    lost = error_for(CONNECTION_LOST, "cannot reach")
    delays = []
    for n in range(3):
        [retry] = session.open_failed(lost, now=float(n))
        assert isinstance(retry, RetryAfter)
        delays.append(retry.delay_s)
        session.retry_due()
    assert delays == pytest.approx([0.1, 0.2, 0.3])
    actions = session.open_failed(lost, now=3.0)
    assert names(actions) == ["on_error:CONNECTION_LOST", "state:failed", "fail:CONNECTION_LOST"]
    assert isinstance(session.failure, ConnectionLostError)
    assert session.failure.message == "gave up reconnecting: cannot reach"


def test_rt_machine_10_the_deadline_ends_an_outage() -> None:
    """RT-MACHINE-10: with deadline_s, an outage fails once that much time has passed."""
    retry = _retry(stop=tenacity.stop_after_delay(2.0))
    session = RealtimeSession(retry=retry, uses_tokens=False)
    session.want_socket()
    lost = error_for(CONNECTION_LOST, "down")
    assert names(session.open_failed(lost, now=10.0)) == ["retry:CONNECTION_LOST"]
    assert names(session.open_failed(lost, now=11.9)) == ["retry:CONNECTION_LOST"]
    assert names(session.open_failed(lost, now=12.0))[-1] == "fail:CONNECTION_LOST"


def test_rt_machine_11_a_proven_socket_starts_a_new_outage() -> None:
    """RT-MACHINE-11: attempts reset once a socket proved itself (no carried-over budget)."""
    retry = _retry(stop=tenacity.stop_after_attempt(2))
    session = machine(retry=retry)
    lost = error_for(CONNECTION_LOST, "down")
    for round_ in range(3):
        session.result()
        assert names(session.socket_closed(1006, now=0.0, pending=False))[-1] == "OpenSocket"
        assert names(session.open_failed(lost, now=0.0)) == ["retry:CONNECTION_LOST"]
        session.socket_opened(now=0.0)
        assert session.confirm()[-1] == Opened(reconnect=True), round_


def test_rt_machine_12_without_reconnect_every_loss_is_final() -> None:
    """RT-MACHINE-12: reconnect=False: a lost proven socket or a failed attempt fails at once."""
    session = machine(retry=None)
    session.result()
    actions = session.socket_closed(1006, now=0.0, pending=False)
    assert names(actions)[-1] == "fail:CONNECTION_LOST"
    assert session.failure is not None and "reconnect=False" in session.failure.message
    session = RealtimeSession(retry=None, uses_tokens=False)
    session.want_socket()
    lost = error_for(CONNECTION_LOST, "cannot reach")
    assert session.open_failed(lost, now=0.0)[-1] == Fail(lost)
    session = machine(retry=None)
    session.frame(frame(FrameKind.TIMEOUT, "TIMEOUT"))
    assert names(session.socket_closed(1000, now=0.0, pending=False)) == [
        "on_close:1000",
        "state:dormant",
    ]


# -- wanting sockets, closing, and the transition table --------------------------------------


def test_rt_machine_13_want_socket_opens_one_at_a_time() -> None:
    """RT-MACHINE-13: sends while a socket is on its way open nothing more; dormant reopens."""
    session = RealtimeSession(retry=RETRY, uses_tokens=False)
    assert session.want_socket() == [OpenSocket()]
    assert session.want_socket() == []
    session.socket_opened(now=0.0)
    session.confirm()
    assert session.want_socket() == []
    session.frame(frame(FrameKind.TIMEOUT, "TIMEOUT"))
    session.socket_closed(1000, now=0.0, pending=False)
    assert session.want_socket() == [OpenSocket()]
    session.socket_opened(now=1.0)
    assert session.confirm()[-1] == Opened(reconnect=True)


def test_rt_machine_14_close_is_final_and_quiet() -> None:
    """RT-MACHINE-14: close: closed; the socket's end then only reports on_close; no reopening."""
    session = machine()
    assert session.close_requested() == []
    assert names(session.socket_closed(1000, now=0.0, pending=True)) == ["on_close:1000"]
    assert session.want_socket() == [] and session.retry_due() == []
    assert session.closed() == [EnterState(S.CLOSED)]
    failed = RealtimeSession(retry=None, uses_tokens=False)
    failed.want_socket()
    failed.open_failed(error_for(INVALID_INPUT, "404", status=404), now=0.0)
    assert failed.close_requested() == failed.closed() == [] and failed.state is S.FAILED


def test_rt_machine_15_closing_while_opening_drops_late_outcomes() -> None:
    """RT-MACHINE-15: an attempt that fails after close() decides nothing."""
    session = RealtimeSession(retry=RETRY, uses_tokens=True)
    session.want_socket()
    session.close_requested()
    assert session.open_failed(error_for(CONNECTION_LOST, "down"), now=0.0) == []
    assert session.state is S.CONNECTING and session.closed() == [EnterState(S.CLOSED)]


def test_rt_machine_16_transition_table() -> None:
    """RT-MACHINE-16: closed and failed are terminal; every live state can close or fail."""
    assert TRANSITIONS[S.CLOSED] == TRANSITIONS[S.FAILED] == frozenset()
    for state in (S.CONNECTING, S.OPEN, S.DORMANT, S.RECONNECTING):
        assert {S.CLOSED, S.FAILED} <= TRANSITIONS[state]
        assert state not in TRANSITIONS[state]
    assert S.CONNECTING not in set().union(*TRANSITIONS.values())  # never re-entered


def test_rt_machine_17_an_illegal_transition_raises() -> None:
    """RT-MACHINE-17: a change the table forbids (closed -> open) raises instead of happening."""
    session = RealtimeSession(retry=RETRY, uses_tokens=False)
    session.state = S.CLOSED  # as if a driver bug skipped close_requested()
    session.socket_opened(now=0.0)
    with pytest.raises(IllegalTransition, match="closed -> open"):
        session.confirm()
    assert session.state is S.CLOSED


def test_rt_machine_18_no_actions_without_a_socket() -> None:
    """RT-MACHINE-18: frames or a close with no socket open (a stale reader) decide nothing."""
    session = RealtimeSession(retry=RETRY, uses_tokens=False)
    assert session.frame(Frame(FrameKind.UNAUTHORIZED, {})) == []
    assert session.result() == []
    assert session.socket_closed(1006, now=0.0, pending=True) == []
    assert session.state is S.CONNECTING
    assert [isinstance(a, DropToken | SlowDown) for a in session.confirm()] == []


def test_rt_machine_19_a_refused_key_header_is_final_at_once() -> None:
    """RT-MACHINE-19: without tokens an Unauthorized frame is final: a new try would be too."""
    session = RealtimeSession(retry=RETRY, uses_tokens=False)
    session.want_socket()
    session.socket_opened(now=0.0)
    session.frame(Frame(FrameKind.UNAUTHORIZED, {}))
    actions = session.socket_closed(1008, now=0.0, pending=False)
    assert names(actions) == ["on_error:UNAUTHORIZED", "state:failed", "fail:UNAUTHORIZED"]
    assert session.failure is not None and "check FAL_KEY" in session.failure.message


def test_rt_machine_20_a_crashed_driver_fails_the_connection() -> None:
    """RT-MACHINE-20: a driver bug fails the connection through the table, reported once."""
    session = machine()
    bug = error_for(CONNECTION_LOST, "internal error: KeyError('x')")
    assert names(session.crashed(bug)) == [
        "on_error:CONNECTION_LOST",
        "state:failed",
        "fail:CONNECTION_LOST",
    ]
    assert session.failure is bug and session.crashed(bug) == []


def test_rt_machine_21_actions_and_states_resolve_without_an_import_circle() -> None:
    """RT-MACHINE-21: every action's type hints resolve (the state lives in its own module)."""
    import typing

    from fal_realtime._protocol import actions, session, state

    for name in actions.__all__:
        record = getattr(actions, name)
        if isinstance(record, type):
            typing.get_type_hints(record)
    assert typing.get_type_hints(EnterState) == {"state": state.ConnectionState}
    assert session.ConnectionState is state.ConnectionState is ConnectionState
