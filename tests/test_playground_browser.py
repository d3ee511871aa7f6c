"""USR-WEB: `fal-realtime demo --web` in a real browser (headless Chromium over CDP).

The test runs the command as a user would, opens the page in Chromium, types a prompt
key by key and waits for the image of the whole prompt. Chromium is driven through the
Chrome DevTools Protocol on a WebSocket with aiohttp (tests/browser_tools.py), so no
browser-automation package is needed. The screenshot is saved under the test's tmp dir;
with FAL_RT_UPDATE_SCREENSHOT=1 it also replaces docs/playground.png (a test run never
changes the repository otherwise).
"""

from __future__ import annotations

import re
from pathlib import Path

from .browser_tools import chromium, demo_web, leave_page, needs_chromium, stop_demo

pytestmark = needs_chromium

ROOT = Path(__file__).resolve().parent.parent
DOCS_SCREENSHOT = ROOT / "docs" / "playground.png"
STATS = re.compile(r"^sent (\d+) · coalesced (\d+) · received (\d+) · last latency ([\d.]+) ms$")
PROMPT = "a tiger eye, close-up, golden light"


async def test_usr_web_1_typing_in_the_playground_draws_images(tmp_path: Path) -> None:
    """USR-WEB-1: in Chromium, typing a prompt in the playground shows its image and stats;
    closing the tab closes its relay; Ctrl-C exits 0."""
    async with demo_web() as (proc, url, lines):
        assert lines[0].startswith("fal-realtime gateway listening on http://127.0.0.1:")
        async with chromium(url, tmp_path / "profile") as page:
            await page.wait_until(
                "document.getElementById('stats')?.textContent.startsWith('sent 0')",
                "connected stats line",
            )
            # Latest wins: the last input is always sent, so the last image is the whole prompt's.
            caption = await page.type_prompt(PROMPT, src_prefix="data:image/png;base64,")
            assert caption.startswith("128×72 · ")
            stats_text = await page.evaluate("document.getElementById('stats').textContent")
            match = STATS.match(stats_text)
            assert match, stats_text
            sent, coalesced, received = map(int, match.groups()[:3])
            assert received >= 1
            assert sent + coalesced == len(PROMPT)  # every keystroke: sent or superseded
            assert received == sent
            assert await page.evaluate("document.getElementById('error').textContent") == ""
            await page.screenshot(tmp_path / "playground.png", docs=DOCS_SCREENSHOT)
            # Leaving the page closes the tab's socket, and with it the relay connection.
            await leave_page(page, f"{url}stats")
        await stop_demo(proc)
