"""Soak: many realtime connections through fault proxies, checked for loss, order and leaks.

    python -m benchmarks.soak --seconds 20 --connections 20

C realtime connections (default throttle, latest wins) each send ``{"c": i, "seq": n}``
every ~100 ms through their own :class:`FaultProxy` to an in-process gateway, while
HTTP-over-WebSocket clients pipeline requests. Every ``--fault-every`` seconds one
connection that has been open for a second gets a random fault (a cut, a cut mid-frame,
or a stall its heartbeat must detect). At the end it checks, and exits 1 if any fails:

- every input the gateway received got its result at the client, except inputs that
  were on the wire when a fault hit that connection (lost with the link, never resent);
- no result was delivered twice, and each connection's results are in send order;
- each connection's reconnect count equals the faults injected into it;
- no unhandled exception was logged; no task is left after everything is closed;
- RSS grew less than 5% between the end of the warm-up and the end of the run.

It also reports how many objects, after the warm-up, only the cycle collector could
free: sockets caught in reference cycles wait for a full GC pass, which made RSS grow in
steps before ``fal_realtime._cycles`` broke those cycles (0 expected).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import gc
import logging
import os
import random
import sys
import time
import tracemalloc
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import orjson

import fal_realtime
from fal_realtime import ConnectionState, RealtimeError
from fal_realtime.server import Gateway
from fal_realtime.server.demo import register_demo_apps
from fal_realtime.server.proxy import FaultProxy

KEY = "soak-key"
HEARTBEAT_S = 0.5
SEND_EVERY_S = 0.1
# An input received this long before a fault may have had its result in flight.
IN_FLIGHT_S = 1.0
STALL_S = HEARTBEAT_S * 4


def rss_bytes() -> int:
    """Return this process's resident set size (Linux)."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@dataclass
class Lane:
    """One realtime connection, its proxy, and what each side saw."""

    index: int
    proxy: FaultProxy
    conn: fal_realtime.RealtimeConnection | None = None
    errors: list[RealtimeError] = field(default_factory=list)
    faults: list[tuple[float, str]] = field(default_factory=list)
    opened_at: float = 0.0
    sent_seq: int = 0
    # Inputs the gateway received whose result has not arrived yet: (seq, time received).
    # Checked as results arrive, so memory stays bounded however long the run.
    in_flight: collections.deque[tuple[int, float]] = field(default_factory=collections.deque)
    delivered: int = 0
    misordered: int = 0
    last_seq: int = -1
    lost_in_flight: int = 0
    failures: list[str] = field(default_factory=list)

    def lost_at_a_fault(self, at: float) -> bool:
        """Tell whether an input received at ``at`` was on the wire when a fault hit."""
        # Received shortly before a fault, or held by a stalled link and delivered to the
        # server after the client had given that socket up.
        return any(-STALL_S - IN_FLIGHT_S <= t - at <= IN_FLIGHT_S for t, _ in self.faults)

    def settle(self, seq: int, at: float) -> None:
        """Account for an input the gateway received but whose result never came."""
        if self.lost_at_a_fault(at):
            self.lost_in_flight += 1
        else:
            self.failures.append(f"conn {self.index}: input {seq} got no result and no fault")

    def on_result(self, result: dict[str, Any]) -> None:
        """Check a result: in order, never twice, for an input the gateway saw."""
        seq = result["seq"]
        if seq <= self.last_seq:
            self.misordered += 1
            self.failures.append(f"conn {self.index}: result {seq} after {self.last_seq}")
            return
        self.last_seq = seq
        self.delivered += 1
        while self.in_flight and self.in_flight[0][0] < seq:
            self.settle(*self.in_flight.popleft())
        if self.in_flight and self.in_flight[0][0] == seq:
            self.in_flight.popleft()
        else:
            self.failures.append(f"conn {self.index}: a result for input {seq} never received")


class ErrorCounter(logging.Handler):
    """Count log records at ERROR or above (unhandled exceptions end up there)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


class CycleCount:
    """Count the objects the cycle collector frees (garbage that refcounting missed)."""

    def __init__(self) -> None:
        self.freed = 0

    def _on_gc(self, phase: str, info: dict[str, int]) -> None:
        if phase == "stop":
            self.freed += info["collected"]

    def start(self) -> None:
        gc.callbacks.append(self._on_gc)

    def stop(self) -> None:
        gc.callbacks.remove(self._on_gc)


async def _sender(lane: Lane, stop: asyncio.Event) -> None:
    assert lane.conn is not None
    while not stop.is_set():
        await lane.conn.send({"c": lane.index, "seq": lane.sent_seq})
        lane.sent_seq += 1
        await asyncio.sleep(SEND_EVERY_S * random.uniform(0.9, 1.3))


async def _http_client(base: str, stop: asyncio.Event, counts: dict[str, int]) -> None:
    async with fal_realtime.ws("fal-ai/echo", base_url=base, key=KEY) as conn:
        n = 0
        while not stop.is_set():
            for i in range(3):
                await conn.send({"n": n + i})
            for i in range(3):
                body = orjson.loads(await conn.recv())
                if body != {"echo": {"n": n + i}}:
                    counts["http_mismatch"] += 1
                counts["http_ok"] += 1
            n += 3
            await asyncio.sleep(0.05)


async def _inject(lanes: list[Lane], stop: asyncio.Event, every_s: float) -> None:
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        await asyncio.sleep(every_s)
        now = loop.time()
        ready = [
            lane
            for lane in lanes
            if lane.conn is not None
            and lane.conn.state is ConnectionState.OPEN
            and lane.proxy.active == 1
            and now - lane.opened_at > 1.0
            # Its last fault is over: a stall takes the keep-alive up to 2.5 intervals to
            # notice, and a second fault on a socket already lost is not a second loss.
            and lane.conn.stats.reconnects == len(lane.faults)
        ]
        if not ready or stop.is_set():
            continue
        lane = random.choice(ready)
        kind = random.choice(["cut", "cut_mid_frame", "stall"])
        lane.faults.append((now, kind))
        if kind == "cut":
            lane.proxy.cut()
        elif kind == "cut_mid_frame":
            lane.proxy.cut_mid_frame()
            # Make sure a frame comes: the next result is the one cut in half.
        else:
            lane.proxy.stall(STALL_S)


async def run(seconds: float, connections: int, http_clients: int, fault_every: float) -> int:
    """Run the soak; print the report; return the number of failed checks."""
    loop = asyncio.get_running_loop()
    unhandled: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, context: unhandled.append(context))
    errors = ErrorCounter()
    logging.getLogger().addHandler(errors)
    lanes: list[Lane] = []
    cycles = CycleCount()

    gateway = Gateway(keys=[KEY], heartbeat_s=None)
    register_demo_apps(gateway)

    @gateway.realtime("soak/echo")
    async def soak_echo(value: dict[str, Any]) -> dict[str, Any]:
        lanes[value["c"]].in_flight.append((value["seq"], loop.time()))
        return value

    stop = asyncio.Event()
    counts: dict[str, int] = defaultdict(int)
    failures: list[str] = []
    async with gateway.serve(port=0) as running:
        lanes.extend(Lane(i, FaultProxy(running.host, running.port)) for i in range(connections))
        for lane in lanes:
            await lane.proxy.start()

        def make_state_hook(lane: Lane) -> Any:
            def on_state(state: ConnectionState) -> None:
                if state is ConnectionState.OPEN:
                    lane.opened_at = loop.time()

            return on_state

        for lane in lanes:
            lane.conn = await fal_realtime.connect(
                "soak/echo",
                on_result=lane.on_result,
                on_error=lane.errors.append,
                on_state_change=make_state_hook(lane),
                base_url=lane.proxy.ws_url,
                key=KEY,
                use_jwt=False,
                heartbeat_s=HEARTBEAT_S,
                reconnect={"max_attempts": None, "deadline_s": 60},
            )
        started = time.monotonic()
        tasks = [loop.create_task(_sender(lane, stop)) for lane in lanes]
        tasks += [
            loop.create_task(_http_client(running.ws_url, stop, counts))
            for _ in range(http_clients)
        ]
        injector = loop.create_task(_inject(lanes, stop, fault_every))
        trend: list[float] = []

        async def sample_rss() -> None:
            while True:
                trend.append(rss_bytes() / 1e6)
                await asyncio.sleep(seconds / 10)

        sampler = loop.create_task(sample_rss())
        # Warm up for longer than anything is held on purpose (the gateway keeps a new
        # connection's handler for its 10 s handshake window) and for the allocator to
        # reach its working size: then growth means a leak, not a fill-up.
        await asyncio.sleep(min(max(seconds * 0.2, 12.0), seconds * 0.5))
        rss_warm = rss_bytes()
        cycles.start()
        warm_snapshot = tracemalloc.take_snapshot() if tracemalloc.is_tracing() else None
        await asyncio.sleep(max(0.0, seconds - (time.monotonic() - started)))
        stop.set()
        sampler.cancel()
        await asyncio.gather(*tasks, injector)
        await asyncio.gather(sampler, return_exceptions=True)
        # Quiet period: no faults, every last input answered.
        await asyncio.sleep(IN_FLIGHT_S + 0.5)
        rss_end = rss_bytes()
        gc.collect()  # count what is still waiting for the collector, too
        cycles.stop()
        if warm_snapshot is not None:
            # FAL_RT_SOAK_TRACEMALLOC=1: where the memory that grew was allocated.
            grown = tracemalloc.take_snapshot().compare_to(warm_snapshot, "traceback")
            for stat in grown[:8]:
                print(f"  grew {stat.size_diff / 1e3:+.0f} kB in {stat.count_diff:+d} blocks:")
                for line in stat.traceback.format()[-8:]:
                    print(f"      {line}")
        for lane in lanes:
            assert lane.conn is not None
            await lane.conn.close()
            await lane.proxy.stop()
    logging.getLogger().removeHandler(errors)
    await asyncio.sleep(0)
    leftover = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]

    sent = delivered = lost_in_flight = faults = 0
    for lane in lanes:
        assert lane.conn is not None
        while lane.in_flight:  # received by the gateway, never answered
            lane.settle(*lane.in_flight.popleft())
        sent += lane.conn.stats.sent
        delivered += lane.delivered
        lost_in_flight += lane.lost_in_flight
        faults += len(lane.faults)
        failures.extend(lane.failures)
        if lane.conn.stats.reconnects != len(lane.faults):
            failures.append(
                f"conn {lane.index}: {lane.conn.stats.reconnects} reconnects for "
                f"{len(lane.faults)} faults ({[k for _, k in lane.faults]})"
            )
        if lane.errors:
            failures.append(f"conn {lane.index}: errors {lane.errors}")
    if counts["http_mismatch"]:
        failures.append(f"{counts['http_mismatch']} HTTP-over-WS answers did not match")
    if unhandled or errors.records:
        failures.append(f"{len(unhandled)} unhandled exceptions, {len(errors.records)} error logs")
    if leftover:
        failures.append(f"{len(leftover)} tasks left after close: {leftover[:3]}")
    growth = (rss_end - rss_warm) / rss_warm
    if growth >= 0.05:
        failures.append(f"RSS grew {growth:.1%} (limit 5%)")

    print(
        f"soak: {seconds:.0f} s, {connections} realtime connections, {http_clients} "
        f"HTTP-over-WS clients\n"
        f"  faults injected and survived: {faults} "
        f"(reconnects {sum(lane.conn.stats.reconnects for lane in lanes if lane.conn)})\n"
        f"  realtime inputs sent: {sent}, results delivered: {delivered}, "
        f"lost in flight at a fault: {lost_in_flight}, out of order or twice: "
        f"{sum(lane.misordered for lane in lanes)}\n"
        f"  HTTP-over-WS requests answered: {counts['http_ok']}\n"
        f"  RSS warm {rss_warm / 1e6:.1f} MB -> end {rss_end / 1e6:.1f} MB ({growth:+.1%}); "
        f"every tenth of the run: {' '.join(f'{mb:.1f}' for mb in trend)} MB\n"
        f"  tasks left after close: {len(leftover)}; unhandled exceptions: {len(unhandled)}\n"
        f"  objects only the cycle collector could free, after warm-up: {cycles.freed}"
    )
    for failure in failures[:20]:
        print(f"  FAIL {failure}")
    print("soak: " + ("FAILED" if failures else "all checks passed"))
    return len(failures)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--connections", type=int, default=20)
    parser.add_argument("--http-clients", type=int, default=4)
    parser.add_argument("--fault-every", type=float, default=1.0, help="seconds between faults")
    args = parser.parse_args()
    if os.environ.get("FAL_RT_SOAK_TRACEMALLOC"):
        tracemalloc.start(12)
    failed = asyncio.run(run(args.seconds, args.connections, args.http_clients, args.fault_every))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
