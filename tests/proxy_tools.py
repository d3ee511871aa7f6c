"""Helpers for the proxy tests: serve the proxy (aiohttp or ASGI under uvicorn), fake upstreams."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from fal_realtime.proxy import aiohttp_app, asgi_app

from .conftest import MS

#: The longest a server here may take to start.
START_WAIT = 10_000 * MS
PREFIX = "/api/fal"


@contextlib.asynccontextmanager
async def serve_aiohttp(app: web.Application) -> AsyncIterator[str]:
    """Serve ``app`` on 127.0.0.1, a free port; yield ``http://127.0.0.1:PORT``."""
    runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


@contextlib.asynccontextmanager
async def serve_asgi(app: Any) -> AsyncIterator[str]:
    """Serve the ASGI ``app`` with uvicorn in this loop; yield ``http://127.0.0.1:PORT``."""
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", lifespan="off", access_log=False)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]), name="uvicorn")
    try:
        async with asyncio.timeout(START_WAIT):
            while not server.started:  # uvicorn offers a flag, not an event
                if task.done():
                    task.result()
                await asyncio.sleep(5 * MS)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task
        sock.close()


@contextlib.asynccontextmanager
async def serve_proxy(kind: str, **options: Any) -> AsyncIterator[str]:
    """Mount the proxy at /api/fal in aiohttp or FastAPI; yield the prefix's URL."""
    if kind == "aiohttp":
        root = web.Application()
        root.add_subapp(PREFIX, aiohttp_app(**options))
        async with serve_aiohttp(root) as url:
            yield url + PREFIX
        return
    from fastapi import FastAPI

    api = FastAPI()
    api.mount(PREFIX, asgi_app(**options))
    async with serve_asgi(api) as url:
        yield url + PREFIX


@dataclass
class FakeUpstream:
    """An HTTP server standing in for fal: records each request, answers with ``answer``."""

    answer: Callable[[web.Request], Awaitable[web.StreamResponse]]
    seen: list[dict[str, Any]] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.seen.append(
            {
                "method": request.method,
                "path": request.path_qs,
                "headers": {k.lower(): v for k, v in request.headers.items()},
                "body": body,
            }
        )
        return await self.answer(request)

    @contextlib.asynccontextmanager
    async def serve(self) -> AsyncIterator[str]:
        """Serve on a free port; yield its URL."""
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        async with serve_aiohttp(app) as url:
            yield url
