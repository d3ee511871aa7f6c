"""PROXY-WEB: the playground's token-pattern page in Chromium (issue 20).

The page asks the playground's token route (``fal_realtime.proxy``) for a token, then
opens the realtime socket to the gateway itself and speaks msgpack, as fal's demos do
with ``tokenProvider``. The gateway runs in-process; Chromium is driven over CDP with
the helpers of ``test_playground_browser``.
"""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest

from fal_realtime.playground import DIRECT_PATH, TOKEN_PATH, Playground
from fal_realtime.server import Gateway
from fal_realtime.server.demo import register_demo_apps

from .browser_tools import chromium, needs_chromium

pytestmark = needs_chromium
PROMPT = "a red fox in the snow"


@pytest.fixture
def gateway() -> Gateway:
    """Return a gateway with the demo apps and a key of its own (the playground's)."""
    gateway = Gateway(heartbeat_s=None)
    register_demo_apps(gateway)
    return gateway


async def test_proxy_web_1_direct_page_draws_with_a_token_from_the_backend(
    tmp_path: Path, gateway: Gateway, issued: list[list[str]]
) -> None:
    """PROXY-WEB-1: in Chromium, the direct page gets a token from the playground's token
    route, opens the realtime socket to the gateway itself and draws the typed prompt; the
    key never reaches the page and other sites' pages get no token."""
    key = gateway.generated_key
    assert key is not None
    playground = Playground(key=key)
    playground.mount(gateway)
    async with gateway.serve("127.0.0.1", 0) as running:
        playground.base_url = running.ws_url
        url = f"{running.url}{DIRECT_PATH}"
        async with aiohttp.ClientSession() as http:
            evil = {"Origin": "https://evil.example"}
            params = {"app": "fal-ai/flux-lora-realtime/realtime"}
            async with http.get(f"{running.url}{TOKEN_PATH}", params=params, headers=evil) as r:
                assert r.status == 401
            async with http.get(f"{running.url}{TOKEN_PATH}", params={"app": "fal-ai/echo"}) as r:
                assert r.status == 403
        async with chromium(url, tmp_path / "profile") as page:
            await page.wait_until(
                "document.getElementById('status')?.textContent.startsWith('socket idle')",
                "the page's status line",
            )
            caption = await page.type_prompt(PROMPT)
            assert caption.startswith("128×72 · ")
            status = await page.evaluate("document.getElementById('status').textContent")
            assert status.startswith("socket open · tokens 1 · ")
            assert await page.evaluate("document.getElementById('error').textContent") == ""
            html = await page.evaluate("document.documentElement.outerHTML")
            assert key not in html
            await page.screenshot(tmp_path / "direct.png")
    assert issued == [["flux-lora-realtime"]]
