"""USR-CLI: the command line as a new user meets it: help with examples, bench."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import fal_realtime.cli

from .child_tools import CHILD_ENV, CHILD_WAIT


def test_usr_cli_1_every_subcommand_help_shows_examples() -> None:
    """USR-CLI-1: fal-realtime --help and each subcommand's --help show examples, exit 0."""
    for command in ([], ["serve"], ["demo"], ["send"], ["ws"], ["bench"]):
        done = subprocess.run(
            [sys.executable, "-m", "fal_realtime", *command, "--help"],
            capture_output=True,
            text=True,
            timeout=CHILD_WAIT,
            env=CHILD_ENV,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        assert "example" in done.stdout, command


def test_usr_cli_2_bench_runs_the_quick_suite(tmp_path: Path) -> None:
    """USR-CLI-2: fal-realtime bench --only reconnect runs the quick suite and writes JSON."""
    out = tmp_path / "bench.json"
    done = subprocess.run(
        [sys.executable, "-m", "fal_realtime", "bench", "--only", "reconnect", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=CHILD_WAIT * 3,
        env=CHILD_ENV,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(out.read_text())
    assert report["mode"] == "quick"
    assert [s["name"] for s in report["scenarios"]] == ["reconnect"]


def test_usr_cli_3_the_script_and_both_python_m_forms_run_one_main() -> None:
    """USR-CLI-3: fal-realtime is fal_realtime.cli:main; python -m fal_realtime[.cli] match it."""
    (script,) = entry_points(group="console_scripts", name="fal-realtime")
    assert script.load() is fal_realtime.cli.main
    helps = [
        subprocess.run(
            [sys.executable, "-m", module, "--help"],
            capture_output=True,
            text=True,
            timeout=CHILD_WAIT,
            env=CHILD_ENV,
            check=True,
        ).stdout
        for module in ("fal_realtime", "fal_realtime.cli")
    ]
    assert helps[0].startswith("usage: fal-realtime "), helps[0]
    assert helps[1] == helps[0]
