"""Assemble HTTP-over-WebSocket responses from frames (no I/O).

Per request the server sends, in order: a ``start`` text frame
``{"type": "start", "request_id": ID, "status": 200, "headers": {...}}``, zero or
more body frames (binary chunks, or text), and an ``end`` text frame carrying the
same ``request_id``. A text frame is control only when it is a JSON map with
``type`` in {start, end} and a ``request_id``; anything else is body.

    assembler = ResponseAssembler()
    event = assembler.feed(frame)   # Start | Body | End, or raises RealtimeError
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import DECODE_ERROR, RealtimeError
from .codecs import json_decode

__all__ = ["Body", "End", "ResponseAssembler", "Start", "parse_control"]


@dataclass(frozen=True, slots=True)
class Start:
    """The start of one response: its id, HTTP status and headers.

    Args:
        request_id: the response's id (its end carries the same).
        status: the HTTP status.
        headers: the HTTP headers.
        raw: the whole start frame, as sent.
    """

    request_id: str
    status: int
    headers: Mapping[str, str] = field(default_factory=dict)
    raw: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Body:
    """One body chunk; text frames arrive UTF-8 encoded with ``is_text`` set."""

    data: bytes
    is_text: bool = False


@dataclass(frozen=True, slots=True)
class End:
    """The end of one response, with the server's timing when it sent one.

    Args:
        request_id: the response's id (its start's).
        status: the HTTP status.
        time_to_first_byte_seconds: the server's time to the first byte, when it says.
        raw: the whole end frame, as sent.
    """

    request_id: str
    status: int
    time_to_first_byte_seconds: float | None = None
    raw: Mapping[str, Any] = field(default_factory=dict)


def _status(value: Any, default: int = 200) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def parse_control(text: str) -> Start | End | None:
    """Return the control event a text frame carries, or None when it is body."""
    # Cheap pre-check: control frames are small JSON maps naming their type.
    if not text.startswith("{") or '"type"' not in text or len(text) > 1 << 20:
        return None
    try:
        value = json_decode(text)
    except ValueError:
        return None
    if not isinstance(value, dict):
        return None
    kind, request_id = value.get("type"), value.get("request_id")
    if kind not in ("start", "end") or request_id is None:
        return None
    rid = str(request_id)
    if kind == "start":
        headers = value.get("headers")
        clean = {str(k): str(v) for k, v in headers.items()} if isinstance(headers, dict) else {}
        return Start(rid, _status(value.get("status")), clean, value)
    ttfb = value.get("time_to_first_byte_seconds")
    return End(
        rid,
        _status(value.get("status")),
        float(ttfb) if isinstance(ttfb, int | float) and not isinstance(ttfb, bool) else None,
        value,
    )


class ResponseAssembler:
    """Track one connection's responses and refuse frames that break the order."""

    __slots__ = ("_current",)

    def __init__(self) -> None:
        self._current: Start | None = None

    @property
    def in_response(self) -> bool:
        """Tell whether a start has been seen and its end has not."""
        return self._current is not None

    @property
    def current(self) -> Start | None:
        """Return the start of the response being received, if any."""
        return self._current

    def feed(self, frame: bytes | bytearray | memoryview | str) -> Start | Body | End:
        """Turn one frame into an event; raise ``RealtimeError(DECODE_ERROR)`` on misorder."""
        if isinstance(frame, str):
            control = parse_control(frame)
            if control is None:
                return self._body(frame.encode("utf-8"), is_text=True)
            if isinstance(control, Start):
                if self._current is not None:
                    raise RealtimeError(
                        DECODE_ERROR,
                        f"start of request {control.request_id} arrived before the end of "
                        f"request {self._current.request_id}; the connection is out of step",
                        request_id=control.request_id,
                    )
                self._current = control
                return control
            if self._current is None:
                raise RealtimeError(
                    DECODE_ERROR,
                    f"end of request {control.request_id} arrived without a start",
                    request_id=control.request_id,
                )
            if control.request_id != self._current.request_id:
                raise RealtimeError(
                    DECODE_ERROR,
                    f"end carries request_id {control.request_id} but the response in "
                    f"progress is {self._current.request_id}",
                    request_id=self._current.request_id,
                )
            self._current = None
            return control
        return self._body(bytes(frame), is_text=False)

    def _body(self, data: bytes, *, is_text: bool) -> Body:
        if self._current is None:
            raise RealtimeError(DECODE_ERROR, "body frame arrived before any start frame")
        return Body(data, is_text)
