# The compiled L2 book's layout and class, for other compiled modules to cimport (apps/engine/_core.pyx reads the
# decision's book signals and applies depth diffs at C level). The Python API and the code are in _book.pyx.

cdef struct Level:
    double key  # price for bids, -price for asks
    double size


cdef enum:
    BLOCK = 64  # levels per block: a move inside one is at most 1 KB


cdef struct Block:
    Py_ssize_t n
    Level lv[BLOCK]


cdef struct BookSide:
    # The side's levels in ascending key order, cut into blocks of at most BLOCK levels: block b's levels all sort
    # before block b+1's, and no block is empty. tails[b] is block b's last key, for the search between blocks.
    Block** blocks
    double* tails
    Py_ssize_t nb  # blocks in use
    Py_ssize_t cap  # room in blocks/tails
    Py_ssize_t n  # levels


cdef class QueueLevels  # declared below


# One diff's levels as C doubles, staged once for both books that apply it (the paper venue's LevelBook first, then
# the strategy's OrderBook, in the same driver step): see staged_diff in _book.pyx.
cdef struct StagedDiff:
    Level* lv  # the bids, then the asks, in the diff's order; key is the level's price here (not a side's key)
    Py_ssize_t nb  # bid levels
    Py_ssize_t na  # ask levels
    bint ok  # every level passes the book's check (a positive finite price, a finite size >= 0)
    Py_ssize_t cap  # room in lv


cdef StagedDiff* staged_diff(object bids, object asks) noexcept


cdef class OrderBook:
    cdef BookSide _bid
    cdef BookSide _ask
    cdef Level* _tmp  # one diff's levels as doubles, bids then asks (staged before the book is touched)
    cdef Py_ssize_t _tmp_cap
    cdef bint _checked
    cdef public object last_update_id
    cdef public object ts_exch_ns
    cdef public object ts_local_ns

    cdef Level* _staged(self, tuple bids, tuple asks) except NULL
    cdef _load(self, bids, asks)
    cpdef clear(self)
    cpdef apply_snapshot(self, snap)
    cpdef apply_update(self, upd)
    cpdef best_bid(self)
    cpdef best_ask(self)
    cpdef list bids(self, n=*)
    cpdef list asks(self, n=*)
    cpdef double size_within(self, double mid, double within_frac) except? -1.0
    cpdef double size_at(self, side, double price)
    cdef QueueLevels queue(self, bint bid, Py_ssize_t n_dict, Py_ssize_t n_sum, double* total)


cdef class QueueLevels:
    cdef double* _px  # the levels' prices and sizes, best first: the inline buffers or, past 16 levels, malloc'd
    cdef double* _sz
    cdef double _buf_px[16]
    cdef double _buf_sz[16]
    cdef readonly Py_ssize_t n

    cdef int _reserve(self, Py_ssize_t n) except -1
    cdef bint c_get(self, double price, double* out) noexcept
    cdef Py_ssize_t _find(self, object price) except -2
