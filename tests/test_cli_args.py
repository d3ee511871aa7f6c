"""GW-CLI-7: every bad command-line input is one error line naming its flag, exit status 2.

Run through ``main(argv)`` in this process (each case fails before anything is served
or sent), plus one child process to show what a user's shell sees.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from fal_realtime.cli import main

from .child_tools import CHILD_ENV, CHILD_WAIT, one_error_line

KEYS = {"FAL_KEY": "", "FAL_KEY_ID": "", "FAL_KEY_SECRET": ""}
#: (arguments, what the one error line must contain).
SERVE_CASES = [
    (["--port", "99999999"], "argument --port: expected a port 0..65535, got '99999999'"),
    (["--port", "-1"], "argument --port: expected a port 0..65535"),
    (["--port", "eighty"], "argument --port: expected a port 0..65535"),
    (["--host", ""], "argument --host: expected an address"),
    (["--max-connections-per-key", "-1"], "argument --max-connections-per-key: expected"),
    (["--replay-speed", "nan"], "argument --replay-speed: expected a finite number >= 0"),
    (["--replay-speed", "-1"], "argument --replay-speed: expected a finite number >= 0"),
    (["--key", ""], "--key is empty"),
    (["--upstream", "no-equals-sign"], "--upstream 'no-equals-sign': expected OWNER/APP=URL"),
    (["--upstream", "bad=http://x"], "--upstream 'bad=http://x': invalid app id 'bad'"),
    (["--upstream", "me/api=ftp://x"], "--upstream 'me/api=ftp://x': upstream URL must start"),
    (["--upstream", "me/api=http://"], "--upstream 'me/api=http://': the URL has no host"),
    (["--upstream", "me/api=http://h:99999"], "the URL's port is not a number in 1..65535"),
    (["--fault", "bad=drop_after=1"], "--fault 'bad=drop_after=1': invalid app id 'bad'"),
    (["--fault", "fal-ai/echo=explode=1"], "--fault 'fal-ai/echo=explode=1': unknown fault item"),
    (["--replay", "bad=x.jsonl"], "--replay 'bad=x.jsonl': invalid app id 'bad'"),
    (["--replay", "me/app=/no/such.jsonl"], "--replay 'me/app=/no/such.jsonl': No such file"),
    (["--certfile", "only-one.pem"], "--certfile and --keyfile go together"),
    (["--certfile", "/no/cert.pem", "--keyfile", "/no/key.pem"], "--certfile '/no/cert.pem': No"),
    (["--host", "256.256.256.256"], "--host '256.256.256.256' --port 0: cannot listen there"),
]


def _one_line(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    """Run ``main(argv)``; assert exit status 2 and return its single stderr line."""
    try:
        status = main(argv)
    except SystemExit as exc:  # argparse's own errors exit from inside parse_args
        status = exc.code  # type: ignore[assignment]
    out, err = capsys.readouterr()
    assert status == 2, err
    assert out == ""
    return one_error_line(err)


@pytest.mark.parametrize(("args", "message"), SERVE_CASES)
def test_gw_cli_7_serve_bad_input_is_one_line_naming_the_flag(
    capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    """GW-CLI-7: serve refuses a bad input with one line naming the flag, exit 2."""
    line = _one_line(capsys, ["serve", "--port", "0", *args])
    assert message in line
    assert "=..." not in line and "key=" not in line and "Traceback" not in line


def test_gw_cli_7_unreadable_and_bad_cert_files(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """GW-CLI-7: a cert file that is not PEM, or the key missing, is named by its flag."""
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate")
    line = _one_line(capsys, ["serve", "--certfile", str(junk), "--keyfile", str(junk)])
    assert "not a PEM certificate and its private key" in line
    line = _one_line(capsys, ["serve", "--certfile", str(junk), "--keyfile", str(tmp_path)])
    assert f"--keyfile {str(tmp_path)!r}: Is a directory" in line


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--web", "--port", "99999999"], "argument --port: expected a port 0..65535"),
        (["--port", "8081"], "--port goes with --web"),
    ],
)
def test_gw_cli_7_demo_bad_port(
    capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    """GW-CLI-7: demo refuses a port out of range with one line, exit 2."""
    assert message in _one_line(capsys, ["demo", *args])


@pytest.mark.parametrize("command", ["send", "ws"])
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--timeout", "nan"], "--timeout must be a finite number of seconds > 0, got nan"),
        (["--timeout", "inf"], "--timeout must be a finite number of seconds > 0, got inf"),
        (["--timeout", "-1"], "--timeout must be a finite number of seconds > 0"),
        (["--base-url", "ftp://x"], "--base-url 'ftp://x' is not usable"),
        (["--base-url", "ws://127.0.0.1:99999"], "--base-url 'ws://127.0.0.1:99999' has a bad"),
        (["--key", ""], "--key is empty"),
        ([], "no fal key found: set FAL_KEY (or FAL_KEY_ID and FAL_KEY_SECRET), or pass --key"),
    ],
)
def test_gw_cli_7_client_bad_input_names_the_flag(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    command: str,
    args: list[str],
    message: str,
) -> None:
    """GW-CLI-7: send and ws name --timeout, --base-url and --key, never a Python keyword."""
    for name in KEYS:
        monkeypatch.delenv(name, raising=False)
    if args and args[0] != "--key":
        args = [*args, "--key", "test:key"]
    line = _one_line(capsys, [command, "fal-ai/echo", "{}", *args])
    assert message in line
    assert "key=" not in line and "base_url" not in line and "_s " not in line


def test_gw_cli_7_missing_arguments_are_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    """GW-CLI-7: argparse's own refusals (a missing argument) are one line too, no usage."""
    line = _one_line(capsys, ["send", "fal-ai/echo"])
    assert "the following arguments are required: JSON" in line
    assert "fal-realtime send --help" in line


def test_gw_cli_7_a_users_shell_sees_one_line() -> None:
    """GW-CLI-7: `fal-realtime serve --port 99999999` in a shell: one line, exit 2, no trace."""
    done = subprocess.run(
        [sys.executable, "-m", "fal_realtime", "serve", "--port", "99999999"],
        capture_output=True,
        text=True,
        timeout=CHILD_WAIT,
        check=False,
        env=CHILD_ENV,
    )
    assert done.returncode == 2
    assert "argument --port" in one_error_line(done.stderr)
    assert done.stdout == ""
