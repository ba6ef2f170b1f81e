# The compiled fill model's classes, for other compiled modules to cimport (apps/engine/execution/_paper.pyx calls the
# level book and the queue state at C level on every market event). The Python API is in _fillmodel.pyx.
cimport cython

ctypedef long long tick_t


# One side of the level book (_fillmodel.pyx): its levels ascending by key, the best level last (bids keyed by the
# tick, asks by minus the tick), cut into blocks of at most TBLOCK levels; tails[b] is block b's last key.
cdef struct TLevel:
    tick_t key
    double size


cdef enum:
    TBLOCK = 64


cdef struct TBlock:
    Py_ssize_t n
    TLevel lv[TBLOCK]


cdef struct TickSide:
    TBlock** blocks
    tick_t* tails
    Py_ssize_t nb  # blocks in use (none is empty)
    Py_ssize_t cap  # room in blocks/tails
    Py_ssize_t n  # levels


cdef inline double _whole_fill(double part, double remaining) noexcept:
    # the no-partial-fill rule (fillmodel.whole_fill): an order the market reached fills whole, else not at all
    return remaining if part > 0.0 else 0.0


@cython.final
cdef class QueueState:
    cdef double _ahead, _level_size
    cdef bint _ahead_known, _level_known
    cdef public object priority
    cdef public double trade_credit

    cdef int _observe(self, double size, object params) except -1


@cython.final
cdef class LevelBook:
    cdef TickSide _bids, _asks
    cdef readonly double tick_size
    cdef public bint has_depth
    cdef tick_t _floor, _ceiling  # deepest bid / ask tick the depth data has covered
    cdef bint _floor_known, _ceiling_known

    cdef dict _as_dict(self, bint bid)
    cdef tick_t _tick(self, double price) except? -1
    cdef bint _best(self, bint bid, tick_t* out) noexcept
    cdef int _put(self, bint bid, tick_t tick, double size) except -1
    cdef int _apply_bbo(self, double bid_px, double bid_size, double ask_px, double ask_size) except -1
    cdef int _apply_diff(self, object bids, object asks) except -1
    cdef bint _level(self, bint bid, tick_t tick, double* out) noexcept
    cdef bint _level_near(self, bint bid, tick_t tick, double* out, Py_ssize_t* pb, Py_ssize_t* pi) noexcept
    cdef double _crossing(self, bint bid, tick_t tick, bint* any_level) noexcept
