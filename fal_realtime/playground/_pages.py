"""The playground's static files: its pages and the stylesheet they share."""

from __future__ import annotations

import importlib.resources
from collections.abc import Awaitable, Callable

from aiohttp import web

#: The file the pages link: what their looks share (each page adds its own rules).
STYLESHEET = "playground.css"


def static(name: str) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """Return a handler serving this package's file ``name`` (an .html or .css), read once."""
    text = importlib.resources.files(__package__).joinpath(name).read_text(encoding="utf-8")
    content_type = "text/css" if name.endswith(".css") else "text/html"

    async def handler(request: web.Request) -> web.StreamResponse:
        return web.Response(
            text=text, content_type=content_type, headers={"Cache-Control": "no-store"}
        )

    return handler
