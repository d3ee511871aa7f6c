"""Ask fal-ai/any-llm three questions over one WebSocket (HTTP over WebSockets).

fal's "HTTP over WebSockets" example, on fal_realtime: open one connection, send the
three requests back to back (pipelined), then read the three answers in the order
they were sent and print each as the JSON body the HTTP endpoint would return
(``output``, ``partial``, ``error``). Try it offline against the local gateway:

    fal-realtime serve --demo        # in another terminal; it prints, among others:
    export FAL_KEY=dev-...:...       #   paste these two lines here
    export FAL_WS_RUN_HOST=ws://127.0.0.1:8080
    python examples/any_llm.py

Against fal itself, export only your FAL_KEY. The client reads both variables
(FAL_WS_RUN_HOST says where to connect; unset, it is ws.fal.run).
"""

from __future__ import annotations

import asyncio
import json
import sys

import fal_realtime

WAIT_S = 60.0


async def run_any_llm() -> None:
    """Send three prompts on one connection, then print the three responses in order."""
    async with fal_realtime.ws("fal-ai/any-llm") as connection:
        for i in range(3):
            await connection.send(
                {
                    "model": "anthropic/claude-3.5-sonnet",
                    "prompt": f"What is the meaning of life? Respond in {i + 1} words.",
                }
            )
        for _ in range(3):
            response = json.loads(await connection.recv())
            print(response)


async def main() -> int:
    """Run the example; return the exit status."""
    try:
        async with asyncio.timeout(WAIT_S):
            await run_any_llm()
    except fal_realtime.RealtimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except TimeoutError:
        print(f"error: no answer within {WAIT_S:.0f} s", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
