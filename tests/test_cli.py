"""GW-CLI: the fal-realtime command runs the gateway and the demo as a new user would."""

from __future__ import annotations

import re
import ssl
import subprocess
import sys
from pathlib import Path

import aiohttp
import ormsgpack
import pytest
import trustme

from fal_realtime._recorder import Recorder

from .child_tools import CHILD_ENV
from .child_tools import serve as _serve
from .gateway_tools import read_until_closed, receive_frame, send_msgpack


async def test_gw_cli_1_serve_prints_url_key_env_and_stops_on_ctrl_c() -> None:
    """GW-CLI-1: serve prints the URL line first, the dev key, env lines; Ctrl-C exits 0."""
    served = await _serve("--demo", env={"FAL_KEY": ""})
    try:
        key_lines = [line for line in served.lines if line.startswith("export FAL_KEY=")]
        assert len(key_lines) == 1
        key = key_lines[0].split("=", 1)[1]
        assert f"export FAL_RUN_HOST=ws://127.0.0.1:{served.port}" in served.lines
        assert f"export FAL_WS_RUN_HOST=ws://127.0.0.1:{served.port}" in served.lines
        async with aiohttp.ClientSession() as http:
            ws = await http.ws_connect(
                f"ws://127.0.0.1:{served.port}/fal-ai/echo/realtime",
                headers={"Authorization": f"Key {key}"},
            )
            await send_msgpack(ws, {"hello": "cli"})
            assert await receive_frame(ws) == ("binary", {"echo": {"hello": "cli"}})
            await ws.close()
    finally:
        code, out, err = await served.stop()
    assert code == 0, err
    assert "Traceback" not in err
    assert "gateway stopped" in out


async def test_gw_cli_2_a_supplied_key_is_never_printed() -> None:
    """GW-CLI-2: a key from --key or FAL_KEY appears nowhere in the output."""
    secret = "user-supplied-key-id:user-supplied-secret"
    served = await _serve("--demo", "--key", secret, env={"FAL_KEY": "env-secret-value"})
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(
            f"ws://127.0.0.1:{served.port}/fal-ai/echo/realtime",
            headers={"Authorization": "Key env-secret-value"},
        )
        transcript = await read_until_closed(ws)
    code, out, err = await served.stop()
    text = "\n".join(served.lines) + out + err
    assert secret not in text and "user-supplied-secret" not in text
    assert "env-secret-value" not in text
    assert not any(line.startswith("export FAL_KEY") for line in served.lines)
    # --key replaces FAL_KEY: the env key is refused.
    assert transcript.close_code == 1008
    assert code == 0


async def test_gw_cli_3_tls_serves_wss_and_verification_stays_on(tmp_path: Path) -> None:
    """GW-CLI-3: --certfile/--keyfile serve wss://; only a client trusting the CA connects."""
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    certfile, keyfile = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.cert_chain_pems[0].write_to_path(str(certfile))
    cert.private_key_pem.write_to_path(str(keyfile))
    served = await _serve(
        "--demo", "--no-auth", "--certfile", str(certfile), "--keyfile", str(keyfile)
    )
    try:
        assert served.scheme == "https"
        assert f"export FAL_RUN_HOST=127.0.0.1:{served.port}" in served.lines
        trusted = ssl.create_default_context()
        ca.configure_trust(trusted)
        url = f"wss://127.0.0.1:{served.port}/fal-ai/echo/realtime"
        async with aiohttp.ClientSession() as http:
            ws = await http.ws_connect(url, ssl=trusted)
            await send_msgpack(ws, {"tls": True})
            assert await receive_frame(ws) == ("binary", {"echo": {"tls": True}})
            # No TLS 1.3 session tickets: a threaded client (fal_client.SyncClient reads and
            # writes its socket from two threads) could lose its upgrade request to them.
            session = ws.get_extra_info("ssl_object").session
            assert session is not None and not session.has_ticket
            await ws.close()
            with pytest.raises(aiohttp.ClientConnectorCertificateError):
                await http.ws_connect(url)
    finally:
        code, _, err = await served.stop()
    assert code == 0, err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--upstream", "no-equals-sign"], "expected OWNER/APP=URL"),
        (["--upstream", "me/api=ftp://x"], "must start with http"),
        (["--fault", "fal-ai/echo=explode=1"], "unknown fault item"),
        (["--certfile", "only-one.pem"], "go together"),
        (["--replay", "no-equals-sign"], "expected OWNER/APP=PATH"),
        (["--replay", "me/app=/no/such/recording.jsonl"], "No such file"),
    ],
)
def test_gw_cli_4_bad_arguments_fail_with_one_line_on_stderr(args: list[str], message: str) -> None:
    """GW-CLI-4: a bad option exits 2 with one 'fal-realtime: error: ...' line, no traceback."""
    done = subprocess.run(
        [sys.executable, "-m", "fal_realtime", "serve", "--port", "0", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=CHILD_ENV,
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fal-realtime: error:") and message in lines[0]


def test_gw_cli_5_demo_runs_both_protocols_and_saves_a_png(tmp_path: Path) -> None:
    """GW-CLI-5: fal-realtime demo saves a PNG, prints an any-llm answer and a camera line."""
    done = subprocess.run(
        [sys.executable, "-m", "fal_realtime", "demo", "--out-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=CHILD_ENV,
    )
    assert done.returncode == 0, done.stderr
    png = tmp_path / "fal-realtime-demo-1.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "fal-ai/any-llm ->" in done.stdout
    answer = done.stdout.split("fal-ai/any-llm ->", 1)[1].splitlines()[0].strip()
    assert len(answer.split()) == 12
    # The camera part: synthetic frames at 30 fps through an image-to-image app.
    camera = re.search(
        r"camera    fal-ai/fast-turbo-diffusion/image-to-image: 60 frames at 30 fps -> "
        r"sent (\d+), coalesced (\d+), results (\d+), p50 latency \d+ ms",
        done.stdout,
    )
    assert camera is not None, done.stdout
    sent, coalesced, results = map(int, camera.groups())
    # Latest wins: frames that waited were superseded; the server may drop pending ones too.
    assert 1 <= results <= sent <= 60 and coalesced <= 60 - sent


async def test_gw_cli_6_serve_replays_a_recording(tmp_path: Path) -> None:
    """GW-CLI-6: serve --replay owner/alias=PATH serves the recording as that app."""
    path = tmp_path / "echo.jsonl"
    recorder = Recorder(path, protocol="realtime", app="me/echo", path_option="/realtime")
    recorder.opened("ws://h/me/echo/realtime")
    recorder.sent(ormsgpack.packb({"hello": "cli"}))
    recorder.received(ormsgpack.packb({"recorded": True}))
    recorder.closed(1000, by="client")
    served = await _serve(
        "--replay", f"me/echo={path}", "--replay-speed", "0", "--replay-strict", "--no-auth"
    )
    try:
        async with aiohttp.ClientSession() as http:
            ws = await http.ws_connect(f"ws://127.0.0.1:{served.port}/me/echo/realtime")
            await send_msgpack(ws, {"hello": "cli"})
            assert await receive_frame(ws) == ("binary", {"recorded": True})
            await ws.close()
    finally:
        code, _out, err = await served.stop()
    assert code == 0, err
