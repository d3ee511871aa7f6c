"""The frames of fal's runner, the server side of realtime (no I/O; for the gateway).

    value = decode_input(frame)            # a msgpack map, or InputError
    frame = encode_output(result)          # msgpack bytes, or TypeError as fal's runner says
    text = error_frame("INTERNAL_ERROR", str(exc))

The client reads these frames with :func:`fal_realtime._protocol.realtime.classify`; both
sides take the wire format from this package, so they cannot drift apart. Texts follow
fal's runner (fal 1.83.0, ``fal/realtime.py``): the TIMEOUT reason (lines 558-564), the
non-map output error (lines 113-121) and compact JSON for text frames.
"""

from __future__ import annotations

from typing import Any

import orjson

from .codecs import msgpack_decode, msgpack_encode

__all__ = [
    "TIMEOUT_REASON",
    "UNAUTHORIZED_FRAME",
    "InputError",
    "decode_input",
    "encode_output",
    "error_frame",
    "normalize_output",
    "timeout_frame",
    "timings_frame",
]

#: The reason of the TIMEOUT that ends every session that did not fail.
TIMEOUT_REASON = "no inputs, reconnect when needed!"
#: What fal's edge sends before closing a realtime socket whose credentials it refused.
UNAUTHORIZED_FRAME = '{"status":"error","error":"Unauthorized"}'


class InputError(ValueError):
    """Refuse an input frame: not binary, not msgpack, or not a map."""


def decode_input(frame: bytes | bytearray | memoryview | str) -> dict[str, Any]:
    """Return the map one input frame carries; raise :class:`InputError` otherwise."""
    if isinstance(frame, str):
        raise InputError("expected a binary msgpack frame, got a text frame")
    try:
        value = msgpack_decode(frame)
    except ValueError as exc:
        raise InputError(f"cannot decode msgpack input: {exc}") from None
    if not isinstance(value, dict):
        raise InputError(f"input must be a msgpack map, got {type(value).__name__}")
    return value


def normalize_output(output: Any) -> dict[str, Any]:
    """Return ``output`` as a map (pydantic models dumped); raise TypeError as fal does."""
    if isinstance(output, dict):
        return output
    for method in ("model_dump", "dict"):  # pydantic 2, then pydantic 1 (what fal calls)
        dump = getattr(output, method, None)
        if callable(dump):
            dumped = dump()
            if isinstance(dumped, dict):
                return dumped
    raise TypeError(f"Expected a dict or pydantic model as output, got {type(output)}")


def encode_output(output: Any) -> bytes:
    """Return the binary frame for one handler output (a map, or a pydantic model)."""
    return msgpack_encode(normalize_output(output))


def error_frame(code: str, reason: str) -> str:
    """Return the ``x-fal-error`` text frame for ``code`` and ``reason``."""
    return orjson.dumps({"type": "x-fal-error", "error": code, "reason": reason}).decode()


def timeout_frame() -> str:
    """Return the TIMEOUT frame that precedes the runner's normal close."""
    return error_frame("TIMEOUT", TIMEOUT_REASON)


def timings_frame(seconds: float) -> str:
    """Return the ``x-fal-message`` timings frame for a handler that took ``seconds``."""
    return orjson.dumps({"type": "x-fal-message", "action": "timings", "timing": seconds}).decode()
