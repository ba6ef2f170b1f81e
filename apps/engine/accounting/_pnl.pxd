# cython: language_level=3
"""The P&L ledger's compiled base (``_pnl.pyx``), for the driver's C-level read of the mid."""


cdef class PnlLedgerBase:
    # the ledger's state, read and written by name by the reference's methods (pnl.PyPnlLedger) too
    cdef public double mid
    cdef public object mid_ts_ns
    cdef public object _history, _pending, _fixed, _keep_ns
    cdef public object _exp, _cash, _q, _entry, _spread, _fees, _funding, _as_done, _pend_q, _pend_entry
    # ``mid`` is this field on the instance's class (no property in a subclass): the driver may read it in C
    cdef readonly bint c_mid_field

    cdef int c_on_mid(self, object ts_ns, object mid, object venue_ts_ns) except -1
