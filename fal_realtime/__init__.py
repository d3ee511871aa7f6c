"""fal_realtime: an asyncio client for fal.ai's realtime and HTTP-over-WebSocket APIs.

The local gateway lives in :mod:`fal_realtime.server`; the command line in
``fal-realtime`` (:mod:`fal_realtime.cli`); helpers for camera frames and result
images in :mod:`fal_realtime.media`.
"""

from ._auth import TokenProvider
from ._callbacks import OnClose, OnError, OnMeta, OnOpen, OnResult, OnStateChange
from ._policy import ReconnectPolicy, set_testing
from ._protocol.actions import StopStrategy, WaitStrategy
from ._protocol.apps import AppId
from ._protocol.codecs import Encoding
from ._protocol.http_ws import End, Start
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
    ErrorCode,
    RealtimeError,
    RealtimeTimeoutError,
    UnauthorizedError,
    UntrustedCertificateError,
)
from .http_ws import HttpWsConnection, Response, ws
from .realtime import Connecting, ConnectionState, RealtimeConnection, RealtimeStats, connect
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
    "Connecting",
    "ConnectionLostError",
    "ConnectionState",
    "Encoding",
    "End",
    "ErrorCode",
    "HttpWsConnection",
    "OnClose",
    "OnError",
    "OnMeta",
    "OnOpen",
    "OnResult",
    "OnStateChange",
    "RealtimeConnection",
    "RealtimeError",
    "RealtimeStats",
    "RealtimeTimeoutError",
    "ReconnectPolicy",
    "Response",
    "Start",
    "StopStrategy",
    "Telemetry",
    "Token",
    "TokenProvider",
    "UnauthorizedError",
    "UntrustedCertificateError",
    "WaitStrategy",
    "__version__",
    "connect",
    "fetch_token",
    "set_testing",
    "ws",
]
