# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False, cdivision=False
"""Compiled twin of :func:`apps.engine.quoting.quoter.py_quote`: the same steps (γ → horizon → fill costs →
reservation price and half-spread → skew flag → a ladder per side → emergency taker) in C doubles, with the same
operations in the same order, so the same :class:`QuoteResult`: the same levels, the same ``inputs`` (keys in the
same insertion order, the same doubles) and the same reasons. The reference's docstrings have the maths.

Where C and Python differ, Python's behaviour is kept:

* ``math.exp``/``expm1``/``log1p``/``tanh``/``erf``/``sqrt`` are the C library's in CPython too; the wrappers
  below raise where the math module raises (overflow, domain);
* ``**`` is CPython's ``float_pow`` (:func:`pypow`), ``max``/``min`` keep their first argument on ties and NaN;
* ``round(x, 12)`` (the tick and lot rounding) is computed exactly (:func:`round12`, checked against the builtin
  in tests/engine/quoting/test_quote_equivalence.py) and ``math.fsum`` is CPython's algorithm (:func:`fsum_c`);
  both hand unusual inputs (non-finite, tiny, a zero sum) to the builtins;
* anything the reference would raise on (a zero step, a non-finite price before ``math.floor``, an invalid GLFT
  coefficient) is handed to the reference's own function, which raises the same error.

The rare branches call the reference's steps: the AS and finite-horizon GLFT models (:func:`model_terms`) and the
depth-priced half-spread (the compiled :mod:`apps.engine.quoting._depthprice` when built).
"""

import array as _array_mod
import math

cimport cython

from cpython cimport array
from cpython.dict cimport PyDict_GetItem, PyDict_GetItemWithError, PyDict_Next
from cpython.float cimport PyFloat_FromDouble
from cpython.mem cimport PyMem_Free, PyMem_Malloc
from cpython.object cimport PyObject, PyObject_GenericSetAttr, PyObject_Hash, PyTypeObject
from cpython.ref cimport Py_INCREF, Py_XDECREF
from cpython.tuple cimport PyTuple_GET_ITEM, PyTuple_GET_SIZE, PyTuple_New, PyTuple_SET_ITEM
from libc.string cimport memcmp, memcpy
from libc.math cimport ceil, copysign, erf, exp, expm1, fabs, floor, fma, isfinite, isinf, isnan, log1p, rint
from libc.math cimport sqrt, tanh, NAN

from apps.engine._pyfloat cimport m_expm1, pymax, pymin, pypow
from apps.engine._slots cimport slot_offset, slot_offsets, slot_set
from apps.engine.market._book cimport QueueLevels
from apps.engine.quoting._depthprice cimport curve_costs, priced


cdef extern from "Python.h":
    PyTypeObject PyBaseObject_Type
    str PyUnicode_DecodeASCII(const char* s, Py_ssize_t size, const char* errors)
    bint _float_exact "PyFloat_CheckExact" (PyObject* o)
    double _float_val "PyFloat_AS_DOUBLE" (PyObject* o)
    ctypedef struct PyTupleObject:
        PyObject* ob_item[1]

_BPS = 1e-4
cdef double BPS = 1e-4

# --- bound once, on the first call (the reference module imports this one at its end) ---------------------------

cdef bint _bound = False
cdef object _ref = None
cdef object _Level = None
cdef object _QuoteResult = None
cdef object _BUY = None
cdef object _SELL = None
cdef object _MODEL_CODES = None
cdef object _model_terms = None
cdef object _glft_coefficients = None
cdef object _floor_to_py = None
cdef object _ceil_to_py = None
cdef object _depth_priced = None
cdef bint _depth_priced_c = False  # the quoter's depth_priced_half_spread is _depthprice's: called at C level
cdef object _SKEW_CAPPED = None


# --- MarketState's fields by slot offset (apps/engine/_slots.pxd): the quoter reads ~40 of them per decision, each a
# type lookup and a member descriptor call by name (~150 instructions) where the offset read is a few. -----------------
cdef enum:
    MS_TS_NS = 0
    MS_BEST_BID = 1
    MS_BEST_ASK = 2
    MS_KAPPA = 3
    MS_SIGMA_CLEAN = 4
    MS_SIGMA_INVENTORY = 5
    MS_KAPPA_OK = 6
    MS_SIGMA_OK = 7
    MS_A_PER_S = 8
    MS_MEAN_TRADE_SIZE = 9
    MS_DRIFT_MEAN_PER_S = 10
    MS_DRIFT_STD_PER_S = 11
    MS_DRIFT_EXPECTED_RETURN = 12
    MS_DRIFT_OK = 13
    MS_BOOK_IMBALANCE = 14
    MS_FLOW_IMBALANCE = 15
    MS_MICROPRICE_OFFSET = 16
    MS_MICROPRICE_OK = 17
    MS_FUNDING_RATE = 18
    MS_FUNDING_INTERVAL_S = 19
    MS_FLOW_TOXICITY = 20
    MS_ADVERSE_SELECTION = 21
    MS_ADVERSE_SELECTION_OK = 22
    MS_FILL_COST_CURVE = 23
    MS_FILL_COST_CURVE_OK = 24
    MS_BID_QUEUE = 25
    MS_ASK_QUEUE = 26
    MS_RISK_FEATURES = 27
    MS_SESSION_END_NS = 28
    MS_EXTRA_INPUTS = 29
    MS_N = 30

cdef tuple _MS_FIELDS = ('ts_ns', 'best_bid', 'best_ask', 'kappa', 'sigma_clean', 'sigma_inventory', 'kappa_ok', 'sigma_ok', 'a_per_s', 'mean_trade_size', 'drift_mean_per_s', 'drift_std_per_s', 'drift_expected_return', 'drift_ok', 'book_imbalance', 'flow_imbalance', 'microprice_offset', 'microprice_ok', 'funding_rate', 'funding_interval_s', 'flow_toxicity', 'adverse_selection', 'adverse_selection_ok', 'fill_cost_curve', 'fill_cost_curve_ok', 'bid_queue', 'ask_queue', 'risk_features', 'session_end_ns', 'extra_inputs')
cdef Py_ssize_t _MS_OFF[30]  # set by _bind; -1 everywhere until then (getattr)
cdef Py_ssize_t _k
for _k in range(MS_N):
    _MS_OFF[_k] = -1
cdef object _MarketState = None


cdef bint _MS_SLOTS = False  # every field a plain slot (set by _bind)


cdef inline void _ms_read(object market, PyObject** mf) noexcept:
    """The decision's MarketState fields, borrowed from its slots (``market`` outlives the call and is frozen) when
    it is exactly a MarketState; NULL where a field is to be read by name (another type, an unset slot)."""
    cdef Py_ssize_t i
    if _MS_SLOTS and type(market) is _MarketState:
        for i in range(MS_N):
            mf[i] = (<PyObject**>((<char*><PyObject*>market) + _MS_OFF[i]))[0]
    else:
        for i in range(MS_N):
            mf[i] = NULL


cdef inline object _ms(_Rec* rec, object market, int i):
    """``getattr(market, MarketState's field i)``: the field read once per decision (_ms_read), else by name."""
    if rec.mf[i] != NULL:
        return <object>rec.mf[i]
    return getattr(market, <str>PyTuple_GET_ITEM(_MS_FIELDS, i))
cdef tuple _GAMMA = ()  # (feature name, beta attribute, inputs key of x, inputs key of the contribution)
cdef bint _GAMMA_INV[16]  # _GAMMA[k]'s feature is "inventory_utilisation" (x from q, not the features)
cdef list _BID_KEYS = []
cdef list _ASK_KEYS = []
cdef object _fsum = math.fsum
cdef object _round = round
cdef object _nan = math.nan
cdef tuple _NO_ARGS = ()


cdef inline object _blank(cls):
    """``object.__new__(cls)``, uncalled: the start of _frozen, for the builders that then set each slot themselves."""
    return PyBaseObject_Type.tp_new(cls, <PyObject*>_NO_ARGS, NULL)


cdef inline object _frozen(cls, tuple names, tuple values, bint by_offset, Py_ssize_t* offsets):
    # A frozen, slotted dataclass built as its generated __init__ builds it (object.__setattr__ per field, in field
    # order), without the Python-level call: QuoteResult(...) costs ~1.9 µs and a Level ~1.3 µs that way. With
    # ``by_offset`` each field is stored in its slot as object.__setattr__ stores it (apps/engine/_slots.pxd).
    cdef object obj = PyBaseObject_Type.tp_new(cls, <PyObject*>_NO_ARGS, NULL)  # object.__new__(cls), uncalled
    cdef Py_ssize_t k
    if by_offset:
        for k in range(len(names)):
            slot_set(obj, offsets[k], <object>PyTuple_GET_ITEM(values, k))
    else:
        for k in range(len(names)):
            PyObject_GenericSetAttr(obj, names[k], values[k])
    return obj


cdef Py_ssize_t _LEVEL_OFF[7]
cdef Py_ssize_t _RESULT_OFF[8]
cdef bint _LEVEL_SLOTS = False, _RESULT_SLOTS = False  # set by _bind


cdef tuple _LEVEL_FIELDS = ("side", "index", "price", "size", "offset_frac", "p_fill", "expected_pnl")
cdef tuple _RESULT_FIELDS = ("ts_ns", "bids", "asks", "inputs", "reasons", "taker_side", "taker_size", "taker_price")


cdef inline object _result(ts_ns, tuple bids, tuple asks, object inputs, tuple reasons, taker_side, taker_size,
                           taker_price):
    cdef object obj
    if _RESULT_SLOTS:  # as _frozen by offset, without its tuple of values
        obj = _blank(_QuoteResult)
        slot_set(obj, _RESULT_OFF[0], ts_ns)
        slot_set(obj, _RESULT_OFF[1], bids)
        slot_set(obj, _RESULT_OFF[2], asks)
        slot_set(obj, _RESULT_OFF[3], inputs)
        slot_set(obj, _RESULT_OFF[4], reasons)
        slot_set(obj, _RESULT_OFF[5], taker_side)
        slot_set(obj, _RESULT_OFF[6], taker_size)
        slot_set(obj, _RESULT_OFF[7], taker_price)
        return obj
    return _frozen(_QuoteResult, _RESULT_FIELDS, (ts_ns, bids, asks, inputs, reasons, taker_side, taker_size,
                                                   taker_price), _RESULT_SLOTS, _RESULT_OFF)


# --- the decision's inputs as the typed record (apps/engine/market/inputs.py) -------------------------------------
#
# The steps write (key, double) pairs in the reference's insertion order into a _Rec; _record turns them into a
# DecisionInputs: the shared InputLayout of those names (found by a hash of the keys' own hashes, then checked key
# by key, pointer first) and one array('d') of the values. No float object and no dict per decision.

cdef enum:
    _REC_STACK = 384  # pairs on the C stack; more (a long ladder) goes to the heap
    _MODEL_REQUESTED_AT = 12  # where model_requested_code is first written (the reference writes it twice)

cdef struct _Rec:
    Py_ssize_t n
    Py_ssize_t cap
    PyObject** keys  # borrowed: module constants, the cached level and γ keys, the core's extra dict's keys
    double* vals
    bint requested_again  # model_requested_code written again, in place (see _reservation_step)
    PyObject** mf  # the MarketState's fields, borrowed (_ms_read)

cdef object _DecisionInputs = None
cdef tuple _INPUT_FIELDS = ("layout", "vector")
cdef dict _INTERNED = None  # InputLayout's table of layouts by their names (bound on first use)
cdef dict _LAYOUTS_BY_ADDRESS = {}  # hash of the keys' addresses -> the layout whose own name objects they are
cdef array.array _VEC = _array_mod.array("d")
cdef object _last_layout = None  # the layout of the last record built (_record tries it first), and its names
cdef object _last_names = None


cdef inline void _put(_Rec* rec, object key, double v) noexcept:
    # a write past the capacity is counted, not stored (cannot happen: the capacity counts every write); _record
    # raises on it, so a change cannot overrun. No error return: a few instructions, inlined, per write
    if rec.n < rec.cap:
        rec.keys[rec.n] = <PyObject*>key
        rec.vals[rec.n] = v
    rec.n += 1


@cython.final
cdef class InputPairs:
    """The compiled core's extra decision inputs (``MarketState.extra_inputs``), in place of the reference's dict:
    ``(key, value)`` pairs in the order the core writes them, the values the very objects the dict would hold. Writing
    a pair is two stores where a dict insert hashes and probes (~200 instructions; ~34 a decision). ``_put_all`` reads
    them in order as it reads the dict, and a key written twice ends as a dict keeps it (its first place, its last
    value): the decision record's own path for repeated names (``_record``) resolves it. For anything else (the
    reference quoter's ``dict.update``, ``**``) they read as that dict: ``keys()``, ``[key]``, ``items()``, ``len()``,
    ``in``, ``get`` and :meth:`as_dict`."""

    def __cinit__(self):
        self.n = 0
        self.cap = PAIRS_INLINE
        self.k_arr = self.inline_keys
        self.v_arr = self.inline_vals

    def __dealloc__(self):
        cdef Py_ssize_t i
        for i in range(self.n):
            Py_XDECREF(self.k_arr[i])
            Py_XDECREF(self.v_arr[i])
        if self.k_arr != self.inline_keys:
            PyMem_Free(self.k_arr)
            PyMem_Free(self.v_arr)

    cdef int put(self, object key, object value) except -1:
        cdef PyObject** nk
        cdef PyObject** nv
        if self.n == self.cap:
            nk = <PyObject**>PyMem_Malloc(2 * self.cap * sizeof(PyObject*))
            nv = <PyObject**>PyMem_Malloc(2 * self.cap * sizeof(PyObject*))
            if nk == NULL or nv == NULL:
                PyMem_Free(nk)
                PyMem_Free(nv)
                raise MemoryError()
            memcpy(nk, self.k_arr, self.n * sizeof(PyObject*))
            memcpy(nv, self.v_arr, self.n * sizeof(PyObject*))
            if self.k_arr != self.inline_keys:
                PyMem_Free(self.k_arr)
                PyMem_Free(self.v_arr)
            self.k_arr, self.v_arr, self.cap = nk, nv, 2 * self.cap
        Py_INCREF(key)
        Py_INCREF(value)
        self.k_arr[self.n] = <PyObject*>key
        self.v_arr[self.n] = <PyObject*>value
        self.n += 1
        return 0

    cdef int clear(self) except -1:
        # n is 0 before the first reference is dropped: whatever a release runs sees no pairs, never a freed one
        cdef Py_ssize_t i, n = self.n
        self.n = 0
        for i in range(n):
            Py_XDECREF(self.k_arr[i])
            Py_XDECREF(self.v_arr[i])
        return 0

    def add(self, key, value):
        """``d[key] = value`` on the dict these pairs stand for (Python's door to :meth:`put`)."""
        self.put(key, value)

    def __len__(self):
        """The number of distinct keys, as the dict's length."""
        return len(self.as_dict())

    def keys(self):
        """The dict's keys, in its order (with ``__getitem__``, what ``dict.update`` and ``**`` read)."""
        return self.as_dict().keys()

    def __iter__(self):
        return iter(self.as_dict())

    def __getitem__(self, key):
        """The last value written under ``key`` (KeyError when none was)."""
        cdef Py_ssize_t i
        for i in range(self.n - 1, -1, -1):
            k = <object>self.k_arr[i]
            if k is key or k == key:
                return <object>self.v_arr[i]
        raise KeyError(key)

    def __contains__(self, key):
        return key in self.as_dict()

    def get(self, key, default=None):
        return self.as_dict().get(key, default)

    def items(self):
        """The dict's items: each key once, in its first place, with its last value."""
        return self.as_dict().items()

    def as_dict(self):
        """The dict the reference builds from the same writes."""
        cdef dict d = {}
        cdef Py_ssize_t i
        for i in range(self.n):
            d[<object>self.k_arr[i]] = <object>self.v_arr[i]
        return d

    def __repr__(self):
        return f"InputPairs({self.as_dict()!r})"

    def __reduce__(self):  # pickled as its writes, repeats included (benchmarks pickle the quoter's calls)
        cdef Py_ssize_t i
        return (_input_pairs, ([(<object>self.k_arr[i], <object>self.v_arr[i]) for i in range(self.n)],))


def _input_pairs(writes):
    """InputPairs from ``(key, value)`` writes in order (unpickling)."""
    cdef InputPairs pairs = InputPairs()
    for key, value in writes:
        pairs.put(key, value)
    return pairs


cdef int _put_all(_Rec* rec, object extra) except -1:
    """``inputs.update(extra)``: the core's inputs in their order, each as a double (as array('d') converts)."""
    cdef Py_ssize_t pos = 0, i
    cdef PyObject* k
    cdef PyObject* v
    cdef InputPairs pairs
    if type(extra) is InputPairs:  # every write in order: a repeated key is resolved by _record as the dict would
        pairs = <InputPairs>extra
        for i in range(pairs.n):
            v = pairs.v_arr[i]
            if rec.n < rec.cap:  # _put's store, without a new reference to the key (borrowed, as _put's)
                rec.keys[rec.n] = pairs.k_arr[i]
                # a float's double read in place, anything else converted as array('d') would
                rec.vals[rec.n] = _float_val(v) if _float_exact(v) else <double><object>v
            rec.n += 1
        return 0
    if type(extra) is dict:
        while PyDict_Next(extra, &pos, &k, &v):
            _put(rec, <object>k, <double><object>v)
    else:
        for key, value in extra.items():
            _put(rec, key, value)
    return 0


cdef Py_ssize_t _INPUT_OFF[2]
cdef bint _INPUT_SLOTS = False  # set by _bind


cdef object _new_record(object layout, _Rec* rec):
    cdef array.array vec = array.clone(_VEC, rec.n, False)
    memcpy(vec.data.as_doubles, rec.vals, rec.n * sizeof(double))
    cdef object obj
    if _INPUT_SLOTS:  # as _frozen by offset, without its tuple of values
        obj = _blank(_DecisionInputs)
        slot_set(obj, _INPUT_OFF[0], layout)
        slot_set(obj, _INPUT_OFF[1], vec)
        return obj
    return _frozen(_DecisionInputs, _INPUT_FIELDS, (layout, vec), False, NULL)


cdef object _record(_Rec* rec):
    """The pairs as a DecisionInputs, exactly what ``DecisionInputs.from_mapping`` makes of the reference's dict.

    The layout is found by the keys' addresses first: a layout holds its names, so a key that *is* the layout's
    name (the quoter's constants, the cached level and γ keys, the core's cached keys) cannot be another string.
    Keys that are equal strings but other objects are found in InputLayout's own table, by value."""
    cdef Py_ssize_t i, n = rec.n
    cdef size_t h = <size_t>n
    cdef PyObject* found
    cdef tuple names
    cdef bint same
    if n > rec.cap:  # _put counted writes it had no room for
        raise RuntimeError(f"apps.engine.quoting._quote: more than {rec.cap} decision inputs; update the capacity")
    # the last decision's layout first: its names, in order, the very key objects (one memcmp of the addresses; a
    # layout holds its names, so equal addresses are those strings). A decision mostly writes the last one's keys
    cdef object last = _last_layout
    if last is not None:
        names = <tuple>(<object>_last_names)
        if PyTuple_GET_SIZE(names) == n and memcmp(<void*>&(<PyTupleObject*>names).ob_item[0], rec.keys,
                                                   n * sizeof(PyObject*)) == 0:
            return _new_record(last, rec)
    for i in range(n):  # by address
        h = (h * <size_t>1000003) ^ <size_t>rec.keys[i]
    found = PyDict_GetItem(_LAYOUTS_BY_ADDRESS, <Py_ssize_t>h)
    if found != NULL:
        names = (<object>found).names
        if len(names) == n:
            same = True
            for i in range(n):
                if PyTuple_GET_ITEM(names, i) != rec.keys[i]:
                    same = False
                    break
            if same:
                _keep_last(<object>found)
                return _new_record(<object>found, rec)
    # equal strings that are other objects: the names' own interning table (InputLayout.of's), by value
    cdef tuple keys = PyTuple_New(n)
    for i in range(n):
        Py_INCREF(<object>rec.keys[i])
        PyTuple_SET_ITEM(keys, i, <object>rec.keys[i])
    found = PyDict_GetItem(_INTERNED, keys)
    if found != NULL:  # the same names, so none twice
        if _remember_addresses(<object>found, rec, h):
            _keep_last(<object>found)
        return _new_record(<object>found, rec)
    # first time for these names (or a key written twice): through a dict, as the reference
    cdef dict d = {}
    for i in range(n):
        d[<object>rec.keys[i]] = PyFloat_FromDouble(rec.vals[i])
    if rec.requested_again:  # the reference's second write comes after the core's inputs: its value is the last
        d[<object>rec.keys[_MODEL_REQUESTED_AT]] = PyFloat_FromDouble(rec.vals[_MODEL_REQUESTED_AT])
    out = _DecisionInputs.from_mapping(d)
    if len(d) == n:
        if _remember_addresses(out.layout, rec, h):
            _keep_last(out.layout)
    return out


cdef void _keep_last(object layout) except *:
    # the layout _record tries first (its names held with it: their addresses stay theirs while it is kept)
    global _last_layout, _last_names
    _last_names = layout.names
    if type(_last_names) is not tuple:
        _last_layout = _last_names = None
        return
    _last_layout = layout


cdef bint _remember_addresses(object layout, _Rec* rec, size_t h) except -1:
    # only when the keys are the layout's own name objects (so the addresses stay theirs while the cache holds it);
    # True when they are
    cdef tuple names = layout.names
    cdef Py_ssize_t i
    for i in range(rec.n):
        if PyTuple_GET_ITEM(names, i) != rec.keys[i]:
            return False
    if len(_LAYOUTS_BY_ADDRESS) < 4096:
        _LAYOUTS_BY_ADDRESS[<Py_ssize_t>h] = layout
    return True


cdef void _bind() except *:
    global _bound, _ref, _Level, _QuoteResult, _BUY, _SELL, _MODEL_CODES, _model_terms, _glft_coefficients
    global _floor_to_py, _ceil_to_py, _depth_priced, _depth_priced_c, _GAMMA, _SKEW_CAPPED, _DecisionInputs
    global _INTERNED, _MarketState
    global _LEVEL_SLOTS, _RESULT_SLOTS, _MS_SLOTS, _INPUT_SLOTS
    from apps.engine.market.events import Side
    from apps.engine.market.inputs import DecisionInputs, InputLayout
    from apps.engine.quoting import quoter as ref
    from apps.engine.quoting.pricing import glft_coefficients
    from apps.engine.quoting.risk_aversion import FEATURE_NAMES

    _ref = ref
    _Level = ref.Level
    _QuoteResult = ref.QuoteResult
    _BUY = Side.BUY
    _SELL = Side.SELL
    _MODEL_CODES = ref.MODEL_CODES
    _model_terms = ref.model_terms
    _glft_coefficients = glft_coefficients
    _floor_to_py = ref._floor_to
    _ceil_to_py = ref._ceil_to
    _depth_priced = ref.depth_priced_half_spread
    from apps.engine.quoting import _depthprice

    _depth_priced_c = _depth_priced is _depthprice.depth_priced_half_spread
    _SKEW_CAPPED = ref._SKEW_CAPPED
    _DecisionInputs = DecisionInputs
    _INTERNED = InputLayout._interned
    if tuple(DecisionInputs.__slots__) != _INPUT_FIELDS:
        raise RuntimeError("apps.engine.quoting._quote: DecisionInputs' slots changed; update _quote.pyx")
    _GAMMA = tuple((name, attr) + tuple(ref._gamma_keys(name)) for name, attr in ref._BETA_ATTRS)
    # the fields _frozen sets must be the classes' own, in their order, and no __post_init__ may be skipped
    for cls, names in ((ref.Level, _LEVEL_FIELDS), (ref.QuoteResult, _RESULT_FIELDS)):
        if tuple(cls.__dataclass_fields__) != names or hasattr(cls, "__post_init__"):
            raise RuntimeError(f"apps.engine.quoting._quote: {cls.__name__}'s fields changed; update _quote.pyx")
    if len(_GAMMA) >= 16:
        raise RuntimeError("apps.engine.quoting._quote holds at most 15 risk features")
    # slot offsets (apps/engine/_slots.pxd), each -1 where a field is not a plain slot (then read or set by name)
    if tuple(ref.MarketState.__dataclass_fields__) != _MS_FIELDS:
        raise RuntimeError("apps.engine.quoting._quote: MarketState's fields changed; update _quote.pyx")
    _MarketState = ref.MarketState
    cdef Py_ssize_t i
    for i in range(MS_N):
        _MS_OFF[i] = slot_offset(ref.MarketState, _MS_FIELDS[i])
    _MS_SLOTS = min([_MS_OFF[i] for i in range(MS_N)]) >= 0
    for i in range(len(_GAMMA)):
        _GAMMA_INV[i] = _GAMMA[i][0] == "inventory_utilisation"
    _LEVEL_SLOTS = slot_offsets(ref.Level, _LEVEL_FIELDS, _LEVEL_OFF)
    _RESULT_SLOTS = slot_offsets(ref.QuoteResult, _RESULT_FIELDS, _RESULT_OFF)
    _INPUT_SLOTS = slot_offsets(DecisionInputs, _INPUT_FIELDS, _INPUT_OFF)
    _bound = True


def slot_reads_active():
    """Whether the quoter reads MarketState's fields and builds its Levels and QuoteResults by slot offset (False if a
    field stopped being a plain slot: then it reads and sets them by name)."""
    if not _bound:
        _bind()
    return _LEVEL_SLOTS and _RESULT_SLOTS and min([_MS_OFF[i] for i in range(MS_N)]) >= 0


cdef tuple _level_keys(bint buy, Py_ssize_t i):
    cdef list keys = _BID_KEYS if buy else _ASK_KEYS
    while len(keys) <= i:
        keys.append(_ref._level_keys(_BUY if buy else _SELL, len(keys)))
    return <tuple>keys[i]


# --- Python's float semantics in C ------------------------------------------------------------------------------


cdef inline double m_exp(double x) except? -1.0:
    cdef double r = exp(x)
    if isinf(r) and isfinite(x):
        raise OverflowError("math range error")
    return r


cdef inline double m_log1p(double x) except? -1.0:
    cdef double r
    if x == 0.0:
        return x
    r = log1p(x)
    if (isnan(r) and not isnan(x)) or (isinf(r) and isfinite(x)):
        raise ValueError("math domain error")
    return r


cdef inline double m_sqrt(double x) except? -1.0:
    cdef double r = sqrt(x)
    if isnan(r) and not isnan(x):
        raise ValueError("math domain error")
    return r


cdef double TWO52 = 4503599627370496.0


cpdef double round12(double x) except? -1.0:
    """``round(x, 12)`` exactly as CPython (the decimal value of ``x`` rounded half-even to 12 places, then the
    nearest double). Exact in C for 1e-200 ≤ |x| < 8192; |x| ≥ 8192 is its own answer (a double there is less than
    half an ulp from any 12-place decimal within 5e-13 of it); the rest goes to the builtin."""
    cdef double ax = fabs(x)
    cdef double y, lo, n, f, d
    if ax >= 8192.0:
        if isfinite(x):
            return x
        return _round(x, 12)
    if ax < 1e-200:
        return _round(x, 12)
    # x·10¹² exactly as y + lo (10¹² is a double; fma gives the exact residual); |y| < 2⁵³
    y = x * 1e12
    lo = fma(x, 1e12, -y)
    n = rint(y)  # nearest integer to y, ties to even
    f = y - n  # exact (Sterbenz), |f| ≤ 0.5; the exact fraction is f + lo
    if f > 0.0 or (f == 0.0 and lo >= 0.0):
        # up when f + lo > 0.5; 0.5 − f is exact when f ≥ 0.25, and below that |lo| ≤ 0.25 < 0.5 − f anyway
        d = 0.5 - f
        if lo > d:
            n += 1.0
        elif lo == d and f != 0.5 and fmod2(n) != 0.0:  # exactly half-way: to the even neighbour
            n += 1.0
    else:
        d = -0.5 - f
        if lo < d:
            n -= 1.0
        elif lo == d and f != -0.5 and fmod2(n) != 0.0:
            n -= 1.0
    return copysign(n / 1e12, x)


cpdef str fmt3(double x):
    """``f"{x:.3f}"`` exactly as CPython (the decimal value of ``x`` rounded half-even to 3 places, the sign kept,
    ``-0.000`` included), without its dtoa and string machinery: x·10³ rounded to an integer as :func:`round12` rounds
    x·10¹², then its digits. For 1e-200 ≤ |x| < 1e12 (and ±0); the rest goes to the builtin ``format``. Checked
    against the builtin in tests/engine/quoting/test_quote_speedups.py."""
    cdef double ax = fabs(x)
    cdef double y, lo, n, f, d
    cdef char buf[40]
    cdef char digits[24]
    cdef int nd = 0, pos = 0, k
    cdef unsigned long long u
    if not (ax < 1e12) or (ax < 1e-200 and ax != 0.0):
        return format(x, ".3f")
    y = x * 1e3
    lo = fma(x, 1e3, -y)  # x·10³ = y + lo exactly
    n = rint(y)
    f = y - n
    if f > 0.0 or (f == 0.0 and lo >= 0.0):
        d = 0.5 - f
        if lo > d:
            n += 1.0
        elif lo == d and f != 0.5 and fmod2(n) != 0.0:
            n += 1.0
    else:
        d = -0.5 - f
        if lo < d:
            n -= 1.0
        elif lo == d and f != -0.5 and fmod2(n) != 0.0:
            n -= 1.0
    u = <unsigned long long>fabs(n)
    while u > 0 or nd < 4:  # at least "0" and the three decimals
        digits[nd] = <char>(48 + <int>(u % 10))
        u //= 10
        nd += 1
    if copysign(1.0, x) < 0.0:
        buf[pos] = 45  # '-'
        pos += 1
    for k in range(nd - 1, 2, -1):
        buf[pos] = digits[k]
        pos += 1
    buf[pos] = 46  # '.'
    pos += 1
    for k in range(2, -1, -1):
        buf[pos] = digits[k]
        pos += 1
    return PyUnicode_DecodeASCII(buf, pos, NULL)


cdef inline double fmod2(double n) noexcept:
    # n mod 2 for an integer-valued double (0 or ±1)
    return n - 2.0 * floor(n * 0.5)


cdef double fsum_c(double* v, int count) except? -1.0:
    """``math.fsum`` of ``count`` finite doubles: CPython's algorithm (Shewchuk's partials, then the half-even
    correction across partials); a non-finite partial or a zero sum goes to the builtin (its special cases)."""
    cdef double p[32]
    cdef int n = 0, i, j, k
    cdef double x, y, t, hi, yr, lo = 0.0
    for k in range(count):
        x = v[k]
        if not isfinite(x):
            return _fsum([v[j] for j in range(count)])
        i = 0
        for j in range(n):
            y = p[j]
            if fabs(x) < fabs(y):
                t = x
                x = y
                y = t
            hi = x + y
            yr = hi - x
            lo = y - yr
            if lo != 0.0:
                p[i] = lo
                i += 1
            x = hi
        n = i
        if x != 0.0:
            if not isfinite(x):
                return _fsum([v[j] for j in range(count)])
            p[n] = x
            n += 1
    hi = 0.0
    lo = 0.0
    if n > 0:
        n -= 1
        hi = p[n]
        while n > 0:
            x = hi
            n -= 1
            y = p[n]
            hi = x + y
            yr = hi - x
            lo = y - yr
            if lo != 0.0:
                break
        if n > 0 and ((lo < 0.0 and p[n - 1] < 0.0) or (lo > 0.0 and p[n - 1] > 0.0)):
            y = lo * 2.0
            x = hi + y
            yr = x - hi
            if y == yr:
                hi = x
    if hi == 0.0:
        return _fsum([v[j] for j in range(count)])
    return hi


cdef double floor_to(double x, double step) except? -1.0:
    cdef double y
    if step != 0.0:
        y = x / step + 1e-9
        if isfinite(y):
            return round12(floor(y) * step)
    return _floor_to_py(x, step)  # raises as the reference does (ZeroDivisionError, ValueError, OverflowError)


cdef double ceil_to(double x, double step) except? -1.0:
    cdef double y
    if step != 0.0:
        y = x / step - 1e-9
        if isfinite(y):
            return round12(ceil(y) * step)
    return _ceil_to_py(x, step)


# --- the parameters, read once per QuoterParams / RiskAversionParams object (both frozen) -------------------------


cdef class _Params:
    cdef object p
    cdef double gamma_base, bound_nats, bound_report, beta_dir, horizon_s, max_inv, order_size, spacing_bps
    cdef double size_growth, imbalance_bps, flow_bps, quote_life_s, adverse_bps, maker_fee_bps, taker_fee_bps
    cdef double taker_trigger, skew_flag_ratio, skew_flag_bps
    # 2.0 read at run time: with a constant exponent the C compiler turns pow(x, 2.0) into x·x, which is not
    # always the C library's pow (CPython's ``x ** 2``) to the last bit (e.g. x = 2.35e-37)
    cdef double two
    cdef Py_ssize_t levels
    cdef bint in_spread, by_depth, skew_cap, glft, as_model, glft_checked
    cdef str bound_note, skew_flag_ratio_g, skew_flag_bps_g
    cdef object model, model_code, o_gamma_base, o_horizon_s, o_drift_horizon_s, o_max_inv, o_quote_life_s

    cdef void load(self, p) except *:
        self.p = p
        self.two = 2.0
        self.gamma_base = p.gamma_base
        self.bound_nats = p.gamma_log_bound_nats
        self.bound_note = f" (bound ±{self.bound_nats:g})"  # the end of γ's bound reason, the same each decision
        self.bound_report = p.gamma_bound_report_nats
        self.beta_dir = p.beta_direction_confidence
        self.horizon_s = p.horizon_s
        self.max_inv = p.max_inventory
        self.order_size = p.order_size
        self.levels = int(p.levels)
        self.spacing_bps = p.level_spacing_bps
        self.size_growth = p.size_growth
        self.imbalance_bps = p.imbalance_coef_bps
        self.flow_bps = p.flow_coef_bps
        self.quote_life_s = p.quote_life_s
        self.adverse_bps = p.adverse_selection_bps
        self.maker_fee_bps = p.maker_fee_bps
        self.taker_fee_bps = p.taker_fee_bps
        self.taker_trigger = p.taker_trigger_ratio
        self.skew_flag_ratio = p.skew_flag_ratio
        self.skew_flag_bps = p.skew_flag_bps
        self.skew_flag_ratio_g = f"{self.skew_flag_ratio:g}"  # the skew flag's constants, as its reason prints them
        self.skew_flag_bps_g = f"{self.skew_flag_bps:g}"
        self.in_spread = bool(p.fill_cost_in_spread)
        self.by_depth = bool(p.fill_cost_by_depth)
        self.skew_cap = bool(p.skew_cap_by_fill_cost)
        self.model = p.model
        self.model_code = _MODEL_CODES[p.model]
        self.glft = p.model == "glft"
        self.as_model = p.model == "as"
        # the C GLFT coefficients only for parameters pricing.positive() accepts as they are (plain floats)
        self.glft_checked = type(p.gamma_base) is float and type(p.order_size) is float
        self.o_gamma_base = p.gamma_base
        self.o_horizon_s = p.horizon_s
        self.o_drift_horizon_s = p.drift_horizon_s
        self.o_max_inv = p.max_inventory
        self.o_quote_life_s = p.quote_life_s


cdef _Params _params = _Params()
cdef object _risk = None
cdef double _betas[16]


cdef inline void _use(p, risk) except *:
    global _risk
    cdef Py_ssize_t k
    if p is not _params.p:
        _params.load(p)
    if risk is not _risk:
        for k in range(len(_GAMMA)):
            _betas[k] = getattr(risk, _GAMMA[k][1])
        _risk = risk


# --- the decision ------------------------------------------------------------------------------------------------


def quote(params, risk, market, q, *, tick_size, lot_size):
    """As :func:`apps.engine.quoting.quoter.py_quote` (the same result, exactly)."""
    return c_quote(params, risk, market, q, tick_size, lot_size)


cdef object c_quote(object params, object risk, object market, object q, object tick_size, object lot_size):
    """:func:`quote` at C level (the compiled core calls it so when its module's ``quote`` is this one)."""
    if not _bound:
        _bind()
    _use(params, risk)
    cdef _Params p = _params
    cdef double qd = q
    cdef double tick = tick_size, lot = lot_size
    cdef PyObject* mf[MS_N]
    _ms_read(market, mf)
    cdef _Rec rec_s
    cdef _Rec* rec = &rec_s
    rec.mf = mf
    cdef object extra = _ms(rec, market, MS_EXTRA_INPUTS)
    # the decision's inputs, written as (key, double) pairs and turned into the typed record at the end (_record).
    # Room for every key this call can write: the 13 below, the core's, γ's, the costs, the reservation, the
    # ladder's 5 per level and side, the taker's; on the stack unless a long ladder or many core inputs need more
    cdef PyObject* keys_stack[_REC_STACK]
    cdef double vals_stack[_REC_STACK]
    rec.n = 0
    rec.requested_again = False
    # (InputPairs: every write counts, a repeated key's too, as _put_all writes them all)
    cdef Py_ssize_t n_extra = (<InputPairs>extra).n if type(extra) is InputPairs else len(extra)
    rec.cap = 13 + n_extra + 2 * len(_GAMMA) + 80 + 10 * p.levels
    if rec.cap <= _REC_STACK:
        rec.keys = keys_stack
        rec.vals = vals_stack
        return _quote(p, market, q, qd, tick, lot, tick_size, lot_size, extra, rec)
    rec.keys = <PyObject**>PyMem_Malloc(rec.cap * sizeof(PyObject*))
    rec.vals = <double*>PyMem_Malloc(rec.cap * sizeof(double))
    try:
        if rec.keys == NULL or rec.vals == NULL:
            raise MemoryError()
        return _quote(p, market, q, qd, tick, lot, tick_size, lot_size, extra, rec)
    finally:
        PyMem_Free(rec.keys)
        PyMem_Free(rec.vals)


cdef object _quote(_Params p, market, object q, double qd, double tick, double lot, object tick_size,
                   object lot_size, object extra, _Rec* rec):
    cdef object o_bid = _ms(rec, market, MS_BEST_BID), o_ask = _ms(rec, market, MS_BEST_ASK)
    cdef double bb = o_bid, ba = o_ask
    cdef double mid = 0.5 * (bb + ba)
    cdef object ts_ns = _ms(rec, market, MS_TS_NS)
    cdef object o_kappa = _ms(rec, market, MS_KAPPA), o_a = _ms(rec, market, MS_A_PER_S)
    cdef object o_sig_clean = _ms(rec, market, MS_SIGMA_CLEAN), o_sig_inv = _ms(rec, market, MS_SIGMA_INVENTORY)
    cdef double a_per_s = o_a
    _put(rec, "mid", mid)
    _put(rec, "best_bid", bb)
    _put(rec, "best_ask", ba)
    _put(rec, "q", qd)
    _put(rec, "q_ratio", qd / p.max_inv)
    _put(rec, "max_inventory", p.max_inv)
    _put(rec, "kappa", <double>o_kappa)
    _put(rec, "sigma_spread", <double>o_sig_clean)
    _put(rec, "sigma_inventory", <double>o_sig_inv)
    _put(rec, "a_per_s", a_per_s)
    _put(rec, "tick_size", tick)
    _put(rec, "lot_size", lot)
    _put(rec, "model_requested_code", <double>p.model_code)
    _put_all(rec, extra)
    if not _ms(rec, market, MS_KAPPA_OK) or not _ms(rec, market, MS_SIGMA_OK):
        return _result(ts_ns, (), (), _record(rec), ("estimators not usable",), None, 0.0, _nan)
    if not p.as_model and not (isfinite(a_per_s) and a_per_s > 0):
        return _result(ts_ns, (), (), _record(rec), (f"A not usable: model {p.model} needs the fill intensity",), None, 0.0,
                       _nan)
    cdef list reasons = []
    cdef double gamma = _gamma_step(p, market, qd, rec, reasons)

    # horizon_left_s
    cdef object session_end = _ms(rec, market, MS_SESSION_END_NS)
    cdef object horizon = p.o_horizon_s
    cdef double horizon_source = 0.0
    if session_end:
        left = (session_end - ts_ns) / 1e9
        if left < p.horizon_s:
            horizon = pymax(left, 0.0)
            horizon_source = 1.0

    # _ladder_costs
    cdef object o_adv = _ms(rec, market, MS_ADVERSE_SELECTION)
    cdef double adv_m = o_adv
    cdef double toxicity = _ms(rec, market, MS_FLOW_TOXICITY)
    cdef bint measured = _ms(rec, market, MS_ADVERSE_SELECTION_OK) and isfinite(adv_m)
    cdef double adv_base = adv_m if measured else p.adverse_bps * BPS
    cdef double adverse = adv_base * (1.0 + pymax(toxicity, 0.0))
    cdef double fee = p.maker_fee_bps * BPS
    _put(rec, "adverse_selection_frac", adverse)
    _put(rec, "adverse_selection_base_frac", adv_m if measured else adv_base)
    _put(rec, "adverse_selection_measured", 1.0 if measured else 0.0)
    _put(rec, "maker_fee_frac", fee)
    _put(rec, "quote_life_s", p.quote_life_s)
    cdef double spacing_px = pymax(p.spacing_bps * BPS * mid, tick)
    cdef double half_mkt_px = 0.5 * (ba - bb)
    cdef double a_costs = a_per_s if isfinite(a_per_s) else NAN
    cdef double mean_trade = _ms(rec, market, MS_MEAN_TRADE_SIZE)

    # _reservation_step
    cdef double r, delta, skew, model_skew, slope
    cdef double res[5]
    _reservation_step(
        p, market, qd, q, gamma, horizon, horizon_source, adverse, fee, toxicity, mid, bb, ba, a_per_s, rec, reasons,
        res,
    )
    r, delta, skew, model_skew, slope = res[0], res[1], res[2], res[3], res[4]

    # _skew_flag_step: the model's skew, before the cap
    cdef bint small = fabs(qd) > p.skew_flag_ratio * p.max_inv and fabs(model_skew) < p.skew_flag_bps * BPS
    _put(rec, "skew_too_small", 1.0 if small else 0.0)
    if small:
        reasons.append(
            f"skew_too_small: |q|={fabs(qd):.6g} > {p.skew_flag_ratio_g}·Q_max but |skew|={fmt3(fabs(model_skew) * 1e4)} "
            f"bps < {p.skew_flag_bps_g} bps"
        )

    cdef tuple bids = _ladder(True, p, market, qd, r, delta, spacing_px, adverse, fee, half_mkt_px, a_costs,
                              mean_trade, mid, bb, ba, tick, lot, rec, reasons)
    cdef tuple asks = _ladder(False, p, market, qd, r, delta, spacing_px, adverse, fee, half_mkt_px, a_costs,
                              mean_trade, mid, bb, ba, tick, lot, rec, reasons)

    # _taker_step
    cdef object taker_side = None
    cdef double taker_size = 0.0
    cdef object taker_px = _nan
    cdef double cost, x
    if fabs(qd) >= p.taker_trigger * p.max_inv and qd != 0:
        cost = half_mkt_px / mid + p.taker_fee_bps * BPS
        # taker_reduction_size: x* = |q| − (δ + c)/k cut to [0, |q|]
        x = pymin(pymax(fabs(qd) - (delta + cost) / slope, 0.0), fabs(qd)) if slope > 0 else 0.0
        x = floor_to(x, lot)
        _put(rec, "taker_cost_frac", cost)
        _put(rec, "taker_size_optimal", x)
        if not x < lot - 1e-12:
            reasons.append(
                f"emergency taker: |q|={fabs(qd):.6g} >= {p.taker_trigger:g}·Q_max and the reducing quote would sit "
                f"{(fabs(qd) * slope - delta) * 1e4:.2f} bps beyond the mid, past the crossing "
                f"cost {cost * 1e4:.2f} bps; {'sell' if qd > 0 else 'buy'} {x:g}"
            )
            taker_side = _SELL if qd > 0 else _BUY
            taker_size = x
            taker_px = o_bid if qd > 0 else o_ask
    _put(rec, "taker_size", taker_size)
    return _result(ts_ns, bids, asks, _record(rec), tuple(reasons), taker_side, taker_size, taker_px)


cdef double _gamma_step(_Params p, market, double q, _Rec* rec, list reasons) except? -1.0:
    """γ = γ₀·exp(C_max·tanh(C/C_max)) (:func:`bounded_gamma`), every feature and contribution traced."""
    cdef dict features = _ms(rec, market, MS_RISK_FEATURES)
    cdef double xs[16]
    cdef double contrib[16]
    cdef Py_ssize_t k, nf = len(_GAMMA)
    cdef double dir_x = 0.0, m, s, z
    cdef object v
    cdef PyObject* found
    for k in range(nf):
        if _GAMMA_INV[k]:  # "inventory_utilisation"
            xs[k] = pypow(q / p.max_inv, p.two)
        else:
            if type(features) is dict:  # features.get(name, 0.0), without the method call
                found = PyDict_GetItemWithError(features, <object>PyTuple_GET_ITEM(<object>PyTuple_GET_ITEM(_GAMMA, k), 0))
                v = <object>found if found != NULL else 0.0
            else:
                v = features.get(_GAMMA[k][0], 0.0)
            xs[k] = float(v)
        contrib[k] = _betas[k] * xs[k]
    if _ms(rec, market, MS_DRIFT_OK):  # direction_confidence
        m = _ms(rec, market, MS_DRIFT_MEAN_PER_S)
        s = _ms(rec, market, MS_DRIFT_STD_PER_S)
        if not (q == 0 or not (isfinite(s) and s > 0 and isfinite(m))):
            z = copysign(1.0, q) * m / s
            dir_x = erf(z / sqrt(2.0))
    xs[nf] = dir_x
    contrib[nf] = p.beta_dir * dir_x
    cdef double c = fsum_c(contrib, nf + 1)
    cdef double cb = p.bound_nats * tanh(c / p.bound_nats)
    cdef double gamma = p.gamma_base * m_exp(cb)
    cdef double shrink = c - cb
    _put(rec, "gamma", gamma)
    _put(rec, "gamma_base", p.gamma_base)
    _put(rec, "gamma_full_inventory", gamma * p.max_inv)
    _put(rec, "gamma_log_contribution", c)
    _put(rec, "gamma_log_contribution_bounded", cb)
    _put(rec, "gamma_bound_shrink_nats", shrink)
    _put(rec, "gamma_bound", 1.0 if fabs(shrink) > p.bound_report else 0.0)
    for k in range(nf):
        keys = <tuple>_GAMMA[k]
        _put(rec, keys[2], xs[k])
        _put(rec, keys[3], contrib[k])
    _put(rec, "gamma_x_position_direction_confidence", dir_x)
    _put(rec, "gamma_contrib_position_direction_confidence", contrib[nf])
    if fabs(shrink) > p.bound_report:
        reasons.append(
            f"gamma_bound_binding: model log-contribution {fmt3(c)} nats compressed to {fmt3(cb)}{p.bound_note}"
        )
    return gamma


cdef double _floor_depth(object curve, double fee, double delta) except? -1.0:
    """quoter.fill_cost_floor_depth: the shallowest grid depth where ``d − c(d) − fee ≥ 0``, else ``delta``."""
    cdef Py_ssize_t k, n
    cdef const double* costs
    cdef double step
    cdef double d
    try:
        # its float64 costs, contiguous, and its step (the last curve's are kept: _depthprice); nothing runs Python
        # between the costs' pointer and the loop
        costs = curve_costs(curve, &step, &n)
    except IndexError:  # a curve without a cost: no depth pays
        return delta
    for k in range(n):
        d = <double>k * step
        if d >= delta:
            break
        if d - costs[k] - fee >= 0.0:
            return d
    return delta


cdef int _reservation_step(
    _Params p, market, double q, object q_obj, double gamma, object horizon_obj, double horizon_source,
    double adverse, double fee, double toxicity, double mid, double bb, double ba, double a_per_s, _Rec* rec,
    list reasons, double* out,
) except -1:
    """``r = s·(1 + drift − inventory − funding + imbalance + flow + microprice)`` and δ, the shift bounded by the
    skew cap; ``out`` gets ``(r, δ, skew, the model's skew before the cap, inventory slope)``."""
    cdef double horizon = horizon_obj
    cdef double kappa = _ms(rec, market, MS_KAPPA)
    cdef double sig_spread = _ms(rec, market, MS_SIGMA_CLEAN), sig_inv = _ms(rec, market, MS_SIGMA_INVENTORY)
    cdef double inv, half, c1, c2, a_mid, slope, h, xd
    cdef object model_code, xi_obj, note = ""
    if p.glft:
        # model_terms, GLFT asymptotic: A moved to the mid (glft_a_at_mid), then glft_coefficients
        h = 0.5 * (ba - bb) / mid
        a_mid = a_per_s * m_exp(kappa * pymax(h, 0.0))
        if (p.glft_checked and type(_ms(rec, market, MS_KAPPA)) is float and isfinite(gamma) and gamma > 0 and isfinite(a_mid)
                and a_mid > 0 and isfinite(kappa) and kappa > 0 and p.gamma_base > 0 and isfinite(p.gamma_base)
                and p.order_size > 0 and isfinite(p.order_size)):
            xd = p.gamma_base * p.order_size
            c1 = m_log1p(xd / kappa) / xd
            c2 = m_sqrt(gamma / (2.0 * a_mid * p.order_size * kappa) * m_exp((kappa / xd + 1.0) * m_log1p(xd / kappa)))
        else:  # pricing.positive() raises here
            c1, c2 = _glft_coefficients(gamma, p.o_gamma_base, p.order_size, a_mid, _ms(rec, market, MS_KAPPA))
        half = c1 + 0.5 * p.order_size * sig_spread * c2
        inv = q * sig_inv * c2
        slope = sig_inv * c2
        model_code = 1.0
        xi_obj = p.o_gamma_base
    else:  # AS and the finite-horizon GLFT: the reference's model_terms
        terms = _model_terms(p.p, market, q_obj, gamma, horizon_obj)
        inv = terms.inventory_term
        half = terms.half_spread
        c1 = terms.c1
        c2 = terms.c2
        a_mid = terms.a_mid_per_s
        slope = terms.inventory_slope
        model_code = _MODEL_CODES[terms.model]
        xi_obj = terms.xi
        note = terms.note
    cdef object drift_obj = _ms(rec, market, MS_DRIFT_EXPECTED_RETURN) if _ms(rec, market, MS_DRIFT_OK) else 0.0
    cdef double drift_term = drift_obj
    cdef double funding_term
    cdef object o_fund = _ms(rec, market, MS_FUNDING_RATE), o_fund_s = _ms(rec, market, MS_FUNDING_INTERVAL_S)
    if type(o_fund) is float and type(o_fund_s) is float and <double>o_fund_s != 0.0:
        funding_term = <double>o_fund * horizon / <double>o_fund_s  # float·float/float: the same doubles in C
    else:
        funding_term = o_fund * horizon / o_fund_s  # Python's arithmetic (its errors, another number type's rules)
    cdef double imbalance_skew, flow_skew, micro_term
    cdef object micro_obj, o_book_imb = _ms(rec, market, MS_BOOK_IMBALANCE), o_flow_imb = _ms(rec, market, MS_FLOW_IMBALANCE)
    cdef bint micro_ok = _ms(rec, market, MS_MICROPRICE_OK)
    if micro_ok:
        imbalance_skew = flow_skew = 0.0
        micro_obj = _ms(rec, market, MS_MICROPRICE_OFFSET)
        micro_term = micro_obj
        reasons.append("microprice usable: learned microprice term replaces the imbalance and flow prior skews")
    else:
        imbalance_skew = p.imbalance_bps * BPS * <double>o_book_imb
        flow_skew = p.flow_bps * BPS * <double>o_flow_imb
        micro_term = 0.0
        micro_obj = 0.0
    cdef double shift = drift_term - inv - funding_term + imbalance_skew + flow_skew + micro_term
    cdef double r = mid * (1.0 + shift)
    cdef bint by_depth = p.in_spread and p.by_depth and _ms(rec, market, MS_FILL_COST_CURVE_OK)
    cdef double delta, fill_cost, cost_at_quote
    if by_depth:
        if _depth_priced_c:  # the same function, called at C level
            priced(half, _ms(rec, market, MS_KAPPA), _ms(rec, market, MS_FILL_COST_CURVE), pymax(toxicity, 0.0), fee, &delta,
                   &cost_at_quote)
        else:
            delta, cost_at_quote = _depth_priced(
                half, _ms(rec, market, MS_KAPPA), _ms(rec, market, MS_FILL_COST_CURVE), pymax(toxicity, 0.0), fee
            )
        fill_cost = delta - half
    else:
        fill_cost = pymax(adverse + fee, 0.0) if p.in_spread else 0.0
        delta = half + fill_cost
        cost_at_quote = adverse + fee
    # the skew cap (quoter._reservation_step): |shift| <= δ − d_min, both quotes moved together
    cdef double model_shift = shift
    cdef double cap = NAN
    cdef bint cap_on = by_depth and p.skew_cap
    if cap_on:
        cap = delta - _floor_depth(_ms(rec, market, MS_FILL_COST_CURVE), fee, delta)
        if shift > cap:
            shift = cap
        elif shift < -cap:
            shift = -cap
        if shift != model_shift:
            r = mid * (1.0 + shift)
            reasons.append(_SKEW_CAPPED)
    cdef double skew = -shift
    if note:
        reasons.append(note)
    _put(rec, "model_code", <double>model_code)
    # model_requested_code again, as the reference writes it again: the same value in the same place (index 12)
    rec.vals[_MODEL_REQUESTED_AT] = <double>p.model_code
    rec.requested_again = True
    _put(rec, "spread_gamma", <double>xi_obj)
    _put(rec, "glft_c1_frac", c1)
    _put(rec, "glft_c2", c2)
    _put(rec, "glft_a_mid_per_s", a_mid)
    _put(rec, "half_spread_base_frac", c1)
    _put(rec, "half_spread_risk_frac", half - c1)
    _put(rec, "half_spread_model_frac", half)
    _put(rec, "half_spread_fill_cost_frac", fill_cost)
    _put(rec, "fill_cost_by_depth", 1.0 if by_depth else 0.0)
    _put(rec, "fill_cost_at_quote_frac", cost_at_quote)
    _put(rec, "inventory_slope_frac", slope)
    _put(rec, "horizon_s", horizon)
    _put(rec, "horizon_source", horizon_source)
    _put(rec, "drift_horizon_s", <double>p.o_drift_horizon_s)
    _put(rec, "drift_mean_per_s", <double>_ms(rec, market, MS_DRIFT_MEAN_PER_S))
    _put(rec, "drift_std_per_s", <double>_ms(rec, market, MS_DRIFT_STD_PER_S))
    _put(rec, "drift_ok", 1.0 if _ms(rec, market, MS_DRIFT_OK) else 0.0)
    _put(rec, "inventory_term_frac", inv)
    _put(rec, "drift_term_frac", drift_term)
    _put(rec, "funding_rate", <double>_ms(rec, market, MS_FUNDING_RATE))
    _put(rec, "funding_term_frac", funding_term)
    _put(rec, "book_imbalance", <double>o_book_imb)
    _put(rec, "flow_imbalance", <double>o_flow_imb)
    _put(rec, "imbalance_skew_frac", imbalance_skew)
    _put(rec, "flow_skew_frac", flow_skew)
    _put(rec, "microprice_ok", 1.0 if micro_ok else 0.0)
    _put(rec, "microprice_term_frac", micro_term)
    _put(rec, "reservation_shift_frac", shift)
    _put(rec, "skew_frac", skew)
    _put(rec, "skew_bps", skew * 1e4)
    _put(rec, "skew_model_frac", -model_shift)
    _put(rec, "skew_cap_frac", cap)  # NaN when the cap is off, as the reference's math.nan
    _put(rec, "reservation_price", r)
    _put(rec, "half_spread_frac", delta)
    _put(rec, "half_spread_bps", delta * 1e4)
    _put(rec, "raw_bid", r - delta * mid)
    _put(rec, "raw_ask", r + delta * mid)
    if not _ms(rec, market, MS_DRIFT_OK):
        reasons.append("drift not usable: drift term is 0")
    out[0] = r
    out[1] = delta
    out[2] = skew
    out[3] = -model_shift
    out[4] = slope
    return 0


cdef tuple _ladder(
    bint buy, _Params p, market, double q, double r, double delta, double spacing_px, double adverse, double fee,
    double half_mkt_px, double a_per_s, double mean_trade, double mid, double bb, double ba, double tick,
    double lot, _Rec* rec, list reasons,
):
    """Levels ``0..N−1`` of one side (the reference's ``_ladder_step`` with ``level_price``, ``level_size``,
    ``level_expected_pnl`` and ``fill_probability`` inline)."""
    cdef double left = p.max_inv - q if buy else p.max_inv + q
    cdef bint touch_clamped = False, clamped, have_last = False, at_touch
    cdef double last_px = 0.0, px, size, off, edge, beyond, queue_ahead, pf, epnl, per_unit, d, through, room
    cdef double kappa = _ms(rec, market, MS_KAPPA)
    cdef object queue = _ms(rec, market, MS_BID_QUEUE) if buy else _ms(rec, market, MS_ASK_QUEUE)
    cdef bint queue_levels = type(queue) is QueueLevels  # the compiled core's copy of the book's levels
    if not queue_levels and not isinstance(queue, dict):
        raise TypeError(f"quote: MarketState's queues map price to size (a dict), got {type(queue).__name__}")
    cdef list ladder = []
    cdef Py_ssize_t i
    cdef tuple keys
    cdef object side = _BUY if buy else _SELL
    cdef object o_px, level
    cdef PyObject* found
    cdef bint pf_known = isfinite(a_per_s) and isfinite(mean_trade)
    for i in range(p.levels):
        # level_price
        clamped = False
        if buy:
            px = floor_to(r - (delta * mid + i * spacing_px), tick)
            if px >= ba:
                px = floor_to(ba - tick, tick)
                clamped = True
            if have_last and px >= last_px:
                px = round12(last_px - tick)
        else:
            px = ceil_to(r + (delta * mid + i * spacing_px), tick)
            if px <= bb:
                px = ceil_to(bb + tick, tick)
                clamped = True
            if have_last and px <= last_px:
                px = round12(last_px + tick)
        touch_clamped = touch_clamped or clamped
        last_px = px
        have_last = True
        keys = _level_keys(buy, i)
        if px <= 0:
            reasons.append(f"{keys[0]} dropped: price {px:g} <= 0")
            continue
        # level_size
        size = floor_to(p.order_size * pypow(p.size_growth, <double>i), lot)
        if size > left + 1e-12:
            size = floor_to(pymax(left, 0.0), lot)
        if size < lot - 1e-12:
            reasons.append(
                f"no {'bid' if buy else 'ask'} at L{i}: a fill would take q={q:.6g} past "
                f"{'max_inventory' if buy else '-max_inventory'} {p.max_inv:g} (room {pymax(left, 0.0):.6g})"
            )
            break
        # level_expected_pnl
        off = (mid - px) / mid if buy else (px - mid) / mid
        edge = (r - px) / mid if buy else (px - r) / mid
        beyond = off - half_mkt_px / mid
        o_px = PyFloat_FromDouble(px)
        if queue_levels:
            if not (<QueueLevels>queue).c_get(px, &queue_ahead):
                queue_ahead = 0.0
        else:
            found = PyDict_GetItem(queue, o_px)
            queue_ahead = <object>found if found != NULL else 0.0
        if pf_known:  # fill_probability
            d = pymax(beyond, 0.0)
            through = m_exp(-queue_ahead / mean_trade) if mean_trade > 0 and queue_ahead > 0 else 1.0
            pf = -m_expm1(-a_per_s * m_exp(-kappa * d) * p.quote_life_s * through)
        else:
            pf = NAN
        per_unit = edge - adverse - fee
        epnl = (pf if isfinite(pf) else 1.0) * size * per_unit
        _put(rec, keys[1], px)
        _put(rec, keys[2], size)
        _put(rec, keys[3], pf)
        _put(rec, keys[4], edge * 1e4)
        _put(rec, keys[5], epnl)
        at_touch = px >= bb if buy else px <= ba
        if per_unit < 0 or (at_touch and per_unit <= 0):
            reasons.append(
                f"{keys[0]} dropped: expected P&L {epnl:.3g} {'<=' if at_touch else '<'} 0"
                f"{' at the touch' if at_touch else ''} (edge {edge * 1e4:.3f} bps vs adverse "
                f"{adverse * 1e4:.3f} + fee {fee * 1e4:.3f} bps, p_fill {pf:.3g})"
            )
            continue
        if _LEVEL_SLOTS:  # as _frozen by offset, without its tuple of values
            level = _blank(_Level)
            slot_set(level, _LEVEL_OFF[0], side)
            slot_set(level, _LEVEL_OFF[1], i)
            slot_set(level, _LEVEL_OFF[2], o_px)
            slot_set(level, _LEVEL_OFF[3], size)
            slot_set(level, _LEVEL_OFF[4], off)
            slot_set(level, _LEVEL_OFF[5], pf)
            slot_set(level, _LEVEL_OFF[6], epnl)
        else:
            level = _frozen(_Level, _LEVEL_FIELDS, (side, i, o_px, size, off, pf, epnl), False, NULL)
        ladder.append(level)
        left -= size
    if touch_clamped:
        if buy:
            reasons.append("bid would cross the ask: placed one tick below the best ask (post-only)")
        else:
            reasons.append("ask would cross the bid: placed one tick above the best bid (post-only)")
    return tuple(ladder)


def fsum(values):
    """:func:`fsum_c` from Python, for the tests that hold it to ``math.fsum`` (at most 16 values)."""
    cdef double v[16]
    cdef int n = len(values), k
    if n > 16:
        raise ValueError("at most 16 values")
    for k in range(n):
        v[k] = values[k]
    return fsum_c(v, n)
