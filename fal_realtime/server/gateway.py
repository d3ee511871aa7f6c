"""The local gateway: one aiohttp application speaking both of fal's WebSocket APIs.

gateway = Gateway(keys=["my-key"])

@gateway.realtime("me/my-app", buffering=2, session_timeout=10)
async def handler(input: dict) -> dict:
    return {"echo": input}

@gateway.realtime("me/collect")
async def collect(inputs: AsyncIterator[dict]) -> dict:
    return {"count": len([item async for item in inputs])}

gateway.http_app("me/api", upstream="http://127.0.0.1:8000")

async with gateway.serve(port=0) as running:
    print(running.url)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from aiohttp import web

from .._protocol.apps import AppId
from .auth import Authenticator
from .common import DEFAULT_MAX_FRAME_BYTES, json_error
from .faults import Faults, parse_faults
from .http_bridge import UpstreamPool, handle_http_post, handle_http_ws
from .realtime_session import handle_realtime
from .registry import HttpApp, HttpHandler, RealtimeApp, RealtimeHandler, Registry
from .replay import ReplayApp, handle_replay, load_replay
from .settings import ConnectionSlots, Settings
from .token_endpoint import token_handler
from .tokens import TokenIssuer

__all__ = ["DEFAULT_MAX_FRAME_BYTES", "Gateway", "RunningGateway"]

log = logging.getLogger("fal_realtime.server")

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(slots=True)
class RunningGateway:
    """A gateway listening on a socket: where it is and how to stop it."""

    host: str
    port: int
    tls: bool
    runner: web.AppRunner = field(repr=False)
    listener: asyncio.Server = field(repr=False)

    @property
    def url(self) -> str:
        """Return ``http(s)://host:port``."""
        return f"{'https' if self.tls else 'http'}://{self.host}:{self.port}"

    @property
    def ws_url(self) -> str:
        """Return ``ws(s)://host:port``: the ``base_url`` that points a client here."""
        return f"{'wss' if self.tls else 'ws'}://{self.host}:{self.port}"

    async def stop(self) -> None:
        """Stop listening and close every connection."""
        self.listener.close()
        await self.runner.cleanup()
        await self.listener.wait_closed()


class Gateway:
    """Host realtime handlers and HTTP apps behind fal's two WebSocket protocols."""

    def __init__(
        self,
        *,
        keys: Iterable[str] = (),
        auth: bool = True,
        token_secret: bytes | None = None,
        max_token_lifetime_s: float = 3600.0,
        max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
        heartbeat_s: float | None = 30.0,
        max_connections_per_key: int | None = 1000,
        handshake_timeout_s: float | None = 10.0,
    ) -> None:
        accepted = [k for k in keys if k]
        self.generated_key: str | None = None
        if auth and not accepted:
            self.generated_key = f"dev-{secrets.token_hex(8)}:{secrets.token_hex(16)}"
            accepted = [self.generated_key]
        self.registry = Registry()
        self.tokens = TokenIssuer(
            secret=token_secret or secrets.token_bytes(32),
            max_lifetime_s=max_token_lifetime_s,
        )
        self.authenticator = Authenticator(accepted, self.tokens, enabled=auth)
        self.max_frame_bytes = max_frame_bytes
        self.heartbeat_s = heartbeat_s
        self._slots = ConnectionSlots(max_connections_per_key)
        #: Live WebSockets per subject (the slots' own map).
        self._live = self._slots.live
        self.handshake_timeout_s = handshake_timeout_s
        # Connections (protocols) accepted but still waiting for their first request: each
        # leaves the set at its first request or when its handshake timer fires.
        self._awaiting_request: set[object] = set()
        #: Connections closed for never completing a request within handshake_timeout_s.
        self.idle_handshakes_dropped = 0
        self._extra_routes: list[web.AbstractRouteDef] = []
        #: Recordings served by :meth:`replay`, by endpoint path.
        self._replays: dict[str, ReplayApp] = {}
        self._on_cleanup: list[Callable[[], Awaitable[None]]] = []

    @property
    def max_connections_per_key(self) -> int | None:
        """The cap on live WebSockets per key or token owner (None: no cap)."""
        return self._slots.cap

    @max_connections_per_key.setter
    def max_connections_per_key(self, cap: int | None) -> None:
        self._slots.cap = cap

    def connection_slot(self, subject: str) -> contextlib.AbstractContextManager[None]:
        """Hold one of ``subject``'s WebSocket slots; raise HTTP 429 when none is free."""
        return self._slots.slot(subject)

    def _settings(self) -> Settings:
        """Return what the WebSocket endpoints need from this gateway, as one record."""
        return Settings(
            authenticator=self.authenticator,
            max_frame_bytes=self.max_frame_bytes,
            heartbeat_s=self.heartbeat_s,
            connection_slot=self._slots.slot,
        )

    def _guard(self, protocol: asyncio.BaseProtocol) -> None:
        """Drop a connection that has not completed a request in time (slow clients)."""
        timeout = self.handshake_timeout_s
        if timeout is None:
            return
        self._awaiting_request.add(protocol)
        asyncio.get_running_loop().call_later(timeout, self._drop_if_idle, protocol)

    def _drop_if_idle(self, protocol: asyncio.BaseProtocol) -> None:
        if protocol not in self._awaiting_request:
            return  # it completed a request in time
        self._awaiting_request.discard(protocol)
        transport = getattr(protocol, "transport", None)
        if transport is None or transport.is_closing():
            return
        self.idle_handshakes_dropped += 1
        transport.abort()

    @property
    def auth_enabled(self) -> bool:
        """Tell whether WebSockets must present a key or a token."""
        return self.authenticator.enabled

    # -- registration ---------------------------------------------------------------

    def realtime(
        self,
        app_id: str,
        *,
        path: str = "/realtime",
        buffering: int | None = None,
        session_timeout: float | None = 60.0,
        emit_timings: bool = False,
    ) -> Callable[[F], F]:
        """Register the decorated function as the realtime handler of ``app_id``.

        Its mode comes from its type hints, as fal's runner infers it (:mod:`.modes`):
        ``(input: dict) -> dict`` unary, ``-> AsyncIterator[dict]`` (or ``Iterator``)
        server streaming, ``(inputs: AsyncIterator[dict]) -> dict`` client streaming,
        ``(inputs: AsyncIterator[dict]) -> AsyncIterator[dict]`` bidirectional.

        Args:
            app_id: ``owner/alias``; the endpoint is ``/{owner}/{alias}{path}``.
            path: the endpoint's path under the app (default ``/realtime``).
            buffering: keep at most this many pending inputs, dropping the oldest
                (None keeps all, as fal's runner does); ``max_buffering`` in the
                query overrides it per connection.
            session_timeout: seconds without input after which the session ends
                with ``x-fal-error`` TIMEOUT and close 1000 (None: never).
            emit_timings: send an ``x-fal-message`` timings frame after each result.
        """

        def decorate(func: F) -> F:
            self.add_realtime(
                app_id,
                func,
                path=path,
                buffering=buffering,
                session_timeout=session_timeout,
                emit_timings=emit_timings,
            )
            return func

        return decorate

    def add_realtime(
        self,
        app_id: str,
        handler: RealtimeHandler,
        *,
        path: str = "/realtime",
        buffering: int | None = None,
        session_timeout: float | None = 60.0,
        emit_timings: bool = False,
    ) -> None:
        """Register ``handler`` as a realtime endpoint (the non-decorator form).

        Raises:
            TypeError: as :meth:`realtime` says.
        """
        if buffering is not None and buffering < 1:
            raise ValueError(f"buffering must be None or >= 1, got {buffering}")
        if session_timeout is not None and session_timeout <= 0:
            raise ValueError(f"session_timeout must be None or > 0, got {session_timeout}")
        self.registry.add_realtime(
            RealtimeApp(
                AppId.parse(app_id),
                handler,
                path=path,
                buffering=buffering,
                session_timeout=session_timeout,
                emit_timings=emit_timings,
            )
        )

    def http_app(
        self,
        app_id: str,
        *,
        upstream: str | web.Application | HttpHandler,
        max_body_bytes: int = 64 * 1024 * 1024,
    ) -> None:
        """Front an HTTP app over HTTP-over-WebSockets.

        ``upstream`` is a base URL (``http://127.0.0.1:8000``), an aiohttp
        ``web.Application``, or one aiohttp handler answering every path. Each
        payload is POSTed to ``upstream + sub-path``.
        """
        if isinstance(upstream, str) and not upstream.startswith(("http://", "https://")):
            raise ValueError(f"upstream URL must start with http:// or https://, got {upstream!r}")
        self.registry.add_http(HttpApp(AppId.parse(app_id), upstream, max_body_bytes))

    def replay(
        self,
        app_id: str,
        recording: str | os.PathLike[str],
        *,
        path: str | None = None,
        speed: float = 1.0,
        strict: bool = False,
    ) -> None:
        """Serve a recording (``connect``/``ws`` with ``record=PATH``) as the app ``app_id``.

        Each input gets the recorded outputs in order, after the recorded delays times
        ``speed`` (0: at once); sessions end as they ended in the recording. Inputs are
        matched by position; ``strict=True`` answers the first input that differs from
        the recorded one with INVALID_INPUT naming the field (:mod:`.replay`).

        Args:
            app_id: the app to serve it as.
            recording: the recording's path.
            path: the endpoint under the app (default: the path it was recorded with).
            speed: the factor on recorded delays.
            strict: compare each input with the recorded one.

        Raises:
            ValueError: a bad app id or speed, or a file that is not a recording.
            OSError: the file cannot be read.
        """
        app = load_replay(app_id, recording, path=path, speed=speed, strict=strict)
        self._replays[app.endpoint] = app

    def set_faults(self, app_id: str, faults: Faults | str | None) -> None:
        """Inject ``faults`` into every new connection to ``app_id`` (None clears)."""
        parsed = parse_faults(faults) if isinstance(faults, str) else faults
        self.registry.set_faults(app_id, parsed)

    def add_routes(
        self,
        routes: Iterable[web.AbstractRouteDef],
        *,
        on_cleanup: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        """Serve extra HTTP routes (e.g. a web page) next to the WebSocket endpoints.

        They take precedence over the app-path catch-all; ``on_cleanup`` runs at shutdown.
        """
        self._extra_routes.extend(routes)
        if on_cleanup is not None:
            self._on_cleanup.append(on_cleanup)

    # -- serving --------------------------------------------------------------------

    def make_app(self) -> web.Application:
        """Build the aiohttp application (routes, upstream sessions, cleanup)."""
        settings = self._settings()
        handle_tokens = token_handler(self.authenticator, self.tokens)

        @web.middleware
        async def mark_served(
            request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
        ) -> web.StreamResponse:
            self._awaiting_request.discard(request.protocol)
            return await handler(request)

        app = web.Application(client_max_size=1024 * 1024, middlewares=[mark_served])
        pool = UpstreamPool(self.registry)

        async def websocket_or_404(request: web.Request) -> web.StreamResponse:
            if (replay := self._replays.get(request.path.rstrip("/"))) is not None:
                return await handle_replay(request, settings, replay)
            route = self.registry.resolve(request.path)
            if route is None:
                raise json_error(404, f"no app at {request.path}")
            faults = self.registry.take_faults(route.app_id)
            if spec := request.query.get("fal_faults"):
                try:
                    faults = faults.merged(parse_faults(spec))
                except ValueError as exc:
                    raise json_error(400, str(exc)) from None
            if faults.reject_status is not None:
                raise json_error(faults.reject_status, "rejected by fault injection")
            if route.realtime is not None:
                return await handle_realtime(request, settings, route, route.realtime, faults)
            if route.http is None and route.looks_realtime:
                raise json_error(404, f"no realtime app at {request.path}")
            return await handle_http_ws(request, settings, route, pool, faults)

        async def http_post_or_404(request: web.Request) -> web.StreamResponse:
            route = self.registry.resolve(request.path)
            if route is None or route.http is None:
                raise json_error(404, f"no HTTP app at {request.path}")
            return await handle_http_post(request, settings, route, pool)

        async def index(request: web.Request) -> web.StreamResponse:
            return web.json_response(
                {
                    "service": "fal-realtime gateway",
                    "realtime": sorted(f"/{key}{path}" for key, path in self.registry.realtime),
                    "http": sorted(f"/{key}" for key in self.registry.http),
                    "replay": sorted(self._replays),
                }
            )

        app.router.add_post("/tokens/", handle_tokens)
        app.router.add_post("/tokens", handle_tokens)
        app.router.add_routes(self._extra_routes)
        app.router.add_get("/", index)
        app.router.add_get("/{tail:.+}", websocket_or_404)
        # fal.run's plain HTTP endpoint for HTTP apps (what fal's server proxy forwards to).
        app.router.add_post("/{tail:.+}", http_post_or_404)

        async def cleanup(_app: web.Application) -> None:
            await pool.close()
            for hook in self._on_cleanup:
                await hook()

        app.on_cleanup.append(cleanup)
        return app

    @contextlib.asynccontextmanager
    async def serve(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        ssl_context: Any = None,
    ) -> AsyncIterator[RunningGateway]:
        """Listen on ``host:port`` (0 picks a free port) until the block exits."""
        running = await self.start(host, port, ssl_context=ssl_context)
        try:
            yield running
        finally:
            await running.stop()

    async def start(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        ssl_context: Any = None,
    ) -> RunningGateway:
        """Start listening; the caller must ``await running.stop()``."""
        runner = web.AppRunner(
            self.make_app(), handle_signals=False, access_log=None, shutdown_timeout=1.0
        )
        await runner.setup()
        server = runner.server
        assert server is not None

        def protocol_factory() -> asyncio.BaseProtocol:
            protocol = server()
            self._guard(protocol)
            return protocol

        try:
            listener = await asyncio.get_running_loop().create_server(
                protocol_factory, host, port, ssl=ssl_context, reuse_address=True
            )
        except BaseException:
            await runner.cleanup()
            raise
        bound = listener.sockets[0].getsockname()[1]
        return RunningGateway(host, int(bound), ssl_context is not None, runner, listener)
