"""USR-CLI: the command line as a new user meets it: help with examples, bench."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

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
