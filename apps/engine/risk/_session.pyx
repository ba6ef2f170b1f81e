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
from cpython.dict cimport PyDict_GetItem
from cpython.float cimport PyFloat_AS_DOUBLE, PyFloat_FromDouble
from cpython.object cimport Py_SIZE, PyObject
from libc.math cimport INFINITY, fabs, isfinite
from cpython.long cimport PyLong_AsLongLongAndOverflow
from libc.stdint cimport int64_t, uint64_t
from libc.string cimport memcpy

from apps.engine._slots cimport dict_presized, fast_i64, field, new_slotted, slot_get, slot_offset, slot_offsets, slot_set


cdef extern from "Python.h":
    # d.get(key) as the reference asks it: NULL when absent, an error raised (dict.get's) when hashing or comparing
    # fails; cheaper than PyDict_GetItem, which saves and restores the exception state around the lookup
    PyObject* _dict_get "PyDict_GetItemWithError" (dict d, object key) except? NULL

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


cdef bint _quiet(object rule, object now, double q, double mid, object best_bid, object best_ask,
                 object equity, object peak, dict window_losses, object feed_last, object skew_ns,
                 object kappa, object sigma, dict order_flow, object margin, double max_inventory,
                 double skew_frac) except -1:
    """True only when the reference ``rule.evaluate(state)`` returns None for this state."""
    cdef object t = type(rule)
    cdef object p
    cdef double e, pk, dd, frac, bid, ask, loss
    cdef PyObject* found
    if t is _POSITION:  # q is a float (float() of the core's value)
        p = _rf(rule, _R_PARAMS, "params")
        return isfinite(q) and not _ge(fabs(q), field(p, _POSITION_P, _P_MAX_POSITION, "max_position"))
    if t is _NOTIONAL:
        if not isfinite(q):
            return False
        if q == 0:
            return True
        if not (isfinite(mid) and mid > 0):
            return False
        p = _rf(rule, _R_PARAMS, "params")
        return not _ge(fabs(q) * mid, field(p, _NOTIONAL_P, _P_MAX_NOTIONAL, "max_notional_quote"))
    if t is _DRAWDOWN:
        if not (_finite_float(equity) and _finite_float(peak)):
            return False
        e = PyFloat_AS_DOUBLE(equity)
        pk = PyFloat_AS_DOUBLE(peak)
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
        found = _dict_get(window_losses, field(p, _WINDOW_LOSS_P, _P_WL_WINDOW, "window_s"))
        if found is NULL or not _finite_float(<object>found):
            return False
        loss = PyFloat_AS_DOUBLE(<object>found)
        return not _ge(loss, field(p, _WINDOW_LOSS_P, _P_WL_MAX, "max_loss_quote"))
    if t is _STALE:
        feeds = field(_rf(rule, _R_PARAMS, "params"), _STALE_P, _P_FEEDS, "feeds")
        if not feeds:
            if not feed_last:
                return False
            feeds = feed_last  # its keys
        max_age_ns = _rf(rule, _R_MAX_AGE, "max_age_ns")
        for feed in feeds:
            found = PyDict_GetItem(feed_last, feed)
            if found is NULL or (<object>found) is None:
                return False
            if type(<object>found) is not int or now - <object>found >= max_age_ns:
                return False
        return True
    if t is _CROSSED:
        if not (_finite_float(best_bid) and _finite_float(best_ask)):
            return False
        bid = PyFloat_AS_DOUBLE(best_bid)
        ask = PyFloat_AS_DOUBLE(best_ask)
        return bid > 0 and ask > 0 and not (bid >= ask)
    if t is _SKEW:
        if type(skew_ns) is not int:  # None (unknown) trips; a float or a bool takes the reference path
            return False
        return not (abs(skew_ns) >= _rf(rule, _R_MAX_SKEW, "max_abs_skew_ns"))
    if t is _ESTIMATOR:
        bad = _rf(rule, _R_BAD, "_bad")
        for name in field(_rf(rule, _R_PARAMS, "params"), _ESTIMATOR_P, _P_ESTIMATORS, "estimators"):
            if name == "kappa":
                s = kappa
            elif name == "sigma":
                s = sigma
            else:  # not reported by the session: "missing"
                return False
            if s in bad:
                return False
        return True
    if t is _REJECT:
        p = _rf(rule, _R_PARAMS, "params")
        found = _dict_get(order_flow, field(p, _REJECT_P, _P_REJ_WINDOW, "window_s"))
        if found is NULL:
            return False
        c = <object>found
        sent = field(c, _COUNTS, _FC_SENT, "sent")
        if sent < field(p, _REJECT_P, _P_REJ_MIN, "min_orders"):
            return True
        ratio = field(c, _COUNTS, _FC_REJ, "rejected") / sent
        return not (ratio >= field(p, _REJECT_P, _P_REJ_MAX, "max_reject_ratio"))
    if t is _CANCEL:
        p = _rf(rule, _R_PARAMS, "params")
        found = _dict_get(order_flow, field(p, _CANCEL_P, _P_CAN_WINDOW, "window_s"))
        if found is NULL:
            return False
        c = <object>found
        return not (field(c, _COUNTS, _FC_CAN, "cancelled") >= field(p, _CANCEL_P, _P_CAN_MAX, "max_cancels"))
    if t is _MESSAGE:
        p = _rf(rule, _R_PARAMS, "params")
        found = _dict_get(order_flow, field(p, _MESSAGE_P, _P_MSG_WINDOW, "window_s"))
        if found is NULL:
            return False
        c = <object>found
        return not (field(c, _COUNTS, _FC_MSG, "messages") >= field(p, _MESSAGE_P, _P_MSG_MAX, "max_messages"))
    if t is _MARGIN:
        return margin is None  # no margin report: leverage is None, not applicable
    if t is _SKEW_ALARM:
        return not _skew_on(_rf(rule, _R_PARAMS, "params"), q, max_inventory, skew_frac)
    return False  # a rule of a type not known here: the reference decides


cdef object _get(object m, str key, object default):
    """``m.get(key, default)``: a plain dict or a decision record read directly, any other mapping asked."""
    cdef PyObject* found
    if type(m) is dict:
        found = _dict_get(<dict>m, key)
        return default if found is NULL else <object>found
    cdef int64_t i
    if type(m) is _RECORD:  # DecisionInputs.get: vector[layout.index[key]], the array's double as a new float
        index = field(field(m, _RECORD, _DI_LAYOUT, "layout"), _LAYOUT, _IL_INDEX, "index")
        if type(index) is not dict:
            return m.get(key, default)
        found = _dict_get(<dict>index, key)
        if found is NULL or <object>found is None:  # index.get(key) is None
            return default
        vector = field(m, _RECORD, _DI_VECTOR, "vector")
        if (type(vector) is _ARRAY and (<carray.array>vector).ob_descr.typecode == c'd'
                and _i64(<object>found, &i) and 0 <= i < Py_SIZE(vector)):
            return PyFloat_FromDouble((<carray.array>vector).data.as_doubles[i])
        return vector[<object>found]
    return m.get(key, default)


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


cdef object _window_loss(object loss, object now_ns, object pnl, int64_t now, bint now_c):
    """``loss.update(now_ns, pnl)`` then ``loss.loss(now_ns)`` (RollingLoss, its slots by offset; pnl a finite float,
    time not going backwards: else the reference methods run and raise as they do). ``now_c``: as for _count."""
    cdef int64_t window = 0
    if type(loss) is not _ROLLING_LOSS or not _RL_SLOTS or not _finite_float(pnl):
        loss.update(now_ns, pnl)
        return loss.loss(now_ns)
    samples = slot_get(loss, _RL_SAMPLES)
    if samples and now_ns < (<tuple>samples[-1])[1]:
        loss.update(now_ns, pnl)
        return loss.loss(now_ns)
    cdef double v = PyFloat_AS_DOUBLE(pnl)
    seq = slot_get(loss, _RL_SEQ) + 1
    slot_set(loss, _RL_SEQ, seq)
    samples.append((seq, now_ns, pnl))
    mx = slot_get(loss, _RL_MAX)
    while mx and PyFloat_AS_DOUBLE((<tuple>mx[-1])[1]) <= v:
        mx.pop()
    mx.append((seq, pnl))
    # _expire(now_ns); loss() expires again at the same time, which removes nothing more
    window_obj = slot_get(loss, _RL_WINDOW)
    cdef bint by_c = now_c and _i64(window_obj, &window) and window >= 0  # then now - window cannot overflow
    while len(samples) >= 2 and _at_or_before((<tuple>samples[1])[1], by_c, now - window, now_ns, window_obj):
        samples.popleft()
    first_seq = (<tuple>samples[0])[0]
    while mx and (<tuple>mx[0])[0] < first_seq:
        mx.popleft()
    return PyFloat_FromDouble(PyFloat_AS_DOUBLE((<tuple>mx[0])[1]) - v)


cdef object _count(object c, object now_ns, int64_t now, bint now_c):
    """``RollingCounter.count(now_ns)``; its slots by offset (the same reads and writes in the same order: the running
    total is written once after the pops, which nothing reads in between). ``now_c``: ``now_ns`` is ``now``, an int64
    (>= 0), and the times are compared in C wherever they are int64 too; else as Python objects."""
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
    if events:
        window_obj = slot_get(c, _RC_WINDOW)
        by_c = now_c and _i64(window_obj, &window) and window >= 0  # then now - window cannot overflow
        total = slot_get(c, _RC_TOTAL)
        popped = False
        while events and _at_or_before((<list>events[0])[0], by_c, now - window, now_ns, window_obj):
            total -= (<list>events.popleft())[1]
            popped = True
        if popped:
            slot_set(c, _RC_TOTAL, total)
    return slot_get(c, _RC_TOTAL)


cdef object _counts_new(object window_s, object sent, object rejected, object cancelled, object messages):
    """``OrderFlowCounts(window_s, sent, rejected, cancelled, messages)``: the same object, its slots set directly."""
    if not _COUNTS_SLOTS:
        return _COUNTS(window_s, sent, rejected, cancelled, messages)
    return new_slotted(_COUNTS, (window_s, sent, rejected, cancelled, messages), _COUNTS_OFF)


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
        and field(last, _COUNTS, _FC_SENT, "sent") == sent
        and field(last, _COUNTS, _FC_REJ, "rejected") == rejected
        and field(last, _COUNTS, _FC_CAN, "cancelled") == cancelled
        and field(last, _COUNTS, _FC_MSG, "messages") == messages
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
cdef object _msg_ratio = None
cdef object _msg_bps = None
cdef uint64_t _msg_q_bits = 0


cdef object _skew_alarm_trip(object rule, object now_ns, object q_obj):
    """``rule.evaluate(state)`` of a SkewAlarmRule (exactly) whose alarm is on for the state, and whose ``ts_ns`` and
    ``position`` are ``now_ns`` and ``q_obj`` (a float): the reference's trip, values and sentence, with no
    ``RiskState``. None when the class's ``evaluate`` or ``_trip`` is not the reference's (the reference then runs)."""
    global _msg, _msg_ratio, _msg_bps, _msg_q_bits
    if _SKEW_ALARM.evaluate is not _SKEW_ALARM_EVALUATE or _SKEW_ALARM._trip is not _RULE_TRIP_METHOD:
        return None
    p = _rf(rule, _R_PARAMS, "params")
    ratio = field(p, _SKEW_PARAMS, _SP_RATIO, "min_position_ratio")
    bps = field(p, _SKEW_PARAMS, _SP_BPS, "min_skew_bps")
    cdef dict values = dict_presized(4)
    values["skew_alarm"] = True
    values["position"] = q_obj
    values["min_position_ratio"] = ratio
    values["min_skew_bps"] = bps
    cdef double q = PyFloat_AS_DOUBLE(q_obj)
    cdef uint64_t bits
    memcpy(&bits, &q, sizeof(double))
    if _msg is None or bits != _msg_q_bits or ratio is not _msg_ratio or bps is not _msg_bps:
        msg = _SKEW_MESSAGE(q_obj, ratio, bps)
        _msg, _msg_ratio, _msg_bps, _msg_q_bits = msg, ratio, bps, bits
    else:
        msg = _msg
    return _rule_trip(_rf(rule, _R_NAME, "name"), rule.kind, _rf(rule, _R_ACTION, "action"), now_ns, values, msg)


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
        if (<dict>active).get(name) != key:
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


def evaluate(risk, now_ns, core_state, decision_inputs):
    """``PySessionRisk.evaluate(risk, now_ns, core_state, decision_inputs)``, the same result and the same updates:
    (started trips, cleared rule names, all current trips)."""
    if not _SR_BOUND:
        _bind_session()
    # a PySessionRisk or SessionRisk (exactly) by slot offset; any other session by name
    cdef bint by_slot = _SR_SLOTS and (type(risk) is _SESSION or type(risk) is _PY_SESSION)
    if by_slot:
        _settle(risk)  # the clocks the last market events recorded (the properties the reference reads run it)
    # the session clock (_now): max(self._t, now_ns)
    t = _risk_get(risk, by_slot, SR_T)
    if now_ns > t:
        t = now_ns
    _risk_set(risk, by_slot, SR_T, t)
    now_ns = t
    cdef int64_t now_i64 = 0
    cdef bint now_c = _i64(now_ns, &now_i64) and now_i64 >= 0  # the rolling windows compare times in C then
    pnl = _get(core_state, "pnl", None)
    pnl = 0.0 if pnl is None else float(pnl)
    equity = _risk_get(risk, by_slot, SR_CAPITAL) + pnl
    peak = _risk_get(risk, by_slot, SR_PEAK)
    if equity > peak:  # max(peak_equity, equity)
        peak = equity
    _risk_set(risk, by_slot, SR_PEAK, peak)
    losses = _risk_get(risk, by_slot, SR_LOSSES)
    cdef dict window_losses
    if type(losses) is dict and all(type(x) is _ROLLING_LOSS for x in losses.values()):
        # every update, then every loss: each window's loss(now) right after its own update is the same
        window_losses = {w: _window_loss(loss, now_ns, pnl, now_i64, now_c) for w, loss in losses.items()}
    else:
        for loss in losses.values():
            loss.update(now_ns, pnl)
        window_losses = {w: loss.loss(now_ns) for w, loss in losses.items()}
    q_obj = float(_get(core_state, "inventory", None) or 0.0)
    skew = _get(decision_inputs, "skew_model_frac", _get(decision_inputs, "skew_frac", 0.0))
    mid_obj = float(_get(core_state, "mid", None) or _nan)
    best_bid = _get(decision_inputs, "best_bid", _nan)
    best_ask = _get(decision_inputs, "best_ask", _nan)
    clock_skew_ns = _risk_get(risk, by_slot, SR_CLOCK_SKEW)
    kappa = _get(core_state, "kappa_state", None) or "warming"
    sigma = _get(core_state, "sigma_state", None) or "warming"
    flows = _risk_get(risk, by_slot, SR_FLOWS)
    cdef dict order_flow = {w: _snapshot(f, now_ns, now_i64, now_c) for w, f in flows.items()}
    max_inventory = float(_risk_get(risk, by_slot, SR_MAX_INV))
    skew_frac = float(skew)
    margin = _risk_get(risk, by_slot, SR_MARGIN)
    cdef double q = q_obj
    cdef double mid = mid_obj
    feed_last = _risk_get(risk, by_slot, SR_FEED_LAST)
    engine = _risk_get(risk, by_slot, SR_ENGINE)
    rules = field(engine, _RISK_ENGINE, _RE_RULES, "rules")
    # the rules not certainly quiet, in order (None: every one is); _quiet reads, never writes
    cdef list loud = None
    for rule in rules:
        if not _quiet(rule, now_ns, q, mid, best_bid, best_ask, equity, peak, window_losses, feed_last,
                      clock_skew_ns, kappa, sigma, order_flow, margin, max_inventory, skew_frac):
            if loud is None:
                loud = []
            loud.append(rule)
    edges = _risk_get(risk, by_slot, SR_EDGES)
    if loud is None:
        if type(edges) is _EDGES and _TE_ACTIVE >= 0:  # TripEdges.update([])
            cleared = list(slot_get(edges, _TE_ACTIVE))
            slot_set(edges, _TE_ACTIVE, {})
            return [], cleared, []
        trips = []
    else:
        trips = None
        if type(engine) is _RISK_ENGINE and (type(rules) is tuple or type(rules) is list):
            # RiskEngine.evaluate's trips are the loud rules' (below); when each is one built here, no RiskState
            trips = _loud_trips(loud, now_ns, q_obj)
    if trips is None:
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
    return started, cleared, trips
