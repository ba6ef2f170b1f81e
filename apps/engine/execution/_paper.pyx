# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
# distutils: language = c++
"""Compiled per-event path of the paper venue: the same behaviour as the reference ``PyPaperVenue`` in
:mod:`apps.engine.execution.paper`, which stays the readable version of every rule.

Design. ``PaperVenueBase`` is a compiled base class that holds the venue's state in typed slots and overrides only
the methods a market event or one of our actions runs through: ``on_market`` (dispatch), ``_after_book_change``
(every resting order against the changed book), ``_on_trade`` and ``_resting_on`` (our orders a trade reaches),
``_drain`` and ``next_event_ns`` (the in-flight heaps), and the order path: ``submit`` (the local checks and rounding
for the exact ``PlaceOrder``, ``CancelOrder`` and ``CancelAll``), ``advance`` and ``_process_arrivals`` (a place or a
cancel reaching the matching engine), ``_join_queue``, and the events we see (``_ack``, ``_reject``, ``_fill``).
:mod:`apps.engine.execution.paper` builds the venue the engine uses as ``class PaperVenue(PaperVenueBase,
PyPaperVenue)``: everything else (a modify's checks and arrival, the ``Order`` state machine's transitions and fills,
cancel-all-now, the account side) is the reference's own Python, called from here.

The order path's events (``OrderAck``, ``OrderReject``, ``Fill``) and the rounded ``PlaceOrder`` are built in their
slots, as their generated ``__init__`` stores them, when their times are ints in [0, 2**63) (what their time check
accepts unchanged); ``ticks_to_price`` and ``round_size`` (whose ``round()`` with digits costs ~3k instructions) are
remembered per tick and per float size for the venue's config. On this path the queue an order joins is always the
compiled ``QueueState``.

A resting order is a ``Resting`` (the reference's ``_Resting`` with typed fields and its side cached as a flag), so
the loop over resting orders reads the tick, the crossed size and the queue from C fields and asks the compiled
level book (``_fillmodel.pxd``) at C level: a book ticker that touches none of our orders makes no Python call per
resting order and allocates nothing per resting order. When the level book or a queue state is the pure-Python
one (the fill model's own equivalence test swaps them), each overridden method hands the whole call to the
reference (``super()``), so the venue still runs, exactly as the reference.

Floats: ``crossed`` and the crossing sizes are the same doubles (the level book adds them in the reference's order);
where the reference keeps the int ``0`` for "no crossing level" this keeps ``0.0``, which every use (a subtraction
from or of another size, a comparison with 0) treats identically.
"""

cimport cython
from libc.math cimport ceil, fabs, floor, isfinite

from cpython.dict cimport PyDict_GetItem, PyDict_Next
from cpython.float cimport PyFloat_AS_DOUBLE, PyFloat_FromDouble
from cpython.set cimport PySet_Contains
from cpython.long cimport PyLong_AsLongLongAndOverflow, PyLong_CheckExact
from cpython.ref cimport PyObject
from cpython.tuple cimport PyTuple_GET_ITEM, PyTuple_GET_SIZE

from apps.engine._slots cimport new_slotted, slot_get, slot_offset, slot_offsets, slot_set
from apps.engine.execution._fillmodel cimport LevelBook, QueueState, _whole_fill, tick_t

import heapq

from apps.engine.execution._fillmodel import queue_after_trade
from apps.engine.execution.latency import ConstantLatency
from apps.engine.execution import orders as _orders_module
from apps.engine.execution.orders import GRID_EPS, Order, OrderStatus, TimeInForce, round_size, ticks_to_price
from apps.engine.market.events import (
    OPPOSITE,
    BestBidAsk,
    CancelAll,
    CancelOrder,
    DepthSnapshot,
    DepthUpdate,
    Fill,
    ModifyOrder,
    OrderAck,
    OrderReject,
    PlaceOrder,
    Side,
    Trade,
)

# the event classes tested per event, as C globals (a module-global name is a dict lookup and a reference each time)
cdef object _BBO_CLS = BestBidAsk
cdef object _DIFF_CLS = DepthUpdate
cdef object _TRADE_CLS = Trade
cdef object _FILL_CLS = Fill

# BestBidAsk's slots (-1: not a plain slot, read by name)
cdef Py_ssize_t _B_TS = slot_offset(BestBidAsk, "ts_local_ns"), _B_BID = slot_offset(BestBidAsk, "bid_px")
cdef Py_ssize_t _B_BSZ = slot_offset(BestBidAsk, "bid_size"), _B_ASK = slot_offset(BestBidAsk, "ask_px")
cdef Py_ssize_t _B_ASZ = slot_offset(BestBidAsk, "ask_size")
cdef bint _BBO_SLOTS = min(_B_TS, _B_BID, _B_BSZ, _B_ASK, _B_ASZ) >= 0
# DepthUpdate's and Trade's, likewise
cdef Py_ssize_t _D_TS = slot_offset(DepthUpdate, "ts_local_ns"), _D_BIDS = slot_offset(DepthUpdate, "bids")
cdef Py_ssize_t _D_ASKS = slot_offset(DepthUpdate, "asks")
cdef bint _DEPTH_SLOTS = min(_D_TS, _D_BIDS, _D_ASKS) >= 0
cdef Py_ssize_t _T_TS = slot_offset(Trade, "ts_local_ns"), _T_PX = slot_offset(Trade, "price")
cdef Py_ssize_t _T_SZ = slot_offset(Trade, "size"), _T_AGG = slot_offset(Trade, "aggressor")
cdef Py_ssize_t _T_MARKET = slot_offset(Trade, "market")
cdef bint _TRADE_SLOTS = min(_T_TS, _T_PX, _T_SZ, _T_AGG, _T_MARKET) >= 0

cdef extern from "Python.h":
    Py_ssize_t PyDict_GET_SIZE(object d)


cdef extern from *:
    """
    #define mm_slot_raw(o, off) (*(PyObject**)((char*)(o) + (off)))
    /* the attribute ``name`` as ``cls``'s MRO holds it (borrowed; NULL when no class defines it; sets no error) */
    static inline PyObject* mm_type_lookup(PyObject* cls, PyObject* name) {
        return _PyType_Lookup((PyTypeObject*)cls, name);
    }
    """
    PyObject* _type_lookup "mm_type_lookup" (object cls, object name) noexcept
    PyObject* _slot_raw "mm_slot_raw" (object obj, Py_ssize_t offset) noexcept  # a slot's object or NULL, borrowed


cdef extern from *:
    """
    /* A dict's version tag (PEP 509; CPython 3.11 bumps it on every change of the dict and gives every new dict a new
       one, from one counter): the resting orders' walk keeps the values it read with it. 3.11's layout only:
       elsewhere the walk reads the dict every time. */
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

cdef object _BUY = Side.BUY
# c_on_market's answer when none of our events is visible (most market events): no list to build (the driver only
# tests it; on_market turns it into a new empty list)
cdef tuple _NO_EVENTS = ()
cdef object _SELL = Side.SELL

# --- our actions and the events they produce (submit, arrivals, acks, rejects, fills) -----------------------------
cdef object _PLACE = PlaceOrder
cdef object _CANCEL = CancelOrder
cdef object _CANCEL_ALL = CancelAll
cdef object _ORDER = Order
cdef object _CONSTANT = ConstantLatency
cdef object _TIF = TimeInForce
cdef dict _TIF_BY_VALUE = {m.value: m for m in TimeInForce}  # TimeInForce(value)'s lookup, for a str value
cdef object _POST_ONLY = TimeInForce.POST_ONLY
cdef object _IOC = TimeInForce.IOC
cdef object _OPEN = OrderStatus.OPEN
cdef object _FILLED = OrderStatus.FILLED
cdef object _CANCELLED = OrderStatus.CANCELLED
cdef object _REJECTED = OrderStatus.REJECTED
cdef double _GRID_EPS = GRID_EPS

cdef Py_ssize_t _MEMO_MAX = 4096  # entries kept in each rounding memo before it starts over

# The frozen, slotted events and the rounded PlaceOrder are built field by field in their slots, as their generated
# __init__ stores them (object.__setattr__ per field), without the Python-level call. The events' __post_init__ only
# checks the two times (events._check_times): it changes nothing for an int in [0, 2**63), so those are built this
# way; any other time takes the class's own constructor and its check. A class whose fields are not exactly these
# plain slots is always built by its constructor.
cdef tuple _ACK_FIELDS = ("ts_exch_ns", "ts_local_ns", "client_order_id", "status", "price", "size")
cdef tuple _REJECT_FIELDS = ("ts_exch_ns", "ts_local_ns", "client_order_id", "reason")
cdef tuple _FILL_FIELDS = (
    "ts_exch_ns", "ts_local_ns", "client_order_id", "fill_id", "side", "price", "size", "fee", "liquidity", "remaining"
)
cdef tuple _PLACE_FIELDS = ("client_order_id", "side", "price", "size", "tif")
cdef Py_ssize_t _ACK_OFF[6]
cdef Py_ssize_t _REJECT_OFF[4]
cdef Py_ssize_t _FILL_OFF[10]
cdef Py_ssize_t _PLACE_OFF[5]


cdef bint _plain(object cls, tuple names, Py_ssize_t* offsets) except -1:
    return tuple(cls.__dataclass_fields__) == names and slot_offsets(cls, names, offsets)


cdef bint _ACK_SLOTS = _plain(OrderAck, _ACK_FIELDS, _ACK_OFF)
cdef bint _REJECT_SLOTS = _plain(OrderReject, _REJECT_FIELDS, _REJECT_OFF)
cdef bint _FILL_SLOTS = _plain(Fill, _FILL_FIELDS, _FILL_OFF)
cdef bint _PLACE_SLOTS = _plain(PlaceOrder, _PLACE_FIELDS, _PLACE_OFF) and not hasattr(PlaceOrder, "__post_init__")


# --- the venue's Order records (apps/engine/execution/orders.py is the reference) ---------------------------------
# The venue builds an Order per arriving place, moves it to open / rejected / cancelled and reads its remaining size,
# ~1,400 orders a backtest, each of those a Python call (3-4k instructions). For an exact Order whose methods are the
# reference's (looked up on the class every time: a test may patch them), the same stores are done here by slot
# offset; anything else (a subclass, a patched method, a transition the table refuses, a status that is not an exact
# OrderStatus) calls the reference, which does the same or raises its own error.
cdef tuple _ORDER_FIELDS = (
    "client_order_id", "side", "price", "size", "tif", "status", "filled", "fee_paid", "resume_status", "fill_ids",
    "_remaining_of", "_remaining",
)
cdef Py_ssize_t _ORDER_OFF[12]
cdef bint _ORDER_SLOTS = _plain(Order, _ORDER_FIELDS, _ORDER_OFF) and not hasattr(Order, "__post_init__")
cdef object _ORDER_INIT = Order.__dict__["__init__"]
cdef object _ORDER_TRANSITION = Order.__dict__["transition"]
cdef object _ORDER_REMAINING = Order.__dict__["remaining"]
cdef object _STATUS = OrderStatus
cdef object _ZERO = 0.0  # max(0.0, x)'s first argument
cdef object _PENDING_NEW = OrderStatus.PENDING_NEW
cdef object _PENDING_CANCEL = OrderStatus.PENDING_CANCEL
cdef object _PENDING_MODIFY = OrderStatus.PENDING_MODIFY
cdef dict _ORDERS_GLOBALS = _orders_module.__dict__  # what Order.transition reads: can_transition, _ALLOWED
cdef object _CAN_TRANSITION = _orders_module.can_transition
cdef object _ALLOWED = _orders_module._ALLOWED


cdef inline bint _order_defaults() except -1:
    # Order's defaults as its generated __init__ stores them: status, filled, fee_paid, resume_status, fill_ids
    # (a new set), _remaining_of, _remaining (init=False, with defaults)
    f = Order.__dataclass_fields__
    return (
        f["status"].default is _PENDING_NEW and f["filled"].default == 0.0 and type(f["filled"].default) is float
        and f["fee_paid"].default == 0.0 and type(f["fee_paid"].default) is float and f["resume_status"].default is None
        and f["fill_ids"].default_factory is set and f["_remaining_of"].default is None
        and f["_remaining"].default == 0.0 and type(f["_remaining"].default) is float
    )


cdef bint _ORDER_NEW = _ORDER_SLOTS and _order_defaults()
cdef object _ORDER_FILLED0 = Order.__dataclass_fields__["filled"].default
cdef object _ORDER_FEE0 = Order.__dataclass_fields__["fee_paid"].default
cdef object _ORDER_REMAINING0 = Order.__dataclass_fields__["_remaining"].default


cdef object _new_order(object cid, object side, object price, object size, object tif):
    """``Order(cid, side, price, size, tif=tif)``: the dataclass __init__'s stores, without the Python call, while
    ``Order.__init__`` is the generated one."""
    if _ORDER_NEW and _type_lookup(_ORDER, "__init__") == <PyObject*>_ORDER_INIT:
        return new_slotted(
            _ORDER,
            (cid, side, price, size, tif, _PENDING_NEW, _ORDER_FILLED0, _ORDER_FEE0, None, set(), None,
             _ORDER_REMAINING0),
            _ORDER_OFF,
        )
    return _ORDER(cid, side, price, size, tif=tif)


cdef int _transition(object order, object new) except -1:
    """``order.transition(new)`` (orders.Order.transition): allowed by the table, the resume status kept or cleared,
    the status set. ``new`` is one of the module's OrderStatus members (the venue's constants)."""
    cdef PyObject* allowed
    if (
        _ORDER_SLOTS
        and type(order) is _ORDER
        and type(new) is _STATUS
        and _type_lookup(_ORDER, "transition") == <PyObject*>_ORDER_TRANSITION
        and PyDict_GetItem(_ORDERS_GLOBALS, "can_transition") == <PyObject*>_CAN_TRANSITION
        and PyDict_GetItem(_ORDERS_GLOBALS, "_ALLOWED") == <PyObject*>_ALLOWED
    ):
        status = slot_get(order, _ORDER_OFF[5])
        if type(status) is _STATUS:
            allowed = PyDict_GetItem(_ALLOWED, status)
            if allowed != NULL and type(<object>allowed) is frozenset and PySet_Contains(<object>allowed, new) == 1:
                # members are singletons with distinct values: ``x in (PENDING_CANCEL, PENDING_MODIFY)`` is identity
                if new is _PENDING_CANCEL or new is _PENDING_MODIFY:
                    if not (status is _PENDING_CANCEL or status is _PENDING_MODIFY):
                        slot_set(order, _ORDER_OFF[8], status)
                else:
                    slot_set(order, _ORDER_OFF[8], None)
                slot_set(order, _ORDER_OFF[5], new)
                return 0
    order.transition(new)  # anything else, and the reference's IllegalTransitionError
    return 0


cdef object _remaining(object order):
    """``order.remaining``: the value it keeps for its last (size, filled), read by slot offset while they are equal
    (exact floats compared as floats); else the reference's property, which computes and keeps a new one."""
    cdef PyObject* of
    cdef PyObject* size
    cdef PyObject* filled
    if _ORDER_SLOTS and type(order) is _ORDER and _type_lookup(_ORDER, "remaining") == <PyObject*>_ORDER_REMAINING:
        of = _slot_raw(order, _ORDER_OFF[10])
        size = _slot_raw(order, _ORDER_OFF[3])
        filled = _slot_raw(order, _ORDER_OFF[6])
        if (
            of != NULL and size != NULL and filled != NULL
            and type(<object>of) is tuple and PyTuple_GET_SIZE(<object>of) == 2
            and type(<object>size) is float and type(<object>filled) is float
            and type(<object>PyTuple_GET_ITEM(<object>of, 0)) is float
            and type(<object>PyTuple_GET_ITEM(<object>of, 1)) is float
            and PyFloat_AS_DOUBLE(<object>PyTuple_GET_ITEM(<object>of, 0)) == PyFloat_AS_DOUBLE(<object>size)
            and PyFloat_AS_DOUBLE(<object>PyTuple_GET_ITEM(<object>of, 1)) == PyFloat_AS_DOUBLE(<object>filled)
            and _slot_raw(order, _ORDER_OFF[11]) != NULL
        ):
            return slot_get(order, _ORDER_OFF[11])
        if (
            of != NULL and size != NULL and filled != NULL and <object>of is None
            and type(<object>size) is float and type(<object>filled) is float
        ):
            # the property's first read (every cancelled order's): max(0.0, round(size - filled, 12)) and its memo,
            # with Python's own round (float.__round__)
            value = round(PyFloat_FromDouble(PyFloat_AS_DOUBLE(<object>size) - PyFloat_AS_DOUBLE(<object>filled)), 12)
            if not (value > _ZERO):
                value = _ZERO
            slot_set(order, _ORDER_OFF[10], (<object>size, <object>filled))
            slot_set(order, _ORDER_OFF[11], value)
            return value
    return order.remaining


cdef extern from *:
    """
    /* Two exact ints compared as CPython's long_compare does (the sign and size first, then the 30-bit digits from
       the top), without the rich-comparison call: <0, 0 or >0. 3.11's layout only (else the caller compares in
       Python: MM_INT_CMP is 0). */
    #if PY_VERSION_HEX >= 0x030B0000 && PY_VERSION_HEX < 0x030C0000 && !defined(Py_LIMITED_API)
    #define MM_INT_CMP 1
    static inline Py_ssize_t mm_int_cmp(PyObject* a, PyObject* b) {
        Py_ssize_t sa = Py_SIZE(a), sb = Py_SIZE(b), i;
        const digit *da, *db;
        if (sa != sb) return sa - sb;
        da = ((PyLongObject*)a)->ob_digit;
        db = ((PyLongObject*)b)->ob_digit;
        i = sa < 0 ? -sa : sa;
        while (--i >= 0 && da[i] == db[i]) {}
        if (i < 0) return 0;
        return sa < 0 ? (Py_ssize_t)db[i] - (Py_ssize_t)da[i] : (Py_ssize_t)da[i] - (Py_ssize_t)db[i];
    }
    #else
    #define MM_INT_CMP 0
    static inline Py_ssize_t mm_int_cmp(PyObject* a, PyObject* b) { (void)a; (void)b; return 0; }
    #endif
    """
    bint MM_INT_CMP
    Py_ssize_t mm_int_cmp(object a, object b) noexcept


cdef extern from *:
    """
    /* a > b and a <= b for two exact ints (1 or 0), or -1 when either is not an exact int (compared in Python then) */
    static inline int mm_int_gt(PyObject* a, PyObject* b) {
        if (!MM_INT_CMP || !PyLong_CheckExact(a) || !PyLong_CheckExact(b)) return -1;
        return mm_int_cmp(a, b) > 0;
    }
    static inline int mm_int_le(PyObject* a, PyObject* b) {
        if (!MM_INT_CMP || !PyLong_CheckExact(a) || !PyLong_CheckExact(b)) return -1;
        return mm_int_cmp(a, b) <= 0;
    }
    """
    int mm_int_gt(object a, object b) noexcept
    int mm_int_le(object a, object b) noexcept


cdef bint _gt_py(object a, object b) except -1:
    return a > b


cdef bint _le_py(object a, object b) except -1:
    return a <= b


cdef object _remembered(dict memo, object fn, object key, object arg):
    """``fn(key, arg)`` for a fixed ``arg`` (the venue's config), remembered per ``key`` in ``memo``, which starts over
    at _MEMO_MAX entries."""
    v = memo.get(key)
    if v is None:
        v = fn(key, arg)
        if len(memo) >= _MEMO_MAX:
            memo.clear()
        memo[key] = v
    return v


cdef inline bint _ns_ok(object v) except -1:
    # an int in [0, 2**63): what events._check_times accepts unchanged
    cdef int overflow = 0
    cdef long long x
    if not PyLong_CheckExact(v):
        return False
    x = PyLong_AsLongLongAndOverflow(v, &overflow)
    return overflow == 0 and x >= 0


cdef object _ack_event(object t, object vis, object cid, object status, object price, object size):
    if _ACK_SLOTS and _ns_ok(t) and _ns_ok(vis):
        return new_slotted(OrderAck, (t, vis, cid, status, price, size), _ACK_OFF)
    return OrderAck(t, vis, cid, status, price, size)


cdef object _reject_event(object t, object vis, object cid, object reason):
    if _REJECT_SLOTS and _ns_ok(t) and _ns_ok(vis):
        return new_slotted(OrderReject, (t, vis, cid, reason), _REJECT_OFF)
    return OrderReject(t, vis, cid, reason)


cdef object _fill_event(t, vis, cid, fill_id, side, price, size, fee, liquidity, remaining):
    if _FILL_SLOTS and _ns_ok(t) and _ns_ok(vis):
        return new_slotted(Fill, (t, vis, cid, fill_id, side, price, size, fee, liquidity, remaining), _FILL_OFF)
    return Fill(t, vis, cid, fill_id, side, price, size, fee, liquidity, remaining)


cdef object _tif_or_none(object value):
    """``TimeInForce.parse(value)``, or None where it raises ValueError (its lookup by value, for a str or a
    member: ``str(member)`` of a StrEnum is its value)."""
    if type(value) is str:
        return _TIF_BY_VALUE.get((<str>value).upper())
    if type(value) is _TIF:
        return _TIF_BY_VALUE.get(str(value).upper())
    try:
        return _TIF.parse(value)
    except ValueError:
        return None


cdef object _side_or_none(object value):
    """``Side(value)``, or None where it raises ValueError (paper._side_or_none); a member is itself."""
    if type(value) is Side:
        return value
    try:
        return Side(value)
    except ValueError:
        return None


cdef inline bint _ticks_of(double price, double tick_size, bint bid, long long* out) noexcept:
    """orders.price_to_ticks in C: bids down, asks up, within GRID_EPS of the grid; False beyond the exact integers
    of a double (the reference's Python then)."""
    cdef double x = price / tick_size
    cdef double ax = fabs(x)
    cdef double eps = _GRID_EPS * (ax if ax > 1.0 else 1.0)
    cdef double v = floor(x + eps) if bid else ceil(x - eps)
    if not (fabs(v) < 4503599627370496.0):  # 2**52
        return False
    out[0] = <long long>v
    return True


@cython.final
cdef class Resting:
    """One resting order at the venue (the reference: ``paper._Resting``; the same fields, declared in ``_paper.pxd``)."""

    def __init__(self, order, tick_t tick, queue, double crossed=0.0):
        self.order = order
        self.tick = tick
        self.queue = queue
        self.crossed = crossed
        self.bid = order.side is _BUY

    def __repr__(self):
        return f"Resting(order={self.order!r}, tick={self.tick!r}, queue={self.queue!r}, crossed={self.crossed!r})"


cdef inline int _observe_level(Resting r, LevelBook book, object params) except -1:
    """The displayed size at a resting order's level, when the book has that level, to its queue state."""
    cdef double displayed
    if book._level_near(r.bid, r.tick, &displayed, &r._level_block, &r._level_index):
        q = r.queue
        if type(q) is QueueState:
            (<QueueState>q)._observe(displayed, params)
        else:
            q.observe_level(displayed, params)
    return 0


cdef inline tuple _resting_values(PaperVenueBase venue, dict live):
    """``tuple(live.values())`` for ``live``, the venue's ``_live`` (only when MM_DICT_VERSIONED), kept while the dict
    is unchanged (the same dict object, held, and its version tag): orders are placed and cancelled a few thousand
    times a run, the book changes and trades come 90k times."""
    if live is None:
        return tuple(live.values())  # the AttributeError of the reference's read
    if live is not venue._walk_of or mm_dict_version(live) != venue._walk_version:
        venue._walk = tuple(live.values())
        venue._walk_of = live
        venue._walk_version = mm_dict_version(live)
    return venue._walk


cdef class PaperVenueBase:
    """The compiled half of ``paper.PaperVenue``; the reference ``PyPaperVenue`` is the other (see the module). Its
    state's slots are declared in ``_paper.pxd``."""

    @property
    def config(self):
        return self._config

    @config.setter
    def config(self, value):
        self._config = value
        self._exchange_clock = value.venue_clock == "exchange"
        self._partial = value.partial_fills
        self._price_memo = {}
        self._size_memo = {}

    # --- the market event ----------------------------------------------------------------------------------------
    def on_market(self, event):
        """Feed one market event in local-time order; returns our events visible by its local time."""
        out = self.c_on_market(event)
        return [] if out is _NO_EVENTS else out

    cdef object c_on_market(self, object event):
        cdef object t, book = self._book
        cdef list inbox = self._inbox, outbox
        cdef int cmp
        if type(book) is not LevelBook:
            return super(PaperVenueBase, self).on_market(event)
        cls = type(event)
        # a book ticker's fields by slot offset (the same objects getattr gives: apps/engine/_slots.pxd)
        cdef bint bbo_slots = _BBO_SLOTS and cls is _BBO_CLS
        cdef bint depth_slots = _DEPTH_SLOTS and cls is _DIFF_CLS
        cdef bint trade_slots = _TRADE_SLOTS and cls is _TRADE_CLS
        if self._exchange_clock:
            t = self._event_venue_time(event)
        elif bbo_slots:
            t = slot_get(event, _B_TS)
        elif depth_slots:
            t = slot_get(event, _D_TS)
        elif trade_slots:
            t = slot_get(event, _T_TS)
        else:
            t = event.ts_local_ns
        if inbox:
            first = (<tuple>inbox[0])[0]
            cmp = mm_int_le(first, t)  # first <= t
            if cmp == 1 or (cmp == -1 and _le_py(first, t)):
                self._arrivals(t)
        cmp = mm_int_gt(t, self._venue_now_ns)  # t > self._venue_now_ns
        if cmp == 1 or (cmp == -1 and _gt_py(t, self._venue_now_ns)):
            self._venue_now_ns = t
        # the exact classes first (an isinstance that fails costs a type walk); a subclass takes the isinstance chain
        if cls is _BBO_CLS:
            if bbo_slots:
                (<LevelBook>book)._apply_bbo(
                    slot_get(event, _B_BID), slot_get(event, _B_BSZ), slot_get(event, _B_ASK), slot_get(event, _B_ASZ)
                )
            else:
                (<LevelBook>book)._apply_bbo(event.bid_px, event.bid_size, event.ask_px, event.ask_size)
            self._book_changed(t, <LevelBook>book)
        elif cls is _DIFF_CLS:
            if depth_slots:
                (<LevelBook>book)._apply_diff(slot_get(event, _D_BIDS), slot_get(event, _D_ASKS))
            else:
                (<LevelBook>book)._apply_diff(event.bids, event.asks)
            self._book_changed(t, <LevelBook>book)
        elif trade_slots:
            if slot_get(event, _T_MARKET):
                self._trade(event, t, <LevelBook>book)
            else:
                self.non_market_trades += 1
        elif isinstance(event, Trade):
            if event.market:
                self._trade(event, t, <LevelBook>book)
            else:
                self.non_market_trades += 1  # an insurance-fund / ADL print does not trade against the book
        elif isinstance(event, BestBidAsk):
            (<LevelBook>book)._apply_bbo(event.bid_px, event.bid_size, event.ask_px, event.ask_size)
            self._book_changed(t, <LevelBook>book)
        elif isinstance(event, DepthSnapshot):
            book.apply_snapshot(event.bids, event.asks)
            self._book_changed(t, <LevelBook>book)
        elif isinstance(event, DepthUpdate):
            (<LevelBook>book)._apply_diff(event.bids, event.asks)
            self._book_changed(t, <LevelBook>book)
        now = t if not self._exchange_clock else event.ts_local_ns  # t is the local stamp already on the local clock
        outbox = self._outbox
        if not outbox:
            return _NO_EVENTS  # nothing of ours visible yet (most events)
        first = (<tuple>outbox[0])[0]
        cmp = mm_int_gt(first, now)  # first > now
        if cmp == 1 or (cmp == -1 and _gt_py(first, now)):
            return _NO_EVENTS  # nothing of ours visible yet (most events)
        return self.c_drain(now)

    def _after_book_change(self, t):
        book = self._book
        if type(book) is not LevelBook:
            return super(PaperVenueBase, self)._after_book_change(t)
        self._book_changed(t, <LevelBook>book)

    cdef int _book_changed(self, object t, LevelBook book) except -1:
        cdef dict live = self._live
        cdef Resting r
        cdef bint any_level
        cdef double crossing
        cdef Py_ssize_t pos = 0, k = 0
        cdef PyObject* key
        cdef PyObject* value
        cdef tuple walk
        cdef Py_ssize_t n
        if PyDict_GET_SIZE(live) == 0:
            return 0
        params = self._queue_params
        # The reference's walk, in place: most book changes fill none of our orders, and then nothing adds or removes
        # an order during the walk, so it reads the dict's entries directly (no list of ids, no lookup per order, no
        # size check per step). At the first order with fresh crossed size (a fill, which removes a filled order) the
        # rest of the walk is the reference's, over a copy of the ids from that order on: the orders before it had
        # exactly the reference's steps, and nothing here changes the dict.
        if MM_DICT_VERSIONED:
            walk = _resting_values(self, live)
            n = PyTuple_GET_SIZE(walk)
            for k in range(n):
                r = <Resting?><object>PyTuple_GET_ITEM(walk, k)
                crossing = book._crossing(r.bid, r.tick, &any_level)
                if crossing - r.crossed > 0:
                    return self._book_changed_with_fills(t, book, params, k)
                r.crossed = crossing
                _observe_level(r, book, params)
            return 0
        while PyDict_Next(live, &pos, &key, &value):
            r = <Resting?><object>value
            crossing = book._crossing(r.bid, r.tick, &any_level)
            if crossing - r.crossed > 0:
                return self._book_changed_with_fills(t, book, params, k)
            r.crossed = crossing
            _observe_level(r, book, params)
            k += 1
        return 0

    cdef int _book_changed_with_fills(self, object t, LevelBook book, object params, Py_ssize_t first) except -1:
        # the reference's walk over a copy of the ids, from the ``first``-th order on
        cdef dict live = self._live
        cdef list ids = list(live)
        cdef Resting r
        cdef double crossing, fresh
        cdef bint any_level
        for cid in ids[first:]:
            r = <Resting?>live[cid]
            crossing = book._crossing(r.bid, r.tick, &any_level)
            fresh = crossing - r.crossed
            r.crossed = crossing
            if fresh > 0:
                order = r.order
                size = round_size(min(order.remaining, fresh), self._config.lot_size)
                if not self._partial:
                    size = _whole_fill(size, order.remaining)
                r.queue.ahead = 0.0
                self._c_fill(order, order.price, size, "maker", t)
                self._finish_if_filled(cid)
                if cid not in live:
                    continue
            _observe_level(r, book, params)
        return 0

    def _on_trade(self, trade, t):
        book = self._book
        if type(book) is not LevelBook:
            return super(PaperVenueBase, self)._on_trade(trade, t)
        self._trade(trade, t, <LevelBook>book)

    cdef int _trade(self, object trade, object t, LevelBook book) except -1:
        cdef Resting r
        cdef tick_t trade_tick
        cdef bint buy_side, through, at_price, reached = False
        if _TRADE_SLOTS and type(trade) is _TRADE_CLS:  # the fields by slot offset (the objects getattr gives)
            aggressor, price, trade_size = slot_get(trade, _T_AGG), slot_get(trade, _T_PX), slot_get(trade, _T_SZ)
        else:
            aggressor, price, trade_size = trade.aggressor, trade.price, trade.size
        if aggressor is _BUY:
            resting_side = _SELL
        elif aggressor is _SELL:
            resting_side = _BUY
        else:
            resting_side = OPPOSITE[aggressor]
        trade_tick = book._tick(price)
        available = float(trade_size)
        buy_side = resting_side is _BUY
        # most trades reach none of our orders: look before building the ordered list
        for value in (_resting_values(self, self._live) if MM_DICT_VERSIONED else self._live.values()):
            r = <Resting?>value
            if r.bid == buy_side and ((trade_tick < r.tick if buy_side else trade_tick > r.tick) or trade_tick == r.tick):
                reached = True
                break
        if not reached:
            return 0
        lot = self._config.lot_size
        for value in self._resting_on(resting_side):
            r = <Resting>value
            through = trade_tick < r.tick if buy_side else trade_tick > r.tick
            at_price = trade_tick == r.tick
            if not (through or at_price):
                continue
            order, q = r.order, r.queue
            if through:
                size = min(order.remaining, available)
                q.ahead = 0.0
            else:
                q.trade_credit += trade_size
                if q.ahead is None:
                    continue  # never observed: we cannot claim a place in this queue yet
                size, q.ahead = queue_after_trade(q.ahead, order.remaining, available)
            size = round_size(size, lot)
            if size > 0:
                if self._partial:
                    available -= size
                else:
                    size = _whole_fill(size, order.remaining)  # and the trade stays whole for our next order
                self._c_fill(order, order.price, size, "maker", t)
                self._finish_if_filled(order.client_order_id)
        return 0

    def _resting_on(self, side):
        """Our live orders on one side, in matching order: best price first, then time priority."""
        cdef list rs = []
        cdef Resting r
        cdef bint bid = side is _BUY
        if not bid and side is not _SELL:
            return rs  # the reference compares ``order.side is side``: nothing matches a non-member
        for value in self._live.values():
            r = <Resting?>value
            if r.bid == bid:
                rs.append(r)
        if len(rs) > 1:
            rs.sort(key=_BidOrder() if bid else _AskOrder())
        return rs

    # --- the in-flight heaps -------------------------------------------------------------------------------------
    def _drain(self, now_local_ns):
        return self.c_drain(now_local_ns)

    cdef object c_drain(self, object now_local_ns):
        cdef list out = []
        cdef list outbox = self._outbox
        while outbox and (<tuple>outbox[0])[0] <= now_local_ns:
            ev = heapq.heappop(outbox)[2]
            if type(ev) is _FILL_CLS:
                self._fills.append(ev)
                self._position += ev.size if ev.side is _BUY else -ev.size
            out.append(ev)
        return out

    def next_event_ns(self):
        """Local time of the next thing the venue does on its own, or ``None`` when nothing is in flight
        (the reference's docstring says why a driver needs it)."""
        return self.c_next_event_ns()

    cdef object c_next_event_ns(self):
        cdef list inbox = self._inbox, outbox = self._outbox
        best = None
        if inbox:
            best = (<tuple>inbox[0])[0]
            if self._exchange_clock:
                best += self._feed_delay_ns
        if outbox:
            first = (<tuple>outbox[0])[0]
            if best is None or first < best:
                best = first
        return best

    # --- our actions: the local checks, the arrivals, the events they produce -------------------------------------
    def submit(self, actions, now_local_ns):
        """Send actions; they reach the engine after the entry latency. Returns local rejects (the reference's
        ``submit``, its checks compiled for the exact action classes the strategies send)."""
        cdef list local = []
        cdef list inbox = self._inbox
        for action in actions:
            checked = self._c_check(action)
            if isinstance(checked, str):
                cid = getattr(action, "client_order_id", "")
                local.append(_reject_event(now_local_ns, now_local_ns, cid, checked))
                continue
            if isinstance(checked, PlaceOrder):
                self._known_ids.add(checked.client_order_id)
            arrival = now_local_ns + self._latency(self._entry)
            if self._last_arrival_ns > arrival:  # max(arrival, last)
                arrival = self._last_arrival_ns
            self._last_arrival_ns = arrival
            self._seq = self._seq + 1
            heapq.heappush(inbox, (arrival, self._seq, checked))
        return local

    def advance(self, now_local_ns):
        """Let time pass without market data (a timer tick)."""
        t = now_local_ns - self._feed_delay_ns if self._exchange_clock else now_local_ns
        if type(self._book) is LevelBook:
            self._arrivals(t)
        else:
            self._process_arrivals(t)
        if t > self._venue_now_ns:
            self._venue_now_ns = t
        return self.c_drain(now_local_ns)

    def _process_arrivals(self, t_ns):
        if type(self._book) is not LevelBook:
            return super(PaperVenueBase, self)._process_arrivals(t_ns)
        self._arrivals(t_ns)

    cdef object _latency(self, object model):
        # model.sample_ns(rng); a ConstantLatency's without the call (it draws nothing from the generator)
        if type(model) is _CONSTANT:
            return int(model.latency_ns)
        return model.sample_ns(self._rng)

    cdef object _c_check(self, object action):
        """``_check_locally`` for the exact classes PlaceOrder, CancelOrder and CancelAll; any other action (a modify,
        a subclass) goes to the reference's."""
        cls = type(action)
        if cls is _PLACE:
            cid = action.client_order_id
            if not cid:
                return "missing_client_order_id"
            if cid in self._known_ids:
                return "duplicate_client_order_id"
            if _tif_or_none(action.tif) is None:
                return "bad_tif"
            side = _side_or_none(action.side)
            if side is None:
                return "bad_side"
            return self._c_round(action, side)
        if cls is _CANCEL:
            return action if action.client_order_id in self._known_ids else "unknown_order"
        if cls is _CANCEL_ALL:
            return action
        return self._check_locally(action)

    cdef object _c_round(self, object action, object side):
        """``_round_or_reason`` of an exact PlaceOrder with float price and size on a float grid; anything else is
        the reference's. The rounded copy is ``replace(action, price=, size=)``: the same five fields."""
        cdef long long ticks
        cfg = self._config
        price, size = action.price, action.size
        tick_size, lot = cfg.tick_size, cfg.lot_size
        if not (type(price) is float and type(size) is float and type(tick_size) is float and type(lot) is float):
            return self._round_or_reason(action, side, price, size)
        if not (isfinite(<double>price) and <double>price > 0):
            return "bad_price"
        if not (isfinite(<double>size) and <double>size > 0):
            return "bad_size"
        if not _ticks_of(price, tick_size, side is _BUY, &ticks):
            return self._round_or_reason(action, side, price, size)
        if ticks <= 0:
            return "bad_price"
        rsize = self._lots(size, lot)
        if rsize <= 0:
            return "size_below_lot"
        new_price = self._price_of(ticks, tick_size)
        if _PLACE_SLOTS:
            return new_slotted(_PLACE, (action.client_order_id, action.side, new_price, rsize, action.tif), _PLACE_OFF)
        return _PLACE(action.client_order_id, action.side, new_price, rsize, action.tif)

    cdef object _price_of(self, object ticks, object tick_size):
        # ticks_to_price(ticks, tick_size), remembered per tick (its round() with digits costs ~3k instructions)
        return _remembered(self._price_memo, ticks_to_price, ticks, tick_size)

    cdef object _lots(self, object size, object lot):
        # round_size(size, lot) of a float size, remembered per size (equal floats, the same result)
        return _remembered(self._size_memo, round_size, size, lot)

    cdef int _arrivals(self, object t_ns) except -1:
        # _process_arrivals on the compiled level book
        cdef list inbox = self._inbox
        while inbox and (<tuple>inbox[0])[0] <= t_ns:
            item = <tuple>heapq.heappop(inbox)
            arrival, action = item[0], item[2]
            at = self._venue_now_ns if self._venue_now_ns > arrival else arrival  # max(arrival, venue_now)
            if isinstance(action, PlaceOrder):
                self._place(action, at)
            elif isinstance(action, CancelOrder):
                self._cancel(action.client_order_id, at)
            elif isinstance(action, ModifyOrder):
                self._arrive_modify(action, at)
            elif isinstance(action, CancelAll):
                for cid in list(self._live):
                    self._cancel(cid, at)
        return 0

    cdef int _place(self, object a, object t) except -1:
        # _arrive_place on the compiled level book
        cdef LevelBook book = <LevelBook>self._book
        cdef tick_t tick
        cdef bint bid, any_level
        cdef Resting resting
        side = a.side
        if type(side) is not Side:
            side = Side(side)
        tick = book._tick(a.price)
        tif = _tif_or_none(a.tif)
        if tif is None:
            tif = _TIF.parse(a.tif)  # the reference's error
        cid = a.client_order_id
        order = _new_order(cid, side, a.price, a.size, tif)
        bid = side is _BUY
        if self._crosses_own(bid, tick, ""):
            _transition(order, _REJECTED)
            self._c_reject(cid, "self_trade_prevention", t)
            return 0
        book._crossing(bid, tick, &any_level)
        if any_level and tif is _POST_ONLY:
            _transition(order, _REJECTED)
            self._c_reject(cid, "post_only_would_cross", t)
            return 0
        _transition(order, _OPEN)
        self._c_ack(cid, "open", order.price, order.size, t)
        if any_level:  # taking liquidity (rare for a quoter): the reference's steps
            crossing = book.crossing_levels(side, tick)
            tick_size = self._config.tick_size
            if not self._partial:
                self._c_fill(order, ticks_to_price(crossing[0][0], tick_size), order.remaining, "taker", t)
            for level_tick, level_size in crossing:
                if order.remaining <= 0:
                    break
                size = min(order.remaining, level_size)
                self._c_fill(order, ticks_to_price(level_tick, tick_size), size, "taker", t)
        if order.status is _FILLED:
            return 0
        if tif is _IOC:
            _transition(order, _CANCELLED)
            self._c_ack(cid, "cancelled", order.price, _remaining(order), t)
            return 0
        resting = Resting(order, tick, self._queue(bid, tick))
        resting.crossed = book._crossing(bid, tick, &any_level)  # swept above (no market impact)
        self._live[cid] = resting
        return 0

    cdef bint _crosses_own(self, bint bid, tick_t tick, object exclude) except -1:
        # _self_trade: would an order on this side at ``tick`` cross one of our resting orders on the other side
        cdef Resting r
        for cid, value in self._live.items():
            r = <Resting?>value
            if cid == exclude or r.bid == bid:
                continue
            if (tick >= r.tick) if bid else (tick <= r.tick):
                return True
        return False

    def _join_queue(self, side, tick):
        if type(self._book) is not LevelBook:
            return super(PaperVenueBase, self)._join_queue(side, tick)
        return self._queue(side is _BUY, tick)

    cdef object _queue(self, bint bid, tick_t tick):
        # _join_queue: behind what the book displays at our level now (None when it does not know the level)
        cdef double displayed
        self._priority = self._priority + 1
        if (<LevelBook>self._book)._level(bid, tick, &displayed):
            return QueueState(displayed, displayed, self._priority)
        return QueueState(None, None, self._priority)

    cdef int _cancel(self, object cid, object t) except -1:
        # _arrive_cancel
        r = self._live.pop(cid, None)
        if r is None:
            self._c_reject(cid, "order_not_open" if cid in self._known_ids else "unknown_order", t)
            return 0
        order = (<Resting?>r).order
        _transition(order, _CANCELLED)
        self._c_ack(cid, "cancelled", order.price, _remaining(order), t)
        return 0

    # --- the events we see, after the response latency (_emit) -----------------------------------------------------
    cdef object _visible(self, object t):
        visible = t + self._latency(self._response)
        if self._last_visible_ns > visible:  # max(visible, last)
            visible = self._last_visible_ns
        self._last_visible_ns = visible
        return visible

    def _ack(self, cid, status, price, size, t):
        self._c_ack(cid, status, price, size, t)

    cdef int _c_ack(self, object cid, object status, object price, object size, object t) except -1:
        visible = self._visible(t)
        self._seq = self._seq + 1
        heapq.heappush(self._outbox, (visible, self._seq, _ack_event(t, visible, cid, status, price, size)))
        return 0

    def _reject(self, cid, reason, t):
        self._c_reject(cid, reason, t)

    cdef int _c_reject(self, object cid, object reason, object t) except -1:
        visible = self._visible(t)
        self._seq = self._seq + 1
        heapq.heappush(self._outbox, (visible, self._seq, _reject_event(t, visible, cid, reason)))
        return 0

    def _fill(self, order, price, size, liquidity, t):
        self._c_fill(order, price, size, liquidity, t)

    cdef int _c_fill(self, object order, object price, object size, object liquidity, object t) except -1:
        if size <= 0:
            return 0
        cfg = self._config
        rate = cfg.maker_fee if liquidity == "maker" else cfg.taker_fee
        fee = rate * price * size
        self._fill_seq = self._fill_seq + 1
        fill_id = f"paper-{self._fill_seq}"
        order.apply_fill(fill_id, size, fee)
        remaining = order.remaining
        cid, side = order.client_order_id, order.side
        visible = self._visible(t)
        self._seq = self._seq + 1
        ev = _fill_event(t, visible, cid, fill_id, side, price, size, fee, liquidity, remaining)
        heapq.heappush(self._outbox, (visible, self._seq, ev))
        return 0


@cython.final
cdef class _BidOrder:
    # the reference's sort key (-tick * side, priority) for bids (side = +1): best (highest) tick first
    def __call__(self, Resting r):
        return (-r.tick, r.queue.priority)


@cython.final
cdef class _AskOrder:
    # for asks (side = -1): lowest tick first
    def __call__(self, Resting r):
        return (r.tick, r.queue.priority)
