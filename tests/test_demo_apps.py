"""Tests for the demo apps' handlers, served by aiohttp on real sockets without a gateway."""

from __future__ import annotations

import base64
import itertools
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, cast

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from fal_realtime.server.demo import (
    any_llm_app,
    echo_http_handler,
    echo_realtime,
    flux_http_handler,
    flux_realtime,
    register_demo_apps,
)
from fal_realtime.server.demo_streams import live_caption, summarize
from fal_realtime.server.llm import answer, stream_outputs
from fal_realtime.server.media import I2I_APPS, VIDEO_APPS, ImageToImage, VideoPreview

MS = 0.001
PROMPT = "What is the meaning of life? Respond in 9 words"


async def serve(app: web.Application) -> AsyncIterator[TestClient[web.Request, web.Application]]:
    """Serve ``app`` on 127.0.0.1 port 0 and yield a client for it."""
    async with TestClient(TestServer(app, host="127.0.0.1", port=0)) as client:
        yield client


def single_handler_app(handler: Callable[[web.Request], Any]) -> web.Application:
    """Wrap one handler answering every path, as the gateway hosts it."""
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    return app


def parse_sse(body: bytes) -> list[tuple[str, dict[str, Any]]]:
    """Return (event type, decoded JSON data) for each event of a complete SSE body."""
    events = []
    for block in body.decode().split("\n\n"):
        if not block:
            continue
        fields = dict(line.split(": ", 1) for line in block.split("\n"))
        events.append((fields["event"], orjson.loads(fields["data"])))
    return events


@pytest.fixture
async def llm() -> AsyncIterator[TestClient[web.Request, web.Application]]:
    """Serve the any-llm app with no delay between events."""
    async for client in serve(any_llm_app()):
        yield client


@pytest.fixture
async def echo() -> AsyncIterator[TestClient[web.Request, web.Application]]:
    """Serve the echo HTTP handler."""
    async for client in serve(single_handler_app(echo_http_handler)):
        yield client


@pytest.fixture
async def flux() -> AsyncIterator[TestClient[web.Request, web.Application]]:
    """Serve the flux HTTP handler."""
    async for client in serve(single_handler_app(flux_http_handler)):
        yield client


def check_png_data_url(image: dict[str, Any], size: tuple[int, int]) -> None:
    """Check that ``image`` holds a PNG data URL of ``size``."""
    assert image["content_type"] == "image/png"
    assert (image["width"], image["height"]) == size
    prefix = "data:image/png;base64,"
    assert image["url"].startswith(prefix)
    png = base64.b64decode(image["url"][len(prefix) :])
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert (int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")) == size


# -- any-llm -----------------------------------------------------------------------------


async def test_llm_answers_json(llm: TestClient[web.Request, web.Application]) -> None:
    """Answer POST / with the whole output, not partial, no error."""
    resp = await llm.post("/", data=orjson.dumps({"prompt": PROMPT, "model": "m"}))
    assert resp.status == 200
    assert resp.content_type == "application/json"
    body = await resp.json()
    assert body == {"output": answer(PROMPT, model="m"), "partial": False, "error": None}
    assert len(body["output"].split()) == 9


async def test_llm_streams_sse(llm: TestClient[web.Request, web.Application]) -> None:
    """Stream one growing partial event per word, then the full output as final."""
    resp = await llm.post("/stream", data=orjson.dumps({"prompt": PROMPT}))
    assert resp.status == 200
    assert resp.content_type == "text/event-stream"
    body = await resp.read()
    assert b'"partial":true' in body  # compact JSON
    events = parse_sse(body)
    output = answer(PROMPT)
    assert len(events) == len(stream_outputs(output)) + 1 == 10
    assert all(kind == "event" for kind, _ in events)
    *partials, final = [data for _, data in events]
    assert final == {"output": output, "partial": False, "error": None}
    outputs = [data["output"] for data in partials]
    assert all(data["partial"] is True and data["error"] is None for data in partials)
    assert all(len(b) > len(a) and b.startswith(a) for a, b in itertools.pairwise(outputs))
    assert outputs[-1] == output


async def test_llm_stream_is_incremental() -> None:
    """Write events one at a time, pausing stream_delay_s between them."""
    delay = 5 * MS
    async for client in serve(any_llm_app(stream_delay_s=delay)):
        started = time.perf_counter()
        resp = await client.post("/stream", data=orjson.dumps({"prompt": "in 4 words"}))
        first = await resp.content.readuntil(b"\n\n")
        first_at = time.perf_counter() - started
        rest = await resp.content.read()
        total = time.perf_counter() - started
        assert parse_sse(first)[0][1]["partial"] is True
        assert len(parse_sse(first + rest)) == 5
        assert total >= 4 * delay
        assert first_at < total


@pytest.mark.parametrize("path", ["/", "/stream"])
@pytest.mark.parametrize(
    "payload",
    [{}, {"prompt": 3}, {"prompt": None}, ["prompt"], "prompt", {"prompt": "x", "model": 1}],
)
async def test_llm_rejects_bad_input(
    llm: TestClient[web.Request, web.Application], path: str, payload: object
) -> None:
    """Answer 422 with a JSON detail when the prompt (or model) is not a string."""
    resp = await llm.post(path, data=orjson.dumps(payload))
    assert resp.status == 422
    detail = (await resp.json())["detail"]
    assert detail in ("prompt must be a string", "model must be a string")


async def test_llm_rejects_non_json(llm: TestClient[web.Request, web.Application]) -> None:
    """Answer 400 with a JSON detail when the body is not JSON."""
    resp = await llm.post("/", data=b"not json")
    assert resp.status == 400
    assert "detail" in await resp.json()


def test_llm_refuses_a_negative_delay() -> None:
    """Refuse a negative stream_delay_s when building the app."""
    with pytest.raises(ValueError, match="stream_delay_s"):
        any_llm_app(stream_delay_s=-1)


# -- echo --------------------------------------------------------------------------------


@pytest.mark.parametrize("payload", [{"a": [1, 2.5, None]}, [1, "two"], "text", 3, None, True])
async def test_echo_http_echoes_json(
    echo: TestClient[web.Request, web.Application], payload: object
) -> None:
    """Echo any JSON value on any path."""
    for path in ("/", "/some/sub/path"):
        resp = await echo.post(path, data=orjson.dumps(payload))
        assert resp.status == 200
        assert await resp.json() == {"echo": payload}


async def test_echo_http_rejects_non_json(echo: TestClient[web.Request, web.Application]) -> None:
    """Answer 400 with a JSON detail when the body is not JSON."""
    resp = await echo.post("/", data=b"\xff{")
    assert resp.status == 400
    assert resp.content_type == "application/json"
    assert isinstance((await resp.json())["detail"], str)


async def test_echo_realtime_echoes_any_value() -> None:
    """Wrap any decoded input in {"echo": ...}."""
    for value in ({"x": b"bytes"}, [1, 2], "s", None):
        assert await echo_realtime(value) == {"echo": value}


# -- flux --------------------------------------------------------------------------------


async def test_flux_http_answers_an_image(flux: TestClient[web.Request, web.Application]) -> None:
    """Answer 200 with one PNG data URL of the requested size, the seed and timings."""
    payload = {
        "prompt": "a red fox",
        "image_size": "landscape_16_9",
        "seed": 5,
        "num_inference_steps": 4,
    }
    resp = await flux.post("/", data=orjson.dumps(payload))
    assert resp.status == 200
    body = await resp.json()
    assert body["seed"] == 5
    assert isinstance(body["timings"]["inference"], float)
    [image] = body["images"]
    check_png_data_url(image, (128, 72))


@pytest.mark.parametrize(
    "payload",
    [{}, {"prompt": 1}, [], {"prompt": "x", "image_size": "huge"}, {"prompt": "x", "seed": "1"}],
)
async def test_flux_http_rejects_bad_input(
    flux: TestClient[web.Request, web.Application], payload: object
) -> None:
    """Answer 422 with a JSON detail on a bad prompt, size or seed."""
    resp = await flux.post("/", data=orjson.dumps(payload))
    assert resp.status == 422
    assert isinstance((await resp.json())["detail"], str)


async def test_flux_http_rejects_non_json(flux: TestClient[web.Request, web.Application]) -> None:
    """Answer 400 when the body is not JSON."""
    resp = await flux.post("/", data=b"{")
    assert resp.status == 400


async def test_flux_realtime_is_deterministic() -> None:
    """Draw the same image for the same prompt, deriving the seed from the prompt."""
    first = await flux_realtime({"prompt": "a blue whale"})
    second = await flux_realtime({"prompt": "a blue whale"})
    assert first["images"] == second["images"] and first["seed"] == second["seed"]
    check_png_data_url(first["images"][0], (64, 64))
    other = await flux_realtime({"prompt": "a green field"})
    assert other["images"][0]["url"] != first["images"][0]["url"]


async def test_flux_realtime_rejects_a_missing_prompt() -> None:
    """Raise ValueError("prompt must be a string") without a string prompt."""
    for bad in ({}, {"prompt": 3}, "a prompt", None):
        with pytest.raises(ValueError, match="prompt must be a string"):
            await flux_realtime(bad)


# -- wiring ------------------------------------------------------------------------------


class RecordingGateway:
    """Record what register_demo_apps registers, with the Gateway's signatures."""

    def __init__(self) -> None:
        self.realtime_apps: dict[str, Any] = {}
        self.http_apps: dict[str, Any] = {}

    def realtime(self, app_id: str, **options: Any) -> Callable[[Any], Any]:
        """Return a decorator recording the handler of ``app_id``."""

        def decorate(handler: Any) -> Any:
            self.realtime_apps[app_id] = handler
            return handler

        return decorate

    def http_app(self, app_id: str, *, upstream: Any) -> None:
        """Record the upstream of ``app_id``."""
        self.http_apps[app_id] = upstream


def test_register_demo_apps_wires_every_app() -> None:
    """Register echo, flux and any-llm for both protocols; the streams; the media apps."""
    gateway = RecordingGateway()
    register_demo_apps(cast(Any, gateway), stream_delay_s=0.01)
    for app in I2I_APPS:
        assert isinstance(gateway.realtime_apps.pop(app), ImageToImage)
    for app in VIDEO_APPS:
        assert isinstance(gateway.realtime_apps.pop(app), VideoPreview)
    any_llm = gateway.realtime_apps.pop("fal-ai/any-llm")
    assert any_llm.__name__ == "any_llm"
    assert gateway.realtime_apps == {
        "fal-ai/echo": echo_realtime,
        "fal-ai/flux-lora-realtime": flux_realtime,
        "fal-ai/summarize": summarize,
        "fal-ai/live-caption": live_caption,
    }
    assert gateway.http_apps["fal-ai/echo"] is echo_http_handler
    assert gateway.http_apps["fal-ai/flux-lora-realtime"] is flux_http_handler
    assert isinstance(gateway.http_apps["fal-ai/any-llm"], web.Application)
