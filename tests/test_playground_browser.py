"""USR-WEB: `fal-realtime demo --web` in a real browser (headless Chromium over CDP).

The test runs the command as a user would, opens the page in Chromium, types a prompt
key by key and waits for the image of the whole prompt. Chromium is driven through the
Chrome DevTools Protocol on a WebSocket with aiohttp, so no browser-automation package
is needed. The screenshot is saved under the test's tmp dir; with
FAL_RT_UPDATE_SCREENSHOT=1 it also replaces docs/playground.png (a test run never
changes the repository otherwise).
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
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from .conftest import MS

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason="needs Chromium at /usr/bin/chromium (Debian: apt-get install chromium)",
)

ROOT = Path(__file__).resolve().parent.parent
DOCS_SCREENSHOT = ROOT / "docs" / "playground.png"
#: The children run as a user would: without the suite's asyncio debug mode.
CHILD_ENV = {k: v for k, v in os.environ.items() if k != "PYTHONASYNCIODEBUG"}
#: The longest a child (the command, or Chromium) may take to start or to stop.
CHILD_WAIT = 60_000 * MS
#: The longest one step in the page may take.
WAIT = 15_000 * MS
PLAYGROUND = re.compile(r"^playground: (http://127\.0\.0\.1:\d+/playground/)$")
STATS = re.compile(r"^sent (\d+) · coalesced (\d+) · received (\d+) · last latency ([\d.]+) ms$")
PROMPT = "a tiger eye, close-up, golden light"
WINDOW = (900, 940)


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


async def _stop(proc: asyncio.subprocess.Process, sig: int = signal.SIGTERM) -> None:
    """Stop ``proc`` with ``sig`` (bounded), then kill it."""
    if proc.returncode is None:
        proc.send_signal(sig)
    try:
        async with asyncio.timeout(CHILD_WAIT):
            await proc.wait()
    except TimeoutError:
        proc.kill()
        await proc.wait()


@contextlib.asynccontextmanager
async def demo_web() -> AsyncIterator[tuple[asyncio.subprocess.Process, str, list[str]]]:
    """Run `fal-realtime demo --web --port 0`; yield it, the page URL, and its first lines."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "fal_realtime",
        "demo",
        "--web",
        "--port",
        "0",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=CHILD_ENV,
    )
    assert proc.stdout is not None and proc.stderr is not None
    lines: list[str] = []
    try:
        async with asyncio.timeout(CHILD_WAIT):
            while not lines or not lines[-1].startswith("open it in a browser"):
                line = await proc.stdout.readline()
                if not line:
                    raise AssertionError((await proc.stderr.read()).decode())
                lines.append(line.decode().rstrip("\n"))
        url = next(m.group(1) for line in lines if (m := PLAYGROUND.match(line)))
        yield proc, url, lines
    finally:
        await _stop(proc, signal.SIGINT)


@contextlib.asynccontextmanager
async def chromium(url: str, profile: Path, *extra_args: str) -> AsyncIterator[DevTools]:
    """Open ``url`` in headless Chromium (with ``extra_args``); yield a DevTools client."""
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
                yield devtools
                with contextlib.suppress(AssertionError, aiohttp.ClientError):
                    await devtools.call("Browser.close")
    finally:
        await _stop(proc)


def _demo_seed(prompt: str) -> int:
    """Return the seed the demo app derives from ``prompt`` (no seed in the input)."""
    return int.from_bytes(hashlib.sha256(prompt.encode()).digest()[:4], "big")


async def _playground_stats(url: str) -> dict[str, int]:
    async with aiohttp.ClientSession() as http, asyncio.timeout(WAIT):
        async with http.get(f"{url}stats") as response:
            stats: dict[str, int] = await response.json()
            return stats


async def test_usr_web_1_typing_in_the_playground_draws_images(tmp_path: Path) -> None:
    """USR-WEB-1: in Chromium, typing a prompt in the playground shows its image and stats;
    closing the tab closes its relay; Ctrl-C exits 0."""
    async with demo_web() as (proc, url, lines):
        assert lines[0].startswith("fal-realtime gateway listening on http://127.0.0.1:")
        async with chromium(url, tmp_path / "profile") as page:
            await page.call(
                "Emulation.setDeviceMetricsOverride",
                width=WINDOW[0],
                height=WINDOW[1],
                deviceScaleFactor=1,
                mobile=False,
            )
            await page.wait_until(
                "document.getElementById('stats')?.textContent.startsWith('sent 0')",
                "connected stats line",
            )
            await page.evaluate("document.getElementById('prompt').focus()")
            for char in PROMPT:  # one input event per key, as a user types
                await page.call("Input.insertText", text=char)
            # Latest wins: the last input is always sent, so the last image is the whole prompt's.
            caption = await page.wait_until(
                f"""(() => {{
                    const img = document.querySelector('#canvas img');
                    const caption = document.getElementById('caption').textContent;
                    return img && img.complete && img.naturalWidth > 0
                        && img.src.startsWith('data:image/png;base64,')
                        && caption.endsWith('seed {_demo_seed(PROMPT)}') && caption;
                }})()""",
                "image of the whole prompt",
            )
            assert caption.startswith("128×72 · ")
            stats_text = await page.evaluate("document.getElementById('stats').textContent")
            match = STATS.match(stats_text)
            assert match, stats_text
            sent, coalesced, received = map(int, match.groups()[:3])
            assert received >= 1
            assert sent + coalesced == len(PROMPT)  # every keystroke: sent or superseded
            assert received == sent
            assert await page.evaluate("document.getElementById('error').textContent") == ""
            shot = await page.call("Page.captureScreenshot", format="png")
            png = base64.b64decode(shot["data"])
            screenshot = tmp_path / "playground.png"
            screenshot.write_bytes(png)
            if os.environ.get("FAL_RT_UPDATE_SCREENSHOT") == "1":
                shutil.copyfile(screenshot, DOCS_SCREENSHOT)
            assert png[:8] == b"\x89PNG\r\n\x1a\n"
            assert (await _playground_stats(url)) == {"tabs": 1, "relays": 1}
            # Leaving the page closes the tab's socket, and with it the relay connection.
            await page.call("Page.navigate", url="about:blank")
            async with asyncio.timeout(WAIT):
                while (await _playground_stats(url)) != {"tabs": 0, "relays": 0}:  # noqa: ASYNC110
                    await asyncio.sleep(50 * MS)
        await _stop(proc, signal.SIGINT)
        assert proc.stdout is not None and proc.stderr is not None
        out, err = (await proc.stdout.read()).decode(), (await proc.stderr.read()).decode()
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    assert "playground stopped" in out
