"""Checks for parameter objects' ``validate()`` and for pure functions' arguments: one wording, one place.

Each helper returns the value it checked (as ``float``/``int``/``bool``) and raises :class:`ValueError` naming
*what* (``name``) and *where* (``where``, the owner, e.g. ``"KappaParams"``; empty for a bare argument)::

    >>> positive("window_s", 0, "KappaParams")
    Traceback (most recent call last):
    ...
    ValueError: KappaParams.window_s must be > 0, got 0
    >>> finite("mid", float("nan"))
    Traceback (most recent call last):
    ...
    ValueError: mid must be a finite number, got nan

A number is an ``int`` or ``float`` (numpy scalars included), never a ``bool``. Pure: no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

__all__ = [
    "boolean",
    "finite",
    "fraction",
    "integer",
    "is_finite_number",
    "non_negative",
    "one_of",
    "positive",
    "qualified",
]


def qualified(name: str, where: str = "") -> str:
    """``where.name``, or ``name`` alone."""
    return f"{where}.{name}" if where else name


def is_finite_number(value: object) -> bool:
    """A finite real number; ``True``/``False`` are not numbers here."""
    return not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)


def finite(name: str, value: Any, where: str = "") -> float:
    if not is_finite_number(value):
        raise ValueError(f"{qualified(name, where)} must be a finite number, got {value!r}")
    return float(value)


def positive(name: str, value: Any, where: str = "") -> float:
    v = finite(name, value, where)
    if v <= 0.0:
        raise ValueError(f"{qualified(name, where)} must be > 0, got {value!r}")
    return v


def non_negative(name: str, value: Any, where: str = "") -> float:
    v = finite(name, value, where)
    if v < 0.0:
        raise ValueError(f"{qualified(name, where)} must be >= 0, got {value!r}")
    return v


def fraction(name: str, value: Any, where: str = "", *, open_low: bool = False, closed_high: bool = True) -> float:
    """A number in [0, 1] by default; ``open_low`` excludes 0, ``closed_high=False`` excludes 1."""
    ok = (
        is_finite_number(value)
        and (value > 0 if open_low else value >= 0)
        and (value <= 1 if closed_high else value < 1)
    )
    if not ok:
        low, high = "(0" if open_low else "[0", "1]" if closed_high else "1)"
        raise ValueError(f"{qualified(name, where)} must be in {low}, {high}, got {value!r}")
    return float(value)


def integer(name: str, value: Any, where: str = "", *, minimum: int = 0) -> int:
    """A whole number ``>= minimum``; an integral float (``2.0``, as JSON may give) is accepted."""
    if not is_finite_number(value) or int(value) != value or value < minimum:
        raise ValueError(f"{qualified(name, where)} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def boolean(name: str, value: Any, where: str = "") -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{qualified(name, where)} must be true or false, got {value!r}")
    return value


def one_of(name: str, value: Any, choices: Iterable[Any], where: str = "") -> Any:
    options = tuple(choices)
    if value not in options:
        raise ValueError(f"{qualified(name, where)} must be one of {options}, got {value!r}")
    return value
