"""HTTP over WebSockets on the gateway: each JSON payload becomes an HTTP POST upstream.

Per request the client gets ``start`` (the upstream's status and headers), the
body as it arrives (never buffered whole: JSON bodies as text frames, anything
else as binary), and ``end`` with ``time_to_first_byte_seconds``. Requests on one
socket are answered one after another in the order sent. Failures that are the
request's own (payload not JSON, unknown app, upstream down) are answered the
same way with a 4xx/5xx start and a JSON body, and the socket stays usable.

In-process upstreams (an aiohttp ``web.Application`` or handler) are served on a
private Unix socket owned by the gateway, so they stream exactly like a URL one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
from aiohttp import WSMsgType, web

from .._cycles import release_transport, serving_socket
from .._protocol.http_ws import parse_control
from .common import CLOSE_HANDSHAKE_S, json_error
from .faults import Faults, FrameSender, drop
from .registry import HttpApp, Registry, Route
from .settings import Settings

__all__ = ["UPSTREAMS_KEY", "UpstreamPool", "handle_http_post", "handle_http_ws"]

log = logging.getLogger("fal_realtime.server.http")

# Headers that describe the upstream hop, not the response.
_HOP_HEADERS = frozenset(
    {
        "connection",
        "content-length",
        "content-encoding",
        "keep-alive",
        "transfer-encoding",
        "upgrade",
        "date",
        "server",
    }
)
_TEXT_TYPES = ("application/json",)
_QUEUE_DEPTH = 64


class _LocalUpstream:
    """An in-process aiohttp app served on a private Unix socket."""

    def __init__(self, app: web.Application) -> None:
        self._app = app
        self._dir = tempfile.mkdtemp(prefix="fal-rt-")
        self.path = os.path.join(self._dir, "upstream.sock")
        self._runner = web.AppRunner(
            app, handle_signals=False, access_log=None, shutdown_timeout=0.5
        )
        self.session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        await self._runner.setup()
        await web.UnixSite(self._runner, self.path).start()
        self.session = aiohttp.ClientSession(
            connector=aiohttp.UnixConnector(path=self.path, limit=0),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=10),
        )

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()
        await self._runner.cleanup()
        shutil.rmtree(self._dir, ignore_errors=True)


class UpstreamPool:
    """Own the HTTP client sessions the bridge forwards with; close them at shutdown."""

    def __init__(self, registry: Registry) -> None:
        self._registry = registry
        self._remote: aiohttp.ClientSession | None = None
        self._local: dict[int, _LocalUpstream] = {}
        self._lock = asyncio.Lock()

    async def _session_for(self, app: HttpApp) -> tuple[aiohttp.ClientSession, str]:
        upstream = app.upstream
        if isinstance(upstream, str):
            if self._remote is None:
                self._remote = aiohttp.ClientSession(
                    connector=aiohttp.TCPConnector(limit=0),
                    timeout=aiohttp.ClientTimeout(total=None, sock_connect=10),
                )
            return self._remote, upstream.rstrip("/")
        async with self._lock:
            local = self._local.get(id(upstream))
            if local is None:
                if isinstance(upstream, web.Application):
                    served = upstream
                else:
                    served = web.Application(client_max_size=app.max_body_bytes)
                    served.router.add_route("*", "/{tail:.*}", upstream)
                local = _LocalUpstream(served)
                await local.start()
                self._local[id(upstream)] = local
        assert local.session is not None
        return local.session, "http://localhost"

    @contextlib.asynccontextmanager
    async def post(
        self, app: HttpApp, sub_path: str, body: bytes, request_id: str
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """POST ``body`` to the app's upstream at ``sub_path``; yield the streaming response."""
        session, base = await self._session_for(app)
        headers = {"Content-Type": "application/json", "X-Fal-Request-Id": request_id}
        transport = None
        try:
            async with session.post(f"{base}{sub_path or '/'}", data=body, headers=headers) as resp:
                connection = resp.connection
                transport = connection.transport if connection is not None else None
                yield resp
        finally:
            # Closed rather than pooled when the response was abandoned: release it.
            release_transport(transport)

    async def close(self) -> None:
        """Close every upstream session and in-process server."""
        if self._remote is not None:
            await self._remote.close()
        locals_, self._local = list(self._local.values()), {}
        for local in locals_:
            await local.close()


UPSTREAMS_KEY: web.AppKey[UpstreamPool] = web.AppKey("upstreams", UpstreamPool)


class _Dropped(Exception):
    """Raised when fault injection has dropped the socket."""


class _Bridge:
    """Serve one HTTP-over-WebSocket connection: read payloads, answer them in order."""

    def __init__(
        self,
        request: web.Request,
        ws: web.WebSocketResponse,
        route: Route,
        pool: UpstreamPool,
        faults: Faults,
    ) -> None:
        self._ws = ws
        self._route = route
        self._pool = pool
        self._faults = faults
        self._sender = FrameSender(request, ws, faults)
        self._requests_seen = 0

    async def run(self) -> None:
        queue: asyncio.Queue[bytes | str | None] = asyncio.Queue(_QUEUE_DEPTH)
        worker = asyncio.create_task(self._work(queue), name="gateway-http-ws-worker")
        try:
            while True:
                msg = await self._ws.receive()
                if msg.type in (WSMsgType.TEXT, WSMsgType.BINARY):
                    await queue.put(msg.data)
                    if worker.done():
                        break
                else:
                    break
        finally:
            worker.cancel()
            with contextlib.suppress(asyncio.CancelledError, _Dropped):
                await worker

    async def _work(self, queue: asyncio.Queue[bytes | str | None]) -> None:
        while True:
            payload = await queue.get()
            if payload is None:
                return
            try:
                await self._answer(payload)
            except (_Dropped, ConnectionError):
                return
            except RuntimeError:
                if self._ws.closed:
                    return
                raise

    async def _send(self, frame: bytes | str) -> None:
        if not await self._sender.send(frame):
            raise _Dropped

    async def _control(self, kind: str, request_id: str, status: int, **extra: Any) -> None:
        frame = {"type": kind, "request_id": request_id, "status": status, **extra}
        await self._send(orjson.dumps(frame).decode())

    async def _answer_error(self, request_id: str, status: int, detail: str) -> None:
        await self._control(
            "start", request_id, status, headers={"content-type": "application/json"}
        )
        await self._send(orjson.dumps({"detail": detail}).decode())
        await self._control("end", request_id, status, time_to_first_byte_seconds=0.0)

    async def _answer(self, payload: bytes | str) -> None:
        request_id = uuid.uuid4().hex
        started = time.perf_counter()
        self._requests_seen += 1
        if self._faults.delay_ms:
            await asyncio.sleep(self._faults.delay_ms / 1000)
        every = self._faults.rate_limit_every
        if every and self._requests_seen % every == 0:
            await self._answer_error(request_id, 429, "rate limited: slow down and retry")
            return
        app = self._route.http
        if app is None:
            await self._answer_error(
                request_id, 404, f"no app named {self._route.app_id.key!r} on this gateway"
            )
            return
        body = payload.encode() if isinstance(payload, str) else payload
        if len(body) > app.max_body_bytes:
            await self._answer_error(
                request_id, 413, f"payload of {len(body)} bytes exceeds {app.max_body_bytes}"
            )
            return
        try:
            orjson.loads(body)
        except ValueError as exc:
            await self._answer_error(request_id, 400, f"payload is not valid JSON: {exc}")
            return
        try:
            async with self._pool.post(app, self._route.sub_path, body, request_id) as resp:
                await self._relay(request_id, resp, started)
        except (aiohttp.ClientConnectionError, OSError) as exc:
            if self._ws.closed:
                raise _Dropped from None
            log.warning(
                "upstream of %s unreachable: %r",
                self._route.app_id,
                exc,
                extra={"fal_app_id": str(self._route.app_id)},
            )
            await self._answer_error(
                request_id, 502, f"upstream of {self._route.app_id.key} is not reachable"
            )

    async def _relay(self, request_id: str, resp: aiohttp.ClientResponse, started: float) -> None:
        headers = {k.lower(): v for k, v in resp.headers.items() if k.lower() not in _HOP_HEADERS}
        await self._control("start", request_id, resp.status, headers=headers)
        is_json = headers.get("content-type", "").startswith(_TEXT_TYPES)
        chunker = _TextChunker() if is_json else None
        ttfb: float | None = None
        try:
            async for chunk in resp.content.iter_any():
                if ttfb is None:
                    ttfb = time.perf_counter() - started
                frame = chunker.feed(chunk) if chunker is not None else chunk
                if frame:
                    await self._send(frame)
            if chunker is not None and (rest := chunker.flush()):
                await self._send(rest)
        except aiohttp.ClientPayloadError as exc:
            log.warning(
                "upstream of %s broke mid-body: %r",
                self._route.app_id,
                exc,
                extra={"fal_app_id": str(self._route.app_id)},
            )
        if ttfb is None:
            ttfb = time.perf_counter() - started
        await self._control(
            "end", request_id, resp.status, time_to_first_byte_seconds=round(ttfb, 6)
        )


class _TextChunker:
    """Turn a JSON body's chunks into text frames, keeping UTF-8 sequences whole.

    A chunk that is not valid UTF-8, or whose text could be taken for a control
    frame, goes out as bytes instead: the body is never altered or lost.
    """

    __slots__ = ("_carry",)

    def __init__(self) -> None:
        self._carry = b""

    def feed(self, chunk: bytes) -> bytes | str:
        data = self._carry + chunk if self._carry else chunk
        cut = _complete_utf8_prefix(data)
        self._carry = data[cut:]
        return self._frame(data[:cut])

    def flush(self) -> bytes | str:
        data, self._carry = self._carry, b""
        return self._frame(data)

    @staticmethod
    def _frame(data: bytes) -> bytes | str:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            return data
        return data if parse_control(text) is not None else text


def _complete_utf8_prefix(data: bytes) -> int:
    """Return the length of ``data`` without a trailing incomplete UTF-8 sequence."""
    end = len(data)
    for back in range(1, min(4, end) + 1):
        byte = data[end - back]
        if byte < 0x80:
            return end
        if byte >= 0xC0:  # a lead byte: is its sequence complete?
            need = 2 if byte < 0xE0 else 3 if byte < 0xF0 else 4
            return end if back >= need else end - back
    return end


async def handle_http_post(
    request: web.Request, settings: Settings, route: Route, pool: UpstreamPool
) -> web.StreamResponse:
    """Answer a plain HTTP POST to an app as ``fal.run`` does: forward it, stream the answer.

    Credentials as for a WebSocket (``Authorization: Key``, or ``fal_jwt_token`` in the
    query as fal's client sends in client mode); the body is bounded by the app's limit.
    """
    app = route.http
    if app is None:
        raise json_error(404, f"no HTTP app at {request.path}")
    verdict = settings.authenticator.check(
        header=request.headers.get("Authorization"),
        token=request.query.get("fal_jwt_token"),
        alias=route.app_id.alias,
    )
    if verdict.subject is None:
        raise json_error(401, f"unauthorized: {verdict.reason}")
    if (request.content_length or 0) > app.max_body_bytes:
        raise json_error(413, f"body exceeds {app.max_body_bytes} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_any():
        size += len(chunk)
        if size > app.max_body_bytes:
            raise json_error(413, f"body exceeds {app.max_body_bytes} bytes")
        chunks.append(chunk)
    body = b"".join(chunks)
    request_id = uuid.uuid4().hex
    try:
        async with pool.post(app, route.sub_path, body, request_id) as resp:
            headers = {
                k.lower(): v for k, v in resp.headers.items() if k.lower() not in _HOP_HEADERS
            }
            headers["x-fal-request-id"] = request_id
            answer = web.StreamResponse(status=resp.status, headers=headers)
            await answer.prepare(request)
            try:
                async for chunk in resp.content.iter_any():
                    await answer.write(chunk)
            except aiohttp.ClientPayloadError as exc:
                log.warning(
                    "upstream of %s broke mid-body: %r",
                    route.app_id,
                    exc,
                    extra={"fal_app_id": str(route.app_id)},
                )
            await answer.write_eof()
            return answer
    except (aiohttp.ClientConnectionError, OSError) as exc:
        log.warning(
            "upstream of %s unreachable: %r",
            route.app_id,
            exc,
            extra={"fal_app_id": str(route.app_id)},
        )
        raise json_error(502, f"upstream of {route.app_id.key} is not reachable") from None


async def handle_http_ws(
    request: web.Request,
    settings: Settings,
    route: Route,
    pool: UpstreamPool,
    faults: Faults,
) -> web.StreamResponse:
    """Check credentials at the handshake, then serve the connection."""
    verdict = settings.authenticator.check(
        header=request.headers.get("Authorization"),
        token=request.query.get("fal_jwt_token"),
        alias=route.app_id.alias,
    )
    if faults.refuse_auth or verdict.subject is None:
        raise json_error(401, f"unauthorized: {verdict.reason or 'refused by fault injection'}")
    ws = web.WebSocketResponse(
        max_msg_size=settings.max_frame_bytes,
        heartbeat=settings.heartbeat_s,
        compress=False,
        timeout=CLOSE_HANDSHAKE_S,
    )
    async with serving_socket(ws):
        with settings.connection_slot(verdict.subject):
            await ws.prepare(request)
            if faults.drop_after == 0:
                await drop(request, ws, faults)
            else:
                await _Bridge(request, ws, route, pool, faults).run()
    return ws
