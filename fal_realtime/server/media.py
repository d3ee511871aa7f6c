"""The media demo apps: image-to-image and video preview, on the wire as fal's demos use them.

=================================================  ================  ==========================
app (realtime path)                                mode              what it answers
=================================================  ================  ==========================
``fal-ai/fast-turbo-diffusion/image-to-image``     unary             one JPEG per input
``fal-ai/fast-lcm-diffusion/image-to-image``       unary             one JPEG per input
``fal-ai/lcm-sd15-i2i``                            unary             one JPEG per input
``fal-ai/sdxl-turbo-realtime``                     unary             one JPEG per input (text
                                                                     to image without an image)
``fal-ai/ltx-video-realtime``                      server streaming  ``num_frames`` JPEG frames
``fal-ai/cogvideox-realtime``                      server streaming  at ``fps``, then TIMEOUT
=================================================  ================  ==========================

An input is a msgpack map, as fal's camera demo sends it: ``prompt`` (str), ``image_bytes``
(JPEG or PNG bytes as msgpack bin) or ``image_url`` (a ``data:`` URI), ``strength`` (0..1),
``seed`` (int; from the prompt when absent), ``num_inference_steps`` (int), ``width`` and
``height`` (ints, together), ``request_id`` (str); the video apps also take ``num_frames`` and
``fps``. Other keys (``sync_mode``...) are ignored. Every image app answers with::

    {"images": [{"content": <JPEG bytes>, "width": W, "height": H,
                 "content_type": "image/jpeg"}],
     "timings": {"inference": s}, "seed": int, "num_inference_steps": int,
     "request_id": str, "nsfw_content_detected": [False]}

and each video frame is the same map plus ``frame_index``, ``num_frames`` and ``fps``.

The "model" is real image processing with Pillow: a duotone colour grade whose colours come
from a hash of prompt and seed, posterized, with dark edges drawn in; ``strength`` is how much
of it is blended over the input. The same prompt, seed and image give the same bytes. Without
an image the same grade is laid over a canvas drawn from the prompt (text to image).

Bad input (not a JPEG or PNG, too many pixels, a field of the wrong type) raises ValueError
with a one-line reason, which the session turns into ``x-fal-error`` INTERNAL_ERROR and close
1000, as fal's runner does. Pillow is an optional dependency (``pip install
'fal-realtime[media]'``): without it these apps answer every input with INTERNAL_ERROR naming
the extra. A slow model is simulated with the ``inference_ms`` fault (:mod:`.faults`), per app
or per connection.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import importlib.util
import io
import logging
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Any

from .gateway import Gateway

if TYPE_CHECKING:  # Pillow is optional: imported where an image is made (see _pillow)
    from PIL import Image

__all__ = [
    "DEFAULT_FPS",
    "DEFAULT_NUM_FRAMES",
    "I2I_APPS",
    "PILLOW_HINT",
    "VIDEO_APPS",
    "ImageRequest",
    "ImageToImage",
    "VideoPreview",
    "parse_image_request",
    "pillow_available",
    "register_media_apps",
]

log = logging.getLogger("fal_realtime.server.media")

#: The image apps, each with the ``num_inference_steps`` it echoes when none is given (few
#: steps, as these turbo and LCM models take; not checked against fal's own defaults).
I2I_APPS: Mapping[str, int] = {
    "fal-ai/fast-turbo-diffusion/image-to-image": 2,
    "fal-ai/fast-lcm-diffusion/image-to-image": 4,
    "fal-ai/lcm-sd15-i2i": 4,
    "fal-ai/sdxl-turbo-realtime": 2,
}
#: The video preview apps (server streaming).
VIDEO_APPS: tuple[str, ...] = ("fal-ai/ltx-video-realtime", "fal-ai/cogvideox-realtime")
#: What a video preview sends by default: this many frames at this rate.
DEFAULT_NUM_FRAMES = 16
DEFAULT_FPS = 8.0
MAX_NUM_FRAMES = 256
MAX_FPS = 60.0
#: How to get Pillow, named in every "Pillow is missing" message.
PILLOW_HINT = "pip install 'fal-realtime[media]'"

#: Bounds of an output side (``width``/``height``), and of an input image's pixels.
MIN_SIDE = 16
MAX_SIDE = 2048
MAX_INPUT_PIXELS = 4096 * 4096
#: Text to image without ``width``/``height``; a video preview's default size.
DEFAULT_T2I_SIZE = (512, 512)
DEFAULT_VIDEO_SIZE = (384, 256)
DEFAULT_STRENGTH = 0.6
JPEG_QUALITY = 85
_FORMATS = ("JPEG", "PNG")


def pillow_available() -> bool:
    """Tell whether Pillow can be imported (the media apps need it)."""
    try:
        return importlib.util.find_spec("PIL") is not None
    except ValueError:  # a module set to None in sys.modules, as tests do
        return False


def _pillow(app_id: str) -> ModuleType:
    """Return Pillow's ``PIL`` package with the modules used here; say how to get it if absent."""
    try:
        import PIL
        from PIL import (  # noqa: F401 (imported so that PIL.Image etc. are there)
            Image,
            ImageChops,
            ImageDraw,
            ImageFilter,
            ImageOps,
        )
    except ImportError:
        raise RuntimeError(
            f"{app_id} needs Pillow, which is not installed on this gateway: {PILLOW_HINT}"
        ) from None
    return PIL


# -- the input ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ImageRequest:
    """One image input, checked: what the transform needs."""

    prompt: str
    image: bytes | None
    strength: float
    seed: int
    num_inference_steps: int
    size: tuple[int, int] | None
    request_id: str


def _int(input: Mapping[str, Any], name: str, low: int, high: int) -> int | None:
    value = input.get(name)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"{name} must be an integer, got {type(value).__name__}")
    if not low <= value <= high:
        raise ValueError(f"{name} must be in {low}..{high}, got {value}")
    return value


def _number(input: Mapping[str, Any], name: str, low: float, high: float) -> float | None:
    value = input.get(name)
    if value is None:
        return None
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise ValueError(f"{name} must be a number, got {type(value).__name__}")
    if not low <= value <= high:
        raise ValueError(f"{name} must be in {low:g}..{high:g}, got {value}")
    return float(value)


def _image_data(input: Mapping[str, Any]) -> bytes | None:
    """Return the input's image bytes, from ``image_bytes`` or a ``data:`` ``image_url``."""
    raw = input.get("image_bytes")
    if raw is not None:
        if isinstance(raw, bytearray | memoryview):
            return bytes(raw)
        if not isinstance(raw, bytes):
            raise ValueError(
                f"image_bytes must be JPEG or PNG bytes (msgpack bin), got {type(raw).__name__}"
            )
        return raw
    url = input.get("image_url")
    if url is None:
        return None
    if not isinstance(url, str):
        raise ValueError(f"image_url must be a string, got {type(url).__name__}")
    header, comma, data = url.partition(",")
    if not (url.startswith("data:") and comma and header.endswith(";base64")):
        raise ValueError(
            "image_url must be a base64 data URI (data:image/jpeg;base64,...): "
            "the gateway fetches nothing"
        )
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("image_url is not valid base64") from None


def parse_image_request(input: Any, *, default_steps: int = 4) -> ImageRequest:
    """Check one input map; raise ValueError with a one-line reason when it is bad."""
    if not isinstance(input, Mapping):
        raise ValueError(f"input must be a map, got {type(input).__name__}")
    prompt = input.get("prompt", "")
    if not isinstance(prompt, str):
        raise ValueError(f"prompt must be a string, got {type(prompt).__name__}")
    seed = _int(input, "seed", -(2**63), 2**64 - 1)
    if seed is None:
        seed = int.from_bytes(hashlib.sha256(prompt.encode()).digest()[:4], "big")
    strength = _number(input, "strength", 0.0, 1.0)
    steps = _int(input, "num_inference_steps", 1, 100)
    width = _int(input, "width", MIN_SIDE, MAX_SIDE)
    height = _int(input, "height", MIN_SIDE, MAX_SIDE)
    if (width is None) != (height is None):
        raise ValueError("width and height go together: give both or neither")
    request_id = input.get("request_id")
    if request_id is not None and not isinstance(request_id, str):
        raise ValueError(f"request_id must be a string, got {type(request_id).__name__}")
    return ImageRequest(
        prompt=prompt,
        image=_image_data(input),
        strength=DEFAULT_STRENGTH if strength is None else strength,
        seed=seed,
        num_inference_steps=default_steps if steps is None else steps,
        size=None if width is None or height is None else (width, height),
        request_id=request_id if request_id is not None else str(uuid.uuid4()),
    )


# -- the "model" ----------------------------------------------------------------------


def _digest(prompt: str, seed: int) -> bytes:
    return hashlib.sha256(f"{seed}\x00{prompt}".encode()).digest()


def _colour(digest: bytes, offset: int, low: int, span: int) -> tuple[int, int, int]:
    return (
        low + digest[offset] * span // 255,
        low + digest[offset + 1] * span // 255,
        low + digest[offset + 2] * span // 255,
    )


def _open(pil: ModuleType, data: bytes) -> Image.Image:
    """Decode JPEG or PNG ``data`` to RGB; refuse anything else and oversized images."""
    too_large = f"image has more than the {MAX_INPUT_PIXELS} pixels this app takes"
    try:
        image = pil.Image.open(io.BytesIO(data), formats=_FORMATS)
    except (pil.Image.DecompressionBombError, pil.Image.DecompressionBombWarning):
        # Pillow's own guard, past twice its MAX_IMAGE_PIXELS (its warning, when made an error)
        raise ValueError(too_large) from None
    except Exception:  # UnidentifiedImageError, a broken header
        raise ValueError("image is not a JPEG or PNG image") from None
    width, height = image.size
    if width * height > MAX_INPUT_PIXELS:
        raise ValueError(f"{too_large}: {width}x{height}")
    try:
        return image.convert("RGB")  # type: ignore[no-any-return]
    except Exception:  # truncated or corrupt data, found while decoding
        raise ValueError("image data is truncated or corrupt") from None


def _canvas(pil: ModuleType, digest: bytes, size: tuple[int, int]) -> Image.Image:
    """Draw a picture from ``digest`` (text to image): a gradient with three discs."""
    width, height = size
    ramp = pil.Image.linear_gradient("L").rotate(digest[20] * 360 // 255).resize(size)
    canvas = pil.ImageOps.colorize(
        ramp, black=_colour(digest, 12, 0, 160), white=_colour(digest, 15, 96, 159)
    )
    draw = pil.ImageDraw.Draw(canvas)
    for i in range(3):
        cx = digest[21 + i] * width // 255
        cy = digest[24 + i] * height // 255
        r = max(2, min(width, height) * (10 + digest[27 + i] % 20) // 100)
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=_colour(digest, 3 * i, 0, 255))
    return canvas  # type: ignore[no-any-return]


def _stylize(pil: ModuleType, source: Image.Image, digest: bytes, strength: float) -> Image.Image:
    """Blend a prompt-seeded duotone grade, posterized, with dark edges, over ``source``."""
    grey = pil.ImageOps.grayscale(source)
    graded = pil.ImageOps.colorize(
        grey,
        black=_colour(digest, 0, 0, 80),
        mid=_colour(digest, 3, 40, 215),
        white=_colour(digest, 6, 160, 95),
    )
    posterized = pil.ImageOps.posterize(graded, 2 + digest[9] % 3)
    edges = grey.filter(pil.ImageFilter.FIND_EDGES).convert("RGB")
    styled = pil.ImageChops.subtract(posterized, edges)
    return pil.Image.blend(source, styled, strength)  # type: ignore[no-any-return]


def _jpeg(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=JPEG_QUALITY)
    return out.getvalue()


def _source(
    pil: ModuleType, request: ImageRequest, digest: bytes, default_size: tuple[int, int]
) -> Image.Image:
    """Return the picture to transform: the input image (resized) or a drawn canvas."""
    if request.image is None:
        return _canvas(pil, digest, request.size or default_size)
    image = _open(pil, request.image)
    if request.size is not None and image.size != request.size:
        return image.resize(request.size)
    if max(image.size) > MAX_SIDE:
        image.thumbnail((MAX_SIDE, MAX_SIDE))
    return image


def _result(request: ImageRequest, image: Image.Image, started: float) -> dict[str, Any]:
    content = _jpeg(image)
    return {
        "images": [
            {
                "content": content,
                "width": image.width,
                "height": image.height,
                "content_type": "image/jpeg",
            }
        ],
        "timings": {"inference": time.perf_counter() - started},
        "seed": request.seed,
        "num_inference_steps": request.num_inference_steps,
        "request_id": request.request_id,
        "nsfw_content_detected": [False],
    }


class ImageToImage:
    """An image app's handler: one input map in, one image result out (runs in a thread)."""

    def __init__(self, app_id: str, *, default_steps: int = 4) -> None:
        self.app_id = app_id
        self.default_steps = default_steps

    def __repr__(self) -> str:
        return f"ImageToImage({self.app_id!r})"

    def __call__(self, input: dict[str, Any]) -> dict[str, Any]:
        """Answer one input; raise ValueError (INTERNAL_ERROR on the wire) when it is bad."""
        started = time.perf_counter()
        pil = _pillow(self.app_id)
        request = parse_image_request(input, default_steps=self.default_steps)
        digest = _digest(request.prompt, request.seed)
        source = _source(pil, request, digest, DEFAULT_T2I_SIZE)
        strength = request.strength if request.image is not None else 1.0
        return _result(request, _stylize(pil, source, digest, strength), started)


class VideoPreview:
    """A video preview app's handler: one input, then ``num_frames`` JPEG frames at ``fps``."""

    def __init__(
        self,
        app_id: str,
        *,
        num_frames: int = DEFAULT_NUM_FRAMES,
        fps: float = DEFAULT_FPS,
    ) -> None:
        if not 1 <= num_frames <= MAX_NUM_FRAMES:
            raise ValueError(f"num_frames must be in 1..{MAX_NUM_FRAMES}, got {num_frames}")
        if not 0 < fps <= MAX_FPS:
            raise ValueError(f"fps must be in (0, {MAX_FPS:g}], got {fps}")
        self.app_id = app_id
        self.num_frames = num_frames
        self.fps = fps

    def __repr__(self) -> str:
        return f"VideoPreview({self.app_id!r}, num_frames={self.num_frames}, fps={self.fps:g})"

    async def __call__(self, input: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        """Yield the frames, paced at ``fps`` from the first (which goes at once)."""
        pil = _pillow(self.app_id)
        request = parse_image_request(input, default_steps=8)
        num_frames = _int(input, "num_frames", 1, MAX_NUM_FRAMES) or self.num_frames
        fps = _number(input, "fps", 0.1, MAX_FPS) or self.fps
        digest = _digest(request.prompt, request.seed)
        loop = asyncio.get_running_loop()
        source = await asyncio.to_thread(_source, pil, request, digest, DEFAULT_VIDEO_SIZE)
        start = loop.time()
        for index in range(num_frames):
            due = start + index / fps
            if (wait := due - loop.time()) > 0:
                await asyncio.sleep(wait)
            result = await asyncio.to_thread(_frame, pil, request, source, digest, index)
            result.update(frame_index=index, num_frames=num_frames, fps=fps)
            yield result


def _frame(
    pil: ModuleType, request: ImageRequest, source: Image.Image, digest: bytes, index: int
) -> dict[str, Any]:
    """Render frame ``index`` of a preview: the picture panning, its grade drifting."""
    started = time.perf_counter()
    moved = pil.ImageChops.offset(source, index * max(1, source.width // 32), 0)
    frame_digest = hashlib.sha256(digest + index.to_bytes(4, "big")).digest()
    strength = request.strength if request.image is not None else 1.0
    return _result(request, _stylize(pil, moved, frame_digest, strength), started)


def register_media_apps(
    gateway: Gateway,
    *,
    num_frames: int = DEFAULT_NUM_FRAMES,
    fps: float = DEFAULT_FPS,
) -> None:
    """Register the image and video apps (without Pillow they answer INTERNAL_ERROR).

    Args:
        gateway: the gateway to host them.
        num_frames: frames per video preview (an input's ``num_frames`` overrides it).
        fps: the video previews' frame rate (an input's ``fps`` overrides it).
    """
    for app_id, steps in I2I_APPS.items():
        gateway.realtime(app_id)(ImageToImage(app_id, default_steps=steps))
    for app_id in VIDEO_APPS:
        gateway.realtime(app_id)(VideoPreview(app_id, num_frames=num_frames, fps=fps))
    if not pillow_available():
        log.warning(
            "the image and video demo apps need Pillow, which is not installed: %s", PILLOW_HINT
        )
