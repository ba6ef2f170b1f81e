# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Compiled twin of :func:`apps.engine.quoting.quoter.py_depth_priced_half_spread`: the same loop over the depth
curve's cells, the same operations in the same order (``exp`` is the C library's, as ``math.exp``), so the same
doubles. The reference's docstring has the maths; the quoter calls this one when it is built
(:mod:`apps.engine.compiled`)."""

import cython
from libc.math cimport exp, floor, isfinite, INFINITY

import math


@cython.cdivision(True)
def depth_priced_half_spread(double delta_star, double kappa, curve, double toxicity, double fee_frac):
    """``(δ, C(δ))``, as :func:`apps.engine.quoting.quoter.py_depth_priced_half_spread`."""
    if not (kappa > 0 and isfinite(kappa) and isfinite(delta_star)):
        raise ValueError(f"depth_priced_half_spread: needs a finite δ* and κ > 0, got δ*={delta_star!r} κ={kappa!r}")
    cdef const double[::1] costs = curve.cost_array
    cdef double step = curve.step
    cdef double pooled = curve.pooled
    cdef double extra = toxicity * (pooled if pooled > 0.0 else 0.0) + fee_frac
    cdef double lo = delta_star
    cdef double inv_k = 1.0 / kappa
    cdef double base = delta_star - inv_k
    cdef Py_ssize_t last = costs.shape[0] - 1
    cdef Py_ssize_t k0 = <Py_ssize_t>floor(lo / step)
    if k0 < 0:
        k0 = 0
    if k0 > last:
        k0 = last
    cdef double best = math.nan, best_cost = math.nan, best_v = -INFINITY
    cdef double e, a, b, c0, slope, x, c, v
    cdef Py_ssize_t k
    for k in range(k0, last + 1):
        e = k * step
        a = e if e > lo else lo
        b = (k + 1) * step if k < last else INFINITY
        if b < a:
            continue
        c0 = costs[k] + extra
        slope = (costs[k + 1] - costs[k]) / step if k < last else 0.0
        if slope < 1.0:
            x = inv_k + (base + c0 - slope * e) / (1.0 - slope)
            if x < a:
                x = a
            if x > b:
                x = b
        else:
            x = a
        c = c0 + slope * (x - e)
        v = exp(-kappa * (x - lo)) * (x - base - c)
        if v >= best_v:
            best, best_cost, best_v = x, c, v
    return best, best_cost
