"""Parse Server-Sent Events incrementally (no I/O), per the WHATWG event-stream rules.

The same events come out for every split of the stream into chunks: line
endings (LF, CR, CRLF, even a CRLF split across chunks) and UTF-8 sequences
split across chunks are handled.

    parser = SSEParser()
    for event in parser.feed(chunk): ...
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass

__all__ = ["SSEParser", "ServerSentEvent"]


@dataclass(frozen=True, slots=True)
class ServerSentEvent:
    """One dispatched event: type, data (lines joined by LF), last id, retry."""

    data: str
    event: str = "message"
    id: str | None = None
    retry: int | None = None


class SSEParser:
    """Feed bytes or text, get complete events; partial input is kept."""

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._buffer = ""
        self._pending_cr = False
        self._started = False
        self._data: list[str] = []
        self._event = ""
        self._last_id: str | None = None
        self._retry: int | None = None

    @property
    def last_event_id(self) -> str | None:
        """Return the last ``id:`` seen, as a reconnecting client would send it."""
        return self._last_id

    def feed(self, chunk: bytes | bytearray | memoryview | str) -> list[ServerSentEvent]:
        """Consume ``chunk`` and return the events it completes."""
        text = chunk if isinstance(chunk, str) else self._decoder.decode(bytes(chunk))
        if not text:
            return []
        if not self._started:
            self._started = True
            if text.startswith("\ufeff"):
                text = text[1:]
        if self._pending_cr:
            self._pending_cr = False
            if text.startswith("\n"):
                text = text[1:]
        buffer = self._buffer + text
        events: list[ServerSentEvent] = []
        start = 0
        length = len(buffer)
        cr = lf = -2  # -2: not searched yet; -1: none left in the buffer
        while start < length:
            # Search again only once the last hit is behind us, so a chunk of many
            # short lines costs linear time, not a full scan per line.
            if cr != -1 and cr < start:
                cr = buffer.find("\r", start)
            if lf != -1 and lf < start:
                lf = buffer.find("\n", start)
            if cr < 0 and lf < 0:
                break
            if cr < 0 or (0 <= lf < cr):
                end, nxt = lf, lf + 1
            elif cr + 1 < length:
                end, nxt = cr, cr + 2 if buffer[cr + 1] == "\n" else cr + 1
            else:
                # A CR at the very end: its LF may come in the next chunk.
                end, nxt = cr, cr + 1
                self._pending_cr = True
            event = self._line(buffer[start:end])
            if event is not None:
                events.append(event)
            start = nxt
        self._buffer = buffer[start:]
        return events

    def _line(self, line: str) -> ServerSentEvent | None:
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None
        name, sep, value = line.partition(":")
        if sep and value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id":
            if "\0" not in value:
                self._last_id = value
        elif name == "retry":
            if value.isascii() and value.isdigit():
                self._retry = int(value)
        return None

    def _dispatch(self) -> ServerSentEvent | None:
        data, event = self._data, self._event
        self._data, self._event = [], ""
        if not data:
            return None
        return ServerSentEvent(
            data="\n".join(data),
            event=event or "message",
            id=self._last_id,
            retry=self._retry,
        )
