"""mkdocs hooks: pages generated at build time, so nothing is retyped.

- ``<!-- generated: api fal_realtime -->`` becomes one mkdocstrings block per name in
  ``fal_realtime.__all__`` (a new export appears in the reference by itself);
- ``<!-- generated: performance -->`` becomes the current figures read from
  ``docs/performance.json`` (the file ``python -m benchmarks --json`` writes).

Run by ``mkdocs build`` (``hooks:`` in mkdocs.yml); also importable, for the tests.
"""

from __future__ import annotations

import importlib
import json
import math
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PERFORMANCE_JSON = ROOT / "docs" / "performance.json"
API_MARKER = "<!-- generated: api "
PERFORMANCE_MARKER = "<!-- generated: performance -->"


def api_blocks(module_name: str) -> str:
    """Return a mkdocstrings block for each public name of ``module_name`` (its ``__all__``)."""
    module = importlib.import_module(module_name)
    names = sorted(
        (name for name in module.__all__ if name != "__version__"),
        key=lambda name: _reading_order(name, getattr(module, name)),
    )
    blocks = [f"::: {module_name}.{name}\n" for name in names]
    if "__version__" in module.__all__:
        version = module.__version__
        blocks.append(
            f'<h2 id="{module_name}.__version__"><code>__version__</code></h2>\n\n'
            f"`{module_name}.__version__`: the installed version, `{version}` when this page "
            "was built (one source: `fal_realtime/_version.py`, which pyproject.toml reads).\n"
        )
    return "\n".join(blocks)


#: The entry points, first on the page.
FIRST = ("connect", "ws", "fetch_token")


def _reading_order(name: str, value: object) -> tuple[int, int]:
    """Sort the reference as it is read: entry points, classes, exceptions, the rest."""
    if name in FIRST:
        return 0, FIRST.index(name)
    if isinstance(value, type) and issubclass(value, BaseException):
        return 2, 0
    if isinstance(value, type):
        return 1, 0
    if callable(value):
        return 3, 0
    return 4, 0


def _number(value: float | None, unit: str = "") -> str:
    """Format a measured value for a table: 3 significant figures, thousands separated."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if abs(value) >= 100:
        text = f"{value:,.0f}"
    elif abs(value) >= 10:
        text = f"{value:.1f}"
    else:
        text = f"{value:.3g}"
    return f"{text} {unit}".strip() if unit and unit != "x" else (f"{text} ×" if unit else text)


def _cell(text: str) -> str:
    """Return ``text`` safe in a Markdown table cell (a ``|`` would end the cell)."""
    return text.replace("|", "\\|")


def performance_markdown(document: dict[str, Any]) -> str:
    """Return the performance page's generated part: the run, then each scenario's figures."""
    machine = document["machine"]
    lines = [
        f"Run: `{document['mode']}` mode on {machine['date_utc'][:10]}, "
        f"{machine['implementation']} {machine['python']}, {machine['cpus']} CPUs, "
        f"event loop `{document['loop']}`, {document['seconds']:.0f} s in all.",
        "",
    ]
    if document.get("runs"):  # the scenarios come from several runs of their own
        lines += [
            "The scenarios come from runs of their own:",
            "",
            "| scenarios | started (UTC) | load average at start | seconds |",
            "|---|---|---|---|",
        ]
        for run in document["runs"]:
            started = run["machine"]["date_utc"].replace("T", " ").rstrip("Z")
            load = ", ".join(f"{x:.2f}" for x in run["machine"].get("loadavg_at_start", []))
            names = ", ".join(f"`{name}`" for name in run["scenarios"])
            lines.append(f"| {names} | {started} | {load} | {run['seconds']:.0f} |")
        lines.append("")
    met = sum(t["met"] for s in document["scenarios"] for t in s["targets"])
    total = sum(len(s["targets"]) for s in document["scenarios"])
    lines += [f"Targets met: **{met} of {total}**.", ""]
    for scenario in document["scenarios"]:
        lines += [f"### {scenario['title']}", "", f"Scenario `{scenario['name']}`.", ""]
        if scenario["targets"]:
            lines += ["| measure | result | target | |", "|---|---|---|---|"]
            for t in scenario["targets"]:
                spread = f" (±{t['spread'] / 2:.0%})" if t.get("spread") else ""
                verdict = "met" if t["met"] else "missed"
                value = _number(t["value"], t["unit"])
                lines.append(
                    f"| {_cell(t['label'])} | {value}{spread} | {t['op']} "
                    f"{_number(t['threshold'], t['unit'])} | {verdict} |"
                )
            lines.append("")
        primary = scenario.get("primary")
        units = scenario.get("units", {})
        if primary and scenario["contenders"]:
            metrics = list(units)
            lines += [
                "| contender | " + " | ".join(f"`{m}` ({units[m]})" for m in metrics) + " |",
                "|---|" + "---|" * len(metrics),
            ]
            for name, values in scenario["contenders"].items():
                cells = []
                for m in metrics:
                    summary = values.get(m)
                    median = summary.get("median") if isinstance(summary, dict) else None
                    cells.append(_number(median))
                lines.append(f"| {_cell(name)} | " + " | ".join(cells) + " |")
            lines.append("")
        for note in scenario.get("notes", []):
            lines.append(f"- {_cell(note)}")
        if scenario.get("notes"):
            lines.append("")
    return "\n".join(lines)


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    """Replace the generated-content markers of a page (mkdocs hook)."""
    if PERFORMANCE_MARKER in markdown:
        document = json.loads(PERFORMANCE_JSON.read_text(encoding="utf-8"))
        markdown = markdown.replace(PERFORMANCE_MARKER, performance_markdown(document))
    while API_MARKER in markdown:
        start = markdown.index(API_MARKER)
        end = markdown.index("-->", start)
        module_name = markdown[start + len(API_MARKER) : end].strip()
        markdown = markdown[:start] + api_blocks(module_name) + markdown[end + 3 :]
    return markdown
