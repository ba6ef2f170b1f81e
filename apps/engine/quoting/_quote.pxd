# cython: language_level=3
# What other compiled modules see of apps/engine/quoting/_quote.pyx: InputPairs, the container the compiled core
# (apps/engine/_core.pyx) hands the quoter its extra decision inputs in, in place of the reference's dict; and the
# quoter's entry at C level (c_quote: ``quote`` without the Python call and its keyword arguments).

from cpython.object cimport PyObject
from cpython.ref cimport Py_INCREF


cdef enum:
    PAIRS_INLINE = 64  # pairs held in the object itself; more go to the heap


cdef class InputPairs:
    cdef Py_ssize_t n, cap
    cdef PyObject** k_arr  # owned references, in insertion order (inline_keys until more than PAIRS_INLINE)
    cdef PyObject** v_arr  # owned references
    cdef PyObject* inline_keys[PAIRS_INLINE]
    cdef PyObject* inline_vals[PAIRS_INLINE]

    cdef int put(self, object key, object value) except -1
    cdef int clear(self) except -1  # no pairs again (each reference dropped), the buffers kept for reuse


cdef inline int pairs_put(InputPairs pairs, object key, object value) except -1:
    """``pairs.put(key, value)``, its common case (room left) inline: two new references stored."""
    if pairs.n < pairs.cap:
        Py_INCREF(key)
        Py_INCREF(value)
        pairs.k_arr[pairs.n] = <PyObject*>key
        pairs.v_arr[pairs.n] = <PyObject*>value
        pairs.n += 1
        return 0
    return pairs.put(key, value)


# round(x, 12) exactly as CPython (the builtin for what it does not compute in C)
cpdef double round12(double x) except? -1.0

# quote(params, risk, market, q, tick_size=tick_size, lot_size=lot_size), called at C level
cdef object c_quote(object params, object risk, object market, object q, object tick_size, object lot_size)
