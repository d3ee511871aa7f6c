"""Classify realtime frames from the server (no I/O; never raises).

    kind, value = classify(frame)

Binary frames are decoded with the connection's codec (msgpack by default), text
frames as JSON. A decoded map is then sorted by what fal's clients look for:
``x-fal-message`` is meta, ``x-fal-error`` an error (``TIMEOUT`` kept apart: it
only means an idle session ended), ``{"status": "error", "error":
"Unauthorized"}`` a refused token, and any other map a result.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .codecs import json_decode, msgpack_decode

__all__ = ["Frame", "FrameKind", "classify", "classify_value", "plain_result"]


class FrameKind(enum.Enum):
    """What a server frame means to the client."""

    RESULT = "result"
    META = "meta"
    ERROR = "error"
    TIMEOUT = "timeout"
    UNAUTHORIZED = "unauthorized"
    UNDECODABLE = "undecodable"


@dataclass(frozen=True, slots=True)
class Frame:
    """One classified frame: its kind, decoded value, and error code/reason if any."""

    kind: FrameKind
    value: Any = None
    code: str | None = None
    reason: str | None = None

    def __iter__(self) -> Any:
        # Lets callers write ``kind, value = classify(frame)``.
        return iter((self.kind, self.value))


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None if value is None else str(value)


def plain_result(value: Any) -> bool:
    """Tell whether a decoded value is a result with nothing to inspect (the common case).

    True exactly when :func:`classify_value` would say RESULT for a map without a
    ``type`` or ``status`` key; a cheap test for the hot path.
    """
    return type(value) is dict and "type" not in value and "status" not in value


def classify_value(value: Any, *, any_type_is_result: bool = False) -> Frame:
    """Classify an already decoded frame value."""
    if not isinstance(value, dict):
        if any_type_is_result:
            return Frame(FrameKind.RESULT, value)
        return Frame(
            FrameKind.UNDECODABLE,
            value,
            reason=f"expected a map, got {type(value).__name__}",
        )
    kind = value.get("type")
    if kind == "x-fal-message":
        return Frame(FrameKind.META, value)
    if kind == "x-fal-error":
        code = _text(value.get("error")) or "UNKNOWN_ERROR"
        reason = _text(value.get("reason"))
        if code == "TIMEOUT":
            return Frame(FrameKind.TIMEOUT, value, code=code, reason=reason)
        return Frame(FrameKind.ERROR, value, code=code, reason=reason)
    if value.get("status") == "error" and value.get("error") == "Unauthorized":
        return Frame(FrameKind.UNAUTHORIZED, value, code="UNAUTHORIZED", reason="Unauthorized")
    return Frame(FrameKind.RESULT, value)


def classify(
    frame: bytes | bytearray | memoryview | str,
    decode: Callable[[bytes], Any] = msgpack_decode,
    *,
    custom_decode: bool = False,
) -> Frame:
    """Classify one server frame; undecodable input becomes ``UNDECODABLE``."""
    try:
        if isinstance(frame, str):
            value = json_decode(frame)
        else:
            value = decode(bytes(frame) if custom_decode else frame)  # type: ignore[arg-type]
    except Exception as exc:  # any decoder failure is a property of the frame
        kind = "text" if isinstance(frame, str) else "binary"
        return Frame(FrameKind.UNDECODABLE, frame, reason=f"cannot decode {kind} frame: {exc}")
    return classify_value(value, any_type_is_result=custom_decode and not isinstance(frame, str))
