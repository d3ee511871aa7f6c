"""GW-REC: the recording format (no event loop): lines, exact frames, no secrets, replay plans."""

from __future__ import annotations

from pathlib import Path

import orjson
import ormsgpack
import pytest

from fal_realtime._protocol.recording import (
    Event,
    Header,
    RecordingError,
    Step,
    encode_event,
    encode_header,
    first_difference,
    parse_recording,
    plan_sessions,
)
from fal_realtime._recorder import Recorder

ECHO = Header("realtime", "fal-ai/echo", "/realtime")


def _lines(*events: Event, header: Header = ECHO) -> list[str]:
    return [encode_header(header), *(encode_event(e) for e in events)]


def test_gw_rec_1_every_event_is_one_json_line_and_frames_round_trip_exactly() -> None:
    """GW-REC-1: each event is one JSON line; text and binary frames parse back byte for byte."""
    binary = ormsgpack.packb({"prompt": "a cat", "raw": b"\x00\xff"})
    events = (
        Event(0.0, "open", url="ws://h/fal-ai/echo/realtime?fal_jwt_token=***"),
        Event(0.001, "send", frame=binary),
        Event(0.002, "recv", frame=b"\xc1\x00 not msgpack"),
        Event(0.003, "recv", frame='{"type":"x-fal-error","error":"TIMEOUT","reason":"r"}'),
        Event(0.004, "close", code=1000, by="server"),
    )
    lines = _lines(*events)
    assert all(line.endswith("\n") and line.count("\n") == 1 for line in lines)
    parsed = parse_recording(lines)
    assert parsed.header == ECHO
    assert parsed.events == events
    assert parsed.request_path == "/fal-ai/echo/realtime"


def test_gw_rec_2_msgpack_frames_get_a_readable_view_for_diffs() -> None:
    """GW-REC-2: a msgpack frame's line shows its value; the bytes stay the source of truth."""
    line = orjson.loads(encode_event(Event(0.5, "send", frame=ormsgpack.packb({"a": [1, "x"]}))))
    assert line["msgpack"] == {"a": [1, "x"]}
    assert list(line) == ["t", "event", "binary", "msgpack"]
    # bytes inside a map have no JSON form: the line keeps only the exact bytes
    assert "msgpack" not in orjson.loads(encode_event(Event(0, "send", frame=b"\xc4\x01\x00")))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        ('{"recording": "other"}\n', "line 1: not a fal-realtime recording header"),
        (encode_header(ECHO) + "not json\n", "line 2: not JSON"),
        (encode_header(ECHO) + '{"t": 0, "event": "sent"}\n', "line 2: expected an event"),
        (encode_header(ECHO) + '{"t": 0, "event": "send", "binary": "!"}\n', "line 2: a frame"),
        (encode_header(ECHO) + '{"t": "0", "event": "open"}\n', "line 2: 't' must be"),
    ],
)
def test_gw_rec_3_a_bad_file_is_refused_naming_the_line(text: str, message: str) -> None:
    """GW-REC-3: a file that is not a recording raises RecordingError naming the line."""
    with pytest.raises(RecordingError, match=message):
        parse_recording(text.splitlines(keepends=True))


def test_gw_rec_4_the_recorder_writes_redacted_urls_and_timing(tmp_path: Path) -> None:
    """GW-REC-4: the Recorder writes the header, a redacted URL and increasing times."""
    path = tmp_path / "echo.jsonl"
    recorder = Recorder(path, protocol="realtime", app="fal-ai/echo", path_option="/realtime")
    recorder.opened("ws://u:pw@127.0.0.1:1/fal-ai/echo/realtime?fal_jwt_token=SECRET&x=1")
    recorder.sent(bytearray(b"\x81\xa1a\x01"))
    recorder.received("text")
    recorder.closed(None, by="server")
    text = path.read_text(encoding="utf-8")
    assert "SECRET" not in text and "pw" not in text
    parsed = parse_recording(text.splitlines())
    assert [e.kind for e in parsed.events] == ["open", "send", "recv", "close"]
    assert parsed.events[0].url == "ws://***@127.0.0.1:1/fal-ai/echo/realtime?fal_jwt_token=***&x=1"
    assert parsed.events[1].frame == b"\x81\xa1a\x01"
    assert parsed.events[3].code == 1006
    times = [e.t for e in parsed.events]
    assert times == sorted(times)


def test_gw_rec_5_plans_give_each_input_what_followed_it_and_end_as_recorded() -> None:
    """GW-REC-5: outputs go to the input before them, with delays; server closes end the plan."""
    events = (
        Event(1.0, "open", url="ws://h/a/b/realtime"),
        Event(1.1, "recv", frame="hello"),
        Event(2.0, "send", frame=b"in1"),
        Event(2.5, "recv", frame=b"out1"),
        Event(2.75, "recv", frame=b"out1b"),
        Event(3.0, "send", frame=b"in2"),
        Event(4.0, "recv", frame="TIMEOUT"),
        Event(4.25, "close", code=1000, by="server"),
        Event(5.0, "open", url="ws://h/a/b/realtime"),
        Event(5.5, "send", frame=b"in3"),
        Event(6.0, "close", code=1000, by="client"),
    )
    first, second = plan_sessions(parse_recording(_lines(*events)))
    assert first.opening == (Step(pytest.approx(0.1), "hello"),)
    assert [t.input for t in first.turns] == [b"in1", b"in2"]
    assert first.turns[0].steps == (Step(0.5, b"out1"), Step(0.25, b"out1b"))
    assert first.turns[1].steps == (Step(1.0, "TIMEOUT"), Step(0.25, None, 1000))
    assert first.turns[1].steps[-1].closes
    # the client closed the second socket: the replay waits for the client instead
    assert second.opening == () and second.turns[0].steps == ()


def test_gw_rec_6_first_difference_names_the_field() -> None:
    """GW-REC-6: strict matching compares values and names the first differing field."""
    recorded = ormsgpack.packb({"prompt": "a cat", "opts": {"steps": [1, 2]}})
    assert (
        first_difference(recorded, ormsgpack.packb({"prompt": "a cat", "opts": {"steps": [1, 2]}}))
        is None
    )
    got = ormsgpack.packb({"prompt": "a dog", "opts": {"steps": [1, 2]}})
    assert first_difference(recorded, got) == "field 'prompt': recorded 'a cat', got 'a dog'"
    got = ormsgpack.packb({"prompt": "a cat", "opts": {"steps": [1, 3]}})
    assert first_difference(recorded, got) == "field 'opts.steps[1]': recorded 2, got 3"
    got = ormsgpack.packb({"prompt": "a cat"})
    assert first_difference(recorded, got) is not None
    assert "field 'opts' is missing" in (first_difference(recorded, got) or "")
    assert "field 'x' is not in the recording" in (
        first_difference('{"a": 1}', '{"a": 1, "x": 2}') or ""
    )
