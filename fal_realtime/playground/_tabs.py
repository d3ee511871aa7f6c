"""What the playground's pages share: a tab's socket and relay, a page's open tabs, and
the checks of what a tab sends.

Each page (:class:`~fal_realtime.playground.Playground`,
:class:`~fal_realtime.playground.CameraPlayground`) has a :class:`Tabs`; its socket handler
accepts a tab with :meth:`Tabs.accept`, opens the tab's relay with :meth:`Tab.open` and
relays the tab's messages in its own way. The relay is closed when the tab's socket closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import orjson
from aiohttp import WSCloseCode, web

from ..errors import RealtimeError
from ..realtime import Connecting, RealtimeConnection

log = logging.getLogger("fal_realtime.playground")

#: How long close() waits for the tabs' handlers to finish.
CLOSE_WAIT_S = 10.0
MAX_PROMPT_CHARS = 2000


class Tab:
    """One browser tab: its socket, and its relay connection once open."""

    def __init__(self, ws: web.WebSocketResponse) -> None:
        self.ws = ws
        self.conn: RealtimeConnection | None = None
        self.finished = asyncio.Event()

    async def write(self, data: bytes | str) -> None:
        """Send ``data`` to the tab as one binary (bytes) or text (str) message."""
        if self.ws.closed:
            return
        # The tab may go away mid-write; its handler then closes the relay.
        with contextlib.suppress(ConnectionError, RuntimeError):
            if isinstance(data, bytes):
                await self.ws.send_bytes(data)
            else:
                await self.ws.send_str(data)

    async def send(self, message: dict[str, Any]) -> None:
        """Send ``message`` to the tab as JSON text."""
        await self.write(orjson.dumps(message).decode())

    def stats(self) -> dict[str, Any]:
        """Return the relay's numbers for the page (empty before it is open)."""
        if self.conn is None:
            return {}
        stats = self.conn.stats
        latency = stats.last_latency_s
        return {
            "sent": stats.sent,
            "coalesced": stats.coalesced,
            "received": stats.results,
            "last_latency_ms": None if latency is None else round(latency * 1000, 1),
            "state": self.conn.state.value,
        }

    async def on_error(self, error: RealtimeError) -> None:
        await self.send({"type": "error", "code": error.code, "message": error.message})

    async def open(self, connecting: Connecting) -> bool:
        """Open the tab's relay; if it fails, tell the tab why and return False."""
        try:
            self.conn = await connecting
        except RealtimeError as exc:
            await self.on_error(exc)
            return False
        return True


class Tabs:
    """A page's open tabs, one relay connection each; :meth:`close` ends them all.

    ``name`` names the relays' close tasks and the page in log lines; ``max_message_bytes``
    is the largest message a tab may send.
    """

    def __init__(self, *, name: str, max_message_bytes: int) -> None:
        self.name = name
        self.max_message_bytes = max_message_bytes
        self._tabs: set[Tab] = set()
        # Relay closes in flight: they outlive a cancelled tab handler, and close() awaits them.
        self._closing: set[asyncio.Task[None]] = set()

    def __len__(self) -> int:
        return len(self._tabs)

    @property
    def open_relays(self) -> int:
        """Return how many tabs have a relay connection open now."""
        return sum(1 for tab in self._tabs if tab.conn is not None and not tab.conn.closed)

    async def handle_stats(self, request: web.Request) -> web.StreamResponse:
        """Answer how many tabs are open, and how many of them have their relay open."""
        return web.json_response({"tabs": len(self), "relays": self.open_relays})

    @contextlib.asynccontextmanager
    async def accept(self, request: web.Request, *, ready: bool) -> AsyncIterator[Tab]:
        """Take the tab's socket (same-origin pages only, once ``ready``); yield its Tab.

        On exit, however it comes, the tab's relay and socket are closed and the tab is
        forgotten.
        """
        origin = request.headers.get("Origin")
        if origin is not None and origin.partition("://")[2] != request.host:
            # Only the page itself may drive the relay (it spends the gateway's key).
            raise web.HTTPForbidden(text="cross-origin playground sockets are refused")
        if not ready:
            raise web.HTTPServiceUnavailable(text="the playground is not connected yet")
        ws = web.WebSocketResponse(heartbeat=30.0, max_msg_size=self.max_message_bytes)
        await ws.prepare(request)
        tab = Tab(ws)
        self._tabs.add(tab)
        try:
            yield tab
        finally:
            try:
                if tab.conn is not None:
                    await asyncio.shield(self._close_relay(tab.conn))
                await ws.close()
            finally:
                self._tabs.discard(tab)
                tab.finished.set()

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
            log.warning(
                "fal_realtime.playground: %s tab handlers still running after close", self.name
            )
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)

    def _close_relay(self, conn: RealtimeConnection) -> asyncio.Task[None]:
        """Close ``conn`` in a task of its own, which close() awaits if the handler cannot."""
        task = asyncio.get_running_loop().create_task(
            conn.close(), name=f"fal-realtime-{self.name}-close"
        )
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)
        return task


def json_object(text: str, *, example: str) -> dict[str, Any]:
    """Return the JSON object a tab sent; raise ValueError, showing ``example``, if it is not."""
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        value = None
    if not isinstance(value, dict):
        raise ValueError(f"send a JSON object such as {example}")
    return value


def checked_prompt(prompt: Any) -> str:
    """Return ``prompt`` if it is a string of 1 to MAX_PROMPT_CHARS characters; else raise
    ValueError."""
    if not isinstance(prompt, str) or not 0 < len(prompt) <= MAX_PROMPT_CHARS:
        raise ValueError(f"prompt must be a string of 1 to {MAX_PROMPT_CHARS} characters")
    return prompt
