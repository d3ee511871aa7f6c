"""Write a connection's recording (``record=PATH``): the few calls the clients make.

    recorder = Recorder(path, protocol="realtime", app="fal-ai/echo", path_option="/realtime")
    recorder.opened(url)        # a socket is up (the URL is redacted here)
    recorder.sent(frame)        # bytes or str, exactly as written to the socket
    recorder.received(frame)    # a data frame, exactly as read
    recorder.closed(code, by="server")

Each call appends one line (the format is :mod:`fal_realtime._protocol.recording`) and
closes the file again, so a recording is complete up to the last frame even if the
process dies, and no file handle outlives a connection that is never closed. Timing is
``time.perf_counter`` since the recorder was made. Nothing here ever sees a header:
keys and tokens cannot reach the file.
"""

from __future__ import annotations

import os
import time
from typing import Literal

from ._protocol.apps import Protocol, redact_url
from ._protocol.recording import Event, Header, encode_event, encode_header

__all__ = ["Recorder"]


class Recorder:
    """Append what one connection sends and receives to a recording file."""

    __slots__ = ("_origin", "path")

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        protocol: Protocol,
        app: str,
        path_option: str,
    ) -> None:
        self.path = os.fspath(path)
        self._origin = time.perf_counter()
        with open(self.path, "w", encoding="utf-8") as file:
            file.write(encode_header(Header(protocol, app, path_option)))

    def _append(self, event: Event) -> None:
        with open(self.path, "a", encoding="utf-8") as file:
            file.write(encode_event(event))

    def _now(self) -> float:
        return time.perf_counter() - self._origin

    def opened(self, url: str) -> None:
        """Record that a socket to ``url`` opened (written redacted)."""
        self._append(Event(self._now(), "open", url=redact_url(url)))

    def sent(self, frame: bytes | bytearray | memoryview | str) -> None:
        """Record one frame written to the socket."""
        data = frame if isinstance(frame, str) else bytes(frame)
        self._append(Event(self._now(), "send", frame=data))

    def received(self, frame: bytes | bytearray | memoryview | str) -> None:
        """Record one data frame read from the socket."""
        data = frame if isinstance(frame, str) else bytes(frame)
        self._append(Event(self._now(), "recv", frame=data))

    def closed(self, code: int | None, *, by: Literal["server", "client"]) -> None:
        """Record that the socket closed with ``code`` (None or 1006: lost)."""
        self._append(Event(self._now(), "close", code=code if code is not None else 1006, by=by))
