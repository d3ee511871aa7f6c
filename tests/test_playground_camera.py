"""USR-WEB-CAMERA: the playground's camera page in Chromium with a fake camera device.

Chromium's ``--use-fake-device-for-media-stream`` gives ``getUserMedia`` a synthetic moving
picture and ``--use-fake-ui-for-media-stream`` grants it without a prompt. The frames go
browser → playground WebSocket → this package's client → the gateway's image-to-image app
→ back to the page, which shows the camera and the answers side by side.
"""

from __future__ import annotations

import asyncio
import io
import re
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from PIL import Image

from fal_realtime.playground import CAMERA_PAGE_PATH, serve_playground
from fal_realtime.server import RunningGateway

from .browser_tools import CHROMIUM, WAIT, chromium, demo_web, leave_page, needs_chromium, stop_demo

ROOT = Path(__file__).resolve().parent.parent
DOCS_SCREENSHOT = ROOT / "docs" / "playground-camera.png"
FAKE_CAMERA = ("--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream")
STATS = re.compile(
    r"^frames (\d+) · sent (\d+) · coalesced (\d+) · received (\d+) · last latency ([\d.]+) ms$"
)
CAMERA_PAGE = re.compile(r"^camera page: (http://127\.0\.0\.1:\d+/playground/camera)$")


@needs_chromium
async def test_usr_web_camera_1_fake_camera_frames_come_back_side_by_side(
    tmp_path: Path,
) -> None:
    """USR-WEB-CAMERA-1: in Chromium, fake-camera frames come back as images beside it."""
    assert CHROMIUM.exists()
    async with demo_web() as (proc, _url, lines):
        url = next(m.group(1) for line in lines if (m := CAMERA_PAGE.match(line)))
        async with chromium(url, tmp_path / "profile", *FAKE_CAMERA) as page:
            await page.wait_until(
                "document.getElementById('camera')?.videoWidth > 0", "camera picture"
            )
            # A few answers, so that the page has shown several frames' results.
            await page.wait_until(
                """(() => {
                    const img = document.getElementById('result');
                    const m = document.getElementById('stats').textContent
                        .match(/received (\\d+)/);
                    return img && img.complete && img.naturalWidth > 0
                        && img.src.startsWith('blob:') && m && Number(m[1]) >= 5;
                })()""",
                "five results from the camera",
            )
            size = await page.evaluate(
                "[document.getElementById('result').naturalWidth,"
                " document.getElementById('result').naturalHeight]"
            )
            assert size == [320, 240]
            stats_text = await page.evaluate("document.getElementById('stats').textContent")
            match = STATS.match(stats_text)
            assert match, stats_text
            frames, sent, coalesced, received = map(int, match.groups()[:4])
            assert 1 <= received <= sent and sent + coalesced <= frames
            assert await page.evaluate("document.getElementById('error').textContent") == ""
            # Side by side: the camera's pane and the answer's pane, left and right.
            left, right = await page.evaluate(
                "[document.getElementById('camera').getBoundingClientRect().left,"
                " document.getElementById('result').getBoundingClientRect().left]"
            )
            assert left < right
            await page.screenshot(tmp_path / "playground-camera.png", docs=DOCS_SCREENSHOT)
            await leave_page(page, f"{url}/stats")
        await stop_demo(proc)


@pytest.fixture
async def playground() -> AsyncIterator[RunningGateway]:
    """Serve the playground (gateway, demo apps, both pages) on a free port."""
    async with serve_playground(port=0) as running:
        yield running


async def test_usr_web_camera_2_relay_answers_frames_with_jpeg_and_stats(
    playground: RunningGateway, http: aiohttp.ClientSession
) -> None:
    """USR-WEB-CAMERA-2: a JPEG frame comes back as the answer's JPEG; bad settings refused."""
    async with http.get(f"{playground.url}{CAMERA_PAGE_PATH}") as response:
        assert response.status == 200 and "getUserMedia" in await response.text()
    ws = await http.ws_connect(f"{playground.ws_url}{CAMERA_PAGE_PATH}/ws")
    try:
        async with asyncio.timeout(WAIT):
            assert (await ws.receive_json())["stats"]["sent"] == 0
            await ws.send_str('{"prompt": "a charcoal sketch", "strength": 2}')
            error = await ws.receive_json()
            assert error["code"] == "INVALID_INPUT" and "strength" in error["message"]
            await ws.send_str('{"prompt": "a charcoal sketch", "strength": 0.8}')
            frame = io.BytesIO()
            Image.new("RGB", (64, 48), (10, 200, 30)).save(frame, format="JPEG")
            await ws.send_bytes(frame.getvalue())
            answer = await ws.receive()
            assert answer.type == aiohttp.WSMsgType.BINARY
            with Image.open(io.BytesIO(answer.data)) as image:
                assert image.format == "JPEG" and image.size == (64, 48)
            stats = (await ws.receive_json())["stats"]
            assert (stats["frames"], stats["sent"], stats["received"]) == (1, 1, 1)
    finally:
        await ws.close()


async def test_usr_web_camera_3_cross_origin_sockets_are_refused(
    playground: RunningGateway, http: aiohttp.ClientSession
) -> None:
    """USR-WEB-CAMERA-3: only the page itself may drive the camera relay (it spends the key)."""
    with pytest.raises(aiohttp.WSServerHandshakeError) as info:
        await http.ws_connect(
            f"{playground.ws_url}{CAMERA_PAGE_PATH}/ws", origin="http://evil.example"
        )
    assert info.value.status == 403
