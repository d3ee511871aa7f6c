"""A FastAPI service in front of fal-ai/flux-lora-realtime, keeping FAL_KEY on the server.

What it shows:

- one shared realtime connection, opened in the app's lifespan and closed at shutdown;
- ``POST /generate {"prompt": ...}``: send a prompt on it and answer the result (504 when
  none comes within ``GENERATE_TIMEOUT_S``, 502 when the connection fails);
- a background task that streams the shared connection's results into a store
  (``GET /results``, the newest last);
- ``/ws``: a WebSocket relay for browsers. Each user (``/ws?user=NAME``, else one per
  socket) gets one realtime connection, keyed by ``connection_key`` and shared by that
  user's tabs, closed when the last of them leaves. Inputs are throttled (latest wins),
  so a browser can send on every keystroke;
- ``GET /stats``: the counters of every connection (``conn.stats``);
- ``GET /metrics``: every connection's OpenTelemetry metrics in Prometheus text, when
  ``opentelemetry-sdk``, ``opentelemetry-exporter-prometheus`` and ``prometheus-client``
  are installed (``pip install -e '.[examples]'``); else 501. What to graph:
  docs/observability.md.

Run it against the local gateway (offline, no fal account):

    pip install -e '.[examples]'
    fal-realtime serve --demo        # in another terminal; it prints, among others:
    export FAL_KEY=dev-...:...       #   paste these two lines here
    export FAL_RUN_HOST=ws://127.0.0.1:8080
    uvicorn examples.fastapi_app:app --port 8000

    curl -s localhost:8000/generate -H 'content-type: application/json' \\
        -d '{"prompt": "a tiger eye"}' | head -c 200

Against fal itself, export only your FAL_KEY. Put your own authentication in front of
these routes: whoever reaches them spends your fal credits.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import secrets
from collections import deque
from collections.abc import AsyncIterator
from typing import Any, Literal

from fastapi import FastAPI, HTTPException, Request, Response, WebSocket
from pydantic import BaseModel, Field
from starlette.websockets import WebSocketDisconnect

import fal_realtime
from fal_realtime import CALLBACK_ERROR, RealtimeConnection, RealtimeError

APP = "fal-ai/flux-lora-realtime"
#: Seconds between sends on each connection (fal's JavaScript client uses 64 ms).
THROTTLE_S = 0.064
#: How long POST /generate waits for its result.
GENERATE_TIMEOUT_S = float(os.environ.get("GENERATE_TIMEOUT_S", "30"))
#: How many results GET /results keeps.
RESULTS_KEPT = 20
#: What a browser may set in an input; everything else is decided here.
BROWSER_FIELDS = ("prompt", "seed", "image_size", "num_inference_steps")

# uvicorn's own logger, so these lines appear next to uvicorn's.
log = logging.getLogger("uvicorn.error")


def _prometheus() -> Any:
    """Export OpenTelemetry metrics to Prometheus; return prometheus_client, or None.

    The global meter provider is set once, at import, before any connection opens:
    fal_realtime's connections use it (``connect()`` needs no ``telemetry=``).
    """
    try:
        import prometheus_client
        from opentelemetry import metrics
        from opentelemetry.exporter.prometheus import PrometheusMetricReader
        from opentelemetry.sdk.metrics import MeterProvider
    except ImportError:
        return None
    metrics.set_meter_provider(MeterProvider(metric_readers=[PrometheusMetricReader()]))
    return prometheus_client


prometheus = _prometheus()


ImageSize = Literal[
    "square_hd", "square", "portrait_4_3", "portrait_16_9", "landscape_4_3", "landscape_16_9"
]


class GenerateRequest(BaseModel):
    """The body of ``POST /generate``."""

    prompt: str = Field(min_length=1, max_length=2000)
    image_size: ImageSize = "landscape_16_9"
    seed: int | None = None
    num_inference_steps: int = Field(default=3, ge=1, le=8)


def _stats(conn: RealtimeConnection) -> dict[str, Any]:
    return {"state": conn.state.value, **dataclasses.asdict(conn.stats)}


class SharedConnection:
    """One realtime connection for the whole service, and the task that collects its results.

    The connection keeps every input (``coalesce=False``): each ``/generate`` call waits
    for the answer to its own input, matched by seed (fal's realtime results carry the
    seed, not a request id), so none may be replaced by a newer one.
    """

    def __init__(self) -> None:
        self.results: deque[dict[str, Any]] = deque(maxlen=RESULTS_KEPT)
        self.received = 0
        self._conn: RealtimeConnection | None = None
        self._collector: asyncio.Task[None] | None = None
        self._waiters: dict[Any, deque[asyncio.Future[dict[str, Any]]]] = {}
        self._lock = asyncio.Lock()

    async def open(self) -> RealtimeConnection:
        """Return the connection, opening a new one if there is none or it failed."""
        async with self._lock:
            if self._conn is None or self._conn.closed:
                await self._stop_collector()
                self._conn = await fal_realtime.connect(
                    APP,
                    on_error=self._on_error,
                    on_close=lambda code: log.info("fal: shared connection closed (%s)", code),
                    throttle_interval=THROTTLE_S,
                    coalesce=False,
                )
                # Subscribe now, before anything is sent, so that no result is missed.
                self._collector = asyncio.create_task(
                    self._collect(self._conn.results()), name="results-collector"
                )
            return self._conn

    async def close(self) -> None:
        """Close the connection and stop the collector."""
        if self._conn is not None:
            await self._conn.close()
            log.info("fal: shared connection %s, stats %s", self._conn.state, self._conn.stats)
        await self._stop_collector()

    async def _stop_collector(self) -> None:
        if self._collector is not None:
            self._collector.cancel()
            await asyncio.gather(self._collector, return_exceptions=True)
            self._collector = None

    async def _collect(self, results: AsyncIterator[Any]) -> None:
        async for result in results:  # ends when the connection closes
            if not isinstance(result, dict):
                continue
            self.received += 1
            self.results.append(result)
            waiting = self._waiters.get(result.get("seed"))
            if waiting:
                future = waiting.popleft()
                if not future.done():
                    future.set_result(result)

    def _on_error(self, error: RealtimeError) -> None:
        log.warning("fal: %s", error)
        if error.code == CALLBACK_ERROR:
            return
        # A server error (e.g. INTERNAL_ERROR) ends the session and the inputs it had not
        # answered with it: fail the requests waiting now rather than let them time out.
        for waiting in self._waiters.values():
            for future in waiting:
                if not future.done():
                    future.set_exception(error)

    async def generate(self, payload: dict[str, Any], *, timeout_s: float) -> dict[str, Any]:
        """Send ``payload`` and return its result; raise TimeoutError after ``timeout_s``."""
        conn = await self.open()
        payload.setdefault("seed", secrets.randbelow(2**31))
        seed = payload["seed"]
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        waiting = self._waiters.setdefault(seed, deque())
        waiting.append(future)
        try:
            async with asyncio.timeout(timeout_s):
                await conn.send(payload)
                return await future
        finally:
            if future.done() and not future.cancelled():
                future.exception()  # an error _on_error set that nobody awaited (send raised)
            with contextlib.suppress(ValueError):
                waiting.remove(future)
            if not waiting and self._waiters.get(seed) is waiting:
                del self._waiters[seed]

    def stats(self) -> dict[str, Any] | None:
        return None if self._conn is None else _stats(self._conn)


@dataclasses.dataclass(eq=False)
class _User:
    sockets: set[WebSocket] = dataclasses.field(default_factory=set)
    conn: RealtimeConnection | None = None

    async def broadcast(self, message: dict[str, Any]) -> None:
        text = json.dumps(message)
        for websocket in list(self.sockets):
            # A tab that is going away misses the message; the others still get it.
            with contextlib.suppress(WebSocketDisconnect, RuntimeError, OSError):
                await websocket.send_text(text)

    async def on_result(self, result: Any) -> None:
        stats = _stats(self.conn) if self.conn is not None else None
        await self.broadcast({"type": "result", "result": result, "stats": stats})

    async def on_error(self, error: RealtimeError) -> None:
        await self.broadcast({"type": "error", "code": error.code, "message": error.message})


class UserConnections:
    """One realtime connection per user, shared by the user's sockets (tabs).

    The connection is opened with ``connection_key=user:NAME``, so a second tab of the
    same user gets the same connection, and it is closed when the user's last socket
    leaves. A user's inputs are throttled: latest wins.
    """

    def __init__(self) -> None:
        self._users: dict[str, _User] = {}

    @contextlib.asynccontextmanager
    async def join(self, user: str, websocket: WebSocket) -> AsyncIterator[RealtimeConnection]:
        """Use ``user``'s connection while ``websocket`` is open."""
        entry = self._users.setdefault(user, _User())
        entry.sockets.add(websocket)
        conn: RealtimeConnection | None = None
        try:
            conn = await fal_realtime.connect(
                APP,
                connection_key=f"user:{user}",
                on_result=entry.on_result,
                on_error=entry.on_error,
                throttle_interval=THROTTLE_S,
            )
            entry.conn = conn
            yield conn
        finally:
            entry.sockets.discard(websocket)
            if not entry.sockets:
                if self._users.get(user) is entry:
                    del self._users[user]
                if conn is not None:
                    await conn.close()
                    log.info("fal: closed %s's connection (user left)", user)

    async def close(self) -> None:
        """Close every user's connection (at shutdown)."""
        users, self._users = list(self._users.values()), {}
        for entry in users:
            if entry.conn is not None:
                await entry.conn.close()

    def stats(self) -> dict[str, Any]:
        return {user: _stats(entry.conn) for user, entry in self._users.items() if entry.conn}


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
    """Open the shared connection at start-up; close every connection at shutdown."""
    shared, users = SharedConnection(), UserConnections()
    await shared.open()  # fails start-up loudly: no FAL_KEY, wrong host, refused key
    try:
        yield {"shared": shared, "users": users}
    finally:
        await users.close()
        await shared.close()


app = FastAPI(title="fal realtime service", lifespan=lifespan)


@app.post("/generate")
async def generate(body: GenerateRequest, request: Request) -> dict[str, Any]:
    """Send a prompt on the shared connection and answer its result."""
    shared: SharedConnection = request.state.shared
    payload = {**body.model_dump(exclude_none=True), "sync_mode": True}
    try:
        return await shared.generate(payload, timeout_s=GENERATE_TIMEOUT_S)
    except TimeoutError:
        raise HTTPException(504, f"no result within {GENERATE_TIMEOUT_S:g} s") from None
    except RealtimeError as exc:
        raise HTTPException(502, f"fal: {exc}") from None


@app.get("/results")
async def results(request: Request) -> dict[str, Any]:
    """Answer the results the collector stored (the newest last) and how many arrived."""
    shared: SharedConnection = request.state.shared
    return {"received": shared.received, "results": list(shared.results)}


@app.get("/stats")
async def stats(request: Request) -> dict[str, Any]:
    """Answer the counters of the shared connection and of each user's connection."""
    return {"shared": request.state.shared.stats(), "users": request.state.users.stats()}


@app.get("/metrics")
async def metrics() -> Response:
    """Answer the metrics in Prometheus text (501 without the exporter installed)."""
    if prometheus is None:
        raise HTTPException(
            501,
            "install opentelemetry-sdk, opentelemetry-exporter-prometheus and prometheus-client",
        )
    return Response(prometheus.generate_latest(), media_type=prometheus.CONTENT_TYPE_LATEST)


@app.websocket("/ws")
async def relay(websocket: WebSocket, user: str | None = None) -> None:
    """Relay a browser's inputs to the fal app and its results back, key kept here.

    The browser sends JSON objects (``{"prompt": ...}``); it receives
    ``{"type": "result", "result": ..., "stats": ...}`` and
    ``{"type": "error", "code": ..., "message": ...}``.
    """
    users: UserConnections = websocket.state.users
    await websocket.accept()
    async with users.join(user or secrets.token_hex(8), websocket) as conn:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            try:
                payload = _browser_input(message.get("text"))
                await conn.send(payload)
            except (ValueError, RealtimeError) as exc:
                code = exc.code if isinstance(exc, RealtimeError) else "INVALID_INPUT"
                await websocket.send_json({"type": "error", "code": code, "message": str(exc)})


def _browser_input(text: str | None) -> dict[str, Any]:
    """Return the input to send for a browser's message; raise ValueError when it is bad."""
    try:
        value = json.loads(text) if text is not None else None
    except json.JSONDecodeError:
        value = None
    if not isinstance(value, dict) or not isinstance(value.get("prompt"), str):
        raise ValueError('send a JSON object with a "prompt" string')
    payload = {name: value[name] for name in BROWSER_FIELDS if name in value}
    return {**payload, "sync_mode": True}
