"""Encode and decode realtime payloads: msgpack (default) or JSON, or user hooks.

msgpack is ormsgpack with ``bytes`` kept as the bin type (fal's runners encode
with ``use_bin_type=True``); JSON is orjson. A :class:`Codec` is chosen once per
connection so the hot path does no dispatch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, Literal

import orjson
import ormsgpack

__all__ = [
    "Codec",
    "Encoding",
    "json_decode",
    "json_encode",
    "make_codec",
    "msgpack_decode",
    "msgpack_encode",
]

Encoding = Literal["msgpack", "json"]


# The codec's halves are the C functions themselves, not Python wrappers around them:
# they run once per frame on the hot path, where a wrapper's call is a measurable cost.

#: Encode a value as msgpack (str as str, bytes as bin).
msgpack_encode: Final = ormsgpack.packb
#: Decode one msgpack value; raises ``ValueError`` (``MsgpackDecodeError``) when not msgpack.
msgpack_decode: Final = ormsgpack.unpackb
#: Encode a value as compact UTF-8 JSON.
json_encode: Final = orjson.dumps
#: Decode one JSON value; raises ``ValueError`` (``JSONDecodeError``) when not JSON.
json_decode: Final = orjson.loads


@dataclass(frozen=True, slots=True)
class Codec:
    """How one connection turns payloads into frames and frames into values.

    ``binary`` tells whether encoded frames go out as binary (msgpack) or text (JSON).
    ``custom_decode`` is true when the user supplied ``decode_message``: its
    output is then taken as a result whatever its type.
    """

    encode: Callable[[Any], bytes]
    decode: Callable[[bytes], Any]
    binary: bool
    custom_decode: bool = False


def make_codec(
    encoding: Encoding = "msgpack",
    *,
    encode_message: Callable[[Any], bytes] | None = None,
    decode_message: Callable[[bytes], Any] | None = None,
) -> Codec:
    """Return the codec for ``encoding``, with user hooks replacing either half."""
    if encode_message is None and decode_message is None:
        shared = _PLAIN.get(encoding)  # frozen: connections without hooks share one
        if shared is not None:
            return shared
    encode: Callable[[Any], bytes]
    decode: Callable[[bytes], Any]
    if encoding == "msgpack":
        encode, decode, binary = msgpack_encode, msgpack_decode, True
    elif encoding == "json":
        encode, decode, binary = json_encode, json_decode, False
    else:
        raise ValueError(f"encoding must be 'msgpack' or 'json', got {encoding!r}")
    return Codec(
        encode=encode_message or encode,
        decode=decode_message or decode,
        binary=binary,
        custom_decode=decode_message is not None,
    )


_PLAIN: Final[dict[str, Codec]] = {}
_PLAIN.update((name, make_codec(name)) for name in ("msgpack", "json"))
