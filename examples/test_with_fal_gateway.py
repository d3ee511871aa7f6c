"""A user's test file: an app built on fal realtime, tested with the fal_gateway fixture.

No network, no fal key, no GPU: installing fal-realtime gives pytest the ``fal_gateway``
fixture, which runs a local gateway and points FAL_RUN_HOST / FAL_WS_RUN_HOST / FAL_KEY at
it for each test. Run it with pytest and pytest-asyncio (strict or auto mode)::

    pytest examples/test_with_fal_gateway.py

``recordings/flux_fox.jsonl`` was made once with ``record=`` (against the local gateway
here; against fal with your own key in your project: docs/testing.md, "Record once,
replay in CI").
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import pytest

import fal_realtime

RECORDINGS = Path(__file__).parent / "recordings"
WAIT_S = 10.0


# -- the application code under test (normally imported from your package) -------------------


async def first_image(prompt: str) -> dict[str, Any]:
    """Ask fal-ai/flux-lora-realtime for an image of ``prompt``; return the first result."""
    results: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    conn = await fal_realtime.connect("fal-ai/flux-lora-realtime", on_result=results.put_nowait)
    try:
        await conn.send({"prompt": prompt})
        return await asyncio.wait_for(results.get(), WAIT_S)
    finally:
        await conn.close()


async def short_answer(prompt: str) -> str:
    """Ask fal-ai/any-llm (HTTP over WebSockets) for an answer."""
    async with fal_realtime.ws("fal-ai/any-llm") as client:
        response = await client.request({"prompt": prompt})
        return str(response.json()["output"])


# -- the tests ------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_the_demo_app_draws_a_png(fal_gateway: Any) -> None:
    """The demo flux app answers as fal's does: one data-URL PNG per prompt."""
    image = await first_image("a red fox")
    assert image["images"][0]["url"].startswith("data:image/png;base64,")


@pytest.mark.asyncio
async def test_the_demo_llm_counts_words(fal_gateway: Any) -> None:
    """The demo LLM over HTTP-over-WebSockets answers "in N words" with N words."""
    assert len((await short_answer("describe a fox in 4 words")).split()) == 4


def test_a_fake_of_my_own_in_a_sync_test(fal_gateway: Any) -> None:
    """A handler the test registers replaces the app; a sync test runs its own loop."""
    called = threading.Event()  # the handler runs on the gateway's loop: thread-safe only

    @fal_gateway.realtime("fal-ai/flux-lora-realtime")
    async def fake(input: dict[str, Any]) -> dict[str, Any]:
        called.set()
        return {"images": [{"url": f"fake://{input['prompt']}"}]}

    assert asyncio.run(first_image("x")) == {"images": [{"url": "fake://x"}]}
    assert called.is_set()


def test_the_app_survives_a_refused_handshake(fal_gateway: Any) -> None:
    """With the next handshake refused (503), the client retries and still gets its image."""
    fal_gateway.set_faults("fal-ai/flux-lora-realtime", "reject_status=503;connections=1")
    assert asyncio.run(first_image("a red fox"))["images"]


def test_a_recorded_session_replays_exactly(fal_gateway: Any) -> None:
    """The committed recording is served as the app: the recorded answer, byte for byte."""
    recording = RECORDINGS / "flux_fox.jsonl"
    fal_gateway.replay("fal-ai/flux-lora-realtime", recording, speed=0)
    image = asyncio.run(first_image("a red fox"))
    assert image["images"][0]["url"].startswith("data:image/png;base64,")


def test_a_strict_replay_names_the_input_that_changed(fal_gateway: Any) -> None:
    """In strict mode, a prompt the recording did not have is INVALID_INPUT naming the field."""
    recording = RECORDINGS / "flux_fox.jsonl"
    fal_gateway.replay("fal-ai/flux-lora-realtime", recording, speed=0, strict=True)

    async def send_a_cat() -> fal_realtime.RealtimeError:
        errors: asyncio.Queue[fal_realtime.RealtimeError] = asyncio.Queue()
        conn = await fal_realtime.connect(
            "fal-ai/flux-lora-realtime", on_result=print, on_error=errors.put_nowait
        )
        try:
            await conn.send({"prompt": "a cat"})
            return await asyncio.wait_for(errors.get(), WAIT_S)
        finally:
            await conn.close()

    error = asyncio.run(send_a_cat())
    assert error.code == fal_realtime.INVALID_INPUT
    assert "field 'prompt': recorded 'a red fox', got 'a cat'" in str(error)
