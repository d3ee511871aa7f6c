"""Scale: 1,000 and 10,000 idle realtime connections in one process.

Each measurement runs in a fresh child process (:mod:`benchmarks._scale_worker`), so
memory freed by one contender cannot be reused by the next. The child raises its
open-files limit (the gateway child raises its own, and runs without a per-key cap),
opens and closes one connection (one-time costs), reads its RSS (the baseline), opens
N connections to ``fal-ai/echo`` 100 at a time, each sending one input and waiting for
its result (*open*), lets them sit idle, reads its RSS after ``gc.collect()`` (*memory
per connection* is the growth over the baseline divided by N), then closes them all at
once (*close*). The gateway's open file descriptors must be back to where they were
once the child has gone.

The floor is what a careful user hand-writes with raw aiohttp: one shared
``ClientSession``, ``ws_connect`` per socket with heartbeat on, a reader task per
socket; this client runs with its defaults and with ``session=`` (one shared session).
Targets at 1,000: open <= 1.3 x, memory <= 1.6 x, close <= 1.5 x the floor; at 10,000
(the full run; ``--quick`` stops at 1,000) every connection opens and closes cleanly: no
errors; and <= 64 KiB per connection. fal-client is left out: it fetches a token and
makes a TLS handshake per connection, so it would measure neither the same work nor the
same memory.
"""

from __future__ import annotations

import asyncio
import math
import sys
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from ._env import Env
from ._harness import Sample, ScenarioResult, Target, interleave
from ._servers import open_fds

NAME = "scale"
TITLE = "1,000 and 10,000 idle realtime connections in one process"
#: (quick, full) seconds the whole scenario may take (10,000 connections take a while).
TIMEOUT_S = (120, 900)
#: How long the gateway may take to drop its side of the sockets after the child exits.
GATEWAY_SETTLE_S = 10.0
OURS = "fal_realtime"
OURS_SESSION = "fal_realtime (session=)"
RAW = "raw aiohttp"
Measure = Callable[[], Awaitable[Sample]]
#: What counts as an error (per connection, in the worker, then the gateway's side).
COUNTED = (
    "counted: failed opens or results, closes that raise or end with a code other than "
    "1000, on_error calls, states other than CLOSED, tasks left, gateway fds left"
)


def label(name: str, n: int) -> str:
    """Return the contender's row name at ``n`` connections."""
    return f"{name} ×{n:,}"


def contender(env: Env, kind: str, n: int, errors_by_kind: Counter[str]) -> Measure:
    """Return a measure that runs one worker child of ``kind`` with ``n`` connections.

    Each round's errors are also added, by kind, to ``errors_by_kind``.
    """

    async def measure() -> Sample:
        gateway_fds = open_fds(env.gateway.pid)
        report = await _run_worker(kind, env.gateway.ws, n)
        for what, detail in report["first_errors"].items():
            shown = f": {detail}" if detail else ""
            print(f"    ! {kind} ×{n}: {what}{shown}", file=sys.stderr, flush=True)
        counts = Counter(report["errors"])
        if left := await _gateway_fds_left(env, gateway_fds):
            counts["gateway fds left"] += left
        errors_by_kind.update(counts)
        errors = sum(counts.values())
        return {
            "open_s": report["open_s"],
            "close_s": report["close_s"],
            "kib_per_conn": (report["rss"] - report["baseline"]) / n / 1024,
            "idle_cpu_pct": report["idle_cpu_s"] / report["idle_s"] * 100,
            "errors": errors,
        }

    return measure


async def _run_worker(kind: str, base: str, n: int) -> dict[str, Any]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "benchmarks._scale_worker",
        kind,
        base,
        str(n),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(60 + n * 0.03):
            out, err = await proc.communicate()
    except BaseException:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        raise
    if proc.returncode != 0:
        raise RuntimeError(f"worker failed ({proc.returncode}): {err.decode()[-500:]}")
    report: dict[str, Any] = orjson.loads(out.splitlines()[-1])
    return report


async def _gateway_fds_left(env: Env, before: int) -> int:
    """Return how many sockets the gateway still holds once it has had time to let go."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + GATEWAY_SETTLE_S
    left = open_fds(env.gateway.pid) - before
    while left > 0 and loop.time() < deadline:
        await asyncio.sleep(0.05)  # polling another process: there is no event to wait on
        left = open_fds(env.gateway.pid) - before
    if left > 0:
        print(f"    ! the gateway still holds {left} more fds", file=sys.stderr, flush=True)
    return max(left, 0)


async def run(env: Env) -> ScenarioResult:
    opts = env.opts
    result = ScenarioResult(
        NAME,
        TITLE,
        {
            "open_s": "s to open all",
            "close_s": "s to close all",
            "kib_per_conn": "KiB/conn",
            "idle_cpu_pct": "% CPU idle",
            "errors": "errors",
        },
        primary="kib_per_conn",
    )
    ours_kinds = {OURS: "ours", OURS_SESSION: "ours-session"}
    sizes = opts.pick((1000,), (1000, 10_000))
    errors: dict[str, Counter[str]] = {}
    for n in sizes:
        kinds = {RAW: "raw", **ours_kinds}
        if n == 1000 and not opts.quick:
            kinds["websockets"] = "websockets"
        table = {
            label(name, n): contender(env, kind, n, errors.setdefault(label(name, n), Counter()))
            for name, kind in kinds.items()
        }
        rounds = opts.n_rounds(1, 3) if n == 1000 else opts.n_rounds(1, 2)
        await interleave(result, table, rounds, timeout_s=120 + n * 0.05, warmup=False)
    _targets(result, ours_kinds, sizes[-1])
    for row, counts in errors.items():
        if counts:
            kinds_seen = ", ".join(f"{what} ×{count:,}" for what, count in counts.most_common())
            result.notes.append(f"{row}: errors over all rounds: {kinds_seen}")
    return result


def _targets(result: ScenarioResult, ours_kinds: dict[str, str], largest: int) -> None:
    raw = label(RAW, 1000)
    for name in ours_kinds:
        ours = label(name, 1000)
        which = "" if name == OURS else " (session=)"
        for metric, what, threshold in (
            ("open_s", "open 1,000", 1.3),
            ("kib_per_conn", "memory/conn at 1,000", 1.6),
            ("close_s", "close 1,000", 1.5),
        ):
            result.target_ratio(f"{what}{which} vs raw aiohttp", ours, raw, metric, "<=", threshold)
    result.target_value("RSS per connection", label(OURS, 1000), "kib_per_conn", "<=", 64, "KiB")
    for name in [RAW, *ours_kinds]:
        row = result.rows.get(label(name, largest), {})
        errors = row["errors"].values if "errors" in row else [math.nan]
        if name == RAW:  # the floor's own count, for reference
            result.notes.append(f"raw aiohttp ×{largest:,}: {sum(errors):g} errors")
            continue
        result.targets.append(
            Target(
                f"{name}: {largest:,} open and close cleanly",
                sum(errors),
                "<=",
                0,
                "errors",
                note=f"summed over {len(errors)} round(s); {COUNTED}",
            )
        )
