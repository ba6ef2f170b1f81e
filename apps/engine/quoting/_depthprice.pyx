# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Compiled twin of :func:`apps.engine.quoting.quoter.py_depth_priced_half_spread`: the same loop over the depth
curve's cells, the same operations in the same order (``exp`` is the C library's, as ``math.exp``), so the same
doubles. The reference's docstring has the maths; the quoter calls this one when it is built
(:mod:`apps.engine.compiled`). Cells that provably cannot win are skipped without their ``exp`` (bounds below, with
the last call's winning cell as the first bar: ``_seed_k``); the winner and its doubles are the loop's own."""

cimport cython
from libc.math cimport exp, fabs, floor, isfinite, INFINITY, NAN
from libc.stdlib cimport free, malloc
from cpython.object cimport PyObject

from apps.engine._slots cimport slot_offset


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
cdef double _amax = 0.0  # the largest |cost| (NaN skipped)
cdef Py_ssize_t _n = 0


cdef const double* _costs(object arr, Py_ssize_t* n) except NULL:
    global _arr, _view, _suffix, _amax, _n
    cdef Py_ssize_t k
    cdef double* suffix
    cdef double m, amax
    if arr is not _arr:
        src = arr
        if type(arr) is _NDARRAY and arr.dtype == _FLOAT64 and arr.ndim == 1 and not arr.flags.c_contiguous:
            src = _contiguous(arr)  # a strided view of float64 costs: the same doubles, packed
        _view = src  # raises for something that is not a float64 vector (another dtype, 2-D, no buffer)
        suffix = <double*> malloc((_view.shape[0] + 1) * sizeof(double))
        if suffix == NULL:
            raise MemoryError("depth_priced_half_spread: no memory for the curve's minima")
        m = INFINITY
        amax = 0.0
        suffix[_view.shape[0]] = INFINITY
        for k in range(_view.shape[0] - 1, -1, -1):
            if _view[k] <= m:  # the earlier of equal costs, as a forward ``<`` scan keeps it; NaN never taken
                m = _view[k]
            suffix[k] = m
            if fabs(_view[k]) > amax:  # NaN never taken
                amax = fabs(_view[k])
        free(_suffix)
        _suffix = suffix
        _amax = amax
        _n = _view.shape[0]
        _arr = arr
    n[0] = _n
    if _n == 0:  # the reference's loop would index costs[-1]: the generic path raises its error
        raise IndexError("depth_priced_half_spread: the curve has no cost")
    return &_view[0]


# A DepthCostCurve's cost array, step and pooled cost are read from its slots by offset (apps/engine/_slots.pxd), a few
# instructions where each attribute read costs ~140; the step and pooled cost of the last curve read are kept as
# doubles with the very objects they came from, so while a curve's fields are those objects (floats are immutable;
# the identity test also sees a field replaced with object.__setattr__) their conversions are skipped too.
cdef object _CurveType = None
cdef Py_ssize_t _OFF_COSTS = -1, _OFF_STEP = -1, _OFF_POOLED = -1
cdef bint _curve_slots = False
cdef object _step_obj = None, _pooled_obj = None  # held, so their addresses stay theirs
cdef double _step_c = 0.0, _pooled_c = 0.0


cdef void _bind_curve() except *:
    global _CurveType, _OFF_COSTS, _OFF_STEP, _OFF_POOLED, _curve_slots
    from apps.engine.estimators.depth_markout import DepthCostCurve

    _OFF_COSTS = slot_offset(DepthCostCurve, "cost_array")
    _OFF_STEP = slot_offset(DepthCostCurve, "step")
    _OFF_POOLED = slot_offset(DepthCostCurve, "pooled")
    _curve_slots = _OFF_COSTS >= 0 and _OFF_STEP >= 0 and _OFF_POOLED >= 0
    _CurveType = DepthCostCurve


cdef inline PyObject* _slot(object obj, Py_ssize_t offset) noexcept:
    return (<PyObject**>((<char*><PyObject*>obj) + offset))[0]


cdef const double* _curve_costs(object curve, double* step, double* pooled, Py_ssize_t* n) except NULL:
    """``curve``'s costs (as _costs), its step and its pooled cost (read in that order: cost_array, step, pooled)."""
    global _step_obj, _pooled_obj, _step_c, _pooled_c
    cdef PyObject* o_arr
    cdef PyObject* o_step
    cdef PyObject* o_pooled
    if _CurveType is None:
        _bind_curve()
    if _curve_slots and type(curve) is _CurveType:
        o_arr = _slot(curve, _OFF_COSTS)
        o_step = _slot(curve, _OFF_STEP)
        o_pooled = _slot(curve, _OFF_POOLED)
        if o_arr != NULL and o_arr == <PyObject*>_arr and o_step == <PyObject*>_step_obj and \
                o_pooled == <PyObject*>_pooled_obj:
            step[0] = _step_c
            pooled[0] = _pooled_c
            n[0] = _n
            if _n == 0:
                raise IndexError("depth_priced_half_spread: the curve has no cost")
            return &_view[0]
    arr = curve.cost_array
    o_step_ = curve.step
    step[0] = o_step_
    o_pooled_ = curve.pooled
    pooled[0] = o_pooled_
    cdef const double* costs = _costs(arr, n)
    _step_obj, _pooled_obj, _step_c, _pooled_c = o_step_, o_pooled_, step[0], pooled[0]
    return costs


cdef const double* curve_costs(object curve, double* step, Py_ssize_t* n) except NULL:
    cdef double pooled
    return _curve_costs(curve, step, &pooled, n)


@cython.cdivision(True)
def depth_priced_half_spread(double delta_star, double kappa, curve, double toxicity, double fee_frac):
    """``(δ, C(δ))``, as :func:`apps.engine.quoting.quoter.py_depth_priced_half_spread`."""
    cdef double delta, cost
    priced(delta_star, kappa, curve, toxicity, fee_frac, &delta, &cost)
    return delta, cost


# The last call's winning cell, where the next call looks first. Its J, computed as the loop computes it (_cell_j), is the
# J of one of the cells the loop scans, so the best J is at least that: any cell whose J is provably below it is not the
# winner (nor tied with it) and needs no exp, from the first cell on (the loop's own tests start only once its running
# best is positive). The winner and its doubles are the loop's own, found in the same order with the same ties.
cdef Py_ssize_t _seed_k = -1


cdef inline bint _cell_point(
    Py_ssize_t k, Py_ssize_t last, const double* costs, double step, double extra, double base, double inv_k, double e,
    double a, double* x_out, double* c_out,
) noexcept:
    """Cell ``k``'s stationary point, clamped to the cell [a, b], in ``x_out`` and its cost C(x) in ``c_out``, as the
    loop computes them (``e`` = k·step, ``a`` its start from δ*); False where the loop skips the cell (past its end)."""
    cdef double b = (k + 1) * step if k < last else INFINITY
    cdef double c0, slope, x
    if b < a:
        return False
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
    x_out[0] = x
    c_out[0] = c0 + slope * (x - e)
    return True


cdef inline double _cell_j(
    Py_ssize_t k, Py_ssize_t last, const double* costs, double step, double extra, double lo, double base, double inv_k,
    double kappa,
) noexcept:
    """J of cell ``k`` as the loop computes it (``-inf`` where the loop skips the cell: past its end)."""
    cdef double e = k * step
    cdef double a = e if e > lo else lo
    cdef double x, c
    if not _cell_point(k, last, costs, step, extra, base, inv_k, e, a, &x, &c):
        return -INFINITY
    return exp(-kappa * (x - lo)) * (x - base - c)


@cython.cdivision(True)
cdef int priced(
    double delta_star, double kappa, object curve, double toxicity, double fee_frac, double* out_delta,
    double* out_cost,
) except -1:
    if not (kappa > 0 and isfinite(kappa) and isfinite(delta_star)):
        raise ValueError(f"depth_priced_half_spread: needs a finite δ* and κ > 0, got δ*={delta_star!r} κ={kappa!r}")
    cdef double step, pooled
    cdef Py_ssize_t n_costs
    cdef const double* costs = _curve_costs(curve, &step, &pooled, &n_costs)
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
    cdef double e, a, x, c, v, h, t, y, h_max, c_min = INFINITY, x_max, py, cm, bp, g
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
    # the bar the tests below compare with: the larger of the running best and the seed cell's J (a lower bound of
    # the best J; NaN or not positive: no seed)
    global _seed_k
    cdef double bar = -INFINITY
    if k0 <= _seed_k <= last:
        bar = _cell_j(_seed_k, last, costs, step, extra, lo, base, inv_k, kappa)
        if not (bar > 0.0):
            bar = -INFINITY
    cdef Py_ssize_t best_k = -1
    for k in range(k0, last + 1):
        e = k * step
        a = e if e > lo else lo
        if bar > 0.0:
            # every later cell has x ≥ a, so e^t ≤ e^{−y} ≤ 1/P(y) with y = κ(a − δ*) and P the exponential's Taylor
            # polynomial to degree 4: once h_max/P(y) (with a 1e-6 margin) is below the best, no later cell wins
            y = kappa * (a - lo)
            py = 1.0 + y * (1.0 + y * (0.5 + y * (1.0 / 6.0 + y * (1.0 / 24.0))))
            if h_max * 1.000001 < bar * py:
                break
            # The same with this cell's own bound: on every cell from k on (x ≥ a ≥ 0) the computed h is at most
            # g(x) = (1 + 1e-9)·x − B′, B′ = base + C_m − 1e-9·S, where C_m = the smallest of costs[k:] plus the
            # added cost, and S sums the magnitudes the computed h and C(x) are made of (|base|, the added cost, C_m,
            # the largest |cost|): 1e-9 of them is far beyond their few ulps of rounding. e^{−κ(x−δ*)}·g(x)
            # falls for x past its peak x* = (B′ + (1 + 1e-9)/κ)/(1 + 1e-9), so from a ≥ x* on every later J is at
            # most e^{−y}·g(a) ≤ g(a)/P(y), tested with the 1e-6 margin above. A NaN or infinite cost makes B′ NaN or
            # −∞: no break.
            if a >= 0.0:
                cm = _suffix[k] + extra
                bp = base + cm - 1e-9 * (fabs(base) + fabs(extra) + fabs(cm) + _amax)
                if a >= (bp + (1.0 + 1e-9) * inv_k) / (1.0 + 1e-9):
                    g = (1.0 + 1e-9) * a - bp
                    if g * 1.000001 < bar * py:
                        break
        if not _cell_point(k, last, costs, step, extra, base, inv_k, e, a, &x, &c):
            continue
        h = x - base - c
        t = -kappa * (x - lo)
        if bar > 0.0:
            # A cell that cannot win needs no exp: with h ≤ 0 its J is ≤ 0; else J = e^t·h ≤ h / P(−t), P the
            # exponential's Taylor polynomial to degree 4 (≤ e^y for y = −t ≥ 0), with a 1e-6 margin far beyond the
            # few ulps of exp's and this bound's rounding. Skipped only when the bound is below the best: the same
            # winner, the same doubles (a NaN fails both tests and is computed).
            if h <= 0.0:
                continue
            y = -t
            if h * 1.000001 < bar * (1.0 + y * (1.0 + y * (0.5 + y * (1.0 / 6.0 + y * (1.0 / 24.0))))):
                continue
        v = exp(t) * h
        if v >= best_v:
            best, best_cost, best_v = x, c, v
            best_k = k
            if v > bar:
                bar = v
    _seed_k = best_k
    out_delta[0] = best
    out_cost[0] = best_cost
    return 0
