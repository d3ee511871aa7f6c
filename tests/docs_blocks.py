"""The Python code blocks of README.md and docs/*.md, and how each is checked.

A block's first line says what it is:

- ``# file: NAME.py``: a file of the reader's project, written into the page's project
  directory as NAME.py; a ``test_*.py`` one is run there with pytest, as a new project
  would (no configuration: pytest-asyncio in its default strict mode);
- ``# docs: not run (WHY)``: needs what a test cannot have (a camera, a web server left
  running); type-checked only, with mypy;
- anything else: a script, run with ``python -`` in the page's project directory with
  ``FAL_RUN_HOST``, ``FAL_WS_RUN_HOST``, ``FAL_REST_URL`` and ``FAL_KEY`` pointing at a
  local gateway. It must finish on its own.

Every block is also type-checked (mypy), so a block that runs cannot hide a wrong name
in a branch it did not take. Blocks of one page share the project directory, in order:
a later block may use a file an earlier one wrote (a recording, ``my_app.py``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: The generated conformance table has no code blocks worth running.
PAGES = [ROOT / "README.md"] + sorted(
    p for p in (ROOT / "docs").rglob("*.md") if p.name != "CONFORMANCE.md"
)
FENCE = re.compile(r"^```python\n(.*?)^```$", re.M | re.S)
FILE = re.compile(r"^# file: ([A-Za-z_][A-Za-z0-9_]*\.py)$")
NOT_RUN = re.compile(r"^# docs: not run \(.+\)$")


@dataclass(frozen=True)
class Block:
    """One ```python block: where it is, its code, and how it is checked."""

    page: Path
    line: int
    code: str
    kind: str  # "file", "not run" or "script"
    filename: str

    @property
    def where(self) -> str:
        """Return ``page:line`` for messages."""
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def blocks(page: Path) -> list[Block]:
    """Return the ```python blocks of ``page`` in order."""
    text = page.read_text(encoding="utf-8")
    found: list[Block] = []
    for n, match in enumerate(FENCE.finditer(text)):
        code = match.group(1)
        line = text.count("\n", 0, match.start()) + 1
        first = code.split("\n", 1)[0]
        if m := FILE.match(first):
            kind, filename = "file", m.group(1)
        elif NOT_RUN.match(first):
            kind, filename = "not run", f"block_{n}.py"
        else:
            kind, filename = "script", f"block_{n}.py"
        found.append(Block(page, line, code, kind, filename))
    return found
