"""The suite's shared harness: interleaved rounds, medians and spreads, targets, output.

A scenario measures each *contender* once per round, interleaved (A B C, B C A, ...:
every contender runs in every round and the starting one rotates, so a slow patch of
the shared machine hits them all alike). Each measurement returns a few metrics; a
metric's summary is the median over the rounds and its *spread*, ``(max - min) /
median``. Ratios between two contenders are taken per round (the pair measured side
by side) and their median is reported: that is what the targets are judged on.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import platform
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "MIB",
    "Metric",
    "Options",
    "ScenarioResult",
    "Target",
    "interleave",
    "percentile",
    "render_table",
    "summary_rows",
]

MIB = 1024 * 1024
Sample = dict[str, float]
Measure = Callable[[], Awaitable[Sample]]


@dataclass(frozen=True, slots=True)
class Options:
    """What the command line asked for."""

    quick: bool = False
    #: Overrides every scenario's number of rounds (None: each scenario's own choice).
    rounds: int | None = None

    def pick(self, quick: Any, full: Any) -> Any:
        """Return ``quick`` under ``--quick``, else ``full``."""
        return quick if self.quick else full

    def n_rounds(self, quick: int, full: int) -> int:
        """Return the number of rounds (``--rounds`` overrides the scenario's choice)."""
        if self.rounds is not None:
            return self.rounds
        return quick if self.quick else full


def percentile(values: Sequence[float], q: float) -> float:
    """Return the ``q``-th percentile (0..100) of ``values``, linearly interpolated."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclass(slots=True)
class Metric:
    """One metric of one contender: a value per round."""

    values: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        finite = [v for v in self.values if not math.isnan(v)]
        return statistics.median(finite) if finite else math.nan

    @property
    def spread(self) -> float:
        """Return ``(max - min) / median`` over the rounds (0 with one round)."""
        finite = [v for v in self.values if not math.isnan(v)]
        median = self.median
        if len(finite) < 2 or not median:
            return 0.0
        return (max(finite) - min(finite)) / abs(median)

    def as_json(self) -> dict[str, Any]:
        return {
            "median": _json_float(self.median),
            "min": _json_float(min(self.values)) if self.values else None,
            "max": _json_float(max(self.values)) if self.values else None,
            "spread": _json_float(self.spread),
            "rounds": [_json_float(v) for v in self.values],
        }


@dataclass(slots=True)
class Target:
    """A target a scenario is judged on: ``value op threshold``."""

    label: str
    value: float
    op: str  # ">=" or "<="
    threshold: float
    unit: str = "x"
    spread: float | None = None
    note: str = ""

    @property
    def met(self) -> bool:
        if math.isnan(self.value):
            return False
        return self.value >= self.threshold if self.op == ">=" else self.value <= self.threshold

    def describe(self) -> str:
        unit = "" if self.unit == "x" else f" {self.unit}"
        shown = (
            f"{self.value:.2f}{unit}"
            if self.unit in ("x", "ms", "KiB", "MiB", "%")
            else f"{self.value:g}{unit}"
        )
        spread = f" (±{self.spread / 2:.0%})" if self.spread else ""
        want = f"{self.op} {self.threshold:g}{unit}"
        return f"{'MET ' if self.met else 'MISS'}  {self.label}: {shown}{spread}, target {want}"

    def as_json(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "value": _json_float(self.value),
            "op": self.op,
            "threshold": self.threshold,
            "unit": self.unit,
            "spread": _json_float(self.spread) if self.spread is not None else None,
            "met": self.met,
            "note": self.note,
        }


@dataclass(slots=True)
class ScenarioResult:
    """What one scenario measured: per contender, per metric, per round."""

    name: str
    title: str
    #: metric name -> unit, in display order.
    units: dict[str, str]
    rows: dict[str, dict[str, Metric]] = field(default_factory=dict)
    targets: list[Target] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    #: The metric the chart shows for this scenario.
    primary: str = ""
    seconds: float = 0.0
    #: Rounds are trials (a distribution), not repeats: the table shows no spread.
    per_trial: bool = False
    #: Measurements that raised or timed out (the run's exit status reports them).
    failures: list[str] = field(default_factory=list)

    def add(self, contender: str, sample: Sample) -> None:
        """Record one round of ``contender``."""
        metrics = self.rows.setdefault(contender, {})
        for name, value in sample.items():
            metrics.setdefault(name, Metric()).values.append(float(value))

    def median(self, contender: str, metric: str) -> float:
        row = self.rows.get(contender, {})
        return row[metric].median if metric in row else math.nan

    def ratio(self, a: str, b: str, metric: str) -> tuple[float, float]:
        """Return the median per-round ratio ``a / b`` of ``metric`` and its spread."""
        try:
            xs, ys = self.rows[a][metric].values, self.rows[b][metric].values
        except KeyError:
            return math.nan, 0.0
        ratios = Metric([x / y for x, y in zip(xs, ys, strict=False) if y and not math.isnan(x)])
        return ratios.median, ratios.spread

    def ratio_of_medians(self, a: str, b: str, metric: str, slices: int) -> tuple[float, float]:
        """Return ``median(a) / median(b)`` of ``metric`` over all rounds, and its spread.

        For per-trial scenarios (one sample per round): the ratio of the two medians,
        and the spread of that same ratio over ``slices`` consecutive runs of rounds.
        """
        try:
            xs, ys = self.rows[a][metric].values, self.rows[b][metric].values
        except KeyError:
            return math.nan, 0.0
        whole = Metric(xs).median / Metric(ys).median
        size = max(1, min(len(xs), len(ys)) // slices)
        parts = [
            Metric(xs[i : i + size]).median / Metric(ys[i : i + size]).median
            for i in range(0, size * slices, size)
            if len(xs[i : i + size]) == size and len(ys[i : i + size]) == size
        ]
        finite = [r for r in parts if not math.isnan(r)]
        spread = (max(finite) - min(finite)) / whole if len(finite) > 1 and whole else 0.0
        return whole, spread

    def difference(self, a: str, b: str, metric: str) -> tuple[float, float]:
        """Return the median per-round difference ``a - b`` of ``metric`` and its range."""
        try:
            xs, ys = self.rows[a][metric].values, self.rows[b][metric].values
        except KeyError:
            return math.nan, 0.0
        diffs = [x - y for x, y in zip(xs, ys, strict=False) if not math.isnan(x - y)]
        if not diffs:
            return math.nan, 0.0
        return statistics.median(diffs), max(diffs) - min(diffs)

    def target_ratio(
        self, label: str, a: str, b: str, metric: str, op: str, threshold: float, note: str = ""
    ) -> Target:
        value, spread = self.ratio(a, b, metric)
        target = Target(label, value, op, threshold, "x", spread, note)
        self.targets.append(target)
        return target

    def target_ratio_of_medians(
        self, label: str, a: str, b: str, metric: str, op: str, threshold: float, slices: int
    ) -> Target:
        """Add a target on the ratio of two medians (see :meth:`ratio_of_medians`)."""
        value, spread = self.ratio_of_medians(a, b, metric, slices)
        note = f"ratio of medians; ± over {slices} slices of the rounds"
        target = Target(label, value, op, threshold, "x", spread, note)
        self.targets.append(target)
        return target

    def target_value(
        self, label: str, contender: str, metric: str, op: str, threshold: float, unit: str
    ) -> Target:
        row = self.rows.get(contender, {})
        spread = row[metric].spread if metric in row else None
        if self.per_trial:
            spread = None
        target = Target(label, self.median(contender, metric), op, threshold, unit, spread)
        self.targets.append(target)
        return target

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "title": self.title,
            "seconds": round(self.seconds, 2),
            "units": self.units,
            "primary": self.primary,
            "contenders": {
                contender: {m: metric.as_json() for m, metric in metrics.items()}
                for contender, metrics in self.rows.items()
            },
            "targets": [t.as_json() for t in self.targets],
            "notes": self.notes,
            "failures": self.failures,
        }


async def interleave(
    result: ScenarioResult,
    contenders: dict[str, Measure],
    rounds: int,
    *,
    timeout_s: float,
    warmup: bool = True,
) -> None:
    """Measure every contender once per round, rotating who starts; record into ``result``.

    Each measurement is bounded by ``timeout_s``; one that fails or times out records
    NaN for that round and is reported, so one broken contender cannot sink the run.
    With ``warmup`` every contender runs once unrecorded first (imports, caches, TLS).
    """
    names = list(contenders)
    if warmup:
        for name in names:
            await _measure(result, name, contenders[name], timeout_s, record=False)
    for round_no in range(rounds):
        shift = round_no % len(names)
        for name in names[shift:] + names[:shift]:
            await _measure(result, name, contenders[name], timeout_s, record=True)


async def _measure(
    result: ScenarioResult, name: str, measure: Measure, timeout_s: float, *, record: bool
) -> None:
    try:
        async with asyncio.timeout(timeout_s):
            sample = await measure()
    except Exception as exc:  # a benchmark reports a broken contender and goes on
        message = f"{name}: {type(exc).__name__}: {exc}"
        print(f"    ! {message}", file=sys.stderr, flush=True)
        if message not in result.failures:
            result.failures.append(message)
        if record:
            result.add(name, {metric: math.nan for metric in result.units})
        return
    if record:
        result.add(name, sample)


# -- output ------------------------------------------------------------------------------


def _fmt(value: float, unit: str) -> str:
    if math.isnan(value):
        return "n/a"
    if unit in ("MB/s", "KiB", "N", "errors") or abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 100:
        return f"{value:.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def render_table(result: ScenarioResult) -> str:
    """Return the scenario's per-contender table and its targets as text."""
    metrics = list(result.units)
    headers = ["contender"] + [f"{m} ({result.units[m]})" for m in metrics]
    lines: list[list[str]] = []
    for contender, row in result.rows.items():
        cells = [contender]
        for m in metrics:
            metric = row.get(m)
            if metric is None:
                cells.append("-")
                continue
            repeated = len(metric.values) > 1 and not result.per_trial
            spread = f" ±{metric.spread / 2:.0%}" if repeated else ""
            cells.append(_fmt(metric.median, result.units[m]) + spread)
        lines.append(cells)
    widths = [max(len(r[i]) for r in [headers, *lines]) for i in range(len(headers))]
    out = [f"== {result.name}: {result.title}  [{result.seconds:.1f} s]"]
    out.append("  " + "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)))
    for cells in lines:
        out.append("  " + "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)))
    for target in result.targets:
        out.append("  " + target.describe() + (f"  ({target.note})" if target.note else ""))
    for note in result.notes:
        out.append(f"  note: {note}")
    for failure in result.failures:
        out.append(f"  FAILED: {failure}")
    return "\n".join(out)


def summary_rows(results: Iterable[ScenarioResult]) -> list[tuple[str, str, str, str]]:
    """Return (scenario, target, measured, verdict) rows for the summary table."""
    rows = []
    for result in results:
        for t in result.targets:
            unit = "" if t.unit == "x" else f" {t.unit}"
            spread = f" ±{t.spread / 2:.0%}" if t.spread else ""
            shown = (
                f"{t.value:.3f}"
                if t.unit == "x"
                else f"{t.value:.2f}"
                if t.unit in ("ms", "KiB", "MiB", "%")
                else f"{t.value:g}"
            )
            value = "n/a" if math.isnan(t.value) else f"{shown}{unit}{spread}"
            rows.append(
                (
                    result.name,
                    f"{t.label} {t.op} {t.threshold:g}{unit}",
                    value,
                    "met" if t.met else "MISSED",
                )
            )
    return rows


def machine() -> dict[str, Any]:
    """Describe where the run happened."""
    import os

    load = os.getloadavg() if hasattr(os, "getloadavg") else (math.nan,) * 3
    return {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "loadavg_at_start": [round(x, 2) for x in load],
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def _json_float(value: float | None) -> float | None:
    if value is None or math.isnan(value) or math.isinf(value):
        return None
    return round(value, 6)


@contextlib.contextmanager
def timed(result: ScenarioResult) -> Any:
    """Record how long the ``with`` block took as the scenario's run time."""
    started = time.perf_counter()
    try:
        yield
    finally:
        result.seconds = time.perf_counter() - started
