# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
# distutils: language = c++
"""Compiled fill model: the same public API and the same results as the references in
:mod:`apps.engine.execution.fillmodel` (``PyLevelBook``, ``PyQueueState`` and the three pure queue rules).

:mod:`apps.engine.execution.fillmodel` is the readable reference and the one import point: its ``LevelBook`` and
``QueueState`` are these classes unless ``MM_PURE_PYTHON=1`` is set or this module did not build
(docs/compiled-core.md).

Layout. Each side of the level book is a sorted array of (key, size) pairs cut into blocks of at most 64 levels
(``TickSide`` in _fillmodel.pxd, the layout of the compiled L2 book): bids keyed by the integer tick, asks by minus
the tick, so on both sides the best level is the last one and needs no cache, and a crossing walk goes backwards
from it. (It replaced a C++ ``std::map``: a diff's level cost a tree walk and, for an added or removed level, an
allocation; here a search, usually inside the previous level's block, and a memmove of at most a block.) The reference's dict plus best-tick cache answers the same questions: its cached best is
always the true best (``tests/engine/execution/test_fillmodel.py`` holds it to a plain dict), so every read here
returns what the reference returns, and every float is the same double (sizes are stored, never computed; sums
add in the reference's order, one plain addition at a time, as CPython 3.11's ``sum()`` does).

Python's ``min``/``max`` of two floats keep the first argument unless the second is strictly smaller/larger; the
inline ``_pymin``/``_pymax`` below do exactly that, so ties and NaN choose the same double as the reference.
"""

cimport cython

from apps.engine._pyfloat cimport pypow as _pypow
from apps.engine._search cimport lower_bound, lower_bound_64_i64
from apps.engine.market._book cimport StagedDiff, staged_diff
from cpython.float cimport PyFloat_AS_DOUBLE, PyFloat_CheckExact
from cpython.ref cimport PyObject
from cpython.tuple cimport PyTuple_CheckExact, PyTuple_GET_SIZE
from libc.math cimport fabs, isinf, isnan, pow, rint
from libc.stdlib cimport free, malloc, realloc
from libc.string cimport memmove

from apps.engine.market.events import Side


cdef extern from "Python.h":
    PyObject* PyTuple_GET_ITEM(object t, Py_ssize_t i)  # borrowed, unchecked: the cpython.tuple one returns an object


cdef extern from *:
    """
    /* rint(x) as an int64 for |x| < 9e18: on x86-64 one cvtsd2si, which rounds in the current rounding mode (MXCSR)
       exactly as rint does (gcc's inline rint without SSE4.1 is a dozen instructions); elsewhere rint itself */
    #if defined(__x86_64__) && defined(__SSE2__)
    #include <emmintrin.h>
    static inline long long mm_rint_i64(double x) { return _mm_cvtsd_si64(_mm_set_sd(x)); }
    #else
    #include <math.h>
    static inline long long mm_rint_i64(double x) { return (long long)rint(x); }
    #endif
    """
    tick_t _rint_tick "mm_rint_i64" (double x) noexcept nogil


cdef extern from "<limits.h>":
    tick_t LLONG_MAX

cdef object _BUY = Side.BUY
cdef object _SELL = Side.SELL

if sizeof(TLevel) != 2 * sizeof(tick_t) or sizeof(double) != sizeof(tick_t):  # _in_block's stride of 2
    raise ImportError("apps.engine.execution._fillmodel: a TLevel is not a tick and a double, packed")
if TBLOCK != 64:  # _in_full's six steps
    raise ImportError("apps.engine.execution._fillmodel: a block is not 64 levels")
cdef tick_t _NO_KEY = LLONG_MAX  # an unused level's key (_in_full): above every tick, |tick| < _TICK_LIMIT
cdef double _TICK_LIMIT = 9.0e18  # |price / tick| beyond this has no int64 tick (the reference's ints are unbounded)

cdef inline double _pymin(double a, double b) noexcept nogil:
    return b if b < a else a


cdef inline double _pymax(double a, double b) noexcept nogil:
    return b if b > a else a


# --- pure rules -------------------------------------------------------------------------------------------------


cdef double _share_ahead(double ahead, double behind, double power) except? -1.0:
    cdef double base, x
    if ahead <= 0.0:
        return 0.0
    if behind <= 0.0:
        return 1.0
    base = behind / ahead
    return 1.0 / (1.0 + _pypow(base, power))


def cancel_share_ahead(double ahead, double behind, double power) -> float:
    """Fraction ``w`` of a cancelled quantity that was ahead of us: ``A^p / (A^p + B^p)`` (see the reference)."""
    return _share_ahead(ahead, behind, power)


def queue_after_trade(double ahead, double remaining, double volume) -> tuple:
    """A trade of ``volume`` at our price: return ``(fill_size, new_ahead)`` (see the reference)."""
    return _pymin(remaining, _pymax(0.0, volume - ahead)), _pymax(0.0, ahead - volume)


def whole_fill(double part, double remaining) -> float:
    """The no-partial-fill rule: ``remaining`` when ``part > 0``, else ``0.0`` (see the reference)."""
    return _whole_fill(part, remaining)


cdef inline bint _is_probabilistic(object params) except -1:
    return params.kind == "probabilistic"


cdef int _level_change(
    double* ahead, double* credit, double prev_size, double new_size, object params
) except -1:
    # queue_after_level_change in place: ``ahead`` and ``credit`` in, the new values out
    cdef double decrease, explained, cancelled, behind, a = ahead[0], c = credit[0]
    if new_size < prev_size:
        decrease = prev_size - new_size
        explained = _pymin(decrease, c)
        c -= explained
        cancelled = decrease - explained
        if cancelled > 0.0 and _is_probabilistic(params):
            behind = _pymax(0.0, prev_size - explained - a)
            a -= cancelled * _share_ahead(a, behind, params.power)
    ahead[0] = _pymax(0.0, _pymin(a, new_size))
    credit[0] = _pymin(c, new_size)
    return 0


def queue_after_level_change(
    double ahead, double prev_size, double new_size, double trade_credit, params
) -> tuple:
    """Update the queue ahead after the displayed size moved ``prev_size → new_size`` (see the reference)."""
    _level_change(&ahead, &trade_credit, prev_size, new_size, params)
    return ahead, trade_credit


# --- per-order queue state --------------------------------------------------------------------------------------


@cython.final
cdef class QueueState:
    """Where one resting order stands in its level's queue (the reference: ``PyQueueState``).

    ``ahead`` and ``level_size`` are ``None`` while unknown (a flag beside a double here).
    """

    # fields: _fillmodel.pxd

    def __init__(self, ahead, level_size, priority, trade_credit=0.0):
        self.ahead = ahead
        self.level_size = level_size
        self.priority = priority
        self.trade_credit = trade_credit

    @property
    def ahead(self):
        return self._ahead if self._ahead_known else None

    @ahead.setter
    def ahead(self, value):
        self._ahead_known = value is not None
        self._ahead = value if value is not None else 0.0

    @property
    def level_size(self):
        return self._level_size if self._level_known else None

    @level_size.setter
    def level_size(self, value):
        self._level_known = value is not None
        self._level_size = value if value is not None else 0.0

    def observe_level(self, double size, params) -> None:
        """A fresh displayed size ``size`` at our level."""
        self._observe(size, params)

    cdef int _observe(self, double size, object params) except -1:
        if not self._ahead_known:
            self._ahead = size  # first sight: join behind everything displayed now
            self._ahead_known = True
        elif not self._level_known:
            self._ahead = _pymin(self._ahead, size)
        else:
            _level_change(&self._ahead, &self.trade_credit, self._level_size, size, params)
        self._level_size = size
        self._level_known = True
        return 0

    def _key(self):
        return (self.ahead, self.level_size, self.priority, self.trade_credit)

    def __eq__(self, other):
        if type(other) is not QueueState:
            return NotImplemented
        return self._key() == (<QueueState>other)._key()

    __hash__ = None

    def __repr__(self):
        return (
            f"QueueState(ahead={self.ahead!r}, level_size={self.level_size!r}, priority={self.priority!r}, "
            f"trade_credit={self.trade_credit!r})"
        )


# --- the level book ---------------------------------------------------------------------------------------------
# Each side is a TickSide (_fillmodel.pxd): the levels ascending by key with the best level last (bids keyed by the
# tick, asks by minus the tick), cut into blocks of at most TBLOCK levels, the layout of the compiled L2 book
# (apps/engine/market/_book.pyx). An update is a search (between blocks, then inside one) and, for an added or
# removed level, one memmove of at most a block; no allocation per level, and the best level is the last one.


cdef inline Py_ssize_t _tail_search(const TickSide* s, tick_t key) noexcept nogil:
    # first block whose last key is >= key (nb when above every key); the end is checked first, then the last
    # block: the touch is there (a book ticker's two levels, our orders' levels)
    cdef Py_ssize_t hi = s.nb
    if hi and s.tails[hi - 1] < key:
        return hi
    if hi == 1 or (hi and s.tails[hi - 2] < key):
        return hi - 1
    return lower_bound(s.tails, 1, hi, key)


cdef inline bint _block_is(const TickSide* s, tick_t key, Py_ssize_t b) noexcept nogil:
    # Is block b the answer of _tail_search below nb: tails[b - 1] < key <= tails[b]?
    return 0 <= b < s.nb and key <= s.tails[b] and (b == 0 or s.tails[b - 1] < key)


cdef inline Py_ssize_t _find_block(const TickSide* s, tick_t key, Py_ssize_t* hint) noexcept nogil:
    # _tail_search, trying the previous level's block first, then its two neighbours (a diff lists a side's levels in
    # price order); a guess is checked in full (_block_is), so a wrong one costs a search, never a wrong block
    cdef Py_ssize_t b = hint[0]
    if _block_is(s, key, b):
        return b
    if _block_is(s, key, b + 1):
        b += 1
    elif _block_is(s, key, b - 1):
        b -= 1
    else:
        b = _tail_search(s, key)
    hint[0] = b
    return b


cdef inline Py_ssize_t _in_block(const TBlock* blk, tick_t key) noexcept nogil:
    # first index in the block whose key is >= key
    return lower_bound(&blk.lv[0].key, 2, blk.n, key)


cdef inline Py_ssize_t _in_full(const TBlock* blk, tick_t key) noexcept nogil:
    # _in_block for the block _find_block chose (its last key is >= key): six unrolled steps over the whole block,
    # whose unused levels hold the key _NO_KEY (kept so by every write: _new_block, the split in _side_put,
    # _side_drop_at)
    return lower_bound_64_i64(&blk.lv[0].key, key)


cdef int _new_block(TickSide* s, Py_ssize_t b) except -1:
    """Insert a new, empty block at position b (the caller fills it before anything reads it)."""
    cdef Py_ssize_t cap
    cdef TBlock** blocks
    cdef tick_t* tails
    if s.nb == s.cap:
        cap = s.cap * 2 if s.cap else 16
        blocks = <TBlock**> realloc(s.blocks, cap * sizeof(TBlock*))
        if blocks == NULL:
            raise MemoryError("LevelBook: cannot grow a book side")
        s.blocks = blocks
        tails = <tick_t*> realloc(s.tails, cap * sizeof(tick_t))
        if tails == NULL:
            raise MemoryError("LevelBook: cannot grow a book side")
        s.tails = tails
        s.cap = cap
    cdef TBlock* blk = <TBlock*> malloc(sizeof(TBlock))
    cdef Py_ssize_t k
    if blk == NULL:
        raise MemoryError("LevelBook: cannot grow a book side")
    blk.n = 0
    for k in range(TBLOCK):  # every unused level's key is _NO_KEY (_in_full)
        blk.lv[k].key = _NO_KEY
    if b < s.nb:
        memmove(s.blocks + b + 1, s.blocks + b, (s.nb - b) * sizeof(TBlock*))
        memmove(s.tails + b + 1, s.tails + b, (s.nb - b) * sizeof(tick_t))
    s.blocks[b] = blk
    s.nb += 1
    return 0


cdef void _clear_side(TickSide* s) noexcept nogil:
    cdef Py_ssize_t b
    for b in range(s.nb):
        free(s.blocks[b])
    s.nb = 0
    s.n = 0


cdef int _side_put(TickSide* s, tick_t key, double size, Py_ssize_t* hint) except -1:
    """Set the size at ``key``, inserting the level if it is absent."""
    cdef Py_ssize_t b, i, half, k
    cdef TBlock* blk
    cdef TBlock* upper
    if s.nb == 0:
        _new_block(s, 0)
        blk = s.blocks[0]
        blk.lv[0].key = key
        blk.lv[0].size = size
        blk.n = 1
        s.tails[0] = key
        s.n = 1
        return 0
    b = _find_block(s, key, hint)
    if b == s.nb:  # above every key: append to the last block
        b -= 1
        blk = s.blocks[b]
        i = blk.n
    else:
        blk = s.blocks[b]
        i = _in_full(blk, key)
        if blk.lv[i].key == key:  # i < blk.n: tails[b] >= key
            blk.lv[i].size = size
            return 0
    if blk.n == TBLOCK:  # full: move its upper half into a new block after it
        _new_block(s, b + 1)
        upper = s.blocks[b + 1]
        half = TBLOCK // 2
        memmove(upper.lv, blk.lv + half, (TBLOCK - half) * sizeof(TLevel))
        upper.n = TBLOCK - half
        blk.n = half
        for k in range(half, TBLOCK):
            blk.lv[k].key = _NO_KEY
        s.tails[b + 1] = upper.lv[upper.n - 1].key
        s.tails[b] = blk.lv[half - 1].key
        if i > half:
            b += 1
            i -= half
            blk = upper
    if i < blk.n:
        memmove(blk.lv + i + 1, blk.lv + i, (blk.n - i) * sizeof(TLevel))
    blk.lv[i].key = key
    blk.lv[i].size = size
    blk.n += 1
    if i == blk.n - 1:
        s.tails[b] = key
    s.n += 1
    return 0


cdef void _side_drop_at(TickSide* s, Py_ssize_t b, Py_ssize_t i) noexcept nogil:
    # remove level i of block b
    cdef TBlock* blk = s.blocks[b]
    blk.n -= 1
    s.n -= 1
    if blk.n == 0:  # never keep an empty block: free it and close the gap
        free(blk)
        s.nb -= 1
        if b < s.nb:
            memmove(s.blocks + b, s.blocks + b + 1, (s.nb - b) * sizeof(TBlock*))
            memmove(s.tails + b, s.tails + b + 1, (s.nb - b) * sizeof(tick_t))
        return
    if i < blk.n:
        memmove(blk.lv + i, blk.lv + i + 1, (blk.n - i) * sizeof(TLevel))
    else:
        s.tails[b] = blk.lv[blk.n - 1].key
    blk.lv[blk.n].key = _NO_KEY  # the place it left is unused now


cdef inline void _side_drop(TickSide* s, tick_t key, Py_ssize_t* hint) noexcept nogil:
    """Remove the level at ``key``; absent is a no-op."""
    cdef Py_ssize_t b = _find_block(s, key, hint), i
    if b == s.nb:
        return
    i = _in_full(s.blocks[b], key)
    if s.blocks[b].lv[i].key == key:
        _side_drop_at(s, b, i)


cdef inline bint _side_get(const TickSide* s, tick_t key, double* out) noexcept nogil:
    cdef Py_ssize_t b = _tail_search(s, key), i
    if b == s.nb:
        return False
    i = _in_block(s.blocks[b], key)
    if s.blocks[b].lv[i].key == key:
        out[0] = s.blocks[b].lv[i].size
        return True
    return False


cdef inline void _side_pop_best(TickSide* s) noexcept nogil:
    _side_drop_at(s, s.nb - 1, s.blocks[s.nb - 1].n - 1)


cdef inline bint _is_bid(object side):
    return side is _BUY


# The level book's per-level helpers, inline in this module (the class's _best/_put methods, declared in
# _fillmodel.pxd for other compiled modules, delegate to them).
cdef inline TickSide* _side_levels(LevelBook book, bint bid) noexcept:
    return &book._bids if bid else &book._asks


cdef inline bint _best_of(LevelBook book, bint bid, tick_t* out) noexcept:
    cdef TickSide* s = _side_levels(book, bid)
    cdef TBlock* blk
    if s.n == 0:
        return False
    blk = s.blocks[s.nb - 1]
    out[0] = blk.lv[blk.n - 1].key if bid else -blk.lv[blk.n - 1].key
    return True


cdef inline bint _absent_level(LevelBook book, bint bid, tick_t tick, double* out) noexcept:
    # the rest of LevelBook._level for a tick with no level: 0.0 where the book knows it is empty, else False
    cdef tick_t best
    if not _best_of(book, bid, &best):
        return False
    out[0] = 0.0
    if (tick > best) if bid else (tick < best):
        return True
    if bid:
        if book.has_depth and book._floor_known and tick >= book._floor:
            return True
    elif book.has_depth and book._ceiling_known and tick <= book._ceiling:
        return True
    return False


cdef inline bint _place_ok(const TickSide* s, tick_t key, Py_ssize_t b, Py_ssize_t i) noexcept nogil:
    # Is level i of block b the place of ``key``: the first level whose key is >= key (b == nb: above every key)?
    # Checked against the levels on both sides of it, so any (b, i) may be asked.
    cdef const TBlock* blk
    if b == s.nb:
        return b > 0 and s.tails[b - 1] < key
    if b < 0 or b > s.nb:
        return False
    blk = s.blocks[b]
    if i < 0 or i >= blk.n or blk.lv[i].key < key:
        return False
    if i > 0:
        return blk.lv[i - 1].key < key
    return b == 0 or s.tails[b - 1] < key


cdef inline int _put_to(LevelBook book, bint bid, tick_t tick, double size) except -1:
    cdef Py_ssize_t hint = 0
    cdef TickSide* side = _side_levels(book, bid)
    cdef TBlock* last
    if size > 0.0:
        if side.n:  # a new size at the best level (most book tickers): no search
            last = side.blocks[side.nb - 1]
            if last.lv[last.n - 1].key == (tick if bid else -tick):
                last.lv[last.n - 1].size = size
                return 0
        _side_put(side, tick if bid else -tick, size, &hint)
    else:
        _side_drop(side, tick if bid else -tick, &hint)
    return 0


cdef inline tick_t _tick_of(LevelBook book, double price) except? -1:
    # LevelBook._tick inline for a diff's levels: the method (and its errors) only for a price beyond the int64 ticks
    cdef double x = price / book.tick_size
    if fabs(x) < _TICK_LIMIT:
        return _rint_tick(x)
    return book._tick(price)


cdef inline bint _pair_of_floats(object level, double* px, double* sz) noexcept:
    # an exact 2-tuple of exact floats (every parsed diff's level) read in place; False sends the caller to Python's
    # unpacking, which converts (or rejects) anything else exactly as before
    cdef PyObject* p
    cdef PyObject* q
    if PyTuple_CheckExact(level) and PyTuple_GET_SIZE(level) == 2:
        p = PyTuple_GET_ITEM(level, 0)
        q = PyTuple_GET_ITEM(level, 1)
        if PyFloat_CheckExact(<object> p) and PyFloat_CheckExact(<object> q):
            px[0] = PyFloat_AS_DOUBLE(<object> p)
            sz[0] = PyFloat_AS_DOUBLE(<object> q)
            return True
    return False


cdef struct _SideScan:
    # what one side of a diff leaves for the bookkeeping after it: its deepest tick (the lowest bid, the highest ask)
    # and its best tick with a positive size (the highest bid, the lowest ask)
    tick_t edge, top
    bint has_edge, has_top


cdef inline int _diff_level(LevelBook book, bint bid, double px, double sz, Py_ssize_t* hint, _SideScan* sc) except -1:
    # one level of a diff: the book's level set (0 removes it), then the side's edge and top
    cdef tick_t t = _tick_of(book, px)
    if bid:
        if sz > 0.0:
            _side_put(&book._bids, t, sz, hint)
        else:
            _side_drop(&book._bids, t, hint)
        if not sc.has_edge or t < sc.edge:
            sc.edge = t
            sc.has_edge = True
        if sz > 0.0 and (not sc.has_top or t > sc.top):
            sc.top = t
            sc.has_top = True
    else:
        if sz > 0.0:
            _side_put(&book._asks, -t, sz, hint)
        else:
            _side_drop(&book._asks, -t, hint)
        if not sc.has_edge or t > sc.edge:
            sc.edge = t
            sc.has_edge = True
        if sz > 0.0 and (not sc.has_top or t < sc.top):
            sc.top = t
            sc.has_top = True
    return 0


@cython.final
cdef class LevelBook:
    """Displayed size per price tick, fed by snapshots, diffs and best bid/ask updates (the reference:
    ``PyLevelBook``; the same rules and answers)."""

    # fields: _fillmodel.pxd

    _SCAN_TICKS = 64  # the reference's constant (unused here: the book always knows its best)

    def __init__(self, double tick_size):
        self.tick_size = tick_size
        self.has_depth = False
        self._floor_known = False
        self._ceiling_known = False

    def __dealloc__(self):
        _clear_side(&self._bids)
        _clear_side(&self._asks)
        free(self._bids.blocks)
        free(self._bids.tails)
        free(self._asks.blocks)
        free(self._asks.tails)

    # --- reads of the C state, for tests and debugging -----------------------------------------------------
    @property
    def bids(self) -> dict:
        """A copy of the bid levels, tick -> size (the reference keeps a dict)."""
        return self._as_dict(True)

    @property
    def asks(self) -> dict:
        """A copy of the ask levels, tick -> size."""
        return self._as_dict(False)

    @property
    def _bid_floor(self):
        return self._floor if self._floor_known else None

    @property
    def _ask_ceiling(self):
        return self._ceiling if self._ceiling_known else None

    cdef dict _as_dict(self, bint bid):
        # ascending ticks, as the std::map this replaced iterated them
        cdef dict out = {}
        cdef TickSide* s = _side_levels(self, bid)
        cdef Py_ssize_t b, i
        if bid:
            for b in range(s.nb):
                for i in range(s.blocks[b].n):
                    out[s.blocks[b].lv[i].key] = s.blocks[b].lv[i].size
        else:
            for b in range(s.nb - 1, -1, -1):
                for i in range(s.blocks[b].n - 1, -1, -1):
                    out[-s.blocks[b].lv[i].key] = s.blocks[b].lv[i].size
        return out

    # --- ticks ---------------------------------------------------------------------------------------------
    cdef tick_t _tick(self, double price) except? -1:
        cdef double x = price / self.tick_size
        if not (fabs(x) < _TICK_LIMIT):
            round(x)  # the reference's error for inf/NaN (OverflowError/ValueError)
            raise OverflowError(f"LevelBook: price {price!r} is beyond the int64 tick range")
        return _rint_tick(x)  # rint: round half to even, as Python's round() (default rounding mode)

    def tick_of(self, double price) -> int:
        return self._tick(price)

    cdef bint _best(self, bint bid, tick_t* out) noexcept:
        return _best_of(self, bid, out)

    def best_tick(self, side):
        cdef tick_t t
        if _best_of(self, _is_bid(side), &t):
            return t
        return None

    def _find_best(self, side):
        return self.best_tick(side)

    cdef int _put(self, bint bid, tick_t tick, double size) except -1:
        return _put_to(self, bid, tick, size)

    def _set(self, side, tick_t tick, double size) -> None:
        _put_to(self, _is_bid(side), tick, size)

    def _levels(self, side) -> dict:
        return self._as_dict(_is_bid(side))

    def _reset(self) -> None:
        _clear_side(&self._bids)
        _clear_side(&self._asks)

    # --- updates -------------------------------------------------------------------------------------------
    def apply_bbo(self, double bid_px, double bid_size, double ask_px, double ask_size) -> None:
        self._apply_bbo(bid_px, bid_size, ask_px, ask_size)

    cdef int _apply_bbo(self, double bid_px, double bid_size, double ask_px, double ask_size) except -1:
        cdef tick_t bt = self._tick(bid_px), at = self._tick(ask_px), b, a
        if not self.has_depth:
            # BBO-only data: levels behind the best are not observed, so we keep none of them
            _clear_side(&self._bids)
            _clear_side(&self._asks)
        while _best_of(self, True, &b) and (b > bt or b >= at):
            _side_pop_best(&self._bids)
        while _best_of(self, False, &a) and (a < at or a <= bt):
            _side_pop_best(&self._asks)
        _put_to(self, True, bt, bid_size)
        _put_to(self, False, at, ask_size)
        return 0

    def apply_snapshot(self, bids, asks) -> None:
        cdef double px, sz
        cdef tick_t t
        cdef bint any_bid = False, any_ask = False
        _clear_side(&self._bids)
        _clear_side(&self._asks)
        for px, sz in bids:
            t = self._tick(px)
            _put_to(self, True, t, sz)
            if not any_bid or t < self._floor:
                self._floor = t
            any_bid = True
        for px, sz in asks:
            t = self._tick(px)
            _put_to(self, False, t, sz)
            if not any_ask or t > self._ceiling:
                self._ceiling = t
            any_ask = True
        self.has_depth = True
        self._floor_known = any_bid
        self._ceiling_known = any_ask

    def apply_diff(self, bids, asks) -> None:
        self._apply_diff(bids, asks)

    cdef int _apply_diff(self, object bids, object asks) except -1:
        # apply_diff at C level (the paper venue calls it per depth update). The levels come from the diff's staging
        # shared with the strategy's L2 book (staged_diff: every parsed diff's), else are read one by one as before.
        cdef StagedDiff* st = staged_diff(bids, asks)
        cdef double px, sz
        cdef tick_t b, a
        cdef _SideScan sc
        cdef Py_ssize_t hint = 0, i
        cdef object level
        # bids: the deepest tick the diff covered, and its best positive level (for the crossing rule below)
        sc.has_edge = False
        sc.has_top = False
        if st != NULL:
            for i in range(st.nb):
                _diff_level(self, True, st.lv[i].key, st.lv[i].size, &hint, &sc)
        else:
            for level in bids:
                if not _pair_of_floats(level, &px, &sz):
                    px, sz = level
                _diff_level(self, True, px, sz, &hint, &sc)
        if self.has_depth and sc.has_edge and (not self._floor_known or sc.edge < self._floor):
            self._floor = sc.edge
            self._floor_known = True
        cdef bint has_top_bid = sc.has_top
        cdef tick_t top_bid = sc.top
        sc.has_edge = False
        sc.has_top = False
        hint = self._asks.nb - 1  # asks come lowest first: the first is near the touch, in the last block
        if st != NULL:
            for i in range(st.nb, st.nb + st.na):
                _diff_level(self, False, st.lv[i].key, st.lv[i].size, &hint, &sc)
        else:
            for level in asks:
                if not _pair_of_floats(level, &px, &sz):
                    px, sz = level
                _diff_level(self, False, px, sz, &hint, &sc)
        if self.has_depth and sc.has_edge and (not self._ceiling_known or sc.edge > self._ceiling):
            self._ceiling = sc.edge
            self._ceiling_known = True
        # the diff is the newest word on the levels it sets: opposite levels it crosses are stale
        if _best_of(self, True, &b) and _best_of(self, False, &a) and b >= a:
            if has_top_bid:
                while _best_of(self, False, &a) and a <= top_bid:
                    _side_pop_best(&self._asks)
            if sc.has_top:
                while _best_of(self, True, &b) and b >= sc.top:
                    _side_pop_best(&self._bids)
        return 0

    # --- reads ---------------------------------------------------------------------------------------------
    def level_size(self, side, tick_t tick):
        """Displayed size at ``tick`` on ``side``: 0.0 if known empty, ``None`` if unknown."""
        cdef double size
        if self._level(_is_bid(side), tick, &size):
            return size
        return None

    cdef bint _level(self, bint bid, tick_t tick, double* out) noexcept:
        # level_size at C level: False for the reference's None (unknown), else the size in ``out``
        if _side_get(_side_levels(self, bid), tick if bid else -tick, out):
            return True
        return _absent_level(self, bid, tick, out)

    cdef bint _level_near(self, bint bid, tick_t tick, double* out, Py_ssize_t* pb, Py_ssize_t* pi) noexcept:
        # _level, with the caller's memory of where the level was: (pb, pi) is checked to be the level's place before
        # it is used (_place_ok), else the level is searched for and its place remembered there. A resting order keeps
        # one: its level mostly stays where it was between two book changes.
        cdef TickSide* s = _side_levels(self, bid)
        cdef tick_t key = tick if bid else -tick
        cdef Py_ssize_t b = pb[0], i = pi[0]
        if not _place_ok(s, key, b, i):
            b = _tail_search(s, key)
            i = _in_block(s.blocks[b], key) if b < s.nb else 0
            pb[0] = b
            pi[0] = i
        if b < s.nb and s.blocks[b].lv[i].key == key:
            out[0] = s.blocks[b].lv[i].size
            return True
        return _absent_level(self, bid, tick, out)

    def crossing_levels(self, side, tick_t tick) -> list:
        """Opposite levels at or through our price (asks ``<= tick`` for a bid), best first."""
        cdef list out = []
        cdef bint bid = _is_bid(side)
        cdef TickSide* s = _side_levels(self, not bid)
        cdef Py_ssize_t b = s.nb - 1, i
        cdef tick_t t
        while b >= 0:  # from the best level (the last) away from the touch
            i = s.blocks[b].n - 1
            while i >= 0:
                t = -s.blocks[b].lv[i].key if bid else s.blocks[b].lv[i].key
                if (t > tick) if bid else (t < tick):
                    return out
                out.append((t, s.blocks[b].lv[i].size))
                i -= 1
            b -= 1
        return out

    def crossing_size(self, side, tick_t tick):
        """Opposite-side size at or through our price; 0 when the book does not reach it."""
        cdef bint any_level
        cdef double total = self._crossing(_is_bid(side), tick, &any_level)
        if not any_level:
            return 0  # the reference's sum() over nothing is the int 0
        return total

    cdef double _crossing(self, bint bid, tick_t tick, bint* any_level) noexcept:
        # crossing_size at C level; ``any_level`` False where the reference returns the int 0. The sizes are added
        # best first, one plain addition at a time, as the reference's sum() over crossing_levels.
        cdef double total = 0.0
        cdef TickSide* s = _side_levels(self, not bid)
        cdef Py_ssize_t b = s.nb - 1, i
        cdef tick_t t
        any_level[0] = False
        while b >= 0:
            i = s.blocks[b].n - 1
            while i >= 0:
                t = -s.blocks[b].lv[i].key if bid else s.blocks[b].lv[i].key
                if (t > tick) if bid else (t < tick):
                    return total
                total += s.blocks[b].lv[i].size
                any_level[0] = True
                i -= 1
            b -= 1
        return total
