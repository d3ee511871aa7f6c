"""The realtime connection's life as a sans-I/O state machine (no asyncio, no sockets).

    session = RealtimeSession(retry=RetrySettings(...), uses_tokens=True)
    actions = session.socket_closed(code=1000, now=clock())

The asyncio driver (:mod:`fal_realtime.realtime`) feeds it what happened — a socket
opened, a frame classified, a socket closed with a code or lost, an opening failed, a
send wants a socket, close requested — and carries out the actions it returns, in
order: enter a state, emit a callback event, open a socket, retry after a delay, drop
the token the socket used, slow the throttle, or give up with an error. Every
decision of SPEC §2.1 and §3 is made here, in one place, and tested without a loop:

- ``x-fal-error`` then close 1000 ends a session normally: ``dormant`` (the error
  reported unless it is TIMEOUT); the next send opens a new session.
- A socket lost after it proved itself (a result, an error frame, or
  ``stable_after_s`` open) starts a new outage at once (``reconnecting``); one that
  ends before proving itself counts as a failed attempt, retried with backoff, so a
  server that accepts and then closes cannot cause a tight loop.
- ``{"status": "error", "error": "Unauthorized"}`` or a handshake 401/403 drops the
  token and retries once with a new one; a second refusal in a row is final.
- Each failed attempt of an outage asks tenacity: the policy's ``wait`` strategy gives
  the delay before the next attempt and its ``stop`` strategy says when to give up
  (``failed`` with ``CONNECTION_LOST``), both on one ``tenacity.RetryCallState`` per
  outage whose clock is the events' ``now`` (no clock of the machine's own).

:data:`TRANSITIONS` lists the legal state changes; any other is a bug and raises
:class:`IllegalTransition`.
"""

from __future__ import annotations

from typing import Final

import tenacity

from ..errors import (
    CONNECTION_LOST,
    DECODE_ERROR,
    INVALID_INPUT,
    RATE_LIMITED,
    TIMEOUT,
    UNAUTHORIZED,
    RealtimeError,
    UntrustedCertificateError,
    error_for,
)
from .actions import (
    Action,
    DropToken,
    Emit,
    EnterState,
    Fail,
    Opened,
    OpenSocket,
    RetryAfter,
    RetrySettings,
    SlowDown,
)
from .realtime import Frame, FrameKind
from .state import ConnectionState

__all__ = [
    "TRANSITIONS",
    "Action",
    "ConnectionState",
    "DropToken",
    "Emit",
    "EnterState",
    "Fail",
    "IllegalTransition",
    "Opened",
    "OpenSocket",
    "RealtimeSession",
    "RetryAfter",
    "RetrySettings",
    "SlowDown",
    "retryable",
]


_S = ConnectionState
#: The legal state changes; staying in a state is always allowed (and emits nothing).
TRANSITIONS: Final[dict[ConnectionState, frozenset[ConnectionState]]] = {
    _S.CONNECTING: frozenset({_S.OPEN, _S.DORMANT, _S.RECONNECTING, _S.CLOSED, _S.FAILED}),
    _S.OPEN: frozenset({_S.DORMANT, _S.RECONNECTING, _S.CLOSED, _S.FAILED}),
    _S.DORMANT: frozenset({_S.OPEN, _S.RECONNECTING, _S.CLOSED, _S.FAILED}),
    _S.RECONNECTING: frozenset({_S.OPEN, _S.DORMANT, _S.CLOSED, _S.FAILED}),
    _S.CLOSED: frozenset(),
    _S.FAILED: frozenset(),
}

#: Close codes that end a session normally (1009: a frame was too big, reported).
_NORMAL_CLOSE_CODES: Final = frozenset({1000, 1009})
_RETRYABLE_CODES: Final = frozenset({CONNECTION_LOST, TIMEOUT, RATE_LIMITED})
#: What fal's edge sends, right after accepting the socket, when it refuses the token.
_REFUSED_FRAME: Final = error_for(
    UNAUTHORIZED, "the server refused the credentials (Unauthorized): check FAL_KEY / key="
)

# Actions are frozen records: the ones without a variable part are made once, here.
_OPEN_SOCKET: Final = OpenSocket()
_ON_OPEN: Final = Emit("on_open")
_OPENED: Final = {False: Opened(False), True: Opened(True)}
_ENTER: Final = {state: EnterState(state) for state in ConnectionState}


class IllegalTransition(RuntimeError):
    """A state change the table does not allow: a bug in the driver or the machine."""


def retryable(error: RealtimeError) -> bool:
    """Tell whether another attempt may succeed where ``error`` ended this one.

    Lost or unreachable sockets, timeouts and overload (handshake or token endpoint
    5xx/429) are; refused credentials, bad input, an unknown app and an untrusted TLS
    certificate are not (the one token refresh after a refusal is decided apart).
    """
    return error.code in _RETRYABLE_CODES and not isinstance(error, UntrustedCertificateError)


class _Socket:
    """What one socket has shown so far."""

    __slots__ = ("confirmed", "opened_at", "proven", "saw_error", "saw_timeout", "unauthorized")

    def __init__(self, opened_at: float) -> None:
        self.opened_at = opened_at
        self.confirmed = False
        self.proven = False
        self.saw_timeout = False
        self.saw_error = False
        self.unauthorized = False


class RealtimeSession:
    """Decide a realtime connection's life; see the module docstring."""

    __slots__ = (
        "_attempts",
        "_busy",
        "_closing",
        "_ever_opened",
        "_outage",
        "_retry",
        "_socket",
        "_unauthorized_streak",
        "_uses_tokens",
        "failure",
        "state",
    )

    def __init__(self, *, retry: RetrySettings | None, uses_tokens: bool) -> None:
        self.state = ConnectionState.CONNECTING
        #: The error the connection failed with, once ``failed``.
        self.failure: RealtimeError | None = None
        self._retry = retry
        self._uses_tokens = uses_tokens
        self._closing = False
        self._ever_opened = False
        self._socket: _Socket | None = None
        self._busy = False  # a socket is open or being opened, or a retry is waiting
        self._unauthorized_streak = 0
        #: The outage being retried, as tenacity counts it (None between outages).
        self._outage: tenacity.RetryCallState | None = None

    # -- queries ------------------------------------------------------------------------

    @property
    def closing(self) -> bool:
        """Tell whether close was requested or the connection failed (no new sockets)."""
        return self._closing or self.state is ConnectionState.FAILED

    @property
    def confirmed(self) -> bool:
        """Tell whether the current socket counts as open."""
        return self._socket is not None and self._socket.confirmed

    # -- events -------------------------------------------------------------------------

    def want_socket(self) -> list[Action]:
        """A send (or ``wait_open``) needs a socket: open one unless one is on its way."""
        if self._busy or self.closing:
            return []
        self._busy = True
        return [_OPEN_SOCKET]

    def open_failed(
        self, error: RealtimeError, *, now: float, handshake: bool = True
    ) -> list[Action]:
        """Opening failed with ``error`` (mapped at the boundary).

        Args:
            error: why the attempt failed.
            now: the clock, in seconds.
            handshake: True when the WebSocket handshake failed, False when getting the
                token did (a refused key is final there; a refused token is retried once).
        """
        if self.closing:
            return []
        if handshake and error.code == UNAUTHORIZED:
            return self._refused(error, now)
        if retryable(error):
            return self._attempt_failed(error, now)
        return self._fail(error)

    def socket_opened(self, *, now: float) -> list[Action]:
        """A socket is up; it counts as open once :meth:`confirm` says so."""
        self._socket = _Socket(now)
        return []

    def confirm(self) -> list[Action]:
        """Declare the socket open: what it had already sent was read, and was no refusal."""
        sock = self._socket
        if sock is None or sock.confirmed or sock.unauthorized or self.closing:
            return []
        sock.confirmed = True
        reconnect, self._ever_opened = self._ever_opened, True
        return [*self._enter(ConnectionState.OPEN), _ON_OPEN, _OPENED[reconnect]]

    def result(self) -> list[Action]:
        """A result arrived: the socket has proven itself (and is open, if not yet).

        Only a socket's first result changes anything, so a driver may report just that
        one (the realtime driver does: the later ones are its hot path).
        """
        sock = self._socket
        if sock is None:
            return []
        sock.proven = True
        return [] if sock.confirmed else self.confirm()

    def frame(self, frame: Frame) -> list[Action]:
        """A frame other than a plain result arrived, classified by the protocol layer."""
        sock = self._socket
        if sock is None:
            return []
        kind = frame.kind
        if kind is FrameKind.UNAUTHORIZED:
            sock.unauthorized = True
            return []
        actions = [] if sock.confirmed else self.confirm()
        if kind is FrameKind.RESULT:
            sock.proven = True
        elif kind is FrameKind.META:
            actions.append(Emit("on_meta", (frame.value,)))
        elif kind is FrameKind.TIMEOUT:
            sock.saw_timeout = sock.proven = True
        elif kind is FrameKind.ERROR:
            sock.proven = True
            code = frame.code or "UNKNOWN_ERROR"
            if code == RATE_LIMITED:
                actions.append(SlowDown())
            else:
                sock.saw_error = True
            error = error_for(code, frame.reason or code, body=frame.value)
            actions.append(Emit("on_error", (error,)))
        else:
            error = RealtimeError(DECODE_ERROR, frame.reason or "undecodable frame")
            actions.append(Emit("on_error", (error,)))
        return actions

    def socket_closed(
        self, code: int | None, *, now: float, pending: bool, cause: str = ""
    ) -> list[Action]:
        """The socket ended: closed with ``code``, or lost (``code`` 1006 or None).

        Args:
            code: the close code (None or 1006 when the socket was lost).
            now: the clock, in seconds (the same clock as every other event).
            pending: whether inputs wait to be sent.
            cause: what ended it, for the error message when it is retried.
        """
        sock, self._socket = self._socket, None
        if sock is None:
            return []
        actions: list[Action] = []
        if sock.confirmed:
            actions.append(Emit("on_close", (code,)))
        if self.closing:
            return actions
        stayed = now - sock.opened_at
        proven = sock.proven or (self._retry is not None and stayed >= self._retry.stable_after_s)
        if proven:
            self._unauthorized_streak = 0
            self._end_outage()
        if sock.unauthorized:
            return actions + self._refused(_REFUSED_FRAME, now)
        if code == 1009:
            error = RealtimeError(
                INVALID_INPUT, "the server closed the socket: a frame was too big (1009)"
            )
            actions.append(Emit("on_error", (error,)))
        normal = code in _NORMAL_CLOSE_CODES or sock.saw_timeout or sock.saw_error
        if normal and (proven or not pending):
            return actions + self._dormant(pending)
        if proven:
            if self._retry is None:
                return actions + self._fail(
                    error_for(CONNECTION_LOST, "the socket was lost and reconnect=False")
                )
            return [*actions, *self._enter(ConnectionState.RECONNECTING), _OPEN_SOCKET]
        reason = cause or f"close code {code}"
        error = error_for(CONNECTION_LOST, f"the socket ended before it proved itself ({reason})")
        return actions + self._attempt_failed(error, now)

    def retry_due(self) -> list[Action]:
        """The wait of a :class:`RetryAfter` is over: open the next socket."""
        return [] if self.closing else [_OPEN_SOCKET]

    def crashed(self, error: RealtimeError) -> list[Action]:
        """The driver cannot go on (a bug in it): fail with ``error`` rather than hang."""
        return self._fail(error)

    def close_requested(self) -> list[Action]:
        """``close()`` was called: no more sockets or decisions (the open one still reports)."""
        self._closing = True
        return []

    def closed(self) -> list[Action]:
        """``close()`` is done: ``closed``, unless the connection had ``failed``."""
        self._closing = True
        if self.state is ConnectionState.FAILED:
            return []
        return self._enter(ConnectionState.CLOSED)

    # -- decisions ------------------------------------------------------------------------

    def _enter(self, state: ConnectionState) -> list[Action]:
        if state is self.state:
            return []
        if state not in TRANSITIONS[self.state]:
            raise IllegalTransition(f"{self.state.value} -> {state.value} is not a legal change")
        self.state = state
        return [_ENTER[state]]

    def _dormant(self, pending: bool) -> list[Action]:
        actions = self._enter(ConnectionState.DORMANT)
        self._busy = pending
        if pending:
            self._end_outage()
            actions.append(_OPEN_SOCKET)
        return actions

    def _refused(self, error: RealtimeError, now: float) -> list[Action]:
        """Credentials refused: with tokens, drop the token and retry once; else final."""
        if not self._uses_tokens:
            return self._fail(error)  # a Key header refused: a new attempt would be too
        self._unauthorized_streak += 1
        if self._unauthorized_streak >= 2 or self._retry is None:
            twice = " twice in a row" if self._unauthorized_streak >= 2 else ""
            final = error_for(
                UNAUTHORIZED,
                f"{error.message} (refused{twice}: check the app's permissions too)",
                status=error.status,
            )
            return [DropToken(), *self._fail(final)]
        retry = error_for(
            UNAUTHORIZED, f"{error.message} (retrying once with a new token)", status=error.status
        )
        return [DropToken(), *self._attempt_failed(retry, now)]

    def _attempt_failed(self, error: RealtimeError, now: float) -> list[Action]:
        retry = self._retry
        if retry is None:
            return self._fail(error)
        outage = self._outage
        if outage is None:
            # tenacity's own record of an outage; nothing in it reads a clock later.
            outage = self._outage = tenacity.RetryCallState(None, None, (), {})  # type: ignore[arg-type]
            outage.start_time = now
        else:
            outage.prepare_for_next_attempt()
        outage.outcome = tenacity.Future.construct(outage.attempt_number, error, True)
        outage.outcome_timestamp = now
        # Wait, then stop, as tenacity asks them: a stop strategy may read upcoming_sleep.
        delay = retry.wait(outage)
        outage.upcoming_sleep = delay
        if retry.stop(outage):
            message = f"gave up reconnecting: {error.message}"
            return self._fail(error_for(CONNECTION_LOST, message, status=error.status))
        outage.idle_for += delay
        actions = [] if self.state is ConnectionState.CONNECTING else self._enter(_S.RECONNECTING)
        self._busy = True
        return [*actions, RetryAfter(delay, error)]

    def _end_outage(self) -> None:
        self._outage = None

    def _fail(self, error: RealtimeError) -> list[Action]:
        if self.closing:
            return []
        self.failure = error
        self._busy = False
        self._socket = None
        return [Emit("on_error", (error,)), *self._enter(ConnectionState.FAILED), Fail(error)]
