"""What every part of the gateway shares: JSON error answers and a few constants (a leaf)."""

from __future__ import annotations

import orjson
from aiohttp import web

__all__ = ["CLOSE_HANDSHAKE_S", "DEFAULT_MAX_FRAME_BYTES", "JSONError", "json_error"]

#: The largest WebSocket frame the gateway accepts by default (64 MiB).
DEFAULT_MAX_FRAME_BYTES = 64 * 1024 * 1024
#: How long the gateway waits for a client to answer its close frame.
CLOSE_HANDSHAKE_S = 2.0


class JSONError(web.HTTPException):
    """An HTTP error answer whose body is ``{"detail": message}``."""

    def __init__(self, status: int, message: str) -> None:
        self.status_code = status
        super().__init__(
            text=orjson.dumps({"detail": message}).decode(), content_type="application/json"
        )


def json_error(status: int, message: str) -> web.HTTPException:
    """Return an HTTP error with status ``status`` and a JSON ``detail`` body."""
    return JSONError(status, message)
