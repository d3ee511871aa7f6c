"""The public surface: one sorted, complete, documented __all__ (issues 'for users', 18)."""

from __future__ import annotations

import ast
import builtins
import enum
import inspect
import re
import sys
import typing
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import fal_realtime

PACKAGE = Path(fal_realtime.__file__).parent
#: Classes whose instances the library makes (connect(), ws(), ...): their constructors'
#: parameters are its own business, not the user's.
LIBRARY_MADE = {"Connecting", "HttpWsConnection", "RealtimeConnection", "RealtimeStats", "Response"}
#: One entry of a docstring's ``Args:`` section: ``name:`` or ``name, other:``.
ARG_ENTRY = re.compile(r"^\s+(\*{0,2}\w+(?:, \*{0,2}\w+)*)(?: \(.*\))?:")


def _isort_key(name: str) -> tuple[int, str]:
    kind = 0 if name.isupper() else 1 if name[:1].isupper() else 2
    return kind, name


def _exported() -> Iterator[tuple[str, Any]]:
    for name in fal_realtime.__all__:
        yield name, getattr(fal_realtime, name)


def _public_members(cls: type) -> Iterator[tuple[str, Any]]:
    """Yield the public methods and properties of ``cls``, inherited ones included."""
    seen: set[str] = set()
    for klass in cls.__mro__:
        if klass is object or not klass.__module__.startswith("fal_realtime"):
            continue
        for attr, member in vars(klass).items():
            if attr in seen or attr.startswith("_"):
                continue
            seen.add(attr)
            if isinstance(member, staticmethod | classmethod):
                member = member.__func__
            if callable(member) or isinstance(member, property):
                yield attr, member


def _signatures() -> Iterator[tuple[str, Callable[..., Any]]]:
    """Yield every public callable of the package: functions, constructors, methods."""
    for name, value in _exported():
        if inspect.isfunction(value):
            yield name, value
        elif inspect.isclass(value):
            made_elsewhere = issubclass(value, enum.Enum) or getattr(value, "_is_protocol", False)
            if name not in LIBRARY_MADE and not made_elsewhere:
                yield f"{name}()", value.__init__
            for attr, member in _public_members(value):
                func = member.fget if isinstance(member, property) else member
                if inspect.isfunction(func):
                    yield f"{name}.{attr}", func


def _our_names() -> set[str]:
    """Return every name a module of the package defines at its top level (classes, aliases)."""
    names: set[str] = set()
    for path in PACKAGE.rglob("*.py"):
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if isinstance(node, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
                names.add(node.name)
            elif isinstance(node, ast.Assign | ast.AnnAssign):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                names.update(t.id for t in targets if isinstance(t, ast.Name))
    return names


def _annotation_types(func: Callable[..., Any]) -> Iterator[tuple[str, Any]]:
    """Yield (name, object) for each bare name the annotations of ``func`` use."""
    scope = {**vars(builtins), **sys.modules[func.__module__].__dict__}
    for annotation in func.__annotations__.values():
        if isinstance(annotation, str):  # postponed (from __future__ import annotations)
            for node in ast.walk(ast.parse(annotation, mode="eval")):
                if isinstance(node, ast.Name):  # aiohttp.X, ssl.Y are attributes: not ours
                    yield node.id, scope.get(node.id)
        else:  # evaluated: walk the type and its arguments
            todo = [annotation]
            while todo:
                value = todo.pop()
                todo += typing.get_args(value)
                if inspect.isclass(value):
                    yield value.__name__, value


def _args_entries(doc: str) -> set[str]:
    """Return the parameter names the ``Args:`` section of ``doc`` documents."""
    names: set[str] = set()
    lines = inspect.cleandoc(doc).splitlines()
    if "Args:" not in lines:
        return names
    for line in lines[lines.index("Args:") + 1 :]:
        if line and not line.startswith(" "):
            break  # the next section (Returns:, Raises:, ...)
        if match := ARG_ENTRY.match(line):
            names.update(n.lstrip("*") for n in match.group(1).split(", "))
    return names


def test_all_is_sorted_isort_style() -> None:
    """__all__ lists CONSTANTS, then Classes, then functions, each group alphabetically."""
    assert fal_realtime.__all__ == sorted(fal_realtime.__all__, key=_isort_key)


def test_all_is_complete_and_resolvable() -> None:
    """Every name in __all__ exists, and every public object in the package is listed."""
    for name in fal_realtime.__all__:
        assert hasattr(fal_realtime, name), name
    public = {
        name
        for name, value in vars(fal_realtime).items()
        if not name.startswith("_") and not inspect.ismodule(value)
    }
    assert public - set(fal_realtime.__all__) == set()


def test_every_public_name_and_method_is_documented() -> None:
    """Classes, functions and their public methods and properties carry a docstring."""
    missing = []
    for name, value in _exported():
        if not (inspect.isclass(value) or inspect.isfunction(value)):
            continue
        if not inspect.getdoc(value):
            missing.append(name)
        if inspect.isclass(value) and not issubclass(value, BaseException):
            missing += [f"{name}.{a}" for a, m in _public_members(value) if not inspect.getdoc(m)]
    assert missing == []


def test_every_name_in_a_public_signature_is_exported() -> None:
    """A type of this package in a public signature (a parameter, a return) is exported."""
    ours = _our_names()
    unexported = set()
    for where, func in _signatures():
        for name, value in _annotation_types(func):
            if name not in ours or value is None or inspect.ismodule(value):
                continue
            if isinstance(value, typing.TypeVar):
                continue
            if inspect.isclass(value) and not value.__module__.startswith("fal_realtime"):
                continue  # e.g. a stdlib class that shares a name with one of ours
            if getattr(fal_realtime, name, None) is not value:
                unexported.add(f"{name} (in {where})")
    assert sorted(unexported) == []


def test_every_parameter_of_every_public_callable_has_an_args_entry() -> None:
    """Each parameter of a public function, constructor or method is in its docstring's Args."""
    missing = []
    for where, func in _signatures():
        params = [p for p in inspect.signature(func).parameters if p not in ("self", "cls")]
        if not params:
            continue
        doc = func.__doc__ or ""
        if where.endswith("()"):  # a constructor: documented on its class or its __init__
            cls = getattr(fal_realtime, where[:-2])
            owner = next(k for k in cls.__mro__ if "__init__" in vars(k))
            doc = f"{inspect.getdoc(owner) or ''}\n{doc}"
        documented = _args_entries(doc)
        missing += [f"{where}: {p}" for p in params if p not in documented]
    assert missing == []


def test_args_parsing_sees_a_missing_entry() -> None:
    """The Args check is not vacuous: a docstring lacking a parameter's entry is caught."""
    doc = """Do a thing.

    Args:
        first: documented.
        second, third: documented together.

    Raises:
        ValueError: not a parameter.
    """
    assert _args_entries(doc) == {"first", "second", "third"}
