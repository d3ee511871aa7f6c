"""Install a built wheel into a fresh virtualenv and try it as a user who installed it would.

    python .ci/check_wheel.py dist/fal_realtime-X.Y.Z-py3-none-any.whl

Checks, from outside the source tree: the wheel's version is the source's
(``fal_realtime/_version.py``) and ``fal_realtime.__version__``; the package and its
subpackages import; ``py.typed`` ships; every playground page and stylesheet of the source
tree ships; the pytest plugin is registered; ``fal-realtime --version`` and
``fal-realtime demo`` run (the demo with the ``media`` extra: its image, its any-llm
answer, its camera line).
Exits 1 with one line per failed check.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: How long installing or running the demo may take (pip reads from the registry).
STEP_TIMEOUT_S = 600

#: Run inside the fresh virtualenv: reports what the installed package looks like.
PROBE = """
import importlib, importlib.metadata as md, json, sys
from pathlib import Path
import fal_realtime
for name in ("fal_realtime.media", "fal_realtime.proxy", "fal_realtime.server",
             "fal_realtime.testing", "fal_realtime.cli",
             "fal_realtime.playground"):
    importlib.import_module(name)
package = Path(fal_realtime.__file__).parent
plugins = [ep.value for ep in md.entry_points(group="pytest11")]
print(json.dumps({
    "version": fal_realtime.__version__,
    "dist_version": md.version("fal-realtime"),
    "location": str(package),
    "py_typed": (package / "py.typed").is_file(),
    "pages": sorted(p.name for p in (package / "playground").iterdir()
                    if p.suffix in (".html", ".css")),
    "plugin": "fal_realtime.pytest_plugin" in plugins,
}))
"""


def source_version() -> str:
    """Return the version written in fal_realtime/_version.py."""
    text = (ROOT / "fal_realtime" / "_version.py").read_text(encoding="utf-8")
    match = re.search(r'^__version__ = "([^"]+)"$', text, re.M)
    if match is None:
        sys.exit("check_wheel: no __version__ in fal_realtime/_version.py")
    return match.group(1)


def run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run ``args`` in ``cwd`` (bounded); exit with its output if it fails."""
    done = subprocess.run(
        args, cwd=cwd, capture_output=True, text=True, timeout=STEP_TIMEOUT_S, check=False
    )
    if done.returncode != 0:
        sys.exit(f"check_wheel: {' '.join(args)} exited {done.returncode}\n{done.stderr}")
    return done


def main(argv: list[str]) -> int:
    """Check the wheel given as the only argument; return the exit status."""
    if len(argv) != 1 or not argv[0].endswith(".whl"):
        sys.exit("usage: python .ci/check_wheel.py dist/NAME.whl")
    wheel = Path(argv[0]).resolve()
    expected = source_version()
    failures: list[str] = []
    with tempfile.TemporaryDirectory(prefix="fal-rt-wheel-") as tmp:
        home = Path(tmp)
        venv.create(home / "venv", with_pip=True)
        python = str(home / "venv" / "bin" / "python")
        run([python, "-m", "pip", "install", "--quiet", f"{wheel}[media]"], home)
        probe = json.loads(run([python, "-c", PROBE], home).stdout)
        if not probe["location"].startswith(str(home)):
            failures.append(f"imported from {probe['location']}, not from the fresh venv")
        if not probe["version"] == probe["dist_version"] == expected:
            failures.append(
                f"versions differ: fal_realtime.__version__ {probe['version']}, wheel "
                f"{probe['dist_version']}, fal_realtime/_version.py {expected}"
            )
        if f"-{expected}-" not in wheel.name:
            failures.append(f"the wheel's name {wheel.name} does not carry {expected}")
        if not probe["py_typed"]:
            failures.append("py.typed is missing")
        source = ROOT / "fal_realtime" / "playground"
        pages = sorted(p.name for p in source.iterdir() if p.suffix in (".html", ".css"))
        if probe["pages"] != pages:
            failures.append(f"playground pages shipped {probe['pages']}, source has {pages}")
        if not probe["plugin"]:
            failures.append("the pytest11 entry point (fal_gateway fixture) is missing")
        cli = str(home / "venv" / "bin" / "fal-realtime")
        shown = run([cli, "--version"], home).stdout.strip()
        if shown != f"fal-realtime {expected}":
            failures.append(f"fal-realtime --version says {shown!r}")
        demo = run([cli, "demo", "--out-dir", str(home)], home).stdout
        png = home / "fal-realtime-demo-1.png"
        if not png.is_file() or not png.read_bytes().startswith(b"\x89PNG"):
            failures.append("fal-realtime demo saved no PNG")
        for expected_line in ("fal-ai/any-llm ->", "camera    fal-ai/"):
            if expected_line not in demo:
                failures.append(f"fal-realtime demo printed no {expected_line!r} line")
    for failure in failures:
        print(f"check_wheel: {failure}", file=sys.stderr)
    if not failures:
        print(f"check_wheel: {wheel.name} installs and works (version {expected})")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
