"""Realtime endpoints on the gateway: the handshake, and unary sessions as fal's runner runs them.

- The handshake checks credentials (a refusal gets fal's Unauthorized frame and 1008) and
  ``max_buffering`` (1..60, else HTTP 400), then runs the session of the app's mode:
  unary here, the streaming modes in :mod:`.streaming_session`.
- Unary: inputs are binary msgpack maps; they wait in a buffer of at most ``buffering``
  entries that drops the oldest silently (``max_buffering`` in the query overrides).
  One worker runs the handler on each input in turn and sends each result as a binary
  msgpack frame (optionally followed by an ``x-fal-message`` timings frame).
- After ``session_timeout`` seconds without input the session drains what is pending,
  then sends ``x-fal-error`` TIMEOUT and closes with 1000.
- A handler that raises, or a frame that is not a msgpack map (text included), ends the
  session with ``x-fal-error`` INTERNAL_ERROR and close 1000.

Every frame is built and parsed by :mod:`fal_realtime._protocol.runner`.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import socket
import time
from collections.abc import Awaitable, Iterator
from typing import Any, cast

from aiohttp import WSMsgType, web

from .._cycles import serving_socket
from .._protocol.apps import validate_max_buffering
from .._protocol.runner import UNAUTHORIZED_FRAME, decode_input
from .common import CLOSE_HANDSHAKE_S, json_error
from .faults import Faults, drop
from .modes import RealtimeMode
from .realtime_wire import TIMEOUT, Ending, SessionOver, SessionWire
from .registry import RealtimeApp, Route
from .settings import Settings
from .streaming_session import StreamingSession

__all__ = ["handle_realtime", "refuse_unauthorized"]


def _parse_buffering(request: web.Request, default: int | None) -> int | None:
    raw = request.query.get("max_buffering")
    if raw is None:
        return default
    try:
        return validate_max_buffering(int(raw))
    except (TypeError, ValueError):
        raise json_error(400, f"max_buffering must be an integer in 1..60, got {raw!r}") from None


async def refuse_unauthorized(
    request: web.Request, ws: web.WebSocketResponse
) -> web.WebSocketResponse:
    """Accept the socket, send fal's Unauthorized frame and close 1008, as fal's edge does.

    The frame leaves with the 101 response, in one TCP segment, so a client that reads
    what came with the handshake before it counts the socket open (ours does) sees the
    refusal every time; written apart, a client on another process could read the 101
    alone and count the socket open first.
    """
    # What fal's edge sends and its JavaScript client looks for.
    with _corked(request.transport):
        await ws.prepare(request)
        await ws.send_str(UNAUTHORIZED_FRAME)
    await ws.close(code=1008, message=b"Unauthorized")
    return ws


@contextlib.contextmanager
def _corked(transport: asyncio.BaseTransport | None) -> Iterator[None]:
    """Hold what the block writes to ``transport`` and send it as one segment at its end.

    Linux's ``TCP_CORK`` (the kernel's way to send a response's headers with its body).
    Where the option or the socket is not there (another OS, a transport without a
    socket), the block's writes go out as they are made.
    """
    cork = getattr(socket, "TCP_CORK", None)
    sock = transport.get_extra_info("socket") if transport is not None else None
    if cork is None or sock is None:
        yield
        return
    try:
        sock.setsockopt(socket.IPPROTO_TCP, cork, 1)
    except OSError:  # not a TCP socket (a Unix socket, say)
        yield
        return
    try:
        yield
    finally:
        with contextlib.suppress(OSError):  # the peer went away: nothing left to send
            sock.setsockopt(socket.IPPROTO_TCP, cork, 0)


async def handle_realtime(
    request: web.Request,
    settings: Settings,
    route: Route,
    app: RealtimeApp,
    faults: Faults,
) -> web.StreamResponse:
    """Accept a realtime WebSocket and run its session to the end."""
    buffering = _parse_buffering(request, app.buffering)
    verdict = settings.authenticator.check(
        header=request.headers.get("Authorization"),
        token=request.query.get("fal_jwt_token"),
        alias=route.app_id.alias,
    )
    ws = web.WebSocketResponse(
        max_msg_size=settings.max_frame_bytes,
        heartbeat=settings.heartbeat_s,
        compress=False,
        timeout=CLOSE_HANDSHAKE_S,
        autoping=not faults.ignore_pings,
    )
    if faults.refuse_auth or verdict.subject is None:
        return await refuse_unauthorized(request, ws)
    async with serving_socket(ws):
        with settings.connection_slot(verdict.subject):
            await ws.prepare(request)
            wire = SessionWire(request, ws, faults, emit_timings=app.emit_timings)
            if faults.drop_after == 0:
                await drop(request, ws, faults)
            elif app.shape.mode is RealtimeMode.UNARY:
                await _UnarySession(wire, app, buffering).run()
            else:
                await StreamingSession(wire, app).run()
    return ws


class _UnarySession:
    """Own a unary session's reader and worker; end it exactly once."""

    def __init__(self, wire: SessionWire, app: RealtimeApp, buffering: int | None) -> None:
        self._wire = wire
        self._ws = wire.ws
        self._app = app
        self._pending: collections.deque[Any] = collections.deque(maxlen=buffering)
        self._wakeup = asyncio.Event()
        self._input_over = False
        self._inputs_seen = 0
        self._loop = asyncio.get_running_loop()
        self._last_input = 0.0
        self._idle_fired = False
        self._idle_handle: asyncio.TimerHandle | None = None

    async def run(self) -> None:
        """Run reader and worker until one of them ends the session, then finish it."""
        reader = asyncio.create_task(self._read_loop(), name="gateway-realtime-reader")
        worker = asyncio.create_task(self._work_loop(), name="gateway-realtime-worker")
        try:
            ending = await self._wire.ending
        finally:
            if self._idle_handle is not None:
                self._idle_handle.cancel()
            for task in (reader, worker):
                task.cancel()
            await asyncio.gather(reader, worker, return_exceptions=True)
        await self._wire.finish(ending)

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
            if msg.type in (WSMsgType.BINARY, WSMsgType.TEXT):
                try:
                    value = self._app.shape.build_input(decode_input(msg.data))
                except Exception as exc:  # not msgpack, not a map, or refused by the model
                    self._wire.end(Ending("INTERNAL_ERROR", str(exc)))
                    return
                self._pending.append(value)  # a full buffer drops the oldest
                self._wakeup.set()
            elif msg.type in (WSMsgType.PING, WSMsgType.PONG):
                continue  # only seen with autoping off (the ignore_pings fault)
            else:  # CLOSE, CLOSING, CLOSED, ERROR: the client is gone
                self._wire.end(Ending(None))
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
                        self._wire.end(TIMEOUT)
                        return
                    self._wakeup.clear()
                    await self._wakeup.wait()
                    continue
                item = self._pending.popleft()
                self._inputs_seen += 1
                every = self._wire.faults.rate_limit_every
                if every and self._inputs_seen % every == 0:
                    await self._wire.rate_limited()
                    continue
                started = time.perf_counter()
                await self._wire.simulate_inference()
                if self._app.shape.runs_in_thread:
                    output = await asyncio.to_thread(self._app.handler, item)
                else:
                    output = await cast(Awaitable[Any], self._app.handler(item))
                await self._wire.emit(output, time.perf_counter() - started)
        except SessionOver:
            return
        except Exception as exc:
            self._wire.fail(exc, self._app.app_id)
