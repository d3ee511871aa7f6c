"""A web playground served by the gateway: type a prompt, watch images arrive.

    fal-realtime demo --web            # prints http://127.0.0.1:8080/playground/

A second page, ``/playground/direct/`` (``direct.html``), works as fal's own demos do: it
gets a short-lived token from this server's token route (``/playground/api/fal/token``,
served by :mod:`fal_realtime.proxy`) and opens the realtime socket to the gateway itself.

The page (``index.html``: plain HTML and JavaScript, no build step) opens a WebSocket to
``/playground/ws`` on the gateway. Behind it, each tab gets a relay: this package's
realtime client (:func:`fal_realtime.connect`, throttled, latest wins) connected to
``fal-ai/flux-lora-realtime`` on the same gateway with the gateway's key, which never
reaches the browser. The relay is closed when the tab's socket closes. The pages share
one stylesheet (``playground.css``, at ``/playground/style.css``) and add their own rules.

Messages, all JSON text. Browser → relay: ``{"prompt": str, "image_size": str,
"seed": int | null}``. Relay → browser: ``{"type": "result", "image": URL, "width",
"height", "seed", "stats"}``, ``{"type": "stats", "stats"}`` after each input,
``{"type": "state", "state"}``, ``{"type": "error", "code", "message"}``. ``stats`` is
``{"sent", "coalesced", "received", "last_latency_ms", "state"}``.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import WSMsgType, web

from ..errors import INVALID_INPUT, RealtimeError
from ..proxy import Proxy, ProxyRequest
from ..proxy._aio import handle_token
from ..realtime import ConnectionState, connect
from ..server import Gateway, RunningGateway
from ..server.demo import register_demo_apps
from ._pages import STYLESHEET, static
from ._tabs import Tab, Tabs, checked_prompt, json_object
from .camera import CAMERA_PAGE_PATH, CameraPlayground

__all__ = [
    "CAMERA_PAGE_PATH",
    "DIRECT_PATH",
    "PAGE_PATH",
    "SOCKET_PATH",
    "TOKEN_PATH",
    "CameraPlayground",
    "Playground",
    "serve_playground",
]

PAGE_PATH = "/playground/"
SOCKET_PATH = "/playground/ws"
STATS_PATH = "/playground/stats"
STYLE_PATH = "/playground/style.css"
DIRECT_PATH = "/playground/direct/"
TOKEN_PATH = "/playground/api/fal/token"
APP = "fal-ai/flux-lora-realtime"
THROTTLE_S = 0.064
IMAGE_SIZES = frozenset(
    {"square_hd", "square", "portrait_4_3", "portrait_16_9", "landscape_4_3", "landscape_16_9"}
)
#: The largest message a tab may send; inputs are a prompt and two small fields.
MAX_MESSAGE_BYTES = 16 * 1024


class _PromptTab:
    """What the prompt page shows of one tab's relay: its results and its state."""

    def __init__(self, tab: Tab) -> None:
        self.tab = tab

    async def on_result(self, result: Any) -> None:
        images = result.get("images") if isinstance(result, dict) else None
        image = images[0] if isinstance(images, list) and images else None
        if not isinstance(image, dict):
            await self.tab.send({"type": "error", "code": "NO_IMAGE", "message": "no image"})
            return
        await self.tab.send(
            {
                "type": "result",
                "image": image.get("url"),
                "width": image.get("width"),
                "height": image.get("height"),
                "seed": result.get("seed"),
                "stats": self.tab.stats(),
            }
        )

    async def on_state_change(self, state: ConnectionState) -> None:
        await self.tab.send({"type": "state", "state": state.value})


class Playground:
    """The playground's routes, and one relay connection per open tab.

    Mount it on a gateway with :meth:`mount`, then set :attr:`base_url` to the
    gateway's ``ws_url`` once it listens (the relays connect there).
    """

    def __init__(self, *, key: str | None, app: str = APP, throttle_interval: float = THROTTLE_S):
        self.key = key
        self.app = app
        self.throttle_interval = throttle_interval
        self.base_url: str | None = None
        self._tabs = Tabs(name="playground", max_message_bytes=MAX_MESSAGE_BYTES)
        self._token_proxy: Proxy | None = None

    @property
    def open_relays(self) -> int:
        """Return how many tabs have a relay connection open now."""
        return self._tabs.open_relays

    def mount(self, gateway: Gateway) -> None:
        """Serve the pages, their stylesheet, the tabs' socket and the stats on ``gateway``."""
        gateway.add_routes(
            [
                web.get(PAGE_PATH.rstrip("/"), self._redirect),
                web.get(PAGE_PATH, static("index.html")),
                web.get(STYLE_PATH, static(STYLESHEET)),
                web.get(SOCKET_PATH, self._socket),
                web.get(STATS_PATH, self._tabs.handle_stats),
                web.get(DIRECT_PATH, static("direct.html")),
                web.route("*", TOKEN_PATH, self._token),
            ],
            on_cleanup=self.close,
        )

    async def close(self) -> None:
        """Close every tab's socket (1001, going away) and relay; wait for them to finish.

        :func:`serve_playground` calls this before the gateway stops, so that tabs are
        told and their handlers end on their own; the gateway calls it again at cleanup.
        """
        await self._tabs.close()

    # -- handlers -------------------------------------------------------------------

    async def _redirect(self, request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound(PAGE_PATH)

    async def _token(self, request: web.Request) -> web.StreamResponse:
        """Give the direct page a token for the playground's app (same-origin pages only)."""
        if self.base_url is None or not self.key:
            raise web.HTTPServiceUnavailable(text="the playground has no key to issue tokens")
        if self._token_proxy is None:
            self._token_proxy = Proxy(
                key=self.key,
                allowed_apps=[self.app],
                authorize=_same_origin,
                env={"FAL_RUN_HOST": self.base_url},
            )
        return await handle_token(self._token_proxy, request)

    async def _socket(self, request: web.Request) -> web.StreamResponse:
        async with self._tabs.accept(request, ready=self.base_url is not None) as tab:
            page = _PromptTab(tab)
            connecting = connect(
                self.app,
                on_result=page.on_result,
                on_error=tab.on_error,
                on_state_change=page.on_state_change,
                connection_key=f"playground:{secrets.token_hex(8)}",
                throttle_interval=self.throttle_interval,
                base_url=self.base_url,
                key=self.key,
            )
            if await tab.open(connecting):
                await tab.send({"type": "stats", "stats": tab.stats()})
                await self._relay(tab)
        return tab.ws

    async def _relay(self, tab: Tab) -> None:
        """Send each of the tab's inputs through its relay until the tab goes away."""
        assert tab.conn is not None
        async for msg in tab.ws:
            if msg.type is not WSMsgType.TEXT:
                continue
            try:
                await tab.conn.send(_input(msg.data))
            except ValueError as exc:
                await tab.send({"type": "error", "code": INVALID_INPUT, "message": str(exc)})
                continue
            except RealtimeError as exc:
                await tab.on_error(exc)
                return  # the relay failed or closed: the page shows why and offers a reload
            await tab.send({"type": "stats", "stats": tab.stats()})


def _same_origin(request: ProxyRequest) -> bool:
    """Accept token requests from this server's own pages (or with no Origin at all)."""
    origin = request.header("origin")
    native: web.Request = request.native
    return origin is None or origin.partition("://")[2] == native.host


def _input(text: str) -> dict[str, Any]:
    """Return the realtime input for a tab's message; raise ValueError when it is bad."""
    value = json_object(text, example='{"prompt": "a tiger"}')
    prompt = checked_prompt(value.get("prompt"))
    image_size = value.get("image_size", "landscape_16_9")
    if image_size not in IMAGE_SIZES:
        raise ValueError(f"image_size must be one of {', '.join(sorted(IMAGE_SIZES))}")
    payload: dict[str, Any] = {
        "prompt": prompt,
        "image_size": image_size,
        "num_inference_steps": 3,
        "sync_mode": True,
    }
    seed = value.get("seed")
    if seed is not None:
        if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < 2**32:
            raise ValueError("seed must be an integer from 0 to 2**32 - 1, or null")
        payload["seed"] = seed
    return payload


@contextlib.asynccontextmanager
async def serve_playground(
    host: str = "127.0.0.1", port: int = 8080
) -> AsyncIterator[RunningGateway]:
    """Run a gateway with the demo apps and the playground; yield it once it listens.

    The page is at ``running.url + PAGE_PATH``.

    The gateway generates its own key for the relays; nothing else can use it unless
    it is told the key.
    """
    gateway = Gateway()
    register_demo_apps(gateway)
    playground = Playground(key=gateway.generated_key)
    playground.mount(gateway)
    camera = CameraPlayground(key=gateway.generated_key)  # the camera page (.camera)
    camera.mount(gateway)
    async with gateway.serve(host, port) as running:
        playground.base_url = camera.base_url = running.ws_url
        try:
            yield running
        finally:
            # Before the gateway stops: tell the tabs, end their relays cleanly.
            await playground.close()
            await camera.close()
