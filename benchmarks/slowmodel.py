"""Issue 19: a camera feeding a model slower than itself (80 ms per input), on loopback.

One camera (:mod:`benchmarks._camera`, 30 fps x 50 KB) streams to ``bench/slow``,
an app that takes 80 ms per input (12.5 results/s at most) and, as fal's runner
does, keeps every pending input unless the connection asks ``max_buffering``. No
link limit: the model is the bottleneck. Contenders: fal_realtime with its
defaults, with ``throttle_interval=0``, and with ``max_buffering=1`` (today's way
to keep only the newest input at the server); raw aiohttp, websockets and
fal-client (``wss://``) awaiting each send.

Reported: p50/p99 latency (capture to result), the last window's p99 over the
first's, results per second and as a share of what the model can produce, the
camera's frames that never went out, the client's RSS growth. Targets for
fal_realtime: p99 <= 250 ms with the defaults and with
``throttle_interval=0``; results >= 90 % of the model's capacity.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from ._camera import (
    DEFAULT_THROTTLE_S,
    Sender,
    run_cameras,
    sender_fal_client,
    sender_ours,
    sender_raw,
    sender_websockets,
    summarize,
    ws_url,
)
from ._env import Env
from ._harness import Sample, ScenarioResult, interleave
from ._servers import SLOW_MODEL_S

NAME = "slowmodel"
TITLE = "camera to a slow model: 30 fps x 50 KB, 80 ms per input"
TIMEOUT_S = (180, 900)
APP = "bench/slow"
P99_TARGET_MS = 250.0
MODEL_USE_TARGET_PCT = 90.0

UNITS = {
    "p50_ms": "ms",
    "p99_ms": "ms",
    "p99_first_ms": "ms",
    "p99_last_ms": "ms",
    "trend": "x",
    "results_per_s": "results/s",
    "model_use_pct": "%",
    "sent_per_s": "frames/s",
    "superseded_pct": "%",
    "superseded_stats": "frames",
    "rss_growth_mib": "MiB",
}


def _window(seconds: float) -> float:
    return min(10.0, seconds / 3)


def _measure(sender: Sender, seconds: float) -> Callable[[], Awaitable[Sample]]:
    async def measure() -> Sample:
        run = await run_cameras(sender, seconds)
        sample = summarize(run, _window(seconds))
        sample["model_use_pct"] = 100 * sample["results_per_s"] * SLOW_MODEL_S
        sample.pop("cpu_ms_per_result")
        return sample

    return measure


def contenders(env: Env, seconds: float) -> dict[str, Callable[[], Awaitable[Sample]]]:
    """Return the contenders in run order: ours (three settings), then the peers."""
    gw = env.gateway
    return {
        "fal_realtime": _measure(
            sender_ours(gw.ws, env, APP, throttle_interval=DEFAULT_THROTTLE_S), seconds
        ),
        "fal_realtime throttle=0": _measure(
            sender_ours(gw.ws, env, APP, throttle_interval=0.0), seconds
        ),
        "fal_realtime max_buffering=1": _measure(
            sender_ours(gw.ws, env, APP, throttle_interval=DEFAULT_THROTTLE_S, max_buffering=1),
            seconds,
        ),
        "raw aiohttp": _measure(sender_raw(ws_url(gw.ws, APP)), seconds),
        "websockets": _measure(sender_websockets(ws_url(gw.ws, APP)), seconds),
        "fal-client (wss)": _measure(sender_fal_client(env, gw.wss, APP), seconds),
    }


async def run(env: Env) -> ScenarioResult:
    opts = env.opts
    seconds = opts.pick(2.0, 60.0)
    result = ScenarioResult(NAME, TITLE, dict(UNITS), primary="p99_ms", per_trial=True)
    await interleave(
        result, contenders(env, seconds), opts.n_rounds(1, 1), timeout_s=seconds + 60, warmup=False
    )
    for name in ("fal_realtime", "fal_realtime throttle=0"):
        result.target_value(f"{name} p99", name, "p99_ms", "<=", P99_TARGET_MS, "ms")
        result.target_value(
            f"{name} results / model capacity",
            name,
            "model_use_pct",
            ">=",
            MODEL_USE_TARGET_PCT,
            "%",
        )
    window = _window(seconds)
    result.notes += [
        f"{seconds:g} s per contender; the model answers at most "
        f"{1 / SLOW_MODEL_S:g} results/s; trend = p99 of the last {window:.3g} s / the first",
        "superseded_pct: camera frames that never went out (see slowlink); inputs the "
        "server dropped (max_buffering) show as results below what was sent",
    ]
    return result
