# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""The P&L ledger's per-event parts compiled: :meth:`on_mid` and :meth:`snapshot` (the reference:
``apps/engine/accounting/pnl.py``'s ``PyPnlLedger``; ``pnl.PnlLedger`` is ``(PnlLedgerBase, PyPnlLedger)``).

The state lives in this base's fields (the mid as a C double, which the backtest driver reads in C on every market
event; the exact sums as the reference's Python ints at their shared power-of-two exponent). The reference's other
methods (fills, funding, markouts, ``exact()``) run unchanged on the same fields. The arithmetic is the reference's:
the same integer expressions, and each float rounded once by int true division."""

from libc.math cimport NAN, frexp, isfinite, ldexp
from cpython.long cimport PyLong_FromLongLong

from apps.engine._slots cimport new_slotted, slot_offsets


cdef extern from *:
    """
    static inline int mm_ctz64(unsigned long long v) { return __builtin_ctzll(v); }
    """
    int mm_ctz64(unsigned long long v) nogil


cdef object _breakdown_type = None  # pnl.PnlBreakdown, imported on first use (pnl.py imports this module)
cdef Py_ssize_t _breakdown_offsets[10]
cdef bint _breakdown_slotted = False
cdef tuple _BREAKDOWN_FIELDS = (
    "ts_ns", "mid", "position", "cash", "total", "spread_capture", "adverse_selection", "inventory", "fees", "funding"
)


cdef object _new_breakdown(tuple values):
    global _breakdown_type, _breakdown_slotted
    if _breakdown_type is None:
        from apps.engine.accounting.pnl import PnlBreakdown

        _breakdown_slotted = (
            tuple(PnlBreakdown.__dataclass_fields__) == _BREAKDOWN_FIELDS
            and not hasattr(PnlBreakdown, "__post_init__")
            and slot_offsets(PnlBreakdown, _BREAKDOWN_FIELDS, _breakdown_offsets)
        )
        _breakdown_type = PnlBreakdown
    if _breakdown_slotted:
        return new_slotted(_breakdown_type, values, _breakdown_offsets)
    return _breakdown_type(*values)


cdef object _dyadic(double x, long* e):
    """A finite ``x`` as ``n·2^e`` exactly: ``n`` returned (odd, or 0), ``e`` stored."""
    cdef int ex
    cdef long long n
    cdef int tz
    if x == 0.0:
        e[0] = 0
        return 0
    n = <long long>ldexp(frexp(x, &ex), 53)  # |n| in [2^52, 2^53): exact
    tz = mm_ctz64(<unsigned long long>n)
    e[0] = ex - 53 + tz
    return PyLong_FromLongLong(n >> tz)  # n is a multiple of 2^tz: the shift is exact for either sign


cdef inline object _to_float(object n, object e):
    """``n·2^e`` rounded once to the nearest float, ties to even (the reference's ``_to_float``)."""
    if e < 0:
        return n / (1 << -e)
    return float(n << e)


_FIELDS = (
    "mid", "mid_ts_ns", "_history", "_pending", "_fixed", "_keep_ns", "_exp", "_cash", "_q", "_entry", "_spread",
    "_fees", "_funding", "_as_done", "_pend_q", "_pend_entry",
)


def _rebuild(cls, tuple fields, state):
    """Unpickle helper: an instance of ``cls`` with the base's fields and the instance dict as they were."""
    obj = cls.__new__(cls)
    for name, value in zip(_FIELDS, fields):
        setattr(obj, name, value)
    if state:
        obj.__dict__.update(state)
    return obj


cdef class PnlLedgerBase:
    def __cinit__(self, *args, **kwargs):
        self.mid = NAN
        self.c_mid_field = type(self).mid is PnlLedgerBase.__dict__["mid"]

    def __reduce__(self):
        # pickle and copy see what the reference's instance dict would hold: the fields, then the rest
        return _rebuild, (type(self), tuple([getattr(self, name) for name in _FIELDS]), getattr(self, "__dict__", None))

    def on_mid(self, ts_ns, mid, venue_ts_ns=None):
        """The reference's ``on_mid``: the mid became ``mid`` at local time ``ts_ns`` (venue time ``venue_ts_ns``,
        default the same); markouts whose horizon ended before ``ts_ns`` use the old mid."""
        self.c_on_mid(ts_ns, mid, venue_ts_ns)

    cdef int c_on_mid(self, object ts_ns, object mid, object venue_ts_ns) except -1:
        pending = self._pending
        if pending and pending[0].deadline_ns < ts_ns:
            m_old = self.mid if isfinite(self.mid) else None
            while pending and pending[0].deadline_ns < ts_ns:
                self._resolve_one(m_old)
        self.mid = float(mid)
        self.mid_ts_ns = ts_ns
        hist = self._history
        m = self.mid
        hist.append((ts_ns if venue_ts_ns is None else venue_ts_ns, ts_ns, m))
        cutoff = ts_ns - self._keep_ns
        while len(hist) > 1 and hist[1][1] <= cutoff:
            hist.popleft()  # hist[0] stays while it is still the mid in force at the cutoff
        if pending and pending[0].deadline_ns <= ts_ns:
            m_new = self.mid if isfinite(self.mid) else None
            while pending and pending[0].deadline_ns <= ts_ns:
                self._resolve_one(m_new)
        return 0

    def snapshot(self, ts_ns=None):
        """The reference's ``snapshot``: P&L now, each float ``exact()``'s value rounded once."""
        cdef long em = 0
        cdef long k
        fixed = self._fixed
        exp = self._exp
        if fixed is None:
            fixed = self._fixed = (<object>self)._fixed_floats()  # the reference's, on a change only
        nm = _dyadic(self.mid, &em) if isfinite(self.mid) else 0
        k = -em if em < 0 else 0
        if em > 0:
            nm = nm << em
        qm = self._q * nm
        if self._pending:
            adverse_n = ((self._as_done - self._pend_entry) << k) + self._pend_q * nm
        else:
            adverse_n = self._as_done << k
        e = exp - k
        return _new_breakdown((
            self.mid_ts_ns if ts_ns is None else ts_ns,
            self.mid,
            fixed[0],
            fixed[1],
            _to_float((self._cash << k) + qm, e),
            fixed[2],
            _to_float(adverse_n, e) if self._pending else fixed[3],
            _to_float(qm - (self._entry << k) - adverse_n, e),
            fixed[4],
            fixed[5],
        ))
