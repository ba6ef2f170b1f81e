# cython: language_level=3
"""Python's float arithmetic where C's differs, for the compiled modules that must return CPython's doubles."""

from libc.math cimport expm1, fabs, isfinite, isinf, isnan, pow


cdef inline double pypow(double base, double power) except? -1.0:
    # CPython 3.11's float ** (float_pow) for a base that is not negative: its special cases first, so a NaN keeps
    # its sign and payload as there, then C's pow, raising where Python raises.
    cdef double x
    if power == 0.0:
        return 1.0
    if isnan(base):
        return base
    if isnan(power):
        return 1.0 if base == 1.0 else power
    if isinf(power):
        if base == 1.0:
            return 1.0
        return fabs(power) if (power > 0.0) == (base > 1.0) else 0.0
    if isinf(base):
        return base if power > 0.0 else 0.0
    if base == 0.0:
        if power < 0.0:
            raise ZeroDivisionError("0.0 cannot be raised to a negative power")
        return 0.0
    if base == 1.0:
        return 1.0
    x = pow(base, power)
    if isinf(x):
        raise OverflowError(34, "Numerical result out of range")
    return x


cdef inline double pymax(double a, double b) noexcept nogil:
    # Python's max(a, b) of two floats: a unless b is strictly greater (NaN and ±0 as Python)
    return b if b > a else a


cdef inline double pymin(double a, double b) noexcept nogil:
    # Python's min(a, b) of two floats: a unless b is strictly smaller
    return b if b < a else a


cdef inline double m_expm1(double x) except? -1.0:
    # math.expm1: libm's expm1, OverflowError on a finite argument that overflows
    cdef double r = expm1(x)
    if isinf(r) and isfinite(x):
        raise OverflowError("math range error")
    return r
