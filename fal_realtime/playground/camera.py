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

import secrets
from typing import Any

from aiohttp import WSMsgType, web

from ..errors import INVALID_INPUT, RealtimeError
from ..realtime import connect
from ..server import Gateway
from ._pages import STYLESHEET, static
from ._tabs import Tab, Tabs, checked_prompt, json_object

__all__ = ["CAMERA_APP", "CAMERA_PAGE_PATH", "CAMERA_SOCKET_PATH", "CameraPlayground"]

CAMERA_PAGE_PATH = "/playground/camera"
CAMERA_SOCKET_PATH = "/playground/camera/ws"
CAMERA_STATS_PATH = "/playground/camera/stats"
#: The shared stylesheet again, under the camera page's own path: the page works mounted alone.
CAMERA_STYLE_PATH = "/playground/camera/style.css"
CAMERA_APP = "fal-ai/fast-turbo-diffusion/image-to-image"
DEFAULT_PROMPT = "a watercolour portrait, soft light"
#: The largest frame a tab may send (a camera JPEG is tens of kB).
MAX_FRAME_BYTES = 4 * 1024 * 1024


class _CameraTab:
    """One tab's camera: what its frames are sent with, how many, and the answers shown."""

    def __init__(self, tab: Tab) -> None:
        self.tab = tab
        self.prompt = DEFAULT_PROMPT
        self.strength = 0.6
        self.frames = 0

    def stats(self) -> dict[str, Any]:
        stats = self.tab.stats()
        return {"frames": self.frames, **stats} if stats else {}

    async def on_result(self, result: Any) -> None:
        images = result.get("images") if isinstance(result, dict) else None
        image = images[0] if isinstance(images, list) and images else None
        content = image.get("content") if isinstance(image, dict) else None
        if not isinstance(content, bytes):
            await self.tab.send({"type": "error", "code": "NO_IMAGE", "message": "no image"})
            return
        await self.tab.write(content)
        await self.tab.send({"type": "stats", "stats": self.stats()})

    def settings(self, text: str) -> None:
        """Take ``{"prompt", "strength"}`` from the page; raise ValueError when bad."""
        value = json_object(text, example='{"prompt": "a watercolour"}')
        prompt = checked_prompt(value.get("prompt", self.prompt))
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
        self._tabs = Tabs(name="playground-camera", max_message_bytes=MAX_FRAME_BYTES)

    @property
    def open_relays(self) -> int:
        """Return how many tabs have a relay connection open now."""
        return self._tabs.open_relays

    def mount(self, gateway: Gateway) -> None:
        """Serve the page, its stylesheet, the tabs' socket and the stats on ``gateway``."""
        gateway.add_routes(
            [
                web.get(CAMERA_PAGE_PATH, static("camera.html")),
                web.get(CAMERA_STYLE_PATH, static(STYLESHEET)),
                web.get(CAMERA_SOCKET_PATH, self._socket),
                web.get(CAMERA_STATS_PATH, self._tabs.handle_stats),
            ],
            on_cleanup=self.close,
        )

    async def close(self) -> None:
        """Close every tab's socket (1001, going away) and relay; wait for them to finish."""
        await self._tabs.close()

    async def _socket(self, request: web.Request) -> web.StreamResponse:
        async with self._tabs.accept(request, ready=self.base_url is not None) as tab:
            camera = _CameraTab(tab)
            connecting = connect(
                self.app,
                on_result=camera.on_result,
                on_error=tab.on_error,
                connection_key=f"playground-camera:{secrets.token_hex(8)}",
                base_url=self.base_url,
                key=self.key,
            )
            if await tab.open(connecting):
                await tab.send({"type": "stats", "stats": camera.stats()})
                await self._relay(camera)
        return tab.ws

    async def _relay(self, camera: _CameraTab) -> None:
        """Send each frame through the tab's relay (latest wins) until the tab goes away."""
        tab = camera.tab
        assert tab.conn is not None
        async for msg in tab.ws:
            try:
                if msg.type is WSMsgType.BINARY:
                    await tab.conn.send(camera.frame_input(msg.data))
                elif msg.type is WSMsgType.TEXT:
                    camera.settings(msg.data)
            except ValueError as exc:
                await tab.send({"type": "error", "code": INVALID_INPUT, "message": str(exc)})
            except RealtimeError as exc:
                await tab.on_error(exc)
                return  # the relay failed or closed: the page shows why and offers a reload
