"""Issue 19: a camera on a slow uplink, 30 fps x 50 KB through 5 and 10 Mbit/s.

One camera (:mod:`benchmarks._camera`) streams to ``bench/stamp`` (answers each input
with its capture time at once) through a loopback proxy that holds the uplink to
5 or 10 Mbit/s with a token bucket (:mod:`benchmarks._linklimit`; small kernel
buffers on the proxy's sockets, so the limit and not loopback buffering is the
bottleneck). 30 frames/s of 50 KB is 12 Mbit/s of payload: more than either link
carries. Contenders, each through its own fresh proxy, one after another:
fal_realtime with its defaults and with ``throttle_interval=0`` (fal's camera demo),
raw aiohttp and websockets awaiting each send, and fal-client over ``wss://`` (its
token fetch goes straight to the gateway; only the socket crosses the link).

Reported per contender: p50/p99 latency (capture to result), the last window's p99
over the first's (a latency that grows is a queue that grows), the link's use
(bytes the proxy forwarded upstream over what the link or the sender could carry,
whichever is less), the client's RSS growth between the first and last windows,
and the camera's frames that never went out. Targets for fal_realtime:
p99 <= 250 ms at 5 Mbit/s and <= 150 ms at 10 Mbit/s; last p99 <= 1.25x the first;
link use >= 90 %; RSS flat (grows <= 8 MiB).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from ._camera import (
    DEFAULT_THROTTLE_S,
    FPS,
    FRAME_BYTES,
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
from ._linklimit import LinkLimiter

NAME = "slowlink"
TITLE = "camera on a slow uplink: 30 fps x 50 KB at 5 and 10 Mbit/s"
TIMEOUT_S = (240, 1200)
APP = "bench/stamp"
RATES_MBIT = (5, 10)
#: The p99 targets per link rate (ms).
P99_TARGET_MS = {5: 250.0, 10: 150.0}
TREND_TARGET = 1.25
LINK_USE_TARGET_PCT = 90.0
RSS_TARGET_MIB = 8.0

UNITS = {
    "p50_ms": "ms",
    "p99_ms": "ms",
    "p99_first_ms": "ms",
    "p99_last_ms": "ms",
    "trend": "x",
    "link_use_pct": "%",
    "sent_per_s": "frames/s",
    "superseded_pct": "%",
    "superseded_stats": "frames",
    "rss_growth_mib": "MiB",
}

MakeSender = Callable[[LinkLimiter], Sender]


def _measure(
    env: Env,
    rate_mbit: int,
    make: MakeSender,
    seconds: float,
    *,
    throttle_s: float = 0.0,
    tls: bool = False,
) -> Callable[[], Awaitable[Sample]]:
    rate_bits = rate_mbit * 1e6
    # What the sender would put on the wire unconstrained: 30 fps, or one frame per interval.
    offered_bytes_s = FRAME_BYTES * min(FPS, 1 / throttle_s if throttle_s else FPS)
    useful_bytes_s = min(rate_bits / 8, offered_bytes_s)

    async def measure() -> Sample:
        target = env.gateway.tls_port if tls else env.gateway.port
        assert target is not None
        async with LinkLimiter("127.0.0.1", target, rate_bits_s=rate_bits) as link:
            marks: dict[str, int] = {}

            def started() -> None:
                marks["up0"] = link.forwarded_up

            def stopped() -> None:
                marks["up1"] = link.forwarded_up
                link.set_rate(None)  # let every backlog drain so the sockets close promptly

            run = await run_cameras(make(link), seconds, on_started=started, on_stopped=stopped)
        sample = summarize(run, _window(seconds))
        forwarded = marks["up1"] - marks["up0"]
        sample["link_use_pct"] = 100 * forwarded / (useful_bytes_s * run.seconds)
        sample.pop("results_per_s")
        sample.pop("cpu_ms_per_result")
        return sample

    return measure


def _window(seconds: float) -> float:
    """Return the length of the first and last windows compared (10 s, less on short runs)."""
    return min(10.0, seconds / 3)


def contenders(env: Env, seconds: float) -> dict[str, Callable[[], Awaitable[Sample]]]:
    """Return the contenders in run order: per rate, ours (two settings) then the peers."""
    table: dict[str, Callable[[], Awaitable[Sample]]] = {}
    for rate in RATES_MBIT:

        def ours_default(link: LinkLimiter) -> Sender:
            return sender_ours(link.ws_url, env, APP, throttle_interval=DEFAULT_THROTTLE_S)

        def ours_zero(link: LinkLimiter) -> Sender:
            return sender_ours(link.ws_url, env, APP, throttle_interval=0.0)

        def raw(link: LinkLimiter) -> Sender:
            return sender_raw(ws_url(link.ws_url, APP))

        def websockets_(link: LinkLimiter) -> Sender:
            return sender_websockets(ws_url(link.ws_url, APP))

        def fal_client(link: LinkLimiter) -> Sender:
            return sender_fal_client(env, link.wss_url, APP)

        table |= {
            f"fal_realtime @{rate}M": _measure(
                env, rate, ours_default, seconds, throttle_s=DEFAULT_THROTTLE_S
            ),
            f"fal_realtime throttle=0 @{rate}M": _measure(env, rate, ours_zero, seconds),
            f"raw aiohttp @{rate}M": _measure(env, rate, raw, seconds),
            f"websockets @{rate}M": _measure(env, rate, websockets_, seconds),
            f"fal-client (wss) @{rate}M": _measure(env, rate, fal_client, seconds, tls=True),
        }
    return table


async def run(env: Env) -> ScenarioResult:
    opts = env.opts
    seconds = opts.pick(2.0, 60.0)
    result = ScenarioResult(NAME, TITLE, dict(UNITS), primary="p99_ms", per_trial=True)
    await interleave(
        result,
        contenders(env, seconds),
        opts.n_rounds(1, 1),
        timeout_s=seconds + 60,
        warmup=False,
    )
    for rate in RATES_MBIT:
        for name in (f"fal_realtime @{rate}M", f"fal_realtime throttle=0 @{rate}M"):
            result.target_value(f"{name} p99", name, "p99_ms", "<=", P99_TARGET_MS[rate], "ms")
            result.target_value(f"{name} last/first p99", name, "trend", "<=", TREND_TARGET, "x")
            result.target_value(
                f"{name} link use", name, "link_use_pct", ">=", LINK_USE_TARGET_PCT, "%"
            )
            result.target_value(
                f"{name} RSS growth", name, "rss_growth_mib", "<=", RSS_TARGET_MIB, "MiB"
            )
    window = _window(seconds)
    result.notes += [
        f"{seconds:g} s per contender; trend = p99 of the last {window:.3g} s "
        f"/ the first {window:.3g} s",
        "link use = bytes the proxy forwarded upstream / min(link rate, what the sender "
        f"offers: 30 fps, or one frame per {DEFAULT_THROTTLE_S * 1e3:g} ms with the defaults)",
        "superseded_pct: camera frames that never went out (fal_realtime: superseded in the "
        "client; the others: missed while their send was blocked); superseded_stats: "
        "fal_realtime's stats.coalesced (superseded in its throttle or at its link)",
    ]
    return result
