"""The proxy as aiohttp routes, or a ``web.Application`` for ``add_subapp``."""

from __future__ import annotations

import contextlib

from aiohttp import web

from ._core import Proxy, ProxyRequest, Reply

__all__ = ["handle_forward", "handle_token", "proxy_routes"]


def _request(request: web.Request, route: str) -> ProxyRequest:
    return ProxyRequest(
        method=request.method.upper(),
        route=route,
        headers=tuple((k.lower(), v) for k, v in request.headers.items()),
        query=dict(request.query),
        client=request.remote,
        native=request,
    )


async def _write(request: web.Request, reply: Reply) -> web.StreamResponse:
    try:
        if reply.stream is None:
            response = web.Response(status=reply.status, body=reply.body)
            for name, value in reply.headers:
                response.headers.add(name, value)
            return response
        stream = web.StreamResponse(status=reply.status)
        for name, value in reply.headers:
            stream.headers.add(name, value)
        await stream.prepare(request)
        # A browser that goes away mid-stream makes write() fail; the reply is closed anyway.
        with contextlib.suppress(ConnectionError):
            async for chunk in reply.stream:
                await stream.write(chunk)
            await stream.write_eof()
        return stream
    finally:
        await reply.aclose()


async def handle_forward(proxy: Proxy, request: web.Request) -> web.StreamResponse:
    """Answer an aiohttp request to ``{prefix}/proxy`` with ``proxy``."""
    reply = await proxy.forward(_request(request, "/proxy"), request.content.iter_any())
    return await _write(request, reply)


async def handle_token(proxy: Proxy, request: web.Request) -> web.StreamResponse:
    """Answer an aiohttp request to ``{prefix}/token`` with ``proxy``."""
    return await _write(request, await proxy.token(_request(request, "/token")))


def proxy_routes(proxy: Proxy, prefix: str = "") -> list[web.RouteDef]:
    """Return aiohttp routes serving ``{prefix}/proxy`` and ``{prefix}/token``."""
    prefix = prefix.rstrip("/")

    async def forward(request: web.Request) -> web.StreamResponse:
        return await handle_forward(proxy, request)

    async def token(request: web.Request) -> web.StreamResponse:
        return await handle_token(proxy, request)

    return [
        web.route("*", f"{prefix}/proxy", forward),
        web.route("*", f"{prefix}/token", token),
    ]
