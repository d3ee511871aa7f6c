"""Bytes in, bytes out (issue 19 item 3): binary payloads over real sockets; fal_realtime.media."""

from __future__ import annotations

import asyncio
import base64
import io
import sys
from typing import Any

import pytest

import fal_realtime
from fal_realtime import INVALID_INPUT, RealtimeError, media
from fal_realtime._protocol.codecs import msgpack_encode
from fal_realtime.server import Gateway, RunningGateway

from .conftest import KEY, MS

WAIT = 5000 * MS
#: 10,240 bytes holding every byte value: no text encoding of it would survive the trip.
IMAGE = bytes(range(256)) * 40
#: Room for the map's keys and the bin headers, far below base64's +33 %.
OVERHEAD = 200


@pytest.fixture
def bytes_echo(gateway: Gateway) -> Gateway:
    """Register test/bytes: answers each input's value types and the input itself."""

    @gateway.realtime("test/bytes")
    async def echo_bytes(value: dict[str, Any]) -> dict[str, Any]:
        return {"types": {k: type(v).__name__ for k, v in value.items()}, "back": value}

    return gateway


async def _round_trip(running: RunningGateway, payload: dict[str, Any], **kwargs: Any) -> Any:
    results: asyncio.Queue[Any] = asyncio.Queue()
    async with await fal_realtime.connect(
        "test/bytes",
        on_result=results.put_nowait,
        base_url=running.ws_url,
        key=KEY,
        throttle_interval=0,
        **kwargs,
    ) as conn:
        await conn.send(payload)
        async with asyncio.timeout(WAIT):
            return await results.get()


async def test_rt_bytes_1_bytes_like_values_go_out_as_bin_and_come_back_as_bytes(
    bytes_echo: Gateway, running: RunningGateway
) -> None:
    """RT-BYTES-1: bytes, bytearray, memoryview (sliced too) go as bin and come back as bytes."""
    backing = bytearray(b"--" + IMAGE + b"--")
    payload = {
        "image_bytes": IMAGE,
        "mutable": bytearray(IMAGE),
        "view": memoryview(IMAGE),
        "slice": memoryview(backing)[2:-2],
        "prompt": "a cat",
    }
    result = await _round_trip(running, payload)
    assert result["types"] == {
        "image_bytes": "bytes",
        "mutable": "bytes",
        "view": "bytes",
        "slice": "bytes",
        "prompt": "str",
    }
    back = result["back"]
    assert all(type(back[k]) is bytes and back[k] == IMAGE for k in ("image_bytes", "view"))
    assert back["mutable"] == IMAGE and back["slice"] == IMAGE and back["prompt"] == "a cat"


async def test_rt_bytes_2_an_image_frame_is_not_inflated_on_the_wire(
    bytes_echo: Gateway, running: RunningGateway
) -> None:
    """RT-BYTES-2: N image bytes fit max_frame_bytes=N+200 both ways (base64 would need 4N/3)."""
    result = await _round_trip(
        running, {"image_bytes": IMAGE}, max_frame_bytes=len(IMAGE) + OVERHEAD
    )
    assert result["back"]["image_bytes"] == IMAGE
    frame = msgpack_encode({"image_bytes": memoryview(IMAGE)})
    assert frame[len(b"\x81\xabimage_bytes") :][:1] == b"\xc5"  # bin 16, not str


async def test_rt_bytes_3_json_encoding_refuses_bytes_with_invalid_input(
    bytes_echo: Gateway, running: RunningGateway
) -> None:
    """RT-BYTES-3: encoding='json' meeting bytes raises INVALID_INPUT at send; nothing goes out."""
    async with await fal_realtime.connect(
        "test/bytes",
        on_result=lambda _r: None,
        base_url=running.ws_url,
        key=KEY,
        throttle_interval=0,
        encoding="json",
    ) as conn:
        with pytest.raises(RealtimeError) as caught:
            await conn.send({"image_bytes": IMAGE})
        assert caught.value.code == INVALID_INPUT
        assert str(caught.value).count("\n") == 0 and "bytes" in str(caught.value)
        assert conn.stats.sent == 0 and conn.state.value == "open"


async def test_a_strided_memoryview_is_refused_with_invalid_input(
    bytes_echo: Gateway, running: RunningGateway
) -> None:
    """A non-contiguous memoryview cannot be sent as bin: INVALID_INPUT, not a traceback."""
    async with await fal_realtime.connect(
        "test/bytes", on_result=lambda _r: None, base_url=running.ws_url, key=KEY
    ) as conn:
        with pytest.raises(RealtimeError) as caught:
            await conn.send({"image_bytes": memoryview(IMAGE)[::2]})
        assert caught.value.code == INVALID_INPUT and conn.stats.sent == 0


async def test_media_helpers_round_trip_a_frame_through_an_app(
    bytes_echo: Gateway, running: RunningGateway
) -> None:
    """image_payload's frame comes back through an app; result_images and to_pil read it."""
    pil = pytest.importorskip("PIL.Image")
    frame = pil.new("RGB", (64, 48), (200, 30, 30))
    payload = media.image_payload(frame, prompt="red", strength=0.5)
    assert payload.keys() == {"prompt", "image_bytes", "strength"}
    result = await _round_trip(running, payload)
    answer = {"images": [{"content": result["back"]["image_bytes"]}]}
    [jpeg] = media.result_images(answer)
    assert jpeg[:2] == b"\xff\xd8" and media.to_pil(answer).size == (64, 48)


# -- fal_realtime.media without a socket ---------------------------------------------------------


def test_image_payload_keeps_encoded_bytes_as_they_are() -> None:
    """Encoded frames (bytes, bytearray, memoryview) go into the payload uncopied."""
    view = memoryview(IMAGE)
    for frame in (IMAGE, bytearray(IMAGE), view):
        payload = media.image_payload(frame, seed=7)
        assert payload["image_bytes"] is frame and payload["seed"] == 7
    assert "prompt" not in media.image_payload(IMAGE)
    assert media.image_payload(IMAGE, key="image", prompt="p") == {"prompt": "p", "image": IMAGE}


def test_encode_jpeg_takes_images_and_arrays() -> None:
    """encode_jpeg encodes RGB, RGBA and grey images and H x W x 3 arrays as JPEG."""
    pil = pytest.importorskip("PIL.Image")
    numpy = pytest.importorskip("numpy")
    for image in (
        pil.new("RGB", (32, 16), "blue"),
        pil.new("RGBA", (32, 16), "blue"),
        pil.new("L", (32, 16), 128),
        numpy.zeros((16, 32, 3), dtype=numpy.uint8),
    ):
        jpeg = media.encode_jpeg(image, quality=50)
        assert jpeg[:2] == b"\xff\xd8"
        assert media.to_pil(jpeg).size == (32, 16)


def test_encode_jpeg_refuses_bad_input_in_one_line() -> None:
    """A bad quality, a non-image or an odd array is a one-line ValueError/TypeError."""
    pytest.importorskip("PIL.Image")
    numpy = pytest.importorskip("numpy")
    with pytest.raises(ValueError, match="quality must be in 1..95"):
        media.encode_jpeg(b"", quality=0)
    with pytest.raises(TypeError, match="expected a PIL.Image.Image or an array"):
        media.encode_jpeg("frame.jpg")
    with pytest.raises(ValueError, match="H x W x 3 uint8"):
        media.encode_jpeg(numpy.zeros((4, 4, 7), dtype=numpy.float64))


def test_result_images_reads_bytes_data_urls_and_single_images() -> None:
    """result_images reads content bytes, base64 data URLs and {"image": ...}."""
    encoded = base64.b64encode(IMAGE).decode()
    assert media.result_images({"images": [{"content": IMAGE}]})[0] is IMAGE
    assert media.result_images({"images": [{"url": f"data:image/png;base64,{encoded}"}]}) == [IMAGE]
    assert media.result_images({"image": {"content": bytearray(b"ab")}}) == [b"ab"]
    assert media.result_images({"prompt": "no image"}) == []


@pytest.mark.parametrize(
    ("result", "message"),
    [
        ({"images": [{"url": "https://fal.media/files/x.jpg"}]}, "fetch it"),
        ({"images": [{"url": "data:image/png,raw"}]}, "not base64"),
        ({"images": [{"url": "data:image/png;base64,@@@"}]}, "not valid base64"),
        ({"images": [{"width": 3}]}, "neither 'content'"),
        ({"images": "x"}, "is a list of images"),
        ({"images": [3]}, "is a map"),
    ],
)
def test_result_images_explains_what_it_cannot_read(result: Any, message: str) -> None:
    """A result image it cannot read is a one-line ValueError that says why."""
    with pytest.raises(ValueError, match=message):
        media.result_images(result)


def test_to_pil_refuses_what_is_not_an_image() -> None:
    """to_pil: bytes that are no image and results without one are ValueErrors."""
    pytest.importorskip("PIL.Image")
    with pytest.raises(ValueError, match="not an image Pillow can read"):
        media.to_pil(b"not a picture")
    with pytest.raises(ValueError, match="no image"):
        media.to_pil({"images": []})
    with pytest.raises(TypeError, match="image bytes or a result"):
        media.to_pil(3)


def test_without_pillow_the_error_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without Pillow, encoding says pip install 'fal-realtime[media]'; bytes still work."""
    monkeypatch.setitem(sys.modules, "PIL", None)
    with pytest.raises(ModuleNotFoundError, match=r"pip install 'fal-realtime\[media\]'"):
        media.encode_jpeg(io.BytesIO())
    with pytest.raises(ModuleNotFoundError, match="fal-realtime"):
        media.to_pil(IMAGE)
    assert media.image_payload(IMAGE)["image_bytes"] is IMAGE
    assert media.result_images({"images": [{"content": IMAGE}]}) == [IMAGE]
