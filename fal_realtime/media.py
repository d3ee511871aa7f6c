"""Turn camera frames into realtime payloads, and results into images.

    from fal_realtime import media

    await conn.send(media.image_payload(frame, prompt="a watercolor", strength=0.6))

    def on_result(result):
        for jpeg in media.result_images(result):   # bytes, as the app sent them
            ...
        picture = media.to_pil(result)              # the first image as a Pillow Image

fal's image apps take a frame as msgpack **bin** (``image_bytes``) and answer
``{"images": [{"content": <bytes>, ...}], ...}``; a ``bytes``, ``bytearray`` or
``memoryview`` in a payload goes out as bin as it is (no base64). Frames that are
already encoded (JPEG or PNG bytes) need nothing from this module but
:func:`image_payload`; encoding a Pillow ``Image`` or a numpy array (``H x W x 3``
``uint8``, as OpenCV and most camera libraries hand them out) and decoding results
needs Pillow, the ``media`` extra (``pip install 'fal-realtime[media]'``), imported
only when one of those functions is called.
"""

from __future__ import annotations

import base64
import binascii
import io
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from PIL.Image import Image

__all__ = ["encode_jpeg", "image_payload", "result_images", "to_pil"]

#: What a bytes-like frame may be: it goes into the payload as it is.
_BYTES_LIKE = (bytes, bytearray, memoryview)
_INSTALL = "pip install 'fal-realtime[media]'"


def _pil() -> Any:
    """Import Pillow's ``Image`` module, or fail with one line that says how to get it."""
    try:
        from PIL import Image
    except ImportError:
        raise ModuleNotFoundError(
            f"fal_realtime.media needs Pillow to encode or decode images: {_INSTALL}"
        ) from None
    return Image


def encode_jpeg(image: Any, *, quality: int = 80) -> bytes:
    """Encode a Pillow image or an array as JPEG bytes.

    Args:
        image: a ``PIL.Image.Image``, or an array with ``__array_interface__`` (numpy):
            ``H x W`` (grey) or ``H x W x 3`` (RGB) ``uint8``; an alpha channel or a
            palette is dropped (JPEG has neither). OpenCV's frames are BGR: convert
            them first (``frame[..., ::-1]``).
        quality: JPEG quality, 1..95 (Pillow's scale; 75-85 is what cameras use).

    Returns:
        The JPEG file's bytes.

    Raises:
        ValueError: ``quality`` out of range, or an array Pillow cannot take.
        TypeError: ``image`` is neither an image nor an array.
        ModuleNotFoundError: Pillow is not installed.
    """
    if not 1 <= quality <= 95:
        raise ValueError(f"quality must be in 1..95, got {quality}")
    picture = _as_pil(image)
    if picture.mode not in ("RGB", "L"):
        picture = picture.convert("RGB")
    out = io.BytesIO()
    picture.save(out, format="JPEG", quality=quality)
    return out.getvalue()


def image_payload(
    image: Any,
    *,
    prompt: str | None = None,
    quality: int = 80,
    key: str = "image_bytes",
    **params: Any,
) -> dict[str, Any]:
    """Return an image app's input: the frame as bin under ``image_bytes``, plus ``params``.

    Encoded frames (``bytes``, ``bytearray``, ``memoryview``: JPEG or PNG) go in as they
    are, not copied; a Pillow image or an array is encoded with :func:`encode_jpeg`.

    Args:
        image: the frame: encoded bytes, a ``PIL.Image.Image`` or an array (see
            :func:`encode_jpeg`).
        prompt: the text prompt (left out when None).
        quality: JPEG quality when the frame has to be encoded.
        key: the input field that carries the frame (fal's image apps: ``image_bytes``).
        **params: the app's other inputs, e.g. ``strength=0.6, seed=42,
            num_inference_steps=2``.

    Returns:
        A dict to hand to ``conn.send``.

    Raises:
        TypeError: ``image`` is not a frame.
        ModuleNotFoundError: the frame needs encoding and Pillow is not installed.
    """
    frame = image if isinstance(image, _BYTES_LIKE) else encode_jpeg(image, quality=quality)
    payload: dict[str, Any] = {} if prompt is None else {"prompt": prompt}
    payload[key] = frame
    payload.update(params)
    return payload


def result_images(result: Mapping[str, Any]) -> list[bytes]:
    """Return the images of an image app's result as encoded bytes (JPEG, PNG, ...).

    Reads ``{"images": [{"content": <bytes>}, ...]}`` (fal's realtime image apps),
    ``{"images": [{"url": "data:image/...;base64,..."}]}`` (data URLs, e.g.
    ``fal-ai/flux-lora-realtime``) and the single-image form ``{"image": {...}}``.

    Args:
        result: a result as ``on_result`` receives it.

    Returns:
        One ``bytes`` per image, in order (empty when the result has none).

    Raises:
        ValueError: an image is only a remote URL (fetch it yourself) or is malformed.
    """
    if not isinstance(result, Mapping):
        raise ValueError(f"a result is a map, not {type(result).__name__}")
    entries = result.get("images")
    if entries is None:
        single = result.get("image")
        entries = [] if single is None else [single]
    if not isinstance(entries, list | tuple):
        raise ValueError(f"'images' is a list of images, not {type(entries).__name__}")
    return [_image_bytes(entry) for entry in entries]


def to_pil(image: Any) -> Image:
    """Decode an image, or a result's first image, into a Pillow ``Image``.

    Args:
        image: encoded image bytes (``bytes``, ``bytearray``, ``memoryview``) or a
            result (see :func:`result_images`).

    Returns:
        The decoded image (fully loaded: it does not keep the bytes alive).

    Raises:
        ValueError: a result with no image, or bytes that are not an image.
        ModuleNotFoundError: Pillow is not installed.
    """
    pil = _pil()
    if isinstance(image, Mapping):
        images = result_images(image)
        if not images:
            raise ValueError("the result has no image")
        data: Any = images[0]
    elif isinstance(image, _BYTES_LIKE):
        data = image
    else:
        raise TypeError(f"to_pil takes image bytes or a result, not {type(image).__name__}")
    try:
        picture = pil.open(io.BytesIO(data))
        picture.load()
    except (OSError, SyntaxError) as exc:  # Pillow's UnidentifiedImageError is an OSError
        raise ValueError(f"not an image Pillow can read: {exc}") from None
    return picture  # type: ignore[no-any-return]


def _as_pil(image: Any) -> Image:
    pil = _pil()
    if isinstance(image, pil.Image):
        return image  # type: ignore[no-any-return]
    if hasattr(image, "__array_interface__"):
        try:
            return pil.fromarray(image)  # type: ignore[no-any-return]
        except (TypeError, ValueError) as exc:
            raise ValueError(
                f"cannot make an image of this array ({exc}); pass H x W or H x W x 3 uint8"
            ) from None
    raise TypeError(
        f"expected a PIL.Image.Image or an array (H x W x 3 uint8), not {type(image).__name__}"
    )


def _image_bytes(entry: Any) -> bytes:
    if isinstance(entry, _BYTES_LIKE):
        return bytes(entry)
    if not isinstance(entry, Mapping):
        raise ValueError(f"an image is a map with 'content' or 'url', not {type(entry).__name__}")
    content = entry.get("content")
    if isinstance(content, bytes):
        return content  # msgpack bin arrives as bytes: handed over, not copied
    if isinstance(content, bytearray | memoryview):
        return bytes(content)
    url = entry.get("url")
    if isinstance(url, str) and url.startswith("data:"):
        header, sep, data = url.partition(",")
        if not sep or not header.endswith(";base64"):
            raise ValueError("an image's data URL is not base64 (data:<type>;base64,...)")
        try:
            return base64.b64decode(data, validate=True)
        except binascii.Error as exc:
            raise ValueError(f"an image's data URL is not valid base64: {exc}") from None
    if isinstance(url, str):
        raise ValueError(f"the image is at a URL, not in the result; fetch it: {url[:80]}")
    raise ValueError("an image has neither 'content' bytes nor a 'url'")
