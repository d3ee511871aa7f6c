"""The one exception family of fal_realtime.

Every failure the library reports, raised or delivered to ``on_error``, is a
:class:`RealtimeError` carrying a stable string ``code``::

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
    "RealtimeError",
    "RealtimeTimeoutError",
    "UnauthorizedError",
    "UntrustedCertificateError",
    "error_for",
]

CONNECTION_LOST: Final = "CONNECTION_LOST"
RATE_LIMITED: Final = "RATE_LIMITED"
INVALID_INPUT: Final = "INVALID_INPUT"
UNAUTHORIZED: Final = "UNAUTHORIZED"
TIMEOUT: Final = "TIMEOUT"
INTERNAL_ERROR: Final = "INTERNAL_ERROR"
DECODE_ERROR: Final = "DECODE_ERROR"
CALLBACK_ERROR: Final = "CALLBACK_ERROR"


class RealtimeError(Exception):
    """Report a failure of a realtime or HTTP-over-WebSocket operation.

    ``str(err)`` is ``"CODE: message"``; the server's ``reason`` text is kept in
    the message when there is one. ``status``, ``body`` and ``request_id`` are
    set when the failure came with an HTTP-like answer.
    """

    code: str
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
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status
        self.body = body
        self.request_id = request_id

    def __repr__(self) -> str:
        extra = f", status={self.status}" if self.status is not None else ""
        return f"{type(self).__name__}({self.code!r}, {self.message!r}{extra})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (
            _rebuild,
            (type(self), self.code, self.message, self.status, self.body, self.request_id),
        )


def _rebuild(
    cls: type[RealtimeError],
    code: str,
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
