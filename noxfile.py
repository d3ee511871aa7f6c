"""The test matrix: ``nox`` (or ``nox -s tests-3.12``, ``nox -s floors``, ``nox -s uvloop``).

Every session runs the README's test command in a fresh virtualenv:

- ``tests-3.11`` … ``tests-3.13``: each supported CPython with the newest dependencies;
- ``floors``: the oldest supported CPython with every runtime dependency pinned to the
  floor pyproject.toml declares (``>=X`` read as ``==X``), so the floors are facts;
- ``uvloop``: the newest CPython with uvloop as the event loop of every async test
  (``FAL_RT_TEST_LOOP=uvloop``, read by ``tests/conftest.py``'s loop-factory hook).

Interpreters are found on PATH, and also under pyenv's versions folder, so a machine
with pyenv needs no shims. A CPython that is missing is skipped with a line that says
so; ``nox --error-on-missing-interpreters`` (CI) makes that an error instead.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import nox

ROOT = Path(__file__).parent
PYTHONS = ["3.11", "3.12", "3.13"]
#: The README's test command, after ``pip install -e '.[test]'``.
TEST_COMMAND = ("python", "-m", "pytest", "-W", "error", "-q")

nox.options.sessions = ["tests", "floors", "uvloop"]
nox.options.reuse_venv = "no"


def _add_pyenv_interpreters() -> None:
    """Put each pyenv CPython 3.11–3.13 on PATH (the newest patch release of each)."""
    root = os.environ.get("PYENV_ROOT") or str(Path.home() / ".pyenv")
    try:
        root = subprocess.run(
            ["pyenv", "root"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    versions = Path(root) / "versions"
    if not versions.is_dir():
        return
    found: dict[str, tuple[tuple[int, ...], Path]] = {}
    for entry in versions.iterdir():
        match = re.fullmatch(r"(3\.1[1-3])\.(\d+)", entry.name)
        if match and (entry / "bin" / "python3").exists():
            patch = (int(match.group(2)),)
            if match.group(1) not in found or found[match.group(1)][0] < patch:
                found[match.group(1)] = (patch, entry / "bin")
    extra = [str(found[v][1]) for v in sorted(found)]
    os.environ["PATH"] = os.pathsep.join([*extra, os.environ.get("PATH", "")])


def floors() -> list[str]:
    """Return the runtime dependencies pinned at their declared floors (``X>=1.2`` → ``X==1.2``)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins = []
    for requirement in project["dependencies"]:
        match = re.fullmatch(r"([A-Za-z0-9_.-]+)\s*>=\s*([0-9][0-9.]*)", requirement)
        if match is None:
            sys.exit(f"noxfile: cannot read a floor from {requirement!r} (write it as NAME>=X.Y)")
        pins.append(f"{match.group(1)}=={match.group(2)}")
    return pins


_add_pyenv_interpreters()


def _run_tests(session: nox.Session, *extra_install: str) -> None:
    session.install("-e", ".[test]", *extra_install)
    session.run("python", "-c", "import sys; print('python', sys.version)")
    session.run("python", "-m", "pip", "list", "--format=freeze", silent=False)
    session.run(*TEST_COMMAND, *session.posargs, env={"PYTHONASYNCIODEBUG": "1"})


@nox.session(python=PYTHONS)
def tests(session: nox.Session) -> None:
    """Run the suite with the newest dependencies."""
    _run_tests(session)


@nox.session(name="floors", python=PYTHONS[0])
def floors_session(session: nox.Session) -> None:
    """Run the suite with every runtime dependency at its declared floor."""
    _run_tests(session, *floors())


@nox.session(python=PYTHONS[-1])
def uvloop(session: nox.Session) -> None:
    """Run the suite with uvloop as the event loop (uvloop is in the test extras)."""
    session.env["FAL_RT_TEST_LOOP"] = "uvloop"
    _run_tests(session)
