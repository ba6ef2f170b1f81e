# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Compiled per-event state of the market estimators: the same API and the same results as the references.

The references are the pure-Python classes beside this module (``PyAdverseSelectionEstimator`` in
:mod:`apps.engine.estimators.adverse`, ``PySigmaEstimator`` in :mod:`~apps.engine.estimators.sigma`,
``PyMicropriceRegression`` in :mod:`~apps.engine.estimators.microprice`, ``PyFlowImbalance`` and
``PyTradeArrivalRate`` in :mod:`~apps.engine.estimators.flow`, ``PyHawkesIntensity`` in
:mod:`~apps.engine.estimators.hawkes`, ``PyDepthMarkoutCurve`` in :mod:`~apps.engine.estimators.depth_markout`);
each of those modules exports the compiled class under the public name unless ``MM_PURE_PYTHON=1`` is set or this
module did not build (docs/compiled-core.md).

What is compiled: the per-event updates (``on_book``/``on_public_trade``/``on_own_fill``, ``update_trusted``,
``observe_trusted``, ``update``) and their state, held in C doubles and int64s and in ring buffers of C records
instead of deques of tuples. What is not: the cold reads and the rare steps (snapshots, σ's bucket statistics,
the checked entry points, the Hawkes delta-method error). Those run the reference's own function on this
object (``PySigmaEstimator.snapshot(self, now)``), which reads the state through the properties below, so they
are the reference's code by construction, not a copy of it.

Floats: every update does the reference's operations in the reference's order on the same doubles (C ``+ - * /``
are IEEE like CPython's; ``exp``/``log`` are the same libm calls CPython's ``math`` makes; ``x ** y`` follows
CPython's ``float_pow``; an int64 time difference is divided by 1e9 in C only while it is exact as a double,
as CPython's int true division does, else in Python). The adverse estimator's window sums are kept exactly and
incrementally (Shewchuk partials: add on append, subtract on eviction), so a snapshot reads in O(1) the very
double ``math.fsum`` returns over the whole window.

Scipy in C: κ's Gamma posterior takes its quantiles from the C function scipy exports for Cython callers
(``scipy.special.cython_special``'s ``gammaincinv`` capsule, found at run time, never at build time), the kernel
the ufunc runs; where that is missing or declines an input, ``kappa.gamma_posterior`` runs (see ``_gamma_post``).
"""

cimport cython

from apps.engine._pyfloat cimport m_expm1 as _expm1, pymax as _pymax, pymin as _pymin, pypow as _pypow
from apps.engine._slots cimport (
    dict_presized, field, item, new_slotted, slot_get, slot_offset, slot_offsets, slot_set, strict_int64, to_i64
)
from cpython.number cimport PyNumber_Power
from cpython.bytes cimport PyBytes_FromStringAndSize
from cpython.dict cimport PyDict_Update
from cpython.long cimport PyLong_AsLongLongAndOverflow
from cpython.object cimport Py_SIZE, PyObject, PyObject_GenericSetAttr, PyTypeObject
from cpython.sequence cimport PySequence_GetItem
from cpython.pycapsule cimport PyCapsule_CheckExact, PyCapsule_GetName, PyCapsule_GetPointer
from cpython.ref cimport Py_INCREF
from cpython.tuple cimport PyTuple_GET_ITEM, PyTuple_GET_SIZE, PyTuple_New, PyTuple_SET_ITEM
from libc.math cimport INFINITY, ceil, copysign, exp, expm1, fabs, isfinite, isinf, isnan, log, pow, rint, signbit, sqrt
from libc.stdint cimport int64_t
from libc.stdlib cimport free, malloc, realloc
from libc.string cimport memmove, strcmp

import math
from collections import deque

from apps.engine.estimators.base import EstimatorSnapshot, EstimatorState
from apps.engine.market.events import BestBidAsk, Trade

cdef int64_t _NS = 1_000_000_000
cdef int64_t _HISTORY_NS = 10 * _NS  # the adverse estimator's kept mids (adverse._HISTORY_NS)
cdef int64_t _EXACT_NS = 9007199254740992  # 2**53: an int64 this large or larger is not exact as a double
cdef double _INF = float("inf")
cdef double _NAN = float("nan")

cdef object _WARMING = EstimatorState.WARMING
cdef object _STALE = EstimatorState.STALE
cdef object _OK = EstimatorState.OK
cdef object _FAILED = EstimatorState.FAILED
cdef dict _SIGMA_SCALE_KEYS = {}  # sigma._scale_keys' cache: (type(k), k) -> the three detail keys of scale k


# --- helpers ----------------------------------------------------------------------------------------------------


cdef inline double _div_ns(int64_t d) except? -1.0:
    # CPython's int / int for a time difference in ns: converted exactly and divided once while |d| <= 2**53 (its
    # fast path), else its correctly rounded long division.
    if -_EXACT_NS <= d <= _EXACT_NS:
        return <double>d / 1e9
    return (<object>d) / 1_000_000_000


cdef inline double _exp(double x) except? -1.0:
    # math.exp: libm's exp, OverflowError on a finite argument that overflows
    cdef double r = exp(x)
    if isinf(r) and isfinite(x):
        raise OverflowError("math range error")
    return r


cdef inline object _opt(bint has, int64_t v):
    return v if has else None


# --- the snapshots' helpers -------------------------------------------------------------------------------------
#
# The compiled snapshots do the reference's operations on the same doubles and build the same EstimatorSnapshot: the
# same field values and detail keys in the same order, and the reference's math.nan / math.inf objects where it
# returns those (a dict compares a NaN by identity first, so a decision record holding the reference's math.nan
# equals one holding the compiled snapshot's). A time they read must be an int within ±2**62 (so every difference of
# two times is exact in int64); any other runs the reference's snapshot on the object.

cdef object _NAN_OBJ = math.nan
cdef object _DEQUE_T = deque  # collections.deque: its length is Py_SIZE (CPython's dequeobject is a PyVarObject)
cdef object _INF_OBJ = math.inf
cdef int64_t _NS_LIM = 4611686018427387904  # 2**62
cdef object _NS_LIM_OBJ = 4611686018427387904


cdef inline bint _as_ns(object v, int64_t* out) except -1:
    # an int time within ±2**62, as int64 (False: the caller runs the reference). Read in C: comparing with the Python
    # bounds built a new int for -2**62 on every call (~350 instructions for each snapshot and cache test).
    cdef int overflow = 0
    cdef long long x
    if type(v) is not int:
        return False
    x = PyLong_AsLongLongAndOverflow(v, &overflow)
    if overflow or not (-_NS_LIM <= x <= _NS_LIM):
        return False
    out[0] = x
    return True


cdef inline bint _ns_in(int64_t v) noexcept nogil:
    return -_NS_LIM <= v <= _NS_LIM


cdef inline bint _ceil_ns(double x, int64_t* out) noexcept nogil:
    # math.ceil(x) for a float whose ceil is within ±2**62 (False for NaN, an infinity or beyond: the caller runs the
    # reference's math.ceil): the ceil of the double, an integral value that converts to int64 exactly
    cdef double c = ceil(x)
    if not (-<double>_NS_LIM <= c <= <double>_NS_LIM):
        return False
    out[0] = <int64_t>c
    return True



cdef object _new = object.__new__
cdef tuple _SNAPSHOT_FIELDS = (
    "name", "value", "std", "state", "last_input_ns", "ci_low", "ci_high", "detail", "message"
)  # fmt: skip
# _snapshot builds an EstimatorSnapshot without calling it only while the class is the one it was written for: these
# fields in this order, no __post_init__ (else it calls the class)
cdef bint _SNAPSHOT_PLAIN = (
    tuple(EstimatorSnapshot.__dataclass_fields__) == _SNAPSHOT_FIELDS
    and not hasattr(EstimatorSnapshot, "__post_init__")
)


cdef object _snapshot(name, value, std, state, last_input_ns, ci_low, ci_high, dict detail, message):
    """``EstimatorSnapshot(name, value, ..., detail, message)`` built as its generated __init__ builds the frozen,
    slotted dataclass (object.__setattr__ per field, in field order), without the Python-level call."""
    if not _SNAPSHOT_PLAIN:
        return EstimatorSnapshot(name, value, std, state, last_input_ns, ci_low, ci_high, detail, message)
    cdef object obj
    if _SNAPSHOT_OBJECT_NEW:  # object.__new__(EstimatorSnapshot) without the Python-level call
        obj = (<PyTypeObject*>EstimatorSnapshot).tp_new(<type>EstimatorSnapshot, <PyObject*>_EMPTY, NULL)
    else:
        obj = _new(EstimatorSnapshot)
    if _SNAPSHOT_SLOTS:  # each field stored in its slot as object.__setattr__ stores it (apps/engine/_slots.pxd)
        slot_set(obj, _SNAP_OFF[0], name)
        slot_set(obj, _SNAP_OFF[1], value)
        slot_set(obj, _SNAP_OFF[2], std)
        slot_set(obj, _SNAP_OFF[3], state)
        slot_set(obj, _SNAP_OFF[4], last_input_ns)
        slot_set(obj, _SNAP_OFF[5], ci_low)
        slot_set(obj, _SNAP_OFF[6], ci_high)
        slot_set(obj, _SNAP_OFF[7], detail)
        slot_set(obj, _SNAP_OFF[8], message)
        return obj
    PyObject_GenericSetAttr(obj, "name", name)
    PyObject_GenericSetAttr(obj, "value", value)
    PyObject_GenericSetAttr(obj, "std", std)
    PyObject_GenericSetAttr(obj, "state", state)
    PyObject_GenericSetAttr(obj, "last_input_ns", last_input_ns)
    PyObject_GenericSetAttr(obj, "ci_low", ci_low)
    PyObject_GenericSetAttr(obj, "ci_high", ci_high)
    PyObject_GenericSetAttr(obj, "detail", detail)
    PyObject_GenericSetAttr(obj, "message", message)
    return obj


# object.__new__(cls) is cls's tp_new (object's own, which checks that it got no arguments and allocates) for a class
# that does not define __new__: called directly with an empty argument tuple it is the same call without the wrapper
cdef tuple _EMPTY = ()
cdef bint _SNAPSHOT_OBJECT_NEW = EstimatorSnapshot.__new__ is object.__new__

# EstimatorSnapshot's slot offsets in _SNAPSHOT_FIELDS' order; _SNAPSHOT_SLOTS when every field is a plain slot
cdef Py_ssize_t _SNAP_OFF[9]
cdef bint _SNAPSHOT_SLOTS = (
    _SNAPSHOT_PLAIN and len(_SNAPSHOT_FIELDS) == 9 and slot_offsets(EstimatorSnapshot, _SNAPSHOT_FIELDS, _SNAP_OFF)
)


cdef inline object _nan_or(double x):
    # for a value the reference holds as math.nan until it computes one (a computed one is never NaN there)
    return _NAN_OBJ if isnan(x) else x


# --- ring buffer of records -------------------------------------------------------------------------------------
#
# A deque of fixed-shape tuples as C records: push at the back, pop at the front, index, insert in order. The
# capacity is a power of two and grows by doubling (the contents are unwrapped on the way).

cdef struct Rec:
    int64_t t
    double a
    double b
    double c
    double d
    int64_t k


cdef struct Ring:
    Rec* buf
    Py_ssize_t cap  # a power of two (0 before the first push)
    Py_ssize_t head
    Py_ssize_t n


cdef inline Rec* _at(Ring* r, Py_ssize_t i) noexcept nogil:
    return &r.buf[(r.head + i) & (r.cap - 1)]


cdef int _grow(Ring* r) except -1:
    cdef Py_ssize_t cap = r.cap * 2 if r.cap else 16
    cdef Rec* buf = <Rec*> malloc(cap * sizeof(Rec))
    cdef Py_ssize_t i
    if buf == NULL:
        raise MemoryError()
    for i in range(r.n):
        buf[i] = _at(r, i)[0]
    free(r.buf)
    r.buf = buf
    r.cap = cap
    r.head = 0
    return 0


cdef inline Rec* _push(Ring* r) except NULL:
    # a new record at the back (its fields are the caller's to set)
    if r.n == r.cap:
        _grow(r)
    r.n += 1
    return _at(r, r.n - 1)


cdef inline void _pop(Ring* r) noexcept nogil:
    r.head = (r.head + 1) & (r.cap - 1)
    r.n -= 1


cdef inline void _pop_back(Ring* r) noexcept nogil:
    r.n -= 1


cdef inline void _clear(Ring* r) noexcept nogil:
    r.head = 0
    r.n = 0


cdef object _records(Ring* r, row):
    # the records as a deque of row(t, a, b, c, d, k), oldest first: the reference's deque, for a read of it
    cdef Rec* x
    cdef Py_ssize_t i
    out = deque()
    for i in range(r.n):
        x = _at(r, i)
        out.append(row(x.t, x.a, x.b, x.c, x.d, x.k))
    return out


cdef Rec* _insert_sorted(Ring* r, int64_t t) except NULL:
    # a new record after every record whose t <= the new one's (a stable sort by t of the old order plus it)
    cdef Py_ssize_t lo = 0, hi = r.n, mid, i
    while lo < hi:
        mid = (lo + hi) >> 1
        if _at(r, mid).t <= t:
            lo = mid + 1
        else:
            hi = mid
    _push(r)
    i = r.n - 1
    while i > lo:
        _at(r, i)[0] = _at(r, i - 1)[0]
        i -= 1
    return _at(r, lo)


# --- exact running sums (Shewchuk partials, as math.fsum) -------------------------------------------------------

cdef enum:
    _MAX_PARTIALS = 128


cdef struct ExactSum:
    double p[_MAX_PARTIALS]
    int n


cdef inline bint _exact_add(ExactSum* s, double x) noexcept nogil:
    # math.fsum's inner loop: the partials stay non-overlapping, in increasing magnitude, and sum exactly to every
    # value added so far. False when the partials would overflow their array (the caller then re-sums).
    cdef int i = 0, j
    cdef double y, hi, lo, t
    for j in range(s.n):
        y = s.p[j]
        if fabs(x) < fabs(y):
            t = x
            x = y
            y = t
        hi = x + y
        lo = y - (hi - x)
        if lo != 0.0:
            s.p[i] = lo
            i += 1
        x = hi
    s.n = i
    if x != 0.0:
        if s.n == _MAX_PARTIALS:
            return False
        s.p[s.n] = x
        s.n += 1
    return True


cdef inline double _exact_value(ExactSum* s) noexcept nogil:
    # math.fsum's final rounding of its partials: the correctly rounded exact sum (half-even on a tie)
    cdef int n = s.n
    cdef double hi = 0.0, lo = 0.0, x, y, yr
    if n > 0:
        n -= 1
        hi = s.p[n]
        while n > 0:
            x = hi
            n -= 1
            y = s.p[n]
            hi = x + y
            yr = hi - x
            lo = y - yr
            if lo != 0.0:
                break
        if n > 0 and ((lo < 0.0 and s.p[n - 1] < 0.0) or (lo > 0.0 and s.p[n - 1] > 0.0)):
            y = lo * 2.0
            x = hi + y
            yr = x - hi
            if y == yr:
                hi = x
    return hi


# Values of a magnitude where the partials could overflow (or that are not finite: NaN, inf) are not summed
# incrementally; while the window holds any, its sums are math.fsum's own over the window (exceptions included).
cdef double _SAFE_ABS = 1e140


cdef class _Window:
    """A deque(maxlen=window) of markouts with the exact sums of the values and of their squares."""

    cdef Ring ring
    cdef Py_ssize_t maxlen
    cdef ExactSum sx, sxx
    cdef Py_ssize_t n_unsafe
    cdef bint partials_ok

    def __cinit__(self, Py_ssize_t maxlen):
        self.maxlen = maxlen
        self.partials_ok = True

    def __dealloc__(self):
        free(self.ring.buf)

    cdef int append(self, double x) except -1:
        cdef double old
        if self.ring.n == self.maxlen:
            old = self.ring.buf[self.ring.head].a
            _pop(&self.ring)
            self._account(old, -1)
        _push(&self.ring).a = x
        self._account(x, 1)
        return 0

    cdef inline void _account(self, double x, int sign) noexcept:
        if not (fabs(x) <= _SAFE_ABS):
            self.n_unsafe += sign
            return
        if sign > 0:
            self.partials_ok &= _exact_add(&self.sx, x) & _exact_add(&self.sxx, x * x)
        else:
            self.partials_ok &= _exact_add(&self.sx, -x) & _exact_add(&self.sxx, -(x * x))

    cdef list values(self):
        return [_at(&self.ring, i).a for i in range(self.ring.n)]

    cdef int _resum(self) except -1:
        # re-derive the partials from the window (only if they ever outgrew their array)
        cdef Py_ssize_t i
        cdef double x
        self.sx.n = 0
        self.sxx.n = 0
        self.partials_ok = True
        for i in range(self.ring.n):
            x = _at(&self.ring, i).a
            if fabs(x) <= _SAFE_ABS:
                self.partials_ok &= _exact_add(&self.sx, x) & _exact_add(&self.sxx, x * x)
        if not self.partials_ok:
            raise RuntimeError("exact sum: too many partials")
        return 0

    cdef double fsum(self) except? -1.0:
        """math.fsum(window)."""
        if self.n_unsafe:
            return math.fsum(self.values())
        if not self.partials_ok:
            self._resum()
        return _exact_value(&self.sx)

    cdef double fsum_sq(self) except? -1.0:
        """math.fsum(x * x for x in window)."""
        if self.n_unsafe:
            return math.fsum([x * x for x in self.values()])
        if not self.partials_ok:
            self._resum()
        return _exact_value(&self.sxx)


# --- adverse selection ------------------------------------------------------------------------------------------


@cython.final
cdef class AdverseSelectionEstimator:
    """Compiled :class:`apps.engine.estimators.adverse.PyAdverseSelectionEstimator` (same API and results)."""

    cdef readonly object params
    cdef public int64_t own_total, public_total
    cdef int64_t _h_ns, _mid_ts, _last_done, _now_local
    cdef double _mid, _max_dist_bps, _public_weight
    cdef Ring _hist  # t = local time, a = mid
    cdef Ring _pending  # t = target local time, k = side, a = m0, d = 1.0 if own
    cdef _Window _own, _public
    # the snapshot's parameters, read once (the params are frozen): only while they are of the plain types its C code
    # assumes (floats, ints within ±2**62: _c_params), else the reference's snapshot runs on this object
    cdef bint _c_params
    cdef double _z, _stale_ns  # p.z; p.stale_after_s * _NS (a float times an int, as the reference computes it)
    cdef int64_t _min_own, _min_pub
    cdef object _horizon_obj, _stale_msg

    def __init__(self, params=None):
        from apps.engine.estimators.adverse import AdverseSelectionParams

        self.params = p = (params or AdverseSelectionParams()).validate()
        self._c_params = (
            type(p.public_weight) is float and type(p.z) is float and type(p.stale_after_s) is float
            and type(p.min_own_fills) is int and type(p.min_public_trades) is int
            and -_NS_LIM_OBJ <= p.min_own_fills <= _NS_LIM_OBJ and -_NS_LIM_OBJ <= p.min_public_trades <= _NS_LIM_OBJ
        )  # fmt: skip
        if self._c_params:
            self._z = p.z
            self._stale_ns = p.stale_after_s * _NS_OBJ
            self._min_own = p.min_own_fills
            self._min_pub = p.min_public_trades
            self._stale_msg = f"no markout completed for {p.stale_after_s:g} s"
        self._horizon_obj = p.horizon_s
        self._h_ns = int(self.params.horizon_s * _NS)
        self._mid = _NAN
        self._mid_ts = 0
        self._own = _Window(self.params.window)
        self._public = _Window(self.params.window)
        self.own_total = 0
        self.public_total = 0
        self._last_done = 0
        self._now_local = 0
        self._max_dist_bps = self.params.public_max_distance_bps
        self._public_weight = self.params.public_weight
        _clear(&self._hist)
        _clear(&self._pending)

    def __dealloc__(self):
        free(self._hist.buf)
        free(self._pending.buf)

    # --- inputs -------------------------------------------------------------------------------

    cpdef on_book(self, int64_t ts_local_ns, double mid):
        """A new mid at local time ``ts_local_ns``: complete every markout whose horizon ended before it."""
        cdef Rec* r
        cdef double x
        cdef int64_t cutoff
        if ts_local_ns > self._now_local:
            self._now_local = ts_local_ns
        while self._pending.n and self._pending.buf[self._pending.head].t <= ts_local_ns:
            r = &self._pending.buf[self._pending.head]
            # the mid in force at the target time is the one before this update
            x = <double>(-r.k) * (self._mid - r.a) / r.a
            if r.d != 0.0:
                self._own.append(x)
                self.own_total += 1
            else:
                self._public.append(x)
                self.public_total += 1
            _pop(&self._pending)
            self._last_done = self._now_local
        self._mid = mid
        self._mid_ts = ts_local_ns
        if not self._hist.n or ts_local_ns >= _at(&self._hist, self._hist.n - 1).t:
            r = _push(&self._hist)
            r.t = ts_local_ns
            r.a = mid
            cutoff = ts_local_ns - _HISTORY_NS
            while self._hist.n > 1 and _at(&self._hist, 1).t <= cutoff:
                _pop(&self._hist)

    cpdef double mid_before(self, int64_t ts_ns):
        """The mid in force just before local time ``ts_ns`` (NaN when older than the kept history)."""
        cdef Py_ssize_t lo = 0, hi = self._hist.n, m
        while lo < hi:  # bisect_left
            m = (lo + hi) >> 1
            if _at(&self._hist, m).t < ts_ns:
                lo = m + 1
            else:
                hi = m
        return _at(&self._hist, lo - 1).a if lo > 0 else _NAN

    cpdef on_public_trade(self, int64_t ts_local_ns, double price, long aggressor):
        """A market trade: its resting side (−aggressor) was a maker fill at ``|price − mid|`` from the mid."""
        cdef double m0 = self._mid
        if not m0 > 0 or self._public_weight == 0:
            return
        if fabs(price - m0) / m0 * 1e4 > self._max_dist_bps:
            return
        self._push_markout(ts_local_ns, -aggressor, m0, False)

    def on_own_fill(self, int64_t ts_ns, side, mid_before=None):
        """One of our maker fills (side +1 bought, −1 sold) at reference instant ``ts_ns`` (local clock); the mid
        before it defaults to :meth:`mid_before`."""
        cdef double m0 = self.mid_before(ts_ns) if mid_before is None else mid_before
        if not m0 > 0:
            return
        self._push_markout(ts_ns, int(side), m0, True)

    cdef int _push_markout(self, int64_t ts_ns, long side, double m0, bint own) except -1:
        cdef int64_t target = ts_ns + self._h_ns
        cdef Rec* r
        if self._pending.n and _at(&self._pending, self._pending.n - 1).t > target:
            r = _insert_sorted(&self._pending, target)  # out of order (rare): keep the queue sorted by target
        else:
            r = _push(&self._pending)
        r.t = target
        r.k = side
        r.a = m0
        r.d = 1.0 if own else 0.0
        return 0

    # --- state the reference exposes ----------------------------------------------------------

    @property
    def own(self):
        return deque(self._own.values(), maxlen=self.params.window)

    @property
    def public(self):
        return deque(self._public.values(), maxlen=self.params.window)

    @property
    def _last_done_ns(self):
        return self._last_done

    # --- output -------------------------------------------------------------------------------

    def snapshot(self, now_local_ns):
        """Weighted mean adverse move (fraction of mid) with its interval and state: the reference's snapshot in C,
        with the window sums read from the exact running sums (the same doubles as math.fsum). A time that is not
        an int within ±2**62, or parameters not of the plain types the C code assumes, run the reference's."""
        cdef int64_t now
        if not self._c_params or not _as_ns(now_local_ns, &now) or not (0 <= self._last_done <= _NS_LIM):
            return _adverse_ref().snapshot(self, now_local_ns)
        return self._c_snapshot(now)

    cdef object _c_snapshot(self, int64_t now):
        # PyAdverseSelectionEstimator.snapshot step by step: the loop's sums (own, then public when its weight is
        # positive: the window sums are read in the reference's order, so an exception is the one it raises)
        cdef double w_pub = self._public_weight
        cdef double sw = 0.0, sw2 = 0.0, swx = 0.0, swx2 = 0.0
        cdef double s_own = 0.0, s_pub = 0.0, s2
        cdef Py_ssize_t n_own = self._own.ring.n, n_pub = self._public.ring.n
        cdef bint pub_summed = False
        cdef double mean, var, n_eff, se, z = self._z
        cdef int64_t d
        cdef bint stale
        if n_own:  # weight 1.0
            s_own = self._own.fsum()
            s2 = self._own.fsum_sq()
            sw += 1.0 * n_own
            sw2 += 1.0 * 1.0 * n_own
            swx += 1.0 * s_own
            swx2 += 1.0 * s2
        if not (w_pub <= 0) and n_pub:  # the reference's `if w <= 0: continue`
            s_pub = self._public.fsum()
            pub_summed = True
            s2 = self._public.fsum_sq()
            sw += w_pub * n_pub
            sw2 += w_pub * w_pub * n_pub
            swx += w_pub * s_pub
            swx2 += w_pub * s2
        if n_pub and not pub_summed:
            s_pub = self._public.fsum()
        # the reference's dict literal and its update (the same keys in the same order), allocated for its 7 keys
        # at once rather than resized on the sixth
        cdef dict detail = dict_presized(7)
        detail["own_markouts"] = <double>n_own
        detail["public_markouts"] = <double>n_pub
        detail["own_mean_bps"] = (s_own / n_own * 1e4) if n_own else _NAN_OBJ
        detail["public_mean_bps"] = (s_pub / n_pub * 1e4) if n_pub else _NAN_OBJ
        detail["horizon_s"] = self._horizon_obj
        if sw <= 0:
            return _snapshot(
                "adverse_selection", _NAN_OBJ, _NAN_OBJ, _WARMING, 0, _NAN_OBJ, _NAN_OBJ, detail,
                "no completed markouts yet",
            )  # fmt: skip
        mean = swx / sw
        var = swx2 / sw - mean * mean
        if 0.0 > var:  # max(var, 0.0)
            var = 0.0
        if sw2 == 0.0:
            raise ZeroDivisionError("float division by zero")
        n_eff = sw * sw / sw2
        detail["n_eff"] = n_eff
        detail["mean_bps"] = mean * 1e4
        if n_eff > 1:
            se = sqrt(var / n_eff)
            std = se
        else:
            se = _INF
            std = _INF_OBJ  # math.inf itself
        if n_own < self._min_own and n_pub < self._min_pub:
            state = _WARMING
            msg = f"{n_own} own / {n_pub} public markouts (< {self._min_own} / {self._min_pub})"
        else:
            # now - last > stale_after_s * 1e9: an int against a float, exactly (as Python compares them)
            d = now - self._last_done
            if -_EXACT_NS <= d <= _EXACT_NS:
                stale = <double>d > self._stale_ns
            else:
                stale = (<object>d) > self._stale_ns
            if stale:
                state, msg = _STALE, self._stale_msg
            else:
                state, msg = _OK, ""
        return _snapshot(
            "adverse_selection", mean, std, state, self._last_done, mean - z * se, mean + z * se, detail, msg
        )


# --- references (resolved on first use: their modules import this one) ------------------------------------------

cdef object _REF_SIGMA = None
cdef object _REF_MICRO = None
cdef object _REF_FLOW = None
cdef object _REF_ARRIVAL = None
cdef object _REF_HAWKES = None
cdef object _REF_ADVERSE = None


cdef object _adverse_ref():
    global _REF_ADVERSE
    if _REF_ADVERSE is None:
        from apps.engine.estimators.adverse import PyAdverseSelectionEstimator

        _REF_ADVERSE = PyAdverseSelectionEstimator
    return _REF_ADVERSE


cdef object _SIGMA_MOD = None
# sigma._Closed's slot offsets (n, elapsed_s, rv, bv, per_scale), found when the first SigmaEstimator is built;
# _closed_get reads a field by offset while σ's _closed is exactly that class with plain slots, else by name
cdef object _CLOSED_T = None
cdef Py_ssize_t _CL_OFF[5]
cdef bint _CL_SLOTS = False
cdef enum:
    _CL_N = 0
    _CL_ELAPSED = 1
    _CL_RV = 2
    _CL_BV = 3
    _CL_PER_SCALE = 4


cdef inline object _closed_get(object c, int i, str name):
    if _CL_SLOTS and type(c) is _CLOSED_T:
        return slot_get(c, _CL_OFF[i])
    return getattr(c, name)
cdef double _BV_SCALE = math.pi / 2.0  # sigma._BV_SCALE (checked in _closed_sums)


cdef object _closed_sums(object returns, object durations, tuple scales, object headline):
    """:func:`apps.engine.estimators.sigma.closed_statistics` in C: the same loops and the same order of every sum,
    so the same ``_Closed``, bit for bit (the reference runs instead if the window's two deques differ in length)."""
    global _SIGMA_MOD
    if _SIGMA_MOD is None:
        from apps.engine.estimators import sigma as sigma_mod

        if sigma_mod._BV_SCALE != _BV_SCALE:
            raise RuntimeError("apps.engine.estimators._estimators: sigma._BV_SCALE changed; update _closed_sums")
        _SIGMA_MOD = sigma_mod
    cdef Py_ssize_t size = len(returns)
    if len(durations) != size:
        return _SIGMA_MOD.closed_statistics(list(returns), list(durations), scales, headline)
    cdef double* r = <double*>malloc((2 * size + 1) * sizeof(double))
    if r == NULL:
        raise MemoryError()
    cdef double* d = r + size
    cdef Py_ssize_t i = 0, j, b, k, blocks, n = 0
    cdef double t, rv, cross, prev, rb, tb, a, bv, elapsed = 0.0, rv_h = 0.0, bv_h = _NAN
    cdef dict per_scale = {}
    try:
        for x in returns:
            r[i] = x
            i += 1
        i = 0
        for x in durations:
            d[i] = x
            i += 1
        for ko in scales:
            k = ko
            blocks = size // k
            i = size - blocks * k
            t = rv = cross = prev = 0.0
            for b in range(blocks):
                rb = r[i]
                tb = d[i]
                for j in range(i + 1, i + k):
                    rb += r[j]
                    tb += d[j]
                i += k
                t += tb
                rv += rb * rb
                a = fabs(rb)
                if b:
                    cross += a * prev
                prev = a
            bv = _BV_SCALE * <double>blocks / <double>(blocks - 1) * cross if blocks >= 2 else _NAN
            if blocks >= 2 and t > 0:
                per_scale[ko] = (sqrt(rv / t), sqrt(bv / t), blocks)
            else:
                per_scale[ko] = (_NAN_OBJ, _NAN_OBJ, blocks)
            if ko == headline:
                n, elapsed, rv_h, bv_h = blocks, t, rv, bv
    finally:
        free(r)
    return _new_closed(n, elapsed, rv_h, bv_h, per_scale)


cdef tuple _CLOSED_FIELDS = ("n", "elapsed_s", "rv", "bv", "per_scale")
cdef object _CLOSED_NEW_T = None  # the sigma._Closed class _new_closed builds by its slots (checked when it changes)
cdef Py_ssize_t _CLN_OFF[5]  # its slot offsets in field order


cdef object _new_closed(object n, object elapsed, object rv, object bv, dict per_scale):
    """``sigma._Closed(n, elapsed, rv, bv, per_scale)`` as its generated ``__init__`` builds the frozen, slotted
    dataclass (one ``object.__setattr__`` per field, in field order), without the Python-level call: while the
    module's ``_Closed`` is a frozen dataclass of exactly these fields, all plain slots, with no ``__post_init__`` and
    object's own ``__new__``; any other class is called."""
    global _CLOSED_NEW_T
    cdef Py_ssize_t off[5]
    cdef int k
    cls = _SIGMA_MOD._Closed
    if cls is not _CLOSED_NEW_T:
        if not (
            type(cls) is type
            and tuple(getattr(cls, "__dataclass_fields__", ())) == _CLOSED_FIELDS
            and cls.__dataclass_params__.frozen
            and cls.__dataclass_params__.init
            and not hasattr(cls, "__post_init__")
            and cls.__new__ is object.__new__
            and slot_offsets(cls, _CLOSED_FIELDS, off)  # (into a scratch array: a failed look leaves _CLN_OFF as is)
        ):
            return cls(n, elapsed, rv, bv, per_scale)
        for k in range(5):
            _CLN_OFF[k] = off[k]
        _CLOSED_NEW_T = cls
    return new_slotted(cls, (n, elapsed, rv, bv, per_scale), _CLN_OFF)


cdef tuple _sigma_scale_keys(object k):
    # sigma._scale_keys(k): the three detail keys of scale k, cached by (type, value)
    keys = _SIGMA_SCALE_KEYS.get((type(k), k))
    if keys is None:
        keys = _SIGMA_SCALE_KEYS[(type(k), k)] = (f"sigma_total_k{k}", f"sigma_clean_k{k}", f"n_blocks_k{k}")
    return keys


cdef object _sigma_ref():
    global _REF_SIGMA
    if _REF_SIGMA is None:
        from apps.engine.estimators.sigma import PySigmaEstimator

        _REF_SIGMA = PySigmaEstimator
    return _REF_SIGMA


cdef object _micro_ref():
    global _REF_MICRO
    if _REF_MICRO is None:
        from apps.engine.estimators.microprice import PyMicropriceRegression

        _REF_MICRO = PyMicropriceRegression
    return _REF_MICRO


cdef object _flow_ref():
    global _REF_FLOW
    if _REF_FLOW is None:
        from apps.engine.estimators.flow import PyFlowImbalance

        _REF_FLOW = PyFlowImbalance
    return _REF_FLOW


cdef object _arrival_ref():
    global _REF_ARRIVAL
    if _REF_ARRIVAL is None:
        from apps.engine.estimators.flow import PyTradeArrivalRate

        _REF_ARRIVAL = PyTradeArrivalRate
    return _REF_ARRIVAL


cdef object _hawkes_ref():
    global _REF_HAWKES
    if _REF_HAWKES is None:
        from apps.engine.estimators.hawkes import PyHawkesIntensity

        _REF_HAWKES = PyHawkesIntensity
    return _REF_HAWKES


# --- sigma ------------------------------------------------------------------------------------------------------


@cython.final
cdef class SigmaEstimator:
    """Compiled :class:`apps.engine.estimators.sigma.PySigmaEstimator`: ``update_trusted`` in C; the bucket
    statistics, the checked ``update`` and every read are the reference's functions on this state."""

    name = "sigma"

    cdef readonly object params
    cdef public object _returns, _durations, _closed
    cdef Ring _vhist  # t = local time, a = volume
    cdef public double _volume_hist_sum
    cdef int64_t _lookback_ns
    cdef public bint _steady, _on_volume_clock
    cdef bint _has_first
    cdef int64_t _first
    cdef public int64_t _last_input_ns, _open_ns, _n_checked
    cdef public double _open_mid, _open_volume, _last_mid, _bucket_volume
    cdef public double _decay, _ewma_realised, _ewma_predicted
    cdef double _target_bucket_s, _volume_lookback_s, _min_volume_history_s, _max_bucket_s
    cdef public bint defer_closed, closed_stale
    cdef double _z, _theta_bv, _theta_rv  # the snapshot's constants (sigma_log_interval's z, sigma's θs)
    cdef object _fine_k, _coarse_k
    # the snapshot's constants from the (frozen) params: the correction flag's message after its factor (when the
    # factor is above 1, below 1), the detail keys of each scale in the params' order, the state's bounds
    cdef str _cf_tail_hi, _cf_tail_lo
    cdef tuple _scale_keys  # ((k, (sigma_total_k, sigma_clean_k, n_blocks_k)), ...)
    cdef double _tol, _stale_s, _sigma_min, _sigma_max

    def __init__(self, params=None):
        from scipy import special

        from apps.engine.estimators.sigma import _THETA_BV, _THETA_RV, SigmaParams, _Closed

        self.params = (params or SigmaParams()).validate()
        p = self.params
        self._returns = deque(maxlen=p.window_buckets)
        self._durations = deque(maxlen=p.window_buckets)
        _clear(&self._vhist)
        self._volume_hist_sum = 0.0
        self._lookback_ns = int(p.volume_lookback_s * _NS)
        self._steady = False
        self._has_first = False
        self._first = 0
        self._last_input_ns = 0
        self._open_ns = 0
        self._open_mid = _NAN
        self._open_volume = 0.0
        self._last_mid = _NAN
        self._on_volume_clock = False
        self._bucket_volume = _NAN
        self._closed = _Closed(0, 0.0, 0.0, math.nan, {})
        self._decay = 0.5 ** (1.0 / p.correction_half_life_buckets)
        self._ewma_realised = 0.0
        self._ewma_predicted = 0.0
        self._n_checked = 0
        self._target_bucket_s = p.target_bucket_s
        self._volume_lookback_s = p.volume_lookback_s
        self._min_volume_history_s = p.min_volume_history_s
        self._max_bucket_s = p.max_bucket_s
        self.defer_closed = False
        self.closed_stale = False
        self._z = float(special.ndtri(0.5 + 0.5 * p.ci_level))  # sigma_log_interval's z, the same call
        self._theta_bv = _THETA_BV
        self._theta_rv = _THETA_RV
        self._fine_k = min(p.scales)
        self._coarse_k = max(p.scales)
        bounds = f" outside [{1 / p.correction_tolerance:.2f}, {p.correction_tolerance:.2f}]: realised bucket variance "
        self._cf_tail_hi = bounds + "exceeds the one-step prediction"
        self._cf_tail_lo = bounds + "falls short of the one-step prediction"
        self._scale_keys = tuple((k, _sigma_scale_keys(k)) for k in p.scales)
        self._tol = p.correction_tolerance
        self._stale_s = p.stale_after_s
        self._sigma_min = p.sigma_min
        self._sigma_max = p.sigma_max
        global _CLOSED_T, _CL_SLOTS
        if _CLOSED_T is None:
            _CL_SLOTS = slot_offsets(_Closed, ("n", "elapsed_s", "rv", "bv", "per_scale"), _CL_OFF)
            _CLOSED_T = _Closed

    def __dealloc__(self):
        free(self._vhist.buf)

    def settle(self):
        _sigma_ref().settle(self)

    @property
    def _first_ns(self):
        return _opt(self._has_first, self._first)

    @property
    def _volume_hist(self):
        return deque([(_at(&self._vhist, i).t, _at(&self._vhist, i).a) for i in range(self._vhist.n)])

    # -- mutation ---------------------------------------------------------------------------------

    def update(self, ts_ns, mid, volume=0.0):
        """Feed one mid observation (quote currency) at ``ts_ns`` with the base volume traded since the last."""
        _sigma_ref().update(self, ts_ns, mid, volume)

    cpdef update_trusted(self, int64_t ts_ns, double mid, double volume=0.0):
        """:meth:`update` without the input checks (once per top-of-book change)."""
        cdef Ring* hist = &self._vhist
        cdef double elapsed_s, history_s, vol_sum
        cdef int64_t elapsed_ns, cutoff
        cdef bint close
        cdef Rec* r
        if self._steady and volume == 0 and ts_ns >= self._last_input_ns:
            # Steady state: a full lookback of history, on the volume clock, no trade since the last call
            # and nothing due to expire (the reference's fast path, the same decisions).
            if not (hist.n and hist.buf[hist.head].t < ts_ns - self._lookback_ns):
                self._last_input_ns = ts_ns
                self._last_mid = mid
                elapsed_s = _div_ns(ts_ns - self._open_ns)
                if elapsed_s > 0 and elapsed_s >= self._max_bucket_s:
                    self._close_bucket(ts_ns, mid, elapsed_s)
                return
        if not self._has_first:
            self._has_first = True
            self._first = ts_ns
            self._open_ns, self._open_mid = ts_ns, mid
        if ts_ns > self._last_input_ns:
            self._last_input_ns = ts_ns
        self._last_mid = mid
        if volume > 0:
            r = _push(hist)
            r.t = ts_ns
            r.a = volume
            self._volume_hist_sum += volume
            self._open_volume += volume
        if hist.n and hist.buf[hist.head].t < ts_ns - self._lookback_ns:
            cutoff = ts_ns - self._lookback_ns
            while hist.n and hist.buf[hist.head].t < cutoff:
                self._volume_hist_sum -= hist.buf[hist.head].a
                _pop(hist)
            if not hist.n:
                self._volume_hist_sum = 0.0

        elapsed_ns = ts_ns - self._open_ns
        if elapsed_ns <= 0:
            self._steady = False
            return
        elapsed_s = _div_ns(elapsed_ns)
        history_s = _div_ns(ts_ns - self._first)
        if history_s > self._volume_lookback_s:
            history_s = self._volume_lookback_s
        vol_sum = self._volume_hist_sum
        self._on_volume_clock = history_s >= self._min_volume_history_s and vol_sum > 0
        if self._on_volume_clock:
            if history_s == 0.0:
                raise ZeroDivisionError("float division by zero")
            self._bucket_volume = vol_sum / history_s * self._target_bucket_s
            close = self._open_volume >= self._bucket_volume or elapsed_s >= self._max_bucket_s
        else:
            self._bucket_volume = _NAN
            close = elapsed_s >= self._target_bucket_s
        self._steady = self._on_volume_clock and history_s == self._volume_lookback_s
        if close:
            self._close_bucket(ts_ns, mid, elapsed_s)

    cdef int _close_bucket(self, int64_t ts_ns, double mid, double elapsed_s) except -1:
        # once per bucket: the reference's own step (numpy over the window)
        _sigma_ref()._close_bucket(self, ts_ns, mid, elapsed_s)
        return 0

    # -- reading: the reference's functions ------------------------------------------------------

    def _compute_closed(self):
        return _closed_sums(self._returns, self._durations, self.params.scales, self.params.headline_scale)

    def _sigma_inventory_closed(self):
        return _sigma_ref()._sigma_inventory_closed(self)

    # σ's reads in C: the reference's operations on the same doubles (math.sqrt/math.log are libm's sqrt/log, the
    # int ns difference is divided as CPython does, max() keeps its first argument unless the second is greater).
    # Where the reference would raise (a zero open mid, the log of a non-positive ratio, the root of a negative
    # number), the reference's function runs instead and raises.

    cdef object _c_open_contribution(self):
        cdef double ratio, r, dt
        if not isfinite(self._open_mid) or not isfinite(self._last_mid):
            return 0.0, 0.0
        if self._open_mid == 0.0:
            return _sigma_ref()._open_contribution(self)
        ratio = self._last_mid / self._open_mid
        if not ratio > 0.0:
            return _sigma_ref()._open_contribution(self)
        r = log(ratio)
        dt = _div_ns(self._last_input_ns - self._open_ns)
        return r * r, (0.0 if 0.0 > dt else dt)

    # (the reads return Python floats as the reference does: its math.nan object where it returns math.nan, a new
    # float where it computes one, and for sigma_for_inventory the very object of sigma_total or sigma_clean; code
    # comparing containers of them, where NaN is equal only to itself, sees the same thing)

    cdef object _c_sigma_clean(self):
        c = self._closed
        cdef double elapsed = _closed_get(c, _CL_ELAPSED, "elapsed_s"), bv, q
        if elapsed > 0:
            bv = _closed_get(c, _CL_BV, "bv")
            if isfinite(bv):
                q = bv / elapsed
                if q < 0:
                    return _sigma_ref().sigma_clean.fget(self)
                return sqrt(q)
        return math.nan

    cdef object _c_sigma_total(self):
        c = self._closed
        cdef double r2, dt, t, q
        r2, dt = self._c_open_contribution()
        t = <double>_closed_get(c, _CL_ELAPSED, "elapsed_s") + dt
        if t > 0 and _closed_get(c, _CL_N, "n") > 0:
            q = (<double>_closed_get(c, _CL_RV, "rv") + r2) / t
            if q < 0:
                return _sigma_ref().sigma_total.fget(self)
            return sqrt(q)
        return math.nan

    def _open_contribution(self):
        return self._c_open_contribution()

    @property
    def sigma_clean(self):
        return self._c_sigma_clean()

    @property
    def sigma_total(self):
        return self._c_sigma_total()

    @property
    def sigma_for_spread(self):
        return self._c_sigma_clean()

    @property
    def sigma_for_inventory(self):
        total = self._c_sigma_total()
        clean = self._c_sigma_clean()
        cdef double t = total, c = clean
        if isnan(c):
            return total
        if isnan(t):
            return clean
        return clean if c > t else total

    @property
    def correction_factor(self):
        return _sigma_ref().correction_factor.fget(self)

    @property
    def last_input_ns(self):
        return self._last_input_ns

    def snapshot(self, now_ns):
        """Read σ at ``now_ns``: the reference's snapshot, in C (its operations on the same doubles)."""
        cdef int64_t now
        if not _as_ns(now_ns, &now):
            return _sigma_ref().snapshot(self, now_ns)
        return self._snapshot_ns(now_ns, now)

    cdef object _snapshot_ns(self, object now_ns, int64_t now):
        # snapshot(now_ns) for an int time within ±2**62 (now is its value): MarketStep calls this directly
        if not _ns_in(self._last_input_ns):
            return _sigma_ref().snapshot(self, now_ns)
        return self._c_snapshot(now)

    cdef tuple _log_interval(self, double sigma, long n, double theta):
        # sigma.sigma_log_interval(sigma, n, theta, ci_level) with its z computed once
        cdef double rel, z = self._z
        if not (n > 0 and isfinite(sigma) and sigma > 0):
            return _NAN_OBJ, _NAN_OBJ, _NAN_OBJ
        rel = sqrt(theta / <double>n)
        return sigma * rel / 2.0, sigma * _exp(-0.5 * z * rel), sigma * _exp(0.5 * z * rel)

    cdef object _c_snapshot(self, int64_t now):
        p = self.params
        c = self._closed
        clean = self._c_sigma_clean()
        total = self._c_sigma_total()
        cdef double d_clean = clean, d_total = total, cf = 0.0, tol = self._tol, rv, bv, elapsed
        cdef long n = _closed_get(c, _CL_N, "n")
        cdef bint cf_flag
        std, lo, hi = self._log_interval(d_clean, n, self._theta_bv)
        total_std = self._log_interval(d_total, n, self._theta_rv)[0]
        if self._ewma_predicted > 0:  # correction_factor
            cf = self._ewma_realised / self._ewma_predicted
            cf_obj = cf
        else:
            cf_obj = _NAN_OBJ
        cf_flag = isfinite(cf) and cf_obj is not _NAN_OBJ and not (1.0 / tol <= cf <= tol)
        if isnan(d_clean):  # sigma_for_inventory: max(total, clean) unless one is NaN
            inventory = total
        elif isnan(d_total):
            inventory = clean
        else:
            inventory = clean if d_clean > d_total else total
        rv = _closed_get(c, _CL_RV, "rv")
        bv = _closed_get(c, _CL_BV, "bv")
        elapsed_obj = _closed_get(c, _CL_ELAPSED, "elapsed_s")
        elapsed = elapsed_obj
        per_scale = _closed_get(c, _CL_PER_SCALE, "per_scale")
        cdef tuple scale_keys = self._scale_keys
        cdef Py_ssize_t i = 0
        # the same dict as the reference's literal filled in order, sized up front for its per-scale keys and the
        # noise ratio (no resizes on the way)
        cdef dict detail = dict_presized(15 + 3 * len(per_scale))
        detail["sigma_clean"] = clean
        detail["sigma_total"] = total
        detail["sigma_total_std"] = total_std
        detail["sigma_spread"] = clean
        detail["sigma_inventory"] = inventory
        detail["jump_share"] = 1.0 - bv / rv if rv > 0 and isfinite(bv) else _NAN_OBJ
        detail["n_buckets"] = <double>n
        detail["window_s"] = elapsed_obj
        detail["mean_bucket_s"] = elapsed / <double>n if n else _NAN_OBJ
        detail["volume_clock"] = 1.0 if self._on_volume_clock else 0.0
        detail["bucket_volume"] = _nan_or(self._bucket_volume)
        detail["correction_factor"] = cf_obj
        detail["correction_flag"] = 1.0 if cf_flag else 0.0
        detail["correction_n"] = <double>self._n_checked
        for k, v in per_scale.items():
            s_tot, s_cln, nb = v
            # the keys made for the params' scale in the same place when k is that very object (per_scale is built
            # from the params' scales, in their order), else made or found for k itself
            if i < len(scale_keys) and <object>PyTuple_GET_ITEM(<object>PyTuple_GET_ITEM(scale_keys, i), 0) is k:
                keys = <object>PyTuple_GET_ITEM(<object>PyTuple_GET_ITEM(scale_keys, i), 1)
            else:
                keys = _sigma_scale_keys(k)
            i += 1
            detail[keys[0]] = s_tot
            detail[keys[1]] = s_cln
            detail[keys[2]] = float(nb)
        if type(per_scale) is dict:  # (its get, in C)
            fine, coarse = (<dict>per_scale).get(self._fine_k), (<dict>per_scale).get(self._coarse_k)
        else:
            fine, coarse = per_scale.get(self._fine_k), per_scale.get(self._coarse_k)
        if fine and coarse and coarse[0] > 0:
            # Python's float ** int: CPython's float_pow, libm's pow(x, 2.0) (not x * x, which a C compiler would
            # make of a constant exponent, and which differs from glibc's pow in the last bit now and then)
            detail["noise_ratio"] = PyNumber_Power(<double>fine[0] / <double>coarse[0], 2, None)

        state, message = self._c_state(now, clean, total)
        if cf_flag:  # the reference's f-string: its parts from the params made once (__init__)
            flag = f"variance correction factor {cf_obj:.2f}{self._cf_tail_hi if cf > 1 else self._cf_tail_lo}"
            message = f"{message}; {flag}" if message else flag
        return _snapshot(self.name, clean, std, state, self._last_input_ns, lo, hi, detail, message)

    cdef tuple _c_state(self, int64_t now, object clean, object total):
        # PySigmaEstimator._state
        p = self.params
        cdef double idle_s, s
        if not self._has_first:
            return _WARMING, "no input yet"
        idle_s = _div_ns(now - self._last_input_ns)
        if idle_s > self._stale_s:
            return _STALE, f"no input for {idle_s:.1f} s (stale after {p.stale_after_s:g} s)"
        n = _closed_get(self._closed, _CL_N, "n")
        if n < p.min_buckets:
            return _WARMING, f"{n} of {p.min_buckets} buckets"
        s = clean
        if not (isfinite(s) and self._sigma_min <= s <= self._sigma_max):
            return _FAILED, (
                f"sigma_clean {clean:.3g} per sqrt(s) outside the plausible range [{p.sigma_min:g}, {p.sigma_max:g}]"
            )
        s = total
        if not (isfinite(s) and self._sigma_min <= s <= self._sigma_max):
            return _FAILED, (
                f"sigma_total {total:.3g} per sqrt(s) outside the plausible range [{p.sigma_min:g}, {p.sigma_max:g}]"
            )
        return _OK, ""

    def _state(self, now_ns, clean, total):
        return _sigma_ref()._state(self, now_ns, clean, total)


# --- microprice -------------------------------------------------------------------------------------------------


@cython.final

cdef tuple sigma_reads(object sigma):
    """``(sigma.sigma_for_spread, sigma.sigma_for_inventory)`` in one C call, for the core's decision
    (``apps/engine/_core.pyx``); None when ``sigma`` is not exactly the compiled class. The clean σ is computed once:
    both properties compute it from the same state, without side effects, so it is the same float (a NaN is
    ``math.nan`` itself in both)."""
    if type(sigma) is not SigmaEstimator:
        return None
    cdef SigmaEstimator est = <SigmaEstimator>sigma
    clean = est._c_sigma_clean()
    total = est._c_sigma_total()
    cdef double t = total, c = clean
    if isnan(c):  # sigma_for_inventory, as the property
        return (clean, total)
    if isnan(t):
        return (clean, clean)
    return (clean, clean if c > t else total)


cdef int step_on_bbo(object step, object b) except -1:
    """``step.on_bbo(b)`` of the compiled MarketStep at C level, for the core (``apps/engine/_core.pyx``)."""
    return (<MarketStep?>step).c_on_bbo(b)


cdef int step_on_trade(object step, object t) except -1:
    """``step.on_trade(t)`` of the compiled MarketStep at C level, for the core."""
    return (<MarketStep?>step).c_on_trade(t)


cdef tuple hawkes_reads(object h):
    """``(h.n_events, h.params, h._s, h.last_event_ns)`` of the compiled HawkesIntensity in one C call, for the core's
    risk features (``apps/engine/_core.pyx``); None when ``h`` is not exactly that class."""
    if type(h) is not HawkesIntensity:
        return None
    cdef HawkesIntensity hi = <HawkesIntensity>h
    return (hi._n_events, hi._params, hi._s, hi._last_ns)

cdef class MicropriceRegression:
    """Compiled :class:`apps.engine.estimators.microprice.PyMicropriceRegression`: ``observe_trusted`` and the
    label step in C; the reads are the reference's functions on this state."""

    cdef readonly object params
    cdef public object name
    cdef public int64_t _horizon_ns, _interval_ns, _n_labels, _last_ns
    cdef public double _a11, _a12, _a22, _b1, _b2, _beta0, _beta1, _sse, _ss0, _weight
    cdef public double _last_mid, _last_label
    cdef double _xb, _xf, _ridge, _half_life
    cdef Ring _pend  # t = sample time, a = mid, b = book imbalance, c = flow imbalance
    cdef bint _has_label, _has_sample
    cdef int64_t _label_ns, _sample_ns

    def __init__(self, params=None, *, name="microprice"):
        from apps.engine.estimators.microprice import MicropriceParams

        self.params = (params or MicropriceParams()).validate()
        self.name = name
        self._horizon_ns = round(self.params.horizon_s * _NS)
        self._interval_ns = round(self.params.sample_interval_s * _NS)
        self._a11 = self._a12 = self._a22 = 0.0
        self._b1 = self._b2 = 0.0
        self._beta0 = self._beta1 = 0.0
        self._sse = 0.0
        self._ss0 = 0.0
        self._weight = 0.0
        self._n_labels = 0
        _clear(&self._pend)
        self._has_label = self._has_sample = False
        self._label_ns = self._sample_ns = 0
        self._last_ns = 0
        self._last_mid = _NAN
        self._xb = self._xf = 0.0
        self._last_label = _NAN
        self._ridge = self.params.ridge_prior
        self._half_life = self.params.half_life_s

    def __dealloc__(self):
        free(self._pend.buf)

    # --- state the reference reads --------------------------------------------------------------

    @property
    def _last_x(self):
        return (self._xb, self._xf)

    @property
    def _last_label_ns(self):
        return _opt(self._has_label, self._label_ns)

    @property
    def _last_sample_ns(self):
        return _opt(self._has_sample, self._sample_ns)

    @property
    def _pending(self):
        return _records(&self._pend, lambda t, a, b, c, d, k: (t, a, b, c))

    # --- read: the reference's functions --------------------------------------------------------

    @property
    def coefficients(self):
        return self._beta0, self._beta1

    @property
    def n_labels(self):
        return self._n_labels

    @property
    def r2_oos(self):
        return _micro_ref().r2_oos.fget(self)

    @property
    def residual_var(self):
        return _micro_ref().residual_var.fget(self)

    def predict(self, book_imbalance, flow_imbalance):
        return _micro_ref().predict(self, book_imbalance, flow_imbalance)

    def microprice(self, mid, book_imbalance, flow_imbalance):
        return _micro_ref().microprice(self, mid, book_imbalance, flow_imbalance)

    def _coef_cov(self):
        return _micro_ref()._coef_cov(self)

    def snapshot(self, now_ns):
        """The reference's snapshot, in C (its operations on the same doubles)."""
        cdef int64_t now
        if not _as_ns(now_ns, &now):
            return _micro_ref().snapshot(self, now_ns)
        return self._snapshot_ns(now_ns, now)

    cdef object _snapshot_ns(self, object now_ns, int64_t now):
        # snapshot(now_ns) for an int time within ±2**62 (now is its value): MarketStep calls this directly
        if not _ns_in(self._last_ns):
            return _micro_ref().snapshot(self, now_ns)
        return self._c_snapshot(now)

    cdef object _c_snapshot(self, int64_t now):
        p = self.params
        cdef double xb = self._xb, xf = self._xf, var_r, scale, det, r = self._ridge, m11, m22, m12
        cdef double value = self._beta0 * xb + self._beta1 * xf
        cdef double v11, v22, v12, var, age, std
        cdef bint finite
        # _coef_cov, with residual_var
        var_r = self._sse / self._weight if self._weight > 0 else _NAN
        if not isfinite(var_r):
            v11 = v22 = v12 = _NAN
        else:
            m11, m22, m12 = self._a11 + r, self._a22 + r, self._a12
            det = m11 * m22 - m12 * m12
            if det == 0.0:
                return _micro_ref().snapshot(self, now)  # (ZeroDivisionError there)
            scale = var_r / det
            v11, v22, v12 = scale * m22, scale * m11, -scale * m12
        var = xb * xb * v11 + 2.0 * xb * xf * v12 + xf * xf * v22
        std_obj = sqrt(var) if var >= 0 else _NAN_OBJ
        std = std_obj
        r2 = 1.0 - self._sse / self._ss0 if self._ss0 > 0 else _NAN_OBJ  # r2_oos
        if self._n_labels < p.min_labels:
            state, message = _WARMING, f"{self._n_labels} labels < min_labels={p.min_labels}"
        elif _div_ns(now - self._last_ns) > <double>p.stale_after_s:
            age = _div_ns(now - self._last_ns)
            state, message = _STALE, f"no observation for {age:.1f} s > stale_after_s={p.stale_after_s}"
        elif not <double>r2 > <double>p.r2_min:
            state = _FAILED
            message = f"out-of-sample R² {r2:.4f} <= r2_min={p.r2_min}: no better than the mid"
        else:
            state, message = _OK, ""
        finite = isfinite(v11) and isfinite(v22) and isfinite(v12)
        if self._weight > 0:
            if var_r < 0:
                return _micro_ref().snapshot(self, now)  # (math.sqrt's ValueError there)
            residual_std = sqrt(var_r)
        else:
            residual_std = _NAN_OBJ
        return _snapshot(
            self.name,
            value,
            std_obj,
            state,
            self._last_ns,
            value - 1.96 * std if isfinite(std) else _NAN_OBJ,
            value + 1.96 * std if isfinite(std) else _NAN_OBJ,
            {
                "r2_oos": r2,
                "beta_book": self._beta0,
                "beta_flow": self._beta1,
                "se_beta_book": sqrt(v11) if finite and v11 >= 0 else _NAN_OBJ,
                "se_beta_flow": sqrt(v22) if finite and v22 >= 0 else _NAN_OBJ,
                "residual_std": residual_std,
                "n_labels": <double>self._n_labels,
                "effective_labels": self._weight,
                "pending": <double>self._pend.n,
                "last_label": _nan_or(self._last_label),
            },
            message,
        )

    # --- write --------------------------------------------------------------------------------

    def observe(self, ts_ns, mid, book_imbalance, flow_imbalance):
        """Feed the mid and the two imbalances at ``ts_ns`` (checked; the reference's checks)."""
        _micro_ref().observe(self, ts_ns, mid, book_imbalance, flow_imbalance)

    cpdef observe_trusted(self, int64_t ts_ns, double mid, double book_imbalance, double flow_imbalance):
        """:meth:`observe` without the input checks (time order is still checked)."""
        cdef Ring* pending = &self._pend
        cdef int64_t horizon
        cdef Rec* r
        if ts_ns < self._last_ns:
            raise ValueError(f"{self.name}: time went backwards ({ts_ns} < last input {self._last_ns})")
        if pending.n:
            # A sample whose deadline passed before now was last priced by the previous mid; one whose
            # deadline is exactly now is priced by this one.
            horizon = self._horizon_ns
            while pending.n and pending.buf[pending.head].t + horizon < ts_ns:
                self._learn(&pending.buf[pending.head], self._last_mid)
                _pop(pending)
            while pending.n and pending.buf[pending.head].t + horizon == ts_ns:
                self._learn(&pending.buf[pending.head], mid)
                _pop(pending)
        if not self._has_sample or ts_ns - self._sample_ns >= self._interval_ns:
            r = _push(pending)
            r.t = ts_ns
            r.a = mid
            r.b = book_imbalance
            r.c = flow_imbalance
            self._has_sample = True
            self._sample_ns = ts_ns
        self._last_ns = ts_ns
        self._last_mid = mid
        self._xb = book_imbalance
        self._xf = flow_imbalance

    cdef int _learn(self, Rec* sample, double mid_at_horizon) except -1:
        cdef double mid0 = sample.a, xb = sample.b, xf = sample.c
        cdef int64_t label_ts = sample.t + self._horizon_ns
        cdef double y = (mid_at_horizon - mid0) / mid0
        cdef double dt_s, forget, err, m11, m22, m12, det
        if self._has_label:
            dt_s = _div_ns(label_ts - self._label_ns)
            forget = _pypow(0.5, dt_s / self._half_life)
            self._a11 *= forget
            self._a12 *= forget
            self._a22 *= forget
            self._b1 *= forget
            self._b2 *= forget
            self._sse *= forget
            self._ss0 *= forget
            self._weight *= forget
        # Score first (out of sample), then learn.
        err = y - (self._beta0 * xb + self._beta1 * xf)
        self._sse += err * err
        self._ss0 += y * y
        self._weight += 1.0
        self._a11 += xb * xb
        self._a12 += xb * xf
        self._a22 += xf * xf
        self._b1 += xb * y
        self._b2 += xf * y
        m11, m22, m12 = self._a11 + self._ridge, self._a22 + self._ridge, self._a12
        det = m11 * m22 - m12 * m12
        if det == 0.0:
            raise ZeroDivisionError("float division by zero")
        self._beta0 = (m22 * self._b1 - m12 * self._b2) / det
        self._beta1 = (m11 * self._b2 - m12 * self._b1) / det
        self._n_labels += 1
        self._has_label = True
        self._label_ns = label_ts
        self._last_label = y
        return 0


# --- flow imbalance and trade arrival rate ------------------------------------------------------------------------


@cython.final
cdef class FlowImbalance:
    """Compiled :class:`apps.engine.estimators.flow.PyFlowImbalance`: ``update_trusted`` in C."""

    name = "flow_imbalance"

    cdef readonly object params
    cdef public double _tau_s, _buy, _sell, _w2
    cdef bint _has_t
    cdef int64_t _t
    cdef public int64_t _last_input_ns
    cdef double _z  # the snapshot's flow._z(ci_level)

    def __init__(self, params=None):
        from apps.engine.estimators.flow import FlowParams, _z

        self.params = (params or FlowParams()).validate()
        self._z = _z(self.params.ci_level)
        self._tau_s = self.params.half_life_s / math.log(2.0)
        self._buy = 0.0
        self._sell = 0.0
        self._w2 = 0.0
        self._has_t = False
        self._t = 0
        self._last_input_ns = 0

    @property
    def _t_ns(self):
        return _opt(self._has_t, self._t)

    def _decayed(self, now_ns):
        return _flow_ref()._decayed(self, now_ns)

    def update(self, ts_ns, size, aggressor):
        _flow_ref().update(self, ts_ns, size, aggressor)

    cpdef update_trusted(self, int64_t ts_ns, double size, long aggressor):
        """:meth:`update` without the input checks (``aggressor`` an int ±1)."""
        cdef int64_t t
        cdef double f
        if not self._has_t:
            t = ts_ns
        elif ts_ns > self._t:
            t = self._t
            f = _exp(-_div_ns(ts_ns - t) / self._tau_s)
            self._buy *= f
            self._sell *= f
            self._w2 = self._w2 * f * f
            t = ts_ns
        else:
            t = self._t
        if aggressor == 1:
            self._buy += size
        else:
            self._sell += size
        self._w2 += size * size
        self._has_t = True
        self._t = t
        if ts_ns > self._last_input_ns:
            self._last_input_ns = ts_ns

    def snapshot(self, now_ns):
        """The reference's snapshot, in C (its operations on the same doubles)."""
        cdef int64_t now
        if not _as_ns(now_ns, &now):
            return _flow_ref().snapshot(self, now_ns)
        return self._snapshot_ns(now_ns, now)

    cdef object _snapshot_ns(self, object now_ns, int64_t now):
        # snapshot(now_ns) for an int time within ±2**62 (now is its value): MarketStep calls this directly
        if not _ns_in(self._last_input_ns) or not _ns_in(self._t):
            return _flow_ref().snapshot(self, now_ns)
        return self._c_snapshot(now)

    cdef object _c_snapshot(self, int64_t now):
        p = self.params
        cdef double buy = 0.0, sell = 0.0, w2 = 0.0, f, total, v, sd, z = self._z, m
        cdef int64_t d
        if self._has_t:  # _decayed
            d = now - self._t
            f = _exp(-_div_ns(d if d > 0 else 0) / self._tau_s)
            buy = self._buy * f
            sell = self._sell * f
            w2 = self._w2 * f * f
        total = buy + sell
        value = std = lo = hi = _NAN_OBJ
        if total > 0:
            v = (buy - sell) / total
            m = _pymax(1.0 - v * v, 0.0)
            if m * w2 < 0:
                return _flow_ref().snapshot(self, now)  # (math.sqrt's ValueError there)
            sd = sqrt(m * w2) / total
            value, std = v, sd
            lo, hi = _pymax(v - z * sd, -1.0), _pymin(v + z * sd, 1.0)
        detail = {
            "buy_volume": buy,
            "sell_volume": sell,
            "n_eff": total * total / w2 if w2 > 0 else 0.0,
            "half_life_s": p.half_life_s,
        }
        if not self._has_t:
            state, msg = _WARMING, "no trades yet"
        elif _div_ns(now - self._last_input_ns) > <double>p.stale_after_s:
            state, msg = _STALE, f"no trade for more than {p.stale_after_s:g} s"
        elif total < <double>p.min_volume or total <= 0:
            state, msg = _WARMING, f"decayed volume {total:g} below min_volume {p.min_volume:g}"
        else:
            state, msg = _OK, ""
        return _snapshot(self.name, value, std, state, self._last_input_ns, lo, hi, detail, msg)


@cython.final
cdef class TradeArrivalRate:
    """Compiled :class:`apps.engine.estimators.flow.PyTradeArrivalRate`: ``update_trusted`` in C."""

    name = "trade_rate"

    cdef readonly object params
    cdef public double _tau_s, _count
    cdef public int64_t _trades, _last_input_ns
    cdef bint _started
    cdef int64_t _t, _start
    cdef double _z  # the snapshot's flow._z(ci_level)

    def __init__(self, params=None):
        from apps.engine.estimators.flow import ArrivalParams, _z

        self.params = (params or ArrivalParams()).validate()
        self._z = _z(self.params.ci_level)
        self._tau_s = self.params.half_life_s / math.log(2.0)
        self._count = 0.0
        self._trades = 0
        self._started = False
        self._t = self._start = 0
        self._last_input_ns = 0

    @property
    def _t_ns(self):
        return _opt(self._started, self._t)

    @property
    def _start_ns(self):
        return _opt(self._started, self._start)

    def start(self, int64_t ts_ns):
        """Start the exposure clock without a trade (e.g. at session start), so quiet time counts."""
        if not self._started:
            self._started = True
            self._start = ts_ns
            self._t = ts_ns
            if ts_ns > self._last_input_ns:
                self._last_input_ns = ts_ns

    def update(self, ts_ns, count=1):
        _arrival_ref().update(self, ts_ns, count)

    cpdef update_trusted(self, int64_t ts_ns, int64_t count=1):
        """:meth:`update` without the input check."""
        if not self._started:
            self.start(ts_ns)
        self._trades += count
        if ts_ns > self._t:
            self._count = self._count * _exp(-_div_ns(ts_ns - self._t) / self._tau_s) + count
            self._t = ts_ns
        else:
            self._count += count
        if ts_ns > self._last_input_ns:
            self._last_input_ns = ts_ns

    def snapshot(self, now_ns):
        """The reference's snapshot, in C (its operations on the same doubles)."""
        cdef int64_t now_in
        if not _as_ns(now_ns, &now_in):
            return _arrival_ref().snapshot(self, now_ns)
        return self._snapshot_ns(now_ns, now_in)

    cdef object _snapshot_ns(self, object now_ns, int64_t now_in):
        # snapshot(now_ns) for an int time within ±2**62 (now_in is its value): MarketStep calls this directly
        if not _ns_in(self._last_input_ns) or not _ns_in(self._t) or not _ns_in(self._start):
            return _arrival_ref().snapshot(self, now_ns)
        return self._c_snapshot(now_in)

    cdef object _c_snapshot(self, int64_t now_in):
        p = self.params
        cdef double tau = self._tau_s, n, age_s, exposure, v, var_n, sd, z = self._z
        cdef int64_t now
        if not self._started:
            return _snapshot(self.name, _NAN_OBJ, _NAN_OBJ, _WARMING, 0, _NAN_OBJ, _NAN_OBJ, {}, "no input yet")
        now = now_in if now_in >= self._t else self._t  # max(now_ns, self._t_ns)
        n = self._count * _exp(_div_ns(-(now - self._t)) / tau)
        age_s = _div_ns(now - self._start)
        exposure = tau * -_expm1(-age_s / tau)
        value = std = lo = hi = _NAN_OBJ
        if exposure > 0:
            v = n / exposure
            var_n = v * 0.5 * tau * -_expm1(-2.0 * age_s / tau)
            sd = sqrt(_pymax(var_n, 0.0)) / exposure
            value, std = v, sd
            lo, hi = _pymax(v - z * sd, 0.0), v + z * sd
        detail = {
            "decayed_count": n,
            "trades": <double>self._trades,
            "exposure_s": exposure,
            "half_life_s": p.half_life_s,
        }
        if _div_ns(now_in - self._last_input_ns) > <double>p.stale_after_s:
            state, msg = _STALE, f"no input for more than {p.stale_after_s:g} s"
        elif self._trades < p.min_trades:
            state, msg = (
                _WARMING,
                f"{self._trades} trades since the start, below min_trades {p.min_trades:g}",
            )
        elif not (isfinite(<double>value) and <double>value <= <double>p.lambda_max):
            state, msg = _FAILED, f"rate {value:.4g}/s above lambda_max {p.lambda_max:g}/s"
        else:
            state, msg = _OK, ""
        return _snapshot(self.name, value, std, state, self._last_input_ns, lo, hi, detail, msg)


# --- Hawkes intensity -------------------------------------------------------------------------------------------


@cython.final
cdef class HawkesIntensity:
    """Compiled :class:`apps.engine.estimators.hawkes.PyHawkesIntensity`: ``update`` in C; the reads are the
    reference's functions on this state."""

    cdef object _params
    cdef public object cov, name
    cdef public double _s, _d_s
    cdef public int64_t _last_ns, _n_events
    cdef double _beta

    def __init__(self, params, *, cov=None, name="hawkes_intensity"):
        import numpy as np

        self.params = params.validate()
        self.cov = None if cov is None else np.asarray(cov, dtype=float).reshape(3, 3)
        self.name = name
        self._s = 0.0
        self._d_s = 0.0
        self._last_ns = 0
        self._n_events = 0
        self._beta = self.params.beta_per_s

    @property
    def params(self):
        return self._params

    @params.setter
    def params(self, value):  # FillCascade adopts a fit by replacing its intensities' parameters
        self._params = value
        self._beta = value.beta_per_s

    @classmethod
    def from_fit(cls, fit, *, name="hawkes_intensity"):
        """Intensity with fitted parameters; raises ValueError when the fit is not usable."""
        return _hawkes_ref().from_fit.__func__(cls, fit, name=name)

    @property
    def n_events(self):
        return self._n_events

    @property
    def last_event_ns(self):
        return self._last_ns

    def _decayed(self, now_ns):
        return _hawkes_ref()._decayed(self, now_ns)

    cpdef update(self, int64_t ts_ns):
        """Register one event at ``ts_ns`` (ns). Events must come in non-decreasing time."""
        cdef double s = 0.0, d_s = 0.0, dt_s, decay
        if self._n_events != 0:
            dt_s = _div_ns(ts_ns - self._last_ns)
            if dt_s < 0:
                raise ValueError(f"{self.name}: time went backwards ({ts_ns} < last event {self._last_ns})")
            decay = _exp(-self._beta * dt_s)
            s = decay * self._s
            d_s = decay * (self._d_s + dt_s * self._s)
        self._s = s + 1.0
        self._d_s = d_s
        self._last_ns = ts_ns
        self._n_events += 1

    def decayed_count(self, now_ns):
        return _hawkes_ref().decayed_count(self, now_ns)

    def excess_intensity(self, now_ns):
        return _hawkes_ref().excess_intensity(self, now_ns)

    def intensity(self, now_ns):
        return _hawkes_ref().intensity(self, now_ns)

    def intensity_std(self, now_ns):
        return _hawkes_ref().intensity_std(self, now_ns)

    def snapshot(self, now_ns):
        return _hawkes_ref().snapshot(self, now_ns)


def kernel_sums(gaps_s, beta):
    """:func:`apps.engine.estimators.hawkes.py_kernel_sums` (the Hawkes likelihood's recursions) with its loop in C:
    the same decays (NumPy's ``exp`` of the same product, computed here exactly as there), then the same two
    multiplications and one subtraction per event, in the same order, on the same doubles. A fit calls this ~90
    times on a window of a few thousand trades; the reference spends ~0.1 ms per call in its Python loop."""
    np = _numpy()
    if type(gaps_s) is not np.ndarray or gaps_s.ndim != 1:  # not what a fit passes: the reference's own behaviour
        from apps.engine.estimators.hawkes import py_kernel_sums

        return py_kernel_sums(gaps_s, beta)
    decay_arr = np.exp(-beta * gaps_s)
    cdef const double[::1] e = np.ascontiguousarray(decay_arr, dtype=np.float64)
    cdef const double[::1] g = np.ascontiguousarray(gaps_s, dtype=np.float64)  # (float32 widens exactly, as tolist)
    cdef Py_ssize_t n = e.shape[0] + 1, i
    if g.shape[0] != e.shape[0]:
        raise ValueError(f"kernel_sums: {g.shape[0]} gaps but {e.shape[0]} decays")
    a_arr = np.zeros(n)
    b_arr = np.zeros(n)
    cdef double[::1] av = a_arr
    cdef double[::1] bv = b_arr
    cdef double a = 0.0, b = 0.0, one_plus_a, ei
    for i in range(1, n):
        ei = e[i - 1]
        one_plus_a = 1.0 + a
        b = ei * (b - g[i - 1] * one_plus_a)
        a = ei * one_plus_a
        av[i] = a
        bv[i] = b
    return a_arr, b_arr


def loglik_derivs(rel_t, gaps, length_s, mu, alpha, beta):
    """:func:`apps.engine.estimators.hawkes.py_loglik_derivs` (the Hawkes log-likelihood, its gradient and Hessian)
    in C: the same pass over the events, the same libm ``exp``/``log`` and the same operations on the same doubles,
    every sum in event order, so the result is the reference's bit for bit. Anything but two 1-D float64 arrays and
    float parameters (β ≠ 0) runs the reference itself."""
    np = _numpy()
    if (
        type(rel_t) is not np.ndarray or type(gaps) is not np.ndarray or rel_t.ndim != 1 or gaps.ndim != 1
        or rel_t.dtype != np.float64 or gaps.dtype != np.float64
        or not isinstance(length_s, float) or not isinstance(mu, float) or not isinstance(alpha, float)
        or not isinstance(beta, float) or beta == 0.0
    ):  # (np.float64 is a float; β = 0 raises in the reference)
        from apps.engine.estimators.hawkes import py_loglik_derivs

        return py_loglik_derivs(rel_t, gaps, length_s, mu, alpha, beta)
    cdef const double[::1] t = np.ascontiguousarray(rel_t)
    cdef const double[::1] g = np.ascontiguousarray(gaps)
    cdef Py_ssize_t n = t.shape[0]
    if g.shape[0] != (n - 1 if n > 0 else 0):
        raise ValueError(f"loglik_derivs: {g.shape[0]} gaps for {n} events")
    cdef double out[10]
    cdef int early
    if n == 0:
        early = _ll_derivs(NULL, NULL, 0, length_s, mu, alpha, beta, out)
    else:
        early = _ll_derivs(&t[0], &g[0] if n > 1 else NULL, n, length_s, mu, alpha, beta, out)
    if early:  # some λ_i <= 0 (the reference's early return)
        nan = math.nan
        return -math.inf, (nan, nan, nan), (nan, nan, nan, nan, nan, nan)
    return out[0], (out[1], out[2], out[3]), (out[4], out[5], out[6], out[7], out[8], out[9])


cdef int _ll_derivs(
    const double* t, const double* g, Py_ssize_t n, double L, double m, double al, double be, double* out
) noexcept nogil:
    """py_loglik_derivs' pass in C: out = (ℓ, ℓ_μ, ℓ_α, ℓ_β, ℓ_μμ, ℓ_μα, ℓ_μβ, ℓ_αα, ℓ_αβ, ℓ_ββ) and 0; (−∞, NaN × 9)
    and 1 where some λ_i <= 0 (the reference's early return). The same operations in the same order as the reference (β³ must not be 0: the caller's test)."""
    cdef Py_ssize_t i, k
    cdef double neg_beta = -be
    cdef double a = 0.0, b = 0.0, c = 0.0, e, gi, one_plus_a, b_new, lam, tail, et, inv, inv2
    cdef double s_log = 0.0, s_inv = 0.0, s_a = 0.0, s_b = 0.0, s_c = 0.0
    cdef double s_ii = 0.0, s_ai = 0.0, s_bi = 0.0, s_aa = 0.0, s_ab = 0.0, s_bb = 0.0
    cdef double s1 = 0.0, s1p = 0.0, s1pp = 0.0
    for i in range(n):
        if i:
            gi = g[i - 1]
            e = exp(neg_beta * gi)
            one_plus_a = 1.0 + a
            b_new = e * (b - gi * one_plus_a)
            c = -gi * b_new + e * (c - gi * b)
            b = b_new
            a = e * one_plus_a
        lam = m + al * a
        if lam <= 0.0:
            out[0] = -INFINITY
            for k in range(1, 10):
                out[k] = _NAN
            return 1
        tail = L - t[i]
        et = exp(neg_beta * tail)
        s1 += 1.0 - et
        s1p += tail * et
        s1pp += tail * tail * et
        s_log += log(lam)
        inv = 1.0 / lam
        inv2 = inv * inv
        s_inv += inv
        s_a += a * inv
        s_b += b * inv
        s_c += c * inv
        s_ii += inv2
        s_ai += a * inv2
        s_bi += b * inv2
        s_aa += a * a * inv2
        s_ab += a * b * inv2
        s_bb += b * b * inv2
    # the reference's closing expressions, in its order
    cdef double beta2 = be * be
    out[0] = s_log - m * L - al / be * s1
    out[1] = s_inv - L
    out[2] = s_a - s1 / be
    out[3] = al * s_b + al / beta2 * s1 - al / be * s1p
    out[4] = -s_ii
    out[5] = -s_ai
    out[6] = -al * s_bi
    out[7] = -s_aa
    out[8] = s_b - al * s_ab + s1 / beta2 - s1p / be
    out[9] = al * s_c - al * al * s_bb - 2.0 * al * s1 / (beta2 * be) + 2.0 * al * s1p / beta2 + al * s1pp / be
    return 0


cdef object _HAWKES_MOD = None


cdef object _hawkes_mod():
    global _HAWKES_MOD
    if _HAWKES_MOD is None:
        from apps.engine.estimators import hawkes

        _HAWKES_MOD = hawkes
    return _HAWKES_MOD


cdef double _GTOL = 1e-9  # hawkes._GTOL, _MAX_ITER, _MAX_STEP (maximise declines when the module's differ)
cdef int _MAX_ITER = 200
cdef double _MAX_STEP = 1.0


cdef inline double _pmax(double a, double b) noexcept nogil:
    # Python's max(a, b) on floats: a unless b > a (so a NaN first argument stays)
    return b if b > a else a


cdef inline double _pmin(double a, double b) noexcept nogil:
    # Python's min(a, b) on floats: a unless b < a
    return b if b < a else a


cdef int _log_space_c(
    const double* t, const double* g, Py_ssize_t n, double L, const double* x, double* f, double* gu, double* hu,
    double* hn
) noexcept nogil:
    """hawkes._log_space in C: f, gu[3], hu[3][3] (row-major) and the natural Hessian hn[6]; −1 where β³ is 0 (the
    reference's Python divisions would raise where C's give inf: the caller then runs the reference)."""
    cdef double p[3]
    cdef double out[10]
    cdef double full[9]
    cdef int k, j
    for k in range(3):
        p[k] = exp(x[k])
    if p[2] * p[2] * p[2] == 0.0:
        return -1
    _ll_derivs(t, g, n, L, p[0], p[1], p[2], out)
    f[0] = out[0]
    for k in range(6):
        hn[k] = out[4 + k]
    full[0] = hn[0]; full[1] = hn[1]; full[2] = hn[2]
    full[3] = hn[1]; full[4] = hn[3]; full[5] = hn[4]
    full[6] = hn[2]; full[7] = hn[4]; full[8] = hn[5]
    for k in range(3):
        gu[k] = p[k] * out[1 + k]
    for k in range(3):
        for j in range(3):
            hu[3 * k + j] = p[k] * p[j] * full[3 * k + j] + (gu[k] if k == j else 0.0)
    return 0


cdef bint _cholesky_solve_c(const double* m, const double* v, int n, double* x) noexcept nogil:
    """hawkes._cholesky_solve for n <= 3 (m row-major n × n): False where the reference returns None."""
    cdef double low[9]
    cdef double y[3]
    cdef double acc
    cdef int i, j, k
    for i in range(9):
        low[i] = 0.0
    for i in range(n):
        for j in range(i + 1):
            acc = m[n * i + j]
            for k in range(j):
                acc -= low[3 * i + k] * low[3 * j + k]
            if i == j:
                if not acc > 0.0:
                    return False
                low[3 * i + i] = sqrt(acc)
            else:
                low[3 * i + j] = acc / low[3 * j + j]
    for i in range(n):
        acc = v[i]
        for k in range(i):
            acc -= low[3 * i + k] * y[k]
        y[i] = acc / low[3 * i + i]
    for i in range(n - 1, -1, -1):
        acc = y[i]
        for k in range(i + 1, n):
            acc -= low[3 * k + i] * x[k]
        x[i] = acc / low[3 * i + i]
    return True


cdef int _maximise_c(
    const double* t, const double* g, Py_ssize_t n, double L, const double* lo, const double* hi, double* x,
    double* f, double* hn, int* iters
) noexcept nogil:
    """hawkes.py_maximise's loop in C, the same operations in the same order on the same doubles. x holds the start
    (already clipped) and ends at the optimum's x; returns 0 "not finite at the start", 1 "converged: projected
    gradient", 2 "converged: the step moves nothing", 3 "no step raises", 4 "no convergence", −1: decline (the caller
    runs the reference from the start)."""
    cdef double gr[3]
    cdef double h[9]
    cdef double x_new[3]
    cdef double f_new, g_new[3], h_new[9], hn_new[6]
    cdef double gf[3]
    cdef double m[9]
    cdef double d[3]
    cdef int free[3]
    cdef int nf, k, j, a, b, it, same, moved
    cdef double tol, big, v, damp, s
    if _log_space_c(t, g, n, L, x, f, gr, h, hn) < 0:
        return -1
    if not isfinite(f[0]):
        iters[0] = 0
        return 0
    damp = 0.0
    for it in range(1, _MAX_ITER + 1):
        nf = 0
        for k in range(3):
            if not ((x[k] <= lo[k] and gr[k] <= 0.0) or (x[k] >= hi[k] and gr[k] >= 0.0)):
                free[nf] = k
                nf += 1
        tol = _GTOL * (1.0 + fabs(f[0]))
        if nf == 0:
            iters[0] = it - 1
            return 1
        big = fabs(gr[free[0]])
        for a in range(1, nf):
            v = fabs(gr[free[a]])
            if v > big:
                big = v
        if big <= tol:
            iters[0] = it - 1
            return 1
        for a in range(nf):
            gf[a] = gr[free[a]]
        while True:
            for a in range(nf):
                k = free[a]
                for b in range(nf):
                    j = free[b]
                    m[nf * a + b] = -h[3 * k + j] + (damp * _pmax(fabs(h[3 * k + k]), 1e-300) if k == j else 0.0)
            if _cholesky_solve_c(m, gf, nf, d):
                big = fabs(d[0])
                for a in range(1, nf):
                    v = fabs(d[a])
                    if v > big:
                        big = v
                if big > _MAX_STEP:
                    s = _MAX_STEP / big
                    for a in range(nf):
                        d[a] = d[a] * s
                for k in range(3):
                    x_new[k] = x[k]
                for a in range(nf):
                    k = free[a]
                    x_new[k] = _pmin(_pmax(x[k] + d[a], lo[k]), hi[k])
                same = 1
                for k in range(3):
                    if not (x_new[k] == x[k]):
                        same = 0
                if same:
                    moved = 0
                    for a in range(nf):
                        k = free[a]
                        if not (x[k] + d[a] == x[k]):
                            moved = 1
                    if not moved:
                        iters[0] = it - 1
                        return 2
                else:
                    if _log_space_c(t, g, n, L, x_new, &f_new, g_new, h_new, hn_new) < 0:
                        return -1
                    if f_new >= f[0]:
                        for k in range(3):
                            x[k] = x_new[k]
                            gr[k] = g_new[k]
                        f[0] = f_new
                        for k in range(9):
                            h[k] = h_new[k]
                        for k in range(6):
                            hn[k] = hn_new[k]
                        damp = 0.0 if damp <= 1e-6 else damp / 10.0
                        break
            damp = 1e-6 if damp == 0.0 else damp * 10.0
            if damp > 1e12:
                iters[0] = it
                return 3
    iters[0] = _MAX_ITER
    return 4


def maximise(rel_t, gaps, length_s, x0, bounds):
    """:func:`apps.engine.estimators.hawkes.py_maximise` (the Hawkes fit's damped, projected Newton ascent) in C: the
    likelihood pass (as :func:`loglik_derivs`), the log-space gradient and Hessian, the Cholesky solve and the step's
    projection, each the reference's operations in its order on the same doubles, so the optimum, its likelihood,
    Hessian, iteration count and message are the reference's bit for bit. Declines (runs the reference itself) for
    anything but two 1-D float64 arrays of n and n − 1 values, a float length, three finite floats in ``x0`` and three
    (lo, hi) pairs of finite floats in ``bounds``, when the module's constants are not those compiled here, and where
    a step reaches β³ = 0 (the reference's Python divisions raise there)."""
    np = _numpy()
    hk = _hawkes_mod()
    cdef double lo[3]
    cdef double hi[3]
    cdef double x[3]
    cdef double f = 0.0
    cdef double hn[6]
    cdef int iters = 0, k, code
    ok = (
        type(rel_t) is np.ndarray and type(gaps) is np.ndarray and rel_t.ndim == 1 and gaps.ndim == 1
        and rel_t.dtype == np.float64 and gaps.dtype == np.float64 and type(length_s) is float
        and type(x0) is list and len(x0) == 3 and type(bounds) is list and len(bounds) == 3
        and hk._GTOL == _GTOL and hk._MAX_ITER == _MAX_ITER and hk._MAX_STEP == _MAX_STEP
        and hk._loglik_derivs is loglik_derivs
    )
    if ok:
        for k in range(3):
            v = x0[k]
            bk = bounds[k]
            if (
                type(v) is not float or type(bk) is not tuple or len(bk) != 2 or type(bk[0]) is not float
                or type(bk[1]) is not float
            ):
                ok = False
                break
            x[k] = v
            lo[k] = bk[0]
            hi[k] = bk[1]
            if not (isfinite(x[k]) and isfinite(lo[k]) and isfinite(hi[k])):
                ok = False
                break
    if not ok:
        return hk.py_maximise(rel_t, gaps, length_s, x0, bounds)
    cdef const double[::1] t = np.ascontiguousarray(rel_t)
    cdef const double[::1] g = np.ascontiguousarray(gaps)
    cdef Py_ssize_t n = t.shape[0]
    if n < 2 or g.shape[0] != n - 1:
        return hk.py_maximise(rel_t, gaps, length_s, x0, bounds)
    for k in range(3):
        x[k] = _pmin(_pmax(x[k], lo[k]), hi[k])
    code = _maximise_c(&t[0], &g[0], n, length_s, lo, hi, x, &f, hn, &iters)
    if code < 0:
        return hk.py_maximise(rel_t, gaps, length_s, x0, bounds)
    if code == 0:
        message, success = "the likelihood is not finite at the start", False
    elif code == 1:
        message, success = "converged: projected gradient within tolerance", True
    elif code == 2:
        message, success = "converged: the step moves nothing", True
    elif code == 3:
        message, success = "no step raises the likelihood", False
    else:
        message, success = f"no convergence in {_MAX_ITER} iterations", False
    return hk._Optimum((x[0], x[1], x[2]), f, success, message, iters, (hn[0], hn[1], hn[2], hn[3], hn[4], hn[5]))


# --- κ from the trade tape: the window and its running sums ---------------------------------------------------

cdef object _REF_KAPPA = None


cdef object _kappa_mod():
    global _REF_KAPPA
    if _REF_KAPPA is None:
        from apps.engine.estimators import kappa

        _REF_KAPPA = kappa
    return _REF_KAPPA


# --- κ's Gamma posterior in C -------------------------------------------------------------------------------------
#
# kappa.gamma_posterior calls scipy.special.gammaincinv on two scalars: two passes through the ufunc machinery (~15k
# instructions each) around a C function that scipy also exports, for Cython callers, as
# scipy.special.cython_special.__pyx_capi__["gammaincinv"]. That entry point is looked up here at run time, once (scipy
# stays a run-time dependency only): a capsule whose name is exactly the C signature below, its pointer taken with that
# name. The ufunc's double loop and this entry point run the same kernel, so the quantiles have the same bits
# (tests/engine/estimators/test_reads_equivalence.py checks that over the recordings' range and far beyond). Without
# the capsule, with a capsule of another signature, or for an input where the reference raises or the quantile is NaN,
# the caller runs kappa.gamma_posterior itself.

ctypedef double (*_GammaIncInvFn)(double, double, int) noexcept nogil

cdef const char* _GAMMAINCINV_SIG = b"double (double, double, int __pyx_skip_dispatch)"
cdef _GammaIncInvFn _GAMMAINCINV = NULL
cdef int _GAMMAINCINV_LOOKED = 0  # 1 once the capsule was looked for (found or not)
cdef object _CYTHON_SPECIAL = None  # the module that owns the function, kept referenced


cdef void* _special_entry(str key, const char* sig) noexcept:
    """The C function scipy.special.cython_special exports under ``key`` when its capsule's name is exactly ``sig``
    (its C signature), else NULL (no scipy, no such entry, another signature). The module is kept referenced."""
    global _CYTHON_SPECIAL
    cdef const char* name
    cdef void* ptr
    try:
        from scipy.special import cython_special

        cap = cython_special.__pyx_capi__[key]
        if PyCapsule_CheckExact(cap):
            name = PyCapsule_GetName(cap)
            if name != NULL and strcmp(name, sig) == 0:
                ptr = PyCapsule_GetPointer(cap, name)
                if ptr != NULL:
                    _CYTHON_SPECIAL = cython_special
                    return ptr
    except Exception:
        pass
    return NULL


cdef bint _have_gammaincinv() noexcept:
    global _GAMMAINCINV, _GAMMAINCINV_LOOKED
    if not _GAMMAINCINV_LOOKED:
        _GAMMAINCINV_LOOKED = 1
        _GAMMAINCINV = <_GammaIncInvFn>_special_entry("gammaincinv", _GAMMAINCINV_SIG)  # else the ufunc path
    return _GAMMAINCINV != NULL


def gammaincinv(double a, double y):
    """scipy's ``gammaincinv(a, y)`` through the C entry point :func:`gamma_posterior` uses; None when it is not
    available (then the compiled κ snapshot runs the reference's ufunc calls)."""
    if not _have_gammaincinv():
        return None
    return _GAMMAINCINV(a, y, 0)


cdef int _gamma_post(double n_eff, double sum_delta, double a0, double b0, double ci_level, double* out) noexcept:
    # kappa.gamma_posterior's (mean, std, ci_low, ci_high) into out: the same operations on the same doubles (math.sqrt
    # is the correctly rounded sqrt, float / float IEEE division). -1 where the reference is to run instead: no C entry
    # point, an input where it raises (math.sqrt of a negative shape, a zero rate) or a NaN quantile (the inputs the
    # kernel rejects, where the ufunc may also report an error).
    cdef double a = a0 + n_eff, b = b0 + sum_delta, tail = 0.5 * (1.0 - ci_level), lo, hi
    if not _have_gammaincinv() or not a >= 0.0 or b == 0.0:
        return -1
    lo = _GAMMAINCINV(a, tail, 0)
    hi = _GAMMAINCINV(a, 1.0 - tail, 0)
    if isnan(lo) or isnan(hi):
        return -1
    out[0] = a / b
    out[1] = sqrt(a) / b
    out[2] = lo / b
    out[3] = hi / b
    return 0


def gamma_posterior(n_eff, sum_delta, prior_shape, prior_rate, ci_level=0.95):
    """:func:`apps.engine.estimators.kappa.gamma_posterior` with the quantiles from scipy's C entry point
    (:func:`_gamma_post`): the same KappaPosterior, bit for bit
    (the reference itself for arguments that are not all floats, or where :func:`_gamma_post` declines)."""
    cdef double out[4]
    if (
        type(n_eff) is float and type(sum_delta) is float and type(prior_shape) is float
        and type(prior_rate) is float and type(ci_level) is float
        and _gamma_post(n_eff, sum_delta, prior_shape, prior_rate, ci_level, out) == 0
    ):
        return _kappa_mod().KappaPosterior(out[0], out[1], out[2], out[3])
    return _kappa_mod().gamma_posterior(n_eff, sum_delta, prior_shape, prior_rate, ci_level)


# --- κ's tick posterior: its mode in C ---------------------------------------------------------------------------
#
# kappa.tick_mode's derivative of the log posterior in u = ln κ, its bracket and its root, the same operations on
# the same doubles (exp and expm1 are the libm calls CPython's math makes). The root is found by Brent's method as
# scipy.optimize.brentq does it (xtol 1e-12, its default rtol 4·eps and 100 iterations): keep a bracket [cur, blk]
# with the best point cur, try the secant step (two points) or inverse quadratic interpolation (three), take it
# only if it is short enough compared with the previous step and the half bracket, else bisect; never step less
# than the tolerance. Wherever the reference would raise (an overflowing exp, a division by a zero expm1, a NaN
# inside the root search, no convergence) or loop on, this returns -1 and the caller runs the reference itself.

cdef struct TickLogPost:
    double a0, b0, n, s, tau
    bint bad  # the reference would have raised (OverflowError, ZeroDivisionError)


cdef inline double _dlogpost(TickLogPost* p, double log_k) noexcept nogil:
    # a0 + k·(nτ/expm1(kτ) − b0 − S), k = e^u (kappa.tick_mode's dlogpost)
    cdef double k = exp(log_k), x, e, touch
    if isinf(k) and isfinite(log_k):
        p.bad = True  # math.exp: OverflowError
    x = k * p.tau
    if x < 700.0:
        e = expm1(x)
        if e == 0.0:
            p.bad = True  # ZeroDivisionError
            return _NAN
        touch = p.n * p.tau / e
    else:
        touch = 0.0
    return p.a0 + k * (touch - p.b0 - p.s)


cdef double _BRENT_RTOL = 4.0 * 2.220446049250313e-16  # brentq's default rtol, 4 · machine epsilon
cdef int _BRENT_MAXITER = 100


cdef int _brent_root(TickLogPost* p, double a, double b, double xtol, double* root) noexcept nogil:
    # the root of _dlogpost in [a, b] (f(a) > 0 > f(b) here), as brentq finds it; -1 where brentq would raise
    cdef double x_prev = a, x_cur = b, x_blk = 0.0
    cdef double f_prev = _dlogpost(p, x_prev), f_cur, f_blk = 0.0
    cdef double s_prev = 0.0, s_cur = 0.0, s_bis, tol, s_try, d_prev, d_blk, t
    cdef int it
    if p.bad or isnan(f_prev):
        return -1
    f_cur = _dlogpost(p, x_cur)
    if p.bad or isnan(f_cur):
        return -1
    if f_prev == 0.0:
        root[0] = x_prev
        return 0
    if f_cur == 0.0:
        root[0] = x_cur
        return 0
    if signbit(f_prev) == signbit(f_cur):
        return -1
    for it in range(_BRENT_MAXITER):
        if f_prev != 0.0 and f_cur != 0.0 and signbit(f_prev) != signbit(f_cur):
            # the root lies between prev and cur: prev becomes the bracket's far end
            x_blk = x_prev
            f_blk = f_prev
            s_prev = x_cur - x_prev
            s_cur = s_prev
        if fabs(f_blk) < fabs(f_cur):
            # keep the smaller |f| in cur (prev takes the old cur)
            x_prev = x_cur
            x_cur = x_blk
            x_blk = x_prev
            f_prev = f_cur
            f_cur = f_blk
            f_blk = f_prev
        tol = (xtol + _BRENT_RTOL * fabs(x_cur)) / 2
        s_bis = (x_blk - x_cur) / 2
        if f_cur == 0.0 or fabs(s_bis) < tol:
            root[0] = x_cur
            return 0
        if fabs(s_prev) > tol and fabs(f_cur) < fabs(f_prev):
            if x_prev == x_blk:  # two distinct points: the secant
                s_try = -f_cur * (x_cur - x_prev) / (f_cur - f_prev)
            else:  # three: inverse quadratic interpolation
                d_prev = (f_prev - f_cur) / (x_prev - x_cur)
                d_blk = (f_blk - f_cur) / (x_blk - x_cur)
                s_try = -f_cur * (f_blk * d_blk - f_prev * d_prev) / (d_blk * d_prev * (f_blk - f_prev))
            t = 3 * fabs(s_bis) - tol
            if fabs(s_prev) < t:
                t = fabs(s_prev)
            if 2 * fabs(s_try) < t:  # short enough: take it
                s_prev = s_cur
                s_cur = s_try
            else:
                s_prev = s_bis
                s_cur = s_bis
        else:
            s_prev = s_bis
            s_cur = s_bis
        x_prev = x_cur
        f_prev = f_cur
        if fabs(s_cur) > tol:
            x_cur += s_cur
        else:
            x_cur += tol if s_bis > 0 else -tol
        f_cur = _dlogpost(p, x_cur)
        if p.bad or isnan(f_cur):
            return -1
    return -1  # no convergence: brentq's RuntimeError


cdef int _tick_mode(TickLogPost* p, double* u_mode, double* curv) noexcept nogil:
    # kappa.tick_mode on finite inputs with τ ≥ 1e-300; -1 where the reference would raise or loop on
    cdef double lo = log(1e-6 / p.tau), hi = log(1e3 / p.tau), f, h = 1e-4, fp, fm
    cdef int guard = 0
    while True:
        f = _dlogpost(p, lo)
        if p.bad or isnan(f):  # (a NaN ends the reference's loop; brentq then raises on it)
            return -1
        if not f <= 0:
            break
        lo -= 5.0
        guard += 1
        if guard > 10_000:
            return -1
    guard = 0
    while True:
        f = _dlogpost(p, hi)
        if p.bad or isnan(f):
            return -1
        if not f >= 0:
            break
        hi += 5.0
        guard += 1
        if guard > 10_000:
            return -1
    if _brent_root(p, lo, hi, 1e-12, u_mode) < 0:
        return -1
    fp = _dlogpost(p, u_mode[0] + h)
    fm = _dlogpost(p, u_mode[0] - h)
    if p.bad:
        return -1
    curv[0] = -(fp - fm) / (2 * h)
    return 0


def tick_mode(double n_eff, double sum_delta_beyond, double tick_frac, double prior_shape, double prior_rate):
    """:func:`apps.engine.estimators.kappa.tick_mode` with the derivative, its bracket and Brent's root search in C:
    the same ``(u_mode, curv)`` bits (the reference runs instead for inputs it would reject or where it raises)."""
    cdef TickLogPost p
    cdef double u_mode, curv
    p.a0 = prior_shape
    p.b0 = prior_rate
    p.n = n_eff
    p.s = sum_delta_beyond
    p.tau = tick_frac
    p.bad = False
    if (
        isfinite(n_eff) and isfinite(sum_delta_beyond) and isfinite(prior_shape) and isfinite(prior_rate)
        and isfinite(tick_frac) and tick_frac >= 1e-300
        and _tick_mode(&p, &u_mode, &curv) == 0
    ):
        return u_mode, curv
    return _kappa_mod().tick_mode(n_eff, sum_delta_beyond, tick_frac, prior_shape, prior_rate)


cdef int _tick_grid(
    double n, double s, double tau, double a0, double b0, double u_mode, double curv, double ci_level,
    Py_ssize_t n_grid, double* out,
) except -1:
    """:func:`apps.engine.estimators.kappa.tick_posterior_at_mode`'s grid in C, the same operations in the same order
    with the same C library functions, so the same bits: ``out`` = (mean, std, ci_low, ci_high)."""
    cdef double c = curv
    if 1e-12 > c:  # max(curv, 1e-12) as Python's max evaluates it (a NaN curv stays NaN)
        c = 1e-12
    cdef double sd_u = 1.0 / sqrt(c)
    cdef double u0 = u_mode - 12 * sd_u
    cdef double step = 24 * sd_u / <double>(n_grid - 1)
    cdef double neg_tau = -tau
    cdef double* buf = <double*>malloc(6 * n_grid * sizeof(double))
    if buf == NULL:
        raise MemoryError()
    cdef double* u = buf
    cdef double* k = buf + n_grid
    cdef double* w = buf + 2 * n_grid  # the log density first, then its weights
    cdef double* dlogp = buf + 4 * n_grid
    cdef double* ccdf = buf + 5 * n_grid
    cdef double top = -INFINITY, ui, ki, lp, w0, run = 0.0, kw_sum = 0.0, dev_sum = 0.0, d, d0, dl, z, mean, var
    cdef double tail, v, x, touch, h12, zc, half_step, wi, wp, cc
    cdef Py_ssize_t i, last = n_grid - 1
    for i in range(n_grid):
        ui = step * <double>i + u0
        ki = exp(ui)
        lp = a0 * ui - b0 * ki + n * log(-expm1(ki * neg_tau)) - ki * s
        x = ki * tau
        touch = _ieee_div(n * tau, expm1(x)) if x < 700.0 else 0.0
        u[i] = ui
        k[i] = ki
        w[i] = lp
        dlogp[i] = a0 + ki * (touch - b0 - s)
        if (isnan(lp) or lp > top) and not isnan(top):
            top = lp
    # the weights, their running sum (the trapezoid cdf: only its last value, z, is read), Σ k·w and the Hermite
    # cdf in one pass: each sum still adds the same terms in the same order
    h12 = step * step / 12.0
    half_step = 0.5 * step
    w0 = exp(w[0] - top)
    w[0] = w0
    run = w0
    kw_sum = k[0] * w0
    ccdf[0] = 0.0
    cc = 0.0
    wp = w0
    for i in range(1, n_grid):
        wi = exp(w[i] - top)
        w[i] = wi
        run += wi
        kw_sum += k[i] * wi
        cc = cc + half_step * (wp + wi) + h12 * (wp * dlogp[i - 1] - wi * dlogp[i])
        ccdf[i] = cc
        wp = wi
    z = (run - 0.5 * (w0 + w[last])) * step
    mean = _ieee_div(step * (kw_sum - 0.5 * (k[0] * w0 + k[last] * w[last])), z)
    for i in range(n_grid):
        d = k[i] - mean
        dev_sum += d * d * w[i]
    d0 = k[0] - mean
    dl = k[last] - mean
    var = _ieee_div(step * (dev_sum - 0.5 * (d0 * d0 * w0 + dl * dl * w[last])), z)
    zc = ccdf[last]
    tail = 0.5 * (1.0 - ci_level)
    v = var
    if 0.0 > v:  # max(var, 0.0)
        v = 0.0
    out[0] = mean
    out[1] = sqrt(v)
    out[2] = exp(_hermite_quantile(ccdf, w, u, n_grid, step, tail * zc))
    out[3] = exp(_hermite_quantile(ccdf, w, u, n_grid, step, (1.0 - tail) * zc))
    free(buf)
    return 0


cdef inline double _ieee_div(double a, double b) noexcept:
    """apps.engine.cfloat.c_div: a / b, and at b = 0 the value the reference gives (its NaN is Python's, with the same bits)."""
    if b != 0.0:
        return a / b
    if isnan(a) or a == 0.0:
        return _NAN
    return copysign(INFINITY, a) * copysign(1.0, b)


cdef double _hermite_quantile(
    const double* cdf, const double* w, const double* u, Py_ssize_t n, double step, double target
) noexcept:
    """kappa._hermite_quantile: the ``u`` where ``cdf`` first reaches ``target``, on the cubic Hermite interpolant
    between grid points (60 bisections), the same operations in the same order."""
    cdef Py_ssize_t i, j, it
    cdef double c0, c1, m0, m1, lo, hi, t, t2, t3, c
    for i in range(1, n):
        if cdf[i] >= target:
            j = i - 1
            c0 = cdf[j]
            c1 = cdf[i]
            if not c1 - c0 > 0.0:
                return u[i]
            m0 = step * w[j]
            m1 = step * w[i]
            lo = 0.0
            hi = 1.0
            for it in range(60):
                t = 0.5 * (lo + hi)
                t2 = t * t
                t3 = t2 * t
                c = (2.0 * t3 - 3.0 * t2 + 1.0) * c0 + (t3 - 2.0 * t2 + t) * m0 + (3.0 * t2 - 2.0 * t3) * c1 + (t3 - t2) * m1
                if c < target:
                    lo = t
                else:
                    hi = t
            return u[j] + 0.5 * (lo + hi) * step
    return target if isnan(target) else u[n - 1]


def tick_posterior_at_mode(
    double n_eff, double sum_delta_beyond, double tick_frac, double prior_shape, double prior_rate, double u_mode,
    double curv, double ci_level=0.95, n_grid=201,
):
    """:func:`apps.engine.estimators.kappa.tick_posterior_at_mode` with the grid in C (:func:`_tick_grid`): the same
    KappaPosterior, bit for bit."""
    if not (type(n_grid) is int and n_grid >= 2):
        return _kappa_mod().tick_posterior_at_mode(
            n_eff, sum_delta_beyond, tick_frac, prior_shape, prior_rate, u_mode, curv, ci_level, n_grid
        )  # (it raises the reference's error)
    cdef double out[4]
    _tick_grid(n_eff, sum_delta_beyond, tick_frac, prior_shape, prior_rate, u_mode, curv, ci_level, n_grid, out)
    return _kappa_mod().KappaPosterior(out[0], out[1], out[2], out[3])


def tick_posterior(n_eff, sum_delta_beyond, tick_frac, prior_shape, prior_rate, ci_level=0.95, n_grid=201):
    """:func:`apps.engine.estimators.kappa.tick_posterior` with its mode from :func:`tick_mode` and its grid from
    :func:`tick_posterior_at_mode`, both in C."""
    u_mode, curv = tick_mode(n_eff, sum_delta_beyond, tick_frac, prior_shape, prior_rate)
    return tick_posterior_at_mode(
        n_eff, sum_delta_beyond, tick_frac, prior_shape, prior_rate, u_mode, curv, ci_level, n_grid
    )


cdef int _tick_post(double n, double s, double tau, double a0, double b0, double ci_level, double* out) except -2:
    # tick_posterior(n, s, tau, a0, b0, ci_level) into out (mean, std, ci_low, ci_high) without the Python calls or
    # the KappaPosterior: the mode and the grid as tick_mode and tick_posterior_at_mode compute them (201 points). -1
    # where tick_mode would run the reference (the caller then calls tick_posterior itself).
    cdef TickLogPost p
    cdef double u_mode, curv
    p.a0 = a0
    p.b0 = b0
    p.n = n
    p.s = s
    p.tau = tau
    p.bad = False
    if not (
        isfinite(n) and isfinite(s) and isfinite(a0) and isfinite(b0) and isfinite(tau) and tau >= 1e-300
        and _tick_mode(&p, &u_mode, &curv) == 0
    ):
        return -1
    _tick_grid(n, s, tau, a0, b0, u_mode, curv, ci_level, 201, out)
    return 0


cdef struct Sums:
    double volume, delta_raw, delta_beyond, tick, at_touch
    int64_t count
    double thr_orders, thr_excess, thr_tick


cdef inline void _sums_add(Sums* s, double sign, Rec* r) noexcept nogil:
    # kappa._Sums.add, the same operations in the same order (r, one taker order: t, a = size, b = d_raw,
    # c = d_beyond, d = tau, k)
    cdef double tau = r.d
    cdef int64_t k = r.k
    s.volume += sign * r.a
    s.delta_raw += sign * r.b
    s.delta_beyond += sign * r.c
    s.tick += sign * tau
    if k == 0:
        s.at_touch += sign
    else:
        s.thr_orders += sign
        s.thr_excess += sign * (<double>(k - 1) * tau)
        s.thr_tick += sign * tau
    s.count += <int64_t>sign


cdef inline void _sums_zero(Sums* s) noexcept nogil:
    s.volume = s.delta_raw = s.delta_beyond = s.tick = s.at_touch = 0.0
    s.count = 0
    s.thr_orders = s.thr_excess = s.thr_tick = 0.0


cdef object _sums_object(Sums* s):
    return _kappa_mod()._Sums(
        s.volume, s.delta_raw, s.delta_beyond, s.tick, s.at_touch, s.count,
        s.thr_orders, s.thr_excess, s.thr_tick,
    )  # fmt: skip


# The goodness-of-fit cache (kappa._GofCache: computed_at_ns, n_updates, result) read by slot offset in the snapshot's
# freshness test, while it is that slotted class (looked up with the reference module, on the first estimator built)
cdef object _GOF_T = None
cdef object _GOF_RESULT_T = None  # kappa.ExpGoodnessOfFit: frozen, so its as_detail() is a function of the object
cdef Py_ssize_t _GOF_OFF[3]
cdef bint _GOF_SLOTS = False


cdef int _gof_layout(object km) except -1:
    global _GOF_T, _GOF_RESULT_T, _GOF_SLOTS
    if _GOF_T is None:
        _GOF_T = km._GofCache
        gof = km.ExpGoodnessOfFit
        _GOF_RESULT_T = gof if gof.__dataclass_params__.frozen else None
        _GOF_SLOTS = slot_offsets(_GOF_T, ("computed_at_ns", "n_updates", "result"), _GOF_OFF)
    return 0


# --- κ's goodness of fit on tick levels: kappa.exponential_gof_ticks with its per-trade arithmetic in C -------------
#
# The window's levels are non-negative integers below the window's size (where the reference's _small_levels takes
# its per-level table of q**j), so every per-trade value the reference computes (q**k, the CDF's bounds, log(k/k_min),
# k - k_min, the two log-likelihoods and their difference) is a function of the level alone: it is computed once per
# level here, with the very NumPy calls (``q ** arange``, ``np.log`` on a contiguous float64 array) or the same IEEE
# operations in the same order (C's + - * / on doubles, libm's log as math.log), and gathered per trade. What is not
# a per-level value is left to NumPy on arrays holding the reference's values in the reference's order: the generator's
# draws, the sort, and the pairwise sums (``.sum()``); σ of the differences is numpy's _var (the sum, divided by the
# count, the squared deviations' sum, divided, sqrt). The integer sums (the levels', the excesses') are exact in any
# order. The KS p-value is the reference's kstwo_sf, and the Vuong p-value its special.erfc. Levels at or beyond the
# window's size, a replaced reference function, or an input where a math.log would raise: the reference runs.

# kappa.kstwo_sf's common case on a κ window (a KS statistic of at least 1/2 on more than a couple of trades): scipy's
# _kolmogn takes 2 · smirnov(n, d), clipped to [0, 1], for its survival function. smirnov is the ufunc's 'ld->d' loop
# for an int n: the kernel that scipy.special.cython_special also exports for a long n (its capsule
# "__pyx_fuse_1smirnov", looked up at run time as gammaincinv's is). Everything else (no such capsule, a NaN, a
# statistic below 1/2 or at the Ruben-Gambino bounds, a negative zero) runs the reference's kstwo_sf.

ctypedef double (*_SmirnovFn)(long, double, int) noexcept nogil

cdef const char* _SMIRNOV_SIG = b"double (long, double, int __pyx_skip_dispatch)"
cdef _SmirnovFn _SMIRNOV = NULL
cdef int _SMIRNOV_LOOKED = 0


cdef bint _have_smirnov() noexcept:
    global _SMIRNOV, _SMIRNOV_LOOKED
    if not _SMIRNOV_LOOKED:
        _SMIRNOV_LOOKED = 1
        _SMIRNOV = <_SmirnovFn>_special_entry("__pyx_fuse_1smirnov", _SMIRNOV_SIG)  # else the reference's kstwo_sf
    return _SMIRNOV != NULL


cdef object _kstwo_sf(object km, double d, Py_ssize_t n):
    """``km.kstwo_sf(d, n)`` (a float), for an int n >= 1."""
    cdef double t, prob
    if (
        km.kstwo_sf is _KSTWO_SF and n < 2147483647 and d >= 0.5 and d < 1.0 and d > 0.5 / <double>n
        and _have_smirnov()
    ):
        t = <double>n * d
        if t > 1.0 and t < <double>(n - 1):
            prob = 2.0 * _SMIRNOV(<long>n, d, 0)
            if prob == prob and not (prob == 0.0 and signbit(prob)):
                if prob > 1.0:  # np.clip(prob, 0.0, 1.0)
                    prob = 1.0
                elif prob < 0.0:
                    prob = 0.0
                return prob
    return float(km.kstwo_sf(d, n))


def kstwo_sf(double d, Py_ssize_t n):
    """:func:`apps.engine.estimators.kappa.kstwo_sf` as the compiled goodness of fit computes it (for tests)."""
    if n < 1:
        return _kappa_mod().kstwo_sf(d, n)
    return _kstwo_sf(_kappa_mod(), d, n)


cdef object _GOF_FNS = None  # (exponential_gof_ticks, ks_uniform, exp_vs_powerlaw, _small_levels) as first seen
cdef object _KSTWO_SF = None  # kappa.kstwo_sf as first seen


cdef bint _gof_fns_same(object km) except -1:
    global _GOF_FNS
    global _KSTWO_SF
    if _GOF_FNS is None:
        _GOF_FNS = (km.exponential_gof_ticks, km.ks_uniform, km.exp_vs_powerlaw, km._small_levels)
        _KSTWO_SF = km.kstwo_sf
    return (
        km.exponential_gof_ticks is <object>PyTuple_GET_ITEM(_GOF_FNS, 0)
        and km.ks_uniform is <object>PyTuple_GET_ITEM(_GOF_FNS, 1)
        and km.exp_vs_powerlaw is <object>PyTuple_GET_ITEM(_GOF_FNS, 2)
        and km._small_levels is <object>PyTuple_GET_ITEM(_GOF_FNS, 3)
    )


cdef object _gof_ticks(object km, const int64_t* levels, Py_ssize_t m, object rng):
    """``km.exponential_gof_ticks(np.array(levels, dtype=float), rng)`` for the m levels, the same ExpGoodnessOfFit bit
    for bit and the generator advanced by the same draws; None where the caller is to run the reference (before any
    draw)."""
    cdef Py_ssize_t i, j, kmax = 0, kmin_tail = m, n_tail = 0
    cdef int64_t kv, total = 0
    cdef Py_ssize_t* lv
    cdef double mean
    if m < 3 or m > 67108864 or not _gof_fns_same(km):  # (m < 2**26: every integer sum below is exact)
        return None
    for i in range(m):
        kv = levels[i]
        if kv < 0 or kv >= m:  # _small_levels declines (a level at or past the size): the reference
            return None
    lv = <Py_ssize_t*>malloc(m * sizeof(Py_ssize_t))
    if lv == NULL:
        raise MemoryError()
    try:
        for i in range(m):
            j = <Py_ssize_t>levels[i]
            lv[i] = j
            total += j
            if j > kmax:
                kmax = j
            if j >= 1:
                n_tail += 1
                if j < kmin_tail:
                    kmin_tail = j
        mean = <double>total / <double>m  # float(k.mean()): the sum of integers is exact
        if mean <= 0:
            return km.ExpGoodnessOfFit(n=m)
        return _gof_ticks_levels(km, lv, m, n_tail, kmin_tail, kmax, total, mean, rng)
    finally:
        free(lv)


def gof_ticks(levels, rng):
    """:func:`apps.engine.estimators.kappa.exponential_gof_ticks` on a sequence of int levels through the compiled
    estimator's path (:func:`_gof_ticks`); None where the estimator would run the reference instead (for tests)."""
    cdef Py_ssize_t m = len(levels), i
    cdef int64_t* buf = <int64_t*>malloc((m + 1) * sizeof(int64_t))
    if buf == NULL:
        raise MemoryError()
    try:
        for i in range(m):
            buf[i] = levels[i]
        return _gof_ticks(_kappa_mod(), buf, m, rng)
    finally:
        free(buf)


cdef object _gof_ticks_levels(
    object km, Py_ssize_t* lv, Py_ssize_t m, Py_ssize_t n_tail, Py_ssize_t kmin_tail, Py_ssize_t kmax,
    int64_t total, double mean, object rng,
):
    np = _numpy()
    cdef Py_ssize_t i, j, t, nlev = kmax + 1
    cdef object ks_p
    cdef int64_t excess = 0
    cdef double q = mean / (1.0 + mean)
    cdef double n_d = <double>m, nt_d, x_min, s_lr, alpha, kappa, log_k, a1, log_a, mu, v, d1, d2, xj, sd, ratio
    cdef bint nan1, nan2
    cdef double[::1] pw, lg, r, xs, buf
    cdef double* tab = <double*>malloc((3 * nlev + 1) * sizeof(double))
    cdef double* lo
    cdef double* wd
    cdef double* df
    if tab == NULL:
        raise MemoryError()
    lo = tab
    wd = tab + nlev
    df = tab + 2 * nlev
    try:
        # q ** k and q ** (k + 1): the reference's table q ** arange(k.max() + 2.0) (powers[idx], powers[idx + 1]) at
        # the exponents it reads, by the same NumPy call on those exponents alone (an elementwise pow of the same two
        # doubles); lo and wd are written for the levels present only
        for j in range(nlev + 1):
            df[j] = 0.0  # (df, nlev + 1 doubles, marks the exponents read until the differences are written to it)
        for i in range(m):
            j = lv[i]
            df[j] = 1.0
            df[j + 1] = 1.0
        t = 0
        for j in range(nlev + 1):
            if df[j] != 0.0:
                t += 1
        arr = np.empty(t)
        buf = arr
        t = 0
        for j in range(nlev + 1):
            if df[j] != 0.0:
                buf[t] = <double>j
                t += 1
        pw = PyNumber_Power(q, arr, None)
        t = 0
        for j in range(nlev):
            if df[j] != 0.0:
                lo[j] = 1.0 - pw[t]  # cdf_lo
                t += 1
                if df[j + 1] != 0.0:
                    wd[j] = (1.0 - pw[t]) - lo[j]  # cdf_hi - cdf_lo (j + 1 is marked whenever j is a level)
        # exp_vs_powerlaw on the levels >= 1 (before any draw: where it would raise, the reference runs)
        alpha_o = ratio_o = p_o = _NAN_OBJ
        if n_tail >= 3:
            x_min = <double>kmin_tail
            nt_d = <double>n_tail
            arr = np.empty(kmax - kmin_tail + 1)
            buf = arr
            for j in range(kmin_tail, kmax + 1):
                buf[j - kmin_tail] = <double>j / x_min  # x / x_min
            lg = np.log(arr)
            arr = np.empty(n_tail)
            buf = arr
            t = 0
            for i in range(m):
                j = lv[i]
                if j >= 1:
                    buf[t] = lg[j - kmin_tail]
                    excess += j - kmin_tail
                    t += 1
            s_lr = arr.sum()  # log_ratio.sum()
            if s_lr > 0 and excess > 0:
                alpha = 1.0 + nt_d / s_lr
                kappa = nt_d / <double>excess
                a1 = (alpha - 1.0) / x_min
                if not (kappa > 0 and isfinite(kappa) and a1 > 0 and isfinite(a1)):
                    return None  # (math.log would raise or not be libm's log: the reference)
                log_k = log(kappa)
                log_a = log(a1)
                for j in range(kmin_tail, kmax + 1):
                    # l_exp - l_pow
                    df[j] = (log_k - kappa * (<double>j - x_min)) - (log_a - alpha * lg[j - kmin_tail])
                t = 0
                for i in range(m):
                    j = lv[i]
                    if j >= 1:
                        buf[t] = df[j]
                        t += 1
                ratio = float(arr.sum())  # diff.sum()
                # diff.std(): numpy's _var (the same pairwise sum, / n, the squared deviations summed, / n), sqrt
                mu = ratio / nt_d
                t = 0
                for i in range(m):
                    j = lv[i]
                    if j >= 1:
                        v = df[j] - mu
                        buf[t] = v * v
                        t += 1
                sd = sqrt(<double>arr.sum() / nt_d)
                alpha_o = alpha
                ratio_o = ratio
                if sd > 0:
                    p_o = float(km.special.erfc(fabs(ratio) / (sqrt(2.0 * nt_d) * sd)))
        # ks_uniform(u), u = cdf_lo + V * (cdf_hi - cdf_lo)
        r = rng.random(m)
        arr = np.empty(m)
        buf = arr
        for i in range(m):
            j = lv[i]
            buf[i] = lo[j] + r[i] * wd[j]
        arr.sort()
        d1 = d2 = -INFINITY
        nan1 = nan2 = False
        for i in range(m):  # (i / n - x).max() and (x - (i - 1.0) / n).max(): np.max's value (a NaN propagates)
            xj = buf[i]
            v = (<double>(i + 1)) / n_d - xj
            if isnan(v):
                nan1 = True
            elif v > d1:
                d1 = v
            v = xj - (<double>i) / n_d
            if isnan(v):
                nan2 = True
            elif v > d2:
                d2 = v
        if nan1:
            d1 = _NAN
        if nan2:
            d2 = _NAN
        d_o = d2 if d2 > d1 else d1  # max(d1, d2)
        ks_p = <object>_kstwo_sf(km, d_o, m)
        if 0.0 > ks_p:  # min(max(p, 0.0), 1.0)
            ks_p = 0.0
        if 1.0 < ks_p:
            ks_p = 1.0
        return km.ExpGoodnessOfFit(d_o, ks_p, alpha_o, ratio_o, p_o, m, n_tail)
    finally:
        free(tab)


@cython.final
cdef class TradeKappaEstimator:
    """Compiled :class:`apps.engine.estimators.kappa.PyTradeKappaEstimator`: the trade window and its running
    sums in C (``update_trusted``, the expiry, the window sums a snapshot starts from); the posterior, the
    goodness of fit and the snapshot are the reference's functions on this state."""

    name = "kappa"

    cdef readonly object params
    cdef Ring _ring  # t = local time, a = size, b = d_raw, c = d_beyond, d = tau, k
    cdef Sums _s
    cdef int64_t _window
    cdef public int64_t _last_input_ns, _n_updates, _pops_since_resum
    cdef public int64_t _fill_start_ns  # when the window began filling (the reference's)
    cdef public object _gof, _rng
    cdef double _tick
    # the open order (the last row): the touch its depth is measured against (MarketStep reads it), and its key
    cdef readonly double order_mid, order_half_spread
    cdef public object _order_key
    # the snapshot's constants: prior_shape, prior_rate and ci_level as the posteriors read them (_post_c: all three
    # are floats, or prior_shape an int exact as a double; else the reference's gamma_posterior and tick_posterior run)
    # and the goodness of fit's refresh interval in ns as its cache test computes it (gof_interval_s * 1_000_000_000)
    cdef double _a0, _b0, _ci
    cdef bint _post_c
    cdef object _gof_interval
    # the goodness-of-fit result a snapshot last merged, and its as_detail() (built once per fit, only ever read)
    cdef object _gof_seen, _gof_detail

    def __init__(self, params=None):
        import numpy as np

        km = _kappa_mod()
        _gof_layout(km)
        self.params = (params or km.KappaParams()).validate()
        p = self.params
        a0, b0, ci = p.prior_shape, p.prior_rate, p.ci_level
        self._post_c = (
            (type(a0) is float or (type(a0) is int and -_EXACT_NS <= a0 <= _EXACT_NS))
            and type(b0) is float and type(ci) is float
        )
        if self._post_c:
            self._a0, self._b0, self._ci = a0, b0, ci
        self._gof_interval = p.gof_interval_s * _NS_OBJ
        self._gof_seen = self._gof_detail = None
        _clear(&self._ring)
        self._window = int(self.params.window_s * _NS)
        _sums_zero(&self._s)
        self._last_input_ns = 0
        self._fill_start_ns = 0
        self._n_updates = 0
        self._pops_since_resum = 0
        self._gof = km._GofCache()
        self._rng = np.random.default_rng(self.params.gof_seed)
        self._tick = self.params.tick_size
        self.order_mid = _NAN
        self.order_half_spread = _NAN
        self._order_key = None

    def __dealloc__(self):
        free(self._ring.buf)

    # -- state the reference reads -----------------------------------------------------------------

    @property
    def _window_ns(self):
        return self._window

    @property
    def _trades(self):
        return _records(&self._ring, lambda *rec: rec)

    @property
    def _sums(self):
        return _sums_object(&self._s)

    @property
    def last_input_ns(self):
        return self._last_input_ns

    # -- mutation ---------------------------------------------------------------------------------

    def update(self, ts_ns, price, size, mid, half_spread_px=None):
        _kappa_mod().PyTradeKappaEstimator.update(self, ts_ns, price, size, mid, half_spread_px)

    def extend(self, ts_ns, price, size):
        _kappa_mod().PyTradeKappaEstimator.extend(self, ts_ns, price, size)

    def update_from_events(self, trade, bbo):
        _kappa_mod().PyTradeKappaEstimator.update_from_events(self, trade, bbo)

    cpdef extend_trusted(self, int64_t ts_ns, double price, double size):
        """The reference's extend_trusted: the last row (the open order) out of the sums, deepened and grown by the
        print, back in."""
        cdef Rec* r
        cdef double dist_px, d, q
        cdef int64_t k2 = -1
        if not self._ring.n:
            return
        r = _at(&self._ring, self._ring.n - 1)
        dist_px = fabs(price - self.order_mid)
        d = dist_px / self.order_mid
        if self._tick > 0:
            q = (dist_px - self.order_half_spread) / self._tick
            if not isfinite(q):
                k2 = max(round(q), 0)  # Python's round: ValueError on NaN, OverflowError on an infinity (unchanged row)
            else:
                q = rint(q)  # round-half-even, as Python's round()
                k2 = <int64_t>q if q > 0 else 0
        _sums_add(&self._s, -1.0, r)
        if d > r.b:
            r.b = d
        if k2 > r.k:
            r.k = k2
            r.c = <double>k2 * r.d
        r.a = r.a + size
        _sums_add(&self._s, 1.0, r)
        if ts_ns > self._last_input_ns:
            self._last_input_ns = ts_ns
        self._n_updates += 1

    cpdef update_trusted(self, int64_t ts_ns, double price, double size, double mid, double half_spread_px):
        """:meth:`update` without the input checks (``half_spread_px`` required)."""
        self.order_mid = mid
        self.order_half_spread = half_spread_px
        cdef double dist_px = fabs(price - mid)
        cdef double d_raw = dist_px / mid
        cdef double tick = self._tick, tau, d_beyond, q
        cdef int64_t k
        cdef Rec* r
        if tick > 0:
            # Prints inside the touch (stale mid, hidden liquidity) count as at the touch.
            q = (dist_px - half_spread_px) / tick
            if not isfinite(q):
                k = max(round(q), 0)  # Python's round: ValueError on NaN, OverflowError on an infinity
            else:
                q = rint(q)  # round-half-even, as Python's round()
                k = <int64_t>q if q > 0 else 0
            tau = tick / mid
            d_beyond = <double>k * tau
        else:
            k = 0
            tau = 0.0
            d_beyond = 0.0
        r = _push(&self._ring)
        r.t = ts_ns
        r.a = size
        r.b = d_raw
        r.c = d_beyond
        r.d = tau
        r.k = k
        _sums_add(&self._s, 1.0, r)
        if self._last_input_ns == 0 or ts_ns - self._last_input_ns > self._window:
            self._fill_start_ns = ts_ns
        if ts_ns > self._last_input_ns:
            self._last_input_ns = ts_ns
        self._n_updates += 1
        if self._ring.buf[self._ring.head].t < self._last_input_ns - self._window:
            self._expire(self._last_input_ns)

    cdef void _expire(self, int64_t now_ns) noexcept:
        cdef int64_t cutoff = now_ns - self._window
        cdef Py_ssize_t i
        while self._ring.n and self._ring.buf[self._ring.head].t < cutoff:
            _sums_add(&self._s, -1.0, &self._ring.buf[self._ring.head])
            _pop(&self._ring)
            self._pops_since_resum += 1
        if not self._ring.n:
            _sums_zero(&self._s)
            self._pops_since_resum = 0
        elif self._pops_since_resum > 50_000:
            # Bound the floating-point drift of the running sums (the reference's re-sum).
            _sums_zero(&self._s)
            for i in range(self._ring.n):
                _sums_add(&self._s, 1.0, _at(&self._ring, i))
            self._pops_since_resum = 0

    # -- reading ----------------------------------------------------------------------------------

    def _window_sums(self, int64_t now_ns):
        """Sums over trades inside the window at ``now_ns`` without mutating; returns (sums, first index)."""
        cdef int64_t cutoff = now_ns - self._window
        cdef Sums s = self._s
        cdef Py_ssize_t first = 0
        cdef Rec* r
        while first < self._ring.n:
            r = _at(&self._ring, first)
            if r.t >= cutoff:
                break
            _sums_add(&s, -1.0, r)
            first += 1
        return _sums_object(&s), first

    def goodness_of_fit(self, now_ns):
        """The reference's goodness_of_fit: the same cache test, and on a recomputation the same latest
        ``gof_max_trades`` rows of the window, read from the ring into the array the reference builds (its k or
        d_raw column, as float64) and passed to the reference's test with the same generator."""
        return self._c_gof(now_ns)

    cdef object _c_gof(self, object now_ns):
        km = _kappa_mod()
        p = self.params
        c = self._gof
        fresh = c.n_updates == self._n_updates or (
            c.computed_at_ns >= 0 and now_ns - c.computed_at_ns < p.gof_interval_s * _NS_OBJ
        )
        if fresh and c.computed_at_ns >= 0:
            return c.result
        import numpy as np

        cdef int64_t cutoff = <int64_t>now_ns - self._window
        cdef Py_ssize_t first = 0, n = self._ring.n, start, m, i
        cdef Py_ssize_t max_rows = p.gof_max_trades
        while first < n and _at(&self._ring, first).t < cutoff:
            first += 1
        start = n - max_rows if n - max_rows > first else first
        m = n - start
        cdef double[::1] col
        cdef int64_t* lvb
        if m < p.gof_min_trades:
            result = km.ExpGoodnessOfFit(n=m)
        else:
            if p.tick_size > 0:
                lvb = <int64_t*>malloc(m * sizeof(int64_t))
                if lvb == NULL:
                    raise MemoryError()
                try:
                    for i in range(m):
                        lvb[i] = _at(&self._ring, start + i).k
                    result = _gof_ticks(km, lvb, m, self._rng)
                finally:
                    free(lvb)
                if result is None:
                    arr = np.empty(m, dtype=np.float64)
                    col = arr
                    for i in range(m):
                        col[i] = <double>_at(&self._ring, start + i).k
                    result = km.exponential_gof_ticks(arr, self._rng)
            else:
                arr = np.empty(m, dtype=np.float64)
                col = arr
                for i in range(m):
                    col[i] = _at(&self._ring, start + i).b
                result = km.exponential_gof_continuous(arr)
        self._gof = km._GofCache(now_ns, self._n_updates, result)
        return result

    def _tick_posterior(self, n_eff, sum_delta_beyond, tick_frac, prior_shape, prior_rate, ci_level=0.95):
        # the reference's snapshot calls this: the tick posterior with its mode found in C
        return tick_posterior(n_eff, sum_delta_beyond, tick_frac, prior_shape, prior_rate, ci_level)

    def snapshot(self, now_ns):
        """Read κ at ``now_ns``: the reference's snapshot in C (the window sums, the detail, the state, the Gamma and
        tick posteriors) around the reference's goodness of fit."""
        cdef int64_t now
        if not _as_ns(now_ns, &now):
            return _kappa_mod().PyTradeKappaEstimator.snapshot(self, now_ns)
        return self._snapshot_ns(now_ns, now)

    cdef object _snapshot_ns(self, object now_ns, int64_t now):
        # snapshot(now_ns) for an int time within ±2**62 (now is its value): MarketStep calls this directly
        if not _ns_in(self._last_input_ns):
            return _kappa_mod().PyTradeKappaEstimator.snapshot(self, now_ns)
        return self._c_snapshot(now_ns, now)

    cdef object _gof_detail_at(self, object now_ns, int64_t now):
        """``self.goodness_of_fit(now_ns).as_detail()``, for the snapshot to merge (and not to keep: the dict is shared).

        The cache test is the reference's, in C while the cache is the slotted _GofCache holding int times; the detail
        of a result is built once and reused while the cache holds that result (ExpGoodnessOfFit is frozen, so its
        as_detail() is the same dict every time: keys, order, the very field objects, equal float(n) values)."""
        cdef int64_t at, nu
        cdef bint found = False
        c = self._gof
        if _GOF_SLOTS and type(c) is _GOF_T:
            at_obj = slot_get(c, _GOF_OFF[0])
            if _as_ns(at_obj, &at) and at >= 0:
                nu_obj = slot_get(c, _GOF_OFF[1])
                if (_as_ns(nu_obj, &nu) and nu == self._n_updates) or not _ge_exact(now - at, self._gof_interval):
                    result = slot_get(c, _GOF_OFF[2])
                    found = True
        if not found:
            result = self._c_gof(now_ns)
        if _GOF_RESULT_T is None or type(result) is not _GOF_RESULT_T:
            return result.as_detail()
        if result is not self._gof_seen:
            self._gof_detail = result.as_detail()
            self._gof_seen = result
        return self._gof_detail

    cdef object _c_snapshot(self, object now_ns, int64_t now):
        p = self.params
        cdef Sums s = self._s
        cdef int64_t cutoff = now - self._window
        cdef Py_ssize_t first = 0
        cdef Rec* r
        cdef double n, mean_raw, n_thr, idle_s, v
        cdef double post[4]  # the reported posterior's (mean, std, ci_low, ci_high)
        cdef double tick[4]
        if self._last_input_ns == 0 and not self._ring.n:
            return _snapshot(self.name, _NAN_OBJ, _NAN_OBJ, _WARMING, 0, _NAN_OBJ, _NAN_OBJ, {}, "no trades yet")
        while first < self._ring.n:  # _window_sums
            r = _at(&self._ring, first)
            if r.t >= cutoff:
                break
            _sums_add(&s, -1.0, r)
            first += 1
        cdef dict detail = dict_presized(22)  # the 22 keys of a full detail (the same dict as {} filled in order)
        detail["n_orders"] = <double>s.count
        detail["volume"] = s.volume
        detail["window_s"] = p.window_s
        detail["min_volume"] = p.min_volume
        value = std = lo = hi = _NAN_OBJ
        if s.count > 0 and s.volume > 0:
            n = <double>s.count
            mean_raw = s.delta_raw / n
            if not (self._post_c and _gamma_post(n, s.delta_raw, self._a0, self._b0, self._ci, post) == 0):
                raw = _kappa_mod().gamma_posterior(n, s.delta_raw, p.prior_shape, p.prior_rate, p.ci_level)
                post[0], post[1], post[2], post[3] = raw.mean, raw.std, raw.ci_low, raw.ci_high
            detail["avg_distance_bps"] = mean_raw * 1e4
            detail["kappa_raw"] = post[0]
            detail["kappa_raw_mle"] = 1.0 / mean_raw if mean_raw > 0 else _INF_OBJ
            detail["kappa_raw_std"] = post[1]
            if self._tick > 0:
                detail["avg_distance_beyond_touch_bps"] = s.delta_beyond / n * 1e4
                detail["tick_bps"] = s.tick / n * 1e4
                detail["frac_orders_at_touch"] = s.at_touch / n
                detail["kappa_model"] = 0.0
                n_thr = s.thr_orders
                if n_thr > 0 and n_thr >= <double>p.tick_min_through:
                    if not (
                        self._post_c
                        and _tick_post(n_thr, s.thr_excess, s.thr_tick / n_thr, self._a0, self._b0, self._ci, tick) == 0
                    ):
                        t = tick_posterior(
                            n_thr, s.thr_excess, s.thr_tick / n_thr, p.prior_shape, p.prior_rate, p.ci_level
                        )
                        tick[0], tick[1], tick[2], tick[3] = t.mean, t.std, t.ci_low, t.ci_high
                    detail["kappa_tick"] = tick[0]  # detail.update(kappa_tick=, kappa_tick_std=, kappa_model=)
                    detail["kappa_tick_std"] = tick[1]
                    detail["kappa_model"] = 1.0
                    post[0], post[1], post[2], post[3] = tick[0], tick[1], tick[2], tick[3]
                detail["n_orders_through_touch"] = n_thr
            value, std, lo, hi = post[0], post[1], post[2], post[3]
            PyDict_Update(detail, self._gof_detail_at(now_ns, now))
        # _state
        idle_s = _div_ns(now - self._last_input_ns)
        if idle_s > <double>p.stale_after_s:
            state, message = _STALE, f"no trade for {idle_s:.1f} s (stale after {p.stale_after_s:g} s)"
        elif s.volume < <double>p.min_volume or s.count == 0:
            state, message = _WARMING, (
                f"volume {s.volume:g} in the last {p.window_s:g} s is below min_volume {p.min_volume:g}"
            )
        else:
            v = value
            if not isfinite(v) or not (<double>p.kappa_min <= v <= <double>p.kappa_max):
                # out of range (rare): WARMING at a session's start or FAILED, as the reference's _state says
                state, message = self._state(now_ns, _sums_object(&s), value)
            else:
                state, message = _OK, ""
        return _snapshot(self.name, value, std, state, self._last_input_ns, lo, hi, detail, message)

    def _state(self, now_ns, s, value):
        return _kappa_mod().PyTradeKappaEstimator._state(self, now_ns, s, value)


# --- depth-conditional markouts ---------------------------------------------------------------------------------

cdef object _REF_DEPTH = None
cdef object _DEPTH_COST_POINTS = None  # depth_markout._COST_POINTS: (detail key, depth) of the snapshot's costs


cdef object _depth_mod():
    global _REF_DEPTH
    if _REF_DEPTH is None:
        from apps.engine.estimators import depth_markout

        _REF_DEPTH = depth_markout
    return _REF_DEPTH


cdef object _NUMPY = None


cdef object _numpy():
    # numpy, imported on first use (a function-level import statement costs a lookup per call)
    global _NUMPY
    if _NUMPY is None:
        import numpy

        _NUMPY = numpy
    return _NUMPY


cdef int _CURVE_PLAIN = -1  # 1 while DepthCostCurve is the class _cost_curve was written for (checked on first use)
cdef Py_ssize_t _CURVE_OFF[4]  # its slot offsets in field order (valid while _CURVE_SLOTS)
cdef bint _CURVE_SLOTS = False
cdef object _F64 = None  # numpy.float64
cdef object _FROMBUFFER = None  # numpy.frombuffer


cdef extern from "Python.h":
    # the tuple macros and the int constructor on raw pointers (the curve's counts: no reference counting of a
    # temporary object per cell)
    PyObject* _tuple_get "PyTuple_GET_ITEM" (PyObject* p, Py_ssize_t pos)
    void _tuple_set "PyTuple_SET_ITEM" (PyObject* p, Py_ssize_t pos, PyObject* o)
    PyObject* _long_from_i64 "PyLong_FromLongLong" (long long v)
    void _incref "Py_INCREF" (PyObject* o)


cdef object _cost_curve(object step, object costs, tuple counts, object pooled):
    """``DepthCostCurve(step, costs, counts, pooled)`` for ``costs`` a new read-only float64 array over a bytes object
    that nothing else holds: its generated ``__init__`` (one ``object.__setattr__`` per field, in field order) and its
    ``__post_init__``, whose read-only copy of such an array (``np.array(costs, dtype=np.float64)``, made read-only)
    has the same values, dtype and shape as the array itself."""
    global _CURVE_PLAIN, _CURVE_SLOTS
    cls = _depth_mod().DepthCostCurve
    if _CURVE_PLAIN < 0:
        _CURVE_PLAIN = (
            tuple(cls.__dataclass_fields__) == ("step", "cost_array", "counts", "pooled")
            and cls.__dataclass_params__.frozen
            and cls.__post_init__.__qualname__ == "DepthCostCurve.__post_init__"
        )
        _CURVE_SLOTS = (
            _CURVE_PLAIN
            and cls.__new__ is object.__new__
            and slot_offsets(cls, ("step", "cost_array", "counts", "pooled"), _CURVE_OFF)
        )
    if not _CURVE_PLAIN:
        return cls(step, costs, counts, pooled)
    if _CURVE_SLOTS:  # each field stored in its slot as object.__setattr__ stores it (apps/engine/_slots.pxd)
        obj = new_slotted(cls, (step, costs, counts, pooled), _CURVE_OFF)
    else:
        obj = _new(cls)
        PyObject_GenericSetAttr(obj, "step", step)
        PyObject_GenericSetAttr(obj, "cost_array", costs)
        PyObject_GenericSetAttr(obj, "counts", counts)
        PyObject_GenericSetAttr(obj, "pooled", pooled)
    return obj


@cython.final
cdef class DepthMarkoutCurve:
    """Compiled :class:`apps.engine.estimators.depth_markout.PyDepthMarkoutCurve`: the pending events, the kept
    window and the per-cell running sums in C (``on_trade``, ``advance``, ``curve``); the snapshot is the
    reference's function on this state. :class:`MarketStep` feeds it a trade with the compiled adverse estimator's
    mid lookup called at C level (:meth:`_trade`), no Python call per trade."""

    cdef readonly object params
    cdef public int64_t completed, dropped
    cdef int64_t _h_ns, _lag_ns, _last_done, _curve_at
    cdef double _step
    cdef Py_ssize_t _last_cell, _window
    cdef Ring _pend  # t = target local ns, k = trade local ns, a = m_ref, b = depth, d = side
    cdef Ring _kept  # a = depth, b = adverse move, k = its cell (−1: depth < 0)
    cdef int64_t* _cell_n_c
    cdef double* _cell_s_c
    cdef double* _cell_s2_c
    cdef object _curve
    # the last curve's costs and suffix counts as C values (the snapshot reads its costs here), its array and its
    # counts tuple (whose ints the next curve reuses where a count is unchanged)
    cdef double* _costs_c
    cdef int64_t* _counts_c
    cdef object _costs_arr, _counts

    def __init__(self, params=None):
        dm = _depth_mod()
        p = self.params = (params or dm.DepthMarkoutParams()).validate()
        self._h_ns = round(p.horizon_s * _NS)
        self._lag_ns = round(p.reference_lag_s * _NS)
        self._step = p.step_bps * 1e-4
        self._last_cell = int(p.max_depth_bps / p.step_bps + 1e-9)
        self._window = p.window
        _clear(&self._pend)
        _clear(&self._kept)
        cdef Py_ssize_t n = self._last_cell + 1, i
        self._cell_n_c = <int64_t*> realloc(self._cell_n_c, n * sizeof(int64_t))
        self._cell_s_c = <double*> realloc(self._cell_s_c, n * sizeof(double))
        self._cell_s2_c = <double*> realloc(self._cell_s2_c, n * sizeof(double))
        self._costs_c = <double*> realloc(self._costs_c, n * sizeof(double))
        self._counts_c = <int64_t*> realloc(self._counts_c, n * sizeof(int64_t))
        if (
            self._cell_n_c == NULL or self._cell_s_c == NULL or self._cell_s2_c == NULL or self._costs_c == NULL
            or self._counts_c == NULL
        ):
            raise MemoryError()
        for i in range(n):
            self._cell_n_c[i] = 0
            self._cell_s_c[i] = 0.0
            self._cell_s2_c[i] = 0.0
        self.completed = 0
        self.dropped = 0
        self._last_done = 0
        self._curve = None
        self._curve_at = -1
        self._costs_arr = None
        self._counts = None

    def __dealloc__(self):
        free(self._pend.buf)
        free(self._kept.buf)
        free(self._cell_n_c)
        free(self._cell_s_c)
        free(self._cell_s2_c)
        free(self._costs_c)
        free(self._counts_c)

    cdef inline Py_ssize_t _cell(self, double depth) except? -2:
        # the reference's min(int(depth / step), last cell), −1 for a negative depth (int() raises on NaN / inf)
        if depth < 0.0:
            return -1
        cdef double q = depth / self._step
        if isnan(q):
            raise ValueError("cannot convert float NaN to integer")
        if isinf(q):
            raise OverflowError("cannot convert float infinity to integer")
        if q >= <double>self._last_cell:
            return self._last_cell
        return <Py_ssize_t>q

    cdef inline double _mid(self, AdverseSelectionEstimator adverse, object mid_before, int64_t t) except? -1.0:
        if adverse is not None:
            return adverse.mid_before(t)
        return mid_before(t)

    # --- inputs -------------------------------------------------------------------------------------

    def on_trade(self, int64_t ts_ns, double price, aggressor, mid_before, order_ns=None):
        """A market trade at local time ``ts_ns``; ``mid_before(t)`` is the mid in force just before local ``t``.
        A print with the same ``order_ns`` (default ``ts_ns``) and aggressor as the last event's is part of it."""
        self._trade(ts_ns, price, -int(aggressor), None, mid_before, ts_ns if order_ns is None else <int64_t>order_ns)

    def advance(self, int64_t now_ns, mid_before):
        """Complete the events whose horizon ended before ``now_ns`` (a read between trades)."""
        self._complete(now_ns, None, mid_before)

    cdef int _trade(
        self, int64_t ts_ns, double price, long side, AdverseSelectionEstimator adverse, object mid_before,
        int64_t order_ns,
    ) except -1:
        # on_trade, with the mids from ``adverse`` (C calls) when it is given, else from the callable
        cdef Ring* pend = &self._pend
        cdef Rec* r
        cdef double m_ref, depth
        if pend.n and pend.buf[pend.head].t <= ts_ns:
            self._complete(ts_ns, adverse, mid_before)
        if pend.n:
            r = _at(pend, pend.n - 1)
            if r.k == order_ns and r.d == <double>side:  # the same order: one event, as deep as its deepest print
                depth = <double>(-side) * (price - r.a) / r.a
                if depth > r.b:  # max(last, depth)
                    r.b = depth
                return 0
        m_ref = self._mid(adverse, mid_before, ts_ns - self._lag_ns)  # the mid in force just before ts − lag
        if not m_ref > 0:
            return 0
        depth = <double>(-side) * (price - m_ref) / m_ref
        r = _push(pend)
        r.t = ts_ns + self._h_ns
        r.k = order_ns
        r.d = <double>side
        r.a = m_ref
        r.b = depth
        return 0

    cdef int _complete(self, int64_t now_ns, AdverseSelectionEstimator adverse, object mid_before) except -1:
        cdef Ring* pend = &self._pend
        cdef Ring* kept = &self._kept
        cdef Rec* r
        cdef int64_t target
        cdef double side, m_ref, depth, m1, a, x
        cdef Py_ssize_t k
        while pend.n and pend.buf[pend.head].t <= now_ns:  # every event before the horizon has been seen
            r = &pend.buf[pend.head]
            target, side, m_ref, depth = r.t, r.d, r.a, r.b
            _pop(pend)
            m1 = self._mid(adverse, mid_before, target)  # the mid in force just before the horizon
            if not m1 > 0:
                self.dropped += 1
                continue
            a = -side * (m1 - m_ref) / m_ref
            k = self._cell(depth)
            if kept.n == self._window:  # the oldest event leaves the window
                r = &kept.buf[kept.head]
                if r.k >= 0:
                    x = r.b
                    self._cell_n_c[r.k] -= 1
                    self._cell_s_c[r.k] -= x
                    self._cell_s2_c[r.k] -= x * x
                _pop(kept)
            r = _push(kept)
            r.a = depth
            r.b = a
            r.k = k
            if k >= 0:
                self._cell_n_c[k] += 1
                self._cell_s_c[k] += a
                self._cell_s2_c[k] += a * a
            self.completed += 1
            self._last_done = now_ns
        return 0

    # --- state the reference exposes ----------------------------------------------------------------

    @property
    def _pending(self):
        return _records(&self._pend, lambda t, a, b, c, d, k: [t, k, int(d), a, b])

    @property
    def _depths(self):
        return deque([_at(&self._kept, i).a for i in range(self._kept.n)])

    @property
    def _adverse(self):
        return deque([_at(&self._kept, i).b for i in range(self._kept.n)])

    @property
    def _cell_n(self):
        return [self._cell_n_c[i] for i in range(self._last_cell + 1)]

    @property
    def _cell_s(self):
        return [self._cell_s_c[i] for i in range(self._last_cell + 1)]

    @property
    def _cell_s2(self):
        return [self._cell_s2_c[i] for i in range(self._last_cell + 1)]

    @property
    def _last_done_ns(self):
        return self._last_done

    # --- outputs ------------------------------------------------------------------------------------

    def curve(self):
        """The cost curve over the kept events (None before any event with depth ≥ 0), the reference's sums in its
        order: the pooled sum cell 0 upwards, the suffix sums from the last cell down."""
        return self._c_curve()

    cdef object _c_curve(self):
        # curve(): the costs computed into a C array and handed to NumPy as one bytes object (an array over it is
        # read-only, as the curve's own copy is made); each count an int of the last curve's tuple where it is the
        # same count there, or of the cell above where no event lies in between, else a new int
        global _FROMBUFFER, _F64
        if self._curve_at == self.completed:
            return self._curve
        self._curve_at = self.completed
        cdef Py_ssize_t last = self._last_cell, k
        cdef int64_t n = 0, run_n = 0
        cdef double total = 0.0, run_s = 0.0, pooled, prior
        cdef double n0 = self.params.prior_events
        cdef double* costs = self._costs_c
        cdef int64_t* seen = self._counts_c
        cdef int64_t* cell_n = self._cell_n_c
        cdef double* cell_s = self._cell_s_c
        for k in range(last + 1):
            n += cell_n[k]
        if n == 0:
            self._curve = None
            return None
        for k in range(last + 1):
            total += cell_s[k]
        pooled = total / <double>n
        prior = n0 * pooled
        cdef tuple counts = PyTuple_New(last + 1)  # the reference's tuple(counts), filled in place
        cdef PyObject* tup = <PyObject*>counts
        cdef PyObject* prev = NULL if self._counts is None else <PyObject*>self._counts
        cdef PyObject* o
        for k in range(last, -1, -1):  # suffix sums: the events at depth ≥ k·step
            run_n += cell_n[k]
            run_s += cell_s[k]
            if n0 > 0:
                costs[k] = (run_s + prior) / (<double>run_n + n0)
            else:
                costs[k] = run_s / <double>run_n if run_n else pooled
            if prev != NULL and seen[k] == run_n:
                o = _tuple_get(prev, k)
                _incref(o)  # PyTuple_SET_ITEM steals a reference
            elif k < last and seen[k + 1] == run_n:
                o = _tuple_get(tup, k + 1)
                _incref(o)
            else:
                o = _long_from_i64(run_n)  # a new reference, which the tuple takes
                if o == NULL:
                    self._counts = None  # ``seen`` no longer describes it
                    raise MemoryError()
            seen[k] = run_n
            _tuple_set(tup, k, o)
        self._counts = counts
        if _FROMBUFFER is None:
            _FROMBUFFER = _numpy().frombuffer
            _F64 = _numpy().float64
        arr = _FROMBUFFER(PyBytes_FromStringAndSize(<char*>costs, (last + 1) * sizeof(double)), _F64)
        self._costs_arr = arr
        self._curve = _cost_curve(self._step, arr, counts, pooled)
        return self._curve

    def _sum_of_squares(self):
        """The reference's sum of every cell's sum of squares, cell 0 upwards, over the C array."""
        cdef double s2 = 0.0
        cdef Py_ssize_t k
        for k in range(self._last_cell + 1):
            s2 += self._cell_s2_c[k]
        return s2

    def snapshot(self, now_ns):
        """The pooled cost with its standard error and state: the reference's snapshot, in C (its operations on the
        same doubles; the costs at the detail's depths read from the curve's array as ``cost_at`` reads them)."""
        cdef int64_t now
        if not _as_ns(now_ns, &now) or not _ns_in(self._last_done):
            return _depth_mod().PyDepthMarkoutCurve.snapshot(self, now_ns)
        return self._c_snapshot(now)

    cdef object _c_snapshot(self, int64_t now):
        global _DEPTH_COST_POINTS
        p = self.params
        c = self._c_curve()
        # the curve's costs and counts as this object holds them in C while the curve holds the array it was built
        # with (else read from the curve, as the reference reads them)
        cdef bint own = c is not None and (
            slot_get(c, _CURVE_OFF[1]) if _CURVE_SLOTS else c.cost_array
        ) is self._costs_arr
        cdef int64_t n = (self._counts_c[0] if own else c.counts[0]) if c is not None else 0, d
        cdef double s2, pooled, var, se, depth, step, u, c0, c1, x
        cdef const double[::1] costs_view
        cdef const double* costs
        cdef Py_ssize_t k, last
        detail = {
            "events": <double>n,
            "dropped": <double>self.dropped,
            "horizon_s": p.horizon_s,
            "reference_lag_s": p.reference_lag_s,
        }
        if c is None:
            return _snapshot(
                "depth_markout", _NAN_OBJ, _NAN_OBJ, _WARMING, 0, _NAN_OBJ, _NAN_OBJ, detail,
                "no completed trade event yet",
            )  # fmt: skip
        s2 = self._sum_of_squares()
        pooled_obj = c.pooled
        pooled = pooled_obj
        if n > 1:
            var = _pymax(s2 / <double>n - pooled * pooled, 0.0) * <double>n / <double>(n - 1)
            se = sqrt(var / <double>n)
            se_obj = se
        else:
            se = _INF
            se_obj = _INF_OBJ
        if _DEPTH_COST_POINTS is None:
            _DEPTH_COST_POINTS = _depth_mod()._COST_POINTS
        if own:
            costs = self._costs_c
            last = self._last_cell
        else:
            costs_view = c.cost_array
            costs = &costs_view[0]
            last = costs_view.shape[0] - 1
        step = slot_get(c, _CURVE_OFF[0]) if _CURVE_SLOTS else c.step
        for key, depth_obj in _DEPTH_COST_POINTS:  # DepthCostCurve.cost_at(depth) / _BPS
            depth = depth_obj
            if not depth > 0:
                x = costs[0]
            else:
                u = depth / step
                if not u < 4e18:
                    return _depth_mod().PyDepthMarkoutCurve.snapshot(self, now)
                k = <Py_ssize_t>u  # int(u): u is finite and positive here
                if k >= last:
                    x = costs[last]
                else:
                    c0, c1 = costs[k], costs[k + 1]
                    x = c0 + (c1 - c0) / step * (depth - <double>k * step)
            detail[key] = x / 1e-4
        if n < p.min_events:
            state, msg = _WARMING, f"{n} events (< {p.min_events})"
        else:
            d = now - self._last_done
            if (
                <double>d > <double>p.stale_after_s * 1e9 if -_EXACT_NS <= d <= _EXACT_NS
                else d > p.stale_after_s * _NS_OBJ
            ):
                state, msg = _STALE, f"no event completed for {p.stale_after_s:g} s"
            else:
                state, msg = _OK, ""
        return _snapshot(
            "depth_markout", pooled_obj, se_obj, state, self._last_done, pooled - 1.96 * se, pooled + 1.96 * se,
            detail, msg,
        )  # fmt: skip


# --- MarketEstimators' per-event bodies ---------------------------------------------------------------------------

cdef object _NS_OBJ = 1_000_000_000


cdef inline int64_t _integer(object value, str name) except? -1:
    """An integer field of MarketEstimators' (ns or a count) as int64 (apps/engine/_slots.pxd: strict_int64)."""
    return strict_int64(value, "MarketEstimators", name, " (ns or a count)")


# --- the drift's Kalman filter ------------------------------------------------------------------------------------

cdef object _REF_DRIFT = None


cdef object _drift_ref():
    global _REF_DRIFT
    if _REF_DRIFT is None:
        from apps.engine.estimators.drift import PyKalmanDrift

        _REF_DRIFT = PyKalmanDrift
    return _REF_DRIFT


cdef object _OBS_SOURCES = ("trade_flow", "momentum", "microprice")


@cython.final
cdef class KalmanDrift:
    """Compiled :class:`apps.engine.estimators.drift.PyKalmanDrift`: ``update`` and ``snapshot`` in C, the
    reference's operations in its order on the same doubles (``math.exp``/``expm1``/``log``/``sqrt`` are libm's,
    ``**`` is :func:`_pypow`, ``max``/``min`` keep Python's argument order). Where the reference would raise or
    convert (an observation or time that is not a plain float or int, a variance that is not a finite positive
    float, a divisor that is zero) the reference's own method runs on this object before anything changed, so the
    same exception and the same state come out. Everything else is the reference's."""

    cdef object _params
    cdef public object name
    cdef public double _theta, _noise_var, _m, _p, _nis_mean, _g2_theta, _g2_noise, _last_nis
    cdef public long long _n_obs
    cdef public bint _theta_at_bound
    cdef bint _has_last
    cdef int64_t _last
    cdef double _warm, _adapt_rate, _log_lo, _log_hi, _w_nis
    cdef object _obs_vars  # source -> the params' obs_var_<source>

    def __init__(self, params=None, *, name="drift"):
        _drift_ref().__init__(self, params, name=name)  # the reference's own state, set through these fields

    property params:
        def __get__(self):
            return self._params

        def __set__(self, p):
            # what update reads of the parameters, cached as C doubles (re-read whenever they are replaced)
            self._params = p
            self._obs_vars = {src: getattr(p, f"obs_var_{src}") for src in _OBS_SOURCES}
            self._adapt_rate = p.adapt_rate
            self._warm = p.warmup_obs
            self._log_lo = math.log(p.theta_min_per_s)
            self._log_hi = math.log(p.theta_max_per_s)
            self._w_nis = 1.0 - _pypow(0.5, 1.0 / <double>p.nis_halflife_obs)  # the reference's w, both places

    property _last_ns:
        def __get__(self):
            return self._last if self._has_last else None

        def __set__(self, value):
            if value is None:
                self._has_last = False
                self._last = 0
            else:
                self._last = strict_int64(value, "KalmanDrift", "_last_ns", " of ns")
                self._has_last = True

    # --- read: the reference's -----------------------------------------------------------------------------

    mean_per_s = property(lambda self: self._m)
    var_per_s2 = property(lambda self: self._p)
    theta_per_s = property(lambda self: self._theta)
    process_noise_var = property(lambda self: self._noise_var)
    n_obs = property(lambda self: self._n_obs)
    nis_mean = property(lambda self: self._nis_mean)

    @property
    def stationary_std_per_s(self):
        return _drift_ref().stationary_std_per_s.fget(self)

    def _dt_s(self, ts_ns):
        return _drift_ref()._dt_s(self, ts_ns)

    def predict(self, now_ns):
        return _drift_ref().predict(self, now_ns)

    def expected_return(self, horizon_s, now_ns):
        return _drift_ref().expected_return(self, horizon_s, now_ns)

    def advance(self, ts_ns):
        _drift_ref().advance(self, ts_ns)

    def _adapt(self, g_theta, g_noise):
        _drift_ref()._adapt(self, g_theta, g_noise)

    # --- write ---------------------------------------------------------------------------------------------

    def update(self, ts_ns, source, drift_obs_per_s, *, obs_var=None):
        """The reference's ``update``: in C for an int time within ±2**62 not before the last update, a float
        observation and a finite positive float variance (else the reference runs and raises or converts)."""
        cdef int64_t ts, d
        cdef double r, z
        r_obj = self._obs_vars.get(source) if obs_var is None and type(source) is str else obs_var
        if (
            not _as_ns(ts_ns, &ts)
            or type(r_obj) is not float
            or type(drift_obs_per_s) is not float
        ):
            return _drift_ref().update(self, ts_ns, source, drift_obs_per_s, obs_var=obs_var)
        r = r_obj
        z = drift_obs_per_s
        if not (isfinite(r) and r > 0.0 and isfinite(z)) or (self._has_last and (ts < self._last or not _ns_in(self._last))):
            return _drift_ref().update(self, ts_ns, source, drift_obs_per_s, obs_var=obs_var)
        if self._c_update(ts, r, z) == 1:  # a zero divisor ahead, nothing changed: the reference raises
            return _drift_ref().update(self, ts_ns, source, drift_obs_per_s, obs_var=obs_var)

    cdef int _c_update(self, int64_t ts, double r, double z) except -1:
        cdef double dt = _div_ns(ts - self._last) if self._has_last else 0.0
        cdef double theta = self._theta, noise = self._noise_var
        cdef double a = _exp(-theta * dt)
        cdef double q = noise * -_expm1(-2.0 * theta * dt) / (2.0 * theta)
        cdef double m_prior = a * self._m
        cdef double p_prior = a * a * self._p + q
        cdef double innov = z - m_prior
        cdef double s = p_prior + r
        if s == 0.0 or 2.0 * theta == 0.0:
            return 1
        cdef double gain = p_prior / s
        cdef double nis = innov * innov / s
        cdef double dq, dp, dm, g_theta, g_noise, w, log_theta, x
        if self._adapt_rate > 0 and self._n_obs >= self._warm:
            if 2 * theta * theta == 0.0 or theta == 0.0:
                return 1
            dq = noise * (dt * a * a / theta + _expm1(-2 * theta * dt) / (2 * theta * theta))
            dp = -2.0 * dt * a * a * self._p + dq
            dm = -dt * m_prior
            g_theta = theta * (innov / s * dm + 0.5 * (nis - 1.0) / s * dp)
            g_noise = 0.5 * (nis - 1.0) * q / s
            # _adapt
            w = self._w_nis
            self._g2_theta += w * (g_theta * g_theta - self._g2_theta)
            self._g2_noise += w * (g_noise * g_noise - self._g2_noise)
            if self._g2_theta > 0:
                log_theta = log(self._theta) + self._adapt_rate * g_theta / sqrt(self._g2_theta)
                self._theta_at_bound = not (self._log_lo < log_theta < self._log_hi)
                x = _pymin(_pymax(log_theta, self._log_lo), self._log_hi)
                self._theta = _exp(x)
            if self._g2_noise > 0:
                self._noise_var *= _exp(self._adapt_rate * g_noise / sqrt(self._g2_noise))
        self._m = m_prior + gain * innov
        self._p = (1.0 - gain) * p_prior
        self._last = ts
        self._has_last = True
        self._n_obs += 1
        w = self._w_nis
        self._nis_mean += w * (nis - self._nis_mean)
        self._last_nis = nis
        return 0

    # --- snapshot ------------------------------------------------------------------------------------------

    def snapshot(self, now_ns):
        """The reference's snapshot, in C for an int time within ±2**62 (else the reference's)."""
        cdef int64_t now
        if not _as_ns(now_ns, &now):
            return _drift_ref().snapshot(self, now_ns)
        return self._snapshot_ns(now_ns, now)

    cdef object _snapshot_ns(self, object now_ns, int64_t now):
        # snapshot(now_ns) for an int time within ±2**62 (now is its value): MarketStep calls this directly
        if self._has_last and not _ns_in(self._last):
            return _drift_ref().snapshot(self, now_ns)
        return self._c_snapshot(now, now_ns)

    cdef object _c_snapshot(self, int64_t now, object now_ns):
        cdef double m, var, a, q, dt = 0.0, std, theta = self._theta
        cdef int64_t at
        p = self._params
        if not self._has_last:
            m, var = self._m, self._p
        else:
            at = now if now > self._last else self._last  # max(now_ns, self._last_ns)
            dt = _div_ns(at - self._last)
            if 2.0 * theta == 0.0:
                return _drift_ref().snapshot(self, now_ns)
            a = _exp(-theta * dt)
            q = self._noise_var * -_expm1(-2.0 * theta * dt) / (2.0 * theta)
            m = a * self._m
            var = a * a * self._p + q
        if var < 0 or (2.0 * theta == 0.0) or self._noise_var / (2.0 * theta) < 0:
            return _drift_ref().snapshot(self, now_ns)  # math.sqrt's ValueError
        std = sqrt(var)
        cdef double age
        if not self._has_last or self._n_obs < p.warmup_obs:
            state, message = _WARMING, f"{self._n_obs} observations < warmup_obs={p.warmup_obs}"
        elif _div_ns(now - self._last) > <double>p.stale_after_s:
            age = _div_ns(now - self._last)
            state, message = _STALE, f"no observation for {age:.1f} s > stale_after_s={p.stale_after_s}"
        elif self._nis_mean > <double>p.nis_fail_above:
            state = _FAILED
            message = (
                f"innovations inconsistent with the posterior: mean NIS {self._nis_mean:.2f} > {p.nis_fail_above}"
            )
        else:
            state, message = _OK, ""
        detail = {
            "theta_per_s": self._theta,
            "process_noise_var": self._noise_var,
            "stationary_std_per_s": sqrt(self._noise_var / (2.0 * self._theta)),
            "nis_mean": self._nis_mean,
            "last_nis": self._last_nis,
            "n_obs": <double>self._n_obs,
            "theta_at_bound": 1.0 if self._theta_at_bound else 0.0,
        }
        return _snapshot(
            self.name, m, std, state, (self._last if self._has_last else None) or 0, m - 1.96 * std, m + 1.96 * std,
            detail, message,
        )


cdef class MarketFields:
    """The per-event fields of :class:`~apps.engine.estimators.market.MarketEstimators` as C slots (declared in
    ``_estimators.pxd``): its base class when this module is built. The reference's code reads and writes them by
    name exactly as before (Python sees typed properties), while :class:`MarketStep` and the strategy core's
    per-event path (``apps/engine/_core.pyx``) read them as C fields instead of looking each up in the instance
    dict (about 190 instructions a read, a third of the pipeline's per-event cost before). Nothing else: the
    methods are all the reference's, and with ``MM_PURE_PYTHON=1`` the base is ``object``."""

    property _now_ns:
        def __get__(self):
            return self.c_now_ns

        def __set__(self, value):
            self.c_now_ns = _integer(value, "_now_ns")

    property _first_ns:
        def __get__(self):
            return self.c_first_ns

        def __set__(self, value):
            self.c_first_ns = _integer(value, "_first_ns")

    property events_seen:
        def __get__(self):
            return self.c_events_seen

        def __set__(self, value):
            self.c_events_seen = _integer(value, "events_seen")

    property trades_seen:
        def __get__(self):
            return self.c_trades_seen

        def __set__(self, value):
            self.c_trades_seen = _integer(value, "trades_seen")

    property non_market_trades:
        def __get__(self):
            return self.c_non_market_trades

        def __set__(self, value):
            self.c_non_market_trades = _integer(value, "non_market_trades")

    property version:
        def __get__(self):
            return self.c_version

        def __set__(self, value):
            self.c_version = _integer(value, "version")

    property _refresh_due_ns:
        def __get__(self):
            return self.c_refresh_due_ns

        def __set__(self, value):
            self.c_refresh_due_ns = _integer(value, "_refresh_due_ns")

    property _kappa_trades_since:
        def __get__(self):
            return self.c_kappa_trades_since

        def __set__(self, value):
            self.c_kappa_trades_since = _integer(value, "_kappa_trades_since")

    property _kappa_trades_n:
        def __get__(self):
            return self.c_kappa_trades_n

        def __set__(self, value):
            self.c_kappa_trades_n = _integer(value, "_kappa_trades_n")

    property _kappa_min_due_ns:
        def __get__(self):
            return self.c_kappa_min_due_ns

        def __set__(self, value):
            self.c_kappa_min_due_ns = _integer(value, "_kappa_min_due_ns")

    property _next_drift_ns:
        def __get__(self):
            return self.c_next_drift_ns

        def __set__(self, value):
            self.c_next_drift_ns = _integer(value, "_next_drift_ns")

    property _next_hawkes_fit_ns:
        def __get__(self):
            return self.c_next_hawkes_fit_ns

        def __set__(self, value):
            self.c_next_hawkes_fit_ns = _integer(value, "_next_hawkes_fit_ns")

    property _order_ts_exch_ns:
        def __get__(self):
            return self.c_order_ts_exch_ns

        def __set__(self, value):
            self.c_order_ts_exch_ns = _integer(value, "_order_ts_exch_ns")

    property _order_side:
        def __get__(self):
            return self.c_order_side

        def __set__(self, value):
            self.c_order_side = _integer(value, "_order_side")

    property taker_orders_seen:
        def __get__(self):
            return self.c_taker_orders_seen

        def __set__(self, value):
            self.c_taker_orders_seen = _integer(value, "taker_orders_seen")


# The market events' fields read by their slot offsets (apps/engine/_slots.pxd) when an event is exactly that class
cdef object _BBO_T = BestBidAsk
cdef object _TRADE_T = Trade
cdef Py_ssize_t _B_TS = slot_offset(BestBidAsk, "ts_local_ns"), _B_BID = slot_offset(BestBidAsk, "bid_px")
cdef Py_ssize_t _B_ASK = slot_offset(BestBidAsk, "ask_px"), _B_BSZ = slot_offset(BestBidAsk, "bid_size")
cdef Py_ssize_t _B_ASZ = slot_offset(BestBidAsk, "ask_size")
cdef bint _B_SLOTS = min(_B_TS, _B_BID, _B_ASK, _B_BSZ, _B_ASZ) >= 0
cdef Py_ssize_t _T_TS = slot_offset(Trade, "ts_local_ns"), _T_PRICE = slot_offset(Trade, "price")
cdef Py_ssize_t _T_SIZE = slot_offset(Trade, "size"), _T_AGG = slot_offset(Trade, "aggressor")
cdef Py_ssize_t _T_EXCH = slot_offset(Trade, "ts_exch_ns")
cdef bint _T_SLOTS = min(_T_TS, _T_PRICE, _T_SIZE, _T_AGG, _T_EXCH) >= 0


def slot_reads_active():
    """Whether the book ticker's and the trade's fields are read, and the snapshots' stored, by slot offset here
    (tests/engine/test_compiled.py)."""
    return _B_SLOTS and _T_SLOTS and _SNAPSHOT_SLOTS


cdef object _NEVER_OBJ = 2**63 - 1  # market._NEVER
cdef object _ceil = math.ceil


cdef inline bint _lt_exact(int64_t a, double x) noexcept:
    # ``a < x`` as Python compares an int with a float (exactly, False for NaN): an integer is below x exactly when it
    # is below ceil(x), which is an integral double and, inside the int64 range, converts exactly
    cdef double c
    if isnan(x):
        return False
    c = ceil(x)
    if c >= 9223372036854775808.0:
        return True
    if c < -9223372036854775808.0:
        return False
    return a < <int64_t>c


def lt_exact(int64_t a, double x):
    """:func:`_lt_exact` from Python (for its test against Python's own int < float)."""
    return _lt_exact(a, x)


cdef inline bint _ge_exact(int64_t a, object x) except -1:
    # ``a >= x`` as Python compares an int with an int or a float (exactly): in C while that is exact
    cdef int64_t b
    if type(x) is float:
        if -_EXACT_NS <= a <= _EXACT_NS:  # a is exact as a double
            return <double>a >= <double>x
    elif _as_ns(x, &b):
        return a >= b
    return a >= x


cdef object _snapshot_of(object e, object now_ns, int64_t now):
    """``e.snapshot(now_ns)`` for an int time within ±2**62 (``now`` is its value): the compiled estimators' own
    snapshot called at C level (the same guards and the same object as their ``snapshot``), any other by name."""
    cdef type t = type(e)
    if t is SigmaEstimator:
        return (<SigmaEstimator>e)._snapshot_ns(now_ns, now)
    if t is TradeArrivalRate:
        return (<TradeArrivalRate>e)._snapshot_ns(now_ns, now)
    if t is FlowImbalance:
        return (<FlowImbalance>e)._snapshot_ns(now_ns, now)
    if t is KalmanDrift:
        return (<KalmanDrift>e)._snapshot_ns(now_ns, now)
    if t is MicropriceRegression:
        return (<MicropriceRegression>e)._snapshot_ns(now_ns, now)
    return e.snapshot(now_ns)


@cython.final
cdef class MarketStep:
    """``MarketEstimators._on_bbo`` and ``_on_trade`` in one compiled call each (a book ticker is one Python → C
    call), for a :class:`~apps.engine.estimators.market.MarketEstimators` whose estimators are the compiled classes
    (:meth:`fits`). The estimators are called at C level; the MarketEstimators' own fields (the mids deque, the
    pending volume, the trade times, ...) stay its attributes, read and written here exactly as its methods do,
    which remain the reference (and run whenever this does not fit). The drift observations and the Hawkes re-fit
    are called on the object when due, as there."""

    cdef MarketFields est  # the MarketEstimators (its fields read as C slots)
    cdef AdverseSelectionEstimator adverse
    cdef SigmaEstimator sigma
    cdef MicropriceRegression micro
    cdef TradeKappaEstimator kappa
    cdef FlowImbalance flow
    cdef TradeArrivalRate arrival
    cdef DepthMarkoutCurve depth  # None when est.depth_markout is the reference (then called with the mid lookup)
    cdef object depth_py, mid_before
    cdef int64_t momentum_ns
    # the refresh step's reads (refresh): the estimators' caches (``_Cached``, each snap and at_ns read by slot
    # offset when cache_slots) and the refresh intervals, fixed when the MarketEstimators was built
    cdef object c_kappa, c_sigma, c_arrival, c_flow, c_drift, c_micro, c_depth
    cdef bint cache_slots
    cdef Py_ssize_t off_snap, off_at
    cdef object snapshot_refresh_ns, kappa_refresh_ns, kappa_min_refresh_ns
    # the drift observations run in C (_drift_observations) when the MarketEstimators' own methods are the reference's
    cdef readonly bint drift_in_c

    @staticmethod
    def fits(est):
        """True when every estimator this step calls is the compiled class (the Hawkes intensity and the depth curve
        may be either)."""
        return (
            isinstance(est, MarketFields)
            and type(est.adverse) is AdverseSelectionEstimator
            and type(est.sigma) is SigmaEstimator
            and type(est.microprice) is MicropriceRegression
            and type(est.kappa) is TradeKappaEstimator
            and type(est.flow) is FlowImbalance
            and type(est.arrival) is TradeArrivalRate
        )

    def __init__(self, est):
        self.est = est
        self.adverse = est.adverse
        self.sigma = est.sigma
        self.micro = est.microprice
        self.kappa = est.kappa
        self.flow = est.flow
        self.arrival = est.arrival
        dm = est.depth_markout
        self.depth = dm if type(dm) is DepthMarkoutCurve else None
        self.depth_py = dm
        self.mid_before = self.adverse.mid_before  # bound once, for a reference depth curve
        self.momentum_ns = est._momentum_ns
        from apps.engine.estimators.market import MarketEstimators

        cls = type(est)
        self.drift_in_c = (
            getattr(cls, "_drift_observations", None) is MarketEstimators._drift_observations
            and getattr(cls, "_flow_now", None) is MarketEstimators._flow_now
            and "_drift_observations" not in getattr(est, "__dict__", {})
            and "_flow_now" not in getattr(est, "__dict__", {})
        )
        self.c_kappa, self.c_sigma, self.c_arrival = est._c_kappa, est._c_sigma, est._c_arrival
        self.c_flow, self.c_drift, self.c_micro = est._c_flow, est._c_drift, est._c_microprice
        self.c_depth = est._c_depth
        caches = (self.c_kappa, self.c_sigma, self.c_arrival, self.c_flow, self.c_drift, self.c_micro, self.c_depth)
        cache_t = type(self.c_kappa)
        self.off_snap = slot_offset(cache_t, "snap")
        self.off_at = slot_offset(cache_t, "at_ns")
        self.cache_slots = self.off_snap >= 0 and self.off_at >= 0 and all(type(c) is cache_t for c in caches)
        self.snapshot_refresh_ns = est._snapshot_refresh_ns
        self.kappa_refresh_ns = est._kappa_refresh_ns
        self.kappa_min_refresh_ns = est._kappa_min_refresh_ns

    def on_bbo(self, b):
        """``MarketEstimators._on_bbo(b)``."""
        self.c_on_bbo(b)

    cdef int c_on_bbo(self, object b) except -1:
        cdef MarketFields est = self.est
        cdef bint slots = _B_SLOTS and type(b) is _BBO_T  # its fields by offset (the same objects getattr gives)
        cdef int64_t ts = to_i64(slot_get(b, _B_TS) if slots else b.ts_local_ns)
        est.bbo = b
        cdef double mid
        if slots:
            mid = 0.5 * (<double>slot_get(b, _B_BID) + <double>slot_get(b, _B_ASK))
        else:
            mid = 0.5 * (<double>b.bid_px + <double>b.ask_px)
        self.adverse.on_book(ts, mid)
        self.sigma.update_trusted(ts, mid, est._pending_volume)
        if self.sigma.closed_stale:
            est.c_refresh_due_ns = 0  # the refresh step settles σ's window (MarketEstimators._on_bbo)
        est._pending_volume = 0.0
        cdef double bs, ask_size
        if slots:
            bs = slot_get(b, _B_BSZ)
            ask_size = slot_get(b, _B_ASZ)
        else:
            bs = b.bid_size
            ask_size = b.ask_size
        cdef double tot = bs + ask_size
        self.micro.observe_trusted(ts, mid, (bs - ask_size) / tot if tot > 0 else 0.0, est._flow_value)
        mids = est._mids
        cdef int64_t cutoff = ts - self.momentum_ns
        if type(mids) is _DEQUE_T:
            # an exact deque: its length is its ob_size, its items read through its sq_item (no len() or index object)
            if Py_SIZE(mids) == 0 or <double>item(PySequence_GetItem(mids, Py_SIZE(mids) - 1), 1) != mid:
                mids.append((ts, mid))
            while Py_SIZE(mids) > 1 and to_i64(item(PySequence_GetItem(mids, 1), 0)) <= cutoff:
                mids.popleft()
        else:
            if not mids or <double>item(mids[len(mids) - 1], 1) != mid:  # (wraparound is off: no [-1])
                mids.append((ts, mid))
            while len(mids) > 1 and to_i64(item(mids[1], 0)) <= cutoff:
                mids.popleft()
        if ts >= est.c_next_drift_ns:
            if self.drift_in_c:
                self._drift_observations(est, ts, mid)
            else:
                (<object>est)._drift_observations(ts, mid)
        return 0

    cdef int _drift_observations(self, MarketFields est, int64_t ts, double mid) except -1:
        # MarketEstimators._drift_observations(ts, mid) in C: the same reads, the same doubles, the same updates in
        # the same order. The drift's update runs in C where KalmanDrift.update would (_drift_update); anything
        # unusual (a time near the int64 edge, an interval that is not a finite float, a mid ratio log() refuses, a
        # zero lookback) runs the reference method instead, before anything was changed.
        cfg = est.config
        cdef object interval = cfg.drift_obs_interval_s
        cdef object lookback_s = cfg.momentum_lookback_s
        cdef object flow_k = cfg.flow_drift_per_s
        cdef double step
        if (
            type(interval) is not float or type(lookback_s) is not float or type(flow_k) is not float
            or not _ns_in(ts)
        ):
            return self._drift_by_reference(est, ts, mid)
        step = (<double>interval) * 1e9
        if not (0.0 <= step < 4.0e18):  # int(interval * _NS) as an exact int64, the sum within ±2**63
            return self._drift_by_reference(est, ts, mid)
        mids = est._mids
        cdef int64_t t0 = 0
        cdef double m0 = 0.0, lookback = 0.0, ratio = 0.0
        cdef bint momentum = False
        if type(mids) is not _DEQUE_T:
            return self._drift_by_reference(est, ts, mid)
        if Py_SIZE(mids) >= 2:
            first = PySequence_GetItem(mids, 0)
            t0_obj = item(first, 0)
            m0_obj = item(first, 1)
            if type(t0_obj) is not int or type(m0_obj) is not float:
                return self._drift_by_reference(est, ts, mid)
            t0 = to_i64(t0_obj)
            if not _ns_in(t0):
                return self._drift_by_reference(est, ts, mid)
            m0 = m0_obj
            lookback = _div_ns(ts - t0)
            ratio = mid / m0 if m0 != 0.0 else _NAN
            if not (ratio > 0.0 and isfinite(ratio) and lookback != 0.0):
                return self._drift_by_reference(est, ts, mid)
            momentum = True
        d = est.drift
        if type(d) is not KalmanDrift:
            return self._drift_by_reference(est, ts, mid)
        cdef KalmanDrift drift = <KalmanDrift>d
        # the reference: _next_drift_ns first, then the flow value, then sigma_for_inventory
        est.c_next_drift_ns = ts + <int64_t>step
        cdef FlowImbalance flow = self.flow
        cdef double buy = 0.0, sell = 0.0, f, tot, value = 0.0
        cdef int64_t dt
        if flow._has_t:  # _flow_now over _decayed
            dt = ts - flow._t
            f = _exp(-_div_ns(dt if dt > 0 else 0) / flow._tau_s)
            buy = flow._buy * f
            sell = flow._sell * f
        tot = buy + sell
        if tot > 0:
            value = (buy - sell) / tot
        est._flow_value = value
        sig_obj = self.sigma.sigma_for_inventory
        cdef double sig = sig_obj
        if momentum and isfinite(sig) and sig > 0 and lookback >= 0.5 * <double>lookback_s:
            self._drift_update(drift, ts, "momentum", log(ratio) / lookback, sig * sig / lookback)
        if <double>flow_k > 0 and flow._has_t:
            self._drift_update(drift, ts, "trade_flow", <double>flow_k * value, _NAN, False)
        snap = est._cache["microprice"].snap
        cdef double h, rv
        if snap is not None and snap.usable:
            h = self.micro.params.horizon_s
            rv = self.micro._sse / self.micro._weight if self.micro._weight > 0 else _NAN
            if isfinite(rv) and rv > 0:
                self._drift_update(drift, ts, "microprice", <double>snap.value / h, rv / (h * h))
        return 0

    cdef int _drift_by_reference(self, MarketFields est, int64_t ts, double mid) except -1:
        (<object>est)._drift_observations(ts, mid)
        return 0

    cdef int _drift_update(self, KalmanDrift d, int64_t ts, str source, double z, double r, bint has_r=True) except -1:
        # KalmanDrift.update(ts, source, z, obs_var=r or None): its C path under its own conditions, else the method
        r_obj = None
        if not has_r:
            r_obj = d._obs_vars.get(source)
            if type(r_obj) is not float:
                d.update(ts, source, z)
                return 0
            r = r_obj
        if (
            not (isfinite(r) and r > 0.0 and isfinite(z))
            or (d._has_last and (ts < d._last or not _ns_in(d._last)))
            or d._c_update(ts, r, z) == 1
        ):
            if has_r:
                d.update(ts, source, z, obs_var=r)
            else:
                d.update(ts, source, z)
        return 0

    def on_trade(self, t):
        """``MarketEstimators._on_trade(t)``."""
        self.c_on_trade(t)

    cdef int c_on_trade(self, object t) except -1:
        cdef MarketFields est = self.est
        cdef bint slots = _T_SLOTS and type(t) is _TRADE_T  # its fields by offset (the same objects getattr gives)
        ts_obj = slot_get(t, _T_TS) if slots else t.ts_local_ns
        cdef int64_t ts = to_i64(ts_obj)
        cdef double price, size, bid, ask, mid, hs, d, m, decay
        if slots:
            price = slot_get(t, _T_PRICE)
            size = slot_get(t, _T_SIZE)
        else:
            price = t.price
            size = t.size
        b = est.bbo
        est.c_trades_seen += 1
        cdef long aggressor = int(slot_get(t, _T_AGG) if slots else t.aggressor)
        tx_obj = slot_get(t, _T_EXCH) if slots else t.ts_exch_ns  # the taker order's exchange time
        cdef int64_t tx = to_i64(tx_obj)
        if tx == 0:  # a feed without one: the local time (the reference's ``t.ts_exch_ns or ts``)
            tx_obj = ts_obj
            tx = ts
        cdef bint new_order = tx != est.c_order_ts_exch_ns or aggressor != est.c_order_side
        # κ, A, v̄ and the intensity fit: one observation per taker order (the reference says why)
        if b is not None:
            if new_order or not est._order_in_kappa:
                bid = field(b, _BBO_T, _B_BID, "bid_px")
                ask = field(b, _BBO_T, _B_ASK, "ask_px")
                mid = 0.5 * (bid + ask)
                hs = 0.5 * (ask - bid)
                self.kappa.update_trusted(ts, price, size, mid, hs)
                est._order_in_kappa = True
                d = fabs(price - mid) - hs
                est._trade_depths.append(d / mid if d > 0 else 0.0)
            else:
                self.kappa.extend_trusted(ts, price, size)
                mid = self.kappa.order_mid  # the order's touch, as κ holds it
                d = fabs(price - mid) - self.kappa.order_half_spread
                d = d / mid if d > 0 else 0.0
                depths = est._trade_depths
                if d > <double>depths[len(depths) - 1]:  # (wraparound is off: no [-1])
                    depths[len(depths) - 1] = d
            est.c_kappa_trades_since += 1
        elif new_order:
            est._order_in_kappa = False
        if new_order:  # one public markout per taker order (the reference says why)
            self.adverse.on_public_trade(ts, price, aggressor)
        if self.depth is not None:
            self.depth._trade(ts, price, -aggressor, self.adverse, None, tx)  # C calls, mids from the adverse estimator
        else:
            self.depth_py.on_trade(ts_obj, price, aggressor, self.mid_before, tx_obj)
        self.flow.update_trusted(ts, size, aggressor)
        if new_order:
            self.arrival.update_trusted(ts)
        # one Hawkes event per taker order, at its first print (the reference's comment says why)
        if new_order:
            est.c_order_ts_exch_ns = tx
            est.c_order_side = aggressor
            est.c_taker_orders_seen += 1
            h = est.hawkes
            if type(h) is HawkesIntensity:
                if ts >= (<HawkesIntensity>h)._last_ns:
                    (<HawkesIntensity>h).update(ts)
            elif ts >= h.last_event_ns:
                h.update(ts)
            est._trade_times.append(tx_obj / _NS_OBJ)  # Python's int / int (a time in ns is beyond 2**53)
            est._order_local_ns.append(ts_obj)
        est._pending_volume = <double>est._pending_volume + size
        m = est._mean_trade_size  # v̄ over taker orders (the reference's EWMA)
        decay = est._size_decay
        if new_order:
            est._mean_trade_size = size if m != m else decay * m + (1 - decay) * size
        else:
            est._mean_trade_size = m + (1.0 if est.c_taker_orders_seen == 1 else 1 - decay) * size
        if ts >= est.c_next_hawkes_fit_ns:
            (<object>est)._refit_hawkes(ts)
        return 0

    # --- the refresh step -----------------------------------------------------------------------------------------
    # MarketEstimators.refresh and the methods it calls (_settle, snapshots, kappa_snapshot, _get, depth_cost,
    # _schedule), step by step in the reference's order: the same tests on the same objects (an int time compared
    # with an int or float interval exactly, as Python compares them), the same calls, the same stores.

    cdef inline object _snap(self, object c):
        return slot_get(c, self.off_snap) if self.cache_slots else c.snap

    cdef inline object _at_ns(self, object c):
        return slot_get(c, self.off_at) if self.cache_slots else c.at_ns

    cdef int _store(self, object c, object snap, object now_ns) except -1:
        # c.snap = snap; c.at_ns = now_ns (the reference's order)
        if self.cache_slots:
            slot_set(c, self.off_snap, snap)
            slot_set(c, self.off_at, now_ns)
        else:
            c.snap = snap
            c.at_ns = now_ns
        return 0

    cdef bint _older(self, object c, object now_ns, int64_t now, object interval) except -1:
        # ``now_ns - c.at_ns >= interval`` (Python ints, an int or float interval)
        cdef int64_t at
        at_obj = self._at_ns(c)
        if _as_ns(at_obj, &at):
            return _ge_exact(now - at, interval)
        return now_ns - at_obj >= interval

    cdef int _get(self, object c, object now_ns, int64_t now, object est_i) except -1:
        # MarketEstimators._get(c, now_ns, est_i.snapshot), its result unused
        cdef MarketFields est = self.est
        if self._snap(c) is None or self._older(c, now_ns, now, self.snapshot_refresh_ns):
            self._store(c, _snapshot_of(est_i, now_ns, now), now_ns)
            est.c_version += 1
            est._all_fresh_until_ns = 0
        return 0

    def refresh(self, now_ns):
        """``MarketEstimators.refresh(now_ns)`` (its reference runs for a time that is not an int within ±2**62)."""
        cdef MarketFields est = self.est
        cdef int64_t now
        if not _as_ns(now_ns, &now):
            return type(est).refresh(est, now_ns)
        # _settle: σ's window statistics (the reference's settle, which does nothing unless closed_stale), the re-fit
        if self.sigma.closed_stale:
            self.sigma.settle()
        at = est._hawkes_fit_at
        if at is not None:
            est._hawkes_fit_at = None
            (<object>est)._fit_hawkes(at)
        if est._all_snaps:
            self._snapshots(now_ns, now)
        if self._snap(self.c_depth) is not None:
            self._depth_cost(now_ns, now)
        self._schedule()

    cdef int _snapshots(self, object now_ns, int64_t now) except -1:
        # MarketEstimators.snapshots(now_ns), its result unused (it is stored in _all_snaps)
        cdef MarketFields est = self.est
        if now_ns < est._all_fresh_until_ns and est.c_kappa_trades_since < est.config.kappa_refresh_trades:
            return 0
        # kappa_snapshot
        c = self.c_kappa
        if (
            self._snap(c) is None
            or self._older(c, now_ns, now, self.kappa_refresh_ns)
            or (
                est.c_kappa_trades_since >= est.config.kappa_refresh_trades
                and self._older(c, now_ns, now, self.kappa_min_refresh_ns)
            )
        ):
            self._store(c, self.kappa._snapshot_ns(now_ns, now), now_ns)  # its snapshot(now_ns), called in C
            est.c_kappa_trades_since = 0
            est.c_version += 1
            est._all_fresh_until_ns = 0
        kappa = self._snap(c)
        self._get(self.c_sigma, now_ns, now, est.sigma)
        self._get(self.c_arrival, now_ns, now, (<object>est).arrival)
        self._get(self.c_flow, now_ns, now, (<object>est).flow)
        self._get(self.c_drift, now_ns, now, est.drift)
        self._get(self.c_micro, now_ns, now, (<object>est).microprice)
        snaps = (
            kappa,
            self._snap(self.c_sigma),
            self._snap(self.c_arrival),
            self._snap(self.c_flow),
            self._snap(self.c_drift),
            self._snap(self.c_micro),
        )
        est._all_fresh_until_ns = self._fresh_until()
        est._all_snaps = snaps
        return 0

    cdef object _fresh_until(self):
        # min(κ's at_ns + kappa_refresh_ns, each other cache's at_ns + snapshot_refresh_ns), as the reference computes
        # it: Python's min keeps the first of equal values, so it is κ's term unless one of the others is smaller, and
        # then the smallest of those (ints: only the value tells them apart). Those five int sums and their minimum
        # are taken in int64 while every at_ns and the interval are ints within ±2**62 (so no sum overflows).
        cdef int64_t r, at, low = 0, k_at
        cdef Py_ssize_t i
        cdef double kd
        kr = self.kappa_refresh_ns
        k_at_obj = self._at_ns(self.c_kappa)
        rest = (self.c_sigma, self.c_arrival, self.c_flow, self.c_drift, self.c_micro)
        if not _as_ns(self.snapshot_refresh_ns, &r):
            return min(k_at_obj + kr, *[self._at_ns(c) + self.snapshot_refresh_ns for c in rest])
        for i in range(5):
            if not _as_ns(self._at_ns(rest[i]), &at):
                return min(k_at_obj + kr, *[self._at_ns(c) + self.snapshot_refresh_ns for c in rest])
            if i == 0 or at + r < low:
                low = at + r
        if type(kr) is float and _as_ns(k_at_obj, &k_at):
            # κ's term in C too: int + float is the int rounded to a double (as the C conversion rounds it) plus the
            # float, and an int compares with a float exactly
            kd = <double>k_at + <double>kr
            if _lt_exact(low, kd):
                return low  # (an int)
            return kd  # (a float)
        k = k_at_obj + kr
        low_obj = low
        return low_obj if low_obj < k else k

    cdef int _depth_cost(self, object now_ns, int64_t now) except -1:
        # MarketEstimators.depth_cost(now_ns), its result unused: _get with its compute()
        cdef MarketFields est = self.est
        c = self.c_depth
        if self._snap(c) is None or self._older(c, now_ns, now, self.snapshot_refresh_ns):
            dm = (<object>est).depth_markout
            if dm is self.depth:
                self.depth._complete(now, self.adverse, None)  # advance(now, adverse.mid_before): its mids in C
                est._depth_curve = self.depth._c_curve()  # its curve() and snapshot(now_ns), called in C
                if _ns_in(self.depth._last_done):
                    snap = self.depth._c_snapshot(now)
                else:
                    snap = self.depth.snapshot(now_ns)
            else:
                dm.advance(now_ns, self.adverse.mid_before)
                est._depth_curve = dm.curve()
                snap = dm.snapshot(now_ns)
            self._store(c, snap, now_ns)
            est.c_version += 1
            est._all_fresh_until_ns = 0
        return 0

    cdef int _schedule(self) except -1:
        # MarketEstimators._schedule
        cdef MarketFields est = self.est
        if self.sigma.closed_stale or est._hawkes_fit_at is not None:
            est.c_refresh_due_ns = 0
            return 0
        # in C while every term is an int within ±2**62 or a float (a float's ceil within ±2**62): the reference's
        # min compares an int with a float exactly and keeps its first argument unless the second is smaller, int +
        # float is the int rounded to a double plus the float, math.ceil of a float is the ceil of the double;
        # anything else with Python's objects, as the reference
        cdef int64_t due_i = 0, at, r, out
        cdef double due_d = 0.0
        cdef int kind = 0  # 1: due is the int due_i, 2: the float due_d, 0: an object only Python reads
        cdef bint done = False
        due = est._all_fresh_until_ns if est._all_snaps else _NEVER_OBJ
        if _as_ns(due, &due_i):
            kind = 1
        elif type(due) is float:
            due_d = due
            kind = 2
        c = self.c_depth
        if self._snap(c) is not None:
            if kind and _as_ns(self._at_ns(c), &at) and _as_ns(self.snapshot_refresh_ns, &r):
                at += r
                if (at < due_i) if kind == 1 else _lt_exact(at, due_d):
                    due_i = at
                    kind = 1
            else:
                kind = 0
                due = min(due, self._at_ns(c) + self.snapshot_refresh_ns)
        if kind == 2 and _ceil_ns(due_d, &out):
            due_i = out
            kind = 1
        if kind == 1:
            est.c_refresh_due_ns = due_i
        else:
            est.c_refresh_due_ns = _integer(_ceil(due), "_refresh_due_ns")
        c = self.c_kappa
        if self._snap(c) is not None:
            kr = self.kappa_min_refresh_ns
            if _as_ns(self._at_ns(c), &at):
                if _as_ns(kr, &r):
                    est.c_kappa_min_due_ns = at + r
                    done = True
                elif type(kr) is float and _ceil_ns(<double>at + <double>kr, &out):
                    est.c_kappa_min_due_ns = out
                    done = True
            if not done:
                est.c_kappa_min_due_ns = _integer(_ceil(self._at_ns(c) + kr), "_kappa_min_due_ns")
        else:
            est.c_kappa_min_due_ns = _NEVER_OBJ
        return 0
