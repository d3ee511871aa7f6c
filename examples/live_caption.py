"""Caption text as it streams in, with the bidirectional demo app fal-ai/live-caption.

Each chunk is sent as soon as it is "heard" (every input kept: ``coalesce=False``, no
throttle); a caption comes back for each, the line so far, and a final one when a
sentence ends. Try it offline against the local gateway:

    fal-realtime serve --demo        # in another terminal; it prints, among others:
    export FAL_KEY=dev-...:...       #   paste these two lines here
    export FAL_RUN_HOST=ws://127.0.0.1:8080
    python examples/live_caption.py

The last chunk carries ``"done": true``: the app finishes the line and ends the session.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import fal_realtime

CHUNKS = ["good evening", "and welcome.", "tonight we talk", "about tigers!", "they hunt"]
WAIT_S = 30.0


async def main() -> int:
    """Stream the chunks, print every caption; return the exit status."""
    finals: list[str] = []
    done = asyncio.Event()
    errors: list[fal_realtime.RealtimeError] = []

    def on_result(result: dict[str, Any]) -> None:
        print(("final:   " if result["final"] else "partial: ") + result["caption"])
        if result["final"]:
            finals.append(result["caption"])
            if len(finals) == 3:  # two sentences, then the line "done" finished
                done.set()

    def on_error(error: fal_realtime.RealtimeError) -> None:
        errors.append(error)
        done.set()

    try:
        connection = await fal_realtime.connect(
            "fal-ai/live-caption",
            on_result=on_result,
            on_error=on_error,
            coalesce=False,
            throttle_interval=0,
        )
        async with connection:
            for chunk in CHUNKS[:-1]:
                await connection.send({"text": chunk})
            await connection.send({"text": CHUNKS[-1], "done": True})
            async with asyncio.timeout(WAIT_S):
                await done.wait()
    except fal_realtime.RealtimeError as exc:
        errors.append(exc)
    except TimeoutError:
        print(f"error: no final caption within {WAIT_S:.0f} s", file=sys.stderr)
        return 1
    if errors:
        print(f"error: {errors[0]}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
