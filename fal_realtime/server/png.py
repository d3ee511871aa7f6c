"""Draw small deterministic PNG images from a prompt (stdlib only, no I/O).

The demo image model behind ``fal-ai/flux-lora-realtime`` uses this: the same
prompt and seed always give the same bytes, and different prompts look
visibly different (their colours, bands, disc and bar all come from a hash).

    width, height = resolve_image_size("landscape_16_9")   # (128, 72)
    png = render_prompt_png("a red fox", width=width, height=height, seed=42)
"""

from __future__ import annotations

import hashlib
import math
import struct
import zlib
from collections.abc import Mapping

__all__ = [
    "IMAGE_SIZES",
    "MAX_SIDE",
    "MIN_SIDE",
    "SCALE",
    "render_prompt_png",
    "resolve_image_size",
]

#: fal's named image sizes, at full resolution (width, height).
IMAGE_SIZES: Mapping[str, tuple[int, int]] = {
    "square_hd": (1024, 1024),
    "square": (512, 512),
    "portrait_4_3": (768, 1024),
    "portrait_16_9": (576, 1024),
    "landscape_4_3": (1024, 768),
    "landscape_16_9": (1024, 576),
}
#: The demo draws named sizes this many times smaller per side.
SCALE = 8
#: Bounds of each side of a custom ``{"width": W, "height": H}`` size.
MIN_SIDE = 16
MAX_SIDE = 512

_DEFAULT_SIZE = "square"
_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Vertical gradient steps: rows are copies of this many precomputed rows, which
# keeps the work per image proportional to width + height, not width * height.
_LEVELS = 32

RGB = tuple[int, int, int]


def resolve_image_size(image_size: object) -> tuple[int, int]:
    """Return the (width, height) the demo draws for fal's ``image_size`` argument.

    A name from :data:`IMAGE_SIZES` gives that size divided by :data:`SCALE`
    (``landscape_16_9`` → 128x72); None means ``square`` (64x64). A mapping
    ``{"width": W, "height": H}`` is scaled to fit :data:`MIN_SIDE`..:data:`MAX_SIDE`
    per side, keeping its aspect ratio where the bounds allow.

    Raises:
        ValueError: an unknown name, or a mapping without positive integer sides.
    """
    if image_size is None:
        image_size = _DEFAULT_SIZE
    if isinstance(image_size, str):
        try:
            width, height = IMAGE_SIZES[image_size]
        except KeyError:
            accepted = ", ".join(IMAGE_SIZES)
            raise ValueError(
                f"unknown image_size {image_size!r}; accepted names: {accepted}, "
                'or {"width": W, "height": H}'
            ) from None
        return width // SCALE, height // SCALE
    if isinstance(image_size, Mapping):
        custom_width = _positive_int(image_size.get("width"))
        custom_height = _positive_int(image_size.get("height"))
        if custom_width is None or custom_height is None:
            raise ValueError("image_size width and height must be positive integers")
        return _fit(custom_width, custom_height)
    raise ValueError(
        f"image_size must be a name or a mapping with width and height, "
        f"got {type(image_size).__name__}"
    )


def render_prompt_png(prompt: str, *, width: int, height: int, seed: int) -> bytes:
    """Return an RGB PNG of ``width`` x ``height`` drawn from ``prompt`` and ``seed``.

    The picture is a two-way gradient between colours taken from a SHA-256 of
    the seed and prompt, crossed by a few horizontal bands, with a disc and a
    vertical bar placed by the same hash.
    """
    if width < 1 or height < 1:
        raise ValueError(f"width and height must be positive, got {width}x{height}")
    digest = hashlib.sha256(f"{seed}\x00{prompt}".encode()).digest()
    top_left, top_right, bottom = _colour(digest, 0), _colour(digest, 3), _colour(digest, 6)
    band_colour, disc_colour, bar_colour = (
        _colour(digest, 9),
        _colour(digest, 12),
        _colour(digest, 15),
    )

    # Precompute the gradient rows: left→right between two colours, blended
    # top→bottom towards a third.
    levels = min(_LEVELS, height)
    horizontal = [_mix(top_left, top_right, x, width - 1) for x in range(width)]
    gradient_rows = [
        b"".join(bytes(_mix(c, bottom, level, levels - 1)) for c in horizontal)
        for level in range(levels)
    ]

    bands = _bands(digest, height)
    band_row = bytes(band_colour) * width
    disc_pixel = bytes(disc_colour)
    bar_pixel = bytes(bar_colour)

    # The disc: centre and radius from the hash, in the image's own units.
    cx = digest[18] * (width - 1) // 255
    cy = digest[19] * (height - 1) // 255
    radius = max(2, (min(width, height) * (20 + digest[20] % 25)) // 100)
    # The bar: a vertical stripe spanning a hashed range of rows.
    bar_x0 = digest[21] * (width - 1) // 255
    bar_x1 = min(width, bar_x0 + max(1, width // (6 + digest[22] % 6)))
    bar_y0 = digest[23] * (height - 1) // 510
    bar_y1 = height - bar_y0
    bar = bar_pixel * (bar_x1 - bar_x0)

    raw = bytearray()
    r2 = radius * radius
    for y in range(height):
        level = y * levels // height
        row = band_row if y in bands else gradient_rows[level]
        if bar_y0 <= y < bar_y1:
            row = row[: 3 * bar_x0] + bar + row[3 * bar_x1 :]
        dy = y - cy
        if dy * dy <= r2:
            half = math.isqrt(r2 - dy * dy)
            x0, x1 = max(0, cx - half), min(width, cx + half + 1)
            if x0 < x1:
                row = row[: 3 * x0] + disc_pixel * (x1 - x0) + row[3 * x1 :]
        raw.append(0)  # filter type None
        raw += row
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    return b"".join(
        (
            _SIGNATURE,
            _chunk(b"IHDR", ihdr),
            _chunk(b"IDAT", zlib.compress(bytes(raw), 6)),
            _chunk(b"IEND", b""),
        )
    )


def _positive_int(value: object) -> int | None:
    """Return ``value`` if it is an int (not a bool) above zero, else None."""
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    return None


def _fit(width: int, height: int) -> tuple[int, int]:
    """Scale ``width`` x ``height`` into MIN_SIDE..MAX_SIDE per side, keeping its ratio."""
    if max(width, height) > MAX_SIDE:
        factor = MAX_SIDE / max(width, height)
        width, height = round(width * factor), round(height * factor)
    if min(width, height) < MIN_SIDE:
        factor = MIN_SIDE / min(width, height)
        width, height = round(width * factor), round(height * factor)
    # A ratio beyond MAX_SIDE:MIN_SIDE cannot be kept; clamp what is left.
    return (
        min(MAX_SIDE, max(MIN_SIDE, width)),
        min(MAX_SIDE, max(MIN_SIDE, height)),
    )


def _colour(digest: bytes, offset: int) -> RGB:
    """Return the RGB colour held by three bytes of ``digest`` at ``offset``."""
    return digest[offset], digest[offset + 1], digest[offset + 2]


def _mix(a: RGB, b: RGB, step: int, steps: int) -> RGB:
    """Return the colour ``step / steps`` of the way from ``a`` to ``b``."""
    if steps <= 0:
        return a
    return (
        a[0] + (b[0] - a[0]) * step // steps,
        a[1] + (b[1] - a[1]) * step // steps,
        a[2] + (b[2] - a[2]) * step // steps,
    )


def _bands(digest: bytes, height: int) -> frozenset[int]:
    """Return the rows covered by two to four horizontal bands placed by ``digest``."""
    rows: set[int] = set()
    count = 2 + digest[24] % 3
    thickness = max(1, height // 24)
    for i in range(count):
        start = digest[25 + i] * (height - 1) // 255
        rows.update(range(start, min(height, start + thickness)))
    return frozenset(rows)


def _chunk(kind: bytes, data: bytes) -> bytes:
    """Return one PNG chunk: length, type, data and CRC-32 of type and data."""
    crc = zlib.crc32(data, zlib.crc32(kind))
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)
