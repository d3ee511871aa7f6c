"""The runner-side frames (_protocol.runner) read back as the client classifies them."""

from __future__ import annotations

from typing import Any

import orjson
import ormsgpack
import pydantic
import pytest

from fal_realtime._protocol.realtime import FrameKind, classify
from fal_realtime._protocol.runner import (
    TIMEOUT_REASON,
    UNAUTHORIZED_FRAME,
    InputError,
    decode_input,
    encode_output,
    error_frame,
    timeout_frame,
    timings_frame,
)


def test_frames_the_gateway_sends_are_what_the_client_expects() -> None:
    """Each runner frame classifies as the kind the client acts on, with code and reason."""
    assert classify(encode_output({"a": b"\x00"})).value == {"a": b"\x00"}
    timeout = classify(timeout_frame())
    assert (timeout.kind, timeout.code, timeout.reason) == (
        FrameKind.TIMEOUT,
        "TIMEOUT",
        TIMEOUT_REASON,
    )
    error = classify(error_frame("INTERNAL_ERROR", "boom"))
    assert (error.kind, error.code, error.reason) == (FrameKind.ERROR, "INTERNAL_ERROR", "boom")
    assert classify(UNAUTHORIZED_FRAME).kind is FrameKind.UNAUTHORIZED
    assert classify(timings_frame(0.5)).kind is FrameKind.META


def test_text_frames_are_compact_json_as_fals_runner_sends_them() -> None:
    """x-fal frames are compact JSON (fal sends json.dumps with separators=(",", ":"))."""
    text = timeout_frame()
    assert " " not in text.replace(TIMEOUT_REASON, "")
    assert orjson.loads(timings_frame(1.5)) == {
        "type": "x-fal-message",
        "action": "timings",
        "timing": 1.5,
    }


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        ('{"a": 1}', "expected a binary msgpack frame, got a text frame"),
        (b"\xc1", "cannot decode msgpack input"),
        (ormsgpack.packb([1, 2]), "input must be a msgpack map, got list"),
    ],
)
def test_bad_input_frames_raise_input_error(frame: bytes | str, message: str) -> None:
    """A text frame, undecodable bytes or a non-map raise InputError saying which."""
    with pytest.raises(InputError, match=message):
        decode_input(frame)


def test_outputs_must_be_maps_or_models() -> None:
    """A pydantic model is dumped; anything else that is not a map is fal's TypeError."""

    class Out(pydantic.BaseModel):
        n: int

    assert ormsgpack.unpackb(encode_output(Out(n=3))) == {"n": 3}
    value: Any = [1]
    with pytest.raises(TypeError, match=r"^Expected a dict or pydantic model as output, got "):
        encode_output(value)
