"""fal_realtime: an asyncio client for fal.ai's realtime and HTTP-over-WebSocket APIs.

The local gateway lives in :mod:`fal_realtime.server`; the command line in
``fal-realtime`` (:mod:`fal_realtime.cli`).
"""

from ._policy import ReconnectPolicy, set_testing
from ._protocol.apps import AppId
from ._telemetry import Telemetry
from ._version import __version__
from .errors import (
    CALLBACK_ERROR,
    CONNECTION_LOST,
    DECODE_ERROR,
    INTERNAL_ERROR,
    INVALID_INPUT,
    RATE_LIMITED,
    TIMEOUT,
    UNAUTHORIZED,
    ConnectionLostError,
    RealtimeError,
    RealtimeTimeoutError,
    UnauthorizedError,
    UntrustedCertificateError,
)
from .http_ws import HttpWsConnection, Response, ws
from .realtime import ConnectionState, RealtimeConnection, RealtimeStats, connect
from .tokens import Token, fetch_token

__all__ = [
    "CALLBACK_ERROR",
    "CONNECTION_LOST",
    "DECODE_ERROR",
    "INTERNAL_ERROR",
    "INVALID_INPUT",
    "RATE_LIMITED",
    "TIMEOUT",
    "UNAUTHORIZED",
    "AppId",
    "ConnectionLostError",
    "ConnectionState",
    "HttpWsConnection",
    "RealtimeConnection",
    "RealtimeError",
    "RealtimeStats",
    "RealtimeTimeoutError",
    "ReconnectPolicy",
    "Response",
    "Telemetry",
    "Token",
    "UnauthorizedError",
    "UntrustedCertificateError",
    "__version__",
    "connect",
    "fetch_token",
    "set_testing",
    "ws",
]
