"""Assembly of HTTP-over-WebSocket responses from frames (SPEC §2.2)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fal_realtime._protocol.http_ws import Body, End, ResponseAssembler, Start, parse_control
from fal_realtime.errors import DECODE_ERROR, RealtimeError


def _start(rid: Any = "r1", status: int = 200, headers: dict[str, str] | None = None) -> str:
    value = {"type": "start", "request_id": rid, "status": status, "headers": headers or {}}
    return orjson.dumps(value).decode()


def _end(rid: Any = "r1", status: int = 200, ttfb: float | None = 0.57) -> str:
    value: dict[str, Any] = {"type": "end", "request_id": rid, "status": status}
    if ttfb is not None:
        value["time_to_first_byte_seconds"] = ttfb
    return orjson.dumps(value).decode()


def test_ws_frame_start_body_end() -> None:
    """WS-FRAME-1: start, binary and text body chunks, end come out as Start, Body..., End."""
    asm = ResponseAssembler()
    assert not asm.in_response and asm.current is None

    start = asm.feed(_start("r1", 200, {"content-type": "text/event-stream"}))
    assert isinstance(start, Start)
    assert asm.in_response and asm.current == start

    assert asm.feed(b"\x00\x01binary") == Body(b"\x00\x01binary", is_text=False)
    assert asm.feed(bytearray(b"more")) == Body(b"more", is_text=False)
    assert asm.feed(memoryview(b"view")) == Body(b"view", is_text=False)
    assert asm.feed('{"output": "h\u00e9llo"}') == Body(
        '{"output": "h\u00e9llo"}'.encode(), is_text=True
    )

    end = asm.feed(_end("r1"))
    assert isinstance(end, End)
    assert end.request_id == "r1"
    assert not asm.in_response and asm.current is None


def test_ws_frame_empty_body() -> None:
    """WS-FRAME-1: a response may have no body frames at all."""
    asm = ResponseAssembler()
    assert isinstance(asm.feed(_start("r")), Start)
    assert isinstance(asm.feed(_end("r")), End)
    assert not asm.in_response


def test_ws_frame_empty_chunks_are_body() -> None:
    """WS-FRAME-1: empty binary and text frames inside a response are empty body chunks."""
    asm = ResponseAssembler()
    asm.feed(_start("s"))
    assert asm.feed(b"") == Body(b"", is_text=False)
    assert asm.feed("") == Body(b"", is_text=True)


@pytest.mark.parametrize(
    "text",
    [
        '{"type": "start"}',  # no request_id
        '{"type": "end", "request_id": null}',  # request_id null counts as absent
        '{"type": "chunk", "request_id": "r1"}',  # another type
        '{"type": "START", "request_id": "r1"}',  # types are case-sensitive
        '{"kind": "start", "request_id": "r1"}',  # no type at all
        '["type", "start", "request_id"]',  # JSON but not a map
        '"type"',
        "type: start request_id: r1",  # not JSON
        '{"type": "start", "request_id": "r1"',  # truncated JSON
        ' {"type": "start", "request_id": "r1"}',  # leading space: not what the server sends
        "",
        'data: {"type": "end"}\n\n',
    ],
)
def test_ws_frame_text_that_is_body(text: str) -> None:
    """WS-FRAME-2: text that is not a JSON map with type start/end and a request_id is body."""
    assert parse_control(text) is None
    asm = ResponseAssembler()
    asm.feed(_start("r1"))
    assert asm.feed(text) == Body(text.encode(), is_text=True)
    assert asm.in_response


def test_ws_frame_control_detection() -> None:
    """WS-FRAME-2: a JSON map with type start/end and a request_id is control."""
    assert isinstance(parse_control(_start("a")), Start)
    assert isinstance(parse_control(_end("a")), End)
    assert isinstance(parse_control('{"request_id":"a","type":"end","extra":[1]}'), End)
    # A numeric request_id is accepted and compared as text.
    start = parse_control('{"type": "start", "request_id": 7}')
    assert isinstance(start, Start) and start.request_id == "7"


def test_ws_frame_end_request_id_mismatch() -> None:
    """WS-FRAME-3: an end whose request_id is not the start's raises DECODE_ERROR."""
    asm = ResponseAssembler()
    asm.feed(_start("r1"))
    with pytest.raises(RealtimeError) as info:
        asm.feed(_end("r2"))
    assert info.value.code == DECODE_ERROR
    assert info.value.request_id == "r1"
    assert "r2" in info.value.message and "r1" in info.value.message
    assert asm.in_response  # the response in progress is not forgotten


def test_ws_frame_end_without_start() -> None:
    """WS-FRAME-4: an end before any start raises DECODE_ERROR naming the request."""
    asm = ResponseAssembler()
    with pytest.raises(RealtimeError) as info:
        asm.feed(_end("r9"))
    assert info.value.code == DECODE_ERROR
    assert info.value.request_id == "r9"
    assert "without a start" in info.value.message


@pytest.mark.parametrize("frame", [b"chunk", "plain text", '{"output": 1}'])
def test_ws_frame_body_before_start(frame: bytes | str) -> None:
    """WS-FRAME-4: a body frame (binary or text) before any start raises DECODE_ERROR."""
    asm = ResponseAssembler()
    with pytest.raises(RealtimeError) as info:
        asm.feed(frame)
    assert info.value.code == DECODE_ERROR
    assert "before any start" in info.value.message


def test_ws_frame_body_after_end() -> None:
    """WS-FRAME-4: a body frame between an end and the next start raises DECODE_ERROR."""
    asm = ResponseAssembler()
    asm.feed(_start("r1"))
    asm.feed(_end("r1"))
    with pytest.raises(RealtimeError, match="DECODE_ERROR"):
        asm.feed(b"late")


def test_ws_frame_start_inside_response() -> None:
    """WS-FRAME-4: a start while a response is in progress raises DECODE_ERROR."""
    asm = ResponseAssembler()
    asm.feed(_start("r1"))
    with pytest.raises(RealtimeError) as info:
        asm.feed(_start("r2"))
    assert info.value.code == DECODE_ERROR
    assert info.value.request_id == "r2"
    assert "r1" in info.value.message
    assert asm.current is not None and asm.current.request_id == "r1"


def test_ws_frame_start_fields() -> None:
    """WS-FRAME-5: start carries request_id, status and headers (as str to str)."""
    start = parse_control(
        _start("abc", 404, {"content-type": "application/json", "x-fal-request-id": "abc"})
    )
    assert start == Start(
        "abc",
        404,
        {"content-type": "application/json", "x-fal-request-id": "abc"},
        {
            "type": "start",
            "request_id": "abc",
            "status": 404,
            "headers": {"content-type": "application/json", "x-fal-request-id": "abc"},
        },
    )


def test_ws_frame_start_defaults_and_odd_values() -> None:
    """WS-FRAME-5: a missing or non-int status is 200; odd headers become text or empty."""
    start = parse_control('{"type": "start", "request_id": "r"}')
    assert isinstance(start, Start)
    assert (start.status, dict(start.headers)) == (200, {})
    start = parse_control('{"type":"start","request_id":"r","status":true,"headers":{"n":1}}')
    assert isinstance(start, Start)
    assert (start.status, dict(start.headers)) == (200, {"n": "1"})
    start = parse_control('{"type":"start","request_id":"r","status":"500","headers":[1]}')
    assert isinstance(start, Start)
    assert (start.status, dict(start.headers)) == (200, {})


def test_ws_frame_end_fields() -> None:
    """WS-FRAME-5: end carries status and time_to_first_byte_seconds as a float."""
    end = parse_control(_end("r", 502, 0.57))
    assert isinstance(end, End)
    assert (end.request_id, end.status, end.time_to_first_byte_seconds) == ("r", 502, 0.57)
    end = parse_control('{"type":"end","request_id":"r","time_to_first_byte_seconds":1}')
    assert isinstance(end, End)
    assert end.time_to_first_byte_seconds == 1.0
    assert isinstance(end.time_to_first_byte_seconds, float)
    assert end.status == 200


@pytest.mark.parametrize("ttfb", ["0.5", True, None, [1]])
def test_ws_frame_end_bad_ttfb(ttfb: Any) -> None:
    """WS-FRAME-5: a time_to_first_byte_seconds that is not a number is None."""
    text = orjson.dumps({"type": "end", "request_id": "r", "time_to_first_byte_seconds": ttfb})
    end = parse_control(text.decode())
    assert isinstance(end, End)
    assert end.time_to_first_byte_seconds is None


def test_ws_frame_pipelined_responses() -> None:
    """WS-FRAME-6: responses back to back on one connection are told apart in order."""
    asm = ResponseAssembler()
    frames: list[bytes | str] = [
        _start("a"),
        b"A1",
        "A2",
        _end("a"),
        _start("b", 500),
        _end("b", 500),
        _start("c"),
        b"C1",
        _end("c"),
    ]
    events = [asm.feed(f) for f in frames]
    kinds = [type(e).__name__ for e in events]
    assert kinds == ["Start", "Body", "Body", "End", "Start", "End", "Start", "Body", "End"]
    ids = [e.request_id for e in events if isinstance(e, Start | End)]
    assert ids == ["a", "a", "b", "b", "c", "c"]
    assert [e.data for e in events if isinstance(e, Body)] == [b"A1", b"A2", b"C1"]


def test_ws_frame_body_that_looks_like_control_after_end() -> None:
    """WS-FRAME-6: a start with a reused request_id after an end opens a new response."""
    asm = ResponseAssembler()
    asm.feed(_start("same"))
    asm.feed(_end("same"))
    assert isinstance(asm.feed(_start("same")), Start)
    assert asm.in_response


# -- property: any sequence of responses reassembles exactly ------------------------------

_CHUNK = st.binary(max_size=30) | st.text(max_size=30).filter(lambda s: parse_control(s) is None)
# JSON-map text bodies that look a lot like control frames but are not.
_TRICKY = st.sampled_from(
    [
        '{"type": "start"}',
        '{"type": "end"}',
        '{"type": "progress", "request_id": "x"}',
        '{"type": "start", "request_id": null}',
        '{"output": "ok"}',
        "[]",
    ]
)
_RESPONSE = st.tuples(
    st.text(min_size=1, max_size=8),
    st.integers(min_value=100, max_value=599),
    st.lists(_CHUNK | _TRICKY, max_size=6),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(_RESPONSE, max_size=5))
def test_ws_frame_reassembly_property(responses: list[tuple[str, int, list[bytes | str]]]) -> None:
    """WS-FRAME-7: feeding any sequence of responses reproduces each body exactly, in order."""
    asm = ResponseAssembler()
    got: list[tuple[str, int, list[bytes | str]]] = []
    for rid, status, chunks in responses:
        for frame in [_start(rid, status), *chunks, _end(rid, status)]:
            event = asm.feed(frame)
            if isinstance(event, Start):
                got.append((event.request_id, event.status, []))
            elif isinstance(event, Body):
                got[-1][2].append(event.data.decode("utf-8") if event.is_text else event.data)
            else:
                assert (event.request_id, event.status) == got[-1][:2]
    assert got == responses
    assert not asm.in_response
