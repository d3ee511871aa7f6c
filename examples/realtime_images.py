"""Generate an image in real time with fal-ai/flux-lora-realtime.

fal's realtime example, on fal_realtime: connect, send the prompt, save the image
that comes back, exit. Try it offline against the local gateway:

    fal-realtime serve --demo        # in another terminal; it prints, among others:
    export FAL_KEY=dev-...:...       #   paste these two lines here
    export FAL_RUN_HOST=ws://127.0.0.1:8080
    python examples/realtime_images.py

Against fal itself, export only your FAL_KEY. The client reads both variables
(FAL_RUN_HOST says where to connect; unset, it is fal.run). Images arrive as data
URLs (``sync_mode``) and are saved as ``realtime-image-N.png`` in the current
directory; an image given as a URL is printed instead.
"""

from __future__ import annotations

import asyncio
import base64
import sys
from pathlib import Path
from typing import Any

import fal_realtime

PROMPT = (
    "Extreme close-up of a single tiger eye, direct frontal view. Detailed iris and pupil. "
    "Sharp focus on eye texture and color. Natural lighting to capture authentic eye shine "
    'and depth. The word "FLUX" is painted over it in big, white brush strokes with '
    "visible texture."
)
WAIT_S = 30.0


async def main() -> int:
    """Send the prompt, save the images of the first result; return the exit status."""
    done = asyncio.Event()
    errors: list[fal_realtime.RealtimeError] = []

    async def on_result(result: dict[str, Any]) -> None:
        for n, image in enumerate(result.get("images", []), start=1):
            url: str = image["url"]
            if url.startswith("data:"):
                path = Path(f"realtime-image-{n}.png")
                data = base64.b64decode(url.partition(",")[2])
                await asyncio.to_thread(path.write_bytes, data)
                print(f"saved {path} ({image['width']}x{image['height']}, {len(data)} bytes)")
            else:
                print(url)
        print(f"seed {result.get('seed')}, timings {result.get('timings')}")
        done.set()

    def on_error(error: fal_realtime.RealtimeError) -> None:
        errors.append(error)
        done.set()

    try:
        connection = await fal_realtime.connect(
            "fal-ai/flux-lora-realtime", on_result=on_result, on_error=on_error
        )
        async with connection:
            await connection.send(
                {
                    "prompt": PROMPT,
                    "image_size": "landscape_16_9",
                    "seed": 6252023,
                    "num_inference_steps": 3,
                    "sync_mode": True,
                }
            )
            async with asyncio.timeout(WAIT_S):
                await done.wait()
    except fal_realtime.RealtimeError as exc:
        errors.append(exc)
    except TimeoutError:
        print(f"error: no result within {WAIT_S:.0f} s", file=sys.stderr)
        return 1
    if errors:
        print(f"error: {errors[0]}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
