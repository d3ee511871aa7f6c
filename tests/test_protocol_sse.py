"""The incremental Server-Sent Events parser (SPEC §2.2, text/event-stream bodies)."""

from __future__ import annotations

from dataclasses import dataclass

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fal_realtime._protocol.sse import ServerSentEvent, SSEParser


def _parse(*chunks: bytes | str) -> list[ServerSentEvent]:
    parser = SSEParser()
    events: list[ServerSentEvent] = []
    for chunk in chunks:
        events.extend(parser.feed(chunk))
    return events


def _bytewise(data: bytes) -> list[ServerSentEvent]:
    return _parse(*(data[i : i + 1] for i in range(len(data))))


def test_ws_sse_fields() -> None:
    """WS-SSE-1: event, data, id and retry fields make one dispatched event."""
    events = _parse(b"event: update\ndata: hello\nid: 42\nretry: 1500\n\n")
    assert events == [ServerSentEvent(data="hello", event="update", id="42", retry=1500)]


def test_ws_sse_id_and_retry_persist() -> None:
    """WS-SSE-1: the last id and retry carry over to later events, as a browser keeps them."""
    parser = SSEParser()
    assert parser.last_event_id is None
    events = parser.feed("id: 1\nretry: 10\ndata: a\n\ndata: b\n\nid: 2\ndata: c\n\n")
    assert [(e.data, e.id, e.retry) for e in events] == [
        ("a", "1", 10),
        ("b", "1", 10),
        ("c", "2", 10),
    ]
    assert parser.last_event_id == "2"


def test_ws_sse_bad_retry_and_null_id_ignored() -> None:
    """WS-SSE-1: a non-digit retry and an id containing NUL are ignored."""
    events = _parse(
        "retry: 10\nretry: soon\nretry: -5\nretry: \u0663\nid: a\nid: b\0c\ndata: x\n\n"
    )
    assert events == [ServerSentEvent(data="x", id="a", retry=10)]


def test_ws_sse_empty_id_resets() -> None:
    """WS-SSE-1: an empty id field sets the last event id to the empty string."""
    events = _parse("id: 5\ndata: a\n\nid\ndata: b\n\n")
    assert [e.id for e in events] == ["5", ""]


def test_ws_sse_comments_ignored() -> None:
    """WS-SSE-2: lines starting with ':' are comments (keep-alives) and dispatch nothing."""
    assert _parse(": keep-alive\n\n:\n\n") == []
    assert _parse(": ping\ndata: x\n: more\n\n") == [ServerSentEvent(data="x")]


def test_ws_sse_unknown_fields_ignored() -> None:
    """WS-SSE-2: unknown field names are ignored."""
    assert _parse("foo: bar\nData: no\ndata: yes\n\n") == [ServerSentEvent(data="yes")]


def test_ws_sse_multiline_data_joined() -> None:
    """WS-SSE-3: several data lines are joined with a single LF."""
    assert _parse("data: one\ndata: two\ndata:\ndata: four\n\n") == [
        ServerSentEvent(data="one\ntwo\n\nfour")
    ]


@pytest.mark.parametrize("eol", ["\n", "\r", "\r\n"])
def test_ws_sse_line_endings(eol: str) -> None:
    """WS-SSE-4: LF, CR and CRLF line endings all work, split anywhere."""
    text = eol.join(["event: e", "data: a", "data: b", "", "data: c", "", ""])
    expected = [ServerSentEvent(data="a\nb", event="e"), ServerSentEvent(data="c")]
    assert _parse(text) == expected
    assert _parse(text.encode()) == expected
    assert _bytewise(text.encode()) == expected


def test_ws_sse_crlf_split_between_chunks() -> None:
    """WS-SSE-4: a CRLF split across two chunks is one line ending, not two."""
    assert _parse(b"data: a\r", b"\n\r", b"\ndata: b\r\n\r\n") == [
        ServerSentEvent(data="a"),
        ServerSentEvent(data="b"),
    ]
    # A CR at the end of a chunk followed by a chunk that does not start with LF.
    assert _parse(b"data: a\r", b"\r") == [ServerSentEvent(data="a")]
    # The pending CR survives an empty chunk and a chunk that decodes to nothing yet.
    assert _parse(b"data: \xc3\xa9\r", b"", b"\r") == [ServerSentEvent(data="\u00e9")]
    assert _parse(b"data: a\r", b"\ndata: \xc3", b"\xa9\r\n\r\n") == [
        ServerSentEvent(data="a\n\u00e9")
    ]


def test_ws_sse_mixed_line_endings() -> None:
    """WS-SSE-4: line endings may change within one stream."""
    assert _parse("data: a\rdata: b\ndata: c\r\n\n") == [ServerSentEvent(data="a\nb\nc")]


def test_ws_sse_bom_stripped_once() -> None:
    """WS-SSE-5: one leading UTF-8 BOM is dropped; a later one is content."""
    assert _parse(b"\xef\xbb\xbfdata: x\n\n") == [ServerSentEvent(data="x")]
    assert _parse(b"\xef", b"\xbb", b"\xbfdata: x\n\n") == [ServerSentEvent(data="x")]
    assert _parse("\ufeffdata: x\n\n") == [ServerSentEvent(data="x")]
    # A second BOM starts the first line's name, which then is not "data".
    assert _parse(b"\xef\xbb\xbf\xef\xbb\xbfdata: x\n\n") == []
    assert _parse(b"data: \xef\xbb\xbfx\n\n") == [ServerSentEvent(data="\ufeffx")]


def test_ws_sse_field_without_colon() -> None:
    """WS-SSE-6: a line without a colon is a field name with an empty value."""
    assert _parse("data\n\n") == [ServerSentEvent(data="")]
    assert _parse("data\ndata\n\n") == [ServerSentEvent(data="\n")]
    assert _parse("event\ndata: x\n\n") == [ServerSentEvent(data="x", event="message")]


def test_ws_sse_colon_spacing() -> None:
    """WS-SSE-6: 'data:x' needs no space, and only one space after the colon is dropped."""
    assert _parse("data:x\n\n") == [ServerSentEvent(data="x")]
    assert _parse("data:  x \n\n") == [ServerSentEvent(data=" x ")]
    assert _parse("data: a: b\n\n") == [ServerSentEvent(data="a: b")]
    assert _parse("event:ping\ndata:\n\n") == [ServerSentEvent(data="", event="ping")]


def test_ws_sse_event_without_data_not_dispatched() -> None:
    """WS-SSE-7: an event with no data line is not dispatched, and its type does not leak."""
    assert _parse("event: lonely\n\n") == []
    assert _parse("event: lonely\n\ndata: x\n\n") == [ServerSentEvent(data="x", event="message")]


def test_ws_sse_default_event_message() -> None:
    """WS-SSE-7: without an event field (or with an empty one) the type is 'message'."""
    assert _parse("data: x\n\n")[0].event == "message"
    assert _parse("event:\ndata: x\n\n")[0].event == "message"
    assert _parse("event: a\ndata: 1\n\ndata: 2\n\n")[1].event == "message"


def test_ws_sse_incomplete_event_kept_until_blank_line() -> None:
    """WS-SSE-7: an event is dispatched only at its blank line; a tail without one waits."""
    parser = SSEParser()
    assert parser.feed(b"data: a\n") == []
    assert parser.feed(b"data: b") == []
    assert parser.feed(b"\n") == []
    assert parser.feed(b"\n") == [ServerSentEvent(data="a\nb")]
    assert parser.feed(b"data: tail-without-blank-line\n") == []


def test_ws_sse_invalid_utf8_replaced() -> None:
    """WS-SSE-7: invalid UTF-8 becomes U+FFFD rather than an exception."""
    assert _parse(b"data: \xff\xfe\n\n") == [ServerSentEvent(data="\ufffd\ufffd")]


def test_ws_sse_any_llm_stream_shape() -> None:
    """WS-SSE-8: fal's any-llm stream (`event: event` + one JSON data line) parses to its JSON."""
    outputs = ["Hello", "Hello wor", "Hello world."]
    stream = b"".join(
        b"event: event\ndata: "
        + orjson.dumps({"output": text, "partial": i < 2, "error": None})
        + b"\n\n"
        for i, text in enumerate(outputs)
    )
    for events in (
        _parse(stream),
        _bytewise(stream),
        _parse(stream[:7], stream[7:40], stream[40:]),
    ):
        assert [e.event for e in events] == ["event"] * 3
        payloads = [orjson.loads(e.data) for e in events]
        assert [p["output"] for p in payloads] == outputs
        assert [p["partial"] for p in payloads] == [True, True, False]


# -- THE property: the split of the stream into chunks never changes the events ----------


@dataclass(frozen=True)
class _Spec:
    event: str | None
    data: list[str]
    id: str | None
    retry: int | None
    comment: str | None


_LINE_TEXT = st.text(
    alphabet=st.characters(codec="utf-8", exclude_characters="\r\n\0"), max_size=12
)
_NAME = _LINE_TEXT
_SPECS = st.builds(
    _Spec,
    event=st.none() | _NAME,
    data=st.lists(_LINE_TEXT, max_size=3),
    id=st.none() | _LINE_TEXT,
    retry=st.none() | st.integers(min_value=0, max_value=10**6),
    comment=st.none() | _LINE_TEXT,
)


def _lines(spec: _Spec) -> list[str]:
    lines: list[str] = []
    if spec.comment is not None:
        lines.append(f":{spec.comment}")
    if spec.event is not None:
        lines.append(f"event: {spec.event}")
    if spec.id is not None:
        lines.append(f"id: {spec.id}")
    if spec.retry is not None:
        lines.append(f"retry: {spec.retry}")
    lines += [f"data: {d}" for d in spec.data]
    return [*lines, ""]


def _expected(specs: list[_Spec]) -> list[ServerSentEvent]:
    """What SPEC-following parsing must give, computed from the specs alone."""
    events: list[ServerSentEvent] = []
    last_id: str | None = None
    retry: int | None = None
    for spec in specs:
        last_id = spec.id if spec.id is not None else last_id
        retry = spec.retry if spec.retry is not None else retry
        if spec.data:
            events.append(
                ServerSentEvent("\n".join(spec.data), spec.event or "message", last_id, retry)
            )
    return events


@st.composite
def _streams(draw: st.DrawFn) -> tuple[bytes, list[ServerSentEvent] | None]:
    specs = draw(st.lists(_SPECS, max_size=5))
    lines = [line for spec in specs for line in _lines(spec)]
    mode = draw(st.sampled_from(["\n", "\r", "\r\n", "mixed"]))
    if mode == "mixed":
        endings = draw(
            st.lists(
                st.sampled_from(["\n", "\r", "\r\n"]), min_size=len(lines), max_size=len(lines)
            )
        )
        # A CR followed by an LF-terminated line reads as one CRLF: only invariance is checked.
        expected = None
    else:
        endings = [mode] * len(lines)
        expected = _expected(specs)
    text = "".join(line + eol for line, eol in zip(lines, endings, strict=True))
    bom = "\ufeff" if draw(st.booleans()) else ""
    return (bom + text).encode("utf-8"), expected


def _split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({min(c, len(data)) for c in cuts})
    bounds = [0, *points, len(data)]
    return [data[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]


@settings(max_examples=300, deadline=None)
@given(_streams(), st.lists(st.integers(min_value=0, max_value=400), max_size=12))
def test_ws_sse_split_invariance_property(
    stream: tuple[bytes, list[ServerSentEvent] | None], cuts: list[int]
) -> None:
    """WS-SSE-9: any split of any event stream into chunks gives the events of the whole."""
    data, expected = stream
    whole = _parse(data)
    assert _parse(*_split(data, cuts)) == whole
    if expected is not None:
        assert whole == expected


@settings(max_examples=100, deadline=None)
@given(_streams())
def test_ws_sse_bytewise_and_text_feeding_property(
    stream: tuple[bytes, list[ServerSentEvent] | None],
) -> None:
    """WS-SSE-9: byte-at-a-time feeding and feeding decoded text give the same events too."""
    data, _ = stream
    whole = _parse(data)
    assert _bytewise(data) == whole
    text = data.decode("utf-8")
    assert _parse(*(text[i : i + 3] for i in range(0, len(text), 3))) == whole


def test_ws_sse_split_inside_crlf_and_multibyte() -> None:
    """WS-SSE-9: every two-way split of a CRLF stream with 2-, 3- and 4-byte characters agrees."""
    text = "\ufeffevent: \u00e9\u20ac\r\ndata: \U0001f600 x\r\n\r\nid: \u4e2d\r\ndata: y\r\n\r\n"
    data = text.encode()
    whole = _parse(data)
    assert whole == [
        ServerSentEvent(data="\U0001f600 x", event="\u00e9\u20ac"),
        ServerSentEvent(data="y", id="\u4e2d"),
    ]
    for i in range(len(data) + 1):
        for j in range(i, len(data) + 1, 3):
            assert _parse(data[:i], data[i:j], data[j:]) == whole, (i, j)
