# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Compiled per-event path of the driver: the same behaviour as the reference ``PyEngineLoop`` in
:mod:`apps.engine.simulation.backtest`, which stays the readable version of every step.

Design, as for the paper venue (``apps/engine/execution/_paper.pyx``): ``EngineLoopBase`` is a compiled base class
holding the state the per-event path reads in typed slots, and :mod:`apps.engine.simulation.backtest` builds the
driver everyone uses as ``class EngineLoop(EngineLoopBase, PyEngineLoop)``. It overrides only what runs on every
market event or one of our orders: the replay loop of ``run``, ``on_market``, the merge with the venue
(``_deliver_venue``), the driver's clocks (``_reach``, ``_sample_until``), the ledger's mid (``_update_mid``), the
decision and actions after the strategy (``_after_strategy``), sending them while the gateway runs (``_send`` with
nothing blocked) and our order events (``_handle``). Whatever is rare (a P&L sample, an estimator snapshot, the risk
grid, a closed gateway's split, a mid that moved) calls the reference's own Python methods, so the live loop
(``step_until``, modes, emergency cancels, flatten) runs the reference code around the compiled steps.

The strategy core and the venue are called at C level when they are the compiled classes with none of the methods
called per event overridden (``StrategyCoreBase.c_on_event``/``c_refresh``, ``PaperVenueBase.c_on_market``/
``c_next_event_ns``, declared in ``_core.pxd`` and ``_paper.pxd``; checked once per object by ``_inherits``), else
through their Python methods; the venue's level book is read at C level when it is the compiled one.

Floats: the mid is ``(best bid tick + best ask tick) · tick · 0.5`` in the reference's order, on ticks whose sum is
exact as a double (else the reference's Python arithmetic runs), so it is the same double.
"""

cimport cython
from libc.math cimport isfinite
from libc.stdint cimport int64_t

from cpython.dict cimport PyDict_GetItem
from cpython.list cimport PyList_GET_SIZE
from cpython.tuple cimport PyTuple_GET_SIZE
from cpython.object cimport PyObject, Py_TYPE
from cpython.long cimport PyLong_AsLongLongAndOverflow, PyLong_CheckExact, PyLong_FromLongLong

from apps.engine._slots cimport fast_i64, slot_get, slot_offset, slot_set

from apps.engine._core cimport StrategyCoreBase
from apps.engine.accounting._pnl cimport PnlLedgerBase
from apps.engine.execution._fillmodel cimport LevelBook, TBlock, TickSide, tick_t
from apps.engine.execution._paper cimport PaperVenueBase, idle
from apps.engine.risk._session cimport c_evaluate

import time

from apps.engine.market.events import (
    BestBidAsk,
    CancelAll,
    CancelOrder,
    DepthSnapshot,
    DepthUpdate,
    Fill,
    Funding,
    MarkPrice,
    OrderReject,
    PlaceOrder,
    Side,
    Trade,
)
from apps.engine.market.events import QuoteDecision
from apps.engine.risk import _session as _session_module
from apps.engine.risk.gateway import Mode
from apps.engine.risk.rules import RuleAction
from apps.engine.risk.session import SessionRisk

cdef object _PY_SET_MODE = None  # PyEngineLoop's set_mode and _apply_mode (bound on first use: backtest imports us)
cdef object _PY_APPLY_MODE = None
cdef dict _NO_DICT = {}
cdef object _BUY = Side.BUY
cdef object _SELL = Side.SELL
cdef object _RUNNING = Mode.RUNNING
cdef object _PULL_QUOTES = RuleAction.PULL_QUOTES


cdef bint _none_pulls(list trips) except -1:
    """``not (bool(trips) and any(t.action is RuleAction.PULL_QUOTES for t in trips))``: _risk_outcome's test."""
    for t in trips:
        if t.action is _PULL_QUOTES:
            return False
    return True


# --- the risk grid's C-level calls (_risk_at) ----------------------------------------------------------------------

cdef extern from *:
    """
    /* the attribute ``name`` as ``cls``'s MRO holds it (borrowed; NULL when no class defines it): CPython's own lookup
       for attribute access, through its method cache */
    static inline PyObject* mm_type_lookup(PyObject* cls, PyObject* name) {
        return _PyType_Lookup((PyTypeObject*)cls, name);
    }
    """
    PyObject* _PyType_Lookup "mm_type_lookup" (object cls, object name)


cdef extern from "Python.h":
    PyObject** _PyObject_GetDictPtr(object obj)  # NULL: no instance dict
    object PyObject_CallOneArg(object f, object arg)


cdef object _RISK_STATE = StrategyCoreBase.__dict__["risk_state"]
cdef object _LAST_DECISION = StrategyCoreBase.__dict__["last_decision"]
cdef object _EVALUATE = _session_module.evaluate
cdef object _QUOTE_DECISION = QuoteDecision
cdef Py_ssize_t _QD_INPUTS = slot_offset(QuoteDecision, "inputs")


cdef extern from *:
    """
    /* A dict's version tag (PEP 509; CPython bumps it on every change of the dict): what _Own's answers are checked
       against. 3.11's layout only: elsewhere the dict is asked every time. */
    #if PY_VERSION_HEX >= 0x030B0000 && PY_VERSION_HEX < 0x030C0000
    #define MM_DICT_VERSIONED 1
    #define mm_dict_version(d) (((PyDictObject*)(d))->ma_version_tag)
    #else
    #define MM_DICT_VERSIONED 0
    #define mm_dict_version(d) ((uint64_t)0)
    #endif
    """
    bint MM_DICT_VERSIONED
    unsigned long long mm_dict_version(dict d)


@cython.final
cdef class _Own:
    """``name in getattr(obj, "__dict__", {})``, the instance's own attribute ``name``: the last answer kept with the
    instance dict's address and version tag (no reference to it: CPython gives every new dict and every change a new
    version from one counter, so an equal address and version are that same dict, unchanged)."""

    cdef str name
    cdef PyObject* d
    cdef unsigned long long version
    cdef bint answer

    def __cinit__(self, str name):
        self.name = name

    cdef bint of(self, object obj) except -1:
        cdef PyObject** dp = _PyObject_GetDictPtr(obj)
        if dp == NULL or dp[0] == NULL:
            return False
        d = <object>dp[0]
        if type(d) is not dict:
            return self.name in d
        if dp[0] == self.d and MM_DICT_VERSIONED and mm_dict_version(<dict>d) == self.version:
            return self.answer
        self.answer = self.name in <dict>d
        self.d, self.version = dp[0], mm_dict_version(<dict>d)
        return self.answer


cdef _Own _OWN_RISK_STATE = _Own("risk_state"), _OWN_EVALUATE = _Own("evaluate")
cdef _Own _OWN_SET_MODE = _Own("set_mode"), _OWN_APPLY_MODE = _Own("_apply_mode")


cdef inline bint _found(object obj, _Own own, object expected) except -1:
    """``getattr(type(obj), name) is expected`` for a plain function ``expected`` the class finds along its MRO, and
    ``obj`` itself sets no ``name``: ``obj.name`` is then ``expected`` bound to ``obj``."""
    return _PyType_Lookup(type(obj), own.name) == <PyObject*>expected and not own.of(obj)


cdef inline bint _core_direct(object strategy) except -1:
    """A compiled strategy core whose ``risk_state`` (a method the class finds, which the instance does not replace)
    and ``last_decision`` (its C field) are StrategyCoreBase's own: ``hasattr`` is then True, the call is the method's
    with the core as its argument, and the field is read in C."""
    return (
        isinstance(strategy, StrategyCoreBase)
        and _found(strategy, _OWN_RISK_STATE, _RISK_STATE)
        and _PyType_Lookup(type(strategy), "last_decision") == <PyObject*>_LAST_DECISION
    )


cdef inline bint _session_direct(object risk) except -1:
    """A session whose ``evaluate`` is ``_session.evaluate`` (found on its class, not replaced on the object), which
    is ``c_evaluate`` with the session as its first argument."""
    return _found(risk, _OWN_EVALUATE, _EVALUATE)


cdef inline bint _side_best(const TickSide* s, tick_t* key) noexcept:
    # the key of a fill-model book side's best level (its last), False when the side is empty (LevelBook._best)
    cdef const TBlock* blk
    if s.n == 0:
        return False
    blk = s.blocks[s.nb - 1]
    key[0] = blk.lv[blk.n - 1].key
    return True


cdef tick_t _EXACT = 1LL << 52  # two ticks below this add exactly in a double
# the stamps of the three market events of every recording, read by slot offset (-1: getattr, see _slots.pxd)
cdef Py_ssize_t _BBO_LOCAL = slot_offset(BestBidAsk, "ts_local_ns"), _BBO_EXCH = slot_offset(BestBidAsk, "ts_exch_ns")
cdef Py_ssize_t _TRADE_LOCAL = slot_offset(Trade, "ts_local_ns"), _TRADE_EXCH = slot_offset(Trade, "ts_exch_ns")
cdef Py_ssize_t _DIFF_LOCAL = slot_offset(DepthUpdate, "ts_local_ns"), _DIFF_EXCH = slot_offset(DepthUpdate, "ts_exch_ns")
cdef object _BBO = BestBidAsk
cdef object _TRADE = Trade
cdef object _DIFF = DepthUpdate
cdef object _SNAPSHOT = DepthSnapshot
cdef object _FILL = Fill
cdef object _REJECT = OrderReject
# the session risk's per-event inputs, written by slot offset (-1: a class without those slots: its on_market)
cdef object _SESSION_RISK = SessionRisk
cdef Py_ssize_t _R_FEED = slot_offset(SessionRisk, "_feed_local_ns"), _R_MEASURED = slot_offset(SessionRisk, "clock_measured")
cdef Py_ssize_t _R_SKEW_LOCAL = slot_offset(SessionRisk, "_skew_local_ns")
cdef Py_ssize_t _R_SKEW_EXCH = slot_offset(SessionRisk, "_skew_exch_ns")
cdef bint _RISK_SLOTS = min(_R_FEED, _R_MEASURED, _R_SKEW_LOCAL, _R_SKEW_EXCH) >= 0
# backtest.RunStats, the slots of the counters the per-event path adds to, and backtest.BLOCKED (bound on first use:
# backtest imports us)
cdef object _RUN_STATS = None
cdef object _BLOCKED = None
cdef enum:
    _MARKET_EVENTS, _ORDER_EVENTS, _ACTIONS, _DECISIONS, _LOCAL_REJECTS, _N_COUNTERS
cdef long long _COUNT_MAX = 1LL << 62
cdef tuple _COUNTERS = ("market_events", "order_events", "actions", "decisions", "local_rejects")
cdef Py_ssize_t _RS_OFF[5]


cdef int _bind() except -1:
    global _RUN_STATS, _BLOCKED
    from apps.engine.simulation.backtest import BLOCKED, RunStats

    cdef Py_ssize_t k
    for k in range(_N_COUNTERS):
        _RS_OFF[k] = slot_offset(RunStats, _COUNTERS[k])
    _BLOCKED = BLOCKED
    _RUN_STATS = RunStats
    return 0


cdef inline int _count(object stats, int which, Py_ssize_t n) except -1:
    """``stats.<counter> += n``; by slot offset for a ``RunStats`` holding an int (added in C while it fits in 62
    bits, which every count does: the same int)."""
    cdef long long x
    cdef int overflow = 0
    if _RUN_STATS is None:
        _bind()
    cdef Py_ssize_t off = _RS_OFF[which]
    if off >= 0 and type(stats) is _RUN_STATS:
        v = slot_get(stats, off)
        if PyLong_CheckExact(v):
            x = PyLong_AsLongLongAndOverflow(v, &overflow)
            if overflow == 0 and -_COUNT_MAX < x < _COUNT_MAX:
                slot_set(stats, off, PyLong_FromLongLong(x + n))
            else:
                slot_set(stats, off, v + n)
            return 0
    name = _COUNTERS[which]
    setattr(stats, name, getattr(stats, name) + n)
    return 0


cdef bint _inherits(object obj, type base, tuple names) except -1:
    """``obj`` is an instance of the compiled ``base`` whose methods ``names`` are the base's own (neither its class
    nor the instance overrides one): calling the base's C entry points is then calling those methods."""
    if not isinstance(obj, base):
        return False
    own = getattr(obj, "__dict__", None) or {}
    cls = type(obj)
    for name in names:
        if name in own or getattr(cls, name) is not base.__dict__[name]:
            return False
    return True


cdef inline bint _truth(object v) except -1:
    """``bool(v)``: None, an exact int read in place (_slots.fast_i64), a list and a tuple without the call; anything
    else asked."""
    cdef int64_t x
    if v is None:
        return False
    if PyLong_CheckExact(v) and fast_i64(v, &x):
        return x != 0
    if type(v) is list:
        return PyList_GET_SIZE(v) != 0
    if type(v) is tuple:
        return PyTuple_GET_SIZE(v) != 0
    return bool(v)


cdef inline Py_ssize_t _stamp_offset(object cls, bint local):
    """The slot offset of ``cls``'s local or exchange stamp when it is one of the three classes above, else -1."""
    if cls is _BBO:
        return _BBO_LOCAL if local else _BBO_EXCH
    if cls is _TRADE:
        return _TRADE_LOCAL if local else _TRADE_EXCH
    if cls is _DIFF:
        return _DIFF_LOCAL if local else _DIFF_EXCH
    return -1


# --- run()'s test of each event: isinstance(event, MARKET_TYPES) ----------------------------------------------------
# A failing isinstance against a class reads the event's ``__class__`` (a type walk): for a BestBidAsk, the tuple's
# Trade fails first, ~260 instructions an event in all. When the event's type is exactly one of the tuple's classes,
# isinstance is True; the checks against the items before it run no code when every item is an exact ``type`` (no
# ``__instancecheck__``) and the event's class reads ``__class__`` through object's own descriptor (generic getattr,
# no ``__class__`` of its own). Such classes are kept (``_exact_types``) and tested by address; any other event type
# is asked with isinstance, as before.
cdef enum:
    _N_EXACT_MAX = 16

cdef object _OBJECT_CLASS = object.__dict__["__class__"]


cdef extern from *:
    """
    /* the class's attribute reads are object's own (no __getattribute__ or __getattr__ of its own) */
    static inline int mm_generic_getattr(PyObject* cls) {
        return ((PyTypeObject*)cls)->tp_getattro == PyObject_GenericGetAttr;
    }
    """
    bint mm_generic_getattr(object cls)


cdef Py_ssize_t _exact_types(object types, PyObject** out) except -1:
    """The classes of ``types`` (a tuple) for which ``isinstance(x, types)`` is True without running any code when
    ``type(x)`` is one of them, into ``out`` (room for _N_EXACT_MAX); 0 when no class qualifies or ``types`` has an
    item that is not an exact ``type`` (its metaclass could run code: every event is asked then)."""
    cdef Py_ssize_t n = 0
    if type(types) is not tuple or PyTuple_GET_SIZE(types) > _N_EXACT_MAX:
        return 0
    for cls in <tuple>types:
        if type(cls) is not type:
            return 0
    for cls in <tuple>types:
        if mm_generic_getattr(cls) and _PyType_Lookup(cls, "__class__") == <PyObject*>_OBJECT_CLASS:
            out[n] = <PyObject*>cls
            n += 1
    return n


cdef inline bint _is_one_of(PyObject* cls, PyObject** types, Py_ssize_t n) noexcept:
    cdef Py_ssize_t i
    for i in range(n):
        if types[i] == cls:
            return True
    return False


# --- the driver's clocks as C values ------------------------------------------------------------------------------
# ``_now_ns``, ``_next_sample_ns`` and ``_next_snap_ns`` are compared with every event's time. Each is kept as the
# object the reference stored (what reading the attribute returns) and, beside it, what an int64 comparison needs:
# its value when it is an exact int in int64, or that it is an int above (``_NEVER`` = 2**63) or below int64, or
# anything else (None, a float: compared in Python, as before).
cdef enum:
    _C_INT, _C_ABOVE, _C_BELOW, _C_OTHER


cdef struct _Clock:
    int64_t v
    int kind


cdef int _clock_set(_Clock* c, object v) except -1:
    cdef int overflow = 0
    cdef long long x
    if PyLong_CheckExact(v):
        if fast_i64(v, &c.v):
            c.kind = _C_INT
            return 0
        x = PyLong_AsLongLongAndOverflow(v, &overflow)
        if overflow == 0:
            c.v = x
            c.kind = _C_INT
        else:
            c.kind = _C_ABOVE if overflow > 0 else _C_BELOW
        return 0
    c.kind = _C_OTHER
    return 0


cdef inline int _reached(int64_t tc, const _Clock* c, bint strict) noexcept:
    """``t > clock`` (``strict``) or ``t >= clock`` for an exact int64 ``t`` (value ``tc``): 1 or 0, or -1 when the
    clock must be compared in Python."""
    if c.kind == _C_INT:
        return tc > c.v if strict else tc >= c.v
    if c.kind == _C_ABOVE:
        return 0
    if c.kind == _C_BELOW:
        return 1
    return -1


cdef inline bint _before(int64_t tc, const _Clock* c) noexcept:
    """``t < clock`` for certain (``_reached(tc, c, False) == 0``): an int64 clock above ``tc``, or one past int64."""
    return c.kind == _C_ABOVE or (c.kind == _C_INT and tc < c.v)


cdef class EngineLoopBase:
    """The compiled half of ``backtest.EngineLoop``; the reference ``PyEngineLoop`` is the other (see the module)."""

    # the reference's state, set by its __init__ (typed slots where the per-event path reads it)
    cdef public object strategy, venue, config, sink, risk, result, gateway, ledger, _book, _tick, _strategy_refresh
    cdef public object _interval_ns, _risk_ns, _modes
    # _now_ns, _next_sample_ns, _next_snap_ns and _next_risk_ns: the objects (the properties below) and their C values
    # (_Clock)
    cdef object _now_obj, _sample_obj, _snap_obj, _risk_obj
    cdef _Clock _now_c, _sample_c, _snap_c, _risk_c
    # run()'s market events, counted in C and added to the result's stats at the end (or when the result changes)
    cdef bint _batching
    cdef long long _pending_market
    cdef public bint _venue_exchange_clock
    cdef object _first_set_for  # the result whose first_ts_ns this driver has seen set
    cdef object _stats_of, _stats  # the result whose stats this driver holds, and its stats (never reassigned)
    # whether the venue and the strategy are exactly the compiled classes (their C entry points are called then),
    # found for the objects they were found for
    cdef object _venue_for, _strategy_for, _refresh_for, _refresh_owner
    cdef bint _venue_c, _strategy_c, _refresh_c
    cdef object _ledger_for, _ledger_cls  # the ledger (and its class) _ledger_c was found for: a PnlLedgerBase
    cdef bint _ledger_c

    cdef inline bint _direct_venue(self, object venue) except -1:
        if venue is not self._venue_for:
            self._venue_c = _inherits(venue, PaperVenueBase, ("on_market", "next_event_ns"))
            self._venue_for = venue
        return self._venue_c

    cdef inline bint _direct_strategy(self, object strategy) except -1:
        if strategy is not self._strategy_for:
            self._strategy_c = _inherits(strategy, StrategyCoreBase, ("on_event",))
            self._strategy_for = strategy
        return self._strategy_c

    cdef inline bint _direct_refresh(self, object refresh) except -1:
        # the bound method the reference's __init__ stored is the compiled core's own refresh
        if refresh is not self._refresh_for:
            owner = getattr(refresh, "__self__", None)
            self._refresh_c = (
                getattr(refresh, "__func__", None) is StrategyCoreBase.__dict__["refresh"]
                and _inherits(owner, StrategyCoreBase, ("refresh",))
            )
            self._refresh_owner = owner
            self._refresh_for = refresh
        return self._refresh_c

    def __cinit__(self, *args, **kwargs):
        # no clock is set yet: each reads None until the reference's __init__ sets it
        self._now_c.kind = self._sample_c.kind = self._snap_c.kind = self._risk_c.kind = _C_OTHER

    @property
    def _now_ns(self):
        return self._now_obj

    @_now_ns.setter
    def _now_ns(self, value):
        _clock_set(&self._now_c, value)
        self._now_obj = value

    @property
    def _next_sample_ns(self):
        return self._sample_obj

    @_next_sample_ns.setter
    def _next_sample_ns(self, value):
        _clock_set(&self._sample_c, value)
        self._sample_obj = value

    @property
    def _next_snap_ns(self):
        return self._snap_obj

    @_next_snap_ns.setter
    def _next_snap_ns(self, value):
        _clock_set(&self._snap_c, value)
        self._snap_obj = value

    @property
    def _next_risk_ns(self):
        return self._risk_obj

    @_next_risk_ns.setter
    def _next_risk_ns(self, value):
        self._set_next_risk(value)

    cdef inline int _set_next_risk(self, object value) except -1:
        _clock_set(&self._risk_c, value)
        self._risk_obj = value
        return 0

    cdef inline int _set_now(self, object t, int64_t tc) except -1:
        # self._now_ns = t for an exact int64 t of value tc
        self._now_obj = t
        self._now_c.v = tc
        self._now_c.kind = _C_INT
        return 0

    cdef int _flush_market_count(self) except -1:
        cdef long long n = self._pending_market
        if n:
            self._pending_market = 0
            _count(self._stats, _MARKET_EVENTS, n)
        return 0

    # --- the replay loop -----------------------------------------------------------------------------------------
    def run(self, feed):
        """Replay a whole feed (market events in local-time order; anything else is skipped) and finish."""
        from apps.engine.simulation.backtest import MARKET_TYPES

        cdef PyObject* exact[_N_EXACT_MAX]
        cdef Py_ssize_t n_exact = _exact_types(MARKET_TYPES, exact)  # the tuple holds the classes (references)
        cdef bint own = type(self).on_market is EngineLoopBase.on_market and "on_market" not in getattr(self, "__dict__", {})
        t0 = time.perf_counter()
        on_market = self.on_market
        # the market events are counted in C while this loop runs and added to the stats whatever ends it, when no
        # code outside the engine can run in between to read them: the feed is a list or tuple (iterating runs no
        # code; a generator could read the stats between events) and there is no sink
        self._batching = own and (type(feed) is list or type(feed) is tuple) and self.sink is None
        try:
            for event in feed:
                if _is_one_of(<PyObject*>Py_TYPE(event), exact, n_exact) or isinstance(event, MARKET_TYPES):
                    if own:
                        self._market(event)
                    else:
                        on_market(event)
        finally:
            self._batching = False
            self._flush_market_count()
        self.result.stats.wall_s += time.perf_counter() - t0
        return self.finish()

    def on_market(self, event):
        """Feed one market event (local-time order): venue events due before it first, then the event."""
        self._market(event)

    cdef int _market(self, object event) except -1:
        cls = type(event)
        cdef Py_ssize_t local_at = _stamp_offset(cls, True), exch_at = _stamp_offset(cls, False)
        t = slot_get(event, local_at) if local_at >= 0 else event.ts_local_ns
        cdef int64_t tc = 0
        cdef bint tfast = PyLong_CheckExact(t) and fast_i64(t, &tc)
        cdef int cmp
        venue = self.venue
        # _deliver and _clocks_at without their calls when they have nothing to do (most events): the venue has
        # nothing in flight, and ``t`` is before every clock (their own first tests)
        if not (self._direct_venue(venue) and idle(<PaperVenueBase>venue)):
            self._deliver(t, False)
        if not (
            tfast
            and _before(tc, &self._sample_c)
            and _before(tc, &self._snap_c)
            and (self.risk is None or _before(tc, &self._risk_c))
        ):
            self._clocks_at(t, tfast, tc)
        cmp = _reached(tc, &self._now_c, True) if tfast else -1
        if cmp == 1:
            self._set_now(t, tc)
        elif cmp == -1 and t > self._now_ns:
            self._now_ns = t
        result = self.result
        # first_ts_ns is written only here: once this result's is set, it is not read again per event
        if result is not self._first_set_for:
            if result.first_ts_ns == 0:
                result.first_ts_ns = t
            if result.first_ts_ns != 0:
                self._first_set_for = result
        if result is not self._stats_of:
            self._flush_market_count()  # what run() counted goes to the stats it was counted for
            self._stats = result.stats
            self._stats_of = result
        if self._batching:
            self._pending_market += 1
        else:
            _count(self._stats, _MARKET_EVENTS, 1)  # result.stats.market_events += 1
        ts_exch_ns = None  # read once, when first needed (a Timer-like event without it must not be asked early)
        risk = self.risk
        if risk is not None:
            ts_exch_ns = slot_get(event, exch_at) if exch_at >= 0 else event.ts_exch_ns
            if type(risk) is _SESSION_RISK and _RISK_SLOTS:
                # SessionRisk.on_market without the Python call (the reference's method is the readable version),
                # its fields by slot offset: the clocks recorded, applied when the session's values are read
                slot_set(risk, _R_FEED, t)
                if _truth(ts_exch_ns) and not slot_get(risk, _R_MEASURED):
                    slot_set(risk, _R_SKEW_LOCAL, t)
                    slot_set(risk, _R_SKEW_EXCH, ts_exch_ns)
            else:
                risk.on_market(t, ts_exch_ns)
        if self.sink is not None:
            self.sink.market(event)
        if self._direct_venue(venue):
            out = (<PaperVenueBase>venue).c_on_market(event)
        else:
            out = venue.on_market(event)
        # the exact classes first (an isinstance that fails costs a type walk); anything else takes the reference's chain
        if cls is _BBO or cls is _DIFF or cls is _SNAPSHOT:
            if ts_exch_ns is None:
                ts_exch_ns = slot_get(event, exch_at) if exch_at >= 0 else event.ts_exch_ns
            self._mid(t, ts_exch_ns)
        elif cls is _TRADE:
            pass
        elif isinstance(event, Funding):
            self.ledger.on_funding(t, event.rate)
        elif isinstance(event, MarkPrice):
            self._on_mark_price(t, event)
        elif not isinstance(event, Trade):
            self._mid(t, event.ts_exch_ns if ts_exch_ns is None else ts_exch_ns)
        if _truth(out):
            self._handle_all(out)
        strategy = self.strategy
        if self._direct_strategy(strategy):
            actions = (<StrategyCoreBase>strategy).c_on_event(event)
            # _after returns at once for no actions (None) and no new decision: most market events skip the call
            if actions is not None or (<StrategyCoreBase>strategy).decisions_changed:
                self._after(t, actions)
        else:
            self._after(t, strategy.on_event(event))
        refresh = self._strategy_refresh
        if refresh is not None:
            # PyEngineLoop.on_market: the estimates due, after the actions went out
            if self._direct_refresh(refresh):
                (<StrategyCoreBase>self._refresh_owner).c_refresh()
            else:
                refresh()
        return 0

    # --- the merge with the venue ---------------------------------------------------------------------------------
    def _deliver_venue(self, t, *, inclusive):
        self._deliver(t, inclusive)

    cdef int _deliver(self, object t, bint inclusive) except -1:
        venue = self.venue
        cdef bint direct = self._direct_venue(venue)
        if direct and idle(<PaperVenueBase>venue):
            return 0  # next_event_ns() is None (most market events)
        nxt = (<PaperVenueBase>venue).c_next_event_ns() if direct else venue.next_event_ns()
        while nxt is not None and (nxt <= t if inclusive else nxt < t):
            if nxt > self._now_ns:
                self._now_ns = nxt
            self._clocks(nxt)
            self._handle_all(venue.advance(nxt))
            nxt = (<PaperVenueBase>venue).c_next_event_ns() if direct else venue.next_event_ns()
        return 0

    # --- the driver's clocks --------------------------------------------------------------------------------------
    def _reach(self, t):
        self._clocks(t)

    cdef int _clocks(self, object t) except -1:
        cdef int64_t tc = 0
        cdef bint tfast = PyLong_CheckExact(t) and fast_i64(t, &tc)
        return self._clocks_at(t, tfast, tc)

    cdef int _clocks_at(self, object t, bint tfast, int64_t tc) except -1:
        # _clocks with ``t``'s int64 value already read (``tfast``: ``t`` is an exact int of value ``tc``)
        cdef int cmp = -1
        if tfast:
            cmp = _reached(tc, &self._sample_c, False)
        if cmp != 0:  # a sample is due, or the grid is not placed yet, or a comparison in Python
            self._samples(t)
        if tfast:
            cmp = _reached(tc, &self._snap_c, False)
        if cmp == 1 or (cmp == -1 and t >= self._next_snap_ns):
            self._snapshot(t)
        if self.risk is not None:
            # nxt is None or nxt <= t (else _risk_until has nothing to do before ``t``), in C when both are int64
            cmp = _reached(tc, &self._risk_c, False) if tfast else -1
            if cmp == 1 or (cmp == -1 and (self._risk_obj is None or self._risk_obj <= t)):
                self._risk_grid(t)
        return 0

    # --- the risk grid --------------------------------------------------------------------------------------------
    def _risk_until(self, t):
        self._risk_grid(t)

    cdef int _risk_grid(self, object t) except -1:
        """PyEngineLoop._risk_until: every grid point up to ``t``."""
        nxt = self._risk_obj
        if nxt is None:
            self._set_next_risk((t // self._risk_ns + 1) * self._risk_ns)
            return 0
        while nxt <= t:
            self._set_next_risk(nxt + self._risk_ns)
            self._risk_at(nxt)
            if self.risk is None:
                return 0
            nxt = self._risk_obj
        return 0

    def _evaluate_risk(self, now_ns):
        self._risk_at(now_ns)

    cdef int _risk_at(self, object now_ns) except -1:
        """PyEngineLoop._evaluate_risk. The usual outcome (nothing started or cleared, no trip that pulls quotes,
        every mode source RUNNING) is taken here: it only sets the ``"risk"`` source and the gateway to RUNNING, as the
        reference's ``_risk_outcome`` and set_mode do then (a warning that stays active, e.g. the skew alarm, records
        nothing and latches nothing there); any other outcome runs the reference's ``_risk_outcome``.

        The strategy core's ``risk_state`` and last decision, and the session's evaluation, are called at C level
        when neither their classes nor the objects themselves replace them (_risk_direct, asked every time)."""
        global _PY_SET_MODE, _PY_APPLY_MODE
        if _PY_SET_MODE is None:
            from apps.engine.simulation.backtest import PyEngineLoop

            _PY_SET_MODE = PyEngineLoop.set_mode
            _PY_APPLY_MODE = PyEngineLoop._apply_mode
        risk = self.risk
        assert risk is not None
        strategy = self.strategy
        cdef PyObject* found
        if _core_direct(strategy):
            d = (<StrategyCoreBase>strategy).last_decision
            view = PyObject_CallOneArg(_RISK_STATE, strategy)  # strategy.risk_state()
        else:
            d = strategy.last_decision
            # what the rules read of the core's state (the strategy core's risk_state; a baseline's whole state)
            view = strategy.risk_state() if hasattr(strategy, "risk_state") else strategy.state()
        if not d:
            inputs = {}
        elif type(d) is _QUOTE_DECISION and _QD_INPUTS >= 0:
            inputs = slot_get(d, _QD_INPUTS)
        else:
            inputs = d.inputs
        if _session_direct(risk):
            result = c_evaluate(risk, now_ns, view, inputs)
        else:
            result = risk.evaluate(now_ns, view, inputs)
        started, cleared, trips = result
        if (
            type(started) is list and not started
            and type(cleared) is list and not cleared
            and type(trips) is list and _none_pulls(<list>trips)
            and _found(self, _OWN_SET_MODE, _PY_SET_MODE)
            and _found(self, _OWN_APPLY_MODE, _PY_APPLY_MODE)
            and type(self._modes) is dict
        ):
            modes = <dict>self._modes
            # set_mode("risk", RUNNING, ...): "risk" is not "control", no latch cleared (stored again only when another
            # value is there: the same dict either way)
            found = PyDict_GetItem(modes, "risk")
            if found == NULL or <object>found is not _RUNNING:
                modes["risk"] = _RUNNING
            for m in modes.values():
                if m is not _RUNNING:
                    break
            else:
                # _apply_mode with max(modes) RUNNING: neither cancel branch can run
                self.gateway.mode = _RUNNING
                return 0
            self._apply_mode(now_ns, "risk rules")
            return 0
        self._risk_outcome(now_ns, started, cleared, trips)
        return 0

    def _sample_until(self, t):
        self._samples(t)

    cdef int _samples(self, object t) except -1:
        nxt = self._next_sample_ns
        if nxt is None:
            if isfinite(self.ledger.mid):
                # samples on a fixed grid aligned to whole intervals of the epoch: reproducible across runs
                self._next_sample_ns = (t // self._interval_ns + 1) * self._interval_ns
            return 0
        if nxt <= t:
            while nxt <= t:
                self._take_sample(nxt)
                nxt += self._interval_ns
            self._next_sample_ns = nxt
        return 0

    # --- the ledger's mid -----------------------------------------------------------------------------------------
    def _update_mid(self, t, ts_exch_ns=0):
        self._mid(t, ts_exch_ns)

    cdef int _mid(self, object t, object ts_exch_ns) except -1:
        cdef tick_t bb, ba
        cdef double mid
        book = self._book
        tick = self._tick
        if type(book) is not LevelBook or type(tick) is not float:
            super(EngineLoopBase, self)._update_mid(t, ts_exch_ns)
            return 0
        # LevelBook._best of both sides, read from the sides' last blocks here (72k times a backtest; the method is a
        # call into the fill model's module): the best level is the last one, bids keyed by the tick, asks by -tick
        if not _side_best(&(<LevelBook>book)._bids, &bb) or not _side_best(&(<LevelBook>book)._asks, &ba):
            return 0
        ba = -ba
        if bb >= ba:
            return 0
        if not (-_EXACT < bb < _EXACT and -_EXACT < ba < _EXACT):
            super(EngineLoopBase, self)._update_mid(t, ts_exch_ns)
            return 0
        mid = <double>(bb + ba) * <double>tick * 0.5
        ledger = self.ledger
        # the compiled ledger's mid is a C double field: read in C (72k times a backtest) unless a subclass made it
        # a property (the isinstance found once per ledger object and class: its __class__ may be reassigned)
        if ledger is not self._ledger_for or type(ledger) is not self._ledger_cls:
            self._ledger_c = isinstance(ledger, PnlLedgerBase)
            self._ledger_for = ledger
            self._ledger_cls = type(ledger)
        if self._ledger_c and (<PnlLedgerBase>ledger).c_mid_field:
            if mid == (<PnlLedgerBase>ledger).mid:
                return 0
        elif not (mid != ledger.mid):
            return 0
        venue_t = ts_exch_ns if self._venue_exchange_clock and ts_exch_ns > 0 else t
        ledger.on_mid(t, mid, venue_t)
        return 0

    # --- after the strategy ---------------------------------------------------------------------------------------
    def _after_strategy(self, ts_ns, actions):
        self._after(ts_ns, actions)

    cdef int _after(self, object ts_ns, object actions) except -1:
        strategy = self.strategy
        cdef bint changed
        if self._direct_strategy(strategy):  # the compiled core's slots, read in C
            changed = (<StrategyCoreBase>strategy).decisions_changed
            if not changed and not actions:
                return 0  # nothing to record and nothing to send (most market events)
        else:
            changed = strategy.decisions_changed
        if changed and strategy.last_decision is not None:
            result = self.result
            _count(result.stats, _DECISIONS, 1)
            if self.config.keep_decisions:
                result.decisions.append(strategy.last_decision)
            if self.sink is not None:
                self.sink.decision(strategy.last_decision)
        if not actions:
            return 0
        if self.gateway.mode is _RUNNING:
            self._send_all(ts_ns, actions)
        else:
            self._route(ts_ns, actions)  # the gateway is closed: the reference's split and its record of the blocked
        return 0

    def _send(self, ts_ns, allowed, blocked):
        if blocked:
            return super(EngineLoopBase, self)._send(ts_ns, allowed, blocked)
        self._send_all(ts_ns, allowed)

    cdef int _send_all(self, object ts_ns, object allowed) except -1:
        # _send with nothing blocked: the actions to the risk session's counters, the sink and the venue, and the
        # venue's local rejects back through _handle
        cdef Py_ssize_t n_place = 0, n_cancel = 0
        if not allowed:
            return 0
        stats = self.result.stats
        _count(stats, _ACTIONS, len(allowed))
        risk = self.risk
        if risk is not None:
            for a in allowed:
                if isinstance(a, PlaceOrder):
                    n_place += 1
                if isinstance(a, (CancelOrder, CancelAll)):
                    n_cancel += 1
            risk.on_sent(ts_ns, n_place, n_cancel)
        sink = self.sink
        if sink is not None:
            get = self.strategy.tracker.get
            for a in allowed:
                cid = getattr(a, "client_order_id", None)
                sink.sent(ts_ns, a, get(cid) if cid is not None else None)
        out = self.venue.submit(allowed, ts_ns)
        _count(stats, _LOCAL_REJECTS, len(out))
        if out:
            self._handle_all(out)
        return 0

    # --- our order events -----------------------------------------------------------------------------------------
    def _handle(self, events):
        self._handle_all(events)

    cdef int _handle_all(self, object events) except -1:
        # PyEngineLoop._handle: each event to the ledger (a fill), the risk session (a venue's reject), the strategy
        # and the sink, then what the strategy does about it
        strategy, ledger, sink, result, risk = self.strategy, self.ledger, self.sink, self.result, self.risk
        if _RUN_STATS is None:
            _bind()
        for ev in events:
            _count(result.stats, _ORDER_EVENTS, 1)
            cls = type(ev)
            if cls is _FILL:
                if not ledger.on_fill(ev):
                    continue  # a venue delivered this fill before: it must not count twice anywhere
                result.fills.append(ev)
                q = abs(ledger.position)
                if q > result.max_abs_inventory:
                    result.max_abs_inventory = q
            elif cls is _REJECT and risk is not None and not ev.reason.startswith(_BLOCKED):
                risk.on_reject(ev.ts_local_ns)
            if self._direct_strategy(strategy):
                actions = (<StrategyCoreBase>strategy).c_on_event(ev)
            else:
                actions = strategy.on_event(ev)
            if sink is not None:
                # after the strategy saw it, so the recorded order state includes it
                sink.order_event(ev, strategy.tracker.get(ev.client_order_id))
            self._after(ev.ts_local_ns, actions)
        return 0
