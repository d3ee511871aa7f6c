"""Payload codecs: msgpack (default), JSON, and user hooks (SPEC §2.1 "Frames")."""

from __future__ import annotations

import math
from typing import Any

import msgpack  # type: ignore[import-untyped]
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fal_realtime._protocol.codecs import (
    Codec,
    json_decode,
    json_encode,
    make_codec,
    msgpack_decode,
    msgpack_encode,
)

# msgpack and orjson both carry 64-bit integers: signed down to -2**63, unsigned up to 2**64-1.
_INTS = st.integers(min_value=-(2**63), max_value=2**64 - 1)
_FLOATS = st.floats(allow_nan=False)
_TEXT = st.text(max_size=20)

_MSGPACK_SCALARS = st.none() | st.booleans() | _INTS | _FLOATS | _TEXT | st.binary(max_size=40)
_MSGPACK_VALUES = st.recursive(
    _MSGPACK_SCALARS,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(_TEXT, inner, max_size=5),
    max_leaves=20,
)
_JSON_SCALARS = (
    st.none() | st.booleans() | _INTS | st.floats(allow_nan=False, allow_infinity=False) | _TEXT
)
_JSON_VALUES = st.recursive(
    _JSON_SCALARS,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(_TEXT, inner, max_size=5),
    max_leaves=20,
)


def _same(a: Any, b: Any) -> bool:
    """Compare decoded values strictly: types must match too (bytes stay bytes, 1 is not True)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float):
        return a == b and math.copysign(1.0, a) == math.copysign(1.0, b)
    return bool(a == b)


def test_same_helper_is_strict() -> None:
    """The strict comparison used below tells bytes from str, bool from int, -0.0 from 0.0."""
    assert _same({"a": [1, b"x"]}, {"a": [1, b"x"]})
    assert not _same(b"x", "x")
    assert not _same(True, 1)
    assert not _same(0.0, -0.0)
    assert not _same([1], [1, 2])


def test_rt_codec_msgpack_is_default_and_binary() -> None:
    """RT-CODEC-1: the default codec is msgpack and sends binary frames."""
    codec = make_codec()
    assert isinstance(codec, Codec)
    assert codec.binary is True
    assert codec.custom_decode is False
    assert codec.encode is msgpack_encode
    assert codec.decode is msgpack_decode
    frame = codec.encode({"prompt": "a cat", "seed": 1})
    assert isinstance(frame, bytes)
    assert frame[0] == 0x82  # fixmap with two entries
    assert codec.decode(frame) == {"prompt": "a cat", "seed": 1}


@settings(max_examples=200, deadline=None)
@given(_MSGPACK_VALUES)
def test_rt_codec_msgpack_round_trip(value: Any) -> None:
    """RT-CODEC-1: any msgpack-able value round-trips exactly, bytes kept as bytes."""
    decoded = msgpack_decode(msgpack_encode(value))
    assert _same(decoded, value)


@settings(max_examples=50, deadline=None)
@given(st.binary(max_size=300))
def test_rt_codec_msgpack_bytes_stay_bytes(data: bytes) -> None:
    """RT-CODEC-1: bytes are encoded as the bin type and decode as bytes, never str."""
    decoded = msgpack_decode(msgpack_encode({"image": data}))
    assert type(decoded["image"]) is bytes
    assert decoded["image"] == data


def test_rt_codec_msgpack_accepts_buffer_types() -> None:
    """RT-CODEC-1: msgpack_decode takes bytes, bytearray and memoryview alike."""
    frame = msgpack_encode({"a": [1, 2]})
    for view in (frame, bytearray(frame), memoryview(frame)):
        assert msgpack_decode(view) == {"a": [1, 2]}


def test_rt_codec_tuples_encode_as_lists() -> None:
    """RT-CODEC-1: a tuple goes out as an array and comes back as a list."""
    assert msgpack_decode(msgpack_encode({"t": (1, "a")})) == {"t": [1, "a"]}
    assert json_decode(json_encode({"t": (1, "a")})) == {"t": [1, "a"]}


def test_rt_codec_json_is_text() -> None:
    """RT-CODEC-2: encoding='json' is orjson, compact, sent as text frames."""
    codec = make_codec("json")
    assert codec.binary is False
    assert codec.encode is json_encode
    assert codec.decode is json_decode
    assert codec.encode({"a": 1, "b": [True, None]}) == b'{"a":1,"b":[true,null]}'
    assert codec.decode('{"a": 1}') == {"a": 1}
    assert codec.decode(b'{"a": 1}') == {"a": 1}


@settings(max_examples=200, deadline=None)
@given(_JSON_VALUES)
def test_rt_codec_json_round_trip(value: Any) -> None:
    """RT-CODEC-2: any JSON value round-trips exactly, from bytes and from str."""
    encoded = json_encode(value)
    assert _same(json_decode(encoded), value)
    assert _same(json_decode(encoded.decode("utf-8")), value)


def test_rt_codec_custom_hooks_replace_halves() -> None:
    """RT-CODEC-3: encode_message/decode_message each replace only their half."""

    def encode(value: Any) -> bytes:
        return b"E" + repr(value).encode()

    def decode(data: bytes) -> Any:
        return ("D", data)

    only_encode = make_codec(encode_message=encode)
    assert only_encode.encode is encode
    assert only_encode.decode is msgpack_decode
    assert only_encode.custom_decode is False
    assert only_encode.binary is True

    only_decode = make_codec("json", decode_message=decode)
    assert only_decode.encode is json_encode
    assert only_decode.decode is decode
    assert only_decode.custom_decode is True
    assert only_decode.binary is False

    both = make_codec(encode_message=encode, decode_message=decode)
    assert both.encode({"x": 1}) == b"E{'x': 1}"
    assert both.decode(b"raw") == ("D", b"raw")
    assert both.custom_decode is True


@pytest.mark.parametrize("bad", ["MSGPACK", "cbor", "", None, "json "])
def test_rt_codec_bad_encoding(bad: Any) -> None:
    """RT-CODEC-4: an unknown encoding is a ValueError naming it and the choices."""
    with pytest.raises(ValueError) as info:
        make_codec(bad)
    message = str(info.value)
    assert repr(bad) in message
    assert "'msgpack'" in message and "'json'" in message


@settings(max_examples=200, deadline=None)
@given(_MSGPACK_VALUES)
def test_rt_codec_msgpack_interop_with_msgpack_package(value: Any) -> None:
    """RT-CODEC-5: our msgpack reads back identically with msgpack.unpackb(raw=False)."""
    theirs = msgpack.unpackb(msgpack_encode(value), raw=False, strict_map_key=False)
    assert _same(theirs, value)


@settings(max_examples=200, deadline=None)
@given(_MSGPACK_VALUES)
def test_rt_codec_reads_msgpack_package_output(value: Any) -> None:
    """RT-CODEC-5: what fal's runners pack (use_bin_type=True) decodes identically here."""
    assert _same(msgpack_decode(msgpack.packb(value, use_bin_type=True)), value)


def test_rt_codec_bytes_use_bin_type() -> None:
    """RT-CODEC-5: bytes go out as the msgpack bin family, str as the str family."""
    assert msgpack_encode(b"ab") == b"\xc4\x02ab"  # bin 8
    assert msgpack_encode("ab") == b"\xa2ab"  # fixstr
    assert msgpack_encode(b"ab") == msgpack.packb(b"ab", use_bin_type=True)
    assert msgpack.unpackb(msgpack_encode({"b": b"\x00\xff"}), raw=False) == {"b": b"\x00\xff"}
    big = bytes(70000)
    assert msgpack_encode(big)[:1] == b"\xc6"  # bin 32


@pytest.mark.parametrize("frame", [b"", b"\xc1", b"\x92\x01", b"\xd9\x05ab"])
def test_rt_codec_msgpack_decode_error_is_value_error(frame: bytes) -> None:
    """RT-CODEC-6: undecodable msgpack raises ValueError, as the docstring promises."""
    with pytest.raises(ValueError):
        msgpack_decode(frame)


@pytest.mark.parametrize("frame", ["", "{", "nope", b"\xff", "[1,]", "NaN"])
def test_rt_codec_json_decode_error_is_value_error(frame: Any) -> None:
    """RT-CODEC-6: undecodable JSON raises ValueError, as the docstring promises."""
    with pytest.raises(ValueError):
        json_decode(frame)


@pytest.mark.parametrize("value", [{1: "int key"}, 2**64, object()])
def test_rt_codec_msgpack_encode_refuses_unsupported(value: Any) -> None:
    """RT-CODEC-6: a value msgpack cannot carry raises TypeError at encode time."""
    with pytest.raises(TypeError):
        msgpack_encode(value)
