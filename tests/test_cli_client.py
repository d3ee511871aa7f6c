"""RT-CLI: `fal-realtime demo` and `send`, and the realtime example, run as a user would."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from fal_realtime.server import Gateway, RunningGateway

from .child_tools import CHILD_ENV, CHILD_WAIT, one_error_line, run
from .conftest import KEY

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "realtime_images.py"
BURST = re.compile(
    r"^burst: (\d+) sends -> sent (\d+), coalesced (\d+), results (\d+) "
    r"\(latest wins at \d+ ms\)$",
    re.MULTILINE,
)


async def _send(*args: str) -> tuple[int, str, str]:
    """Run ``fal-realtime send ARGS``."""
    return await run(sys.executable, "-m", "fal_realtime", "send", *args)


def test_rt_cli_1_demo_saves_pngs_and_shows_the_throttle(tmp_path: Path) -> None:
    """RT-CLI-1: `fal-realtime demo` exits 0, saves PNGs, and its burst coalesces sends."""
    done = subprocess.run(
        [sys.executable, "-m", "fal_realtime", "demo", "--out-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=CHILD_WAIT,
        check=False,
        env=CHILD_ENV,
    )
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    pngs = sorted(tmp_path.glob("fal-realtime-demo-*.png"))
    assert tmp_path / "fal-realtime-demo-1.png" in pngs
    assert len(pngs) >= 2  # the first result and at least one from the burst
    for png in pngs:
        assert png.read_bytes()[:8] == PNG_SIGNATURE
    match = BURST.search(done.stdout)
    assert match, done.stdout
    sends, sent, coalesced, results = map(int, match.groups())
    assert sends == 20
    assert 0 < sent < 20 and coalesced > 0
    assert sent + coalesced == sends
    assert results == sent  # the demo app answers every input it is sent
    assert "http-ws   fal-ai/any-llm -> " in done.stdout


async def test_rt_cli_2_send_prints_the_first_result(running: RunningGateway) -> None:
    """RT-CLI-2: `send fal-ai/echo '{"a": 1}'` prints {"echo": {"a": 1}} as JSON, exit 0."""
    code, out, err = await _send(
        "fal-ai/echo", '{"a": 1}', "--base-url", running.ws_url, "--key", KEY
    )
    assert code == 0, err
    assert orjson.loads(out) == {"echo": {"a": 1}}
    assert err == ""


async def test_rt_cli_3_a_wrong_key_exits_1_with_one_line(running: RunningGateway) -> None:
    """RT-CLI-3: a refused key exits 1 with one 'fal-realtime: error: UNAUTHORIZED' line."""
    wrong = "wrong-key-id:wrong-key-secret"
    code, out, err = await _send(
        "fal-ai/echo", '{"a": 1}', "--base-url", running.ws_url, "--key", wrong
    )
    assert code == 1
    assert one_error_line(err).startswith("fal-realtime: error: UNAUTHORIZED")
    assert out == ""
    assert "wrong-key-secret" not in err


@pytest.mark.parametrize(
    ("payload", "message"),
    [('{"a": 1', "not valid JSON"), ("[1, 2]", "must be an object")],
)
def test_rt_cli_4_bad_json_exits_2(payload: str, message: str) -> None:
    """RT-CLI-4: a JSON argument that is not valid JSON (or not an object) exits 2, one line."""
    done = subprocess.run(
        [sys.executable, "-m", "fal_realtime", "send", "fal-ai/echo", payload],
        capture_output=True,
        text=True,
        timeout=CHILD_WAIT,
        check=False,
        env=CHILD_ENV,
    )
    assert done.returncode == 2
    assert message in one_error_line(done.stderr)
    assert done.stdout == ""


async def test_rt_cli_5_the_example_saves_an_image(running: RunningGateway, tmp_path: Path) -> None:
    """RT-CLI-5: examples/realtime_images.py, pointed at the gateway by env, saves a PNG."""
    code, out, err = await run(
        sys.executable,
        str(EXAMPLE),
        env={"FAL_RUN_HOST": running.ws_url, "FAL_KEY": KEY},
        cwd=tmp_path,
    )
    assert code == 0, err
    assert "saved realtime-image-1.png" in out
    assert (tmp_path / "realtime-image-1.png").read_bytes()[:8] == PNG_SIGNATURE
    assert err == ""


async def test_rt_cli_6_binary_values_print_as_placeholders() -> None:
    """RT-CLI-6: bytes in a result print as "<N bytes>"; --json prints one compact line."""
    gateway = Gateway(keys=[KEY], heartbeat_s=None)

    @gateway.realtime("me/audio")
    async def audio(input: Any) -> dict[str, Any]:
        return {"audio": b"\x00" * 1234, "chunks": [b"ab"], "text": "hi"}

    async with gateway.serve(port=0) as running:
        code, out, err = await _send(
            "me/audio", "{}", "--base-url", running.ws_url, "--key", KEY, "--json"
        )
    assert code == 0, err
    assert out.count("\n") == 1
    assert orjson.loads(out) == {"audio": "<1234 bytes>", "chunks": ["<2 bytes>"], "text": "hi"}
