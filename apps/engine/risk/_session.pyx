# cython: language_level=3, binding=True
"""Compiled twin of one risk evaluation, ``PySessionRisk.evaluate`` in :mod:`apps.engine.risk.session` (the
readable reference): the backtest driver evaluates the rules every 100 ms of market time, and in the reference
one evaluation is ~130,000 instructions, nearly all interpreter work (a ``RiskState`` of 17 fields and four dicts,
one Python call per rule) for a result that is almost always "nothing trips".

:func:`evaluate` makes the reference's updates of the rolling inputs in the same order with the same values (the
session clock, the peak equity, every ``RollingLoss`` and ``OrderFlowWindow``: by slot offset for the exact classes,
else through their own Python methods), then checks in C, for each rule of a known type, the exact negation of the
reference rule's trip conditions. When every rule is certainly quiet there is no trip, and no ``RiskState`` is built.
When the only rules that may trip are skew alarms (exactly ``SkewAlarmRule``, whose trip depends only on the flag,
the position, its params and its name: it stays on for minutes while a position is held) their trips are built here
as ``SkewAlarmRule.evaluate`` builds them, its sentence from the formatter that method uses. Otherwise (another rule
may trip, an input is of an unusual type, a rule of a type not known here or a subclass, the margin rule with a margin
report) it builds the same ``RiskState`` as the reference and runs the reference rules on it, so every trip, value and
message is the reference's own. ``TripEdges.update`` runs here for exactly a ``TripEdges`` (with the same reads,
writes and order), any other edges object is asked itself.

Every check below mirrors one ``evaluate`` of :mod:`apps.engine.risk.rules`; a quiet verdict is given only for
inputs of the types the session itself produces (floats, ints, ``None``), anything else takes the reference path.
"""

cimport cpython.array as carray
cimport cython
from cpython.dict cimport PyDict_GetItem, PyDict_Next
from cpython.list cimport PyList_GET_ITEM, PyList_GET_SIZE, PyList_New, PyList_SET_ITEM
from cpython.ref cimport Py_INCREF
from cpython.mem cimport PyMem_Free, PyMem_Malloc
from cpython.sequence cimport PySequence_GetItem
from cpython.set cimport PySet_Contains
from cpython.tuple cimport PyTuple_GET_ITEM, PyTuple_GET_SIZE
from cpython.float cimport PyFloat_AS_DOUBLE, PyFloat_FromDouble
from cpython.object cimport Py_SIZE, PyObject
from libc.math cimport INFINITY, fabs, isfinite
from cpython.long cimport PyLong_AsLongLongAndOverflow
from libc.stdint cimport INT64_MIN, int64_t, uint64_t
from libc.string cimport memcpy

from apps.engine._slots cimport dict_presized, fast_i64, field, new_slotted, slot_get, slot_offset, slot_offsets, slot_set


cdef extern from "Python.h":
    # d.get(key) as the reference asks it: NULL when absent, an error raised (dict.get's) when hashing or comparing
    # fails; cheaper than PyDict_GetItem, which saves and restores the exception state around the lookup
    PyObject* _dict_get "PyDict_GetItemWithError" (dict d, object key) except? NULL
    Py_ssize_t PyDict_GET_SIZE(object d)
    # a method descriptor called with its object (deque.append(d, x)): no bound method, no name lookup
    object PyObject_CallOneArg(object f, object arg)
    object PyObject_Vectorcall(object f, PyObject** args, size_t nargsf, PyObject* kwnames)


cdef extern from *:
    """
    /* A dict's version tag (PEP 509; CPython bumps it on every change of the dict): what the decision record's cached
       positions are checked against. 3.11's layout only: elsewhere the positions are looked up every time. */
    #if PY_VERSION_HEX >= 0x030B0000 && PY_VERSION_HEX < 0x030C0000
    #define MM_DICT_VERSIONED 1
    #define mm_dict_version(d) (((PyDictObject*)(d))->ma_version_tag)
    #else
    #define MM_DICT_VERSIONED 0
    #define mm_dict_version(d) ((uint64_t)0)
    #endif
    """
    bint MM_DICT_VERSIONED
    uint64_t mm_dict_version(dict d)

from collections import deque
import math

from apps.engine.market.inputs import DecisionInputs, InputLayout
from apps.engine.risk.rules import (
    CancelRateParams,
    CancelRateRule,
    ClockSkewRule,
    CrossedBookRule,
    DrawdownParams,
    DrawdownRule,
    EstimatorStateParams,
    EstimatorStateRule,
    MarginRule,
    MessageRateParams,
    MessageRateRule,
    OrderFlowCounts,
    OrderFlowWindow,
    RollingCounter,
    RollingLoss,
    TripEdges,
    NotionalLimitParams,
    NotionalLimitRule,
    PositionLimitParams,
    PositionLimitRule,
    RejectRateParams,
    RejectRateRule,
    RiskEngine,
    RiskState,
    RuleTrip,
    SkewAlarmParams,
    SkewAlarmRule,
    StaleFeedParams,
    StaleFeedRule,
    WindowLossParams,
    WindowLossRule,
    _Rule,
    _skew_alarm_message,
    skew_magnitude_alarm,
)

cdef object _nan = math.nan
cdef str _KAPPA_NAME = "kappa", _SIGMA_NAME = "sigma"
cdef int64_t _EXACT_INT = 1LL << 53  # ints up to this are exact in a double
# a rule's own fields by slot offset: every rule class _quiet and the loud trips know is a slotted _Rule subclass
# (rules.py), and those paths are taken only for those exact classes; by name when an offset is unknown
cdef Py_ssize_t _R_PARAMS = slot_offset(_Rule, "params"), _R_NAME = slot_offset(_Rule, "name")
cdef Py_ssize_t _R_ACTION = slot_offset(_Rule, "action")
cdef Py_ssize_t _R_MAX_AGE = slot_offset(StaleFeedRule, "max_age_ns")
cdef Py_ssize_t _R_MAX_SKEW = slot_offset(ClockSkewRule, "max_abs_skew_ns")
cdef Py_ssize_t _R_BAD = slot_offset(EstimatorStateRule, "_bad")


cdef inline object _rf(object rule, Py_ssize_t offset, str name):
    """``getattr(rule, name)`` for a rule of an exact class known here: by slot offset when known."""
    return slot_get(rule, offset) if offset >= 0 else getattr(rule, name)


cdef object _inf = math.inf
cdef object _POSITION = PositionLimitRule
cdef object _NOTIONAL = NotionalLimitRule
cdef object _DRAWDOWN = DrawdownRule
cdef object _WINDOW_LOSS = WindowLossRule
cdef object _STALE = StaleFeedRule
cdef object _CROSSED = CrossedBookRule
cdef object _SKEW = ClockSkewRule
cdef object _ESTIMATOR = EstimatorStateRule
cdef object _REJECT = RejectRateRule
cdef object _CANCEL = CancelRateRule
cdef object _MESSAGE = MessageRateRule
cdef object _MARGIN = MarginRule
cdef object _SKEW_ALARM = SkewAlarmRule
cdef object _RECORD = DecisionInputs
cdef object _LAYOUT = InputLayout
cdef object _ARRAY = carray.array
cdef Py_ssize_t _DI_LAYOUT = slot_offset(DecisionInputs, "layout"), _DI_VECTOR = slot_offset(DecisionInputs, "vector")
cdef Py_ssize_t _IL_INDEX = slot_offset(InputLayout, "index")
# the rules' params (frozen, slotted dataclasses) read by slot offset (-1: by name)
cdef object _POSITION_P = PositionLimitParams, _NOTIONAL_P = NotionalLimitParams, _DRAWDOWN_P = DrawdownParams
cdef object _WINDOW_LOSS_P = WindowLossParams, _STALE_P = StaleFeedParams, _ESTIMATOR_P = EstimatorStateParams
cdef object _REJECT_P = RejectRateParams, _CANCEL_P = CancelRateParams, _MESSAGE_P = MessageRateParams
cdef Py_ssize_t _P_MAX_POSITION = slot_offset(PositionLimitParams, "max_position")
cdef Py_ssize_t _P_MAX_NOTIONAL = slot_offset(NotionalLimitParams, "max_notional_quote")
cdef Py_ssize_t _P_MAX_DD_QUOTE = slot_offset(DrawdownParams, "max_drawdown_quote")
cdef Py_ssize_t _P_MAX_DD_FRAC = slot_offset(DrawdownParams, "max_drawdown_frac")
cdef Py_ssize_t _P_WL_WINDOW = slot_offset(WindowLossParams, "window_s")
cdef Py_ssize_t _P_WL_MAX = slot_offset(WindowLossParams, "max_loss_quote")
cdef Py_ssize_t _P_FEEDS = slot_offset(StaleFeedParams, "feeds")
cdef Py_ssize_t _P_ESTIMATORS = slot_offset(EstimatorStateParams, "estimators")
cdef Py_ssize_t _P_REJ_WINDOW = slot_offset(RejectRateParams, "window_s")
cdef Py_ssize_t _P_REJ_MIN = slot_offset(RejectRateParams, "min_orders")
cdef Py_ssize_t _P_REJ_MAX = slot_offset(RejectRateParams, "max_reject_ratio")
cdef Py_ssize_t _P_CAN_WINDOW = slot_offset(CancelRateParams, "window_s")
cdef Py_ssize_t _P_CAN_MAX = slot_offset(CancelRateParams, "max_cancels")
cdef Py_ssize_t _P_MSG_WINDOW = slot_offset(MessageRateParams, "window_s")
cdef Py_ssize_t _P_MSG_MAX = slot_offset(MessageRateParams, "max_messages")
cdef object _ROLLING_LOSS = RollingLoss
cdef object _COUNTER = RollingCounter
cdef object _FLOW = OrderFlowWindow
cdef object _COUNTS = OrderFlowCounts
# the rolling counters' and the order-flow window's slots, and the counts' fields, by offset (-1: by name)
cdef Py_ssize_t _RC_EVENTS = slot_offset(RollingCounter, "_events"), _RC_LAST = slot_offset(RollingCounter, "_last_ns")
cdef Py_ssize_t _RC_TOTAL = slot_offset(RollingCounter, "_total"), _RC_WINDOW = slot_offset(RollingCounter, "window_ns")
cdef bint _RC_SLOTS = min(_RC_EVENTS, _RC_LAST, _RC_TOTAL, _RC_WINDOW) >= 0
cdef Py_ssize_t _RL_SAMPLES = slot_offset(RollingLoss, "_samples"), _RL_MAX = slot_offset(RollingLoss, "_max")
cdef Py_ssize_t _RL_SEQ = slot_offset(RollingLoss, "_seq"), _RL_WINDOW = slot_offset(RollingLoss, "window_ns")
cdef bint _RL_SLOTS = min(_RL_SAMPLES, _RL_MAX, _RL_SEQ, _RL_WINDOW) >= 0
cdef Py_ssize_t _FW_SENT = slot_offset(OrderFlowWindow, "_sent"), _FW_REJ = slot_offset(OrderFlowWindow, "_rejected")
cdef Py_ssize_t _FW_CAN = slot_offset(OrderFlowWindow, "_cancelled"), _FW_MSG = slot_offset(OrderFlowWindow, "_messages")
cdef Py_ssize_t _FW_LAST = slot_offset(OrderFlowWindow, "_last"), _FW_WINDOW = slot_offset(OrderFlowWindow, "window_s")
cdef Py_ssize_t _FC_SENT = slot_offset(OrderFlowCounts, "sent"), _FC_REJ = slot_offset(OrderFlowCounts, "rejected")
cdef Py_ssize_t _FC_CAN = slot_offset(OrderFlowCounts, "cancelled"), _FC_MSG = slot_offset(OrderFlowCounts, "messages")
cdef object _EDGES = TripEdges
cdef Py_ssize_t _TE_ACTIVE = slot_offset(TripEdges, "_active")
cdef object _RISK_ENGINE = RiskEngine
# a loud skew alarm's trip, built here (_skew_alarm_trip) while the class's evaluate and _trip are the reference's
cdef object _SKEW_ALARM_EVALUATE = SkewAlarmRule.evaluate
cdef object _RULE_TRIP_METHOD = _Rule._trip
cdef object _SKEW_MESSAGE = _skew_alarm_message
cdef object _SKEW_PARAMS = SkewAlarmParams
cdef Py_ssize_t _SP_RATIO = slot_offset(SkewAlarmParams, "min_position_ratio")
cdef Py_ssize_t _SP_BPS = slot_offset(SkewAlarmParams, "min_skew_bps")
# RuleTrip is a frozen, slotted dataclass: built as its generated __init__ builds it (object.__setattr__ per field, in
# field order, "cause" defaulted), without the Python-level call, when its fields are these and it has no
# __post_init__; else through the class
cdef object _TRIP = RuleTrip
cdef tuple _TRIP_FIELDS = ("rule", "kind", "action", "ts_ns", "values", "message", "cause")
cdef Py_ssize_t _TRIP_OFF[7]
cdef bint _TRIP_SLOTS = (
    tuple(RuleTrip.__dataclass_fields__) == _TRIP_FIELDS
    and not hasattr(RuleTrip, "__post_init__")
    and slot_offsets(RuleTrip, _TRIP_FIELDS, _TRIP_OFF)
)
cdef object _TRIP_CAUSE = RuleTrip.__dataclass_fields__["cause"].default
# OrderFlowCounts, another frozen, slotted dataclass: built the same way when its fields are these
cdef tuple _COUNTS_FIELDS = ("window_s", "sent", "rejected", "cancelled", "messages")
cdef Py_ssize_t _COUNTS_OFF[5]
cdef bint _COUNTS_SLOTS = (
    tuple(OrderFlowCounts.__dataclass_fields__) == _COUNTS_FIELDS
    and not hasattr(OrderFlowCounts, "__post_init__")
    and slot_offsets(OrderFlowCounts, _COUNTS_FIELDS, _COUNTS_OFF)
)


cdef inline bint _ge(double x, object bound) except -1:
    """``x >= bound`` as Python compares them (a bound given as an int is compared exactly, as the reference does)."""
    if type(bound) is float:
        return x >= PyFloat_AS_DOUBLE(bound)
    return x >= bound


cdef inline bint _finite_float(object v):
    """``rules._finite(v)`` for an exact float (what the session builds); False (not quiet) for anything else."""
    return type(v) is float and isfinite(PyFloat_AS_DOUBLE(v))


ctypedef struct _In:
    # what one evaluation's rules read (the reference's RiskState, unbuilt): borrowed from evaluate's own references
    PyObject* now  # the session clock, an int (ns)
    int64_t now_i64
    bint now_c  # now is exactly an int, 0 <= now < 2**63, in now_i64
    double q, mid, max_inventory, skew_frac
    PyObject* best_bid
    PyObject* best_ask
    PyObject* equity
    PyObject* peak
    PyObject* feed_last  # the session's dict
    PyObject* skew_ns
    PyObject* kappa
    PyObject* sigma
    PyObject* margin
    # the window losses and the order-flow counts: keys (the session's dicts' own, exact floats or ints) and values
    # as two lists each, or (NULL lists) the dicts the reference builds
    PyObject* loss_keys
    PyObject* loss_values
    PyObject* window_losses
    PyObject* flow_keys
    PyObject* flow_values
    PyObject* order_flow


cdef inline object _window(PyObject* keys, PyObject* values, PyObject* built, object key):
    """The reference state's ``window_losses.get(key)`` (or ``order_flow``'s) when certain, else None (not quiet: the
    reference then decides). With the keys listed: the value whose key is ``key`` itself, which is the one the dict's
    lookup finds (it tries identity first, and an exact float's or int's hash does not change); None when no key is
    ``key`` itself (an equal one may be). With the dict built: its own lookup."""
    cdef Py_ssize_t i
    cdef PyObject* found
    if keys != NULL:
        for i in range(PyTuple_GET_SIZE(<tuple>keys)):
            if PyTuple_GET_ITEM(<tuple>keys, i) == <PyObject*>key:
                return <object>PyList_GET_ITEM(<list>values, i)
        return None
    found = _dict_get(<dict>built, key)
    return None if found is NULL else <object>found


cdef inline bint _count_ge(object count, object bound) except -1:
    """``count >= bound``: in C for two exact ints within int64 (an exact comparison, as Python's)."""
    cdef int64_t a, b
    if _i64(count, &a) and _i64(bound, &b):
        return a >= b
    return count >= bound


cdef inline bint _count_lt(object count, object bound) except -1:
    """``count < bound``: in C for two exact ints within int64."""
    cdef int64_t a, b
    if _i64(count, &a) and _i64(bound, &b):
        return a < b
    return count < bound


cdef bint _quiet(object rule, _In* s) except -1:
    """True only when the reference ``rule.evaluate(state)`` returns None for this state."""
    cdef object t = type(rule)
    cdef object p
    cdef double e, pk, dd, frac, bid, ask, loss
    cdef int64_t x, y, ts
    cdef PyObject* found
    cdef double q = s.q
    if t is _POSITION:  # q is a float (float() of the core's value)
        p = _rf(rule, _R_PARAMS, "params")
        return isfinite(q) and not _ge(fabs(q), field(p, _POSITION_P, _P_MAX_POSITION, "max_position"))
    if t is _NOTIONAL:
        if not isfinite(q):
            return False
        if q == 0:
            return True
        if not (isfinite(s.mid) and s.mid > 0):
            return False
        p = _rf(rule, _R_PARAMS, "params")
        return not _ge(fabs(q) * s.mid, field(p, _NOTIONAL_P, _P_MAX_NOTIONAL, "max_notional_quote"))
    if t is _DRAWDOWN:
        if not (_finite_float(<object>s.equity) and _finite_float(<object>s.peak)):
            return False
        e = PyFloat_AS_DOUBLE(<object>s.equity)
        pk = PyFloat_AS_DOUBLE(<object>s.peak)
        if e > pk:  # max(peak, equity)
            pk = e
        dd = pk - e
        frac = dd / pk if pk > 0 else INFINITY
        p = _rf(rule, _R_PARAMS, "params")
        if _ge(dd, field(p, _DRAWDOWN_P, _P_MAX_DD_QUOTE, "max_drawdown_quote")):  # hit_quote
            return False
        bound = field(p, _DRAWDOWN_P, _P_MAX_DD_FRAC, "max_drawdown_frac")
        return not (bound != _inf and _ge(frac, bound))  # hit_frac
    if t is _WINDOW_LOSS:
        p = _rf(rule, _R_PARAMS, "params")
        v = _window(s.loss_keys, s.loss_values, s.window_losses, field(p, _WINDOW_LOSS_P, _P_WL_WINDOW, "window_s"))
        if not _finite_float(v):  # None: absent (or not certain)
            return False
        loss = PyFloat_AS_DOUBLE(v)
        return not _ge(loss, field(p, _WINDOW_LOSS_P, _P_WL_MAX, "max_loss_quote"))
    if t is _STALE:
        feed_last = <object>s.feed_last
        feeds = field(_rf(rule, _R_PARAMS, "params"), _STALE_P, _P_FEEDS, "feeds")
        if not feeds:
            if not feed_last:
                return False
            feeds = feed_last  # its keys
        max_age_ns = _rf(rule, _R_MAX_AGE, "max_age_ns")
        by_c = s.now_c and _i64(max_age_ns, &y)
        for feed in feeds:
            found = PyDict_GetItem(feed_last, feed)
            if found is NULL or (<object>found) is None:
                return False
            if type(<object>found) is not int:
                return False
            if by_c and _i64(<object>found, &ts) and ts >= 0:  # both times >= 0: the difference fits
                if s.now_i64 - ts >= y:
                    return False
            elif <object>s.now - <object>found >= max_age_ns:
                return False
        return True
    if t is _CROSSED:
        if not (_finite_float(<object>s.best_bid) and _finite_float(<object>s.best_ask)):
            return False
        bid = PyFloat_AS_DOUBLE(<object>s.best_bid)
        ask = PyFloat_AS_DOUBLE(<object>s.best_ask)
        return bid > 0 and ask > 0 and not (bid >= ask)
    if t is _SKEW:
        skew_ns = <object>s.skew_ns
        if type(skew_ns) is not int:  # None (unknown) trips; a float or a bool takes the reference path
            return False
        bound = _rf(rule, _R_MAX_SKEW, "max_abs_skew_ns")
        if _i64(skew_ns, &x) and x != INT64_MIN and _i64(bound, &y):
            return not ((x if x >= 0 else -x) >= y)
        return not (abs(skew_ns) >= bound)
    if t is _ESTIMATOR:
        bad = _rf(rule, _R_BAD, "_bad")
        for name in field(_rf(rule, _R_PARAMS, "params"), _ESTIMATOR_P, _P_ESTIMATORS, "estimators"):
            if name is _KAPPA_NAME or name == _KAPPA_NAME:
                st = <object>s.kappa
            elif name is _SIGMA_NAME or name == _SIGMA_NAME:
                st = <object>s.sigma
            else:  # not reported by the session: "missing"
                return False
            if st in bad:
                return False
        return True
    if t is _REJECT:
        p = _rf(rule, _R_PARAMS, "params")
        c = _window(s.flow_keys, s.flow_values, s.order_flow, field(p, _REJECT_P, _P_REJ_WINDOW, "window_s"))
        if c is None:
            return False
        sent = field(c, _COUNTS, _FC_SENT, "sent")
        if _count_lt(sent, field(p, _REJECT_P, _P_REJ_MIN, "min_orders")):
            return True
        rejected = field(c, _COUNTS, _FC_REJ, "rejected")
        bound = field(p, _REJECT_P, _P_REJ_MAX, "max_reject_ratio")
        # int / int as Python divides them: both exact in a double, the quotient correctly rounded either way
        if (_i64(sent, &x) and 0 < x <= _EXACT_INT and _i64(rejected, &y) and -_EXACT_INT <= y <= _EXACT_INT
                and type(bound) is float):
            return not (<double>y / <double>x >= PyFloat_AS_DOUBLE(bound))
        ratio = rejected / sent
        return not (ratio >= bound)
    if t is _CANCEL:
        p = _rf(rule, _R_PARAMS, "params")
        c = _window(s.flow_keys, s.flow_values, s.order_flow, field(p, _CANCEL_P, _P_CAN_WINDOW, "window_s"))
        if c is None:
            return False
        return not _count_ge(field(c, _COUNTS, _FC_CAN, "cancelled"), field(p, _CANCEL_P, _P_CAN_MAX, "max_cancels"))
    if t is _MESSAGE:
        p = _rf(rule, _R_PARAMS, "params")
        c = _window(s.flow_keys, s.flow_values, s.order_flow, field(p, _MESSAGE_P, _P_MSG_WINDOW, "window_s"))
        if c is None:
            return False
        return not _count_ge(field(c, _COUNTS, _FC_MSG, "messages"), field(p, _MESSAGE_P, _P_MSG_MAX, "max_messages"))
    if t is _MARGIN:
        return <object>s.margin is None  # no margin report: leverage is None, not applicable
    if t is _SKEW_ALARM:
        return not _skew_on(_rf(rule, _R_PARAMS, "params"), q, s.max_inventory, s.skew_frac)
    return False  # a rule of a type not known here: the reference decides


# --- the rules' checks on their params in C, planned once per rule tuple -------------------------------------------
#
# _quiet reads each rule's params as Python objects on every evaluation. A plan keeps, for each rule of the engine's
# rule tuple, the objects its check reads (the rule's class, its params and their class, a derived slot, the params'
# fields) with their values in C, and holds a reference to each (so none of their addresses can be reused). Before a
# planned check runs it compares each of those objects with what the rule and its params hold now, by identity; the
# params are frozen dataclasses and their fields immutable (floats, ints, tuples of str, a frozenset), so the same
# objects are the same values. Anything else (another object, a field of another type, a rule class not planned here)
# takes _quiet.

cdef enum:
    K_OTHER, K_POSITION, K_NOTIONAL, K_DRAWDOWN, K_WINDOW_LOSS, K_STALE, K_CROSSED, K_SKEW, K_ESTIMATOR, K_REJECT
    K_CANCEL, K_MESSAGE, K_MARGIN, K_SKEW_ALARM
cdef enum:
    _MAX_FIELDS = 3
    _MAX_NAMES = 4

ctypedef struct _Plan:
    int kind  # K_OTHER: _quiet decides
    PyObject* cls  # the rule's class
    PyObject* params
    PyObject* pcls  # the params' class
    Py_ssize_t extra_off  # a slot of the rule the check reads (-1: none)
    PyObject* extra
    int nf
    Py_ssize_t off[_MAX_FIELDS]  # the params' fields read: their offsets, the objects, their values
    PyObject* f[_MAX_FIELDS]
    double d[_MAX_FIELDS]
    int64_t i[_MAX_FIELDS]
    int nnames  # the estimator rule's names: 0 kappa, 1 sigma
    int names[_MAX_NAMES]


@cython.final
cdef class _RulePlan:
    """The entries of one rule tuple's plan (an evaluation holds its plan while it runs: another thread's evaluation
    of other rules replaces the module's plan, never frees this one under it)."""

    cdef object rules  # the rule tuple planned
    cdef list refs  # every object an entry refers to
    cdef _Plan* entries

    def __dealloc__(self):
        PyMem_Free(self.entries)


cdef _RulePlan _plan_now = None
cdef list _plan_refs = None  # the refs of the plan being built or planned again


cdef extern from *:
    """
    #define mm_type(o) ((PyObject*)Py_TYPE(o))
    /* the attribute ``name`` as ``cls``'s MRO holds it (borrowed; NULL when no class defines it) */
    static inline PyObject* mm_type_lookup(PyObject* cls, PyObject* name) {
        return _PyType_Lookup((PyTypeObject*)cls, name);
    }
    """
    PyObject* _type "mm_type" (PyObject* o) noexcept  # type(o), borrowed
    PyObject* _type_lookup "mm_type_lookup" (object cls, object name)


cdef inline PyObject* _raw(object obj, Py_ssize_t offset) noexcept:
    """``obj``'s slot at ``offset`` (NULL when unset), borrowed."""
    return (<PyObject**>((<char*><PyObject*>obj) + offset))[0]


cdef bint _plan_field(_Plan* pl, object params, Py_ssize_t off, int want) except -1:
    """Take the params' field at ``off`` into the entry: ``want`` 1 an exact float, 2 an exact int within int64, 0 any
    object (read by identity). False when it is not so."""
    cdef PyObject* v
    cdef int k = pl.nf
    if off < 0 or k >= _MAX_FIELDS:
        return False
    v = _raw(params, off)
    if v == NULL:
        return False
    if want == 1:
        if type(<object>v) is not float:
            return False
        pl.d[k] = PyFloat_AS_DOUBLE(<object>v)
    elif want == 2:
        if not _i64(<object>v, &pl.i[k]):
            return False
    pl.off[k] = off
    pl.f[k] = v
    _plan_refs.append(<object>v)
    pl.nf = k + 1
    return True


cdef int _plan_rule(_Plan* pl, object rule) except -1:
    """The entry for ``rule`` (K_OTHER when its check is not planned)."""
    cdef PyObject* v
    cdef int k
    pl.kind = K_OTHER
    pl.nf = 0
    pl.extra_off = -1
    pl.extra = NULL
    pl.nnames = 0
    t = type(rule)
    pl.cls = _type(<PyObject*>rule)
    _plan_refs.append(t)
    if _R_PARAMS < 0:
        return 0
    v = _raw(rule, _R_PARAMS)
    if v == NULL:
        return 0
    params = <object>v
    pl.params = v
    pl.pcls = _type(v)
    _plan_refs.append(params)
    _plan_refs.append(type(params))
    cdef int kind = K_OTHER
    if t is _CROSSED:
        kind = K_CROSSED
    elif t is _MARGIN:
        kind = K_MARGIN
    elif t is _POSITION:
        if type(params) is _POSITION_P and _plan_field(pl, params, _P_MAX_POSITION, 1):
            kind = K_POSITION
    elif t is _NOTIONAL:
        if type(params) is _NOTIONAL_P and _plan_field(pl, params, _P_MAX_NOTIONAL, 1):
            kind = K_NOTIONAL
    elif t is _DRAWDOWN:
        if (type(params) is _DRAWDOWN_P and _plan_field(pl, params, _P_MAX_DD_QUOTE, 1)
                and _plan_field(pl, params, _P_MAX_DD_FRAC, 1)):
            kind = K_DRAWDOWN
    elif t is _WINDOW_LOSS:
        if (type(params) is _WINDOW_LOSS_P and _plan_field(pl, params, _P_WL_WINDOW, 0)
                and _plan_field(pl, params, _P_WL_MAX, 1)):
            kind = K_WINDOW_LOSS
    elif t is _STALE:
        if (type(params) is _STALE_P and _plan_field(pl, params, _P_FEEDS, 0) and type(<object>pl.f[0]) is tuple
                and len(<tuple>pl.f[0]) > 0 and _R_MAX_AGE >= 0):
            v = _raw(rule, _R_MAX_AGE)
            if v != NULL and _i64(<object>v, &pl.i[1]):
                pl.extra_off, pl.extra = _R_MAX_AGE, v
                _plan_refs.append(<object>v)
                kind = K_STALE
    elif t is _SKEW:
        if _R_MAX_SKEW >= 0:
            v = _raw(rule, _R_MAX_SKEW)
            if v != NULL and _i64(<object>v, &pl.i[0]):
                pl.extra_off, pl.extra = _R_MAX_SKEW, v
                _plan_refs.append(<object>v)
                kind = K_SKEW
    elif t is _ESTIMATOR:
        if (type(params) is _ESTIMATOR_P and _plan_field(pl, params, _P_ESTIMATORS, 0)
                and type(<object>pl.f[0]) is tuple and len(<tuple>pl.f[0]) <= _MAX_NAMES and _R_BAD >= 0):
            v = _raw(rule, _R_BAD)
            if v != NULL and type(<object>v) is frozenset:
                kind = K_ESTIMATOR
                for name in <tuple>pl.f[0]:
                    if type(name) is not str:
                        kind = K_OTHER
                        break
                    k = pl.nnames
                    pl.names[k] = 0 if name == _KAPPA_NAME else 1 if name == _SIGMA_NAME else 2
                    pl.nnames = k + 1
                if kind == K_ESTIMATOR:
                    pl.extra_off, pl.extra = _R_BAD, v
                    _plan_refs.append(<object>v)
    elif t is _REJECT:
        if (type(params) is _REJECT_P and _plan_field(pl, params, _P_REJ_WINDOW, 0)
                and _plan_field(pl, params, _P_REJ_MIN, 2) and _plan_field(pl, params, _P_REJ_MAX, 1)):
            kind = K_REJECT
    elif t is _CANCEL:
        if (type(params) is _CANCEL_P and _plan_field(pl, params, _P_CAN_WINDOW, 0)
                and _plan_field(pl, params, _P_CAN_MAX, 2)):
            kind = K_CANCEL
    elif t is _MESSAGE:
        if (type(params) is _MESSAGE_P and _plan_field(pl, params, _P_MSG_WINDOW, 0)
                and _plan_field(pl, params, _P_MSG_MAX, 2)):
            kind = K_MESSAGE
    elif t is _SKEW_ALARM:
        if (type(params) is _SKEW_PARAMS and _plan_field(pl, params, _SP_RATIO, 1)
                and _plan_field(pl, params, _SP_BPS, 1)):
            kind = K_SKEW_ALARM
    pl.kind = kind
    return 0


cdef _RulePlan _plan(tuple rules):
    """Plan every rule of ``rules`` (the tuple is then the plan's key)."""
    global _plan_now, _plan_refs
    cdef Py_ssize_t n = len(rules), i
    cdef _RulePlan plan = _RulePlan()
    plan.entries = <_Plan*>PyMem_Malloc(max(n, 1) * sizeof(_Plan))
    if plan.entries == NULL:
        raise MemoryError()
    plan.refs = _plan_refs = [rules]
    for i in range(n):
        _plan_rule(&plan.entries[i], rules[i])
    plan.rules = rules
    _plan_now = plan
    return plan


cdef inline bint _still(_Plan* pl, object rule) noexcept:
    """The objects the entry was planned on are the ones ``rule`` holds now."""
    cdef int k
    if _type(<PyObject*>rule) != pl.cls:
        return False
    if pl.kind == K_OTHER:
        return True
    cdef PyObject* params = _raw(rule, _R_PARAMS)
    if params != pl.params or _type(params) != pl.pcls:
        return False
    if pl.extra_off >= 0 and _raw(rule, pl.extra_off) != pl.extra:
        return False
    for k in range(pl.nf):
        if _raw(<object>params, pl.off[k]) != pl.f[k]:
            return False
    return True


cdef int _planned(_Plan* pl, object rule, _In* s) except -1:
    """``_quiet(rule, s)`` from the entry: 1 quiet, 0 not, -2 not planned (_quiet decides)."""
    cdef double q = s.q, e, pk, dd, frac, bid, ask
    cdef int64_t x, y, ts
    cdef int k, kind = pl.kind
    cdef PyObject* found
    if kind == K_POSITION:
        return isfinite(q) and not (fabs(q) >= pl.d[0])
    if kind == K_NOTIONAL:
        if not isfinite(q):
            return False
        if q == 0:
            return True
        if not (isfinite(s.mid) and s.mid > 0):
            return False
        return not (fabs(q) * s.mid >= pl.d[0])
    if kind == K_DRAWDOWN:
        if not (_finite_float(<object>s.equity) and _finite_float(<object>s.peak)):
            return False
        e = PyFloat_AS_DOUBLE(<object>s.equity)
        pk = PyFloat_AS_DOUBLE(<object>s.peak)
        if e > pk:
            pk = e
        dd = pk - e
        frac = dd / pk if pk > 0 else INFINITY
        if dd >= pl.d[0]:
            return False
        return not (pl.d[1] != INFINITY and frac >= pl.d[1])
    if kind == K_WINDOW_LOSS:
        v = _window(s.loss_keys, s.loss_values, s.window_losses, <object>pl.f[0])
        if not _finite_float(v):
            return False
        return not (PyFloat_AS_DOUBLE(v) >= pl.d[1])
    if kind == K_STALE:
        if type(<object>s.feed_last) is not dict or not s.now_c:
            return -2
        for k in range(PyTuple_GET_SIZE(<tuple>pl.f[0])):
            found = PyDict_GetItem(<object>s.feed_last, <object>PyTuple_GET_ITEM(<tuple>pl.f[0], k))
            if found == NULL or type(<object>found) is not int:  # None (never seen) trips too
                return False
            if not (_i64(<object>found, &ts) and ts >= 0):
                return -2
            if s.now_i64 - ts >= pl.i[1]:
                return False
        return True
    if kind == K_CROSSED:
        if not (_finite_float(<object>s.best_bid) and _finite_float(<object>s.best_ask)):
            return False
        bid = PyFloat_AS_DOUBLE(<object>s.best_bid)
        ask = PyFloat_AS_DOUBLE(<object>s.best_ask)
        return bid > 0 and ask > 0 and not (bid >= ask)
    if kind == K_SKEW:
        if type(<object>s.skew_ns) is not int:
            return False
        if not _i64(<object>s.skew_ns, &x) or x == INT64_MIN:
            return -2
        return not ((x if x >= 0 else -x) >= pl.i[0])
    if kind == K_ESTIMATOR:
        for k in range(pl.nnames):
            if pl.names[k] == 2:
                return False
            if PySet_Contains(<object>pl.extra, <object>(s.kappa if pl.names[k] == 0 else s.sigma)):
                return False
        return True
    if kind == K_REJECT or kind == K_CANCEL or kind == K_MESSAGE:
        c = _window(s.flow_keys, s.flow_values, s.order_flow, <object>pl.f[0])
        if c is None:
            return False
        if type(c) is not _COUNTS or not _COUNTS_SLOTS:
            return -2
        if kind == K_CANCEL:
            found = _raw(c, _COUNTS_OFF[3])
        elif kind == K_MESSAGE:
            found = _raw(c, _COUNTS_OFF[4])
        else:
            found = _raw(c, _COUNTS_OFF[1])
        if found == NULL or not _i64(<object>found, &x):
            return -2
        if kind != K_REJECT:
            return not (x >= pl.i[1])
        if x < pl.i[1]:  # sent < min_orders
            return True
        found = _raw(c, _COUNTS_OFF[2])  # rejected
        if found == NULL or not _i64(<object>found, &y) or not (0 < x <= _EXACT_INT and -_EXACT_INT <= y <= _EXACT_INT):
            return -2
        return not (<double>y / <double>x >= pl.d[2])
    if kind == K_MARGIN:
        return <object>s.margin is None
    if kind == K_SKEW_ALARM:
        if not (fabs(q) > pl.d[0] * s.max_inventory):
            return True
        if not isfinite(s.skew_frac):
            return False
        return not (fabs(s.skew_frac) * 1e4 < pl.d[1])
    return -2


cdef bint _quiet_by_plan(_RulePlan plan, Py_ssize_t i, object rule, _In* s) except -1:
    """``_quiet(rule, s)`` for ``rule``, the ``i``-th of the planned tuple: from its entry while it holds (planned again
    when it does not), else _quiet."""
    global _plan_refs
    cdef _Plan* pl = &plan.entries[i]
    cdef int r
    if not _still(pl, rule):
        if len(plan.refs) > 4096:  # an entry planned again and again (its params replaced each time)
            return _quiet(rule, s)
        _plan_refs = plan.refs
        _plan_rule(pl, rule)
    r = _planned(pl, rule, s)
    return _quiet(rule, s) if r == -2 else r


cdef object _get(object m, str key, object default):
    """``m.get(key, default)``: a plain dict or a decision record read directly, any other mapping asked."""
    cdef PyObject* found
    if type(m) is dict:
        found = _dict_get(<dict>m, key)
        return default if found is NULL else <object>found
    if type(m) is _RECORD:  # DecisionInputs.get: vector[layout.index[key]], the array's double as a new float
        index = field(field(m, _RECORD, _DI_LAYOUT, "layout"), _LAYOUT, _IL_INDEX, "index")
        if type(index) is not dict:
            return m.get(key, default)
        found = _dict_get(<dict>index, key)
        return _record_item(m, None if found is NULL else <object>found, default)
    return m.get(key, default)


cdef inline object _record_item(object m, object i, object default):
    """A decision record's ``vector[i]`` for ``i = layout.index.get(key)``: ``default`` when ``i`` is None."""
    cdef int64_t k
    if i is None:
        return default
    vector = field(m, _RECORD, _DI_VECTOR, "vector")
    if (type(vector) is _ARRAY and (<carray.array>vector).ob_descr.typecode == c'd'
            and _i64(i, &k) and 0 <= k < Py_SIZE(vector)):
        return PyFloat_FromDouble((<carray.array>vector).data.as_doubles[k])
    return vector[i]


# The decision record's four reads (_INPUT_KEYS), positions looked up once per layout index: ``index.get(key)`` for
# each, kept with the index dict they came from and its version tag, which any change of that dict moves (a record of
# another layout, or a changed index, looks them up again)
cdef tuple _INPUT_KEYS = ("skew_model_frac", "skew_frac", "best_bid", "best_ask")
cdef enum:
    IN_SKEW_MODEL, IN_SKEW, IN_BID, IN_ASK
cdef object _pos_index = None
cdef uint64_t _pos_version = 0
cdef tuple _pos_found = None


cdef inline object _input(object m, int k, object default):
    """``m.get(_INPUT_KEYS[k], default)`` for decision inputs ``_record_positions`` does not cover (``_get``)."""
    return _get(m, <str>_INPUT_KEYS[k], default)


cdef tuple _record_positions(object m):
    """``index.get(key)`` for each of ``_INPUT_KEYS`` when ``m`` is a decision record of float items (kept per layout
    index and its version tag: looked up again when the index is another or changed), else None. The caller keeps the
    tuple it got: another evaluation may replace the module's between two of its reads."""
    global _pos_index, _pos_version, _pos_found
    if type(m) is not _RECORD or not MM_DICT_VERSIONED:
        return None
    vector = field(m, _RECORD, _DI_VECTOR, "vector")
    if type(vector) is not _ARRAY or (<carray.array>vector).ob_descr.typecode != c'd':  # its items are floats then
        return None
    index = field(field(m, _RECORD, _DI_LAYOUT, "layout"), _LAYOUT, _IL_INDEX, "index")
    if type(index) is not dict:
        return None
    if index is not _pos_index or mm_dict_version(<dict>index) != _pos_version:
        _pos_found = tuple([(<dict>index).get(key) for key in _INPUT_KEYS])
        _pos_index = index
        _pos_version = mm_dict_version(<dict>index)
    return _pos_found


cdef inline object _record_at(object m, tuple positions, int k, object default):
    """``m.get(_INPUT_KEYS[k], default)`` with ``positions`` from ``_record_positions(m)``."""
    return _record_item(m, <object>PyTuple_GET_ITEM(positions, k), default)


# the core state's five reads (the strategy core's risk_state builds the dict with these very strings as keys)
cdef tuple _CORE_KEYS = ("pnl", "inventory", "mid", "kappa_state", "sigma_state")
cdef enum:
    CORE_PNL, CORE_INVENTORY, CORE_MID, CORE_KAPPA, CORE_SIGMA, N_CORE


cdef int _core_reads(dict d, PyObject** out) except -1:
    """``d.get(key)`` for each of ``_CORE_KEYS`` into ``out`` (borrowed; NULL: absent): one pass over ``d`` matching
    keys by identity (what the dict's own lookup would find first), a lookup for any key not matched so."""
    cdef Py_ssize_t pos = 0, j
    cdef PyObject* k
    cdef PyObject* v
    cdef int matched = 0
    for j in range(N_CORE):
        out[j] = NULL
    while matched < N_CORE and PyDict_Next(d, &pos, &k, &v):
        for j in range(N_CORE):
            if k == PyTuple_GET_ITEM(_CORE_KEYS, j):
                if out[j] == NULL:
                    out[j] = v
                    matched += 1
                break
    if matched < N_CORE:
        for j in range(N_CORE):
            if out[j] == NULL:
                out[j] = _dict_get(d, <object>PyTuple_GET_ITEM(_CORE_KEYS, j))
    return 0


cdef inline object _or(PyObject* found, object default):
    return default if found == NULL else <object>found


cdef inline bint _i64(object v, int64_t* out) noexcept:
    """True, with ``v``'s value in ``out``, when ``v`` is exactly an int within int64 (a time in ns, a count): compared
    in C then, as Python compares the ints."""
    cdef int overflow = 0
    if type(v) is not int:
        return False
    if fast_i64(v, out):
        return True
    out[0] = PyLong_AsLongLongAndOverflow(v, &overflow)
    return overflow == 0


cdef inline bint _at_or_before(object ts, bint by_c, int64_t cutoff, object now_ns, object window) except -1:
    """``ts <= now_ns - window``: in C when ``by_c`` (``cutoff`` is ``now_ns - window`` in int64) and ``ts`` is an int64
    too, else as Python compares them."""
    cdef int64_t x
    if by_c and _i64(ts, &x):
        return x <= cutoff
    return ts <= now_ns - window


cdef object _DEQUE = deque
cdef object _DQ_APPEND = deque.append, _DQ_POP = deque.pop, _DQ_POPLEFT = deque.popleft


cdef inline bint _nonempty(object d) except -1:
    """``bool(d)``: an exact deque's length read in place."""
    return Py_SIZE(d) != 0 if type(d) is _DEQUE else bool(d)


cdef inline int _append(object d, object x) except -1:
    """``d.append(x)``: deque.append called directly for an exact deque."""
    cdef PyObject* args[2]
    if type(d) is _DEQUE:
        args[0] = <PyObject*>d
        args[1] = <PyObject*>x
        PyObject_Vectorcall(_DQ_APPEND, args, 2, NULL)
    else:
        d.append(x)
    return 0


cdef inline object _pop(object d):
    """``d.pop()``."""
    return PyObject_CallOneArg(_DQ_POP, d) if type(d) is _DEQUE else d.pop()


cdef inline object _popleft(object d):
    """``d.popleft()``."""
    return PyObject_CallOneArg(_DQ_POPLEFT, d) if type(d) is _DEQUE else d.popleft()


cdef object _window_loss(object loss, object now_ns, object pnl, int64_t now, bint now_c):
    """``loss.update(now_ns, pnl)`` then ``loss.loss(now_ns)`` (RollingLoss, its slots by offset; pnl a finite float,
    time not going backwards: else the reference methods run and raise as they do). ``now_c``: as for _count."""
    cdef int64_t window = 0
    if type(loss) is not _ROLLING_LOSS or not _RL_SLOTS or not _finite_float(pnl):
        loss.update(now_ns, pnl)
        return loss.loss(now_ns)
    cdef int64_t ts, a, b
    samples = slot_get(loss, _RL_SAMPLES)
    if _nonempty(samples):
        last_ts = (<tuple>PySequence_GetItem(samples, -1))[1]
        if now_c and _i64(last_ts, &ts):
            if now < ts:
                loss.update(now_ns, pnl)
                return loss.loss(now_ns)
        elif now_ns < last_ts:
            loss.update(now_ns, pnl)
            return loss.loss(now_ns)
    cdef double v = PyFloat_AS_DOUBLE(pnl)
    seq = slot_get(loss, _RL_SEQ) + 1
    slot_set(loss, _RL_SEQ, seq)
    _append(samples, (seq, now_ns, pnl))
    mx = slot_get(loss, _RL_MAX)
    while _nonempty(mx) and PyFloat_AS_DOUBLE((<tuple>mx[-1])[1]) <= v:
        _pop(mx)
    _append(mx, (seq, pnl))
    # _expire(now_ns); loss() expires again at the same time, which removes nothing more
    window_obj = slot_get(loss, _RL_WINDOW)
    cdef bint by_c = now_c and _i64(window_obj, &window) and window >= 0  # then now - window cannot overflow
    while len(samples) >= 2 and _at_or_before((<tuple>samples[1])[1], by_c, now - window, now_ns, window_obj):
        _popleft(samples)
    first_seq = (<tuple>PySequence_GetItem(samples, 0))[0]
    while _nonempty(mx):
        seq0 = (<tuple>PySequence_GetItem(mx, 0))[0]
        if not (seq0 < first_seq if not (_i64(seq0, &a) and _i64(first_seq, &b)) else a < b):
            break
        _popleft(mx)
    return PyFloat_FromDouble(PyFloat_AS_DOUBLE((<tuple>mx[0])[1]) - v)


cdef inline bint _int64_at(PyObject* v, int64_t* out) noexcept:
    """``v`` (not NULL) is an exact int read in place as int64 (``fast_i64``)."""
    return _type(v) == <PyObject*>int and fast_i64(<object>v, out)


cdef object _count(object c, object now_ns, int64_t now, bint now_c):
    """``_count_any`` (``RollingCounter.count(now_ns)``), first in C without a reference taken, for the usual case: an
    exact counter whose slots are set, times that are int64 and do not go backwards, and either no event or an oldest
    one still inside the window (then it only stores ``now_ns`` as the last time, as the reference does)."""
    cdef int64_t x, window
    cdef PyObject* last
    cdef PyObject* events
    cdef PyObject* total
    cdef PyObject* win
    if now_c and type(c) is _COUNTER and _RC_SLOTS:
        last = _raw(c, _RC_LAST)
        events = _raw(c, _RC_EVENTS)
        total = _raw(c, _RC_TOTAL)
        win = _raw(c, _RC_WINDOW)
        if (last != NULL and events != NULL and total != NULL and win != NULL and _type(events) == <PyObject*>_DEQUE
                and (last == <PyObject*>None or (_int64_at(last, &x) and now >= x))):
            if Py_SIZE(<object>events) == 0:
                slot_set(c, _RC_LAST, now_ns)
                return <object>total
            if _int64_at(win, &window) and window >= 0:
                first = PySequence_GetItem(<object>events, 0)
                if (type(first) is list and PyList_GET_SIZE(first) >= 1
                        and _int64_at(PyList_GET_ITEM(first, 0), &x) and x > now - window):
                    slot_set(c, _RC_LAST, now_ns)
                    return <object>total
    return _count_any(c, now_ns, now, now_c)


cdef object _count_any(object c, object now_ns, int64_t now, bint now_c):
    """``RollingCounter.count(now_ns)``; its slots by offset (the same reads and writes in the same order: the running
    total is written once after the pops, which nothing reads in between). ``now_c``: ``now_ns`` is ``now``, an int64
    (>= 0), and the times are compared in C wherever they are int64 too; else as Python objects. The usual case, the
    oldest event still inside the window, returns after one look at it."""
    cdef int64_t x, window = 0
    if type(c) is not _COUNTER or not _RC_SLOTS:
        return c.count(now_ns)
    last = slot_get(c, _RC_LAST)
    if last is not None:
        if now_c and _i64(last, &x):
            if now < x:
                return c.count(now_ns)  # it raises: time went backwards
        elif now_ns < last:
            return c.count(now_ns)
    slot_set(c, _RC_LAST, now_ns)
    events = slot_get(c, _RC_EVENTS)
    if type(events) is _DEQUE:
        if Py_SIZE(events) == 0:
            return slot_get(c, _RC_TOTAL)
    elif not events:
        return slot_get(c, _RC_TOTAL)
    window_obj = slot_get(c, _RC_WINDOW)
    by_c = now_c and _i64(window_obj, &window) and window >= 0  # then now - window cannot overflow
    first = PySequence_GetItem(events, 0)
    if (by_c and type(first) is list and PyList_GET_SIZE(first) >= 1
            and _i64(<object>PyList_GET_ITEM(first, 0), &x) and x > now - window):
        return slot_get(c, _RC_TOTAL)  # events[0][0] > cutoff: nothing expires
    total = slot_get(c, _RC_TOTAL)
    popped = False
    while _nonempty(events) and _at_or_before((<list>events[0])[0], by_c, now - window, now_ns, window_obj):
        total -= (<list>_popleft(events))[1]
        popped = True
    if popped:
        slot_set(c, _RC_TOTAL, total)
    return slot_get(c, _RC_TOTAL)


cdef object _counts_new(object window_s, object sent, object rejected, object cancelled, object messages):
    """``OrderFlowCounts(window_s, sent, rejected, cancelled, messages)``: the same object, its slots set directly."""
    if not _COUNTS_SLOTS:
        return _COUNTS(window_s, sent, rejected, cancelled, messages)
    return new_slotted(_COUNTS, (window_s, sent, rejected, cancelled, messages), _COUNTS_OFF)


cdef inline bint _same(object a, object b) except -1:
    """``a == b`` for two counts: two exact ints within int64 compared in C (the same int object is equal to itself)."""
    cdef int64_t x, y
    if a is b:  # an int is equal to itself (the small counts are the same objects)
        return True
    if type(a) is int and type(b) is int and fast_i64(a, &x) and fast_i64(b, &y):
        return x == y
    return a == b


cdef object _snapshot(object f, object now_ns, int64_t now, bint now_c):
    """``OrderFlowWindow.snapshot(now_ns)``."""
    if type(f) is not _FLOW:
        return f.snapshot(now_ns)
    sent = _count(field(f, _FLOW, _FW_SENT, "_sent"), now_ns, now, now_c)
    rejected = _count(field(f, _FLOW, _FW_REJ, "_rejected"), now_ns, now, now_c)
    cancelled = _count(field(f, _FLOW, _FW_CAN, "_cancelled"), now_ns, now, now_c)
    messages = _count(field(f, _FLOW, _FW_MSG, "_messages"), now_ns, now, now_c)
    last = field(f, _FLOW, _FW_LAST, "_last")
    if (
        last is not None
        and _same(field(last, _COUNTS, _FC_SENT, "sent"), sent)
        and _same(field(last, _COUNTS, _FC_REJ, "rejected"), rejected)
        and _same(field(last, _COUNTS, _FC_CAN, "cancelled"), cancelled)
        and _same(field(last, _COUNTS, _FC_MSG, "messages"), messages)
    ):
        return last
    last = _counts_new(field(f, _FLOW, _FW_WINDOW, "window_s"), sent, rejected, cancelled, messages)
    if _FW_LAST >= 0:
        slot_set(f, _FW_LAST, last)
    else:
        f._last = last
    return last


cdef bint _skew_on(object p, double q, double max_inventory, double skew_frac) except -1:
    """``skew_magnitude_alarm(q, max_inventory, skew_frac, p)``: in C for a SkewAlarmParams (exactly) whose bounds are
    floats, the reference's function for anything else (None params, int bounds)."""
    if type(p) is not _SKEW_PARAMS:
        return skew_magnitude_alarm(q, max_inventory, skew_frac, p)
    ratio = field(p, _SKEW_PARAMS, _SP_RATIO, "min_position_ratio")
    bps = field(p, _SKEW_PARAMS, _SP_BPS, "min_skew_bps")
    if type(ratio) is not float or type(bps) is not float:
        return skew_magnitude_alarm(q, max_inventory, skew_frac, p)
    if not (fabs(q) > PyFloat_AS_DOUBLE(ratio) * max_inventory):
        return False
    if not isfinite(skew_frac):
        return True
    return fabs(skew_frac) * 1e4 < PyFloat_AS_DOUBLE(bps)


cdef object _rule_trip(object rule, object kind, object action, object ts_ns, dict values, object message):
    """``RuleTrip(rule, kind, action, ts_ns, values, message)``: the same object, its slots set directly."""
    if not _TRIP_SLOTS:
        return _TRIP(rule, kind, action, ts_ns, values, message)
    return new_slotted(_TRIP, (rule, kind, action, ts_ns, values, message, _TRIP_CAUSE), _TRIP_OFF)


# the skew alarm's last sentence and what made it: the position's bits and the two bounds (held, compared by identity:
# the same objects format the same). A trip that stays on for minutes keeps one position most of the time.
cdef object _msg = None
cdef dict _values = None  # the last values dict built (its position None)
cdef object _msg_ratio = None
cdef object _msg_bps = None
cdef uint64_t _msg_q_bits = 0


cdef object _skew_alarm_trip(object rule, object now_ns, object q_obj):
    """``rule.evaluate(state)`` of a SkewAlarmRule (exactly) whose alarm is on for the state, and whose ``ts_ns`` and
    ``position`` are ``now_ns`` and ``q_obj`` (a float): the reference's trip, values and sentence, with no
    ``RiskState``. None when the class's ``evaluate`` or ``_trip`` is not the reference's (the reference then runs)."""
    global _msg, _msg_ratio, _msg_bps, _msg_q_bits, _values
    # SkewAlarmRule.evaluate and _trip as the class finds them (plain functions: what the class attribute returns)
    if (_type_lookup(_SKEW_ALARM, "evaluate") != <PyObject*>_SKEW_ALARM_EVALUATE
            or _type_lookup(_SKEW_ALARM, "_trip") != <PyObject*>_RULE_TRIP_METHOD):
        return None
    p = _rf(rule, _R_PARAMS, "params")
    ratio = field(p, _SKEW_PARAMS, _SP_RATIO, "min_position_ratio")
    bps = field(p, _SKEW_PARAMS, _SP_BPS, "min_skew_bps")
    # the values dict, keys in the reference's order: a copy of the last one built for these bounds (the same objects),
    # its position replaced
    if _values is None or PyDict_GetItem(_values, "min_position_ratio") != <PyObject*>ratio or PyDict_GetItem(
        _values, "min_skew_bps"
    ) != <PyObject*>bps:
        _values = dict_presized(4)
        _values["skew_alarm"] = True
        _values["position"] = None
        _values["min_position_ratio"] = ratio
        _values["min_skew_bps"] = bps
    cdef dict values = _values.copy()
    values["position"] = q_obj
    cdef double q = PyFloat_AS_DOUBLE(q_obj)
    cdef uint64_t bits
    memcpy(&bits, &q, sizeof(double))
    if _msg is None or bits != _msg_q_bits or ratio is not _msg_ratio or bps is not _msg_bps:
        msg = _SKEW_MESSAGE(q_obj, ratio, bps)
        _msg, _msg_ratio, _msg_bps, _msg_q_bits = msg, ratio, bps, bits
    else:
        msg = _msg
    # rule.kind: the class's string (a slotted rule has no instance dict to shadow it)
    kind = _type_lookup(type(rule), "kind")
    kind_obj = <object>kind if kind != NULL and type(<object>kind) is str else rule.kind
    return _rule_trip(_rf(rule, _R_NAME, "name"), kind_obj, _rf(rule, _R_ACTION, "action"), now_ns, values, msg)


cdef list _loud_trips(list loud, object now_ns, object q_obj):
    """``[rule.evaluate(state) for rule in loud]`` without the Nones, for rules whose trips are built here (a
    SkewAlarmRule, exactly: in ``loud`` only when its own alarm is on, as ``_quiet`` decides); None as soon as one is
    not (the reference rules then run on a ``RiskState``)."""
    cdef list trips = []
    for rule in loud:
        if type(rule) is not _SKEW_ALARM:
            return None
        trip = _skew_alarm_trip(rule, now_ns, q_obj)
        if trip is None:
            return None
        trips.append(trip)
    return trips


cdef object _edges_update(object edges, object trips):
    """``edges.update(trips)``: done here for a TripEdges (exactly) and a list of RuleTrips (exactly), with the
    reference's reads, writes and order (started in the trips' order, cleared in the previous episode's order)."""
    if type(edges) is not _EDGES or type(trips) is not list or _TE_ACTIVE < 0 or not _TRIP_SLOTS:
        return edges.update(trips)
    for t in <list>trips:
        if type(t) is not _TRIP:
            return edges.update(trips)
    active = slot_get(edges, _TE_ACTIVE)
    if type(active) is not dict:
        return edges.update(trips)
    cdef dict now = {}
    cdef list started = []
    for t in <list>trips:
        key = (slot_get(t, _TRIP_OFF[2]), slot_get(t, _TRIP_OFF[6]))  # (action, cause)
        name = slot_get(t, _TRIP_OFF[0])
        now[name] = key
        prev = (<dict>active).get(name)
        if not (type(prev) is tuple and PyTuple_GET_SIZE(prev) == 2 and PyTuple_GET_ITEM(prev, 0) == PyTuple_GET_ITEM(
            key, 0
        ) and PyTuple_GET_ITEM(prev, 1) == PyTuple_GET_ITEM(key, 1)) and prev != key:  # the same items are equal
            started.append(t)
    cdef list cleared = [name for name in <dict>active if name not in now]
    slot_set(edges, _TE_ACTIVE, now)
    return started, cleared


# the session's fields (PySessionRisk's, and SessionRisk's, which adds none), bound on the first evaluation: the
# session module imports this one at its end. By name, the public attributes; by slot, the slots behind them (the
# clock skew and the feeds' last times are read from their own slots once the session's _settle has run)
cdef tuple _SR_FIELDS = (
    "_t", "capital", "peak_equity", "losses", "clock_skew_ns", "flows", "max_inventory", "margin", "feed_last_ns",
    "engine", "edges",
)
cdef tuple _SR_SLOT_FIELDS = (
    "_t", "capital", "peak_equity", "losses", "_clock_skew_ns", "flows", "max_inventory", "margin", "_feed_last_ns",
    "engine", "edges",
)
cdef enum:
    SR_T, SR_CAPITAL, SR_PEAK, SR_LOSSES, SR_CLOCK_SKEW, SR_FLOWS
    SR_MAX_INV, SR_MARGIN, SR_FEED_LAST, SR_ENGINE, SR_EDGES
cdef Py_ssize_t _SR_OFF[11]
# the clocks on_market records, applied by _settle (PySessionRisk._settle's twin below)
cdef tuple _SR_PENDING_FIELDS = ("_feed_local_ns", "_skew_local_ns", "_skew_exch_ns")
cdef Py_ssize_t _SR_PENDING[3]
cdef bint _SR_BOUND = False, _SR_SLOTS = False
cdef object _PY_SESSION = None, _SESSION = None, _FEED = None
cdef Py_ssize_t _RE_RULES = slot_offset(RiskEngine, "rules")


cdef int _bind_session() except -1:
    global _SR_BOUND, _SR_SLOTS, _PY_SESSION, _SESSION, _FEED
    from apps.engine.risk import session as ref

    cdef Py_ssize_t sub[11]
    cdef Py_ssize_t pending_sub[3]
    _PY_SESSION, _SESSION, _FEED = ref.PySessionRisk, ref.SessionRisk, ref.FEED
    _SR_SLOTS = (
        slot_offsets(_PY_SESSION, _SR_SLOT_FIELDS, _SR_OFF) and slot_offsets(_SESSION, _SR_SLOT_FIELDS, sub)
        and slot_offsets(_PY_SESSION, _SR_PENDING_FIELDS, _SR_PENDING)
        and slot_offsets(_SESSION, _SR_PENDING_FIELDS, pending_sub)
        and _SESSION._settle is _PY_SESSION.__dict__["_settle"]
    )
    for i in range(3):
        _SR_SLOTS = _SR_SLOTS and pending_sub[i] == _SR_PENDING[i]
    for i in range(len(_SR_FIELDS)):
        _SR_SLOTS = _SR_SLOTS and sub[i] == _SR_OFF[i]
    _SR_BOUND = True
    return 0


cdef int _settle(object risk) except -1:
    """PySessionRisk._settle by slot offset: the newest event's local time into the feed's entry, and the skew of the
    newest one with an exchange time."""
    local = slot_get(risk, _SR_PENDING[0])
    if local is not None:
        slot_set(risk, _SR_PENDING[0], None)
        feeds = slot_get(risk, _SR_OFF[SR_FEED_LAST])
        feeds[_FEED] = local
    local = slot_get(risk, _SR_PENDING[1])
    if local is not None:
        slot_set(risk, _SR_PENDING[1], None)
        slot_set(risk, _SR_OFF[SR_CLOCK_SKEW], local - slot_get(risk, _SR_PENDING[2]))
    return 0


cdef inline object _risk_get(object risk, bint by_slot, int i):
    """``getattr(risk, _SR_FIELDS[i])``, by slot offset when ``by_slot``."""
    return slot_get(risk, _SR_OFF[i]) if by_slot else getattr(risk, <str>_SR_FIELDS[i])


cdef inline int _risk_set(object risk, bint by_slot, int i, object value) except -1:
    """``setattr(risk, _SR_FIELDS[i], value)``, by slot offset when ``by_slot``."""
    if by_slot:
        slot_set(risk, _SR_OFF[i], value)
    else:
        setattr(risk, <str>_SR_FIELDS[i], value)
    return 0


@cython.final
cdef class _Scan:
    """A session's window dict (``losses`` or ``flows``) as the evaluation walks it: its keys and its helpers, in order,
    and whether every key is an exact float or int (a hash that never changes) and every helper exactly ``cls``;
    scanned again when the dict is another one or its version tag moved (any change of a dict moves it)."""

    cdef object d
    cdef uint64_t version
    cdef tuple keys, helpers
    cdef bint ok
    cdef object cls

    def __cinit__(self, cls):
        self.cls = cls

    cdef bint scan(self, dict d) except -1:
        """True when ``d``'s keys and helpers are such (``keys`` and ``helpers`` then hold them)."""
        cdef Py_ssize_t pos = 0
        cdef PyObject* k
        cdef PyObject* v
        if d is self.d and MM_DICT_VERSIONED and mm_dict_version(d) == self.version:
            return self.ok
        keys = []
        helpers = []
        ok = True
        while PyDict_Next(d, &pos, &k, &v):
            if type(<object>k) is not float and type(<object>k) is not int or type(<object>v) is not self.cls:
                ok = False
            keys.append(<object>k)
            helpers.append(<object>v)
        self.keys, self.helpers, self.ok = tuple(keys), tuple(helpers), ok
        self.d, self.version = d, mm_dict_version(d)
        return ok


cdef _Scan _LOSSES = _Scan(RollingLoss), _FLOWS = _Scan(OrderFlowWindow)


cdef dict _as_dict(tuple keys, list values):
    """``dict(zip(keys, values))``: the reference's window dict, in the session's order."""
    cdef dict d = {}
    cdef Py_ssize_t i
    for i in range(PyTuple_GET_SIZE(keys)):
        d[<object>PyTuple_GET_ITEM(keys, i)] = <object>PyList_GET_ITEM(values, i)
    return d


def evaluate(risk, now_ns, core_state, decision_inputs):
    """``PySessionRisk.evaluate(risk, now_ns, core_state, decision_inputs)``, the same result and the same updates:
    (started trips, cleared rule names, all current trips)."""
    return c_evaluate(risk, now_ns, core_state, decision_inputs)


cdef tuple c_evaluate(object risk, object now_ns, object core_state, object decision_inputs):
    """:func:`evaluate`, called at C level by the backtest driver."""
    if not _SR_BOUND:
        _bind_session()
    # a PySessionRisk or SessionRisk (exactly) by slot offset; any other session by name
    cdef bint by_slot = _SR_SLOTS and (type(risk) is _SESSION or type(risk) is _PY_SESSION)
    cdef _In s
    cdef PyObject* core[N_CORE]
    if by_slot:
        _settle(risk)  # the clocks the last market events recorded (the properties the reference reads run it)
    # the session clock (_now): max(self._t, now_ns)
    t = _risk_get(risk, by_slot, SR_T)
    if now_ns > t:
        t = now_ns
    _risk_set(risk, by_slot, SR_T, t)
    now_ns = t
    s.now_c = _i64(now_ns, &s.now_i64) and s.now_i64 >= 0  # the rolling windows compare times in C then
    # the core state's reads (a plain dict has none of a mapping's side effects: read in one pass)
    cdef bint plain = type(core_state) is dict
    if plain:
        _core_reads(<dict>core_state, core)
        pnl = _or(core[CORE_PNL], None)
        inventory = _or(core[CORE_INVENTORY], None)
        mid_v = _or(core[CORE_MID], None)
        kappa = _or(core[CORE_KAPPA], None)
        sigma = _or(core[CORE_SIGMA], None)
    else:
        pnl = _get(core_state, "pnl", None)
    pnl = 0.0 if pnl is None else float(pnl)
    equity = _risk_get(risk, by_slot, SR_CAPITAL) + pnl
    peak = _risk_get(risk, by_slot, SR_PEAK)
    if equity > peak:  # max(peak_equity, equity)
        peak = equity
    _risk_set(risk, by_slot, SR_PEAK, peak)
    # every window's update, then its loss (each window's loss(now) right after its own update is the same): listed
    # with their keys when the windows are exactly RollingLoss under float or int keys, else the reference's dict
    losses = _risk_get(risk, by_slot, SR_LOSSES)
    cdef tuple loss_keys = None, flow_keys = None, helpers
    cdef list loss_values = None, flow_values = None
    cdef dict window_losses = None
    cdef Py_ssize_t i, n
    if type(losses) is dict and _LOSSES.scan(<dict>losses):
        loss_keys, helpers = _LOSSES.keys, _LOSSES.helpers
        n = PyTuple_GET_SIZE(helpers)
        loss_values = PyList_New(n)
        for i in range(n):
            v = _window_loss(<object>PyTuple_GET_ITEM(helpers, i), now_ns, pnl, s.now_i64, s.now_c)
            Py_INCREF(v)
            PyList_SET_ITEM(loss_values, i, v)
    else:
        for loss in losses.values():
            loss.update(now_ns, pnl)
        window_losses = {w: loss.loss(now_ns) for w, loss in losses.items()}
    if not plain:
        inventory = _get(core_state, "inventory", None)
    q_obj = float(inventory or 0.0)
    cdef tuple positions = _record_positions(decision_inputs)
    cdef bint record = positions is not None
    if record:  # the positions are known: index.get(key) has no side effects, the default is needed only when absent
        skew = _record_at(decision_inputs, positions, IN_SKEW_MODEL, None)
        if skew is None:
            skew = _record_at(decision_inputs, positions, IN_SKEW, 0.0)
    else:
        skew = _input(decision_inputs, IN_SKEW_MODEL, _input(decision_inputs, IN_SKEW, 0.0))
    if not plain:
        mid_v = _get(core_state, "mid", None)
    mid_obj = float(mid_v or _nan)
    best_bid = _record_at(decision_inputs, positions, IN_BID, _nan) if record else _input(decision_inputs, IN_BID, _nan)
    best_ask = _record_at(decision_inputs, positions, IN_ASK, _nan) if record else _input(decision_inputs, IN_ASK, _nan)
    clock_skew_ns = _risk_get(risk, by_slot, SR_CLOCK_SKEW)
    if not plain:
        kappa = _get(core_state, "kappa_state", None)
    kappa = kappa or "warming"
    if not plain:
        sigma = _get(core_state, "sigma_state", None)
    sigma = sigma or "warming"
    flows = _risk_get(risk, by_slot, SR_FLOWS)
    cdef dict order_flow = None
    if type(flows) is dict and _FLOWS.scan(<dict>flows):
        flow_keys, helpers = _FLOWS.keys, _FLOWS.helpers
        n = PyTuple_GET_SIZE(helpers)
        flow_values = PyList_New(n)
        for i in range(n):
            v = _snapshot(<object>PyTuple_GET_ITEM(helpers, i), now_ns, s.now_i64, s.now_c)
            Py_INCREF(v)
            PyList_SET_ITEM(flow_values, i, v)
    else:
        order_flow = {w: _snapshot(f, now_ns, s.now_i64, s.now_c) for w, f in flows.items()}
    max_inventory = float(_risk_get(risk, by_slot, SR_MAX_INV))
    skew_frac = float(skew)
    margin = _risk_get(risk, by_slot, SR_MARGIN)
    feed_last = _risk_get(risk, by_slot, SR_FEED_LAST)
    engine = _risk_get(risk, by_slot, SR_ENGINE)
    rules = field(engine, _RISK_ENGINE, _RE_RULES, "rules")
    s.now = <PyObject*>now_ns
    s.q = q_obj
    s.mid = mid_obj
    s.max_inventory = max_inventory
    s.skew_frac = skew_frac
    s.best_bid = <PyObject*>best_bid
    s.best_ask = <PyObject*>best_ask
    s.equity = <PyObject*>equity
    s.peak = <PyObject*>peak
    s.feed_last = <PyObject*>feed_last
    s.skew_ns = <PyObject*>clock_skew_ns
    s.kappa = <PyObject*>kappa
    s.sigma = <PyObject*>sigma
    s.margin = <PyObject*>margin
    s.loss_keys = <PyObject*>loss_keys if loss_keys is not None else NULL
    s.loss_values = <PyObject*>loss_values if loss_values is not None else NULL
    s.window_losses = <PyObject*>window_losses if window_losses is not None else NULL
    s.flow_keys = <PyObject*>flow_keys if flow_keys is not None else NULL
    s.flow_values = <PyObject*>flow_values if flow_values is not None else NULL
    s.order_flow = <PyObject*>order_flow if order_flow is not None else NULL
    # the rules not certainly quiet, in order (None: every one is); _quiet reads, never writes
    cdef list loud = None
    cdef _RulePlan plan
    if type(rules) is tuple:
        plan = _plan_now if _plan_now is not None and _plan_now.rules is rules else _plan(<tuple>rules)
        for i in range(PyTuple_GET_SIZE(rules)):
            rule = <object>PyTuple_GET_ITEM(rules, i)
            if not _quiet_by_plan(plan, i, rule, &s):
                if loud is None:
                    loud = []
                loud.append(rule)
    else:
        for rule in rules:
            if not _quiet(rule, &s):
                if loud is None:
                    loud = []
                loud.append(rule)
    edges = _risk_get(risk, by_slot, SR_EDGES)
    if loud is None:
        if type(edges) is _EDGES and _TE_ACTIVE >= 0:  # TripEdges.update([])
            active = slot_get(edges, _TE_ACTIVE)
            cleared = [] if type(active) is dict and PyDict_GET_SIZE(active) == 0 else list(active)
            slot_set(edges, _TE_ACTIVE, {})
            return [], cleared, []
        trips = []
    else:
        trips = None
        if type(engine) is _RISK_ENGINE and (type(rules) is tuple or type(rules) is list):
            # RiskEngine.evaluate's trips are the loud rules' (below); when each is one built here, no RiskState
            trips = _loud_trips(loud, now_ns, q_obj)
    if trips is None:
        if window_losses is None:
            window_losses = _as_dict(loss_keys, loss_values)
        if order_flow is None:
            order_flow = _as_dict(flow_keys, flow_values)
        state = RiskState(
            ts_ns=now_ns,
            position=q_obj,
            mid=mid_obj,
            best_bid=best_bid,
            best_ask=best_ask,
            equity=equity,
            peak_equity=peak,
            window_losses=window_losses,
            feed_last_ts_ns=dict(feed_last),
            clock_skew_ns=clock_skew_ns,
            estimator_states={"kappa": kappa, "sigma": sigma},
            order_flow=order_flow,
            max_inventory=max_inventory,
            skew_frac=skew_frac,
        )
        if margin is not None:
            state.leverage, state.maint_margin_rate, state.wallet_balance, state.entry_price = margin
        if type(engine) is _RISK_ENGINE and (type(rules) is tuple or type(rules) is list):
            # RiskEngine.evaluate runs each rule in order and keeps the trips; a quiet rule's evaluate returns None
            # (_quiet's contract), so only the others run: the same trips in the same order (a rule that stays
            # active, such as the skew alarm in a long position, no longer costs every rule's Python call)
            trips = []
            for rule in loud:
                trip = rule.evaluate(state)
                if trip is not None:
                    trips.append(trip)
        else:
            trips = engine.evaluate(state)
    started, cleared = _edges_update(edges, trips)
    return (started, cleared, trips)


# --- the orders sent (on_sent) ----------------------------------------------------------------------------------------
cdef extern from "Python.h":
    PyObject** _PyObject_GetDictPtr(object obj)

cdef object _RC_ADD = _COUNTER.__dict__["add"], _RC_ADVANCE = _COUNTER.__dict__["_advance"]
cdef object _FW_RECORD_SENT = _FLOW.__dict__["record_sent"], _FW_RECORD_CANCEL = _FLOW.__dict__["record_cancel"]
cdef object _FW_RECORD_MESSAGE = _FLOW.__dict__["record_message"]
cdef bint _FW_SLOTS = min(_FW_SENT, _FW_CAN, _FW_MSG) >= 0
cdef object _PY_ON_SENT = None, _PY_NOW = None  # PySessionRisk.on_sent and ._now (bound on first use)


cdef inline bint _plain_counter(PyObject* c) noexcept:
    # an exact RollingCounter (slots only: nothing set on the object) whose add and _advance are the reference's
    return (
        c != NULL and _type(c) == <PyObject*>_COUNTER and _RC_SLOTS
        and _type_lookup(_COUNTER, "add") == <PyObject*>_RC_ADD
        and _type_lookup(_COUNTER, "_advance") == <PyObject*>_RC_ADVANCE
    )


cdef inline bint _plain_flow(PyObject* f) noexcept:
    # an exact OrderFlowWindow (slots only) whose record_* are the reference's, over three plain counters
    return (
        _type(f) == <PyObject*>_FLOW and _FW_SLOTS
        and _type_lookup(_FLOW, "record_sent") == <PyObject*>_FW_RECORD_SENT
        and _type_lookup(_FLOW, "record_cancel") == <PyObject*>_FW_RECORD_CANCEL
        and _type_lookup(_FLOW, "record_message") == <PyObject*>_FW_RECORD_MESSAGE
        and _plain_counter(_raw(<object>f, _FW_SENT))
        and _plain_counter(_raw(<object>f, _FW_CAN))
        and _plain_counter(_raw(<object>f, _FW_MSG))
    )


cdef int _counter_add(object c, object ts_ns, object n) except -1:
    """``RollingCounter.add(ts_ns, n)`` for a plain counter (_plain_counter), its slots by offset: the same reads,
    writes and Python operations in the same order. Where the reference raises (``n`` not an int >= 1, time going
    backwards) the reference itself is called, before anything is changed, and raises."""
    last = slot_get(c, _RC_LAST)
    if isinstance(n, bool) or not isinstance(n, int) or n < 1 or (last is not None and ts_ns < last):
        c.add(ts_ns, n)
        return 0
    # _advance
    slot_set(c, _RC_LAST, ts_ns)
    cutoff = ts_ns - slot_get(c, _RC_WINDOW)
    events = slot_get(c, _RC_EVENTS)
    while _nonempty(events) and events[0][0] <= cutoff:
        slot_set(c, _RC_TOTAL, slot_get(c, _RC_TOTAL) - _popleft(events)[1])
    if _nonempty(events) and events[-1][0] == ts_ns:
        events[-1][1] += n
    else:
        _append(events, [ts_ns, n])
    slot_set(c, _RC_TOTAL, slot_get(c, _RC_TOTAL) + n)
    return 0


def on_sent(risk, ts_ns, n_place, n_cancel):
    """``PySessionRisk.on_sent(risk, ts_ns, n_place, n_cancel)``, the same updates: the session clock, then per order
    flow window its sent, cancel and message counters. For an exact session (``SessionRisk`` or ``PySessionRisk``) that
    sets no ``_now`` of its own, whose flows are a dict of plain order flow windows (_plain_flow), by slot offset;
    anything else runs the reference. The backtest sends ~500 batches a run, each ~30k instructions in Python."""
    global _PY_ON_SENT, _PY_NOW
    cdef PyObject** dp
    cdef PyObject* v
    cdef Py_ssize_t pos = 0
    if not _SR_BOUND:
        _bind_session()
    if _PY_ON_SENT is None:
        _PY_ON_SENT = _PY_SESSION.__dict__["on_sent"]
        _PY_NOW = _PY_SESSION.__dict__["_now"]
    if not (_SR_SLOTS and (type(risk) is _SESSION or type(risk) is _PY_SESSION)):
        return _PY_ON_SENT(risk, ts_ns, n_place, n_cancel)
    if _type_lookup(type(risk), "_now") != <PyObject*>_PY_NOW:
        return _PY_ON_SENT(risk, ts_ns, n_place, n_cancel)
    dp = _PyObject_GetDictPtr(risk)
    if dp != NULL and dp[0] != NULL and (type(<object>dp[0]) is not dict or PyDict_GET_SIZE(<object>dp[0]) != 0):
        return _PY_ON_SENT(risk, ts_ns, n_place, n_cancel)  # something set on the session itself (a test's spy)
    flows = slot_get(risk, _SR_OFF[SR_FLOWS])
    if type(flows) is not dict:
        return _PY_ON_SENT(risk, ts_ns, n_place, n_cancel)
    while PyDict_Next(flows, &pos, NULL, &v):
        if not _plain_flow(v):
            return _PY_ON_SENT(risk, ts_ns, n_place, n_cancel)
    # _now: max(self._t, ts_ns)
    t = slot_get(risk, _SR_OFF[SR_T])
    if ts_ns > t:
        t = ts_ns
    slot_set(risk, _SR_OFF[SR_T], t)
    t = slot_get(risk, _SR_OFF[SR_T])
    pos = 0
    while PyDict_Next(flows, &pos, NULL, &v):
        f = <object>v
        if n_place:
            _counter_add(slot_get(f, _FW_SENT), t, n_place)
        if n_cancel:
            _counter_add(slot_get(f, _FW_CAN), t, n_cancel)
        if n_place + n_cancel:
            _counter_add(slot_get(f, _FW_MSG), t, n_place + n_cancel)
