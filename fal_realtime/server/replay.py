"""Serve a recording (``record=PATH``) as the app it came from: ``Gateway.replay(...)``.

Each new socket gets the next recorded session (after the last, the first again). The
frames recorded at open go out first; then the n-th input gets what followed the n-th
recorded input, in order, each after its recorded delay times ``speed`` (0: at once),
and the session ends as it ended in the recording: a close with the recorded code, an
abort where the socket was lost, or nothing where the client closed it.

Inputs are matched by position. With ``strict=True`` an input that differs from the
recorded one (compared as values: the message names the field) is answered instead
with what a server says of a bad input: ``x-fal-error`` INVALID_INPUT then close 1000
(realtime), or a 400 start, a JSON ``detail`` body and the end (HTTP over WebSockets,
whose socket stays usable). An input past the recorded ones is answered the same way
in either mode, as the recording cannot say what to send.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Sequence
from dataclasses import dataclass, field

import orjson
from aiohttp import WSMsgType, web

from .._cycles import serving_socket, stop_task
from .._protocol.apps import AppId, _join_path
from .._protocol.recording import (
    ABNORMAL_CLOSE,
    Recording,
    SessionPlan,
    Step,
    first_difference,
    parse_recording,
    plan_sessions,
)
from .._protocol.runner import error_frame
from .common import CLOSE_HANDSHAKE_S, json_error
from .realtime_session import refuse_unauthorized
from .settings import Settings

__all__ = ["ReplayApp", "handle_replay", "load_replay"]


@dataclass(slots=True)
class ReplayApp:
    """A recording served at one endpoint, with how fast and how strictly to replay it."""

    app_id: AppId
    endpoint: str
    recording: Recording
    plans: Sequence[SessionPlan]
    speed: float = 1.0
    strict: bool = False
    _served: int = field(default=0, repr=False)

    def next_plan(self) -> SessionPlan:
        """Return the plan of the next socket (the recorded sessions, in turn)."""
        plan = self.plans[self._served % len(self.plans)]
        self._served += 1
        return plan


def load_replay(
    app_id: str,
    recording: str | os.PathLike[str],
    *,
    path: str | None = None,
    speed: float = 1.0,
    strict: bool = False,
) -> ReplayApp:
    """Read a recording file and make the app that replays it.

    Args:
        app_id: the app to serve it as (``owner/alias[/sub]``).
        recording: the file ``record=PATH`` wrote.
        path: the endpoint's path under the app, as ``connect(path=...)`` takes it
            (default: the path the recording was made with).
        speed: the factor on recorded delays (0: no delays).
        strict: answer an input that differs from the recorded one with INVALID_INPUT.

    Raises:
        ValueError: a bad app id or speed, or a file that is not a recording with a session.
        OSError: the file cannot be read.
    """
    if not speed >= 0:
        raise ValueError(f"speed must be >= 0, got {speed}")
    app = AppId.parse(app_id)
    with open(recording, encoding="utf-8") as file:
        parsed = parse_recording(file)
    plans = plan_sessions(parsed)
    if not plans:
        raise ValueError(f"{os.fspath(recording)!r} holds no session to replay")
    endpoint = _join_path(app, parsed.header.path if path is None else path)
    return ReplayApp(app, endpoint.rstrip("/"), parsed, plans, speed=speed, strict=strict)


class _ReplaySession:
    """Replay one recorded session on one socket; own its writer task."""

    def __init__(
        self,
        request: web.Request,
        ws: web.WebSocketResponse,
        app: ReplayApp,
        plan: SessionPlan,
    ) -> None:
        self._request = request
        self._ws = ws
        self._app = app
        self._plan = plan
        self._queue: asyncio.Queue[tuple[Step, ...]] = asyncio.Queue()
        self._realtime = app.recording.header.protocol == "realtime"
        self._closing = False

    async def run(self) -> None:
        """Read inputs here while the writer sends what each is answered with."""
        self._queue.put_nowait(self._plan.opening)
        writer = asyncio.create_task(self._write_loop(), name="gateway-replay-writer")
        try:
            await self._read_loop()
        finally:
            if self._closing:
                # The writer's close() is what ended the read (aiohttp 3.9 wakes a waiting
                # receive() first): let it send the recorded code, or aiohttp closes
                # with 1000 once the handler returns.
                await asyncio.wait({writer})
            await stop_task(writer)

    async def _read_loop(self) -> None:
        turns = self._plan.turns
        number = 0
        while True:
            msg = await self._ws.receive()
            if msg.type not in (WSMsgType.BINARY, WSMsgType.TEXT):
                return  # closed by either side, or lost
            number += 1
            got: bytes | str = msg.data
            problem = (
                f"input {number} is past the recording ({len(turns)} inputs in this session)"
                if number > len(turns)
                else None
            )
            if problem is None and self._app.strict:
                difference = first_difference(turns[number - 1].input, got)
                if difference is not None:
                    problem = f"input {number} differs from the recording: {difference}"
            if problem is None:
                self._queue.put_nowait(turns[number - 1].steps)
            else:
                self._queue.put_nowait(self._refuse(problem))

    def _refuse(self, problem: str) -> tuple[Step, ...]:
        if self._realtime:
            return (Step(0.0, error_frame("INVALID_INPUT", problem)), Step(0.0, None, 1000))
        start = {"type": "start", "request_id": "replay", "status": 400}
        end = {"type": "end", "request_id": "replay", "status": 400}
        json_body = {"content-type": "application/json"}
        return (
            Step(0.0, orjson.dumps({**start, "headers": json_body}).decode()),
            Step(0.0, orjson.dumps({"detail": problem}).decode()),
            Step(0.0, orjson.dumps({**end, "time_to_first_byte_seconds": 0.0}).decode()),
        )

    async def _write_loop(self) -> None:
        speed = self._app.speed
        while True:
            steps = await self._queue.get()
            for step in steps:
                if step.delay_s and speed:
                    await asyncio.sleep(step.delay_s * speed)
                if self._ws.closed:
                    return
                if step.frame is None:
                    await self._close(step.close_code)
                    return
                frame = step.frame
                with contextlib.suppress(ConnectionError, RuntimeError):
                    if isinstance(frame, str):
                        await self._ws.send_str(frame)
                    else:
                        await self._ws.send_bytes(frame)

    async def _close(self, code: int | None) -> None:
        if code is None or code == ABNORMAL_CLOSE:
            if self._request.transport is not None:
                self._request.transport.abort()
            return
        self._closing = True
        with contextlib.suppress(ConnectionError, RuntimeError):
            await self._ws.close(code=code)


async def handle_replay(
    request: web.Request, settings: Settings, app: ReplayApp
) -> web.StreamResponse:
    """Check credentials as the live endpoint would, then replay the next session."""
    realtime = app.recording.header.protocol == "realtime"
    verdict = settings.authenticator.check(
        header=request.headers.get("Authorization"),
        token=request.query.get("fal_jwt_token"),
        alias=app.app_id.alias,
    )
    if verdict.subject is None and not realtime:
        raise json_error(401, f"unauthorized: {verdict.reason}")
    ws = web.WebSocketResponse(
        max_msg_size=settings.max_frame_bytes,
        heartbeat=settings.heartbeat_s,
        compress=False,
        timeout=CLOSE_HANDSHAKE_S,
    )
    if verdict.subject is None:
        return await refuse_unauthorized(request, ws)
    async with serving_socket(ws):
        with settings.connection_slot(verdict.subject):
            await ws.prepare(request)
            await _ReplaySession(request, ws, app, app.next_plan()).run()
    return ws
