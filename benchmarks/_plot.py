"""The suite's chart (``--plot FILE``): one panel per scenario, from the JSON document.

Only this module imports matplotlib (the ``bench`` extra), and only when asked.
"""

from __future__ import annotations

import math
import re
from typing import Any

__all__ = ["plot"]

OURS = "#d1495b"
OTHERS = "#8d99ae"


def plot(document: dict[str, Any], path: str) -> None:
    """Draw every scenario's primary metric per contender and save a PNG at ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scenarios = [s for s in document["scenarios"] if s["contenders"] and s["primary"]]
    cols = 2
    rows = max(1, math.ceil(len(scenarios) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(13, 3.1 * rows), squeeze=False)
    for ax, scenario in zip(axes.flat, scenarios, strict=False):
        if scenario["name"] == "capacity":
            _capacity(ax, scenario)
        elif scenario["name"] == "scale":
            _ratios(ax, scenario)
        else:
            _bars(ax, scenario)
    for ax in list(axes.flat)[len(scenarios) :]:
        ax.axis("off")
    machine = document["machine"]
    fig.suptitle(
        f"fal_realtime benchmarks ({document['mode']} run, {machine['date_utc'][:10]}, "
        f"{machine['cpus']} CPUs, Python {machine['python']}, loopback): medians, "
        "bars span min..max over rounds",
        fontsize=10,
    )
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _verdicts(scenario: dict[str, Any]) -> str:
    targets = scenario["targets"]
    if len(targets) > 4:  # e.g. slowlink's 16: a count fits a panel's title, the list does not
        return f"{sum(t['met'] for t in targets)} of {len(targets)} targets met"
    parts = []
    for t in targets:
        if t["value"] is None:
            value = "n/a"
        else:
            value = (
                f"{t['value']:.2f}"
                if t["unit"] in ("x", "ms", "KiB", "MiB", "%")
                else f"{t['value']:g}"
            )
        parts.append(f"{'✓' if t['met'] else '✗'} {value} {t['op']} {t['threshold']:g}")
    return "; ".join(parts)


def _bars(ax: Any, scenario: dict[str, Any]) -> None:
    metric = scenario["primary"]
    names, medians, lows, highs = [], [], [], []
    for name, metrics in scenario["contenders"].items():
        m = metrics.get(metric)
        if not m or m["median"] is None:
            continue
        names.append(name)
        medians.append(m["median"])
        lows.append(m["median"] - (m["min"] if m["min"] is not None else m["median"]))
        highs.append((m["max"] if m["max"] is not None else m["median"]) - m["median"])
    colors = [OURS if name.startswith("fal_realtime") else OTHERS for name in names]
    y = range(len(names))
    ax.barh(list(y), medians, xerr=[lows, highs], color=colors, capsize=2)
    ax.set_yticks(list(y), names, fontsize=7)
    ax.invert_yaxis()
    if medians and min(medians) > 0 and max(medians) / min(medians) > 20:
        ax.set_xscale("log")  # e.g. cold start: 0.6 ms next to 50 ms
    ax.set_xlabel(f"{metric} ({scenario['units'][metric]})", fontsize=8)
    ax.tick_params(axis="x", labelsize=7)
    for target in scenario["targets"]:
        unit = scenario["units"][metric]
        if target["unit"] != "x" and unit.startswith(target["unit"]):  # absolute, this metric
            ax.axvline(target["threshold"], color="black", linestyle="--", linewidth=0.8)
    ax.set_title(f"{scenario['name']}: {_verdicts(scenario)}", fontsize=8)


def _ratios(ax: Any, scenario: dict[str, Any]) -> None:
    """Draw each ratio target (this client / the floor) as a bar, its threshold as a tick."""
    targets = [t for t in scenario["targets"] if t["unit"] == "x" and t["value"] is not None]
    y = list(range(len(targets)))
    values = [t["value"] for t in targets]
    halves = [t["value"] * (t["spread"] or 0) / 2 for t in targets]
    ax.barh(y, values, xerr=halves, color=OURS, capsize=2)
    ax.scatter([t["threshold"] for t in targets], y, marker="|", s=300, color="black", zorder=3)
    ax.axvline(1.0, color="black", linewidth=0.6)
    names = [
        f"{'✓' if t['met'] else '✗'} {t['label'].replace(' vs raw aiohttp', '')}" for t in targets
    ]
    ax.set_yticks(y, names, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("fal_realtime / raw aiohttp (lower is better; | marks the target)", fontsize=8)
    ax.tick_params(axis="x", labelsize=7)
    rest = [t for t in scenario["targets"] if t["unit"] != "x"]
    ax.set_title(f"{scenario['name']}: {_verdicts({'targets': rest})}", fontsize=8)


def _capacity(ax: Any, scenario: dict[str, Any]) -> None:
    series: dict[str, dict[int, float]] = {}
    for name, metrics in scenario["contenders"].items():  # a retry replaces its first try
        match = re.match(r"(.*) N=(\d+)( \(retry\))?$", name)
        if match and metrics["p99_ms"]["median"] is not None:
            series.setdefault(match[1], {})[int(match[2])] = metrics["p99_ms"]["median"]
    for name, points in series.items():
        xs, ys = zip(*sorted(points.items()), strict=True)
        ax.plot(
            xs,
            ys,
            marker="o",
            color=OURS if name.startswith("fal_realtime") else OTHERS,
            label=f"load: {name}",
        )
    ax.axhline(50, color="black", linestyle="--", linewidth=0.8)
    ax.set_yscale("log")
    ax.set_xlabel("N clients at 15 msg/s", fontsize=8)
    ax.set_ylabel("p99 latency (ms)", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.legend(fontsize=7)
    ax.set_title(f"{scenario['name']}: {_verdicts(scenario)}", fontsize=8)
