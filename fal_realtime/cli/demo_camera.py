"""The camera part of ``fal-realtime demo``: synthetic frames at 30 fps through an i2i app.

No camera is needed: the frames are a moving scene drawn with Pillow (the ``media`` extra),
sent as JPEG bytes with the client's default options (latest wins), as fal's camera demo
streams a webcam through ``fal-ai/fast-turbo-diffusion/image-to-image``.
"""

from __future__ import annotations

import asyncio
import importlib.util
import io
import math
import statistics
import time
from typing import Any

from ._common import Outcomes

__all__ = ["CAMERA_APP", "camera_available", "demo_camera", "synthetic_frame"]

CAMERA_APP = "fal-ai/fast-turbo-diffusion/image-to-image"
CAMERA_PROMPT = "a watercolour painting of a red ball over a green field"
CAMERA_FPS = 30
CAMERA_SECONDS = 2.0
CAMERA_SIZE = (320, 240)
CAMERA_WAIT_S = 30.0
MEDIA_HINT = "pip install 'fal-realtime[media]'"


def camera_available() -> bool:
    """Tell whether Pillow, which draws the frames, is installed."""
    try:
        return importlib.util.find_spec("PIL") is not None
    except ValueError:  # PIL set to None in sys.modules
        return False


def synthetic_frame(t: float, size: tuple[int, int] = CAMERA_SIZE) -> bytes:
    """Return a JPEG of a moving scene at time ``t`` (s): a gradient and a bouncing ball."""
    from PIL import Image, ImageDraw

    width, height = size
    image = Image.linear_gradient("L").resize(size).convert("RGB")
    x = int((math.sin(t * 1.7) + 1) / 2 * (width - 60)) + 30
    y = int(abs(math.sin(t * 3.1)) * (height - 80)) + 30
    ImageDraw.Draw(image).ellipse((x - 30, y - 30, x + 30, y + 30), fill=(230, 60, 40))
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=80)
    return out.getvalue()


class _Round:
    """Time each result from the send of the frame it answers (matched by request_id)."""

    def __init__(self) -> None:
        self.sent_at: dict[str, float] = {}
        self.latencies_s: list[float] = []
        self.answered: set[str] = set()
        self.outcomes = Outcomes(wait_s=CAMERA_WAIT_S)

    def on_result(self, result: Any) -> None:
        request_id = str(result.get("request_id")) if isinstance(result, dict) else ""
        if request_id in self.sent_at:
            self.latencies_s.append(time.perf_counter() - self.sent_at[request_id])
            self.answered.add(request_id)
        self.outcomes.changed()

    async def wait_for(self, request_id: str) -> None:
        await self.outcomes.wait_for(lambda: request_id in self.answered, "camera result")


async def demo_camera(base_url: str, key: str, *, seconds: float = CAMERA_SECONDS) -> str:
    """Stream ``seconds`` of synthetic frames at 30 fps; return the one-line summary."""
    from ..realtime import connect

    rounds = _Round()
    conn = await connect(
        CAMERA_APP,
        on_result=rounds.on_result,
        on_error=rounds.outcomes.on_error,
        base_url=base_url,
        key=key,
    )
    frames = int(CAMERA_FPS * seconds)
    loop = asyncio.get_running_loop()
    async with conn:
        start = loop.time()
        for i in range(frames):
            if (wait := start + i / CAMERA_FPS - loop.time()) > 0:
                await asyncio.sleep(wait)
            frame = await asyncio.to_thread(synthetic_frame, i / CAMERA_FPS)
            rounds.sent_at[str(i)] = time.perf_counter()
            await conn.send(
                {
                    "prompt": CAMERA_PROMPT,
                    "image_bytes": frame,
                    "strength": 0.6,
                    "seed": 42,
                    "num_inference_steps": 2,
                    "request_id": str(i),
                }
            )
        await rounds.wait_for(str(frames - 1))
        stats = conn.stats
        p50_ms = statistics.median(rounds.latencies_s) * 1000
        return (
            f"camera    {CAMERA_APP}: {frames} frames at {CAMERA_FPS} fps -> sent {stats.sent}, "
            f"coalesced {stats.coalesced}, results {len(rounds.latencies_s)}, "
            f"p50 latency {p50_ms:.0f} ms"
        )
