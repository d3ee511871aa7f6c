"""USR-TEST: LocalGateway, the fixture's engine, used directly (the async context manager)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import ormsgpack
import pytest

import fal_realtime
from fal_realtime._recorder import Recorder
from fal_realtime.testing import LocalGateway

from .gateway_tools import WAIT


def _echo_recording(path: Path, app: str, prompt: str) -> None:
    """Write a one-session recording of app answering ``prompt`` (then TIMEOUT, close 1000)."""
    recorder = Recorder(path, protocol="realtime", app=app, path_option="/realtime")
    recorder.opened(f"ws://h/{app}/realtime?fal_jwt_token=t")
    recorder.sent(ormsgpack.packb({"prompt": prompt}))
    recorder.received(ormsgpack.packb({"images": [prompt]}))
    recorder.received('{"type":"x-fal-error","error":"TIMEOUT","reason":"idle"}')
    recorder.closed(1000, by="server")


def test_usr_test_6_the_environment_is_set_while_running_and_restored(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """USR-TEST-6: FAL_* point at the gateway while it runs; before, they come back as they were."""
    monkeypatch.setenv("FAL_KEY", "the-users-own")
    monkeypatch.setenv("FAL_KEY_ID", "id")
    monkeypatch.delenv("FAL_RUN_HOST", raising=False)
    gateway = LocalGateway(demo=False)
    with pytest.raises(RuntimeError, match="not running"):
        gateway.set_faults("fal-ai/echo", None)
    with gateway:
        assert os.environ["FAL_RUN_HOST"] == os.environ["FAL_WS_RUN_HOST"] == gateway.base_url
        assert os.environ["FAL_REST_URL"] == gateway.http_url
        assert os.environ["FAL_KEY"] == gateway.key
        assert "FAL_KEY_ID" not in os.environ
        assert gateway.gateway.authenticator.check_key(gateway.key) is not None
        assert gateway.key not in repr(gateway)
    assert os.environ["FAL_KEY"] == "the-users-own"
    assert os.environ["FAL_KEY_ID"] == "id"
    assert "FAL_RUN_HOST" not in os.environ


async def test_usr_test_7_async_context_manager_and_strict_replay_give_invalid_input(
    tmp_path: Path,
) -> None:
    """USR-TEST-7: async with LocalGateway(); a strict replay's mismatch is INVALID_INPUT."""
    path = tmp_path / "flux.jsonl"
    _echo_recording(path, "fal-ai/flux-lora-realtime", "a cat")
    errors: asyncio.Queue[fal_realtime.RealtimeError] = asyncio.Queue()
    results: asyncio.Queue[Any] = asyncio.Queue()
    dormant = asyncio.Event()

    def on_state_change(state: str) -> None:
        if state == "dormant":
            dormant.set()

    async with LocalGateway() as gateway:
        gateway.replay("fal-ai/flux-lora-realtime", path, speed=0, strict=True)
        conn = await fal_realtime.connect(
            "fal-ai/flux-lora-realtime",
            on_result=results.put_nowait,
            on_error=errors.put_nowait,
            on_state_change=on_state_change,
        )
        try:
            await conn.send({"prompt": "a cat"})
            assert await asyncio.wait_for(results.get(), WAIT) == {"images": ["a cat"]}
            await asyncio.wait_for(dormant.wait(), WAIT)  # the recorded TIMEOUT and close
            await conn.send({"prompt": "a dog"})  # a new session: the recording's first again
            error = await asyncio.wait_for(errors.get(), WAIT)
        finally:
            await conn.close()
    assert error.code == fal_realtime.INVALID_INPUT
    assert "field 'prompt': recorded 'a cat', got 'a dog'" in str(error)
    assert results.empty()


async def test_usr_test_8_strict_http_over_ws_replay_refuses_with_400(tmp_path: Path) -> None:
    """USR-TEST-8: over HTTP-over-WS, a differing payload gets 400: recv() raises INVALID_INPUT."""
    path = tmp_path / "llm.jsonl"
    recorder = Recorder(path, protocol="http_ws", app="fal-ai/any-llm", path_option="")
    recorder.opened("ws://h/fal-ai/any-llm")
    recorder.sent('{"prompt": "hi"}')
    for frame in (
        '{"type":"start","request_id":"r1","status":200,"headers":'
        '{"content-type":"application/json"}}',
        '{"output":"recorded answer"}',
        '{"type":"end","request_id":"r1","status":200,"time_to_first_byte_seconds":0.5}',
    ):
        recorder.received(frame)
    recorder.closed(1000, by="client")
    async with LocalGateway(demo=False) as gateway:
        gateway.replay("fal-ai/any-llm", path, speed=0, strict=True)
        async with fal_realtime.ws("fal-ai/any-llm") as client:
            response = await client.request({"prompt": "hi"})
            assert response.json() == {"output": "recorded answer"}
            assert response.request_id == "r1"
        async with fal_realtime.ws("fal-ai/any-llm") as client:
            await client.send({"prompt": "hello"})
            with pytest.raises(fal_realtime.RealtimeError) as caught:
                await client.recv()
    assert caught.value.code == fal_realtime.INVALID_INPUT
    assert "field 'prompt': recorded 'hi', got 'hello'" in str(caught.value)
