# cython: language_level=3
# What other compiled modules see of apps/engine/quoting/_quote.pyx: InputPairs, the container the compiled core
# (apps/engine/_core.pyx) hands the quoter its extra decision inputs in, in place of the reference's dict.

from cpython.object cimport PyObject


cdef enum:
    PAIRS_INLINE = 64  # pairs held in the object itself; more go to the heap


cdef class InputPairs:
    cdef Py_ssize_t n, cap
    cdef PyObject** k_arr  # owned references, in insertion order (inline_keys until more than PAIRS_INLINE)
    cdef PyObject** v_arr  # owned references
    cdef PyObject* inline_keys[PAIRS_INLINE]
    cdef PyObject* inline_vals[PAIRS_INLINE]

    cdef int put(self, object key, object value) except -1
