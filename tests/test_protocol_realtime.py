"""Classification of realtime server frames (SPEC §2.1 "Frames server → client")."""

from __future__ import annotations

from typing import Any

import msgpack  # type: ignore[import-untyped]
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fal_realtime._protocol.codecs import json_decode, msgpack_encode
from fal_realtime._protocol.realtime import Frame, FrameKind, classify, classify_value


def _pack(value: Any) -> bytes:
    return msgpack_encode(value)


def _text(value: Any) -> str:
    return orjson.dumps(value).decode()


def test_rt_frame_binary_map_is_result() -> None:
    """RT-FRAME-1: a binary msgpack map is a result, decoded in full."""
    value = {"images": [{"url": "data:image/png;base64,AAAA", "raw": b"\x89PNG"}], "seed": 7}
    frame = classify(_pack(value))
    assert frame == Frame(FrameKind.RESULT, value)
    assert frame.code is None and frame.reason is None


def test_rt_frame_binary_from_runner_is_result() -> None:
    """RT-FRAME-1: a map packed as fal's runners pack it (msgpack, use_bin_type) is a result."""
    value = {"timings": {"inference": 0.1}, "data": b"\x00\x01"}
    frame = classify(msgpack.packb(value, use_bin_type=True))
    assert frame.kind is FrameKind.RESULT
    assert frame.value == value


@pytest.mark.parametrize("wrap", [bytes, bytearray, memoryview])
def test_rt_frame_buffer_types(wrap: Any) -> None:
    """RT-FRAME-1: bytes, bytearray and memoryview frames classify alike."""
    frame = classify(wrap(_pack({"ok": True})))
    assert frame.kind is FrameKind.RESULT
    assert frame.value == {"ok": True}


def test_rt_frame_json_text_map_is_result() -> None:
    """RT-FRAME-2: a text frame holding any other JSON map is a result."""
    frame = classify('{"images": [], "status": "ok"}')
    assert frame.kind is FrameKind.RESULT
    assert frame.value == {"images": [], "status": "ok"}


def test_rt_frame_result_keeps_request_id() -> None:
    """RT-FRAME-2: a result may carry request_id; it stays in the value."""
    kind, value = classify(_pack({"request_id": "r-1", "output": 3}))
    assert kind is FrameKind.RESULT
    assert value["request_id"] == "r-1"


def test_rt_frame_meta_message() -> None:
    """RT-FRAME-3: {"type": "x-fal-message", ...} is meta, not a result, from text or binary."""
    meta = {"type": "x-fal-message", "action": "timings", "timings": {"inference": 0.05}}
    for raw in (_text(meta), _pack(meta)):
        frame = classify(raw)
        assert frame.kind is FrameKind.META
        assert frame.value == meta
        assert frame.code is None


def test_rt_frame_error_code_and_reason() -> None:
    """RT-FRAME-4: x-fal-error is an error carrying the server's code and reason text."""
    error = {"type": "x-fal-error", "error": "INTERNAL_ERROR", "reason": "deliberate failure"}
    frame = classify(_text(error))
    assert frame.kind is FrameKind.ERROR
    assert frame.code == "INTERNAL_ERROR"
    assert frame.reason == "deliberate failure"
    assert frame.value == error
    assert classify(_pack(error)) == frame


def test_rt_frame_error_other_codes_pass_through() -> None:
    """RT-FRAME-4: any other server code (e.g. RATE_LIMITED) passes through unchanged."""
    frame = classify(_text({"type": "x-fal-error", "error": "RATE_LIMITED", "reason": "slow"}))
    assert (frame.kind, frame.code, frame.reason) == (FrameKind.ERROR, "RATE_LIMITED", "slow")


def test_rt_frame_error_without_code_or_reason() -> None:
    """RT-FRAME-4: x-fal-error without a code is UNKNOWN_ERROR; a missing reason is None."""
    frame = classify('{"type": "x-fal-error"}')
    assert (frame.kind, frame.code, frame.reason) == (FrameKind.ERROR, "UNKNOWN_ERROR", None)
    frame = classify('{"type": "x-fal-error", "error": 503, "reason": ["a"]}')
    assert (frame.kind, frame.code, frame.reason) == (FrameKind.ERROR, "503", "['a']")


def test_rt_frame_timeout_is_its_own_kind() -> None:
    """RT-FRAME-5: x-fal-error TIMEOUT is kind TIMEOUT (an idle session ended), not ERROR."""
    timeout = {"type": "x-fal-error", "error": "TIMEOUT", "reason": "no input for 60s"}
    for raw in (_text(timeout), _pack(timeout)):
        frame = classify(raw)
        assert frame.kind is FrameKind.TIMEOUT
        assert frame.code == "TIMEOUT"
        assert frame.reason == "no input for 60s"
    frame = classify('{"type": "x-fal-error", "error": "TIMEOUT"}')
    assert (frame.kind, frame.code, frame.reason) == (FrameKind.TIMEOUT, "TIMEOUT", None)


def test_rt_frame_unauthorized() -> None:
    """RT-FRAME-6: {"status": "error", "error": "Unauthorized"} is UNAUTHORIZED."""
    frame = classify('{"status": "error", "error": "Unauthorized"}')
    assert frame.kind is FrameKind.UNAUTHORIZED
    assert frame.code == "UNAUTHORIZED"
    assert classify(_pack({"status": "error", "error": "Unauthorized"})).kind is (
        FrameKind.UNAUTHORIZED
    )


def test_rt_frame_other_status_error_is_result() -> None:
    """RT-FRAME-6: a status=error map with another error is not UNAUTHORIZED (it is a result)."""
    assert classify('{"status": "error", "error": "Forbidden"}').kind is FrameKind.RESULT
    assert classify('{"status": "ok", "error": "Unauthorized"}').kind is FrameKind.RESULT


@pytest.mark.parametrize(
    ("raw", "reason_part"),
    [
        (b"\xc1", "cannot decode binary frame"),
        (b"", "cannot decode binary frame"),
        (b"\xd9\x05ab", "cannot decode binary frame"),
        ("{not json", "cannot decode text frame"),
        ("", "cannot decode text frame"),
    ],
)
def test_rt_frame_undecodable(raw: bytes | str, reason_part: str) -> None:
    """RT-FRAME-7: bad msgpack and bad JSON text are UNDECODABLE, keeping the raw frame."""
    frame = classify(raw)
    assert frame.kind is FrameKind.UNDECODABLE
    assert frame.value == raw
    assert frame.reason is not None and reason_part in frame.reason


@pytest.mark.parametrize("value", [[1, 2], "text", 3, None, True, b"bin", 1.5])
def test_rt_frame_non_map_undecodable(value: Any) -> None:
    """RT-FRAME-7: a msgpack or JSON value that is not a map is UNDECODABLE."""
    frame = classify(_pack(value))
    assert frame.kind is FrameKind.UNDECODABLE
    assert frame.reason is not None and "expected a map" in frame.reason
    if not isinstance(value, bytes):
        text_frame = classify(_text(value))
        assert text_frame.kind is FrameKind.UNDECODABLE
        assert text_frame.value == value


def test_rt_frame_custom_decode_any_type_is_result() -> None:
    """RT-FRAME-8: with a custom decode_message, whatever it returns for binary is a result."""
    seen: list[Any] = []

    def decode(data: bytes) -> Any:
        seen.append(data)
        return data.decode().split(",")

    frame = classify(memoryview(b"a,b"), decode, custom_decode=True)
    assert frame == Frame(FrameKind.RESULT, ["a", "b"])
    assert seen == [b"a,b"] and type(seen[0]) is bytes  # the hook always gets bytes


def test_rt_frame_custom_decode_map_still_classified() -> None:
    """RT-FRAME-8: a custom decoder's map output still goes through meta/error sorting."""

    def decode(data: bytes) -> Any:
        return json_decode(data)

    frame = classify(b'{"type": "x-fal-error", "error": "TIMEOUT"}', decode, custom_decode=True)
    assert frame.kind is FrameKind.TIMEOUT


def test_rt_frame_custom_decode_failure_undecodable() -> None:
    """RT-FRAME-8: a custom decoder that raises makes the frame UNDECODABLE, not an exception."""

    def decode(data: bytes) -> Any:
        raise RuntimeError("boom")

    frame = classify(b"x", decode, custom_decode=True)
    assert frame.kind is FrameKind.UNDECODABLE
    assert frame.reason is not None and "boom" in frame.reason


def test_rt_frame_custom_decode_text_still_json() -> None:
    """RT-FRAME-8: text frames are JSON even with a custom decoder; non-maps stay UNDECODABLE."""

    def decode(data: bytes) -> Any:
        raise AssertionError("not called for text frames")

    assert classify('{"a": 1}', decode, custom_decode=True).kind is FrameKind.RESULT
    assert classify("[1]", decode, custom_decode=True).kind is FrameKind.UNDECODABLE


def test_rt_frame_unpacks_as_kind_value() -> None:
    """RT-FRAME-10: `kind, value = classify(frame)` unpacks to the kind and decoded value."""
    kind, value = classify(_pack({"x": 1}))
    assert kind is FrameKind.RESULT
    assert value == {"x": 1}
    kind, value = classify('{"type": "x-fal-message"}')
    assert (kind, value) == (FrameKind.META, {"type": "x-fal-message"})
    assert list(classify(b"\xc1")) == [FrameKind.UNDECODABLE, b"\xc1"]


def test_rt_frame_classify_value_direct() -> None:
    """RT-FRAME-10: classify_value sorts an already decoded value the same way."""
    assert classify_value({"a": 1}).kind is FrameKind.RESULT
    assert classify_value([1]).kind is FrameKind.UNDECODABLE
    assert classify_value([1], any_type_is_result=True) == Frame(FrameKind.RESULT, [1])
    assert classify_value({"type": "x-fal-message"}, any_type_is_result=True).kind is (
        FrameKind.META
    )


# -- totality ------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_rt_frame_never_raises_on_bytes(data: bytes) -> None:
    """RT-FRAME-9: classify never raises on arbitrary bytes; it always returns a Frame."""
    frame = classify(data)
    assert isinstance(frame, Frame)
    assert isinstance(frame.kind, FrameKind)
    if frame.kind is FrameKind.UNDECODABLE:
        assert frame.reason


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(codec=None, exclude_categories=()), max_size=200))
def test_rt_frame_never_raises_on_text(text: str) -> None:
    """RT-FRAME-9: classify never raises on arbitrary text, lone surrogates included."""
    frame = classify(text)
    assert isinstance(frame, Frame)
    assert isinstance(frame.kind, FrameKind)


_JSON_SCALAR = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=10)
)
_JSON_VALUE = st.recursive(
    _JSON_SCALAR,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)
# The keys and values classify looks at, so that every branch is reached often.
_INTERESTING = st.fixed_dictionaries(
    {},
    optional={
        "type": st.sampled_from(["x-fal-error", "x-fal-error", "x-fal-message", "start", ""])
        | _JSON_VALUE,
        "error": st.sampled_from(["TIMEOUT", "TIMEOUT", "Unauthorized", "INTERNAL_ERROR", ""])
        | _JSON_VALUE,
        "status": st.sampled_from(["error", "error", "ok"]) | _JSON_VALUE,
        "reason": _JSON_VALUE,
        "request_id": st.text(max_size=8),
    },
)
_MAPS = st.builds(
    lambda a, b: {**b, **a},
    _INTERESTING,
    st.dictionaries(st.text(max_size=8), _JSON_VALUE, max_size=4),
)


def _expected_kind(value: dict[str, Any]) -> FrameKind:
    """The SPEC §2.1 rules, written out independently of the implementation."""
    if value.get("type") == "x-fal-message":
        return FrameKind.META
    if value.get("type") == "x-fal-error":
        return FrameKind.TIMEOUT if value.get("error") == "TIMEOUT" else FrameKind.ERROR
    if value.get("status") == "error" and value.get("error") == "Unauthorized":
        return FrameKind.UNAUTHORIZED
    return FrameKind.RESULT


@settings(max_examples=300, deadline=None)
@given(_MAPS)
def test_rt_frame_total_on_maps(value: dict[str, Any]) -> None:
    """RT-FRAME-9: on any JSON-able map classify is total and follows the rules, text or binary."""
    expected = _expected_kind(value)
    for raw in (_text(value), _pack(value)):
        frame = classify(raw)
        assert frame.kind is expected
        assert frame.value == value
        if expected in (FrameKind.ERROR, FrameKind.TIMEOUT):
            assert isinstance(frame.code, str) and frame.code
        else:
            assert (frame.code is None) == (expected is not FrameKind.UNAUTHORIZED)


@given(
    st.dictionaries(
        st.sampled_from(["type", "status", "error", "images", "x-fal-message", "seed"]),
        st.one_of(
            st.none(),
            st.text(max_size=12),
            st.integers(),
            st.sampled_from(["x-fal-error", "x-fal-message", "error", "Unauthorized", "TIMEOUT"]),
        ),
        max_size=4,
    )
    | st.one_of(st.none(), st.integers(), st.text(), st.lists(st.integers()))
)
def test_rt_frame_11_fast_path_agrees_with_classification(value: Any) -> None:
    """RT-FRAME-11: plain_result(v) is True only for values classify_value calls RESULT."""
    from fal_realtime._protocol.realtime import plain_result

    if plain_result(value):
        assert classify_value(value).kind is FrameKind.RESULT
