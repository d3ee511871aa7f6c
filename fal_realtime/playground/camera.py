"""The playground's camera page: the browser's camera through an image-to-image app.

    fal-realtime demo --web            # then open http://127.0.0.1:8080/playground/camera

The page (``camera.html``) takes frames from the browser's camera (``getUserMedia``),
encodes each as JPEG in a canvas and sends it as a binary message to
``/playground/camera/ws``. Behind it, each tab gets a relay: this package's realtime client
(:func:`fal_realtime.connect`, default options: latest wins) connected to
``fal-ai/fast-turbo-diffusion/image-to-image`` on the same gateway with the gateway's key,
which never reaches the browser. The page shows the camera and the results side by side.

Messages. Browser → relay: a binary message is one JPEG frame; a text message
``{"prompt": str, "strength": float}`` sets what the next frames are sent with. Relay →
browser: a binary message is one result image (JPEG), followed by a text message
``{"type": "stats", "stats": {"sent", "coalesced", "received", "frames",
"last_latency_ms", "state"}}``; ``{"type": "error", "code", "message"}``.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.resources
import logging
import secrets
from typing import Any

import orjson
from aiohttp import WSCloseCode, WSMsgType, web

from ..errors import INVALID_INPUT, RealtimeError
from ..realtime import RealtimeConnection, connect
from ..server import Gateway

__all__ = ["CAMERA_APP", "CAMERA_PAGE_PATH", "CAMERA_SOCKET_PATH", "CameraPlayground"]

log = logging.getLogger("fal_realtime.playground")

CAMERA_PAGE_PATH = "/playground/camera"
CAMERA_SOCKET_PATH = "/playground/camera/ws"
CAMERA_STATS_PATH = "/playground/camera/stats"
CAMERA_APP = "fal-ai/fast-turbo-diffusion/image-to-image"
DEFAULT_PROMPT = "a watercolour portrait, soft light"
MAX_PROMPT_CHARS = 2000
#: The largest frame a tab may send (a camera JPEG is tens of kB).
MAX_FRAME_BYTES = 4 * 1024 * 1024
CLOSE_WAIT_S = 10.0


class _CameraTab:
    """One browser tab: its socket, what its frames are sent with, and its relay."""

    def __init__(self, ws: web.WebSocketResponse) -> None:
        self.ws = ws
        self.conn: RealtimeConnection | None = None
        self.prompt = DEFAULT_PROMPT
        self.strength = 0.6
        self.frames = 0
        self.finished = asyncio.Event()

    def stats(self) -> dict[str, Any]:
        if self.conn is None:
            return {}
        stats = self.conn.stats
        latency = stats.last_latency_s
        return {
            "frames": self.frames,
            "sent": stats.sent,
            "coalesced": stats.coalesced,
            "received": stats.results,
            "last_latency_ms": None if latency is None else round(latency * 1000, 1),
            "state": self.conn.state.value,
        }

    async def _write(self, data: bytes | str) -> None:
        if self.ws.closed:
            return
        # The tab may go away mid-write; its handler then closes the relay.
        with contextlib.suppress(ConnectionError, RuntimeError):
            if isinstance(data, bytes):
                await self.ws.send_bytes(data)
            else:
                await self.ws.send_str(data)

    async def send_json(self, message: dict[str, Any]) -> None:
        await self._write(orjson.dumps(message).decode())

    async def on_result(self, result: Any) -> None:
        images = result.get("images") if isinstance(result, dict) else None
        image = images[0] if isinstance(images, list) and images else None
        content = image.get("content") if isinstance(image, dict) else None
        if not isinstance(content, bytes):
            await self.send_json({"type": "error", "code": "NO_IMAGE", "message": "no image"})
            return
        await self._write(content)
        await self.send_json({"type": "stats", "stats": self.stats()})

    async def on_error(self, error: RealtimeError) -> None:
        await self.send_json({"type": "error", "code": error.code, "message": error.message})

    def settings(self, text: str) -> None:
        """Take ``{"prompt", "strength"}`` from the page; raise ValueError when bad."""
        try:
            value = orjson.loads(text)
        except orjson.JSONDecodeError:
            value = None
        if not isinstance(value, dict):
            raise ValueError('send a JSON object such as {"prompt": "a watercolour"}')
        prompt = value.get("prompt", self.prompt)
        if not isinstance(prompt, str) or not 0 < len(prompt) <= MAX_PROMPT_CHARS:
            raise ValueError(f"prompt must be a string of 1 to {MAX_PROMPT_CHARS} characters")
        strength = value.get("strength", self.strength)
        if not isinstance(strength, int | float) or isinstance(strength, bool):
            raise ValueError("strength must be a number from 0 to 1")
        if not 0 <= strength <= 1:
            raise ValueError("strength must be a number from 0 to 1")
        self.prompt, self.strength = prompt, float(strength)

    def frame_input(self, frame: bytes) -> dict[str, Any]:
        """Return the input fal's camera demo sends for one frame."""
        self.frames += 1
        return {
            "prompt": self.prompt,
            "image_bytes": frame,
            "strength": self.strength,
            "seed": 42,
            "num_inference_steps": 2,
            "sync_mode": True,
        }


class CameraPlayground:
    """The camera page's routes, and one relay connection per open tab.

    Mount it on a gateway with :meth:`mount`, then set :attr:`base_url` to the gateway's
    ``ws_url`` once it listens (the relays connect there).
    """

    def __init__(self, *, key: str | None, app: str = CAMERA_APP) -> None:
        self.key = key
        self.app = app
        self.base_url: str | None = None
        self._tabs: set[_CameraTab] = set()
        self._closing: set[asyncio.Task[None]] = set()
        page = importlib.resources.files(__package__).joinpath("camera.html")
        self._page = page.read_text(encoding="utf-8")

    @property
    def open_relays(self) -> int:
        """Return how many tabs have a relay connection open now."""
        return sum(1 for tab in self._tabs if tab.conn is not None and not tab.conn.closed)

    def mount(self, gateway: Gateway) -> None:
        """Serve the page, the tabs' socket and the stats on ``gateway``."""
        gateway.add_routes(
            [
                web.get(CAMERA_PAGE_PATH, self._index),
                web.get(CAMERA_SOCKET_PATH, self._socket),
                web.get(CAMERA_STATS_PATH, self._stats),
            ],
            on_cleanup=self.close,
        )

    async def close(self) -> None:
        """Close every tab's socket (1001, going away) and relay; wait for them to finish."""
        tabs = list(self._tabs)
        for tab in tabs:
            with contextlib.suppress(ConnectionError, RuntimeError):
                await tab.ws.close(code=WSCloseCode.GOING_AWAY, message=b"playground stopping")
        try:
            async with asyncio.timeout(CLOSE_WAIT_S):
                for tab in tabs:
                    await tab.finished.wait()
        except TimeoutError:
            log.warning("fal_realtime.playground: camera tab handlers still running after close")
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)

    async def _index(self, request: web.Request) -> web.StreamResponse:
        return web.Response(
            text=self._page, content_type="text/html", headers={"Cache-Control": "no-store"}
        )

    async def _stats(self, request: web.Request) -> web.StreamResponse:
        return web.json_response({"tabs": len(self._tabs), "relays": self.open_relays})

    async def _socket(self, request: web.Request) -> web.StreamResponse:
        origin = request.headers.get("Origin")
        if origin is not None and origin.partition("://")[2] != request.host:
            # Only the page itself may drive the relay (it spends the gateway's key).
            raise web.HTTPForbidden(text="cross-origin playground sockets are refused")
        if self.base_url is None:
            raise web.HTTPServiceUnavailable(text="the playground is not connected yet")
        ws = web.WebSocketResponse(heartbeat=30.0, max_msg_size=MAX_FRAME_BYTES)
        await ws.prepare(request)
        tab = _CameraTab(ws)
        self._tabs.add(tab)
        try:
            try:
                tab.conn = await connect(
                    self.app,
                    on_result=tab.on_result,
                    on_error=tab.on_error,
                    connection_key=f"playground-camera:{secrets.token_hex(8)}",
                    base_url=self.base_url,
                    key=self.key,
                )
            except RealtimeError as exc:
                await tab.on_error(exc)
                return ws
            await tab.send_json({"type": "stats", "stats": tab.stats()})
            await self._relay(tab)
        finally:
            try:
                if tab.conn is not None:
                    await asyncio.shield(self._close_relay(tab.conn))
                await ws.close()
            finally:
                self._tabs.discard(tab)
                tab.finished.set()
        return ws

    def _close_relay(self, conn: RealtimeConnection) -> asyncio.Task[None]:
        """Close ``conn`` in a task of its own, which close() awaits if the handler cannot."""
        task = asyncio.get_running_loop().create_task(
            conn.close(), name="fal-realtime-playground-camera-close"
        )
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)
        return task

    async def _relay(self, tab: _CameraTab) -> None:
        """Send each frame through the tab's relay (latest wins) until the tab goes away."""
        assert tab.conn is not None
        async for msg in tab.ws:
            try:
                if msg.type is WSMsgType.BINARY:
                    await tab.conn.send(tab.frame_input(msg.data))
                elif msg.type is WSMsgType.TEXT:
                    tab.settings(msg.data)
            except ValueError as exc:
                await tab.send_json({"type": "error", "code": INVALID_INPUT, "message": str(exc)})
            except RealtimeError as exc:
                await tab.on_error(exc)
                return  # the relay failed or closed: the page shows why and offers a reload
