"""Checks of the API's numeric options: a one-line ``ValueError`` at the call (a leaf)."""

from __future__ import annotations

import math

__all__ = ["check_count", "check_seconds"]


def check_seconds(name: str, value: object, *, zero_ok: bool, none_ok: bool = False) -> None:
    """Refuse ``value`` unless it is a finite number of seconds, > 0 (or >= 0 when ``zero_ok``).

    ``nan`` and ``inf`` are refused: a wait of ``nan`` compares false with everything
    and one of ``inf`` never ends.
    """
    if value is None and none_ok:
        return
    bound = ">= 0" if zero_ok else "> 0"
    tail = " (or None)" if none_ok else ""
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value < 0
        or (value == 0 and not zero_ok)
    ):
        raise ValueError(f"{name} must be a finite number of seconds {bound}{tail}, got {value!r}")


def check_count(name: str, value: object, *, minimum: int) -> None:
    """Refuse ``value`` unless it is an int >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be >= {minimum} (an integer), got {value!r}")
