"""Stream fal-ai/any-llm/stream answers over one WebSocket (HTTP over WebSockets).

fal's "HTTP over WebSockets" streaming example, on fal_realtime: open one connection,
send two prompts back to back, then read each answer as Server-Sent Events, printing
every event's data (``output`` growing word by word, ``partial`` true until the last)
as it arrives, and a ``----`` line after each answer. Try it offline against the local
gateway:

    fal-realtime serve --demo        # in another terminal; it prints, among others:
    export FAL_KEY=dev-...:...       #   paste these two lines here
    export FAL_WS_RUN_HOST=ws://127.0.0.1:8080
    python examples/any_llm_stream.py

Against fal itself, export only your FAL_KEY. The client reads both variables
(FAL_WS_RUN_HOST says where to connect; unset, it is ws.fal.run).
"""

from __future__ import annotations

import asyncio
import sys

import fal_realtime

WAIT_S = 60.0


async def run_any_llm_stream() -> None:
    """Send two prompts, then print each answer's events as they arrive."""
    async with fal_realtime.ws("fal-ai/any-llm/stream") as connection:
        for i in range(2):
            await connection.send(
                {
                    "model": "anthropic/claude-3.5-sonnet",
                    "prompt": f"What is the meaning of life? Respond in {i + 5} words.",
                }
            )
        for _ in range(2):
            async for event in connection.events():
                print(event["data"], flush=True)
            print("----", flush=True)


async def main() -> int:
    """Run the example; return the exit status."""
    try:
        async with asyncio.timeout(WAIT_S):
            await run_any_llm_stream()
    except fal_realtime.RealtimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except TimeoutError:
        print(f"error: no answer within {WAIT_S:.0f} s", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
