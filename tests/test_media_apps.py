"""GW-MEDIA: the gateway's image and video apps on the wire, as fal's camera demos use them.

fal's demo (apps/demo-nextjs-app-router, the camera page) sends ``{prompt, image_bytes:
Uint8Array, strength, seed, num_inference_steps, sync_mode}`` with ``throttleInterval: 0`` and
reads ``result.images[0].content``; SPEC §2.1 "Media apps" has the whole output map. Every
case runs over real sockets: a raw aiohttp client (to see the msgpack types as sent), this
package's client, and fal's official Python client.
"""

from __future__ import annotations

import asyncio
import base64
import io
import logging
import struct
import sys
import zlib
from pathlib import Path
from typing import Any

import aiohttp
import fal_client
import ormsgpack
import pytest
from PIL import Image, ImageChops, ImageDraw, ImageStat

import fal_realtime
from fal_realtime import ConnectionState
from fal_realtime.server import Gateway, RunningGateway
from fal_realtime.server.media import I2I_APPS, PILLOW_HINT, VIDEO_APPS, register_media_apps
from fal_realtime.server.realtime_wire import SessionWire

from .callbacks import Recorder
from .conftest import KEY
from .gateway_tools import (
    WAIT,
    FramesRead,
    open_realtime,
    read_until_closed,
    receive_frame,
    send_msgpack,
)
from .stream_tools import streaming_connect
from .test_interop_fal_client import fal_async, tls_gateway  # noqa: F401 (fixtures)

DATA = Path(__file__).resolve().parent / "data"
#: The keys and types of an image result (fal's demos read ``images[0].content``).
RESULT_TYPES = {
    "images": list,
    "timings": dict,
    "seed": int,
    "num_inference_steps": int,
    "request_id": str,
    "nsfw_content_detected": list,
}
IMAGE_TYPES = {"content": bytes, "width": int, "height": int, "content_type": str}


def camera_frame(shift: int = 0, *, size: tuple[int, int] = (160, 120), fmt: str = "JPEG") -> bytes:
    """Return a small camera-like frame: a gradient with a disc at ``shift``."""
    image = Image.linear_gradient("L").resize(size).convert("RGB")
    draw = ImageDraw.Draw(image)
    draw.ellipse((20 + shift, 30, 70 + shift, 80), fill=(230, 40, 40))
    out = io.BytesIO()
    image.save(out, format=fmt)
    return out.getvalue()


def png_header(width: int, height: int) -> bytes:
    """Return a PNG that claims ``width`` x ``height`` pixels and holds none (a bomb's header)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(data, zlib.crc32(kind))
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


def demo_input(**extra: Any) -> dict[str, Any]:
    """Return the input fal's camera demo sends, with ``extra`` laid over it."""
    value: dict[str, Any] = {
        "prompt": "a moonlit forest, oil painting",
        "image_bytes": camera_frame(),
        "strength": 0.6,
        "seed": 42,
        "num_inference_steps": 2,
        "sync_mode": True,
    }
    value.update(extra)
    return value


def decoded(content: bytes) -> Image.Image:
    """Decode ``content`` (fails the test unless it is a JPEG)."""
    image = Image.open(io.BytesIO(content))
    assert image.format == "JPEG"
    image.load()
    return image


def mean_difference(a: bytes, b: bytes) -> float:
    """Return the mean absolute pixel difference (0..255) of two images of one size."""
    diff = ImageChops.difference(
        decoded(a).convert("RGB"), Image.open(io.BytesIO(b)).convert("RGB")
    )
    return sum(ImageStat.Stat(diff).mean) / 3


def assert_image_result(result: Any, *, size: tuple[int, int]) -> bytes:
    """Check every field's type in an image result; return the image bytes."""
    assert isinstance(result, dict) and set(result) >= set(RESULT_TYPES), result
    for key, kind in RESULT_TYPES.items():
        assert isinstance(result[key], kind), (key, result[key])
    assert result["nsfw_content_detected"] == [False]
    assert isinstance(result["timings"].get("inference"), float)
    (image,) = result["images"]
    assert set(image) == set(IMAGE_TYPES)
    for key, kind in IMAGE_TYPES.items():
        assert isinstance(image[key], kind), (key, image[key])
    assert image["content_type"] == "image/jpeg"
    assert (image["width"], image["height"]) == size
    assert decoded(image["content"]).size == size
    content: bytes = image["content"]
    return content


async def ask(
    http: aiohttp.ClientSession, running: RunningGateway, app: str, value: Any, query: str = ""
) -> Any:
    """Send one input on a fresh raw socket; return the first binary answer."""
    ws = await open_realtime(http, running, app, query=query)
    try:
        await send_msgpack(ws, value)
        kind, result = await receive_frame(ws)
        assert kind == "binary", result
        return result
    finally:
        await ws.close()


@pytest.mark.parametrize("app", list(I2I_APPS))
async def test_gw_media_1_image_apps_answer_fal_demo_input_with_jpeg_bytes(
    running: RunningGateway, http: aiohttp.ClientSession, app: str
) -> None:
    """GW-MEDIA-1: each image app answers fal's camera-demo input with the full map, JPEG bin."""
    value = demo_input(request_id="req-1")
    result = await ask(http, running, app, value)
    # ormsgpack gives bytes only for msgpack bin (a str would have come back as str).
    assert_image_result(result, size=(160, 120))
    assert (result["seed"], result["num_inference_steps"], result["request_id"]) == (
        42,
        2,
        "req-1",
    )


async def test_gw_media_2_deterministic_in_prompt_and_seed_and_unlike_the_input(
    running: RunningGateway, http: aiohttp.ClientSession
) -> None:
    """GW-MEDIA-2: same prompt, seed and image give the same bytes; either changed, others."""
    app = "fal-ai/fast-turbo-diffusion/image-to-image"
    first = await ask(http, running, app, demo_input())
    again = await ask(http, running, app, demo_input())
    other_seed = await ask(http, running, app, demo_input(seed=43))
    other_prompt = await ask(http, running, app, demo_input(prompt="a desert at noon"))
    content = [r["images"][0]["content"] for r in (first, again, other_seed, other_prompt)]
    assert content[0] == content[1]
    assert len({content[0], content[2], content[3]}) == 3
    # Visibly different from the camera frame it was given (mean per-channel difference).
    assert mean_difference(content[0], camera_frame()) > 10
    weaker = await ask(http, running, app, demo_input(strength=0.1))
    weak_diff = mean_difference(weaker["images"][0]["content"], camera_frame())
    assert weak_diff < mean_difference(content[0], camera_frame())


async def test_gw_media_3_png_bytes_and_data_uri_are_accepted(
    running: RunningGateway, http: aiohttp.ClientSession
) -> None:
    """GW-MEDIA-3: PNG bytes work too, and image_url as a data URI equals the same bytes."""
    app = "fal-ai/lcm-sd15-i2i"
    png = camera_frame(fmt="PNG")
    by_bytes = await ask(http, running, app, demo_input(image_bytes=png))
    uri = "data:image/png;base64," + base64.b64encode(png).decode()
    no_bytes = demo_input(image_url=uri)
    del no_bytes["image_bytes"]
    by_url = await ask(http, running, app, no_bytes)
    assert_image_result(by_url, size=(160, 120))
    assert by_url["images"][0]["content"] == by_bytes["images"][0]["content"]
    sized = await ask(http, running, app, demo_input(width=96, height=64))
    assert_image_result(sized, size=(96, 64))


async def test_gw_media_4_text_to_image_without_an_image(
    running: RunningGateway, http: aiohttp.ClientSession
) -> None:
    """GW-MEDIA-4: sdxl-turbo-realtime without an image draws one from prompt and seed."""
    app = "fal-ai/sdxl-turbo-realtime"
    value = {"prompt": "a red fox", "seed": 7, "width": 128, "height": 96}
    first = await ask(http, running, app, value)
    content = assert_image_result(first, size=(128, 96))
    assert (await ask(http, running, app, value))["images"][0]["content"] == content
    assert first["num_inference_steps"] == I2I_APPS[app]
    default = await ask(http, running, app, {"prompt": "a red fox"})
    assert_image_result(default, size=(512, 512))


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"image_bytes": b"not an image at all"}, "image is not a JPEG or PNG image"),
        (
            {"image_bytes": "aGVsbG8="},
            "image_bytes must be JPEG or PNG bytes (msgpack bin), got str",
        ),
        (
            {"image_bytes": camera_frame(size=(4100, 4100))},
            "pixels this app takes: 4100x4100",
        ),
        ({"image_bytes": png_header(30_000, 10_000)}, "more than the 16777216 pixels"),
        ({"width": "512", "height": 512}, "width must be an integer, got str"),
        ({"width": 99_999, "height": 512}, "width must be in 16..2048"),
        ({"strength": 2}, "strength must be in 0..1"),
        ({"prompt": ["a", "list"]}, "prompt must be a string, got list"),
        ({"image_url": "https://example.com/x.jpg"}, "image_url must be a base64 data URI"),
    ],
)
async def test_gw_media_5_bad_input_is_internal_error_then_close_1000(
    running: RunningGateway, http: aiohttp.ClientSession, change: dict[str, Any], reason: str
) -> None:
    """GW-MEDIA-5: bad image input: x-fal-error INTERNAL_ERROR with a one-line reason, 1000."""
    value = demo_input(**change)
    if "image_url" in change:
        del value["image_bytes"]
    ws = await open_realtime(http, running, "fal-ai/lcm-sd15-i2i")
    await send_msgpack(ws, value)
    transcript = await read_until_closed(ws)
    ((kind, frame),) = transcript.frames
    assert kind == "text" and frame["type"] == "x-fal-error", frame
    assert frame["error"] == "INTERNAL_ERROR"
    assert reason in frame["reason"] and "\n" not in frame["reason"]
    assert "Traceback" not in frame["reason"]
    assert transcript.close_code == 1000
    # The gateway serves the next session as before.
    assert_image_result(
        await ask(http, running, "fal-ai/lcm-sd15-i2i", demo_input()), size=(160, 120)
    )


@pytest.mark.parametrize("app", VIDEO_APPS)
async def test_gw_media_6_video_preview_streams_frames_then_timeout_close_1000(
    running: RunningGateway, http: aiohttp.ClientSession, app: str
) -> None:
    """GW-MEDIA-6: a video app sends num_frames JPEG frames, then TIMEOUT and close 1000."""
    ws = await open_realtime(http, running, app)
    await send_msgpack(
        ws, {"prompt": "waves", "seed": 3, "num_frames": 4, "fps": 60, "request_id": "v1"}
    )
    transcript = await read_until_closed(ws)
    frames = transcript.values("binary")
    assert [f["frame_index"] for f in frames] == [0, 1, 2, 3]
    contents = [assert_image_result(f, size=(384, 256)) for f in frames]
    assert len(set(contents)) == 4  # the picture moves
    assert all((f["num_frames"], f["fps"], f["request_id"]) == (4, 60.0, "v1") for f in frames)
    assert transcript.kinds() == ["binary"] * 4 + ["text"]
    assert transcript.values("text")[0]["error"] == "TIMEOUT"
    assert transcript.close_code == 1000


async def test_gw_media_7_video_preview_frames_and_rate_set_at_registration(
    http: aiohttp.ClientSession,
) -> None:
    """GW-MEDIA-7: registration sets a preview's frames and rate; an image input sets its size."""
    gw = Gateway(keys=[KEY], heartbeat_s=None)
    register_media_apps(gw, num_frames=2, fps=50)
    async with gw.serve(port=0) as own:
        ws = await open_realtime(http, own, "fal-ai/ltx-video-realtime")
        await send_msgpack(ws, demo_input())
        transcript = await read_until_closed(ws)
    frames = transcript.values("binary")
    assert [(f["frame_index"], f["num_frames"], f["fps"]) for f in frames] == [
        (0, 2, 50.0),
        (1, 2, 50.0),
    ]
    assert_image_result(frames[0], size=(160, 120))
    assert transcript.close_code == 1000


class ModelGate:
    """Stand in for the simulated model time: record each wait, hold the first until released."""

    def __init__(self) -> None:
        self.waits: list[float] = []
        self.busy = asyncio.Event()
        self.release = asyncio.Event()

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        gate = self

        async def simulate_inference(wire: SessionWire) -> None:
            if wire.faults.inference_ms:
                gate.waits.append(wire.faults.inference_ms)
                gate.busy.set()
                await gate.release.wait()

        monkeypatch.setattr(SessionWire, "simulate_inference", simulate_inference)


async def test_gw_media_8_simulated_inference_per_connection_and_per_app(
    gateway: Gateway,
    running: RunningGateway,
    http: aiohttp.ClientSession,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """GW-MEDIA-8: inference_ms holds the model per input (query or per app); inputs queue."""
    gate = ModelGate()
    gate.install(monkeypatch)
    frames = FramesRead(monkeypatch)
    app = "fal-ai/fast-lcm-diffusion/image-to-image"
    # Per connection: the query flag; max_buffering=1 keeps the newest input while busy.
    ws = await open_realtime(http, running, app, query="fal_faults=inference_ms=80&max_buffering=1")
    await send_msgpack(ws, demo_input(request_id="0"))
    async with asyncio.timeout(WAIT):
        await gate.busy.wait()
    for i in range(1, 4):
        await send_msgpack(ws, demo_input(request_id=str(i)))
    await frames.until(4)
    assert gate.waits == [80.0]  # the model is still on input 0
    gate.release.set()
    answered = [(await receive_frame(ws))[1]["request_id"] for _ in range(2)]
    assert answered == ["0", "3"]
    # A barrier: the next answer is the next input's, so inputs 1 and 2 were dropped.
    await send_msgpack(ws, demo_input(request_id="barrier"))
    assert (await receive_frame(ws))[1]["request_id"] == "barrier"
    await ws.close()
    # Another connection without the flag: no simulated time.
    assert_image_result(await ask(http, running, app, demo_input()), size=(160, 120))
    assert gate.waits == [80.0] * 3  # inputs 3 and barrier had theirs; none for this connection
    # Per app, for every new connection, and a connection's own value laid over it.
    gateway.set_faults(app, "inference_ms=250")
    assert_image_result(await ask(http, running, app, demo_input()), size=(160, 120))
    await ask(http, running, app, demo_input(), query="fal_faults=inference_ms=30")
    assert gate.waits == [80.0, 80.0, 80.0, 250.0, 30.0]


async def test_gw_media_9_this_client_sends_bytes_and_gets_bytes(running: RunningGateway) -> None:
    """GW-MEDIA-9: fal_realtime.connect with default options: image bytes out, JPEG bytes back."""
    results: asyncio.Queue[Any] = asyncio.Queue()
    conn = await fal_realtime.connect(
        "fal-ai/fast-turbo-diffusion/image-to-image",
        on_result=results.put_nowait,
        base_url=running.ws_url,
        key=KEY,
    )
    async with conn:
        await conn.send(demo_input(request_id="mine"))
        async with asyncio.timeout(WAIT):
            result = await results.get()
    assert_image_result(result, size=(160, 120))
    assert result["request_id"] == "mine"


async def test_gw_media_10_video_preview_on_this_client_ends_dormant_without_error(
    running: RunningGateway,
) -> None:
    """GW-MEDIA-10: this client gets every preview frame, then TIMEOUT: dormant, no error."""
    seen = Recorder()
    conn = await streaming_connect(running, "fal-ai/cogvideox-realtime", seen)
    async with conn:
        await conn.send({"prompt": "sunrise", "num_frames": 3, "fps": 60})
        await seen.until(lambda: seen.dormant_times() == 1)
    assert [r["frame_index"] for r in seen.results] == [0, 1, 2]
    assert all(isinstance(r["images"][0]["content"], bytes) for r in seen.results)
    assert seen.errors == [] and ConnectionState.DORMANT in seen.states


async def test_gw_media_11_fal_client_sends_bytes_and_reads_content(
    fal_async: fal_client.AsyncClient,  # noqa: F811 (the imported fixture)
) -> None:
    """GW-MEDIA-11: fal-client's realtime sends image_bytes as bin and reads images[0].content."""
    async with (
        asyncio.timeout(WAIT),
        fal_async.realtime("fal-ai/fast-lcm-diffusion/image-to-image") as conn,
    ):
        await conn.send(demo_input(request_id="fal-client"))
        result = await conn.recv()
        await conn.send(demo_input(request_id="again"))
        again = await conn.recv()
    content = assert_image_result(result, size=(160, 120))
    assert result["request_id"] == "fal-client" and again is not None
    assert again["images"][0]["content"] == content  # same prompt and seed


async def test_gw_media_12_without_pillow_the_apps_say_how_to_get_it(
    running: RunningGateway,
    http: aiohttp.ClientSession,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """GW-MEDIA-12: no Pillow: INTERNAL_ERROR naming the extra, close 1000; one line at start."""
    value = demo_input()
    monkeypatch.setitem(sys.modules, "PIL", None)  # import PIL now fails, as when missing
    for app in ("fal-ai/lcm-sd15-i2i", "fal-ai/ltx-video-realtime"):
        ws = await open_realtime(http, running, app)
        await send_msgpack(ws, value)
        transcript = await read_until_closed(ws)
        ((_, frame),) = transcript.frames
        assert frame["error"] == "INTERNAL_ERROR" and PILLOW_HINT in frame["reason"], frame
        assert frame["reason"].startswith(f"{app} needs Pillow")
        assert transcript.close_code == 1000
    with caplog.at_level(logging.WARNING, logger="fal_realtime.server.media"):
        register_media_apps(Gateway(keys=[KEY]))
    (line,) = [r.getMessage() for r in caplog.records if r.name == "fal_realtime.server.media"]
    assert "need Pillow" in line and PILLOW_HINT in line


async def test_gw_media_13_frames_are_msgpack_bin_on_the_wire(
    running: RunningGateway, http: aiohttp.ClientSession
) -> None:
    """GW-MEDIA-13: the result frame carries the image as msgpack bin (0xc4..0xc6), not str."""
    ws = await open_realtime(http, running, "fal-ai/lcm-sd15-i2i")
    try:
        await send_msgpack(ws, demo_input())
        async with asyncio.timeout(WAIT):
            msg = await ws.receive()
    finally:
        await ws.close()
    assert msg.type == aiohttp.WSMsgType.BINARY
    content = ormsgpack.unpackb(msg.data)["images"][0]["content"]
    # The bytes follow a bin header: bin 16 (0xc5) or bin 32 (0xc6) plus the length.
    at = msg.data.find(content)
    header = msg.data[at - 5 : at] if len(content) >= 65536 else msg.data[at - 3 : at]
    assert header[0] in (0xC5, 0xC6)


@pytest.mark.parametrize("app", list(I2I_APPS))
async def test_gw_media_14_the_bytes_fal_js_client_sends_are_answered(
    running: RunningGateway, http: aiohttp.ClientSession, app: str
) -> None:
    """GW-MEDIA-14: the camera-demo input as fal's JS client encodes it, verbatim, is answered."""
    # Recorded with @msgpack/msgpack 3.1.3, the encoder of @fal-ai/client 1.10.1
    # (tests/data/record_fal_js_camera_input.mjs): Uint8Array -> bin, 0.6 -> float 64.
    recorded = (DATA / "fal_js_camera_input.msgpack").read_bytes()
    value = ormsgpack.unpackb(recorded)
    assert isinstance(value["image_bytes"], bytes) and isinstance(value["strength"], float)
    ws = await open_realtime(http, running, app)
    try:
        await ws.send_bytes(recorded)
        kind, result = await receive_frame(ws)
    finally:
        await ws.close()
    assert kind == "binary"
    content = assert_image_result(result, size=(160, 120))
    # The same input sent by a Python client gets the same image.
    assert (await ask(http, running, app, value))["images"][0]["content"] == content
