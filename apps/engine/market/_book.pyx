# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Compiled L2 book: the same public API and the same results as :class:`apps.engine.market.book.PyOrderBook`.

:mod:`apps.engine.market.book` is the readable reference and the one import point: its ``OrderBook`` is this class
unless ``MM_PURE_PYTHON=1`` is set or this module did not build (docs/compiled-core.md).

Layout. Each side is one C array of (key, size) pairs of doubles, ascending by key, with the best level *last*: bids under ``price``, asks under ``-price`` (exactly the reference's key lists, so every read walks the
same levels in the same order and the sums add the same doubles in the same order). An add or a remove is a
binary search plus one ``memmove`` of the levels behind it, which are few because nearly all changes happen near
the touch, i.e. near the end of the array. A diff's levels are first read into a scratch array of doubles
in one pass (checked there), so the book is only touched once the whole diff is known to be good. No Python object is kept per level: a level costs 16 bytes instead of
a dict entry, a list slot and two float objects (~100 bytes), and the loops touch contiguous memory.

Why not a dense per-tick array: the book does not know the tick size (the Binance parser does not carry it), and
a sorted array is within a few ns of it near the touch while never needing a range check or a re-centre. Keys are
compared as doubles, exactly like the reference's dict and list (prices are never NaN here: the level check
rejects them; ``checked=False`` is only for levels the caller has validated, as in the reference).
"""

cimport cython
from libc.stdlib cimport free, malloc, realloc
from cpython.float cimport PyFloat_AS_DOUBLE, PyFloat_CheckExact
from cpython.ref cimport PyObject
from cpython.tuple cimport PyTuple_CheckExact, PyTuple_GET_SIZE
from libc.math cimport INFINITY, isfinite
from libc.string cimport memmove

from apps.engine._search cimport lower_bound, lower_bound_64_f64
from apps.engine._slots cimport field, slot_offset


cdef extern from "Python.h":
    PyObject* PyTuple_GET_ITEM(object t, Py_ssize_t i)  # borrowed, unchecked: the cpython.tuple one returns an object


from apps.engine.estimators.book_signals import check_band
from apps.engine.market.events import DepthUpdate, EventError, Side

cdef object _BUY = Side.BUY
# a diff's fields by slot offset (DepthUpdate is a frozen, slotted dataclass; field() reads any other class by name)
cdef object _DEPTH = DepthUpdate
cdef Py_ssize_t _D_BIDS = slot_offset(DepthUpdate, "bids"), _D_ASKS = slot_offset(DepthUpdate, "asks")
cdef Py_ssize_t _D_LAST = slot_offset(DepthUpdate, "last_update_id")
cdef Py_ssize_t _D_EXCH = slot_offset(DepthUpdate, "ts_exch_ns"), _D_LOCAL = slot_offset(DepthUpdate, "ts_local_ns")
cdef double _INF = float("inf")

if sizeof(Level) != 2 * sizeof(double):  # _bisect_block reads a block's keys as every other double
    raise ImportError("apps.engine.market._book: a Level is not two packed doubles")
if BLOCK != 64:  # _in_block's six steps
    raise ImportError("apps.engine.market._book: a block is not 64 levels")


# Level, Block and BookSide, and OrderBook's fields, are declared in _book.pxd (for the core to cimport).


cdef inline Py_ssize_t _bisect_keys(const double* a, Py_ssize_t n, double x) noexcept nogil:
    # lower_bound (apps/engine/_search.pxd), with the end checked first: the touch lives there.
    if n and a[n - 1] < x:
        return n
    return lower_bound(a, 1, n, x)


cdef inline Py_ssize_t _bisect_block(const Block* blk, double x) noexcept nogil:
    return lower_bound(&blk.lv[0].key, 2, blk.n, x)


cdef inline Py_ssize_t _in_block(const Block* blk, double x) noexcept nogil:
    # _bisect_block for the block _find_block chose (its last key is >= x): six unrolled steps over the whole block,
    # whose unused levels hold the key +inf (kept so by every write: _insert_block, the split in _put, _drop)
    return lower_bound_64_f64(&blk.lv[0].key, x)


cdef inline Py_ssize_t _find_block(const BookSide* s, double key, Py_ssize_t* hint) noexcept nogil:
    # _bisect_keys(s.tails, s.nb, key): the first block whose last key is >= key (nb: none is), starting from the
    # block of the previous level. The answer is at or below the previous one's when the keys fall from level to level:
    # when tails[b] >= key, it is the first j <= b with tails[j] >= key, found by stepping down over the blocks it skips
    # (a few; the tails ascend), or past four steps by a search of tails[:b]. Anything else (a level above the previous
    # one's block) is the search over every tail: the guess never changes the answer. (Binance's diffs list both sides
    # lowest price first: the asks' keys, -price, fall and take the walk; the bids' keys rise, so a bid level is found
    # in the previous one's block at no step, or by the full search. Tried on the venue's book, whose levels come in
    # the same order: a walk both ways took its diff loop from 81.1M to 80.3M instructions a run, not worth its code.)
    cdef Py_ssize_t b = hint[0], stop
    if b >= s.nb and s.nb > 0 and key <= s.tails[s.nb - 1]:
        b = s.nb - 1  # the previous level was above every key (appended to the last block): start from the last one
    if 0 <= b < s.nb and key <= s.tails[b]:
        stop = b - 4 if b > 4 else 0
        while b > stop and s.tails[b - 1] >= key:
            b -= 1
        if b == stop and b > 0 and s.tails[b - 1] >= key:  # more to skip: tails[b - 1] >= key, the answer is below b
            b = lower_bound(s.tails, 1, b, key)
    else:
        b = _bisect_keys(s.tails, s.nb, key)
    hint[0] = b
    return b


cdef int _insert_block(BookSide* s, Py_ssize_t b) except -1:
    """Insert a new, empty block at position b (the caller fills it before anything reads it)."""
    cdef Py_ssize_t cap
    cdef Block** blocks
    cdef double* tails
    if s.nb == s.cap:
        cap = s.cap * 2 if s.cap else 64
        blocks = <Block**> realloc(s.blocks, cap * sizeof(Block*))
        if blocks == NULL:
            raise MemoryError("OrderBook: cannot grow a book side")
        s.blocks = blocks
        tails = <double*> realloc(s.tails, cap * sizeof(double))
        if tails == NULL:
            raise MemoryError("OrderBook: cannot grow a book side")
        s.tails = tails
        s.cap = cap
    cdef Block* blk = <Block*> malloc(sizeof(Block))
    cdef Py_ssize_t k
    if blk == NULL:
        raise MemoryError("OrderBook: cannot grow a book side")
    blk.n = 0
    for k in range(BLOCK):  # every unused level's key is +inf (_in_block)
        blk.lv[k].key = INFINITY
    if b < s.nb:
        memmove(s.blocks + b + 1, s.blocks + b, (s.nb - b) * sizeof(Block*))
        memmove(s.tails + b + 1, s.tails + b, (s.nb - b) * sizeof(double))
    s.blocks[b] = blk
    s.nb += 1
    return 0


cdef void _free_side(BookSide* s) noexcept nogil:
    cdef Py_ssize_t b
    for b in range(s.nb):
        free(s.blocks[b])
    s.nb = 0
    s.n = 0


cdef int _first(BookSide* s, double key, double size) except -1:
    """The first level of an empty side."""
    _insert_block(s, 0)
    cdef Block* blk = s.blocks[0]
    blk.lv[0].key = key
    blk.lv[0].size = size
    blk.n = 1
    s.tails[0] = key
    s.n = 1
    return 0


cdef int _insert_at(BookSide* s, Py_ssize_t b, Py_ssize_t i, double key, double size) except -1:
    """Insert the level (key, size) at place ``i`` of block ``b`` (b < nb, i <= its count: where the searches put an
    absent key), splitting the block when it is full. Out of line: an update of a resting level (three in four of a
    diff's levels) stays in :func:`_put`'s inlined lines."""
    cdef Py_ssize_t half, k
    cdef Block* blk = s.blocks[b]
    cdef Block* upper
    if blk.n == BLOCK:  # full: move its upper half into a new block after it
        _insert_block(s, b + 1)
        upper = s.blocks[b + 1]
        half = BLOCK // 2
        memmove(upper.lv, blk.lv + half, (BLOCK - half) * sizeof(Level))
        upper.n = BLOCK - half
        blk.n = half
        for k in range(half, BLOCK):
            blk.lv[k].key = INFINITY
        s.tails[b + 1] = upper.lv[upper.n - 1].key
        s.tails[b] = blk.lv[half - 1].key
        if i > half:
            b += 1
            i -= half
            blk = upper
    if i < blk.n:
        memmove(blk.lv + i + 1, blk.lv + i, (blk.n - i) * sizeof(Level))
    blk.lv[i].key = key
    blk.lv[i].size = size
    blk.n += 1
    if i == blk.n - 1:
        s.tails[b] = key
    s.n += 1
    return 0


cdef inline int _put(BookSide* s, double key, double size, Py_ssize_t* hint) except -1:
    """Set the size at ``key``, inserting the level if it is absent (``hint``: see :func:`_find_block`)."""
    cdef Py_ssize_t b, i
    cdef Block* blk
    if s.nb == 0:
        return _first(s, key, size)
    b = _find_block(s, key, hint)
    if b == s.nb:  # above every key: append to the last block
        b -= 1
        return _insert_at(s, b, s.blocks[b].n, key, size)
    blk = s.blocks[b]
    i = _in_block(blk, key)
    if blk.lv[i].key == key:  # i < blk.n: tails[b] >= key
        blk.lv[i].size = size
        return 0
    return _insert_at(s, b, i, key, size)


cdef void _remove_at(BookSide* s, Py_ssize_t b, Py_ssize_t i) noexcept nogil:
    """Remove level ``i`` of block ``b`` (out of line, as :func:`_insert_at`)."""
    cdef Block* blk = s.blocks[b]
    blk.n -= 1
    s.n -= 1
    if blk.n == 0:  # never keep an empty block: free it and close the gap
        free(blk)
        s.nb -= 1
        if b < s.nb:
            memmove(s.blocks + b, s.blocks + b + 1, (s.nb - b) * sizeof(Block*))
            memmove(s.tails + b, s.tails + b + 1, (s.nb - b) * sizeof(double))
        return
    if i < blk.n:
        memmove(blk.lv + i, blk.lv + i + 1, (blk.n - i) * sizeof(Level))
    else:
        s.tails[b] = blk.lv[blk.n - 1].key
    blk.lv[blk.n].key = INFINITY  # the place it left is unused now


cdef inline void _drop(BookSide* s, double key, Py_ssize_t* hint) noexcept nogil:
    """Remove the level at ``key``; absent is a no-op (``hint``: see :func:`_find_block`)."""
    cdef Py_ssize_t b = _find_block(s, key, hint), i
    if b == s.nb:
        return
    i = _in_block(s.blocks[b], key)
    if s.blocks[b].lv[i].key == key:
        _remove_at(s, b, i)


cdef inline double _size_of(const BookSide* s, double key) noexcept nogil:
    cdef Py_ssize_t b = _bisect_keys(s.tails, s.nb, key), i
    if b == s.nb:
        return 0.0
    i = _bisect_block(s.blocks[b], key)
    if s.blocks[b].lv[i].key == key:
        return s.blocks[b].lv[i].size
    return 0.0


cdef inline double _sum_from(const BookSide* s, double x) noexcept nogil:
    # Sizes of every level with key >= x, in ascending key order, one plain double addition at a time: the same
    # doubles added in the same order as the reference's sum() over its ascending key list (CPython 3.11). A block's
    # levels are walked through local pointers (the loop read the block through the side at every level).
    cdef double acc = 0.0
    cdef Py_ssize_t b = _bisect_keys(s.tails, s.nb, x), i
    cdef const Level* p
    cdef const Level* end
    if b == s.nb:
        return acc
    i = _bisect_block(s.blocks[b], x)
    while b < s.nb:
        p = s.blocks[b].lv + i
        end = s.blocks[b].lv + s.blocks[b].n
        while p < end:
            acc += p.size
            p += 1
        b += 1
        i = 0
    return acc


cdef inline Level* _best(const BookSide* s) noexcept nogil:
    cdef Block* blk = s.blocks[s.nb - 1]
    return &blk.lv[blk.n - 1]


cdef list _walk(const BookSide* s, Py_ssize_t m, double sign):
    # the best m levels, best first: backwards from the end of the last block
    cdef list out = [None] * m
    cdef Py_ssize_t j = 0, b = s.nb - 1, i
    while j < m:
        i = s.blocks[b].n - 1
        while i >= 0 and j < m:
            out[j] = (sign * s.blocks[b].lv[i].key, s.blocks[b].lv[i].size)
            i -= 1
            j += 1
        b -= 1
    return out


cdef inline tuple _as_tuple(object levels):
    return levels if type(levels) is tuple else tuple(levels)


cdef int _stage(tuple levels, Level* out, bint checked) except -1:
    """Read ``levels`` into ``out`` as C doubles, in one pass; with ``checked``, the reference's rule
    (comparisons that NaN fails, so NaN is caught too). Nothing in the book changes here, so a bad level anywhere
    leaves the book as it was.

    A level that is exactly a 2-tuple of exact floats (every parsed diff's) is read in place, without the generic
    unpacking; anything else (lists, ints, float subclasses, wrong lengths) takes Python's unpacking, which also
    raises Python's errors for it."""
    cdef Py_ssize_t i
    cdef double px, sz
    cdef object level
    cdef PyObject* p
    cdef PyObject* q
    for i in range(PyTuple_GET_SIZE(levels)):
        level = <object> PyTuple_GET_ITEM(levels, i)
        if PyTuple_CheckExact(level) and PyTuple_GET_SIZE(level) == 2:
            p = PyTuple_GET_ITEM(level, 0)
            q = PyTuple_GET_ITEM(level, 1)
            if PyFloat_CheckExact(<object> p) and PyFloat_CheckExact(<object> q):
                px = PyFloat_AS_DOUBLE(<object> p)
                sz = PyFloat_AS_DOUBLE(<object> q)
            else:
                px, sz = level
        else:
            px, sz = level
        if checked and not (px > 0.0 and px < _INF and sz >= 0.0 and sz < _INF):
            p_obj, s_obj = level
            raise EventError(f"OrderBook: bad level price={p_obj!r} size={s_obj!r}")
        out[i].key = px
        out[i].size = sz
    return 0


# --- a diff's levels staged once for both books ------------------------------------------------------------------
# The paper venue's LevelBook and the strategy's OrderBook apply the same DepthUpdate one after the other; each read its
# levels' tuples again (~50 instructions a level). staged_diff reads them once into C doubles and keeps them for the
# very tuples it read: a second call with the same two tuple objects gets the same array back. That is safe only
# because nothing in such a diff can change: the cache takes the two tuples only when both are exact tuples whose
# levels are all exact 2-tuples of exact floats (immutable all the way down), and it holds references to them, so
# their identities cannot be reused for other objects while it answers for them. Anything else (lists, other level
# shapes, float subclasses) is not staged here: NULL, and each book takes its own path, with its own conversions and
# errors, as before. A different event object carrying the same tuple objects carries the same levels, so it hits.

cdef StagedDiff _staged
cdef object _staged_bids = None  # the tuples _staged holds the levels of (None: it holds none)
cdef object _staged_asks = None


cdef inline bint _read_pairs(tuple levels, Level* out, bint* ok) noexcept:
    # each level read in place into out (key = the price) and checked by the book's rule into ok; False (out half
    # written) at the first level that is not an exact 2-tuple of exact floats
    cdef Py_ssize_t i
    cdef PyObject* level
    cdef PyObject* p
    cdef PyObject* q
    cdef double px, sz
    cdef bint good = ok[0]
    for i in range(PyTuple_GET_SIZE(levels)):
        level = PyTuple_GET_ITEM(levels, i)
        if not (PyTuple_CheckExact(<object> level) and PyTuple_GET_SIZE(<object> level) == 2):
            return False
        p = PyTuple_GET_ITEM(<object> level, 0)
        q = PyTuple_GET_ITEM(<object> level, 1)
        if not (PyFloat_CheckExact(<object> p) and PyFloat_CheckExact(<object> q)):
            return False
        px = PyFloat_AS_DOUBLE(<object> p)
        sz = PyFloat_AS_DOUBLE(<object> q)
        good = good and px > 0.0 and px < _INF and sz >= 0.0 and sz < _INF  # _stage's check
        out[i].key = px
        out[i].size = sz
    ok[0] = good
    return True


cdef StagedDiff* staged_diff(object bids, object asks) noexcept:
    """``bids`` and ``asks`` (a diff's two sides) as C doubles, or NULL when they are not all exact floats in exact
    tuples (the caller then reads them its own way). The same array for the same two tuple objects (see above); it
    stays valid until the next call with other tuples, so a caller uses it before anything can stage another diff."""
    global _staged_bids, _staged_asks
    cdef Py_ssize_t nb, na
    cdef Level* lv
    cdef bint ok = True
    if bids is _staged_bids and asks is _staged_asks and bids is not None:
        return &_staged
    if type(bids) is not tuple or type(asks) is not tuple:
        return NULL
    nb = PyTuple_GET_SIZE(bids)
    na = PyTuple_GET_SIZE(asks)
    _staged_bids = None  # the array is about to hold other levels
    _staged_asks = None
    if nb + na > _staged.cap or _staged.lv == NULL:
        lv = <Level*> realloc(_staged.lv, (nb + na + 64) * sizeof(Level))
        if lv == NULL:
            return NULL
        _staged.lv = lv
        _staged.cap = nb + na + 64
    if not (_read_pairs(bids, _staged.lv, &ok) and _read_pairs(asks, _staged.lv + nb, &ok)):
        return NULL
    _staged.nb = nb
    _staged.na = na
    _staged.ok = ok
    _staged_bids = bids
    _staged_asks = asks
    return &_staged


cdef inline Py_ssize_t _count(Py_ssize_t n, object limit) except -2:
    # The reference reads ``reversed(keys)[:limit]``: Python slice rules, negative limits included.
    if limit is None:
        return n
    cdef Py_ssize_t m = limit
    if m < 0:
        m = n + m
        if m < 0:
            m = 0
    return m if m < n else n


def _rebuild(checked, bids, asks, last_update_id, ts_exch_ns, ts_local_ns):
    """Unpickle helper (``copy``/``pickle`` go through :meth:`OrderBook.__reduce__`)."""
    cdef OrderBook book = OrderBook(checked=checked)
    book._load(bids, asks)
    book.last_update_id = last_update_id
    book.ts_exch_ns = ts_exch_ns
    book.ts_local_ns = ts_local_ns
    return book


@cython.final
cdef class OrderBook:
    """Price-level (L2) book; see :class:`apps.engine.market.book.PyOrderBook` for the contract.

    ``OrderBook(checked=False)`` skips the level checks of :meth:`apply_update` and :meth:`apply_snapshot`: only
    for levels the caller has already validated (the importer's parser does, line by line).
    """

    # fields: _book.pxd

    def __cinit__(self, *, bint checked=True):
        self._checked = checked
        self.last_update_id = 0
        self.ts_exch_ns = 0
        self.ts_local_ns = 0

    def __dealloc__(self):
        _free_side(&self._bid)
        _free_side(&self._ask)
        free(self._bid.blocks)
        free(self._bid.tails)
        free(self._ask.blocks)
        free(self._ask.tails)
        free(self._tmp)

    def __reduce__(self):
        return _rebuild, (
            bool(self._checked), self.bids(), self.asks(), self.last_update_id, self.ts_exch_ns, self.ts_local_ns
        )

    cdef Level* _staged(self, tuple bids, tuple asks) except NULL:
        cdef Py_ssize_t need = len(bids) + len(asks)
        cdef Level* tmp
        if need > self._tmp_cap:
            tmp = <Level*> realloc(self._tmp, (need + 64) * sizeof(Level))
            if tmp == NULL:
                raise MemoryError("OrderBook: cannot stage a diff")
            self._tmp, self._tmp_cap = tmp, need + 64
        if self._tmp == NULL:  # an empty diff on a new book: keep one valid pointer
            self._tmp = <Level*> malloc(64 * sizeof(Level))
            if self._tmp == NULL:
                raise MemoryError("OrderBook: cannot stage a diff")
            self._tmp_cap = 64
        _stage(bids, self._tmp, self._checked)
        _stage(asks, self._tmp + len(bids), self._checked)
        return self._tmp

    cdef _load(self, bids, asks):
        cdef double px, sz
        cdef Py_ssize_t hint = 0
        for px, sz in bids:
            _put(&self._bid, px, sz, &hint)
        hint = 0
        for px, sz in asks:
            _put(&self._ask, -px, sz, &hint)

    # --- writes -------------------------------------------------------------------------------------------

    cpdef clear(self):
        _free_side(&self._bid)
        _free_side(&self._ask)
        self.last_update_id = 0

    cpdef apply_snapshot(self, snap):
        """Replace the whole book with ``snap`` (zero-size levels in it are skipped).

        Raises :class:`~apps.engine.market.events.EventError` on a bad level, before changing anything.
        """
        cdef tuple bids = _as_tuple(snap.bids)
        cdef tuple asks = _as_tuple(snap.asks)
        cdef Py_ssize_t nb = len(bids), i, hint = 0
        cdef Level* lv = self._staged(bids, asks)
        self.clear()
        for i in range(nb):
            if lv[i].size > 0:
                _put(&self._bid, lv[i].key, lv[i].size, &hint)
        hint = 0
        for i in range(nb, nb + len(asks)):
            if lv[i].size > 0:
                _put(&self._ask, -lv[i].key, lv[i].size, &hint)
        self.last_update_id = snap.last_update_id
        self.ts_exch_ns = snap.ts_exch_ns
        self.ts_local_ns = snap.ts_local_ns

    cpdef apply_update(self, upd):
        """Apply a diff: each level's size is the new absolute size; 0 removes the level.

        Same contract as the reference: levels in order, removing an absent level is a no-op, both sides are
        checked before either is touched.
        """
        cdef object bids_in = field(upd, _DEPTH, _D_BIDS, "bids")
        cdef object asks_in = field(upd, _DEPTH, _D_ASKS, "asks")
        cdef StagedDiff* st = staged_diff(bids_in, asks_in)  # usually the venue's staging of this very diff
        cdef tuple bids, asks
        cdef Py_ssize_t nb, na, i, hint = 0
        cdef Level* lv
        if st != NULL and (st.ok or not self._checked):
            lv, nb, na = st.lv, st.nb, st.na
        else:  # any other shape, or a bad level: the book's own staging, with its conversions and its error
            bids = _as_tuple(bids_in)
            asks = _as_tuple(asks_in)
            nb, na = len(bids), len(asks)
            lv = self._staged(bids, asks)
        hint = self._bid.nb - 1  # the walk starts from the last block (the touch's) on both sides
        for i in range(nb):
            if lv[i].size > 0.0:
                _put(&self._bid, lv[i].key, lv[i].size, &hint)
            else:
                _drop(&self._bid, lv[i].key, &hint)
        hint = self._ask.nb - 1
        for i in range(nb, nb + na):
            if lv[i].size > 0.0:
                _put(&self._ask, -lv[i].key, lv[i].size, &hint)
            else:
                _drop(&self._ask, -lv[i].key, &hint)
        last = field(upd, _DEPTH, _D_LAST, "last_update_id")
        if last:
            self.last_update_id = last
        self.ts_exch_ns = field(upd, _DEPTH, _D_EXCH, "ts_exch_ns")
        self.ts_local_ns = field(upd, _DEPTH, _D_LOCAL, "ts_local_ns")

    def set_level(self, side, price, size):
        """Set one level's absolute size (0 deletes); like the reference, it is a diff with both clocks 0."""
        if side is _BUY:
            self.apply_update(DepthUpdate(0, 0, ((price, size),), ()))
        else:
            self.apply_update(DepthUpdate(0, 0, (), ((price, size),)))

    # --- reads --------------------------------------------------------------------------------------------

    cpdef best_bid(self):
        """``(price, size)`` of the highest bid, or None when the bid side is empty."""
        if self._bid.n == 0:
            return None
        cdef Level* lv = _best(&self._bid)
        return (lv.key, lv.size)

    cpdef best_ask(self):
        """``(price, size)`` of the lowest ask, or None when the ask side is empty."""
        if self._ask.n == 0:
            return None
        cdef Level* lv = _best(&self._ask)
        return (-lv.key, lv.size)

    cpdef list bids(self, n=None):
        """The best ``n`` bid levels (all when None), best (highest) first."""
        return _walk(&self._bid, _count(self._bid.n, n), 1.0)

    cpdef list asks(self, n=None):
        """The best ``n`` ask levels (all when None), best (lowest) first."""
        return _walk(&self._ask, _count(self._ask.n, n), -1.0)

    cpdef double size_within(self, double mid, double within_frac) except? -1.0:
        """Total base size resting within ``within_frac`` of ``mid`` on both sides, every level counted; the
        reference's rule, including its 1e-12·mid tolerance."""
        if not (isfinite(mid) and mid > 0 and isfinite(within_frac) and within_frac >= 0):
            check_band(mid, within_frac)  # the reference's check, for its error (the C test above is the same one)
        cdef double reach = within_frac * mid + 1e-12 * mid
        return _sum_from(&self._bid, mid - reach) + _sum_from(&self._ask, -(mid + reach))

    cpdef double size_at(self, side, double price):
        """Resting size at ``price`` on ``side`` (0 when there is no level)."""
        if side is _BUY:
            return _size_of(&self._bid, price)
        return _size_of(&self._ask, -price)

    @property
    def n_bid_levels(self):
        return self._bid.n

    @property
    def n_ask_levels(self):
        return self._ask.n

    @property
    def mid(self):
        """``(best bid + best ask) / 2``, or None when a side is empty."""
        if self._bid.n == 0 or self._ask.n == 0:
            return None
        return 0.5 * (_best(&self._bid).key - _best(&self._ask).key)

    @property
    def spread(self):
        """``best ask − best bid`` in quote currency, or None when a side is empty."""
        if self._bid.n == 0 or self._ask.n == 0:
            return None
        return -_best(&self._ask).key - _best(&self._bid).key

    @property
    def is_crossed(self):
        """True when best bid >= best ask (crossed or locked: not a resting state of a real book)."""
        return bool(
            self._bid.n and self._ask.n and _best(&self._bid).key >= -_best(&self._ask).key
        )

    cdef QueueLevels queue(self, bint bid, Py_ssize_t n_dict, Py_ssize_t n_sum, double* total):
        """For the core's decision (C only): ``levels[:n_dict]`` as a :class:`QueueLevels` (the mapping
        ``dict(levels[:n_dict])`` would be, a copy of the same floats, best first, without a float hashed per level)
        and, in ``total``, the sum of ``levels[:n_sum]``'s sizes (0.0, then one ``+=`` each, best first: the order
        ``sum`` adds a list in), where ``levels`` is :meth:`bids`/:meth:`asks` of ``max(n_dict, n_sum)``."""
        cdef const BookSide* s = &self._bid if bid else &self._ask
        cdef double sign = 1.0 if bid else -1.0
        cdef Py_ssize_t m = n_dict if n_dict > n_sum else n_sum, j = 0, b = s.nb - 1, i
        if m > s.n:
            m = s.n
        if m < 0:
            m = 0
        cdef QueueLevels out = QueueLevels.__new__(QueueLevels)
        out._reserve(n_dict if n_dict < m else m)
        cdef double acc = 0.0
        while j < m:
            i = s.blocks[b].n - 1
            while i >= 0 and j < m:
                if j < n_sum:
                    acc += s.blocks[b].lv[i].size
                if j < n_dict:
                    out._px[j] = sign * s.blocks[b].lv[i].key
                    out._sz[j] = s.blocks[b].lv[i].size
                i -= 1
                j += 1
            b -= 1
        out.n = n_dict if n_dict < m else m
        total[0] = acc
        return out

    def queue_levels(self, side, n):
        """The best ``n`` levels of ``side`` as a read-only :class:`QueueLevels` mapping, what
        ``dict(book.bids(n))`` (or ``asks``) holds: the decision's queue."""
        cdef double total
        if type(n) is not int or n < 0:
            raise ValueError(f"OrderBook.queue_levels: n must be an int >= 0, got {n!r}")
        return self.queue(side is _BUY, n, 0, &total)


# --- a queue snapshot -------------------------------------------------------------------------------------------------
cdef enum:
    _QUEUE_INLINE = 16  # levels held without an allocation (a decision reads its ladder's levels + 5)


cdef class QueueLevels:
    """A read-only ``{price: size}`` mapping of a book side's best levels, best first, copied when it is made: what
    ``dict(book.bids(n))`` holds, as the decision's ``MarketState.bid_queue``/``ask_queue``. A price is found as the
    dict finds a float key (equal values; an int equal to a price finds it too). It compares equal to a dict with
    the same items. Made by :meth:`OrderBook.queue` only."""

    # fields: _book.pxd

    def __cinit__(self):
        self._px = self._buf_px
        self._sz = self._buf_sz
        self.n = 0

    def __dealloc__(self):
        if self._px != self._buf_px:
            free(self._px)
            free(self._sz)

    cdef int _reserve(self, Py_ssize_t n) except -1:
        if n <= _QUEUE_INLINE:
            return 0
        cdef double* px = <double*> malloc(n * sizeof(double))
        cdef double* sz = <double*> malloc(n * sizeof(double))
        if px == NULL or sz == NULL:
            free(px)
            free(sz)
            raise MemoryError("QueueLevels: no memory for the levels")
        self._px = px
        self._sz = sz
        return 0

    cdef bint c_get(self, double price, double* out) noexcept:
        """The size at ``price`` (a double) into ``out``: False when no level has that price."""
        cdef Py_ssize_t j
        for j in range(self.n):
            if self._px[j] == price:
                out[0] = self._sz[j]
                return True
        return False

    cdef Py_ssize_t _find(self, object price) except -2:
        # the index of the level whose price equals ``price`` as a dict key would (-1: none)
        cdef Py_ssize_t j
        cdef double x
        if PyFloat_CheckExact(price):
            x = PyFloat_AS_DOUBLE(price)
            for j in range(self.n):
                if self._px[j] == x:
                    return j
            return -1
        hash(price)  # an unhashable key raises TypeError, as in a dict
        for j in range(self.n):
            if self._px[j] == price:
                return j
        return -1

    def get(self, price, default=None):
        cdef Py_ssize_t j = self._find(price)
        return self._sz[j] if j >= 0 else default

    def __getitem__(self, price):
        cdef Py_ssize_t j = self._find(price)
        if j < 0:
            raise KeyError(price)
        return self._sz[j]

    def __contains__(self, price):
        return self._find(price) >= 0

    def __len__(self):
        return self.n

    def __iter__(self):
        return iter(self.keys())

    def keys(self):
        return [self._px[j] for j in range(self.n)]

    def values(self):
        return [self._sz[j] for j in range(self.n)]

    def items(self):
        return [(self._px[j], self._sz[j]) for j in range(self.n)]

    def as_dict(self):
        """The levels as the dict ``dict(book.bids(n))`` would be."""
        return {self._px[j]: self._sz[j] for j in range(self.n)}

    def __eq__(self, other):
        if isinstance(other, QueueLevels):
            return self.as_dict() == (<QueueLevels>other).as_dict()
        if isinstance(other, _Mapping):
            return self.as_dict() == dict(other.items())
        return NotImplemented

    def __ne__(self, other):
        eq = self.__eq__(other)
        return eq if eq is NotImplemented else not eq

    __hash__ = None

    def __repr__(self):
        return f"QueueLevels({self.as_dict()!r})"

    def __reduce__(self):
        return dict, (self.items(),)


from collections.abc import Mapping as _Mapping

_Mapping.register(QueueLevels)
