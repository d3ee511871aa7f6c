"""The sending half of a realtime session, shared by all four modes.

A :class:`SessionWire` writes a session's frames (applying the output faults: delay,
drop after N frames; and it keeps the model busy for ``inference_ms``), and ends the
session exactly once: ``x-fal-error`` with the ending's code, then close 1000, as fal's
runner ends every session; or nothing when the client is gone or a fault dropped the socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from .._protocol.runner import TIMEOUT_REASON, encode_output, error_frame, timings_frame
from .faults import Faults, FrameSender

__all__ = ["TIMEOUT", "Ending", "SessionOver", "SessionWire"]

log = logging.getLogger("fal_realtime.server.realtime")


@dataclass(frozen=True, slots=True)
class Ending:
    """Why a session ends: the x-fal-error code to send (None: client gone or dropped)."""

    code: str | None
    reason: str = ""


#: The normal end: no input for the session timeout, or a streaming handler finished.
TIMEOUT = Ending("TIMEOUT", TIMEOUT_REASON)


class SessionOver(Exception):
    """Raised into a session's tasks once nothing more can be sent."""


class SessionWire:
    """Send one session's frames and end it once."""

    def __init__(
        self,
        request: web.Request,
        ws: web.WebSocketResponse,
        faults: Faults,
        *,
        emit_timings: bool,
    ) -> None:
        self.ws = ws
        self.faults = faults
        self._sender = FrameSender(request, ws, faults)
        self._emit_timings = emit_timings
        self.ending: asyncio.Future[Ending] = asyncio.get_running_loop().create_future()

    def end(self, ending: Ending) -> None:
        """Decide how the session ends (the first decision wins)."""
        if not self.ending.done():
            self.ending.set_result(ending)

    def fail(self, exc: BaseException, what: object) -> None:
        """End the session for an exception raised while serving it."""
        if isinstance(exc, SessionOver):
            self.end(Ending(None))
        elif isinstance(exc, ConnectionError) or (isinstance(exc, RuntimeError) and self.ws.closed):
            self.end(Ending(None))  # the client went away mid-send
        else:
            log.warning(
                "realtime handler for %s failed: %r", what, exc, extra={"fal_app_id": str(what)}
            )
            self.end(Ending("INTERNAL_ERROR", str(exc)))

    async def send(self, frame: bytes | str) -> None:
        """Send one frame; raise :class:`SessionOver` when the socket is gone or dropped."""
        if not await self._sender.send(frame):
            self.end(Ending(None))
            raise SessionOver

    async def simulate_inference(self) -> None:
        """Keep the model busy for the ``inference_ms`` fault (a slow model), if set."""
        if self.faults.inference_ms:
            await asyncio.sleep(self.faults.inference_ms / 1000)

    async def emit(self, output: Any, elapsed_s: float | None = None) -> None:
        """Send one handler output; a timings frame follows when ``elapsed_s`` is given."""
        frame = encode_output(output)
        if self.faults.delay_ms:
            await asyncio.sleep(self.faults.delay_ms / 1000)
        await self.send(frame)
        if elapsed_s is not None:
            await self.timings(elapsed_s)

    async def timings(self, elapsed_s: float) -> None:
        """Send the ``x-fal-message`` timings frame if the app asked for them."""
        if self._emit_timings:
            await self.send(timings_frame(elapsed_s))

    async def rate_limited(self) -> None:
        """Answer one input with RATE_LIMITED (the ``rate_limit_every`` fault)."""
        await self.send(error_frame("RATE_LIMITED", "too many requests, slow down"))

    async def finish(self, ending: Ending) -> None:
        """Send the ending's ``x-fal-error`` and close 1000 (nothing if the client is gone)."""
        if ending.code is None or self.ws.closed:
            return
        with contextlib.suppress(ConnectionError, RuntimeError, SessionOver):
            await self.send(error_frame(ending.code, ending.reason))
        if not self.ws.closed:
            with contextlib.suppress(ConnectionError, RuntimeError):
                await self.ws.close(code=1000)
