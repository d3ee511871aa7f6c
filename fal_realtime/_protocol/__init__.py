"""The sans-I/O protocol layer shared by the client and the gateway (no asyncio here)."""

from .apps import (
    AppId,
    http_ws_url,
    realtime_url,
    redact_url,
    resolve_base,
    token_url,
    validate_max_buffering,
)
from .codecs import Codec, make_codec, msgpack_decode, msgpack_encode
from .http_ws import Body, End, ResponseAssembler, Start, parse_control
from .realtime import Frame, FrameKind, classify, classify_value
from .sse import ServerSentEvent, SSEParser

__all__ = [
    "AppId",
    "Body",
    "Codec",
    "End",
    "Frame",
    "FrameKind",
    "ResponseAssembler",
    "SSEParser",
    "ServerSentEvent",
    "Start",
    "classify",
    "classify_value",
    "http_ws_url",
    "make_codec",
    "msgpack_decode",
    "msgpack_encode",
    "parse_control",
    "realtime_url",
    "redact_url",
    "resolve_base",
    "token_url",
    "validate_max_buffering",
]
