"""What the gateway hosts: realtime handlers and HTTP apps, found by request path."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeAlias

from aiohttp import web

from .._protocol.apps import AppId
from .faults import Faults
from .modes import HandlerShape, infer_shape

__all__ = [
    "HttpApp",
    "HttpHandler",
    "RealtimeApp",
    "RealtimeHandler",
    "Registry",
    "Route",
]

#: A realtime handler in one of fal's four modes (see :mod:`.modes`): ``async def``
#: or a plain function (run in a worker thread) taking one input or ``inputs``.
RealtimeHandler: TypeAlias = (
    Callable[[Any], Awaitable[Any]] | Callable[[Any], AsyncIterator[Any]] | Callable[[Any], Any]
)
#: An in-process HTTP upstream: an aiohttp request handler.
HttpHandler: TypeAlias = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(slots=True)
class RealtimeApp:
    """A realtime endpoint hosted by the gateway, with fal-runner session semantics."""

    app_id: AppId
    handler: RealtimeHandler
    path: str = "/realtime"
    buffering: int | None = None
    session_timeout: float | None = 60.0
    emit_timings: bool = False
    #: The handler's mode and kind, inferred from its hints (TypeError when unsupported).
    shape: HandlerShape = field(init=False)

    def __post_init__(self) -> None:
        self.shape = infer_shape(self.handler)


@dataclass(slots=True)
class HttpApp:
    """An HTTP app fronted over HTTP-over-WebSockets: a URL or an in-process aiohttp app."""

    app_id: AppId
    upstream: str | web.Application | HttpHandler
    max_body_bytes: int = 64 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Route:
    """Where a WebSocket request path leads."""

    app_id: AppId
    sub_path: str
    realtime: RealtimeApp | None
    http: HttpApp | None
    looks_realtime: bool


class Registry:
    """Hold the hosted apps and per-app faults; resolve request paths to them."""

    def __init__(self) -> None:
        self.realtime: dict[tuple[str, str], RealtimeApp] = {}
        self.http: dict[str, HttpApp] = {}
        self._faults: dict[str, Faults] = {}
        self._fault_uses: dict[str, int] = {}

    def add_realtime(self, app: RealtimeApp) -> None:
        """Register ``app``, replacing one at the same app id and path."""
        self.realtime[(app.app_id.key, _norm(app.path, app.app_id))] = app

    def add_http(self, app: HttpApp) -> None:
        """Register ``app``, replacing one with the same app id."""
        self.http[app.app_id.key] = app

    def set_faults(self, app_id: str, faults: Faults | None) -> None:
        """Set (or clear, with None) the faults every new connection to ``app_id`` gets."""
        key = AppId.parse(app_id).key
        self._fault_uses.pop(key, None)
        if faults is None or not (faults.active or faults.connections):
            self._faults.pop(key, None)
        else:
            self._faults[key] = faults

    def take_faults(self, app: AppId) -> Faults:
        """Return the per-app faults for one new connection, counting ``connections=N``."""
        faults = self._faults.get(app.key)
        if faults is None:
            return Faults()
        if faults.connections is not None:
            used = self._fault_uses.get(app.key, 0)
            if used >= faults.connections:
                return Faults()
            self._fault_uses[app.key] = used + 1
        return faults

    def resolve(self, request_path: str) -> Route | None:
        """Map ``/[ns/]owner/alias[/sub]`` to its app; None when it is not an app path."""
        try:
            app = AppId.parse(request_path.strip("/"))
        except ValueError:
            return None
        sub = f"/{app.path}" if app.path else ""
        realtime = self.realtime.get((app.key, sub)) if sub else None
        http = self.http.get(app.key)
        bare = AppId(app.owner, app.alias, None, app.namespace)
        return Route(
            app_id=bare,
            sub_path=sub,
            realtime=realtime,
            http=http,
            looks_realtime=sub.rsplit("/", 1)[-1] == "realtime",
        )


def _norm(path: str, app: AppId) -> str:
    """Return the full sub-path of a realtime endpoint: the app id's own path plus ``path``."""
    parts = [p for p in ((app.path or ""), path.strip("/")) if p]
    joined = "/".join(parts)
    # "/realtime" is not doubled when the app id already ends with it (as clients do).
    if app.path and path.strip("/") and app.path.endswith(path.strip("/")):
        joined = app.path
    return f"/{joined}" if joined else ""
