"""The public surface: one sorted, complete, documented __all__ (issue 'for users')."""

from __future__ import annotations

import inspect

import fal_realtime


def _isort_key(name: str) -> tuple[int, str]:
    kind = 0 if name.isupper() else 1 if name[:1].isupper() else 2
    return kind, name


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
    """Classes, functions and their public methods carry a docstring; parameters have Args."""
    missing = []
    for name in fal_realtime.__all__:
        value = getattr(fal_realtime, name)
        if not (inspect.isclass(value) or inspect.isfunction(value)):
            continue
        if not inspect.getdoc(value):
            missing.append(name)
        if inspect.isfunction(value):
            params = [p for p in inspect.signature(value).parameters if p != "self"]
            if params and "Args:" not in (value.__doc__ or ""):
                missing.append(f"{name} (no Args:)")
        if inspect.isclass(value) and not issubclass(value, BaseException):
            for attr, member in vars(value).items():
                is_api = callable(member) or isinstance(member, property)
                if attr.startswith("_") or not is_api:
                    continue
                if not inspect.getdoc(member):
                    missing.append(f"{name}.{attr}")
    assert missing == []
