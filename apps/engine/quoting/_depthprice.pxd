# cython: language_level=3
# What the compiled quoter (_quote.pyx) calls of the depth-priced half-spread at C level: the same function as the
# module's Python-visible depth_priced_half_spread, without a Python call and without a buffer view of the curve's
# costs per decision (the last curve's costs pointer and suffix minima are kept: _depthprice.pyx).

cdef int priced(
    double delta_star, double kappa, object curve, double toxicity, double fee_frac, double* out_delta,
    double* out_cost,
) except -1

# the curve's costs as a C array (its cost_array, float64, read-only; the last one's view kept), length in n, and its
# step in step (a DepthCostCurve's kept with it). The pointer is valid until the next call (another curve replaces the
# kept view): use it before anything runs Python.
cdef const double* curve_costs(object curve, double* step, Py_ssize_t* n) except NULL
