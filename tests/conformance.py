"""Collect the conformance case IDs from the tests and (re)write docs/CONFORMANCE.md.

    python -m tests.conformance          # rewrite the table from the tests' docstrings

A conformance test's docstring starts with its case ID, e.g. "RT-12: what it checks."
"""

from __future__ import annotations

import ast
import re
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "CONFORMANCE.md"
CASE = re.compile(r"^((?:[A-Z]+-)+\d+): (.+)$", re.S)
ROW = re.compile(r"^\| `((?:[A-Z]+-)+\d+)` \|")

GROUPS = {
    "GW": "Gateway: the local gateway behaves as fal's runner and edge do",
    "RT": "Realtime client and realtime wire facts",
    "WS": "HTTP over WebSockets",
    "SEC": "Security",
    "PROXY": "Browser apps: fal's server proxy and the token route",
    "USR": "For users: the examples, the playground, the test toolkit, the documentation",
    "OBS": "Observability: OpenTelemetry metrics and spans, searchable logs",
}

HEADER = """# Conformance cases

Every protocol, gateway and fault case of the spec has an ID and a test named after
it; the tests run against the project's own gateway over real sockets on 127.0.0.1.
This file is generated from the tests' docstrings by `python -m tests.conformance`;
`tests/test_conformance.py` fails when a listed case has no test or a test's case is
not listed.
"""


@dataclass(frozen=True)
class Case:
    """One conformance case: its ID, what it checks, and the test that checks it."""

    case_id: str
    summary: str
    test: str


def _sort_key(case_id: str) -> tuple[str, int]:
    prefix, _, number = case_id.rpartition("-")
    return prefix, int(number)


def collect(tests_dir: Path = ROOT / "tests") -> list[Case]:
    """Return every case found in ``tests_dir``'s test functions, sorted by ID."""
    cases: list[Case] = []
    for path in sorted(tests_dir.glob("test_*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            if not node.name.startswith("test_"):
                continue
            doc = ast.get_docstring(node) or ""
            match = CASE.match(doc.strip())
            if match:
                summary = " ".join(match.group(2).split())
                cases.append(Case(match.group(1), summary, f"{path.name}::{node.name}"))
    return sorted(cases, key=lambda c: _sort_key(c.case_id))


def render(cases: list[Case]) -> str:
    """Return the Markdown table for ``cases``, grouped by the ID's first part."""
    out = [HEADER]
    for group, title in GROUPS.items():
        rows = [c for c in cases if c.case_id.split("-")[0] == group]
        if not rows:
            continue
        out.append(f"\n## {title}\n\n| case | expected behaviour | test |\n|---|---|---|")
        for case in rows:
            summary = case.summary.replace("|", "\\|")
            out.append(f"| `{case.case_id}` | {summary} | `{case.test}` |")
    return "\n".join(out) + "\n"


def listed_ids(text: str) -> list[str]:
    """Return the case IDs in a rendered table, in order."""
    return [m.group(1) for line in text.splitlines() if (m := ROW.match(line))]


if __name__ == "__main__":
    DOC.write_text(render(collect()), encoding="utf-8")
    print(f"wrote {DOC.relative_to(ROOT)}", file=sys.stderr)
