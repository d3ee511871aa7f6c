"""Soak: many realtime connections through fault proxies, checked for loss, order and leaks.

    python -m benchmarks.soak --seconds 20 --connections 20

C realtime connections (default throttle, latest wins) each send ``{"c": i, "seq": n}``
every ~100 ms through their own :class:`FaultProxy` to an in-process gateway, while
HTTP-over-WebSocket clients pipeline requests. Every ``--fault-every`` seconds one
connection that has been open for a second gets a random fault (a cut, a cut mid-frame,
or a stall its heartbeat must detect). At the end it checks, and exits 1 if any fails:

- every input the client wrote is accounted for, one by one. Each connection records
  what it wrote on which socket and how each socket ended (``record=``, the public
  recording), and the gateway notes every input it read; an input is then *delivered*
  (its result came), *lost at a fault* (written on a socket that a fault cut: read by
  the gateway with its result on the cut link, or never read, the link cut first), or
  *unaccounted* (no result, and its socket was not cut): any unaccounted input fails the
  run. Every ``send()`` is either written or superseded by a newer one (latest wins);
- each connection's sockets that ended lost are exactly the faults injected into it;
- no result was delivered twice, each connection's results are in send order, and every
  result is for an input the gateway read;
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
import gc
import logging
import os
import random
import sys
import tempfile
import time
import tracemalloc
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import ormsgpack

import fal_realtime
from fal_realtime import ConnectionState, RealtimeError
from fal_realtime._protocol.recording import parse_recording
from fal_realtime.server import Gateway
from fal_realtime.server.demo import register_demo_apps
from fal_realtime.server.proxy import FaultProxy

KEY = "soak-key"
HEARTBEAT_S = 0.5
SEND_EVERY_S = 0.1
#: The quiet end of the run (no faults, no sends): every last input answered.
QUIET_S = 1.5
STALL_S = HEARTBEAT_S * 4


def rss_bytes() -> int:
    """Return this process's resident set size (Linux)."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class Seqs:
    """A growing set of small non-negative ints (input numbers), one bit each."""

    __slots__ = ("_bits",)

    def __init__(self) -> None:
        self._bits = bytearray()

    def add(self, n: int) -> None:
        byte = n >> 3
        if byte >= len(self._bits):
            self._bits.extend(bytes(byte - len(self._bits) + 1024))
        self._bits[byte] |= 1 << (n & 7)

    def __contains__(self, n: int) -> bool:
        byte = n >> 3
        return byte < len(self._bits) and bool(self._bits[byte] & (1 << (n & 7)))


@dataclass
class Account:
    """Where every input one connection wrote ended up."""

    delivered: int = 0
    #: Written on a socket a fault cut, read by the gateway: its result was on that link.
    lost_result: int = 0
    #: Written on a socket a fault cut, never read by the gateway: the link went first.
    lost_unread: int = 0
    unaccounted: list[str] = field(default_factory=list)
    #: Sockets that ended lost (no close frame, or a keep-alive timeout).
    lost_sockets: int = 0

    @property
    def lost_at_a_fault(self) -> int:
        return self.lost_result + self.lost_unread


@dataclass
class Lane:
    """One realtime connection, its proxy, and what each side saw."""

    index: int
    proxy: FaultProxy
    recording: Path
    conn: fal_realtime.RealtimeConnection | None = None
    errors: list[RealtimeError] = field(default_factory=list)
    faults: list[tuple[float, str]] = field(default_factory=list)
    opened_at: float = 0.0
    #: send() calls made (the inputs are numbered 0 .. calls - 1).
    calls: int = 0
    #: What the gateway read, and which results the client got.
    received: Seqs = field(default_factory=Seqs)
    results: Seqs = field(default_factory=Seqs)
    delivered: int = 0
    misordered: int = 0
    last_seq: int = -1
    failures: list[str] = field(default_factory=list)
    account: Account = field(default_factory=Account)

    def on_result(self, result: dict[str, Any]) -> None:
        """Check a result: in order, never twice, for an input the gateway read."""
        seq = result["seq"]
        if seq <= self.last_seq:
            self.misordered += 1
            self.failures.append(f"conn {self.index}: result {seq} after {self.last_seq}")
            return
        self.last_seq = seq
        self.delivered += 1
        self.results.add(seq)
        if seq not in self.received:
            self.failures.append(f"conn {self.index}: a result for input {seq} never received")

    def settle(self) -> None:
        """Classify every input this connection wrote, socket by socket (its recording)."""
        account = self.account
        with self.recording.open(encoding="utf-8") as lines:
            events = parse_recording(lines).events
        written: list[int] = []
        sockets = 0
        for event in events:
            if event.kind == "open":
                sockets += 1
                written = []
            elif event.kind == "send":
                assert isinstance(event.frame, bytes)
                written.append(ormsgpack.unpackb(event.frame)["seq"])
            elif event.kind == "close":
                # Not closed by close(), nor by the server's normal 1000: the link was lost.
                lost = event.by == "server" and event.code != 1000
                account.lost_sockets += lost
                for seq in written:
                    if seq in self.results:
                        account.delivered += 1
                    elif lost and seq in self.received:
                        account.lost_result += 1
                    elif lost:
                        account.lost_unread += 1
                    else:
                        account.unaccounted.append(
                            f"conn {self.index}: input {seq} written on socket {sockets} "
                            f"(closed {event.code} by the {event.by}) got no result"
                        )
        if account.lost_sockets != len(self.faults):
            self.failures.append(
                f"conn {self.index}: {account.lost_sockets} sockets ended lost for "
                f"{len(self.faults)} faults ({[k for _, k in self.faults]})"
            )
        if account.delivered != self.delivered:
            self.failures.append(
                f"conn {self.index}: {self.delivered} results, {account.delivered} of them "
                "for inputs its recording shows written"
            )
        self.failures.extend(account.unaccounted)


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
        await lane.conn.send({"c": lane.index, "seq": lane.calls})
        lane.calls += 1
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
        lanes[value["c"]].received.add(value["seq"])
        return value

    stop = asyncio.Event()
    counts: dict[str, int] = defaultdict(int)
    failures: list[str] = []
    records = tempfile.TemporaryDirectory(prefix="fal-rt-soak-")
    async with gateway.serve(port=0) as running:
        lanes.extend(
            Lane(i, FaultProxy(running.host, running.port), Path(records.name, f"conn{i}.jsonl"))
            for i in range(connections)
        )
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
                record=lane.recording,
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
        await asyncio.sleep(QUIET_S)
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

    calls = sent = coalesced = delivered = lost_result = lost_unread = unaccounted = faults = 0
    with records:
        for lane in lanes:
            lane.settle()
    for lane in lanes:
        assert lane.conn is not None
        stats = lane.conn.stats
        calls += lane.calls
        sent += stats.sent
        coalesced += stats.coalesced
        delivered += lane.account.delivered
        lost_result += lane.account.lost_result
        lost_unread += lane.account.lost_unread
        unaccounted += len(lane.account.unaccounted)
        faults += len(lane.faults)
        if stats.sent + stats.coalesced != lane.calls:
            failures.append(
                f"conn {lane.index}: {lane.calls} send() calls, {stats.sent} written + "
                f"{stats.coalesced} superseded"
            )
        accounted = lane.account.delivered + lane.account.lost_at_a_fault
        if accounted + len(lane.account.unaccounted) != stats.sent:
            failures.append(
                f"conn {lane.index}: {stats.sent} inputs written, {accounted} accounted for "
                f"and {len(lane.account.unaccounted)} not: the recording missed some"
            )
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
        f"  realtime send() calls: {calls} = written {sent} + superseded before writing "
        f"{coalesced}\n"
        f"  inputs written: {sent} = delivered {delivered} + lost at a fault "
        f"{lost_result + lost_unread} (read by the gateway, result on the cut link: "
        f"{lost_result}; never read, the link cut first: {lost_unread}) + unaccounted "
        f"{unaccounted}\n"
        f"  results out of order or twice: {sum(lane.misordered for lane in lanes)}\n"
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
