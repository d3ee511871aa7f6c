"""One realtime session on the gateway, behaving as fal's runner does.

- Inputs are binary msgpack maps; they wait in a buffer of at most ``buffering``
  entries that drops the oldest silently (``max_buffering`` in the query overrides).
- One worker runs the handler on each input in turn and sends each result as a
  binary msgpack frame (optionally followed by an ``x-fal-message`` timings frame).
- After ``session_timeout`` seconds without input the session drains what is
  pending, then sends ``x-fal-error`` TIMEOUT and closes with 1000.
- A handler that raises, or a frame that is not a msgpack map (text included),
  ends the session with ``x-fal-error`` INTERNAL_ERROR and close 1000.
- A streaming handler (async generator) takes one input per session: after its
  last item come TIMEOUT and the close.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import orjson
import ormsgpack
from aiohttp import WSMsgType, web

from .._cycles import serving_socket
from .faults import Faults, drop
from .registry import RealtimeApp, Route

if TYPE_CHECKING:
    from .gateway import Gateway

__all__ = ["UNAUTHORIZED_FRAME", "handle_realtime"]

log = logging.getLogger("fal_realtime.server.realtime")

UNAUTHORIZED_FRAME = '{"status":"error","error":"Unauthorized"}'
TIMEOUT_REASON = "no inputs, reconnect when needed!"
CLOSE_HANDSHAKE_S = 2.0


@dataclass(frozen=True, slots=True)
class _Ending:
    """Why a session ends: the x-fal-error code to send (None: client gone or dropped)."""

    code: str | None
    reason: str = ""


class _SessionOver(Exception):
    """Raised inside the session's tasks once the session has an ending."""


def _error_frame(code: str, reason: str) -> str:
    return orjson.dumps({"type": "x-fal-error", "error": code, "reason": reason}).decode()


def _parse_buffering(request: web.Request, default: int | None) -> int | None:
    from .gateway import json_error

    raw = request.query.get("max_buffering")
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if not 1 <= value <= 60:
        raise json_error(400, f"max_buffering must be an integer in 1..60, got {raw!r}")
    return value


async def handle_realtime(
    request: web.Request,
    gateway: Gateway,
    route: Route,
    app: RealtimeApp,
    faults: Faults,
) -> web.StreamResponse:
    """Accept a realtime WebSocket and run its session to the end."""
    buffering = _parse_buffering(request, app.buffering)
    verdict = gateway.authenticator.check(
        header=request.headers.get("Authorization"),
        token=request.query.get("fal_jwt_token"),
        alias=route.app_id.alias,
    )
    ws = web.WebSocketResponse(
        max_msg_size=gateway.max_frame_bytes,
        heartbeat=gateway.heartbeat_s,
        compress=False,
        timeout=CLOSE_HANDSHAKE_S,
        autoping=not faults.ignore_pings,
    )
    if faults.refuse_auth or verdict.subject is None:
        # What fal's edge sends and its JavaScript client looks for.
        await ws.prepare(request)
        await ws.send_str(UNAUTHORIZED_FRAME)
        await ws.close(code=1008, message=b"Unauthorized")
        return ws
    async with serving_socket(ws):
        with gateway.connection_slot(verdict.subject):
            await ws.prepare(request)
            await _Session(request, ws, app, buffering, faults).run()
    return ws


class _Session:
    """Own a session's reader and worker; end it exactly once."""

    def __init__(
        self,
        request: web.Request,
        ws: web.WebSocketResponse,
        app: RealtimeApp,
        buffering: int | None,
        faults: Faults,
    ) -> None:
        self._request = request
        self._ws = ws
        self._app = app
        self._faults = faults
        self._pending: collections.deque[Any] = collections.deque(maxlen=buffering)
        self._wakeup = asyncio.Event()
        self._input_over = False
        self._ending: asyncio.Future[_Ending] = asyncio.get_running_loop().create_future()
        self._frames_sent = 0
        self._inputs_seen = 0
        self._loop = asyncio.get_running_loop()
        self._last_input = 0.0
        self._idle_fired = False
        self._idle_handle: asyncio.TimerHandle | None = None

    def _end(self, ending: _Ending) -> None:
        if not self._ending.done():
            self._ending.set_result(ending)

    async def run(self) -> None:
        """Run reader and worker until one of them ends the session, then finish it."""
        if self._faults.drop_after == 0:
            await drop(self._request, self._ws, self._faults)
            return
        reader = asyncio.create_task(self._read_loop(), name="gateway-realtime-reader")
        worker = asyncio.create_task(self._work_loop(), name="gateway-realtime-worker")
        try:
            ending = await self._ending
        finally:
            if self._idle_handle is not None:
                self._idle_handle.cancel()
            for task in (reader, worker):
                task.cancel()
            await asyncio.gather(reader, worker, return_exceptions=True)
        await self._finish(ending)

    async def _finish(self, ending: _Ending) -> None:
        if ending.code is None or self._ws.closed:
            return
        with contextlib.suppress(ConnectionError, RuntimeError, _SessionOver):
            await self._send(_error_frame(ending.code, ending.reason))
        if not self._ws.closed:
            with contextlib.suppress(ConnectionError, RuntimeError):
                await self._ws.close(code=1000)

    # -- input --------------------------------------------------------------------

    async def _read_loop(self) -> None:
        timeout = self._app.session_timeout
        if timeout is not None:
            self._watch_idle(timeout)
        while True:
            try:
                msg = await self._ws.receive()
            except asyncio.CancelledError:
                if not self._idle_fired:
                    raise
                current = asyncio.current_task()
                if current is not None:
                    current.uncancel()
                # Idle: stop reading; the worker drains what is pending, then TIMEOUT.
                self._input_over = True
                self._wakeup.set()
                return
            self._last_input = self._loop.time()
            if msg.type == WSMsgType.BINARY:
                try:
                    value = ormsgpack.unpackb(msg.data)
                except ValueError as exc:
                    self._end(_Ending("INTERNAL_ERROR", f"cannot decode msgpack input: {exc}"))
                    return
                if not isinstance(value, dict):
                    self._end(
                        _Ending(
                            "INTERNAL_ERROR",
                            f"input must be a msgpack map, got {type(value).__name__}",
                        )
                    )
                    return
                self._pending.append(value)  # a full buffer drops the oldest
                self._wakeup.set()
            elif msg.type in (WSMsgType.PING, WSMsgType.PONG):
                continue  # only seen with autoping off (the ignore_pings fault)
            elif msg.type == WSMsgType.TEXT:
                self._end(
                    _Ending(
                        "INTERNAL_ERROR",
                        "expected a binary msgpack frame, got a text frame",
                    )
                )
                return
            else:  # CLOSE, CLOSING, CLOSED, ERROR: the client is gone
                self._end(_Ending(None))
                return

    def _watch_idle(self, timeout: float) -> None:
        """Cancel the reader once no input came for ``timeout`` s (one timer, re-armed)."""
        self._last_input = self._loop.time()
        self._arm_idle(timeout, asyncio.current_task())

    def _arm_idle(self, timeout: float, reader: asyncio.Task[Any] | None) -> None:
        # A method, not a closure that re-arms itself: such a closure is a reference
        # cycle that would keep the whole session alive until a full GC pass.
        self._idle_handle = self._loop.call_at(
            self._last_input + timeout, self._check_idle, timeout, reader
        )

    def _check_idle(self, timeout: float, reader: asyncio.Task[Any] | None) -> None:
        if self._loop.time() < self._last_input + timeout:
            self._arm_idle(timeout, reader)
            return
        if reader is not None and not reader.done():
            self._idle_fired = True
            reader.cancel()

    # -- output -------------------------------------------------------------------

    async def _work_loop(self) -> None:
        try:
            while True:
                if not self._pending:
                    if self._input_over:
                        self._end(_Ending("TIMEOUT", TIMEOUT_REASON))
                        return
                    self._wakeup.clear()
                    await self._wakeup.wait()
                    continue
                item = self._pending.popleft()
                self._inputs_seen += 1
                every = self._faults.rate_limit_every
                if every and self._inputs_seen % every == 0:
                    await self._send(_error_frame("RATE_LIMITED", "too many requests, slow down"))
                    continue
                if self._app.streaming:
                    await self._stream(item)
                    self._end(_Ending("TIMEOUT", TIMEOUT_REASON))
                    return
                await self._unary(item)
        except _SessionOver:
            return
        except (ConnectionError, RuntimeError) as exc:
            if self._ws.closed or isinstance(exc, ConnectionError):
                self._end(_Ending(None))
                return
            self._end(_Ending("INTERNAL_ERROR", str(exc)))
        except Exception as exc:
            log.warning("realtime handler for %s failed: %r", self._app.app_id, exc)
            self._end(_Ending("INTERNAL_ERROR", str(exc) or type(exc).__name__))

    async def _unary(self, item: Any) -> None:
        started = time.perf_counter()
        if self._app.is_async:
            output = await cast(Awaitable[Any], self._app.handler(item))
        else:
            output = await asyncio.to_thread(self._app.handler, item)
        await self._emit(output, time.perf_counter() - started)

    async def _stream(self, item: Any) -> None:
        started = time.perf_counter()
        async for output in cast(AsyncIterator[Any], self._app.handler(item)):
            await self._emit(output, time.perf_counter() - started)
            started = time.perf_counter()

    async def _emit(self, output: Any, elapsed_s: float) -> None:
        if not isinstance(output, dict):
            raise TypeError(f"Expected a dict as output, got {type(output).__name__}")
        frame = ormsgpack.packb(output)
        if self._faults.delay_ms:
            await asyncio.sleep(self._faults.delay_ms / 1000)
        await self._send(frame)
        if self._app.emit_timings:
            timings = {"type": "x-fal-message", "action": "timings", "timing": elapsed_s}
            await self._send(orjson.dumps(timings).decode())

    async def _send(self, frame: bytes | str) -> None:
        if self._ws.closed:
            raise _SessionOver
        if isinstance(frame, bytes):
            await self._ws.send_bytes(frame)
        else:
            await self._ws.send_str(frame)
        self._frames_sent += 1
        limit = self._faults.drop_after
        if limit is not None and self._frames_sent >= limit:
            await drop(self._request, self._ws, self._faults)
            self._end(_Ending(None))
            raise _SessionOver
