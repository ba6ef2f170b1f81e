# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Compiled per-event path and decision of the strategy core: the same behaviour as the reference
``PyStrategyCore`` in :mod:`apps.engine.core`, which stays the readable version of every step.

Design, as for the driver and the paper venue: ``StrategyCoreBase`` holds the state the per-event path reads in
slots, and :mod:`apps.engine.core` builds ``class StrategyCore(StrategyCoreBase, PyStrategyCore)``. It overrides
``on_event``, and in it only what most events of a real feed do:

* a book ticker or a trade is handed to the market estimators as ``MarketEstimators.on_event`` would (its clock,
  first-event time and counter, then the compiled ``MarketStep`` call it holds in ``_on_bbo``/``_on_trade``);
  depth events go to ``MarketEstimators.on_event`` itself;
* after a book ticker, the check of ``PyStrategyCore._decide`` that nothing a decision depends on changed (the
  touch, the position, the estimates' version, the halt, the decision interval) runs here without a Python call;
  the six snapshots are the estimators' cache (``MarketEstimators.cached_snapshots``), refreshed between events
  (``refresh``, whose two comparisons also run here at the start of every event, as in the reference).

It also overrides the decision itself: ``_decide_now``, ``_set`` and ``_reconcile`` (with ``reconcile_side``) are
compiled here (``_c_decide_now``, ``_c_set``, ``_c_reconcile``, ``_reconcile_side``): the same steps in the same
order, the same objects kept where the reference keeps them (an input that is an int stays an int), the same
dict key order; ``MarketState``, ``QuoteResult``, ``QuoteDecision`` and the actions are built field by field as
their dataclass ``__init__`` would (checked against the classes when the module is first used). The estimators'
reads ``book_signals``, ``risk_features`` (with its writes), ``ages`` and the drift's expected return are twinned here
step by step (``_book_signals``, ``_risk_features``, ``_expected_return``; each falls back to the reference where a
case is not twinned, and all of them do if a reference's code changed: ``_bind``), and so is ``cached_depth_cost``
(its cached snapshot and curve read directly); the cached snapshots and the adverse snapshot are called as in the
reference, and the quoter too unless it is the compiled one (then its C entry, ``c_quote``). The decision's
``InputPairs`` is emptied and reused by the next decision once nothing else holds it (``_pairs``). The Python-visible
``_decide_now``/``_set``/``_reconcile``
are the compiled ones, so the events that run the reference's ``on_event`` (fills, funding, timers) decide through
them too.

Every other event (our order events and fills, funding, marks, timers) runs the reference's ``on_event``.
"""

import hashlib
import math
import sys
from types import CodeType

from cpython.dict cimport PyDict_GetItemWithError
from cpython.object cimport PyObject, PyObject_GenericSetAttr, PyTypeObject
from cpython.tuple cimport PyTuple_GET_ITEM, PyTuple_GET_SIZE
cimport cpython.array as carray
from cpython.float cimport PyFloat_AS_DOUBLE, PyFloat_AsDouble
from cpython.list cimport PyList_GET_ITEM, PyList_GET_SIZE
from cpython.long cimport PyLong_AsLongLongAndOverflow

from libc.math cimport NAN, exp, expm1, fabs, isfinite, log, sqrt
from libc.stdint cimport int64_t

from apps.engine._pyfloat cimport pypow
from apps.engine.estimators._estimators cimport MarketFields, hawkes_reads, sigma_reads, step_on_bbo, step_on_trade
from apps.engine.market._book cimport OrderBook as CBook, QueueLevels
from apps.engine.quoting._quote cimport InputPairs, c_quote, pairs_put, round12
from apps.engine._slots cimport (
    dict_presized, fast_i64, field, new_slotted, slot_get, slot_offset, slot_offsets, slot_set, item, strict_int64,
    to_i64,
)
from libc.stdlib cimport free, malloc


cdef extern from "Python.h":
    PyTypeObject PyBaseObject_Type
    Py_ssize_t _refcnt "Py_REFCNT" (PyObject* o)  # on the pointer: no new reference taken to ask

from apps.engine.core import _DEPTH_MARKOUT_INPUTS, PyStrategyCore, StrategyParams
from apps.engine.estimators.base import EstimatorSnapshot, EstimatorState
from apps.engine import validation
from apps.engine.estimators import drift as drift_module
from apps.engine.estimators.drift import KalmanDrift, PyKalmanDrift
from apps.engine.estimators.hawkes import HawkesFit, HawkesIntensity, HawkesParams, PyHawkesIntensity
from apps.engine.estimators.market import EstimatorConfig, MarketEstimators, _Cached
from apps.engine.execution import orders as orders_module
from apps.engine.execution.orders import Order, OrderStatus, OrderTracker, TimeInForce
from apps.engine.execution.reconcile import REQUOTE_EPS_TICKS, SideReconciliation
from apps.engine.market.events import (
    BestBidAsk,
    CancelOrder,
    DepthSnapshot,
    DepthUpdate,
    EventError,
    ModifyOrder,
    OrderAck,
    OrderReject,
    PlaceOrder,
    QuoteDecision,
    Side,
    Trade,
)
from apps.engine.market.inputs import DecisionInputs, InputLayout
from apps.engine.quoting.quoter import MODEL_CODES, Level, MarketState, QuoterParams, QuoteResult
from apps.engine.quoting._quote import quote as _QUOTE_DEF  # the compiled quoter, called at C level when it is core's


# the book ticker's and the trade's fields by their slot offsets (apps/engine/_slots.pxd), for an event exactly that class
cdef Py_ssize_t _B_TS = slot_offset(BestBidAsk, "ts_local_ns"), _B_BID = slot_offset(BestBidAsk, "bid_px")
cdef Py_ssize_t _B_ASK = slot_offset(BestBidAsk, "ask_px")
cdef bint _B_SLOTS = min(_B_TS, _B_BID, _B_ASK) >= 0
cdef Py_ssize_t _T_TS = slot_offset(Trade, "ts_local_ns"), _T_MARKET = slot_offset(Trade, "market")
cdef bint _T_SLOTS = min(_T_TS, _T_MARKET) >= 0


def slot_reads_active():
    """Whether the events' and the estimates' fields are read, and the decision's dataclasses written, by slot offset
    here (tests/engine/test_compiled.py)."""
    if not _bound:
        _bind()
    layouts = (_L_STATE, _L_RESULT, _L_DECISION, _L_PLACE, _L_MODIFY, _L_CANCEL)
    return (
        _B_SLOTS
        and _T_SLOTS
        and min(_S_NAME, _S_VALUE, _S_STD, _S_STATE, _S_CI_LOW, _S_CI_HIGH, _S_DETAIL) >= 0
        and all((<_Layout>layout).offsets != NULL for layout in layouts)
    )


cdef object _record = DecisionInputs.from_mapping  # the not-quotable decision's inputs as the typed record

cdef object _reference_on_event = PyStrategyCore.on_event
cdef object _BBO = BestBidAsk
cdef object _TRADE = Trade
cdef object _DEPTH_UPDATE = DepthUpdate
cdef object _DEPTH_SNAPSHOT = DepthSnapshot
cdef object _EventError = EventError
cdef double _NS = 1e9
cdef object _nan = math.nan
cdef object _new = object.__new__
# 1.0 and 0.0 as two shared float objects (the decision's flag inputs, whose doubles the quoter reads; max(0.0, x))
cdef object _F1 = 1.0, _F0 = 0.0
cdef tuple _NO_ARGS = ()
cdef object _core_module = sys.modules[PyStrategyCore.__module__]  # its ``quote`` is read at each decision, as there
cdef object _MODEL_CODES = MODEL_CODES
cdef object _BUY = Side.BUY
cdef object _SELL = Side.SELL
cdef object _PENDING_CANCEL = OrderStatus.PENDING_CANCEL
cdef object _TRACKER = OrderTracker
cdef object _STRATEGY_PARAMS = StrategyParams
cdef object _QUOTER_PARAMS = QuoterParams
cdef object _PENDING_NEW = OrderStatus.PENDING_NEW
cdef object _POST_ONLY = TimeInForce.POST_ONLY
cdef object _IOC = TimeInForce.IOC
cdef double _EPS_TICKS = REQUOTE_EPS_TICKS
cdef double _ROOM_SLACK = 1e-12  # reconcile.py's _ROOM_SLACK (checked in _bind)
cdef tuple _DM_INPUTS = tuple(_DEPTH_MARKOUT_INPUTS)
cdef dict _STATE_OK_KEYS = {}  # snapshot name -> f"{name}_state_ok"
cdef dict _AGE_KEYS_BY_NAME = {}  # cache name -> f"{name}_age_s"
cdef double _TWO53 = 9007199254740992.0
cdef object _SNAPSHOT = EstimatorSnapshot
cdef object _OK = EstimatorState.OK

cdef object _MARKET = MarketEstimators
cdef object _CACHED = _Cached  # MarketEstimators' cache entries (snap, at_ns), read by slot offset in the ages
cdef Py_ssize_t _C_SNAP = slot_offset(_Cached, "snap"), _C_AT = slot_offset(_Cached, "at_ns")
cdef object _HAWKES_C = HawkesIntensity  # the compiled class when built (else the reference itself)
cdef object _HAWKES_PY = PyHawkesIntensity
cdef object _HAWKES_FIT = HawkesFit
cdef object _HAWKES_PARAMS = HawkesParams
# the risk features' Hawkes reads by slot offset (frozen, slotted dataclasses; -1: read by name)
cdef Py_ssize_t _HF_STATE = slot_offset(HawkesFit, "state")
cdef Py_ssize_t _HP_MU = slot_offset(HawkesParams, "mu_per_s"), _HP_ALPHA = slot_offset(HawkesParams, "alpha_per_s")
cdef Py_ssize_t _HP_BETA = slot_offset(HawkesParams, "beta_per_s")
cdef object _DRIFT = KalmanDrift
# the estimators' config (a frozen, slotted dataclass): the fields the decision's reads use, by slot offset
cdef object _CONFIG = EstimatorConfig
cdef Py_ssize_t _CF_IMB = slot_offset(EstimatorConfig, "imbalance_levels")
cdef Py_ssize_t _CF_NEAR = slot_offset(EstimatorConfig, "near_touch_bps")
cdef Py_ssize_t _CF_HALF_LIFE = slot_offset(EstimatorConfig, "reference_half_life_s")
cdef object _math_log = math.log

# The estimators' reads a decision makes, twinned below step by step (_book_signals, _risk_features, _expected_return
# and the ages loop of _c_decide_now): the references' code as it was when the twins were written, by _code_digest.
# _bind compares; if a reference changed (or Python's bytecode did: 3.12 also changed how sum() adds floats), the
# twins stand down and the decision calls the references (tests/engine/test_core_reads.py fails until the twin and
# its digest are updated).
cdef dict _TWINNED_DIGESTS = {
    "MarketEstimators.book_signals": "8d0ed3678dbf5f39",
    "MarketEstimators.risk_features": "a5209656c8a2c1cb",
    "MarketEstimators.ages": "011e5a16ab491c3e",
    "MarketEstimators.cached_depth_cost": "a3ebd27ff995b2f0",
    "PyHawkesIntensity.intensity": "8006d796d50962a6",
    "PyHawkesIntensity.excess_intensity": "eeb9f1fb487981f2",
    "PyHawkesIntensity.decayed_count": "6c585ae3f00e6b2a",
    "PyHawkesIntensity._decayed": "9661b71f7e63d01a",
    "HawkesFit.ok": "bc6da40fe72ed99f",
    "KalmanDrift.expected_return": "a362a8258e48daac",
    "KalmanDrift.predict": "27ebbffb4808a419",
    "KalmanDrift._dt_s": "abc02900cf73d447",
    "drift.ou_transition": "906687a19caf76a7",
    "validation.positive": "5e3cd6344b6246b6",
    "validation.finite": "95913172031a3ad9",
    "validation.is_finite_number": "a5cc95df323bb929",
    "OrderTracker.open_orders": "6443fbbeb91e91f2",
    "OrderTracker.open_orders_on": "bbdfad533b3c55f7",
    "OrderTracker.on_event": "1865fa044c0ad9c2",
    "OrderTracker._apply": "243bff1c87dcacca",
    "OrderTracker._on_ack": "bacb74016206925f",
    "OrderTracker.on_actions": "85cbac7ce3424439",
    "OrderTracker.on_action": "ad1ac53c5062d305",
    "Order.transition": "9df636026ed0f147",
    "Order.is_live": "b77a961161c4235d",
    "OrderStatus.is_terminal": "d57ddfb9c4c99480",
    "OrderStatus.is_live": "34e2a025fde5703a",
    "orders.can_transition": "ea7056b991a92059",
    "TimeInForce.parse": "14c7c12eac1ae3cb",
}
cdef bint _reads_twinned = False


def _code_digest(func):
    """A digest of what ``func`` does: its bytecode, names and constants (nested code objects by their own digest, so
    line numbers do not count; nor does its docstring)."""

    def parts(code, doc):
        yield code.co_code
        yield repr((code.co_names, code.co_varnames, code.co_freevars, code.co_cellvars)).encode()
        for i, c in enumerate(code.co_consts):
            if i == 0 and doc is not None and c is doc:
                continue
            yield parts_digest(c) if isinstance(c, CodeType) else repr(c).encode()

    def parts_digest(code, doc=None):
        h = hashlib.sha256()
        for part in parts(code, doc):
            h.update(len(part).to_bytes(8, "little"))
            h.update(part)
        return h.hexdigest().encode()

    return parts_digest(func.__code__, func.__doc__).decode()[:16]


def reference_digests():
    """The digests of the references the decision's reads twin, as they are now (compare ``twinned_digests``)."""
    return {
        "MarketEstimators.book_signals": _code_digest(MarketEstimators.book_signals),
        "MarketEstimators.risk_features": _code_digest(MarketEstimators.risk_features),
        "MarketEstimators.ages": _code_digest(MarketEstimators.ages),
        "MarketEstimators.cached_depth_cost": _code_digest(MarketEstimators.cached_depth_cost),
        "PyHawkesIntensity.intensity": _code_digest(PyHawkesIntensity.intensity),
        "PyHawkesIntensity.excess_intensity": _code_digest(PyHawkesIntensity.excess_intensity),
        "PyHawkesIntensity.decayed_count": _code_digest(PyHawkesIntensity.decayed_count),
        "PyHawkesIntensity._decayed": _code_digest(PyHawkesIntensity._decayed),
        "HawkesFit.ok": _code_digest(HawkesFit.ok.fget),
        "KalmanDrift.expected_return": _code_digest(PyKalmanDrift.expected_return),
        "KalmanDrift.predict": _code_digest(PyKalmanDrift.predict),
        "KalmanDrift._dt_s": _code_digest(PyKalmanDrift._dt_s),
        "drift.ou_transition": _code_digest(drift_module.ou_transition),
        "validation.positive": _code_digest(validation.positive),
        "validation.finite": _code_digest(validation.finite),
        "validation.is_finite_number": _code_digest(validation.is_finite_number),
        "OrderTracker.open_orders": _code_digest(OrderTracker.open_orders),
        "OrderTracker.open_orders_on": _code_digest(OrderTracker.open_orders_on),
        "OrderTracker.on_event": _code_digest(OrderTracker.on_event),
        "OrderTracker._apply": _code_digest(OrderTracker._apply),
        "OrderTracker._on_ack": _code_digest(OrderTracker._on_ack),
        "OrderTracker.on_actions": _code_digest(OrderTracker.on_actions),
        "OrderTracker.on_action": _code_digest(OrderTracker.on_action),
        "Order.transition": _code_digest(Order.transition),
        "Order.is_live": _code_digest(Order.is_live.fget),
        "OrderStatus.is_terminal": _code_digest(OrderStatus.is_terminal.fget),
        "OrderStatus.is_live": _code_digest(OrderStatus.is_live.fget),
        "orders.can_transition": _code_digest(orders_module.can_transition),
        "TimeInForce.parse": _code_digest(TimeInForce.parse.__func__),
    }


def twinned_digests():
    """The digests the twins were written against."""
    return dict(_TWINNED_DIGESTS)


def reads_twinned():
    """Whether the decision reads through the twins (True) or calls the references (their code changed)."""
    if not _bound:
        _bind()
    return _reads_twinned

# the dataclasses built field by field (as their generated __init__ does); checked against the classes in _bind
cdef tuple _STATE_FIELDS = (
    "ts_ns", "best_bid", "best_ask", "kappa", "sigma_clean", "sigma_inventory", "kappa_ok", "sigma_ok", "a_per_s",
    "mean_trade_size", "drift_mean_per_s", "drift_std_per_s", "drift_expected_return", "drift_ok", "book_imbalance",
    "flow_imbalance", "microprice_offset", "microprice_ok", "funding_rate", "funding_interval_s", "flow_toxicity",
    "adverse_selection", "adverse_selection_ok", "fill_cost_curve", "fill_cost_curve_ok", "bid_queue", "ask_queue",
    "risk_features", "session_end_ns", "extra_inputs",
)
cdef tuple _RESULT_FIELDS = ("ts_ns", "bids", "asks", "inputs", "reasons", "taker_side", "taker_size", "taker_price")
cdef tuple _DECISION_FIELDS = ("ts_ns", "bid_px", "ask_px", "bid_size", "ask_size", "inputs", "reasons")
cdef tuple _PLACE_FIELDS = ("client_order_id", "side", "price", "size", "tif")
cdef tuple _MODIFY_FIELDS = ("client_order_id", "price", "size")
cdef tuple _CANCEL_FIELDS = ("client_order_id",)
cdef object _RESULT_TAKER_DEFAULTS = None  # QuoteResult's defaults of taker_side, taker_size, taker_price
cdef bint _bound = False
cdef _Layout _L_STATE, _L_RESULT, _L_DECISION, _L_PLACE, _L_MODIFY, _L_CANCEL  # set by _bind (after its checks)


cdef int _bind() except -1:
    """Check, once, that the dataclasses built field by field here are still the ones this module was written for."""
    global _bound, _RESULT_TAKER_DEFAULTS, _reads_twinned
    global _L_STATE, _L_RESULT, _L_DECISION, _L_PLACE, _L_MODIFY, _L_CANCEL
    import dataclasses

    from apps.engine.execution import reconcile

    for cls, names in (
        (MarketState, _STATE_FIELDS),
        (QuoteResult, _RESULT_FIELDS),
        (QuoteDecision, _DECISION_FIELDS),
        (PlaceOrder, _PLACE_FIELDS),
        (ModifyOrder, _MODIFY_FIELDS),
        (CancelOrder, _CANCEL_FIELDS),
    ):
        if (
            tuple(cls.__dataclass_fields__) != names
            or hasattr(cls, "__post_init__")
            or not cls.__dataclass_params__.frozen
        ):
            raise RuntimeError(f"apps.engine._core: {cls.__name__}'s fields changed; update _core.pyx")
    _L_STATE = _Layout(MarketState, _STATE_FIELDS)
    _L_RESULT = _Layout(QuoteResult, _RESULT_FIELDS)
    _L_DECISION = _Layout(QuoteDecision, _DECISION_FIELDS)
    _L_PLACE = _Layout(PlaceOrder, _PLACE_FIELDS)
    _L_MODIFY = _Layout(ModifyOrder, _MODIFY_FIELDS)
    _L_CANCEL = _Layout(CancelOrder, _CANCEL_FIELDS)
    f = QuoteResult.__dataclass_fields__
    _RESULT_TAKER_DEFAULTS = (f["taker_side"].default, f["taker_size"].default, f["taker_price"].default)
    if any(d is dataclasses.MISSING for d in _RESULT_TAKER_DEFAULTS):
        raise RuntimeError("apps.engine._core: QuoteResult's taker defaults changed; update _core.pyx")
    if reconcile._ROOM_SLACK != _ROOM_SLACK:
        raise RuntimeError("apps.engine._core: reconcile._ROOM_SLACK changed; update _core.pyx")
    _reads_twinned = reference_digests() == _TWINNED_DIGESTS
    _bound = True
    return 0


cdef class _Layout:
    """A frozen, slotted dataclass's fields in order and, when every one is a plain object slot, their offsets."""

    cdef object cls
    cdef tuple names
    cdef Py_ssize_t n
    cdef Py_ssize_t* offsets  # NULL: set the fields by name
    cdef bint object_new  # cls.__new__ is object.__new__: made by new_slotted, without the Python-level call
    cdef object __weakref__

    def __cinit__(self, cls, tuple names):
        self.cls = cls
        self.object_new = isinstance(cls, type) and cls.__new__ is object.__new__
        self.names = names
        self.n = len(names)
        self.offsets = <Py_ssize_t*>malloc(self.n * sizeof(Py_ssize_t))
        if self.offsets == NULL:
            raise MemoryError()
        if not slot_offsets(cls, names, self.offsets):
            free(self.offsets)
            self.offsets = NULL

    def __dealloc__(self):
        free(self.offsets)


cdef inline object _frozen(_Layout layout, tuple values):
    """A frozen, slotted dataclass built as its generated __init__ builds it (``object.__setattr__`` per field: a store
    in its slot, by offset when the layout has them)."""
    if layout is None:
        raise RuntimeError("apps.engine._core: a layout used before _bind()")
    if layout.object_new and layout.offsets != NULL:
        # object.__new__(cls) uncalled and each field in its slot (_slots.pxd): the class does not define __new__
        return new_slotted(layout.cls, values, layout.offsets)
    cdef object obj = _new(layout.cls)
    cdef Py_ssize_t k
    if layout.offsets != NULL:
        for k in range(layout.n):
            slot_set(obj, layout.offsets[k], values[k])
    else:
        for k in range(layout.n):
            PyObject_GenericSetAttr(obj, layout.names[k], values[k])
    return obj


# EstimatorSnapshot's fields by their slot offsets (apps/engine/_slots.pxd): -1 where a field is not a plain slot
cdef Py_ssize_t _S_NAME = slot_offset(EstimatorSnapshot, "name")
cdef Py_ssize_t _S_VALUE = slot_offset(EstimatorSnapshot, "value")
cdef Py_ssize_t _S_STD = slot_offset(EstimatorSnapshot, "std")
cdef Py_ssize_t _S_STATE = slot_offset(EstimatorSnapshot, "state")
cdef Py_ssize_t _S_CI_LOW = slot_offset(EstimatorSnapshot, "ci_low")
cdef Py_ssize_t _S_CI_HIGH = slot_offset(EstimatorSnapshot, "ci_high")
cdef Py_ssize_t _S_DETAIL = slot_offset(EstimatorSnapshot, "detail")
# a quote Level's price and size by slot offset (_c_set reads the best of each side)
cdef object _LEVEL = Level
cdef Py_ssize_t _LV_PRICE = slot_offset(Level, "price"), _LV_SIZE = slot_offset(Level, "size")
# the order tracker's and its orders' fields by slot offset (both classes are slotted: apps/engine/execution/orders.py);
# field() reads them by name for any other class
cdef object _ORDER = Order
cdef Py_ssize_t _TR_POSITION = slot_offset(OrderTracker, "position"), _TR_CASH = slot_offset(OrderTracker, "cash")
cdef Py_ssize_t _TR_LIVE = slot_offset(OrderTracker, "_live")
cdef Py_ssize_t _O_SIDE = slot_offset(Order, "side"), _O_TIF = slot_offset(Order, "tif")
cdef Py_ssize_t _O_STATUS = slot_offset(Order, "status"), _O_PRICE = slot_offset(Order, "price")
cdef Py_ssize_t _O_SIZE = slot_offset(Order, "size"), _O_FILLED = slot_offset(Order, "filled")
cdef Py_ssize_t _O_REM_OF = slot_offset(Order, "_remaining_of"), _O_REM = slot_offset(Order, "_remaining")
cdef Py_ssize_t _O_ID = slot_offset(Order, "client_order_id")
cdef bint _O_MEMO = min(_O_SIZE, _O_FILLED, _O_REM_OF, _O_REM) >= 0


cdef inline object _remaining(object o):
    """``o.remaining``: an exact Order's memo read by slot while it holds for the order's size and filled (the
    property's own test: ``of[0] == size and of[1] == filled``); else, for float size and filled and no memo or a
    memo pair, the property's computation and its two stores here (``max(0.0, round(size - filled, 12))``, with
    round12 for ``round``: ~5k instructions through the property); the property itself otherwise."""
    cdef double v
    if type(o) is _ORDER and _O_MEMO:
        of = slot_get(o, _O_REM_OF)
        size = slot_get(o, _O_SIZE)
        filled = slot_get(o, _O_FILLED)
        if type(of) is tuple and PyTuple_GET_SIZE(of) == 2:
            if (<tuple>of)[0] == size and (<tuple>of)[1] == filled:
                return slot_get(o, _O_REM)
        elif of is not None:
            return o.remaining
        if type(size) is float and type(filled) is float:
            v = round12(<double>size - <double>filled)
            value = v if v > 0.0 else _F0  # max(0.0, v): the first unless the second is greater (NaN: the first)
            slot_set(o, _O_REM_OF, (size, filled))
            slot_set(o, _O_REM, value)
            return value
    return o.remaining


def _order_remaining(o):
    """``o.remaining`` as the core reads it (``_remaining``), for the tests."""
    return _remaining(o)


cdef inline object _sf(object snap, Py_ssize_t offset, str name):
    """``getattr(snap, name)``: by its slot offset when ``snap`` is exactly an EstimatorSnapshot."""
    return field(snap, _SNAPSHOT, offset, name)


cdef inline bint _usable(object snap) except -1:
    """``snap.usable``: for an EstimatorSnapshot its property's own test (``state is EstimatorState.OK``), read here."""
    if type(snap) is _SNAPSHOT:
        return (slot_get(snap, _S_STATE) if _S_STATE >= 0 else snap.state) is _OK
    return snap.usable


cdef inline object _suffixed(dict cache, object name, str suffix):
    """``f"{name}{suffix}"``, built once per name and kept in ``cache`` (the decision's per-snapshot input keys)."""
    cdef PyObject* found = PyDict_GetItemWithError(cache, name)
    if found != NULL:
        return <object>found
    key = f"{name}{suffix}"  # (a lookup's error, e.g. an unhashable name, raises here as ``cache.get`` would)
    cache[name] = key
    return key


# --- the not-quotable decision's inputs as a DecisionInputs record, without the dict ---------------------------------
#
# The reference builds a dict (its eleven names, then the extra inputs') and DecisionInputs.from_mapping makes the record
# of it: the shared layout of its names (InputLayout.of) and array('d') of its values, each as array('d') stores it
# (PyFloat_AsDouble). The names repeat from one such decision to the next (the same string objects: literals and the
# cached suffixed keys), so the names the reference's record got are kept, and a later decision whose extra names are
# those very objects in that order builds the same record directly: InputLayout.of(names) (the interned layout the
# reference gets), the doubles converted one by one as the array converts them, then the slots stored as its __init__
# stores them. Anything else (other names, a repeated name, a value that is not a number) takes the reference's path.
cdef tuple _UNQUOTED_FIXED = (
    "mid", "best_bid", "best_ask", "q", "q_ratio", "gamma", "model_requested_code", "horizon_s", "kappa",
    "sigma_spread", "sigma_inventory",
)
cdef tuple _UNQUOTED_NAMES = None  # the last reference-built record's names, when they were the dict's, unrepeated
cdef object _LAYOUT_OF = InputLayout.of
cdef object _INPUTS = DecisionInputs
cdef object _INPUT_LAYOUT = InputLayout
cdef Py_ssize_t _DI_OFF[2]
cdef bint _DI_SLOTS = slot_offsets(DecisionInputs, ("layout", "vector"), _DI_OFF) and DecisionInputs.__new__ is object.__new__
cdef carray.array _DOUBLES = carray.array("d")


cdef int _unquoted_names_from(object record, InputPairs extra) except -1:
    """Keep ``record``'s names for the next not-quotable decision when they are the eleven fixed names and then
    ``extra``'s, the same objects in order (no name repeated: the dict kept every one)."""
    global _UNQUOTED_NAMES
    cdef Py_ssize_t i, nf = PyTuple_GET_SIZE(_UNQUOTED_FIXED)
    _UNQUOTED_NAMES = None
    if type(record) is not _INPUTS:
        return 0
    names = record.layout.names
    if type(names) is not tuple or PyTuple_GET_SIZE(names) != nf + extra.n:
        return 0
    for i in range(nf):
        if <PyObject*>PyTuple_GET_ITEM(names, i) != <PyObject*>PyTuple_GET_ITEM(_UNQUOTED_FIXED, i):
            return 0
    for i in range(extra.n):
        if <PyObject*>PyTuple_GET_ITEM(names, nf + i) != extra.k_arr[i]:
            return 0
    _UNQUOTED_NAMES = names
    return 0


cdef object _unquoted_record(tuple fixed, InputPairs extra):
    """``DecisionInputs.from_mapping`` of the reference's dict of ``fixed`` (the eleven) and ``extra``, built directly;
    None when the reference's path must build it (see above)."""
    cdef tuple names = _UNQUOTED_NAMES
    cdef Py_ssize_t i, nf = PyTuple_GET_SIZE(fixed)
    cdef double x
    if names is None or not _DI_SLOTS or PyTuple_GET_SIZE(names) != nf + extra.n:
        return None
    for i in range(extra.n):
        if <PyObject*>PyTuple_GET_ITEM(names, nf + i) != extra.k_arr[i]:
            return None
    cdef carray.array values = carray.clone(_DOUBLES, nf + extra.n, False)
    for i in range(nf + extra.n):
        v = <object>PyTuple_GET_ITEM(fixed, i) if i < nf else <object>extra.v_arr[i - nf]
        if type(v) is float:
            x = PyFloat_AS_DOUBLE(v)
        else:
            try:
                x = PyFloat_AsDouble(v)  # array('d')'s own conversion of an item
            except TypeError:
                return None  # the reference's path raises, naming the key
        values.data.as_doubles[i] = x
    layout = _LAYOUT_OF(names)
    if type(layout) is not _INPUT_LAYOUT:
        return None
    return new_slotted(_INPUTS, (layout, values), _DI_OFF)


cdef inline object _dget(object d, object key, object default):
    """``d.get(key, default)``: an exact dict's entry found without the method call, any other mapping asked."""
    cdef PyObject* found
    if type(d) is dict:
        found = PyDict_GetItemWithError(<dict>d, key)
        if found != NULL:
            return <object>found
        return default
    return d.get(key, default)


cdef inline object _state_ok_key(object name):
    return _suffixed(_STATE_OK_KEYS, name, "_state_ok")


# The decision's per-snapshot keys by their place: the six snapshots' ``*_state_ok`` keys, and the ages' keys in the
# estimators' cache order. A name that is the very object seen at that place the last time has the key found for it
# then (_suffixed's cache never changes a key once made): a pointer test in place of a dict lookup per key.
cdef object _NO_NAME = object()  # an empty place: no name is this object
cdef list _OK_NAMES = [_NO_NAME] * 6, _OK_KEYS = [None] * 6
cdef list _AGE_NAMES = [], _AGE_KEYS = []


cdef inline object _memo_key(list names, list keys, Py_ssize_t i, object name, dict cache, str suffix):
    """``_suffixed(cache, name, suffix)``, remembered at place ``i`` of ``names``/``keys``."""
    if i < PyList_GET_SIZE(names) and <PyObject*>PyList_GET_ITEM(names, i) == <PyObject*>name:
        return <object>PyList_GET_ITEM(keys, i)
    key = _suffixed(cache, name, suffix)
    while PyList_GET_SIZE(names) <= i:
        names.append(_NO_NAME)
        keys.append(None)
    names[i] = name
    keys[i] = key
    return key


cdef inline object _ok_key(Py_ssize_t i, object name):
    """``_state_ok_key(name)`` for the ``i``-th snapshot."""
    return _memo_key(_OK_NAMES, _OK_KEYS, i, name, _STATE_OK_KEYS, "_state_ok")



# The decision's InputPairs, kept for the next decision: once the decision's MarketState (its only other holder) is
# gone, only this reference is left (a refcount of 1), and the pairs are emptied and written again instead of a new
# object made and the old one freed. Anyone still holding it (a quoter that kept the state) keeps it as it is: a new
# one is made then.
cdef InputPairs _SPARE_PAIRS = None


cdef inline InputPairs _pairs():
    global _SPARE_PAIRS
    cdef InputPairs pairs
    if _SPARE_PAIRS is not None and _refcnt(<PyObject*>_SPARE_PAIRS) == 1:  # the module's reference only
        pairs = _SPARE_PAIRS
        pairs.clear()
        return pairs
    pairs = InputPairs()
    _SPARE_PAIRS = pairs
    return pairs


cdef inline object _blank_of(_Layout layout):
    """``object.__new__(layout.cls)``: uncalled when the class does not define ``__new__`` (as ``_frozen``)."""
    if layout is None:
        raise RuntimeError("apps.engine._core: a layout used before _bind()")
    if layout.object_new:
        return PyBaseObject_Type.tp_new(layout.cls, <PyObject*>_NO_ARGS, NULL)
    return _new(layout.cls)


cdef inline int _fset(object obj, _Layout layout, Py_ssize_t i, object value) except -1:
    """Field ``i`` of ``obj`` (made by ``_blank_of(layout)``) set as its dataclass ``__init__`` sets it: in its slot
    by offset, else ``object.__setattr__`` by name (``_frozen``'s two ways, without its tuple of values)."""
    if layout.offsets != NULL:
        slot_set(obj, layout.offsets[i], value)
    else:
        PyObject_GenericSetAttr(obj, <str>PyTuple_GET_ITEM(layout.names, i), value)
    return 0


cdef class StrategyCoreBase:
    """The compiled half of ``core.StrategyCore``; the reference ``PyStrategyCore`` is the other (see the module).
    Its state's slots are declared in ``_core.pxd``."""

    property _now_ns:
        """The latest event time seen (ns), an int64 here: the setter takes integers only (a float would be
        truncated by a plain conversion), so the reference's writes keep the meaning they have there."""

        def __get__(self):
            return self.c_now_ns

        def __set__(self, value):
            self.c_now_ns = _i64(value, "_now_ns")

    property params:
        """The strategy's parameters. A ``StrategyParams`` is frozen, so the per-event path keeps its decision interval
        in ns as a C double, computed here as it computed it at each event; anything else is read at each event."""

        def __get__(self):
            return self.c_params

        def __set__(self, value):
            self.c_params = value
            if type(value) is _STRATEGY_PARAMS:
                self.c_interval_ns = <double>value.decision_interval_s * _NS
                self.c_loss_budget = value.loss_budget
                self.c_session_end_ns = value.session_end_ns
            else:
                self.c_interval_ns = NAN
                self.c_loss_budget = self.c_session_end_ns = None

    property quoter_params:
        """The quoter's parameters. A ``QuoterParams`` is frozen, so the fields the decision and the reconciliation
        read are kept here when it is set (the same objects); anything else is read at each decision."""

        def __get__(self):
            return self.c_quoter_params

        def __set__(self, value):
            self.c_quoter_params = value
            if type(value) is _QUOTER_PARAMS:
                self.c_fill_cost_by_depth = value.fill_cost_by_depth
                self.c_levels = value.levels
                self.c_drift_horizon_s = value.drift_horizon_s
                self.c_requote_ticks = value.requote_ticks
                self.c_max_inventory = value.max_inventory
                self.c_modify_orders = value.modify_orders
            else:
                self.c_fill_cost_by_depth = None

    property _decision_ns:
        """The time of the last computed decision (ns), as ``_now_ns``."""

        def __get__(self):
            return self.c_decision_ns

        def __set__(self, value):
            self.c_decision_ns = _i64(value, "_decision_ns")

    # --- the decision, Python-visible: the reference's on_event (fills, funding, timers) and _decide call these ---

    def _decide_now(self, now_ns, tuple key, tuple snaps):
        return self._c_decide_now(now_ns, key, snaps)

    def _set(self, result):
        self._c_set(result)

    def _reconcile(self, result):
        return self._c_reconcile(result)

    def refresh(self):
        """PyStrategyCore.refresh, with MarketEstimators.refresh_due's two comparisons inline."""
        return self.c_refresh()

    cdef bint c_refresh(self) except -1:
        cdef MarketFields m = <MarketFields?>self.market
        cdef int64_t now = self.c_now_ns
        if now >= m.c_refresh_due_ns or (m.c_kappa_trades_since >= m.c_kappa_trades_n and now >= m.c_kappa_min_due_ns):
            (<object>m).refresh(now)
            return True
        return False

    def on_event(self, event):
        actions = self.c_on_event(event)
        return [] if actions is None else actions

    cdef object c_on_event(self, object event):
        # on_event's list of actions, or None for none (most events: no empty list made and freed each)
        cdef MarketFields f = <MarketFields?>self.market  # its per-event fields as C slots
        cdef int64_t now = self.c_now_ns
        cdef int64_t t
        if now >= f.c_refresh_due_ns or (f.c_kappa_trades_since >= f.c_kappa_trades_n and now >= f.c_kappa_min_due_ns):
            (<object>f).refresh(now)  # left due after the last event (PyStrategyCore.refresh)
        cls = type(event)
        if cls is _BBO:
            return self._on_bbo(event, f)
        if cls is _TRADE or cls is _DEPTH_UPDATE or cls is _DEPTH_SNAPSHOT:
            t = _i64(slot_get(event, _T_TS) if cls is _TRADE and _T_SLOTS else event.ts_local_ns, "ts_local_ns")
            if t > self.c_now_ns:
                self.c_now_ns = t
            self.decisions_changed = False
            if cls is _TRADE:
                _market_trade(f, event, t)
            elif cls is _DEPTH_UPDATE:
                _market_depth_update(f, event, t)
            else:
                (<object>f).on_event(event)
            return None  # state only; the next top-of-book change re-quotes
        if (cls is _ORDER_ACK or cls is _ORDER_REJECT) and _reads_twinned and type(self.tracker) is _TRACKER:
            # PyStrategyCore.on_event of an ack or a reject: the clock, then the tracker's state only
            t = _i64(event.ts_local_ns, "ts_local_ns")
            if t > self.c_now_ns:
                self.c_now_ns = t
            self.decisions_changed = False
            _track_event(self.tracker, event, cls)
            return None
        return _reference_on_event(self, event)

    cdef object _on_bbo(self, object event, MarketFields m):
        # (type(event) is BestBidAsk: on_event)
        cdef int64_t t = _i64(slot_get(event, _B_TS) if _B_SLOTS else event.ts_local_ns, "ts_local_ns")
        if t > self.c_now_ns:
            self.c_now_ns = t
        self.decisions_changed = False
        # MarketEstimators.on_event for a BestBidAsk
        if t > m.c_now_ns:
            m.c_now_ns = t
        if not m.c_first_ns:
            m.c_first_ns = t
        m.c_events_seen += 1
        m._has_bbo_stream = True
        if m.c_step is not None:
            step_on_bbo(m.c_step, event)  # its _on_bbo, the compiled MarketStep's, at C level
        else:
            (<object>m)._on_bbo(event)
        if self.halted:
            return None
        bbo = m.bbo  # the event itself (_on_bbo sets it): never None here
        cdef int64_t now = self.c_now_ns
        # PyStrategyCore._decide: MarketEstimators.cached_snapshots (computed there only at the first read)
        snaps = m._all_snaps
        if snaps is None or (PyTuple_GET_SIZE(snaps) == 0 if type(snaps) is tuple else not snaps):
            snaps = (<object>m).cached_snapshots(now)
        bid = field(bbo, _BBO, _B_BID, "bid_px")
        ask = field(bbo, _BBO, _B_ASK, "ask_px")
        q = field(self.tracker, _TRACKER, _TR_POSITION, "position")
        cdef int64_t version = m.c_version  # compared in C with the key's; a Python int only for a new key
        halted = self.halted
        key = self._decision_key
        if (
            key is not None
            and _same(item(key, 0), bid)
            and _same(item(key, 1), ask)
            and _same(item(key, 2), q)
            and _same_int(item(key, 3), version)
            and _same(item(key, 4), halted)
            and self.last_quote is not None
            and <double>(now - self.c_decision_ns) < (
                self.c_interval_ns if self.c_interval_ns == self.c_interval_ns
                else <double>self.c_params.decision_interval_s * _NS
            )
        ):
            return None  # nothing the decision depends on changed
        result = self._c_decide_now(now, (bid, ask, q, version, halted), snaps)
        actions = self._c_reconcile(result)
        _track_actions(self.tracker, actions)
        return actions

    cdef object _c_decide_now(self, object now_ns, tuple key, tuple snaps):
        """PyStrategyCore._decide_now, step by step (see there)."""
        if not _bound:
            _bind()
        m = self.market
        cdef MarketFields mf = <MarketFields?>m  # the fields it reads, as C slots
        bbo = mf.bbo
        q = key[2]
        k, s, lam, flow, drift, micro = snaps
        self._decision_key = key
        self.c_decision_ns = _i64(now_ns, "_decision_ns")
        self.decisions_computed += 1

        bid_px = field(bbo, _BBO, _B_BID, "bid_px")
        ask_px = field(bbo, _BBO, _B_ASK, "ask_px")
        if type(bbo) is _BBO and type(bid_px) is float and type(ask_px) is float:
            mid = 0.5 * (<double>bid_px + <double>ask_px)  # BestBidAsk.mid, the same operations on doubles
        else:
            mid = bbo.mid
        cdef bint k_ok = _usable(k), s_ok = _usable(s)
        cdef list reasons = None  # made only for a decision that is not quotable (most decisions have none)
        if not k_ok:
            reasons = [f"{k.name} {k.state.value}: {k.message}".rstrip(": ")]
        if not s_ok:
            if reasons is None:
                reasons = []
            reasons.append(f"{s.name} {s.state.value}: {s.message}".rstrip(": "))
        sigma = mf.sigma
        sig_pair = sigma_reads(sigma)  # the compiled SigmaEstimator's two reads in one C call
        if sig_pair is None:
            sig_clean = sigma.sigma_for_spread
            sig_inv = sigma.sigma_for_inventory
        else:
            sig_clean, sig_inv = sig_pair
        # MarketEstimators.mean_trade_size is its float field (read as a C field when the class is exactly that one)
        cdef object mean_size
        if type(m) is _MARKET:
            mean_size = (<MarketFields>m)._mean_trade_size
        else:
            mean_size = m.mean_trade_size
        # the reference's dict, entry by entry in its order, as InputPairs (_quote.pxd): the same keys and values in the
        # same order, without a dict insert each; the quoter reads them as it reads the dict
        cdef InputPairs extra = _pairs()
        pairs_put(extra, "kappa_std", _sf(k, _S_STD, "std"))
        pairs_put(extra, "kappa_ci_low", _sf(k, _S_CI_LOW, "ci_low"))
        pairs_put(extra, "kappa_ci_high", _sf(k, _S_CI_HIGH, "ci_high"))
        pairs_put(extra, "avg_trade_distance_bps", _dget(_sf(k, _S_DETAIL, "detail"), "avg_distance_bps", _nan))
        pairs_put(extra, "sigma_total", _dget(_sf(s, _S_DETAIL, "detail"), "sigma_total", _nan))
        pairs_put(extra, "lambda_per_s", _sf(lam, _S_VALUE, "value"))
        pairs_put(extra, "mean_trade_size", mean_size)
        # MarketEstimators.ages, in its order
        cdef int64_t dt
        cdef Py_ssize_t i
        if not _reads_twinned or type(m) is not _MARKET:
            for name, age in m.ages(now_ns).items():  # extra.update(m.ages(now_ns))
                pairs_put(extra, name, age)
        else:
            i = 0
            for name, c in (<dict>mf._cache).items():  # each a market._Cached: its slots by offset
                key_ = _memo_key(_AGE_NAMES, _AGE_KEYS, i, name, _AGE_KEYS_BY_NAME, "_age_s")  # _age_key(name)
                i += 1
                if field(c, _CACHED, _C_SNAP, "snap") is None:
                    pairs_put(extra, key_, _nan)
                else:
                    at = field(c, _CACHED, _C_AT, "at_ns")
                    dt = to_i64(now_ns) - to_i64(at)
                    if -_TWO53 < <double>dt < _TWO53:  # int / int is the double division of the two exact doubles
                        pairs_put(extra, key_, <double>dt / _NS)
                    else:
                        pairs_put(extra, key_, (now_ns - at) / 1_000_000_000)
        cdef bint lam_ok = _usable(lam), flow_ok = _usable(flow)
        cdef bint drift_ok = _usable(drift), micro_ok = _usable(micro)
        pairs_put(extra, _ok_key(0, _sf(k, _S_NAME, "name")), _F1 if k_ok else _F0)
        pairs_put(extra, _ok_key(1, _sf(s, _S_NAME, "name")), _F1 if s_ok else _F0)
        pairs_put(extra, _ok_key(2, _sf(lam, _S_NAME, "name")), _F1 if lam_ok else _F0)
        pairs_put(extra, _ok_key(3, _sf(flow, _S_NAME, "name")), _F1 if flow_ok else _F0)
        pairs_put(extra, _ok_key(4, _sf(drift, _S_NAME, "name")), _F1 if drift_ok else _F0)
        pairs_put(extra, _ok_key(5, _sf(micro, _S_NAME, "name")), _F1 if micro_ok else _F0)

        qp = self.c_quoter_params
        if reasons is not None:  # (never empty: made with its first reason)
            t_side, t_size, t_price = _RESULT_TAKER_DEFAULTS
            fixed = (
                mid,
                bid_px,
                ask_px,
                q,
                q / qp.max_inventory,
                qp.gamma_base,
                _MODEL_CODES[qp.model],
                qp.horizon_s,
                _sf(k, _S_VALUE, "value"),
                sig_clean,
                sig_inv,
            )
            inputs = _unquoted_record(fixed, extra)
            if inputs is None:  # the reference's dict and DecisionInputs.from_mapping (its errors, its repeated names)
                d = dict(zip(_UNQUOTED_FIXED, fixed))
                d.update(extra.as_dict())
                inputs = _record(d)
                _unquoted_names_from(inputs, extra)
            result = _frozen(_L_RESULT, (
                    now_ns,
                    (),
                    (),
                    inputs,
                    tuple(reasons),
                    t_side,
                    t_size,
                    t_price,
                ),
            )
            self._c_set(result)
            return result

        adv = mf.adverse.snapshot(now_ns)
        adv_value = _sf(adv, _S_VALUE, "value")
        cdef bint adv_ok = _usable(adv)
        adv_detail = _sf(adv, _S_DETAIL, "detail")
        pairs_put(extra, "adverse_selection_measured_bps", adv_value * 1e4)
        pairs_put(extra, "adverse_selection_ci_low_bps", _sf(adv, _S_CI_LOW, "ci_low") * 1e4)
        pairs_put(extra, "adverse_selection_ci_high_bps", _sf(adv, _S_CI_HIGH, "ci_high") * 1e4)
        pairs_put(extra, "adverse_selection_state_ok", _F1 if adv_ok else _F0)
        pairs_put(extra, "adverse_selection_own_markouts", adv_detail["own_markouts"])
        pairs_put(extra, "adverse_selection_public_markouts", adv_detail["public_markouts"])
        curve = None
        curve_ok = False
        cdef bint cached = self.c_fill_cost_by_depth is not None  # qp is a QuoterParams: its fields as read when set
        if (self.c_fill_cost_by_depth if cached else qp.fill_cost_by_depth):
            # MarketEstimators.cached_depth_cost, twinned: the cached snapshot and the curve when it is cached
            snap_d = (
                field(m._c_depth, _CACHED, _C_SNAP, "snap") if _reads_twinned and type(m) is _MARKET else None
            )
            if snap_d is not None:
                depth = snap_d
                curve = mf._depth_curve
            else:
                depth, curve = m.cached_depth_cost(now_ns)
            depth_ok = _usable(depth)
            curve_ok = depth_ok and curve is not None
            d = _sf(depth, _S_DETAIL, "detail")
            pairs_put(extra, "depth_markout_state_ok", _F1 if depth_ok else _F0)
            values = (
                d["events"],
                _sf(depth, _S_VALUE, "value") * 1e4,
                _dget(d, "cost_0.5bps_bps", _nan),
                _dget(d, "cost_1bps_bps", _nan),
                _dget(d, "cost_2bps_bps", _nan),
            )
            for i in range(5):
                pairs_put(extra, _DM_INPUTS[i], values[i])
        else:
            pairs_put(extra, "depth_markout_state_ok", _F0)
            for i in range(5):
                pairs_put(extra, _DM_INPUTS[i], _nan)
        # m.book_signals() when the book has both sides (else {}: no imbalance, no depth near the touch)
        book_ = mf.book
        cdef bint has_book
        if type(book_) is CBook:  # its level counts as C fields
            has_book = (<CBook>book_)._bid.n and (<CBook>book_)._ask.n
        else:
            has_book = book_.n_bid_levels and book_.n_ask_levels
        book_imbalance = 0.0
        depth_near = _nan
        best_bids = best_asks = None  # the book's best levels, read once for the signals and the queues
        n_queue = (self.c_levels if cached else qp.levels) + 5
        if has_book:
            reads = _book_signals(m, book_, mid, n_queue)
            if reads is None:
                book = m.book_signals()
                book_imbalance = book.get("book_imbalance", 0.0)
                depth_near = book.get("depth_near", _nan)
            else:
                book_imbalance, depth_near, best_bids, best_asks = reads
        flow_imb = _sf(flow, _S_VALUE, "value") if flow_ok else 0.0
        features = _risk_features(m, now_ns, k, s, depth_near, flow_imb, k_ok, s_ok)
        tracker = self.tracker
        pnl = field(tracker, _TRACKER, _TR_CASH, "cash") + q * mid
        peak = self._peak_pnl
        if peak is None or pnl > peak:  # max(peak, pnl): the first unless the second is greater
            peak = pnl
        self._peak_pnl = peak
        dd = peak - pnl
        if 0.0 > dd:  # max(dd, 0.0)
            dd = 0.0
        params = self.c_params
        features["drawdown"] = dd / (self.c_loss_budget if type(params) is _STRATEGY_PARAMS else params.loss_budget)
        pairs_put(extra, "pnl", pnl)
        pairs_put(extra, "depth_near", depth_near)
        if type(best_bids) is QueueLevels:  # _book_signals read the compiled book: the queues are its copies already
            bid_queue = best_bids
            ask_queue = best_asks
        elif best_bids is not None:
            bid_queue = _head_dict(best_bids, n_queue)
            ask_queue = _head_dict(best_asks, n_queue)
        elif has_book:
            bid_queue = dict(book_.bids(n_queue))
            ask_queue = dict(book_.asks(n_queue))
        else:
            bid_queue = {bid_px: bbo.bid_size}
            ask_queue = {ask_px: bbo.ask_size}
        drift_horizon_s = self.c_drift_horizon_s if cached else qp.drift_horizon_s
        # the MarketState built field by field, in field order (no tuple of its 30 values made and freed)
        cdef _Layout ls = _L_STATE
        state = _blank_of(ls)
        _fset(state, ls, 0, now_ns)  # ts_ns
        _fset(state, ls, 1, bid_px)  # best_bid
        _fset(state, ls, 2, ask_px)  # best_ask
        _fset(state, ls, 3, _sf(k, _S_VALUE, "value"))  # kappa
        _fset(state, ls, 4, sig_clean)  # sigma_clean
        _fset(state, ls, 5, sig_inv)  # sigma_inventory
        _fset(state, ls, 6, True)  # kappa_ok
        _fset(state, ls, 7, True)  # sigma_ok
        _fset(state, ls, 8, _sf(lam, _S_VALUE, "value") if lam_ok else _nan)  # a_per_s
        _fset(state, ls, 9, mean_size)  # mean_trade_size (read once: nothing in between writes it)
        _fset(state, ls, 10, _sf(drift, _S_VALUE, "value"))  # drift_mean_per_s
        _fset(state, ls, 11, _sf(drift, _S_STD, "std"))  # drift_std_per_s
        _fset(state, ls, 12, _expected_return(mf.drift, drift_horizon_s, now_ns) if drift_ok else 0.0)  # drift_expected_return
        _fset(state, ls, 13, drift_ok)  # drift_ok
        _fset(state, ls, 14, book_imbalance)  # book_imbalance
        _fset(state, ls, 15, flow_imb)  # flow_imbalance
        _fset(state, ls, 16, _sf(micro, _S_VALUE, "value") if micro_ok else 0.0)  # microprice_offset
        _fset(state, ls, 17, micro_ok)  # microprice_ok
        _fset(state, ls, 18, mf.funding_rate)  # funding_rate
        _fset(state, ls, 19, mf.funding_interval_s)  # funding_interval_s
        _fset(state, ls, 20, _dget(features, "flow_toxicity", 0.0))  # flow_toxicity
        _fset(state, ls, 21, adv_value)  # adverse_selection
        _fset(state, ls, 22, adv_ok)  # adverse_selection_ok
        _fset(state, ls, 23, curve)  # fill_cost_curve
        _fset(state, ls, 24, curve_ok)  # fill_cost_curve_ok
        _fset(state, ls, 25, bid_queue)
        _fset(state, ls, 26, ask_queue)
        _fset(state, ls, 27, features)  # risk_features
        _fset(state, ls, 28, int(self.c_session_end_ns if type(params) is _STRATEGY_PARAMS else params.session_end_ns))
        _fset(state, ls, 29, extra)  # extra_inputs
        fn = _core_module.quote  # read at each decision, as the reference reads its module's global
        if fn is _QUOTE_DEF:  # the compiled quoter: its C entry, without the Python call and its keyword arguments
            result = c_quote(qp, self.risk_params, state, q, self.tick_size, self.lot_size)
        else:
            result = fn(qp, self.risk_params, state, q, tick_size=self.tick_size, lot_size=self.lot_size)
        self._c_set(result)
        return result

    cdef int _c_set(self, object result) except -1:
        """PyStrategyCore._set, with QuoteResult.to_decision inlined."""
        if not _bound:
            _bind()
        cdef Py_ssize_t* off = _L_RESULT.offsets
        if off != NULL and type(result) is QuoteResult:  # its fields by slot offset (_RESULT_FIELDS' order)
            ts_ns, bids, asks, inputs, reasons = (
                slot_get(result, off[0]), slot_get(result, off[1]), slot_get(result, off[2]), slot_get(result, off[3]),
                slot_get(result, off[4]),
            )
        else:
            ts_ns, bids, asks, inputs, reasons = result.ts_ns, result.bids, result.asks, result.inputs, result.reasons
        if bids:
            b = bids[0]
            bid_px, bid_size = field(b, _LEVEL, _LV_PRICE, "price"), field(b, _LEVEL, _LV_SIZE, "size")
        else:
            bid_px, bid_size = None, 0.0
        if asks:
            a = asks[0]
            ask_px, ask_size = field(a, _LEVEL, _LV_PRICE, "price"), field(a, _LEVEL, _LV_SIZE, "size")
        else:
            ask_px, ask_size = None, 0.0
        cdef _Layout ld = _L_DECISION
        decision = _blank_of(ld)  # field by field, as _frozen, without its tuple of values
        _fset(decision, ld, 0, ts_ns)
        _fset(decision, ld, 1, bid_px)
        _fset(decision, ld, 2, ask_px)
        _fset(decision, ld, 3, bid_size)
        _fset(decision, ld, 4, ask_size)
        _fset(decision, ld, 5, inputs)
        _fset(decision, ld, 6, reasons)
        prev = self.last_decision
        cdef Py_ssize_t* doff = _L_DECISION.offsets
        cdef bint changed = prev is None or self._force_changed
        if not changed:
            if doff != NULL and type(prev) is _L_DECISION.cls:  # its fields by slot offset (_DECISION_FIELDS' order)
                changed = not (
                    _same(slot_get(prev, doff[1]), bid_px)
                    and _same(slot_get(prev, doff[2]), ask_px)
                    and _same(slot_get(prev, doff[6]), reasons)
                )
            else:
                changed = not (_same(prev.bid_px, bid_px) and _same(prev.ask_px, ask_px) and _same(prev.reasons, reasons))
        if changed:
            self.decisions_changed = True
            self._force_changed = False
        self.last_decision = decision
        self.last_quote = result
        return 0

    cdef list _c_reconcile(self, object result):
        """PyStrategyCore._reconcile (reconcile_side per side, then the taker order)."""
        if not _bound:
            _bind()
        cdef list actions = []
        p = self.c_quoter_params
        tracker = self.tracker
        cdef double tick = self.tick_size
        cdef bint cached = self.c_fill_cost_by_depth is not None  # p is a QuoterParams: its fields as set
        cdef Py_ssize_t requote_ticks = self.c_requote_ticks if cached else p.requote_ticks
        cdef double max_inv = self.c_max_inventory if cached else p.max_inventory
        cdef bint modify = self.c_modify_orders if cached else p.modify_orders
        cdef Py_ssize_t* off = _L_RESULT.offsets
        cdef bint slots = off != NULL and type(result) is QuoteResult  # its fields by slot offset (_RESULT_FIELDS)
        # the reference's loop over ((BUY, result.bids), (SELL, result.asks)): both read first, then each side in turn
        bids = slot_get(result, off[1]) if slots else result.bids
        asks = slot_get(result, off[2]) if slots else result.asks
        self.inventory_guard_skips += self._reconcile_side(
            actions, tracker, _BUY, bids, tick, requote_ticks, max_inv, modify
        )
        self.inventory_guard_skips += self._reconcile_side(
            actions, tracker, _SELL, asks, tick, requote_ticks, max_inv, modify
        )
        taker_side = slot_get(result, off[5]) if slots else result.taker_side
        if taker_side is not None and result.taker_size > 0:
            pending_taker = False
            for o in tracker.open_orders():
                if o.tif.value == "IOC":
                    pending_taker = True
                    break
            if not pending_taker:
                self._seq += 1
                actions.append(
                    _frozen(
                        _L_PLACE,
                        (f"{self.id_prefix}-t{self._seq}", taker_side, result.taker_price, result.taker_size, "IOC"),
                    )
                )
        return actions

    cdef Py_ssize_t _reconcile_side(
        self, list actions, object tracker, object side, object levels, double tick, Py_ssize_t requote_ticks,
        double max_inventory, bint modify_orders
    ) except -1:
        """reconcile_side (apps/engine/execution/reconcile.py) for one side: appends its actions to ``actions`` and
        returns the guard's skips. The targets are the levels' (price, size), best first."""
        cdef list on_side
        if _reads_twinned and type(tracker) is _TRACKER:  # OrderTracker.open_orders_on, its list comprehension over _live in order
            on_side = [
                o for o in (<dict>field(tracker, _TRACKER, _TR_LIVE, "_live")).values()
                if field(o, _ORDER, _O_SIDE, "side") is side
            ]
        else:
            on_side = tracker.open_orders_on(side)
        cdef list free = []
        cdef Py_ssize_t j, n_free, skips = 0
        cdef double threshold, px, size_d, exposure, room
        for o in on_side:
            tif = field(o, _ORDER, _O_TIF, "tif")
            if field(o, _ORDER, _O_STATUS, "status") is not _PENDING_CANCEL and (
                tif is _POST_ONLY or (tif is not _IOC and tif.value == "POST_ONLY")
            ):
                free.append(o)
        for o in free:
            if field(o, _ORDER, _O_STATUS, "status") is _PENDING_NEW:
                return 0
        threshold = (<double>(requote_ticks if requote_ticks > 1 else 1) - _EPS_TICKS) * tick
        cdef list unmatched = []
        for lv in levels:
            price = field(lv, _LEVEL, _LV_PRICE, "price")
            size = field(lv, _LEVEL, _LV_SIZE, "size")
            px = price
            n_free = len(free)
            for j in range(n_free):
                if not (abs(<double>field(free[j], _ORDER, _O_PRICE, "price") - px) >= threshold):  # not needs_requote
                    del free[j]
                    break
            else:
                unmatched.append((price, size))
        cdef double sign = 1.0 if side is _BUY else -1.0
        exposure = 0.0
        for o in on_side:
            exposure += <double>_remaining(o)
        exposure = sign * <double>field(tracker, _TRACKER, _TR_POSITION, "position") + exposure
        room = max_inventory - exposure + _ROOM_SLACK
        for price, size in unmatched:
            if modify_orders and free:
                actions.append(_frozen(_L_MODIFY, (field(free.pop(0), _ORDER, _O_ID, "client_order_id"), price, size)))
            else:
                size_d = size
                if size_d > room:
                    skips += 1
                else:
                    room -= size_d
                    self._seq += 1
                    actions.append(
                        _frozen(_L_PLACE, (f"{self.id_prefix}-{self._seq}", side, price, size, "POST_ONLY"))
                    )
        for o in free:
            actions.append(_frozen(_L_CANCEL, (field(o, _ORDER, _O_ID, "client_order_id"),)))
        return skips

    def risk_state(self):
        """PyStrategyCore.risk_state, the same dict (keys in order, the same objects or the same doubles): the touch's
        mid from its slots, each estimator state from MarketEstimators.peek's cache read directly (peek itself when
        nothing is cached or the estimators are another class) and its ``_value_`` known by identity (_state_value);
        the P&L in C on exact floats (the same double: two roundings, no fused multiply-add on this build's target),
        on the same Python objects otherwise; ``math.isfinite`` as C's isfinite for a float."""
        m = self.market
        exact = type(m) is _MARKET
        bbo = (<MarketFields>m).bbo if exact else m.bbo
        bid = ask = None
        if type(bbo) is _BBO and _B_SLOTS:
            bid = slot_get(bbo, _B_BID)
            ask = slot_get(bbo, _B_ASK)
        if type(bid) is float and type(ask) is float:
            mid = 0.5 * (<double>bid + <double>ask)  # BestBidAsk.mid
        else:
            mid = bbo.mid if bbo else _nan
        cdef bint finite = isfinite(<double>mid) if type(mid) is float else math.isfinite(mid)
        cdef double prod
        tracker = self.tracker
        q = field(tracker, _TRACKER, _TR_POSITION, "position")
        if finite:
            cash = field(tracker, _TRACKER, _TR_CASH, "cash")
            if type(cash) is float and type(q) is float and type(mid) is float:
                prod = <double>q * <double>mid
                pnl = <double>cash + prod
            else:
                pnl = cash + q * mid
        else:
            pnl = _nan
        if exact:
            cache = (<MarketFields>m)._cache
            kappa = field(_item(cache, "kappa"), _CACHED, _C_SNAP, "snap")
            if kappa is None:
                kappa = m.peek("kappa", self._now_ns)
            sigma = field(_item(cache, "sigma"), _CACHED, _C_SNAP, "snap")
            if sigma is None:
                sigma = m.peek("sigma", self._now_ns)
        else:
            kappa = m.peek("kappa", self._now_ns)
            sigma = m.peek("sigma", self._now_ns)
        cdef dict d = dict_presized(5)
        d["mid"] = None if isinstance(mid, float) and not finite else mid
        d["kappa_state"] = _state_value(field(kappa, _SNAPSHOT, _S_STATE, "state"))
        d["sigma_state"] = _state_value(field(sigma, _SNAPSHOT, _S_STATE, "state"))
        d["inventory"] = None if isinstance(q, float) and not isfinite(<double>q) else q
        d["pnl"] = None if isinstance(pnl, float) and not isfinite(<double>pnl) else pnl
        return d


# risk_state's estimator states: EstimatorState's members and their ``_value_`` (what ``.value`` returns), known by
# identity; any other object is asked for its ``_value_``
cdef tuple _ES_MEMBERS = tuple(EstimatorState)
cdef tuple _ES_VALUES = tuple(s._value_ for s in EstimatorState)



cdef inline object _item(object d, str key):
    """``d[key]``: a plain dict's entry found without the subscript's machinery (a missing key raises as ``d[key]``)."""
    cdef PyObject* v
    if type(d) is dict:
        v = PyDict_GetItemWithError(d, key)
        if v != NULL:
            return <object>v
    return d[key]


cdef inline object _state_value(object state):
    """``state._value_``."""
    cdef Py_ssize_t i
    for i in range(PyTuple_GET_SIZE(_ES_MEMBERS)):
        if _ES_MEMBERS[i] is state:
            return _ES_VALUES[i]
    return state._value_


# --- the order tracker's steps for our own events and actions (OrderTracker, apps/engine/execution/orders.py) -------
#
# Twinned as the decision's reads are: while the references' code is the one these were written against
# (_TWINNED_DIGESTS) and the tracker is exactly an OrderTracker, an ack, a reject or a place/cancel action runs here
# with the reference's effects in the reference's order; anything else (a fill, a modify, a cancel-all, an
# unexpected class, a move the order's state machine does not allow) calls the reference's own method.

cdef object _ORDER_ACK = OrderAck
cdef object _ORDER_REJECT = OrderReject
cdef object _PLACE = PlaceOrder
cdef object _CANCEL = CancelOrder
cdef object _OPEN = OrderStatus.OPEN
cdef object _CANCELLED = OrderStatus.CANCELLED
cdef object _PENDING_MODIFY = OrderStatus.PENDING_MODIFY
cdef object _TERMINAL = orders_module._TERMINAL
cdef dict _ALLOWED = orders_module._ALLOWED
cdef object _TIF = TimeInForce
cdef object _SIDE = Side
cdef dict _TIF_BY_VALUE = {m.value: m for m in TimeInForce}

# A new Order built as its dataclass __init__ builds it (not frozen, slotted, no __post_init__, object's __setattr__:
# each field stored in its slot, in field order; the defaults the very objects __init__ stores, fill_ids a new set),
# without the Python-level call with five keyword arguments (~4k instructions). Checked against the class once
# (_order_layout); anything unexpected and the class itself is called.
cdef tuple _ORDER_FIELDS = (
    "client_order_id", "side", "price", "size", "tif", "status", "filled", "fee_paid", "resume_status", "fill_ids",
    "_remaining_of", "_remaining",
)
cdef Py_ssize_t _ORDER_OFF[12]
cdef int _order_direct = -1  # -1: not checked yet; 0: call the class; 1: built here
cdef tuple _ORDER_DEFAULTS = None  # status, filled, fee_paid, resume_status, _remaining_of, _remaining


cdef bint _order_layout() except -1:
    global _order_direct, _ORDER_DEFAULTS
    import dataclasses

    _order_direct = 0
    f = getattr(_ORDER, "__dataclass_fields__", None)
    if (
        f is None
        or tuple(f) != _ORDER_FIELDS
        or hasattr(_ORDER, "__post_init__")
        or _ORDER.__dataclass_params__.frozen
        or _ORDER.__new__ is not object.__new__
        or _ORDER.__setattr__ is not object.__setattr__
        or not slot_offsets(_ORDER, _ORDER_FIELDS, _ORDER_OFF)
    ):
        return False
    for name in _ORDER_FIELDS[:5]:
        if f[name].default_factory is not dataclasses.MISSING or not f[name].init:
            return False
    for name in ("status", "filled", "fee_paid", "resume_status", "_remaining_of", "_remaining"):
        if f[name].default is dataclasses.MISSING or f[name].default_factory is not dataclasses.MISSING:
            return False
    if f["fill_ids"].default_factory is not set or not f["fill_ids"].init:
        return False
    if f["_remaining_of"].init or f["_remaining"].init or not all(f[n].init for n in _ORDER_FIELDS[:10]):
        return False
    _ORDER_DEFAULTS = tuple(
        f[n].default for n in ("status", "filled", "fee_paid", "resume_status", "_remaining_of", "_remaining")
    )
    _order_direct = 1
    return True


cdef object _new_order(object cid, object side, object price, object size, object tif):
    """``Order(client_order_id=cid, side=side, price=price, size=size, tif=tif)``."""
    if _order_direct < 0:
        _order_layout()
    if not _order_direct:
        return _ORDER(client_order_id=cid, side=side, price=price, size=size, tif=tif)
    cdef object o = PyBaseObject_Type.tp_new(_ORDER, <PyObject*>_NO_ARGS, NULL)
    cdef tuple d = _ORDER_DEFAULTS
    slot_set(o, _ORDER_OFF[0], cid)
    slot_set(o, _ORDER_OFF[1], side)
    slot_set(o, _ORDER_OFF[2], price)
    slot_set(o, _ORDER_OFF[3], size)
    slot_set(o, _ORDER_OFF[4], tif)
    slot_set(o, _ORDER_OFF[5], <object>PyTuple_GET_ITEM(d, 0))
    slot_set(o, _ORDER_OFF[6], <object>PyTuple_GET_ITEM(d, 1))
    slot_set(o, _ORDER_OFF[7], <object>PyTuple_GET_ITEM(d, 2))
    slot_set(o, _ORDER_OFF[8], <object>PyTuple_GET_ITEM(d, 3))
    slot_set(o, _ORDER_OFF[9], set())
    slot_set(o, _ORDER_OFF[10], <object>PyTuple_GET_ITEM(d, 4))
    slot_set(o, _ORDER_OFF[11], <object>PyTuple_GET_ITEM(d, 5))
    return o


def _order_for_test(cid, side, price, size, tif):
    """``_new_order``, for the tests."""
    return _new_order(cid, side, price, size, tif)


cdef int _transition(object order, object new) except -1:
    """``order.transition(new)``: the allowed move of an exact Order here, anything else by the method itself."""
    if type(order) is not _ORDER:
        order.transition(new)
        return 0
    status = order.status
    allowed = _ALLOWED.get(status)
    if allowed is None or new not in allowed:
        order.transition(new)  # the reference's IllegalTransitionError
        return 0
    if new is _PENDING_CANCEL or new is _PENDING_MODIFY:
        if status is not _PENDING_CANCEL and status is not _PENDING_MODIFY:
            order.resume_status = status
    else:
        order.resume_status = None
    order.status = new
    return 0


cdef object _track_event(object tracker, object ev, object cls):
    """``tracker.on_event(ev)`` for an OrderAck or an OrderReject (``cls``, its exact class): True when it changed
    the tracker's state."""
    cid = ev.client_order_id
    # _apply
    order = (<dict?>tracker._orders).get(cid)
    if order is None:
        tracker.stats.unknown_order_events += 1
        changed = False
    elif cls is _ORDER_REJECT:
        tracker.stats.rejects += 1
        changed = tracker._on_reject(order)
    else:
        changed = _track_ack(tracker, order, ev, cid)
    live = <dict?>tracker._live
    order = live.get(cid)
    if order is not None and order.status in _TERMINAL:
        del live[cid]
        tracker._retire(cid)
    return changed


cdef object _track_ack(object tracker, object order, object ack, object cid):
    # OrderTracker._on_ack; a "modified" ack (or any other) is the reference's
    if order.status in _TERMINAL:
        return False
    status = ack.status
    if status == "open":
        if ack.price > 0:
            order.price = ack.price
        if ack.size > 0:
            order.size = ack.size  # total accepted size, after lot rounding
        if order.status is _PENDING_NEW:
            _transition(order, _OPEN)
        elif order.resume_status is _PENDING_NEW:
            order.resume_status = _OPEN
        return True
    if status == "cancelled":
        _transition(order, _CANCELLED)
        tracker._pending_modify.pop(cid, None)
        return True
    return tracker._on_ack(order, ack)


cdef int _track_actions(object tracker, object actions) except -1:
    """``tracker.on_actions(actions)``."""
    if not actions:
        return 0
    if not (_reads_twinned and type(tracker) is _TRACKER and type(actions) is list):
        tracker.on_actions(actions)
        return 0
    for action in <list>actions:
        cls = type(action)
        if cls is _PLACE:
            _track_place(tracker, action)
        elif cls is _CANCEL:
            order = (<dict?>tracker._orders).get(action.client_order_id)
            if order is not None and order.status not in _TERMINAL and order.status is not _PENDING_CANCEL:
                _transition(order, _PENDING_CANCEL)
        else:
            tracker.on_action(action)
    return 0


def track_event(tracker, ev):
    """The core's step for an ack or a reject (``OrderTracker.on_event`` twinned), for the tests: the reference's
    method where the twin stands down."""
    if not _bound:
        _bind()
    cls = type(ev)
    if (cls is _ORDER_ACK or cls is _ORDER_REJECT) and _reads_twinned and type(tracker) is _TRACKER:
        return _track_event(tracker, ev, cls)
    return tracker.on_event(ev)


def track_actions(tracker, actions):
    """The core's step for the actions it sends (``OrderTracker.on_actions`` twinned), for the tests."""
    if not _bound:
        _bind()
    _track_actions(tracker, actions)


cdef int _track_place(object tracker, object action) except -1:
    # OrderTracker.on_action of a PlaceOrder
    cdef dict orders = <dict?>tracker._orders
    cid = action.client_order_id
    if cid in orders:
        tracker.on_action(action)  # the reference's "already used" error
        return 0
    side = action.side
    if type(side) is not _SIDE:
        side = _SIDE(side)
    price = action.price
    price = price if type(price) is float else float(price)
    size = action.size
    size = size if type(size) is float else float(size)
    tif = action.tif
    tif = _TIF_BY_VALUE.get((<str>tif).upper()) if type(tif) is str else None
    if tif is None:
        tif = _TIF.parse(action.tif)
    order = _new_order(cid, side, price, size, tif)
    orders[order.client_order_id] = order
    (<dict?>tracker._live)[order.client_order_id] = order
    return 0


cdef inline int64_t _i64(object value, str name) except? -1:
    """An integer time of StrategyCore's as int64 (apps/engine/_slots.pxd: strict_int64)."""
    return strict_int64(value, "StrategyCore", name, " of ns")


cdef inline bint _same_int(object a, int64_t b) except -1:
    """``_same(a, b)`` for an int64 ``b``: in C when ``a`` is an exact int within int64 (equal values; an int object is
    never identical to a new one unless equal), as Python compares them otherwise."""
    cdef int overflow = 0
    cdef long long x
    cdef int64_t y
    if type(a) is int:
        if fast_i64(a, &y):  # read in place (_slots.pxd)
            return y == b
        x = PyLong_AsLongLongAndOverflow(a, &overflow)
        if overflow == 0:
            return x == b
    return a == b


cdef inline bint _same(object a, object b) except -1:
    """One item of a tuple ``==``: identity first, then ``==`` (as tuple comparison does); two exact floats compared as
    their doubles, as float's own ``==`` compares them."""
    if a is b:
        return True
    if type(a) is float and type(b) is float:
        return PyFloat_AS_DOUBLE(a) == PyFloat_AS_DOUBLE(b)
    return a == b


cdef inline void _market_stamp(MarketFields m, int64_t ts) noexcept:
    """MarketEstimators.on_event's bookkeeping for every market event: the clock, the first event's time, the count."""
    if ts > m.c_now_ns:
        m.c_now_ns = ts
    if not m.c_first_ns:
        m.c_first_ns = ts
    m.c_events_seen += 1


cdef int _market_depth_update(MarketFields m, object ev, int64_t ts) except -1:
    """MarketEstimators.on_event for a DepthUpdate (its refresh check is the core's own, made just before with a time
    at least the market's: on_event), without the Python frame around the book's compiled apply_update."""
    _market_stamp(m, ts)
    book = m.book
    try:
        if type(book) is CBook:  # the compiled book's apply_update at C level (no Python method call)
            (<CBook>book).apply_update(ev)
        else:
            book.apply_update(ev)
    except _EventError:
        (<object>m).book_errors += 1
    return 0


cdef int _market_trade(MarketFields m, object ev, int64_t ts) except -1:
    """MarketEstimators.on_event for a Trade."""
    _market_stamp(m, ts)
    if (slot_get(ev, _T_MARKET) if _T_SLOTS else ev.market):  # (type(ev) is Trade: on_event)
        if m.c_step is not None:
            step_on_trade(m.c_step, ev)  # its _on_trade, the compiled MarketStep's, at C level
        else:
            (<object>m)._on_trade(ev)
    else:
        m.c_non_market_trades += 1  # not order flow a quote meets: no κ, flow, arrival, Hawkes, σ volume
    return 0


# --- the estimators' reads of a decision, step by step (each next to the reference it twins) -----------------------


cdef inline object _pylog(double x):
    """``math.log(x)`` of a float: C's ``log`` where Python's is C's (x > 0, +inf included), else Python's own (its
    NaN, its ValueError)."""
    if x > 0.0:
        return log(x)
    return _math_log(x)


cdef bint _head_sum(list levels, Py_ssize_t n, double* out) except -1:
    """``sum(s for _, s in levels[:n])`` as CPython 3.11 adds floats (0 + the first, then one ``+=`` each, left to
    right); False, and nothing written, when a level is not a ``(price, size)`` tuple with a float size."""
    cdef double acc = 0.0
    cdef Py_ssize_t i, m = len(levels)
    if n < m:
        m = n
    for i in range(m):
        lv = levels[i]
        if type(lv) is not tuple or len(<tuple>lv) != 2:
            return False
        size = (<tuple>lv)[1]
        if type(size) is not float:
            return False
        acc += <double>size
    out[0] = acc
    return True


cdef dict _head_dict(list levels, Py_ssize_t n):
    """``dict(levels[:n])`` (the levels are ``(price, size)`` pairs, best first), sized for them up front."""
    cdef Py_ssize_t i, m = len(levels)
    if n < m:
        m = n
    cdef dict d = dict_presized(m)
    for i in range(m):
        price, size = levels[i]
        d[price] = size
    return d


cdef tuple _book_signals(object m, object book, object mid, object n_queue):
    """MarketEstimators.book_signals (apps/engine/estimators/market.py) for a decision, whose book has both sides:
    ``(book_imbalance, depth_near, bids, asks)``, with ``bids``/``asks`` the book's best ``max(imbalance_levels,
    n_queue)`` levels, which the decision's queues (its first ``n_queue``) read too (``book.bids(n)[:j]`` is
    ``book.bids(j)``); from the compiled book, ``bids``/``asks`` are already the queues, as ``QueueLevels`` (``OrderBook.queue``:
    the mapping ``dict(book.bids(n_queue))`` would be, a copy of the levels without a float hashed per level).
    ``book_levels``, the reference's third key, is not read by the decision. ``mid`` is the
    decision's ``bbo.mid`` (the reference's ``self.bbo.mid``: the decision has a touch). None where the reference must
    run (not twinned, or a level that is not a pair of floats)."""
    if not _reads_twinned or type(m) is not _MARKET:
        return None
    cfg = (<MarketFields>m).config
    n_imb = field(cfg, _CONFIG, _CF_IMB, "imbalance_levels")
    if type(n_imb) is not int or type(n_queue) is not int or n_imb < 1 or n_queue < 1:
        return None
    cdef double b, a, tot
    if type(book) is CBook:
        # the compiled book at C level: the queues' dicts and the imbalance sums straight from its levels (the same
        # floats, dicts and sums as the lists below give), returned in the lists' place
        bids = (<CBook>book).queue(True, n_queue, n_imb, &b)
        asks = (<CBook>book).queue(False, n_queue, n_imb, &a)
    else:
        n = n_imb if n_imb > n_queue else n_queue
        bids = book.bids(n)
        asks = book.asks(n)
        if type(bids) is not list or type(asks) is not list:
            return None
        if not _head_sum(bids, n_imb, &b) or not _head_sum(asks, n_imb, &a):
            return None
    tot = b + a
    imb = (b - a) / tot if tot > 0 else 0.0
    near = _nan
    if mid:
        if type(book) is CBook:
            near = (<CBook>book).size_within(mid, field(cfg, _CONFIG, _CF_NEAR, "near_touch_bps") * 1e-4)
        else:
            near = book.size_within(mid, field(cfg, _CONFIG, _CF_NEAR, "near_touch_bps") * 1e-4)
    return (imb, near, bids, asks)


cdef dict _risk_features(
    object m, object now_ns, object k, object s, object depth_near, object flow_imb, bint k_ok, bint s_ok
):
    """MarketEstimators.risk_features (apps/engine/estimators/market.py), step by step, with its side effects on
    ``m`` (``_ref_t_ns``, ``_sigma_ref``, ``_depth_ref``) and the Hawkes intensity read as PyHawkesIntensity.intensity
    computes it. ``k_ok``/``s_ok`` are ``k.usable``/``s.usable``. Every check that could send it elsewhere comes
    before the first write; where the twin would need a case the recordings never take, the reference runs: the
    fill-cascade term (FillCascade calibrated, state OK: nothing in the engine calibrates it), a Hawkes intensity
    of another class, a value that is not a float."""
    if (
        not _reads_twinned
        or type(m) is not _MARKET
        or type(now_ns) is not int
        or type(depth_near) is not float
        or type(flow_imb) is not float
        or (<MarketFields>m).fill_cascade._state is _OK
    ):
        return m.risk_features(now_ns, k, s, depth_near, flow_imb)
    cdef MarketFields mf = <MarketFields>m  # exactly MarketEstimators (checked above): its fields as C slots
    ref_t = mf._ref_t_ns
    sigma_ref = mf._sigma_ref
    depth_ref = mf._depth_ref
    clean = _dget(_sf(s, _S_DETAIL, "detail"), "sigma_clean", _nan)
    kv = _sf(k, _S_VALUE, "value")
    ks = _sf(k, _S_STD, "std")
    sv = _sf(s, _S_VALUE, "value")
    ss = _sf(s, _S_STD, "std")
    if (
        type(ref_t) is not int
        or type(sigma_ref) is not float
        or type(depth_ref) is not float
        or type(clean) is not float
        or type(kv) is not float
        or type(ks) is not float
        or type(sv) is not float
        or type(ss) is not float
    ):
        return m.risk_features(now_ns, k, s, depth_near, flow_imb)
    # the Hawkes term's inputs (reads only): hawkes_fit.ok and n_events as the reference's condition reads them
    cdef bint use_hawkes = False
    cdef double mu = 0.0, alpha = 0.0, beta = 0.0, h_s = 0.0
    fit = mf.hawkes_fit
    h = mf.hawkes
    cdef tuple hr
    if fit is not None and (field(fit, _HAWKES_FIT, _HF_STATE, "state") is _OK if type(fit) is _HAWKES_FIT else fit.ok):
        hr = hawkes_reads(h)  # the compiled intensity's fields in one C call (None: read by name)
        if hr[0] if hr is not None else h.n_events:
            if hr is None:
                if type(h) is not _HAWKES_PY:
                    return m.risk_features(now_ns, k, s, depth_near, flow_imb)
                p, h_s, last = h.params, h._s, h.last_event_ns
            else:
                p, h_s, last = hr[1], hr[2], hr[3]
            mu = field(p, _HAWKES_PARAMS, _HP_MU, "mu_per_s")
            alpha = field(p, _HAWKES_PARAMS, _HP_ALPHA, "alpha_per_s")
            beta = field(p, _HAWKES_PARAMS, _HP_BETA, "beta_per_s")
            if type(last) is not int or not (mu > 0.0):
                return m.risk_features(now_ns, k, s, depth_near, flow_imb)
            use_hawkes = True

    # dt_s = (now_ns - self._ref_t_ns) / _NS if self._ref_t_ns else 0.0
    cdef double dt_s = 0.0, w = 0.0, x, ratio, total
    cdef int64_t dt
    if ref_t:
        dt = to_i64(now_ns) - to_i64(ref_t)
        if -_TWO53 < <double>dt < _TWO53:  # int / int: the double division of the two exact doubles
            dt_s = <double>dt / _NS
        else:
            dt_s = (now_ns - ref_t) / 1_000_000_000
    # w = 1.0 - 0.5 ** (dt_s / half-life) if dt_s > 0 else 0.0
    if dt_s > 0:
        w = 1.0 - pypow(0.5, dt_s / <double>field(mf.config, _CONFIG, _CF_HALF_LIFE, "reference_half_life_s"))
    mf._ref_t_ns = now_ns
    # room for its five keys and the decision's "drawdown" up front: the dict {} grows into on the sixth, without
    # the resize on the way (the same keys, order and values)
    cdef dict out = dict_presized(6)
    cdef double c, r
    if s_ok and <double>clean > 0:
        c = clean
        r = sigma_ref
        if r != r:
            mf._sigma_ref = clean
            r = c
        else:
            r = r + w * (c - r)
            mf._sigma_ref = r
        out["volatility_regime"] = _pylog(c / r)
    cdef double d = depth_near
    if d == d and d > 0:
        r = depth_ref
        if r != r:
            mf._depth_ref = depth_near
            r = d
        else:
            r = r + w * (d - r)
            mf._depth_ref = r
        out["thin_book"] = _pylog(r / d)
    # min(abs(flow_imb), 1.0): the first unless the second is smaller
    x = fabs(<double>flow_imb)
    out["flow_toxicity"] = 1.0 if 1.0 < x else x
    cascade = 0.0
    cdef int64_t t
    if use_hawkes:
        # lam = self.hawkes.intensity(max(now_ns, last_event_ns)): mu + alpha * (exp(-beta * dt_s) * S)
        t = to_i64(now_ns)
        if to_i64(last) > t:
            t = to_i64(last)
        dt = t - to_i64(last)
        if <double>dt < _TWO53:
            x = <double>dt / _NS
        else:
            x = (t - last) / 1_000_000_000
        ratio = (mu + alpha * (exp(-beta * x) * h_s)) / mu
        cascade = _pylog(ratio)
        if 0.0 > <double>cascade:  # max(cascade, 0.0)
            cascade = 0.0
    out["cascade_intensity"] = cascade
    # sqrt(sum(r * r for r in rel if isfinite(r))), rel = [k.std / k.value, s.std / s.value] where usable and > 0
    total = 0.0
    if k_ok and <double>kv > 0:
        r = <double>ks / <double>kv
        if isfinite(r):
            total += r * r
    if s_ok and <double>sv > 0:
        r = <double>ss / <double>sv
        if isfinite(r):
            total += r * r
    out["estimator_uncertainty"] = sqrt(total)
    return out


cdef object _expected_return(object drift, object horizon_s, object now_ns):
    """KalmanDrift.expected_return (apps/engine/estimators/drift.py) with its predict, _dt_s and ou_transition, step by
    step: the predicted mean ``a * m`` (the variance, which it does not read and which cannot raise for a finite
    θ > 0, is left out) times ``-expm1(-θT) / θ``. The reference runs where a check or an exception could differ:
    not twinned, another class, a horizon that is not a finite positive float, time going backwards, θ not a finite
    positive float."""
    if not _reads_twinned or type(drift) is not _DRIFT or type(now_ns) is not int or type(horizon_s) is not float:
        return drift.expected_return(horizon_s, now_ns)
    cdef double h = horizon_s
    theta = drift._theta
    mean = drift._m
    last = drift._last_ns
    if (
        not (isfinite(h) and h > 0.0)  # validation.positive's test
        or type(theta) is not float
        or type(mean) is not float
        or not (isfinite(<double>theta) and <double>theta > 0.0)
        or (last is not None and type(last) is not int)
    ):
        return drift.expected_return(horizon_s, now_ns)
    cdef double th = theta, dt_s = 0.0
    cdef int64_t dt
    if last is not None:
        dt = to_i64(now_ns) - to_i64(last)
        if dt < 0:  # time went backwards: the reference's ValueError
            return drift.expected_return(horizon_s, now_ns)
        if <double>dt < _TWO53:  # int / int: the double division of the two exact doubles
            dt_s = <double>dt / _NS
        else:
            dt_s = (now_ns - last) / 1_000_000_000
    cdef double a = exp(-th * dt_s)
    return (a * <double>mean) * -expm1(-th * h) / th
