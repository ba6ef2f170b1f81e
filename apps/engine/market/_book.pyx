# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Compiled L2 book: the same public API and the same results as :class:`apps.engine.market.book.PyOrderBook`.

:mod:`apps.engine.market.book` is the readable reference and the one import point: its ``OrderBook`` is this class
unless ``MM_PURE_PYTHON=1`` is set or this module did not build (docs/compiled-core.md).

Layout. Each side is two parallel C arrays of doubles, keys and sizes, with the keys ascending and the best level
*last*: bids under ``price``, asks under ``-price`` (exactly the reference's key lists, so every read walks the
same levels in the same order and the sums add the same doubles in the same order). An add or a remove is a
binary search plus a ``memmove`` of the levels behind it, which are few because nearly all changes happen near
the touch, i.e. near the end of the arrays. No Python object is kept per level: a level costs 16 bytes instead of
a dict entry, a list slot and two float objects (~100 bytes), and the loops touch contiguous memory.

Why not a dense per-tick array: the book does not know the tick size (the Binance parser does not carry it), and
a sorted array is within a few ns of it near the touch while never needing a range check or a re-centre. Keys are
compared as doubles, exactly like the reference's dict and list (prices are never NaN here: the level check
rejects them; ``checked=False`` is only for levels the caller has validated, as in the reference).
"""

cimport cython
from libc.stdlib cimport free, malloc, realloc
from libc.string cimport memmove

from apps.engine.estimators.book_signals import check_band
from apps.engine.market.events import DepthUpdate, EventError, Side

cdef object _BUY = Side.BUY
cdef double _INF = float("inf")


cdef struct BookSide:
    double* keys  # ascending; the best level is the last
    double* sizes
    Py_ssize_t n
    Py_ssize_t cap


cdef inline Py_ssize_t _bisect_left(const double* a, Py_ssize_t n, double x) noexcept nogil:
    # First index whose key is >= x (``bisect.bisect_left``). A fast path for the end of the array, where the
    # book changes most: the touch and the few levels before it.
    cdef Py_ssize_t lo = 0, hi = n, mid
    if n and a[n - 1] < x:
        return n
    while lo < hi:
        mid = (lo + hi) >> 1
        if a[mid] < x:
            lo = mid + 1
        else:
            hi = mid
    return lo


cdef int _grow(BookSide* s) except -1:
    cdef Py_ssize_t cap = s.cap * 2 if s.cap else 256
    cdef double* k = <double*> realloc(s.keys, cap * sizeof(double))
    if k == NULL:
        raise MemoryError("OrderBook: cannot grow a book side")
    s.keys = k
    cdef double* z = <double*> realloc(s.sizes, cap * sizeof(double))
    if z == NULL:
        raise MemoryError("OrderBook: cannot grow a book side")
    s.sizes = z
    s.cap = cap
    return 0


cdef inline int _put(BookSide* s, double key, double size) except -1:
    """Set the size at ``key``, inserting the level if it is absent."""
    cdef Py_ssize_t i = _bisect_left(s.keys, s.n, key)
    if i < s.n and s.keys[i] == key:
        s.sizes[i] = size
        return 0
    if s.n == s.cap:
        _grow(s)
    if i < s.n:
        memmove(s.keys + i + 1, s.keys + i, (s.n - i) * sizeof(double))
        memmove(s.sizes + i + 1, s.sizes + i, (s.n - i) * sizeof(double))
    s.keys[i] = key
    s.sizes[i] = size
    s.n += 1
    return 0


cdef inline void _drop(BookSide* s, double key) noexcept nogil:
    """Remove the level at ``key``; absent is a no-op."""
    cdef Py_ssize_t i = _bisect_left(s.keys, s.n, key)
    if i < s.n and s.keys[i] == key:
        s.n -= 1
        if i < s.n:
            memmove(s.keys + i, s.keys + i + 1, (s.n - i) * sizeof(double))
            memmove(s.sizes + i, s.sizes + i + 1, (s.n - i) * sizeof(double))


cdef inline double _size_of(const BookSide* s, double key) noexcept nogil:
    cdef Py_ssize_t i = _bisect_left(s.keys, s.n, key)
    if i < s.n and s.keys[i] == key:
        return s.sizes[i]
    return 0.0


cdef inline double _tail_sum(const BookSide* s, Py_ssize_t i) noexcept nogil:
    # Ascending order from i, one plain double addition at a time, as CPython 3.11's sum() adds floats.
    cdef double acc = 0.0
    while i < s.n:
        acc += s.sizes[i]
        i += 1
    return acc


cdef inline tuple _as_tuple(object levels):
    return levels if type(levels) is tuple else tuple(levels)


cdef int _check_levels(tuple levels) except -1:
    # The reference's rule: comparisons that NaN fails, so NaN is caught too.
    cdef object lvl
    cdef double px, sz
    for lvl in levels:
        px, sz = lvl
        if px > 0.0 and px < _INF and sz >= 0.0 and sz < _INF:
            continue
        p_obj, s_obj = lvl
        raise EventError(f"OrderBook: bad level price={p_obj!r} size={s_obj!r}")
    return 0


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

    cdef BookSide _bid
    cdef BookSide _ask
    cdef bint _checked
    cdef public object last_update_id
    cdef public object ts_exch_ns
    cdef public object ts_local_ns

    def __cinit__(self, *, bint checked=True):
        self._checked = checked
        self.last_update_id = 0
        self.ts_exch_ns = 0
        self.ts_local_ns = 0

    def __dealloc__(self):
        free(self._bid.keys)
        free(self._bid.sizes)
        free(self._ask.keys)
        free(self._ask.sizes)

    def __reduce__(self):
        return _rebuild, (
            bool(self._checked), self.bids(), self.asks(), self.last_update_id, self.ts_exch_ns, self.ts_local_ns
        )

    cdef _load(self, bids, asks):
        cdef double px, sz
        for px, sz in bids:
            _put(&self._bid, px, sz)
        for px, sz in asks:
            _put(&self._ask, -px, sz)

    # --- writes -------------------------------------------------------------------------------------------

    cpdef clear(self):
        self._bid.n = 0
        self._ask.n = 0
        self.last_update_id = 0

    cpdef apply_snapshot(self, snap):
        """Replace the whole book with ``snap`` (zero-size levels in it are skipped).

        Raises :class:`~apps.engine.market.events.EventError` on a bad level, before changing anything.
        """
        cdef tuple bids = _as_tuple(snap.bids)
        cdef tuple asks = _as_tuple(snap.asks)
        cdef double px, sz
        if self._checked:
            _check_levels(bids)
            _check_levels(asks)
        self.clear()
        for px, sz in bids:
            if sz > 0:
                _put(&self._bid, px, sz)
        for px, sz in asks:
            if sz > 0:
                _put(&self._ask, -px, sz)
        self.last_update_id = snap.last_update_id
        self.ts_exch_ns = snap.ts_exch_ns
        self.ts_local_ns = snap.ts_local_ns

    cpdef apply_update(self, upd):
        """Apply a diff: each level's size is the new absolute size; 0 removes the level.

        Same contract as the reference: levels in order, removing an absent level is a no-op, both sides are
        checked before either is touched.
        """
        cdef tuple bids = _as_tuple(upd.bids)
        cdef tuple asks = _as_tuple(upd.asks)
        cdef double px, sz
        if self._checked:
            _check_levels(bids)
            _check_levels(asks)
        for px, sz in bids:
            if sz > 0.0:
                _put(&self._bid, px, sz)
            else:
                _drop(&self._bid, px)
        for px, sz in asks:
            if sz > 0.0:
                _put(&self._ask, -px, sz)
            else:
                _drop(&self._ask, -px)
        last = upd.last_update_id
        if last:
            self.last_update_id = last
        self.ts_exch_ns = upd.ts_exch_ns
        self.ts_local_ns = upd.ts_local_ns

    def set_level(self, side, price, size):
        """Set one level's absolute size (0 deletes); like the reference, it is a diff with both clocks 0."""
        if side is _BUY:
            self.apply_update(DepthUpdate(0, 0, ((price, size),), ()))
        else:
            self.apply_update(DepthUpdate(0, 0, (), ((price, size),)))

    # --- reads --------------------------------------------------------------------------------------------

    cpdef best_bid(self):
        """``(price, size)`` of the highest bid, or None when the bid side is empty."""
        cdef Py_ssize_t n = self._bid.n
        if n == 0:
            return None
        return (self._bid.keys[n - 1], self._bid.sizes[n - 1])

    cpdef best_ask(self):
        """``(price, size)`` of the lowest ask, or None when the ask side is empty."""
        cdef Py_ssize_t n = self._ask.n
        if n == 0:
            return None
        return (-self._ask.keys[n - 1], self._ask.sizes[n - 1])

    cpdef list bids(self, n=None):
        """The best ``n`` bid levels (all when None), best (highest) first."""
        cdef Py_ssize_t m = _count(self._bid.n, n), j, i = self._bid.n - 1
        cdef list out = [None] * m
        for j in range(m):
            out[j] = (self._bid.keys[i - j], self._bid.sizes[i - j])
        return out

    cpdef list asks(self, n=None):
        """The best ``n`` ask levels (all when None), best (lowest) first."""
        cdef Py_ssize_t m = _count(self._ask.n, n), j, i = self._ask.n - 1
        cdef list out = [None] * m
        for j in range(m):
            out[j] = (-self._ask.keys[i - j], self._ask.sizes[i - j])
        return out

    cpdef double size_within(self, double mid, double within_frac) except? -1.0:
        """Total base size resting within ``within_frac`` of ``mid`` on both sides, every level counted; the
        reference's rule, including its 1e-12·mid tolerance."""
        check_band(mid, within_frac)
        cdef double reach = within_frac * mid + 1e-12 * mid
        cdef Py_ssize_t ib = _bisect_left(self._bid.keys, self._bid.n, mid - reach)
        cdef Py_ssize_t ia = _bisect_left(self._ask.keys, self._ask.n, -(mid + reach))
        return _tail_sum(&self._bid, ib) + _tail_sum(&self._ask, ia)

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
        return 0.5 * (self._bid.keys[self._bid.n - 1] - self._ask.keys[self._ask.n - 1])

    @property
    def spread(self):
        """``best ask − best bid`` in quote currency, or None when a side is empty."""
        if self._bid.n == 0 or self._ask.n == 0:
            return None
        return -self._ask.keys[self._ask.n - 1] - self._bid.keys[self._bid.n - 1]

    @property
    def is_crossed(self):
        """True when best bid >= best ask (crossed or locked: not a resting state of a real book)."""
        return bool(
            self._bid.n and self._ask.n and self._bid.keys[self._bid.n - 1] >= -self._ask.keys[self._ask.n - 1]
        )
