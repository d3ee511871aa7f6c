"""The one exception family of fal_realtime.

Every failure the library reports, raised or delivered to ``on_error``, is a
:class:`RealtimeError` carrying a stable ``code``: an :class:`ErrorCode` (a ``StrEnum``,
so ``err.code == "RATE_LIMITED"`` holds) for the codes below, or the server's own
string, passed through unchanged, for a code this library does not know::

    Exception
    └── RealtimeError                       code, message, status, body, request_id
        ├── ConnectionLostError             CONNECTION_LOST   (also a ConnectionError)
        │   └── UntrustedCertificateError   CONNECTION_LOST   TLS verification failed: never retried
        ├── RealtimeTimeoutError            TIMEOUT           (also a TimeoutError)
        └── UnauthorizedError               UNAUTHORIZED      (also a PermissionError)

Bad arguments at the API (an invalid app id, ``max_buffering`` outside 1..60, a
payload that is not a map) are plain ``ValueError``/``TypeError`` raised at the
call, before any I/O.
"""

from __future__ import annotations

import enum
from typing import Any, Final

__all__ = [
    "CALLBACK_ERROR",
    "CONNECTION_LOST",
    "DECODE_ERROR",
    "INTERNAL_ERROR",
    "INVALID_INPUT",
    "RATE_LIMITED",
    "TIMEOUT",
    "UNAUTHORIZED",
    "ConnectionLostError",
    "ErrorCode",
    "RealtimeError",
    "RealtimeTimeoutError",
    "UnauthorizedError",
    "UntrustedCertificateError",
    "error_for",
]


class ErrorCode(enum.StrEnum):
    """The codes of SPEC §4; each member *is* its string (``ErrorCode.TIMEOUT == "TIMEOUT"``)."""

    #: The socket dropped or never opened (after the retries).
    CONNECTION_LOST = "CONNECTION_LOST"
    #: The server said so (an error code, or HTTP 429 on the token or the handshake).
    RATE_LIMITED = "RATE_LIMITED"
    #: The payload cannot be encoded, is too large, or the server rejects it.
    INVALID_INPUT = "INVALID_INPUT"
    #: No key, a bad key, or a refused token.
    UNAUTHORIZED = "UNAUTHORIZED"
    #: A bounded wait ran out.
    TIMEOUT = "TIMEOUT"
    #: A server-side failure.
    INTERNAL_ERROR = "INTERNAL_ERROR"
    #: A frame that cannot be decoded.
    DECODE_ERROR = "DECODE_ERROR"
    #: A user callback raised.
    CALLBACK_ERROR = "CALLBACK_ERROR"


# The names these codes had before ErrorCode: aliases of its members.
CONNECTION_LOST: Final = ErrorCode.CONNECTION_LOST
RATE_LIMITED: Final = ErrorCode.RATE_LIMITED
INVALID_INPUT: Final = ErrorCode.INVALID_INPUT
UNAUTHORIZED: Final = ErrorCode.UNAUTHORIZED
TIMEOUT: Final = ErrorCode.TIMEOUT
INTERNAL_ERROR: Final = ErrorCode.INTERNAL_ERROR
DECODE_ERROR: Final = ErrorCode.DECODE_ERROR
CALLBACK_ERROR: Final = ErrorCode.CALLBACK_ERROR

_KNOWN: Final[dict[str, ErrorCode]] = {code.value: code for code in ErrorCode}


class RealtimeError(Exception):
    """Report a failure of a realtime or HTTP-over-WebSocket operation.

    ``str(err)`` is ``"CODE: message"``; the server's ``reason`` text is kept in
    the message when there is one. ``status``, ``body`` and ``request_id`` are
    set when the failure came with an HTTP-like answer.

    Args:
        code: an :class:`ErrorCode` or its string (kept as the member), or a server's
            own code (kept as the string it is).
        message: what went wrong, for a person.
        status: the HTTP status, when the failure came with one.
        body: the answer's body, when there was one.
        request_id: the request's id, when the server gave one.
    """

    code: ErrorCode | str
    message: str
    status: int | None
    body: Any
    request_id: str | None

    def __init__(
        self,
        code: str,
        message: str,
        *,
        status: int | None = None,
        body: Any = None,
        request_id: str | None = None,
    ) -> None:
        code = _KNOWN.get(code, code)
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status
        self.body = body
        self.request_id = request_id

    def __repr__(self) -> str:
        extra = f", status={self.status}" if self.status is not None else ""
        return f"{type(self).__name__}({str(self.code)!r}, {self.message!r}{extra})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (
            _rebuild,
            (type(self), self.code, self.message, self.status, self.body, self.request_id),
        )


def _rebuild(
    cls: type[RealtimeError],
    code: ErrorCode | str,
    message: str,
    status: int | None,
    body: Any,
    request_id: str | None,
) -> RealtimeError:
    return cls(code, message, status=status, body=body, request_id=request_id)


class ConnectionLostError(RealtimeError, ConnectionError):
    """Report a socket that dropped or never opened (code ``CONNECTION_LOST``)."""


class UntrustedCertificateError(ConnectionLostError):
    """Report a server whose TLS certificate was not trusted (never retried).

    Pass ``ssl_context=`` with a context that trusts it; verification stays on.
    """


class RealtimeTimeoutError(RealtimeError, TimeoutError):
    """Report a bounded wait that ran out (code ``TIMEOUT``)."""


class UnauthorizedError(RealtimeError, PermissionError):
    """Report a missing or refused key or token (code ``UNAUTHORIZED``)."""


_BY_CODE: dict[str, type[RealtimeError]] = {
    CONNECTION_LOST: ConnectionLostError,
    TIMEOUT: RealtimeTimeoutError,
    UNAUTHORIZED: UnauthorizedError,
}


def error_for(
    code: str,
    message: str,
    *,
    status: int | None = None,
    body: Any = None,
    request_id: str | None = None,
) -> RealtimeError:
    """Build the :class:`RealtimeError` subclass that fits ``code``."""
    cls = _BY_CODE.get(code, RealtimeError)
    return cls(code, message, status=status, body=body, request_id=request_id)
