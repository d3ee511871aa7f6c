"""The recording format: what one connection sent and received, one JSON object a line (no I/O).

A recording is UTF-8 text; its first line is the header, every other line one event, in
the order they happened, with ``t`` in seconds since the recording began::

    {"recording":"fal-realtime","version":1,"protocol":"realtime","app":"fal-ai/echo","path":"/realtime"}
    {"t":0.0,"event":"open","url":"ws://127.0.0.1:8080/fal-ai/echo/realtime?fal_jwt_token=***"}
    {"t":0.000812,"event":"send","binary":"gaFhAQ==","msgpack":{"a":1}}
    {"t":0.001937,"event":"recv","binary":"gaFhAQ==","msgpack":{"a":1}}
    {"t":60.00211,"event":"recv","text":"{\\"type\\":\\"x-fal-error\\",\\"error\\":\\"TIMEOUT\\",...}"}
    {"t":60.00245,"event":"close","code":1000,"by":"server"}

- ``open`` starts a session (a socket); its ``url`` is redacted (never a token), and no
  header is ever written (never a key). ``close`` ends it: the close ``code`` (1006 for
  a lost socket) and ``by`` (``server`` or ``client``). A realtime connection that
  reconnects writes one open..close block per socket.
- ``send`` / ``recv`` carry one frame: ``text`` (the exact string) or ``binary`` (the exact
  bytes, base64). A binary frame that is msgpack also gets a readable ``msgpack`` view,
  for diffs and review only: replay uses the bytes.

:func:`plan_sessions` turns a parsed recording into what a replaying server does: per
session, the frames to send at open, then per input the frames (and delays) that followed
it, ending as the session ended. :func:`first_difference` names the first field where an
input differs from the recorded one (the strict mode).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Final, Literal
from urllib.parse import urlsplit

import orjson

from .apps import Protocol
from .codecs import msgpack_decode

__all__ = [
    "FORMAT",
    "VERSION",
    "Event",
    "Header",
    "Recording",
    "RecordingError",
    "SessionPlan",
    "Step",
    "Turn",
    "encode_event",
    "encode_header",
    "first_difference",
    "parse_recording",
    "plan_sessions",
]

FORMAT: Final = "fal-realtime"
VERSION: Final = 1
#: The close code a lost socket (no close frame) is recorded with.
ABNORMAL_CLOSE: Final = 1006

EventKind = Literal["open", "send", "recv", "close"]
_KINDS: Final = ("open", "send", "recv", "close")


class RecordingError(ValueError):
    """Refuse a recording that is not in this format (the message names the line)."""


@dataclass(frozen=True, slots=True)
class Header:
    """What a recording is of: the protocol, the app id and the ``path`` option."""

    protocol: Protocol
    app: str
    path: str


@dataclass(frozen=True, slots=True)
class Event:
    """One line after the header."""

    t: float
    kind: EventKind
    frame: bytes | str | None = None
    url: str | None = None
    code: int | None = None
    by: Literal["server", "client"] | None = None


@dataclass(frozen=True, slots=True)
class Recording:
    """A parsed recording: its header and its events in order."""

    header: Header
    events: tuple[Event, ...]

    @property
    def request_path(self) -> str | None:
        """Return the URL path of the first recorded socket (None when nothing opened)."""
        for event in self.events:
            if event.kind == "open" and event.url is not None:
                return urlsplit(event.url).path.rstrip("/") or "/"
        return None


def _dumps(value: dict[str, Any]) -> str:
    return orjson.dumps(value).decode()


def encode_header(header: Header) -> str:
    """Return the header line (with its newline)."""
    return (
        _dumps(
            {
                "recording": FORMAT,
                "version": VERSION,
                "protocol": header.protocol,
                "app": header.app,
                "path": header.path,
            }
        )
        + "\n"
    )


def _readable(data: bytes) -> Any:
    """Return the msgpack value of ``data`` if it has a JSON form, else None."""
    try:
        value = msgpack_decode(data)
        orjson.dumps(value)
    except (ValueError, TypeError):
        return None
    return value


def encode_event(event: Event) -> str:
    """Return one event's line (with its newline)."""
    line: dict[str, Any] = {"t": round(event.t, 6), "event": event.kind}
    if event.kind == "open":
        line["url"] = event.url
    elif event.kind == "close":
        line["code"] = event.code
        line["by"] = event.by
    elif isinstance(event.frame, str):
        line["text"] = event.frame
    elif event.frame is not None:
        data = bytes(event.frame)
        line["binary"] = base64.b64encode(data).decode("ascii")
        if (view := _readable(data)) is not None:
            line["msgpack"] = view
    return _dumps(line) + "\n"


def _parse_header(value: Any) -> Header:
    if not isinstance(value, dict) or value.get("recording") != FORMAT:
        raise RecordingError(f"line 1: not a {FORMAT} recording header")
    if value.get("version") != VERSION:
        raise RecordingError(f"line 1: unsupported version {value.get('version')!r}")
    protocol, app, path = value.get("protocol"), value.get("app"), value.get("path")
    if protocol not in ("realtime", "http_ws") or not isinstance(app, str):
        raise RecordingError("line 1: the header needs protocol (realtime|http_ws) and app")
    return Header(protocol, app, path if isinstance(path, str) else "")


def _parse_event(value: Any, number: int) -> Event:
    if not isinstance(value, dict) or value.get("event") not in _KINDS:
        raise RecordingError(f"line {number}: expected an event ({', '.join(_KINDS)})")
    kind: EventKind = value["event"]
    t = value.get("t")
    if isinstance(t, bool) or not isinstance(t, int | float):
        raise RecordingError(f"line {number}: 't' must be a number of seconds")
    if kind == "open":
        return Event(float(t), kind, url=str(value.get("url") or ""))
    if kind == "close":
        code = value.get("code")
        by: Literal["server", "client"] = "client" if value.get("by") == "client" else "server"
        return Event(float(t), kind, code=code if isinstance(code, int) else None, by=by)
    if isinstance(value.get("text"), str):
        return Event(float(t), kind, frame=value["text"])
    try:
        data = base64.b64decode(value["binary"], validate=True)
    except (KeyError, TypeError, binascii.Error):
        raise RecordingError(f"line {number}: a frame needs 'text' or base64 'binary'") from None
    return Event(float(t), kind, frame=data)


def parse_recording(lines: Iterable[str]) -> Recording:
    """Parse a recording's lines; raise :class:`RecordingError` naming the bad line."""
    header: Header | None = None
    events: list[Event] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            value = orjson.loads(line)
        except orjson.JSONDecodeError:
            raise RecordingError(f"line {number}: not JSON") from None
        if header is None:
            header = _parse_header(value)
        else:
            events.append(_parse_event(value, number))
    if header is None:
        raise RecordingError("the recording is empty: expected a header line")
    return Recording(header, tuple(events))


# -- replay plans -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Step:
    """Wait ``delay_s`` (times the replay speed), then send ``frame`` or close the socket.

    A closing step has ``frame`` None; ``close_code`` 1006 (or None) means abort the
    connection without a close frame, as a lost socket was recorded.
    """

    delay_s: float
    frame: bytes | str | None = None
    close_code: int | None = None

    @property
    def closes(self) -> bool:
        """Tell whether this step ends the session."""
        return self.frame is None


@dataclass(frozen=True, slots=True)
class Turn:
    """One recorded input and what the server sent after it, until the next input."""

    input: bytes | str
    steps: tuple[Step, ...]


@dataclass(frozen=True, slots=True)
class SessionPlan:
    """One recorded socket as a server replays it."""

    opening: tuple[Step, ...]
    turns: tuple[Turn, ...]


def _sessions(events: Iterable[Event]) -> Iterator[list[Event]]:
    """Split events into sockets: each block starts at an ``open``."""
    block: list[Event] | None = None
    for event in events:
        if event.kind == "open":
            if block is not None:
                yield block
            block = [event]
        elif block is not None:
            block.append(event)
    if block is not None:
        yield block


def _plan(block: list[Event]) -> SessionPlan:
    opening: list[Step] = []
    turns: list[tuple[bytes | str, list[Step]]] = []
    steps = opening
    last_t = block[0].t
    for event in block[1:]:
        delay = max(0.0, event.t - last_t)
        last_t = event.t
        if event.kind == "send" and event.frame is not None:
            steps = []
            turns.append((event.frame, steps))
        elif event.kind == "recv" and event.frame is not None:
            steps.append(Step(delay, event.frame))
        elif event.kind == "close":
            if event.by == "server":
                steps.append(Step(delay, None, event.code))
            break
    return SessionPlan(tuple(opening), tuple(Turn(frame, tuple(s)) for frame, s in turns))


def plan_sessions(recording: Recording) -> tuple[SessionPlan, ...]:
    """Return one plan per recorded socket, in the order they were opened."""
    return tuple(_plan(block) for block in _sessions(recording.events))


# -- strict matching ----------------------------------------------------------------------


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:57]}..."


def _decoded(frame: bytes | str) -> Any:
    """Return the value a frame carries (msgpack or JSON), else the frame itself."""
    try:
        return orjson.loads(frame) if isinstance(frame, str) else msgpack_decode(frame)
    except ValueError:
        return frame


def _difference(recorded: Any, got: Any, where: str) -> str | None:
    if isinstance(recorded, dict) and isinstance(got, dict):
        for name in [*recorded, *(k for k in got if k not in recorded)]:
            field = f"{where}.{name}" if where else str(name)
            if name not in got:
                return f"field {field!r} is missing (recorded {_short(recorded[name])})"
            if name not in recorded:
                return f"field {field!r} is not in the recording (got {_short(got[name])})"
            if (found := _difference(recorded[name], got[name], field)) is not None:
                return found
        return None
    if isinstance(recorded, list) and isinstance(got, list) and len(recorded) == len(got):
        for index, (a, b) in enumerate(zip(recorded, got, strict=True)):
            if (found := _difference(a, b, f"{where}[{index}]")) is not None:
                return found
        return None
    if type(recorded) is type(got) and recorded == got:
        return None
    label = f"field {where!r}" if where else "the input"
    return f"{label}: recorded {_short(recorded)}, got {_short(got)}"


def first_difference(recorded: bytes | str, got: bytes | str) -> str | None:
    """Return where input frame ``got`` first differs from ``recorded`` (None: they match).

    Frames are compared by the values they carry (msgpack or JSON; spacing and key order
    do not count), so the message names the field, e.g.
    ``field 'prompt': recorded 'a cat', got 'a dog'``.
    """
    if recorded == got:
        return None
    return _difference(_decoded(recorded), _decoded(got), "")
