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


cdef extern from *:
    """
    /* lower_bound inside a book's block of 64 levels (stride 2: a level is its key and one more 8-byte field), in six
       unrolled halving steps whatever the block's count: each step a compare and a conditional move of the pointer.
       The block's unused levels hold a key no x is above (the sentinel: +inf, or the largest tick), so the keys stay
       ascending over all 64 places. Only for a block that holds a key >= x, which the block search gives (block b
       is chosen because its last key is >= x): then the answer is below the count and these steps find it (for a NaN
       x, as lower_bound: 0, since every compare is false). */
    #define MM_LOWER_BOUND_64(T, NAME) \
    static inline Py_ssize_t NAME(const T* a, T x) { \
        const T* p = a; \
        p = (p[62] < x) ? p + 64 : p; \
        p = (p[30] < x) ? p + 32 : p; \
        p = (p[14] < x) ? p + 16 : p; \
        p = (p[6] < x) ? p + 8 : p; \
        p = (p[2] < x) ? p + 4 : p; \
        p = (p[0] < x) ? p + 2 : p; \
        return (Py_ssize_t)((p - a) >> 1); \
    }
    MM_LOWER_BOUND_64(double, mm_lower_bound_64_f64)
    MM_LOWER_BOUND_64(long long, mm_lower_bound_64_i64)
    """
    # first index i of the block's keys a[2i] that is >= x, for a block of 64 places with sentinels (above)
    Py_ssize_t lower_bound_64_f64 "mm_lower_bound_64_f64" (const double* a, double x) noexcept nogil
    Py_ssize_t lower_bound_64_i64 "mm_lower_bound_64_i64" (const long long* a, long long x) noexcept nogil
