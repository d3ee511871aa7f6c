"""Drive headless Chromium over the DevTools Protocol, and run `fal-realtime demo --web`.

Chromium is driven through the Chrome DevTools Protocol on a WebSocket with aiohttp, so
no browser-automation package is needed. Tests that use these helpers mark themselves
with :data:`needs_chromium`.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import os
import re
import shutil
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from .child_tools import CHILD_ENV, CHILD_WAIT, launch, stop
from .conftest import MS

CHROMIUM = Path("/usr/bin/chromium")
needs_chromium = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason="needs Chromium at /usr/bin/chromium (Debian: apt-get install chromium)",
)
#: The longest one step in the page may take.
WAIT = 15_000 * MS
WINDOW = (900, 940)
PLAYGROUND = re.compile(r"^playground: (http://127\.0\.0\.1:\d+/playground/)$")


class DevTools:
    """A minimal Chrome DevTools Protocol client for one page target."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self._next_id = 0

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        """Send one command and return its result (events in between are skipped)."""
        self._next_id += 1
        ident = self._next_id
        await self.ws.send_json({"id": ident, "method": method, "params": params})
        async with asyncio.timeout(WAIT):
            while True:
                message = await self.ws.receive_json()
                if message.get("id") != ident:
                    continue
                if "error" in message:
                    raise AssertionError(f"{method}: {message['error']}")
                result: dict[str, Any] = message["result"]
                return result

    async def evaluate(self, expression: str) -> Any:
        """Evaluate ``expression`` in the page; return its value."""
        result = await self.call(
            "Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True
        )
        if "exceptionDetails" in result:
            raise AssertionError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    async def wait_until(self, expression: str, what: str) -> Any:
        """Evaluate ``expression`` until it is truthy (bounded); return its value."""
        try:
            async with asyncio.timeout(WAIT):
                while True:  # the page's state: nothing to wait on but the next evaluation
                    if value := await self.evaluate(expression):
                        return value
                    await asyncio.sleep(50 * MS)
        except TimeoutError:
            text = await self.evaluate("document.body.innerText")
            raise AssertionError(f"no {what} within {WAIT:g} s; the page says:\n{text}") from None

    async def type_prompt(self, prompt: str, *, src_prefix: str = "") -> str:
        """Type ``prompt`` into #prompt one key at a time, as a user does; wait for the image
        of the whole prompt (its src starting with ``src_prefix``); return its caption."""
        await self.evaluate("document.getElementById('prompt').focus()")
        for char in prompt:  # one input event per key
            await self.call("Input.insertText", text=char)
        caption: str = await self.wait_until(
            f"""(() => {{
                const img = document.querySelector('#canvas img');
                const caption = document.getElementById('caption').textContent;
                return img && img.complete && img.naturalWidth > 0
                    && img.src.startsWith('{src_prefix}')
                    && caption.endsWith('seed {demo_seed(prompt)}') && caption;
            }})()""",
            "image of the whole prompt",
        )
        return caption

    async def screenshot(self, path: Path, *, docs: Path | None = None) -> bytes:
        """Save a PNG of the page at ``path`` (and, with FAL_RT_UPDATE_SCREENSHOT=1, at
        ``docs``); return it."""
        shot = await self.call("Page.captureScreenshot", format="png")
        png = base64.b64decode(shot["data"])
        assert png[:8] == b"\x89PNG\r\n\x1a\n"
        path.write_bytes(png)  # noqa: ASYNC240 (a small file in the test's tmp dir)
        if docs is not None and os.environ.get("FAL_RT_UPDATE_SCREENSHOT") == "1":
            shutil.copyfile(path, docs)
        return png


@contextlib.asynccontextmanager
async def chromium(url: str, profile: Path, *extra_args: str) -> AsyncIterator[DevTools]:
    """Open ``url`` in headless Chromium (with ``extra_args``) at the WINDOW's size, one
    CSS pixel a device pixel; yield a DevTools client for the page."""
    proc = await asyncio.create_subprocess_exec(
        str(CHROMIUM),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        "--force-device-scale-factor=1",
        f"--window-size={WINDOW[0]},{WINDOW[1]}",
        f"--user-data-dir={profile}",
        "--remote-debugging-port=0",
        *extra_args,
        url,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
        env=CHILD_ENV,
    )
    try:
        port_file = profile / "DevToolsActivePort"
        async with asyncio.timeout(CHILD_WAIT):
            while not port_file.exists() or not port_file.read_text().strip():  # noqa: ASYNC110
                if proc.returncode is not None:
                    raise AssertionError(f"chromium exited with {proc.returncode}")
                await asyncio.sleep(50 * MS)
        port = int(port_file.read_text().split()[0])
        async with aiohttp.ClientSession() as http:
            async with asyncio.timeout(WAIT):
                while True:  # the page target appears once Chromium has opened the URL
                    async with http.get(f"http://127.0.0.1:{port}/json/list") as response:
                        targets = await response.json()
                    pages = [t for t in targets if t["type"] == "page" and t["url"] == url]
                    if pages:
                        break
                    await asyncio.sleep(50 * MS)
            async with http.ws_connect(
                pages[0]["webSocketDebuggerUrl"], max_msg_size=64 * 1024 * 1024
            ) as ws:
                devtools = DevTools(ws)
                await devtools.call(
                    "Emulation.setDeviceMetricsOverride",
                    width=WINDOW[0],
                    height=WINDOW[1],
                    deviceScaleFactor=1,
                    mobile=False,
                )
                yield devtools
                with contextlib.suppress(AssertionError, aiohttp.ClientError):
                    await devtools.call("Browser.close")
    finally:
        await stop(proc)


@contextlib.asynccontextmanager
async def demo_web() -> AsyncIterator[tuple[asyncio.subprocess.Process, str, list[str]]]:
    """Run `fal-realtime demo --web --port 0`; yield it, the page URL, and its first lines."""
    proc, lines = await launch("demo", "--web", "--port", "0", until="open it in a browser")
    try:
        url = next(m.group(1) for line in lines if (m := PLAYGROUND.match(line)))
        yield proc, url, lines
    finally:
        await stop(proc, signal.SIGINT)


async def stop_demo(proc: asyncio.subprocess.Process) -> None:
    """Ctrl-C the demo; check that it stopped cleanly (exit 0, no traceback)."""
    await stop(proc, signal.SIGINT)
    assert proc.stdout is not None and proc.stderr is not None
    out, err = (await proc.stdout.read()).decode(), (await proc.stderr.read()).decode()
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    assert "playground stopped" in out


async def relay_stats(stats_url: str) -> dict[str, int]:
    """Return a playground page's ``{"tabs", "relays"}`` from ``stats_url``."""
    async with aiohttp.ClientSession() as http, asyncio.timeout(WAIT):
        async with http.get(stats_url) as response:
            stats: dict[str, int] = await response.json()
            return stats


async def leave_page(page: DevTools, stats_url: str) -> None:
    """Check the page's tab has its relay open; leave the page; wait until both are closed."""
    assert (await relay_stats(stats_url)) == {"tabs": 1, "relays": 1}
    await page.call("Page.navigate", url="about:blank")
    async with asyncio.timeout(WAIT):
        while (await relay_stats(stats_url)) != {"tabs": 0, "relays": 0}:  # noqa: ASYNC110
            await asyncio.sleep(50 * MS)


def demo_seed(prompt: str) -> int:
    """Return the seed the demo app derives from ``prompt`` (no seed in the input)."""
    return int.from_bytes(hashlib.sha256(prompt.encode()).digest()[:4], "big")
