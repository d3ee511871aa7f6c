"""``fal-realtime bench``: the source tree's benchmark suite, in a child process."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``bench`` subcommand and its options to ``sub``."""
    bench = sub.add_parser(
        "bench",
        help="run the benchmark suite (quick by default) from a source checkout",
        description=(
            "Run python -m benchmarks against this project's peers on loopback. The suite "
            "lives in the source tree (benchmarks/), next to the package of an editable "
            "install: pip install -e '.[bench]'."
        ),
        epilog=(
            "examples:\n  fal-realtime bench                       the quick run (under a minute)\n"
            "  fal-realtime bench --full --json b.json  all scenarios, full rounds\n"
            "  fal-realtime bench --only lockstep,reconnect"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    bench.set_defaults(run=run)
    bench.add_argument("--full", action="store_true", help="the full run (5-10 minutes)")
    bench.add_argument("--only", metavar="NAMES", help="comma-separated scenarios to run")
    bench.add_argument("--json", metavar="FILE", help="write the results as JSON")
    bench.add_argument("--plot", metavar="FILE", help="save a PNG chart (needs matplotlib)")


def run(args: argparse.Namespace) -> int:
    """Run the source tree's benchmark suite in a child process; return its exit status."""
    import subprocess

    # fal_realtime/cli/bench.py -> the checkout that holds fal_realtime/ and benchmarks/.
    root = Path(__file__).resolve().parents[2]
    if not (root / "benchmarks" / "__main__.py").is_file():
        raise ValueError(
            "the benchmark suite is not next to this install: run it from a clone of the "
            "repository installed with pip install -e '.[bench]'"
        )
    command = [sys.executable, "-m", "benchmarks"]
    if not args.full:
        command.append("--quick")
    for flag in ("only", "json", "plot"):
        if value := getattr(args, flag):
            command += [f"--{flag}", value]
    return subprocess.call(command, cwd=root)
