"""Benchmark this project against its peers, side by side on loopback.

    python -m benchmarks [--quick] [--json FILE] [--only NAME] [--plot FILE]

Starts its own servers on 127.0.0.1 (the project's gateway and a minimal raw aiohttp
server, each in a child process), runs every scenario's contenders interleaved over
several rounds, prints a table per scenario and a summary of the targets, and writes
JSON (``--json``) and a chart (``--plot``, needs matplotlib). Performance is judged
by ratios measured side by side in one run: absolute numbers drift on a shared machine.
The exit status is 1 when a measurement could not run (an error, not a missed target).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import sys
import time
from pathlib import Path
from typing import Any

import orjson

from ._env import environment
from ._harness import Options, ScenarioResult, machine, render_table, summary_rows
from ._servers import raise_fd_limit

#: The scenario modules, in the order they run and are charted (a new module adds its name).
SCENARIOS = (
    "lockstep",
    "pipelined",
    "stream",
    "overhead",
    "scale",
    "throttle",
    "reconnect",
    "capacity",
    "demoapps",
    "coldstart",
    # camera frames on a slow link, to a slow model, and many streams at once
    "slowlink",
    "slowmodel",
    "media",
)


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description=(__doc__ or "").splitlines()[0]
    )
    parser.add_argument(
        "--quick", action="store_true", help="a smoke run (about 30 s; scale stops at 1,000)"
    )
    parser.add_argument("--json", metavar="FILE", help="write the results as JSON")
    parser.add_argument(
        "--only",
        metavar="NAME",
        action="append",
        help=f"run only these scenarios (repeatable or comma-separated): {', '.join(SCENARIOS)}",
    )
    parser.add_argument("--plot", metavar="FILE", help="save a PNG chart (needs matplotlib)")
    parser.add_argument("--rounds", type=int, help="override every scenario's number of rounds")
    parser.add_argument(
        "--uvloop", action="store_true", help="run the client and the servers on uvloop"
    )
    args = parser.parse_args(argv)
    selected = []
    for item in args.only or []:
        selected += [name.strip() for name in item.split(",") if name.strip()]
    unknown = [name for name in selected if name not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenario {', '.join(unknown)}; choose from {', '.join(SCENARIOS)}")
    args.selected = [name for name in SCENARIOS if not selected or name in selected]
    if args.rounds is not None and args.rounds < 1:
        parser.error("--rounds must be >= 1")
    return args


async def _run(args: argparse.Namespace) -> list[ScenarioResult]:
    opts = Options(quick=args.quick, rounds=args.rounds)
    results: list[ScenarioResult] = []
    async with environment(opts, uvloop=args.uvloop) as env:
        for name in args.selected:
            module = importlib.import_module(f"benchmarks.{name}")
            print(f"-- {name}: {module.TITLE} ...", flush=True)
            started = time.perf_counter()
            try:
                async with asyncio.timeout(opts.pick(*getattr(module, "TIMEOUT_S", (60, 300)))):
                    result = await module.run(env)
            except Exception as exc:  # report the broken scenario, run the others
                result = ScenarioResult(name, module.TITLE, {})
                result.failures.append(f"scenario raised {type(exc).__name__}: {exc}")
            result.seconds = time.perf_counter() - started
            print(render_table(result), flush=True)
            results.append(result)
    return results


def _summary(results: list[ScenarioResult]) -> str:
    rows = [("scenario", "target", "measured (median ± half-spread)", "verdict")]
    rows += summary_rows(results)
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows)


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    raise_fd_limit()
    started = time.perf_counter()
    info = machine()
    if args.uvloop:
        import uvloop

        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            results = runner.run(_run(args))
    else:
        results = asyncio.run(_run(args))
    total = time.perf_counter() - started
    print("\n== targets")
    print(_summary(results))
    print(
        f"\n{'quick' if args.quick else 'full'} run: {total:.1f} s on {info['platform']}, "
        f"Python {info['python']}, {info['cpus']} CPUs"
    )
    document: dict[str, Any] = {
        "suite": "fal_realtime benchmarks",
        "mode": "quick" if args.quick else "full",
        "loop": "uvloop" if args.uvloop else "asyncio",
        "seconds": round(total, 1),
        "machine": info,
        "scenarios": [r.as_json() for r in results],
    }
    if args.json:
        Path(args.json).write_bytes(orjson.dumps(document, option=orjson.OPT_INDENT_2))
        print(f"wrote {args.json}")
    if args.plot:
        from ._plot import plot

        plot(document, args.plot)
        print(f"wrote {args.plot}")
    # Missed targets are findings, not errors; a measurement that could not run is an error.
    failed = [f"{r.name}: {f}" for r in results for f in r.failures]
    for failure in failed:
        print(f"error: {failure}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
