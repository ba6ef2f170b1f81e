# cython: language_level=3
"""Reading a ``__slots__`` field of a known class by its offset, for the compiled per-event paths.

A frozen, slotted dataclass (the market events, ``EstimatorSnapshot``) keeps each field in a slot that CPython reads
through a member descriptor: ``obj.field`` from C costs a type lookup and a descriptor call (~140 instructions). The
descriptor holds the field's byte offset in the instance; :func:`slot_offset` finds it once (at import) and
:func:`slot_get` then reads the field in a few instructions. It returns the very object ``getattr`` returns, and an
unset slot raises AttributeError as ``getattr`` does. Callers use it only for an object whose type is exactly the class
the offset was taken from, and fall back to ``getattr`` when :func:`slot_offset` found no plain object slot (-1: the
field became a property, or the class is no longer slotted)."""

from cpython.long cimport PyLong_CheckExact
from cpython.number cimport PyIndex_Check
from cpython.object cimport PyObject, PyTypeObject
from cpython.ref cimport Py_INCREF, Py_XDECREF
from cpython.tuple cimport PyTuple_GET_ITEM, PyTuple_GET_SIZE
from libc.stdint cimport int64_t


cdef extern from *:
    """
    /* CPython's private _PyDict_NewPresized (what its own BUILD_MAP uses) up to 3.12; a plain PyDict_New from
       3.13 on, whose headers may not declare it (the project runs 3.11): the same dict either way, only the
       resizes on the way differ */
    #if PY_VERSION_HEX < 0x030D0000
    #define mm_dict_presized(n) _PyDict_NewPresized(n)
    #else
    #define mm_dict_presized(n) PyDict_New()
    #endif
    """
    # a dict with room for ``minused`` entries up front: the same dict (keys, order, values) as {} filled in the
    # same order, without the resizes on the way (shared by the compiled modules that build dicts per event)
    dict dict_presized "mm_dict_presized" (Py_ssize_t minused)


cdef extern from *:
    """
    /* An exact int's value as int64 when it fits, read from CPython 3.11's 30-bit digits in place. A time in ns is
       three digits, past the two that Cython's own conversion reads in place (it calls PyLong_AsLong for three);
       0 when the value does not fit in three digits below 2**63, or on another CPython's layout (the caller then
       converts the usual way, with its errors). */
    #if PY_VERSION_HEX >= 0x030B0000 && PY_VERSION_HEX < 0x030C0000 && PyLong_SHIFT == 30 && !defined(Py_LIMITED_API)
    static inline int mm_fast_i64(PyObject* v, int64_t* out) {
        Py_ssize_t size = Py_SIZE(v);
        const digit* d = ((PyLongObject*)v)->ob_digit;
        uint64_t m;
        switch (size < 0 ? -size : size) {
            case 0: *out = 0; return 1;
            case 1: m = (uint64_t)d[0]; break;
            case 2: m = (uint64_t)d[0] | ((uint64_t)d[1] << 30); break;
            case 3:
                if (d[2] >= 8) return 0;
                m = (uint64_t)d[0] | ((uint64_t)d[1] << 30) | ((uint64_t)d[2] << 60);
                break;
            default: return 0;
        }
        *out = size < 0 ? -(int64_t)m : (int64_t)m;
        return 1;
    }
    #else
    static inline int mm_fast_i64(PyObject* v, int64_t* out) { (void)v; (void)out; return 0; }
    #endif
    """
    # only for an exact int (PyLong_CheckExact): True with its value in ``out`` when read in place
    bint fast_i64 "mm_fast_i64" (object v, int64_t* out) noexcept


cdef inline object item(object seq, Py_ssize_t i):
    """``seq[i]`` (``i >= 0``): an exact tuple's item read in place, anything else indexed."""
    if type(seq) is tuple and i < PyTuple_GET_SIZE(seq):
        return <object>PyTuple_GET_ITEM(seq, i)
    return seq[i]


cdef inline int64_t to_i64(object v) except? -1:
    """``<int64_t>v``, Cython's conversion with its errors, an exact int's value read in place when it fits."""
    cdef int64_t x
    if PyLong_CheckExact(v) and fast_i64(v, &x):
        return x
    return v


cdef extern from "Python.h":
    PyTypeObject PyBaseObject_Type


cdef extern from "structmember.h":
    ctypedef struct PyMemberDef:
        int type
        Py_ssize_t offset
    enum:
        T_OBJECT_EX


cdef extern from "Python.h":
    ctypedef struct PyMemberDescrObject:
        PyMemberDef* d_member


cdef inline Py_ssize_t slot_offset(object cls, str name) except -2:
    """The byte offset of ``cls``'s slot ``name`` (a plain object slot, found along its MRO), else -1."""
    import types

    for klass in cls.__mro__:
        d = klass.__dict__.get(name)
        if d is None:
            continue
        if type(d) is types.MemberDescriptorType and (<PyMemberDescrObject*>d).d_member.type == T_OBJECT_EX:
            return (<PyMemberDescrObject*>d).d_member.offset
        return -1
    return -1


cdef inline bint slot_offsets(object cls, tuple names, Py_ssize_t* out) except -1:
    """``cls``'s slot offsets of ``names``, in order, into ``out`` (room for ``len(names)``): True when every one is a
    plain object slot, else False (and ``out`` is not to be used: set the fields by name)."""
    cdef Py_ssize_t i
    for i in range(len(names)):
        out[i] = slot_offset(cls, names[i])
        if out[i] < 0:
            return False
    return True


cdef inline object slot_get(object obj, Py_ssize_t offset):
    """``obj``'s slot at ``offset`` (from :func:`slot_offset` of ``type(obj)``): the object itself, or AttributeError."""
    cdef PyObject* v = (<PyObject**>((<char*><PyObject*>obj) + offset))[0]
    if v == NULL:
        raise AttributeError(f"{type(obj).__name__!r} object has an unset slot (offset {offset})")
    return <object>v


cdef inline void slot_set(object obj, Py_ssize_t offset, object value) noexcept:
    """Store ``value`` in ``obj``'s slot at ``offset``, as ``object.__setattr__`` stores a plain object slot (the new
    value referenced, the old one released)."""
    cdef PyObject** p = <PyObject**>((<char*><PyObject*>obj) + offset)
    cdef PyObject* old = p[0]
    Py_INCREF(value)
    p[0] = <PyObject*>value
    Py_XDECREF(old)


cdef inline object new_slotted(object cls, tuple values, Py_ssize_t* offsets):
    """An instance of ``cls`` as its generated dataclass ``__init__`` builds it (one ``object.__setattr__`` per field,
    in field order), without the Python-level call: ``object.__new__(cls)``, uncalled, then ``values[k]`` stored in
    the slot at ``offsets[k]`` (from :func:`slot_offsets` of all its fields, in order). Only for a class whose fields
    are all plain slots and which has no ``__post_init__`` the caller skips on purpose."""
    cdef tuple no_args = ()
    cdef object obj = PyBaseObject_Type.tp_new(cls, <PyObject*>no_args, NULL)
    cdef Py_ssize_t k
    for k in range(len(values)):
        slot_set(obj, offsets[k], values[k])
    return obj


cdef inline object field(object obj, object cls, Py_ssize_t offset, str name):
    """``getattr(obj, name)``: by slot offset when ``obj`` is exactly ``cls`` and the offset is known (>= 0)."""
    if offset >= 0 and type(obj) is cls:
        return slot_get(obj, offset)
    return getattr(obj, name)


cdef inline int64_t strict_int64(object value, str owner, str name, str unit) except? -1:
    """An integer field's value as int64, for the C fields behind the engine's integer properties (times in ns, counts):
    an int (or anything with ``__index__`` but a bool), else TypeError naming ``owner.name`` and ``unit``; past int64,
    OverflowError. (Cython's own conversion would truncate a float; the events refuse one, apps/engine/market/events.py.)"""
    cdef int64_t x
    if PyLong_CheckExact(value):
        if fast_i64(value, &x):
            return x
    elif not PyIndex_Check(value) or isinstance(value, bool):
        raise TypeError(f"{owner}.{name} takes an integer{unit}, got {value!r}")
    return value
