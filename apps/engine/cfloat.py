"""The C library's float results where Python's raise, for the pure-Python references whose compiled twins compute in
C (``apps/engine/_pyfloat.pxd`` is the other direction: CPython's float semantics for the C code).

The twins must give the same bits on every input, including the ones where ``math.exp`` raises ``OverflowError``,
``math.log`` raises ``ValueError`` or ``/`` raises ``ZeroDivisionError``, and C returns ±inf or NaN.
"""

from __future__ import annotations

import math

__all__ = ["c_div", "c_exp", "c_log"]


def c_exp(x: float) -> float:
    """e^x as the C library gives it: +inf past the largest double (``math.exp`` raises there)."""
    try:
        return math.exp(x)
    except OverflowError:
        return math.inf


def c_log(x: float) -> float:
    """ln x as the C library gives it: −inf at 0 and NaN below (``math.log`` raises there)."""
    if x > 0.0 or x != x:
        return math.log(x)
    return -math.inf if x == 0.0 else math.nan


def c_div(a: float, b: float) -> float:
    """a / b as IEEE division gives it: ±inf or NaN at b = 0 (Python raises there)."""
    if b != 0.0:
        return a / b
    if a != a or a == 0.0:
        return math.nan
    return math.copysign(math.inf, a) * math.copysign(1.0, b)
