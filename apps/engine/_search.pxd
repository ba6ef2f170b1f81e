# cython: language_level=3
"""The branchless lower bound both compiled books search with (the L2 book's double keys, the fill model's ticks)."""

ctypedef fused search_key:
    double
    long long


cdef inline Py_ssize_t lower_bound(const search_key* a, Py_ssize_t stride, Py_ssize_t n, search_key x) noexcept nogil:
    # First index i whose key a[i·stride] is >= x (``bisect.bisect_left``) without a data-dependent branch: the range
    # halves each step whatever the keys, and the step is a conditional move, so a search never mispredicts (a diff's
    # level lands anywhere within its block; a branchy search paid ~15 cycles per wrong guess). NaN compares false, as
    # in bisect. stride 1: a side's block tails; 2: a block's levels' keys (each level is its key and then one more
    # 8-byte field: the importing module checks its struct's layout at import).
    cdef Py_ssize_t lo = 0, half
    if n == 0:
        return 0
    while n > 1:
        half = n >> 1
        lo = lo + half if a[(lo + half) * stride] < x else lo
        n -= half
    return lo + (a[lo * stride] < x)
