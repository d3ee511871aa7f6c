"""The server package's imports run one way: no cycle, no import hidden in a function."""

from __future__ import annotations

import ast
import graphlib
from pathlib import Path

import fal_realtime.server

SERVER = Path(fal_realtime.server.__file__).parent
MODULES = {path.stem: ast.parse(path.read_text(encoding="utf-8")) for path in SERVER.glob("*.py")}


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _sibling(node: ast.ImportFrom) -> str | None:
    """Return the server module a relative import names (``from .x import``), else None."""
    if node.level == 1 and node.module:
        return node.module.split(".")[0]
    return None


def test_no_function_level_or_type_checking_imports_of_the_package() -> None:
    """No module of fal_realtime.server imports the package inside a function or TYPE_CHECKING."""
    hidden = []
    for name, tree in MODULES.items():
        for scope in ast.walk(tree):
            inner = isinstance(scope, ast.FunctionDef | ast.AsyncFunctionDef) or (
                isinstance(scope, ast.If) and _is_type_checking(scope)
            )
            if not inner:
                continue
            for node in ast.walk(scope):
                if isinstance(node, ast.ImportFrom) and node.level > 0:
                    hidden.append(f"{name}: from {'.' * node.level}{node.module}")
    assert hidden == []


def test_server_modules_import_each_other_without_a_cycle() -> None:
    """The graph of relative imports between server modules has a topological order."""
    graph = {
        name: {
            dep
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom)
            if (dep := _sibling(node)) is not None
        }
        for name, tree in MODULES.items()
    }
    order = list(graphlib.TopologicalSorter(graph).static_order())  # CycleError on a cycle
    assert order.index("common") < order.index("gateway")
    assert {"gateway", "demo"} & (graph["realtime_session"] | graph["http_bridge"]) == set()
    assert graph["tokens"] == set() and graph["common"] == set()


def test_the_token_signer_knows_no_http() -> None:
    """tokens.py imports neither aiohttp nor any other server module: a pure signer."""
    roots: set[str] = set()
    for node in ast.walk(MODULES["tokens"]):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            roots.add("." * node.level + (node.module or "").split(".")[0])
    assert "aiohttp" not in roots
    assert not any(root.startswith(".") for root in roots)
