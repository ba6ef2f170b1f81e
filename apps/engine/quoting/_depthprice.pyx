# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Compiled twin of :func:`apps.engine.quoting.quoter.py_depth_priced_half_spread`: the same loop over the depth
curve's cells, the same operations in the same order (``exp`` is the C library's, as ``math.exp``), so the same
doubles. The reference's docstring has the maths; the quoter calls this one when it is built
(:mod:`apps.engine.compiled`)."""

cimport cython
from libc.math cimport exp, fabs, floor, isfinite, INFINITY, NAN
from libc.stdlib cimport free, malloc


import numpy as _np


# The last curve read (a decision reads the curve the refresh step last built, so it changes once per refresh): its
# cost array (held, so its buffer stays valid; a curve's own read-only copy: DepthCostCurve.__post_init__; a strided
# float64 view is read through a packed copy of it), the buffer view's pointer and length, and the suffix minima of
# the costs (``_suffix[k]`` = the first smallest of ``costs[k:]``, the value the reference's forward scan from ``k``
# keeps: ties and NaN as its ``<``).
cdef object _NDARRAY = _np.ndarray
cdef object _FLOAT64 = _np.dtype(_np.float64)
cdef object _contiguous = _np.ascontiguousarray
cdef object _arr = None
cdef const double[::1] _view
cdef double* _suffix = NULL
cdef Py_ssize_t _n = 0


cdef const double* _costs(object arr, Py_ssize_t* n) except NULL:
    global _arr, _view, _suffix, _n
    cdef Py_ssize_t k
    cdef double* suffix
    cdef double m
    if arr is not _arr:
        src = arr
        if type(arr) is _NDARRAY and arr.dtype == _FLOAT64 and arr.ndim == 1 and not arr.flags.c_contiguous:
            src = _contiguous(arr)  # a strided view of float64 costs: the same doubles, packed
        _view = src  # raises for something that is not a float64 vector (another dtype, 2-D, no buffer)
        suffix = <double*> malloc((_view.shape[0] + 1) * sizeof(double))
        if suffix == NULL:
            raise MemoryError("depth_priced_half_spread: no memory for the curve's minima")
        m = INFINITY
        suffix[_view.shape[0]] = INFINITY
        for k in range(_view.shape[0] - 1, -1, -1):
            if _view[k] <= m:  # the earlier of equal costs, as a forward ``<`` scan keeps it; NaN never taken
                m = _view[k]
            suffix[k] = m
        free(_suffix)
        _suffix = suffix
        _n = _view.shape[0]
        _arr = arr
    n[0] = _n
    if _n == 0:  # the reference's loop would index costs[-1]: the generic path raises its error
        raise IndexError("depth_priced_half_spread: the curve has no cost")
    return &_view[0]


cdef const double* curve_costs(object curve, Py_ssize_t* n) except NULL:
    return _costs(curve.cost_array, n)


@cython.cdivision(True)
def depth_priced_half_spread(double delta_star, double kappa, curve, double toxicity, double fee_frac):
    """``(δ, C(δ))``, as :func:`apps.engine.quoting.quoter.py_depth_priced_half_spread`."""
    cdef double delta, cost
    priced(delta_star, kappa, curve, toxicity, fee_frac, &delta, &cost)
    return delta, cost


@cython.cdivision(True)
cdef int priced(
    double delta_star, double kappa, object curve, double toxicity, double fee_frac, double* out_delta,
    double* out_cost,
) except -1:
    if not (kappa > 0 and isfinite(kappa) and isfinite(delta_star)):
        raise ValueError(f"depth_priced_half_spread: needs a finite δ* and κ > 0, got δ*={delta_star!r} κ={kappa!r}")
    arr = curve.cost_array
    cdef double step = curve.step
    cdef double pooled = curve.pooled
    cdef Py_ssize_t n_costs
    cdef const double* costs = _costs(arr, &n_costs)
    cdef double extra = toxicity * (pooled if pooled > 0.0 else 0.0) + fee_frac
    cdef double lo = delta_star
    cdef double inv_k = 1.0 / kappa
    cdef double base = delta_star - inv_k
    cdef Py_ssize_t last = n_costs - 1
    cdef Py_ssize_t k0 = <Py_ssize_t>floor(lo / step)
    if k0 < 0:
        k0 = 0
    if k0 > last:
        k0 = last
    cdef double best = NAN, best_cost = NAN, best_v = -INFINITY  # math.nan's bits, without its module lookup
    cdef double e, a, b, c0, slope, x, c, v, h, t, y, h_max, c_min = INFINITY, x_max
    cdef Py_ssize_t k
    # h = x − base − C(x) on any cell from k0 on is at most h_max: x is at most the last grid depth, or the last
    # cell's stationary point (or δ*), and C(x) at least the smallest cost plus the added cost; the slack covers the
    # rounding of each h (a few ulps of these ~1e-4 magnitudes), far below it
    c_min = _suffix[k0]  # the smallest of costs[k0:] (the first of equals; NaN skipped)
    x_max = last * step
    x = inv_k + (base + (costs[last] + extra))
    if x > x_max:
        x_max = x
    if lo > x_max:
        x_max = lo
    h_max = x_max - base - (c_min + extra)
    h_max += 1e-9 * (fabs(x_max) + fabs(base) + fabs(c_min) + fabs(extra))
    for k in range(k0, last + 1):
        e = k * step
        a = e if e > lo else lo
        if best_v > 0.0:
            # every later cell has x ≥ a, so e^t ≤ e^{−y} ≤ 1/P(y) with y = κ(a − δ*) and P the exponential's Taylor
            # polynomial to degree 4: once h_max/P(y) (with a 1e-6 margin) is below the best, no later cell wins
            y = kappa * (a - lo)
            if h_max * 1.000001 < best_v * (1.0 + y * (1.0 + y * (0.5 + y * (1.0 / 6.0 + y * (1.0 / 24.0))))):
                break
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
        h = x - base - c
        t = -kappa * (x - lo)
        if best_v > 0.0:
            # A cell that cannot win needs no exp: with h ≤ 0 its J is ≤ 0; else J = e^t·h ≤ h / P(−t), P the
            # exponential's Taylor polynomial to degree 4 (≤ e^y for y = −t ≥ 0), with a 1e-6 margin far beyond the
            # few ulps of exp's and this bound's rounding. Skipped only when the bound is below the best: the same
            # winner, the same doubles (a NaN fails both tests and is computed).
            if h <= 0.0:
                continue
            y = -t
            if h * 1.000001 < best_v * (1.0 + y * (1.0 + y * (0.5 + y * (1.0 / 6.0 + y * (1.0 / 24.0))))):
                continue
        v = exp(t) * h
        if v >= best_v:
            best, best_cost, best_v = x, c, v
    out_delta[0] = best
    out_cost[0] = best_cost
    return 0
