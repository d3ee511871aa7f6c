"""RT-API-6: users' callbacks type-check against connect()'s protocols (mypy --strict)."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_rt_api_6_users_callbacks_type_check_and_wrong_ones_are_refused() -> None:
    """RT-API-6: tests/typing_check.py passes mypy --strict (its refused lines need ignores)."""
    api = pytest.importorskip("mypy.api", reason="mypy is a dev dependency")
    out, err, status = api.run(
        [
            "--strict",
            "--config-file",
            str(ROOT / "pyproject.toml"),
            str(ROOT / "tests/typing_check.py"),
        ]
    )
    assert status == 0, out + err
