"""USR-WEB: the playground's page and relay, in-process, driven with a plain aiohttp client.

tests/test_playground_browser.py drives the same page in Chromium; these run everywhere.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from fal_realtime.playground import (
    CAMERA_PAGE_PATH,
    DIRECT_PATH,
    PAGE_PATH,
    SOCKET_PATH,
    serve_playground,
)
from fal_realtime.server import RunningGateway

from .conftest import MS

WAIT = 5000 * MS
STYLESHEET_LINK = re.compile(r'<link rel="stylesheet" href="([^"]+)">')
CHILD_ENV = {k: v for k, v in os.environ.items() if k != "PYTHONASYNCIODEBUG"}


@pytest.fixture
async def playground() -> AsyncIterator[RunningGateway]:
    """Serve the playground (gateway, demo apps, page) on a free port."""
    async with serve_playground(port=0) as running:
        yield running


async def _receive(ws: aiohttp.ClientWebSocketResponse, kind: str) -> dict[str, Any]:
    """Return the next message of type ``kind`` (bounded), skipping the others."""
    async with asyncio.timeout(WAIT):
        while True:
            message: dict[str, Any] = await ws.receive_json()
            if message["type"] == kind:
                return message


async def _relays(http: aiohttp.ClientSession, running: RunningGateway) -> dict[str, int]:
    async with asyncio.timeout(WAIT), http.get(f"{running.url}/playground/stats") as response:
        stats: dict[str, int] = await response.json()
        return stats


async def test_usr_web_2_the_relay_coalesces_and_answers_the_last_prompt(
    playground: RunningGateway, http: aiohttp.ClientSession
) -> None:
    """USR-WEB-2: keystrokes through the relay coalesce (latest wins); the last prompt's image
    comes back with stats; closing the socket closes the relay."""
    ws = await http.ws_connect(f"{playground.ws_url}{SOCKET_PATH}")
    try:
        first = await _receive(ws, "stats")
        assert first["stats"]["sent"] == 0
        prompt = "a tiger eye"
        for end in range(1, len(prompt) + 1):
            await ws.send_json({"prompt": prompt[:end], "image_size": "square"})
        last_seed = int.from_bytes(hashlib.sha256(prompt.encode()).digest()[:4], "big")
        while (result := await _receive(ws, "result"))["seed"] != last_seed:
            pass
        assert result["image"].startswith("data:image/png;base64,")
        assert (result["width"], result["height"]) == (64, 64)
        stats = result["stats"]
        assert stats["coalesced"] > 0
        assert stats["sent"] + stats["coalesced"] == len(prompt)
        assert stats["received"] == stats["sent"]
        assert stats["last_latency_ms"] is not None
        assert await _relays(http, playground) == {"tabs": 1, "relays": 1}
    finally:
        await ws.close()
    async with asyncio.timeout(WAIT):
        while await _relays(http, playground) != {"tabs": 0, "relays": 0}:  # noqa: ASYNC110
            await asyncio.sleep(10 * MS)


@pytest.mark.parametrize(
    "bad",
    [
        "not json",
        "[1]",
        '{"prompt": 3}',
        '{"prompt": "x", "image_size": "huge"}',
        '{"prompt": "x", "seed": -1}',
    ],
)
async def test_usr_web_3_bad_input_gets_an_error_and_the_relay_goes_on(
    playground: RunningGateway, http: aiohttp.ClientSession, bad: str
) -> None:
    """USR-WEB-3: an input the relay refuses gets an INVALID_INPUT message; the next one works."""
    async with http.ws_connect(f"{playground.ws_url}{SOCKET_PATH}") as ws:
        await ws.send_str(bad)
        error = await _receive(ws, "error")
        assert error["code"] == "INVALID_INPUT"
        await ws.send_json({"prompt": "fine", "seed": 3})
        assert (await _receive(ws, "result"))["seed"] == 3


async def test_usr_web_4_page_redirect_and_cross_origin_refusal(
    playground: RunningGateway, http: aiohttp.ClientSession
) -> None:
    """USR-WEB-4: the page is HTML with its stats line, /playground redirects to it, and a
    socket from another origin is refused (the relay spends the gateway's key)."""
    async with asyncio.timeout(WAIT):
        async with http.get(f"{playground.url}{PAGE_PATH}") as response:
            assert response.status == 200
            assert response.content_type == "text/html"
            page = await response.text()
        assert 'id="stats"' in page and SOCKET_PATH in page
        async with http.get(f"{playground.url}/playground", allow_redirects=False) as response:
            assert response.status == 302
            assert response.headers["Location"] == PAGE_PATH
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await http.ws_connect(
                f"{playground.ws_url}{SOCKET_PATH}", headers={"Origin": "http://evil.example"}
            )
        assert refused.value.status == 403
        same_origin = {"Origin": playground.url}
        async with http.ws_connect(f"{playground.ws_url}{SOCKET_PATH}", headers=same_origin) as ws:
            assert (await _receive(ws, "stats"))["stats"]["sent"] == 0


async def test_each_page_links_the_shared_stylesheet_it_is_served(
    playground: RunningGateway, http: aiohttp.ClientSession
) -> None:
    """Each page links the pages' one stylesheet, and the playground serves it as text/css."""
    async with asyncio.timeout(WAIT):
        for path in (PAGE_PATH, DIRECT_PATH, CAMERA_PAGE_PATH):
            async with http.get(f"{playground.url}{path}") as response:
                links = STYLESHEET_LINK.findall(await response.text())
            assert len(links) == 1, path
            async with http.get(f"{playground.url}{links[0]}") as response:
                assert response.status == 200 and response.content_type == "text/css"
                assert "--accent:" in await response.text()


def test_usr_web_5_port_without_web_exits_2() -> None:
    """USR-WEB-5: `demo --port P` without --web is a usage error: exit 2, one line."""
    done = subprocess.run(
        [sys.executable, "-m", "fal_realtime", "demo", "--port", "0"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=CHILD_ENV,
    )
    assert done.returncode == 2
    assert done.stderr.strip() == "fal-realtime: error: --port goes with --web"
    assert done.stdout == ""
