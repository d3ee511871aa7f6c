"""The protocol layer is sans-I/O: no fal_realtime/_protocol module imports asyncio/aiohttp."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import fal_realtime._protocol

PROTOCOL_DIR = Path(fal_realtime._protocol.__file__).parent
FORBIDDEN = frozenset({"asyncio", "aiohttp", "socket", "ssl", "selectors", "threading"})
MODULES = sorted(PROTOCOL_DIR.glob("*.py"))


def _imported_roots(tree: ast.AST) -> set[str]:
    """Return the top-level package of every import in ``tree``, at any depth."""
    roots: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute | ast.Name)
            and getattr(node.func, "attr", getattr(node.func, "id", None)) == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            roots.add(node.args[0].value.split(".")[0])
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "__import__"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            roots.add(node.args[0].value.split(".")[0])
    return roots


def _relative_targets(tree: ast.AST) -> set[str]:
    """Return the modules named by relative imports that climb out of _protocol."""
    return {
        "." * node.level + (node.module or "")
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.level > 1
    }


def test_protocol_modules_found() -> None:
    """The scan below sees every protocol module (guards against an empty glob)."""
    names = {path.name for path in MODULES}
    assert {"apps.py", "codecs.py", "realtime.py", "http_ws.py", "session.py", "sse.py"} <= names


def test_import_scanner_sees_nested_and_dynamic_imports() -> None:
    """The scanner catches imports inside functions, `from x.y import`, and import_module."""
    source = (
        "import os.path\n"
        "def f():\n"
        "    import asyncio.tasks\n"
        "    from aiohttp import web\n"
        "    importlib.import_module('socket')\n"
        "    __import__('ssl')\n"
        "from . import sibling\n"
    )
    assert _imported_roots(ast.parse(source)) == {"os", "asyncio", "aiohttp", "socket", "ssl"}


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.name)
def test_protocol_module_imports_no_io(path: Path) -> None:
    """A protocol module imports neither asyncio nor aiohttp (nor sockets or threads)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    assert not _imported_roots(tree) & FORBIDDEN


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.name)
def test_protocol_module_leaves_package_only_for_errors(path: Path) -> None:
    """A protocol module reaches outside _protocol only for fal_realtime.errors."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    assert _relative_targets(tree) <= {"..errors"}
    absolute = {
        node.module
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module
    }
    assert not {m for m in absolute if m.startswith("fal_realtime")} - {"fal_realtime.errors"}


def test_errors_module_imports_no_io() -> None:
    """fal_realtime.errors, which the protocol layer imports, is free of I/O imports too."""
    path = PROTOCOL_DIR.parent / "errors.py"
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    assert not _imported_roots(tree) & FORBIDDEN
    assert not {r for r in _imported_roots(tree) if r == "fal_realtime"}
    assert not any(isinstance(n, ast.ImportFrom) and n.level > 0 for n in ast.walk(tree))
