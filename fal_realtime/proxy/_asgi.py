"""The proxy as a plain ASGI application (no framework imported): mount it anywhere.

    app.mount("/api/fal", asgi_app(allowed_apps=["fal-ai/flux-lora-realtime"], authorize=...))

Starlette and FastAPI keep the full path in ``scope["path"]`` and the mount point in
``scope["root_path"]``; other servers strip the prefix. Both work: the route is what
follows ``root_path`` when the path starts with it.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qsl

from ._core import Proxy, ProxyRequest, Reply

__all__ = ["ProxyASGI"]

log = logging.getLogger("fal_realtime.proxy")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class _ClientGone(Exception):
    """The browser went away while its request body was being read."""


class _Body:
    """The request body as it arrives from ``receive``, chunk by chunk."""

    def __init__(self, receive: Receive) -> None:
        self._receive = receive
        self._done = False

    def __aiter__(self) -> _Body:
        return self

    async def __anext__(self) -> bytes:
        while not self._done:
            message = await self._receive()
            if message["type"] == "http.disconnect":
                self._done = True
                raise _ClientGone
            self._done = not message.get("more_body", False)
            if chunk := message.get("body", b""):
                return bytes(chunk)
        raise StopAsyncIteration


def _route(scope: Scope) -> str:
    path: str = scope.get("path", "")
    root: str = scope.get("root_path", "")
    if root and path.startswith(root):
        path = path[len(root) :]
    return path.rstrip("/") or "/"


def _request(scope: Scope, route: str) -> ProxyRequest:
    headers = tuple(
        (name.decode("latin-1").lower(), value.decode("latin-1"))
        for name, value in scope.get("headers", ())
    )
    query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))
    client = scope.get("client")
    return ProxyRequest(
        method=scope.get("method", "GET").upper(),
        route=route,
        headers=headers,
        query=query,
        client=client[0] if client else None,
        native=scope,
    )


class ProxyASGI:
    """Serve ``/proxy`` and ``/token`` of a :class:`Proxy` to ASGI servers.

    A lifespan (when run on its own under uvicorn) is accepted; the proxy holds no
    resource between requests, so there is nothing to open or close.
    """

    def __init__(self, proxy: Proxy) -> None:
        self.proxy = proxy

    def __repr__(self) -> str:
        return f"ProxyASGI({self.proxy!r})"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await _lifespan(receive, send)
            return
        if kind != "http":
            if kind == "websocket":
                await send({"type": "websocket.close", "code": 1008})
            return
        route = _route(scope)
        request = _request(scope, route)
        if route == "/proxy":
            reply = await self._forward(request, receive)
        elif route == "/token":
            reply = await self.proxy.token(request)
        else:
            reply = Reply.json(404, {"detail": "not found: use /proxy or /token"})
        try:
            await _write(reply, send)
        finally:
            await reply.aclose()

    async def _forward(self, request: ProxyRequest, receive: Receive) -> Reply:
        try:
            return await self.proxy.forward(request, _Body(receive))
        except _ClientGone:
            return Reply.json(499, {"detail": "the client went away"})


async def _write(reply: Reply, send: Send) -> None:
    headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in reply.headers]
    await send({"type": "http.response.start", "status": reply.status, "headers": headers})
    if reply.stream is None:
        await send({"type": "http.response.body", "body": reply.body})
        return
    # A browser that goes away mid-stream makes send() fail; the reply is closed anyway.
    with contextlib.suppress(OSError):
        async for chunk in reply.stream:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b""})


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
