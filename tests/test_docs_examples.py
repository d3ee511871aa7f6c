"""USR-DOCS: the documentation's Python blocks run against a local gateway, or type-check.

How each block is checked is in tests/docs_blocks.py. Each page gets a fresh project
directory; scripts and the reader's own test files run in child processes, as a reader
would run them, with warnings as errors.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from fal_realtime.testing import ENV_NAMES, LocalGateway

from .docs_blocks import PAGES, ROOT, blocks

#: How long one block may take to run (a pytest run of a reader's test file included).
BLOCK_TIMEOUT_S = 180.0
#: The children run as a reader would: without the suite's asyncio debug mode.
BASE_ENV = {
    k: v for k, v in os.environ.items() if k != "PYTHONASYNCIODEBUG" and k not in ENV_NAMES
}
#: The pages with Python blocks (the others have nothing to check).
CHECKED = [p for p in PAGES if blocks(p)]
#: What pytest-asyncio says to a project that has not configured it (a new project).
UNSET_SCOPE = 'The configuration option "asyncio_default_fixture_loop_scope" is unset'
PAGE_IDS = [str(p.relative_to(ROOT)) for p in CHECKED]


@pytest.fixture(scope="module")
def local_gateway() -> Iterator[LocalGateway]:
    """One local gateway with the demo apps for the module's children (env left alone)."""
    with LocalGateway(set_env=False) as gateway:
        yield gateway


@pytest.fixture(scope="module")
def mypy_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A mypy cache shared by the pages' type checks (the first one fills it)."""
    return tmp_path_factory.mktemp("mypy-cache")


def _run(args: list[str], cwd: Path, env: dict[str, str], what: str) -> None:
    """Run ``args`` in ``cwd``; fail with its output unless it exits 0 in time."""
    try:
        done = subprocess.run(
            args, cwd=cwd, env=env, capture_output=True, text=True, timeout=BLOCK_TIMEOUT_S
        )
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(f"{what}: still running after {BLOCK_TIMEOUT_S:g} s") from exc
    assert done.returncode == 0, f"{what} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"


def test_usr_docs_1_every_block_says_how_it_is_checked() -> None:
    """USR-DOCS-1: README.md and docs/ have Python blocks, each one run or marked not run."""
    found = [b for page in PAGES for b in blocks(page)]
    assert any(b.page.name == "README.md" for b in found)
    kinds = {b.kind for b in found}
    assert kinds == {"file", "not run", "script"}, kinds
    names = [b.page.name for b in found if b.kind == "script"]
    assert "README.md" in names and "realtime.md" in names


@pytest.mark.parametrize("page", CHECKED, ids=PAGE_IDS)
def test_usr_docs_2_blocks_run_against_a_local_gateway(
    page: Path, local_gateway: LocalGateway, tmp_path: Path
) -> None:
    """USR-DOCS-2: each page's scripts and reader test files run against a local gateway."""
    env = {**BASE_ENV, **local_gateway.env}
    for name in ("FAL_KEY_ID", "FAL_KEY_SECRET"):
        env.pop(name, None)
    (tmp_path / "pytest.ini").write_text("[pytest]\n")  # a new project: no configuration
    for block in blocks(page):
        (tmp_path / block.filename).write_text(block.code, encoding="utf-8")
        if block.kind == "script":
            _run([sys.executable, "-W", "error", block.filename], tmp_path, env, block.where)
        elif block.kind == "file" and block.filename.startswith("test_"):
            _run(
                [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                 "-W", "error", "-W", f"ignore:{UNSET_SCOPE}:pytest.PytestDeprecationWarning",
                 block.filename],
                tmp_path,
                BASE_ENV,  # the fal_gateway fixture points FAL_* at its own gateway
                block.where,
            )


@pytest.mark.parametrize("page", CHECKED, ids=PAGE_IDS)
def test_usr_docs_3_blocks_type_check(page: Path, tmp_path: Path, mypy_cache: Path) -> None:
    """USR-DOCS-3: every Python block of each page type-checks with mypy."""
    pytest.importorskip("mypy", reason="mypy is a dev dependency")
    page_blocks = blocks(page)
    for block in page_blocks:
        (tmp_path / block.filename).write_text(block.code, encoding="utf-8")
    files = sorted({b.filename for b in page_blocks})
    _run(
        [sys.executable, "-m", "mypy", "--check-untyped-defs", "--no-error-summary",
         "--cache-dir", str(mypy_cache), "--python-version", "3.11", *files],
        tmp_path,
        {**BASE_ENV, "MYPYPATH": str(ROOT)},  # an editable install's import hook is not for mypy
        f"mypy on {page.relative_to(ROOT)}'s blocks",
    )


def test_usr_docs_6_readme_and_contributing_links_resolve() -> None:
    """USR-DOCS-6: each relative link and image in README.md and CONTRIBUTING.md exists."""
    link = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")
    broken = []
    for name in ("README.md", "CONTRIBUTING.md"):
        text = (ROOT / name).read_text(encoding="utf-8")
        for target in link.findall(text):
            if "://" not in target and not (ROOT / target).exists():
                broken.append(f"{name}: {target}")
    assert not broken, broken
