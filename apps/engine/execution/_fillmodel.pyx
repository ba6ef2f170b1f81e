# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
# distutils: language = c++
"""Compiled fill model: the same public API and the same results as the references in
:mod:`apps.engine.execution.fillmodel` (``PyLevelBook``, ``PyQueueState`` and the three pure queue rules).

:mod:`apps.engine.execution.fillmodel` is the readable reference and the one import point: its ``LevelBook`` and
``QueueState`` are these classes unless ``MM_PURE_PYTHON=1`` is set or this module did not build
(docs/compiled-core.md).

Layout. Each side of the level book is a C++ ``std::map`` from the integer tick to the displayed size (a double):
ordered, so the best level is the map's first (asks) or last (bids) key and needs no cache, and a crossing walk is
an in-order iteration. The reference's dict plus best-tick cache answers the same questions: its cached best is
always the true best (``tests/engine/execution/test_fillmodel.py`` holds it to a plain dict), so every read here
returns what the reference returns, and every float is the same double (sizes are stored, never computed; sums
add in the reference's order, one plain addition at a time, as CPython 3.11's ``sum()`` does).

Python's ``min``/``max`` of two floats keep the first argument unless the second is strictly smaller/larger; the
inline ``_pymin``/``_pymax`` below do exactly that, so ties and NaN choose the same double as the reference.
"""

cimport cython

from apps.engine._pyfloat cimport pypow as _pypow
from cython.operator cimport dereference as deref, preincrement as inc
from libc.math cimport fabs, isinf, isnan, pow, rint
from libcpp.utility cimport pair

from apps.engine.market.events import Side

cdef object _BUY = Side.BUY
cdef object _SELL = Side.SELL
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


cdef inline bint _is_bid(object side):
    return side is _BUY


# The level book's per-level helpers, inline in this module (the class's _side/_best/_put methods, declared in
# _fillmodel.pxd for other compiled modules, delegate to them).
cdef inline Levels* _side_levels(LevelBook book, bint bid) noexcept:
    return &book._bids if bid else &book._asks


cdef inline bint _best_of(LevelBook book, bint bid, tick_t* out) noexcept:
    cdef Levels* levels = _side_levels(book, bid)
    if levels.empty():
        return False
    if bid:
        out[0] = deref(levels.rbegin()).first
    else:
        out[0] = deref(levels.begin()).first
    return True


cdef inline void _put_to(LevelBook book, bint bid, tick_t tick, double size) noexcept:
    if size > 0.0:
        _side_levels(book, bid)[0][tick] = size
    else:
        _side_levels(book, bid).erase(tick)


@cython.final
cdef class LevelBook:
    """Displayed size per price tick, fed by snapshots, diffs and best bid/ask updates (the reference:
    ``PyLevelBook``; the same rules and answers)."""

    # fields: _fillmodel.pxd

    _SCAN_TICKS = 64  # the reference's constant (unused here: the map always knows its best)

    def __init__(self, double tick_size):
        self.tick_size = tick_size
        self.has_depth = False
        self._floor_known = False
        self._ceiling_known = False

    # --- reads of the C state, for tests and debugging -----------------------------------------------------
    @property
    def bids(self) -> dict:
        """A copy of the bid levels, tick -> size (the reference keeps a dict)."""
        return self._as_dict(&self._bids)

    @property
    def asks(self) -> dict:
        """A copy of the ask levels, tick -> size."""
        return self._as_dict(&self._asks)

    @property
    def _bid_floor(self):
        return self._floor if self._floor_known else None

    @property
    def _ask_ceiling(self):
        return self._ceiling if self._ceiling_known else None

    cdef dict _as_dict(self, Levels* levels):
        cdef dict out = {}
        cdef Levels.iterator it = levels.begin()
        while it != levels.end():
            out[deref(it).first] = deref(it).second
            inc(it)
        return out

    # --- ticks ---------------------------------------------------------------------------------------------
    cdef tick_t _tick(self, double price) except? -1:
        cdef double x = price / self.tick_size
        if not (fabs(x) < _TICK_LIMIT):
            round(x)  # the reference's error for inf/NaN (OverflowError/ValueError)
            raise OverflowError(f"LevelBook: price {price!r} is beyond the int64 tick range")
        return <tick_t>rint(x)  # round half to even, as Python's round() (default rounding mode)

    def tick_of(self, double price) -> int:
        return self._tick(price)

    cdef Levels* _side(self, bint bid) noexcept:
        return _side_levels(self, bid)

    cdef bint _best(self, bint bid, tick_t* out) noexcept:
        return _best_of(self, bid, out)

    def best_tick(self, side):
        cdef tick_t t
        if _best_of(self, _is_bid(side), &t):
            return t
        return None

    def _find_best(self, side):
        return self.best_tick(side)

    cdef void _put(self, bint bid, tick_t tick, double size) noexcept:
        _put_to(self, bid, tick, size)

    def _set(self, side, tick_t tick, double size) -> None:
        _put_to(self, _is_bid(side), tick, size)

    def _levels(self, side) -> dict:
        return self._as_dict(_side_levels(self, _is_bid(side)))

    def _reset(self) -> None:
        self._bids.clear()
        self._asks.clear()

    # --- updates -------------------------------------------------------------------------------------------
    def apply_bbo(self, double bid_px, double bid_size, double ask_px, double ask_size) -> None:
        self._apply_bbo(bid_px, bid_size, ask_px, ask_size)

    cdef int _apply_bbo(self, double bid_px, double bid_size, double ask_px, double ask_size) except -1:
        cdef tick_t bt = self._tick(bid_px), at = self._tick(ask_px), b, a
        if not self.has_depth:
            # BBO-only data: levels behind the best are not observed, so we keep none of them
            self._bids.clear()
            self._asks.clear()
        while _best_of(self, True, &b) and (b > bt or b >= at):
            self._bids.erase(b)
        while _best_of(self, False, &a) and (a < at or a <= bt):
            self._asks.erase(a)
        _put_to(self, True, bt, bid_size)
        _put_to(self, False, at, ask_size)
        return 0

    def apply_snapshot(self, bids, asks) -> None:
        cdef double px, sz
        cdef tick_t t
        cdef bint any_bid = False, any_ask = False
        self._bids.clear()
        self._asks.clear()
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
        cdef double px, sz
        cdef tick_t t, edge = 0, top_bid = 0, top_ask = 0, b, a
        cdef bint has_edge, has_top_bid = False, has_top_ask = False
        # bids: the deepest tick the diff covered, and its best positive level (for the crossing rule below)
        has_edge = False
        for px, sz in bids:
            t = self._tick(px)
            _put_to(self, True, t, sz)
            if not has_edge or t < edge:
                edge = t
                has_edge = True
            if sz > 0.0 and (not has_top_bid or t > top_bid):
                top_bid = t
                has_top_bid = True
        if self.has_depth and has_edge and (not self._floor_known or edge < self._floor):
            self._floor = edge
            self._floor_known = True
        has_edge = False
        for px, sz in asks:
            t = self._tick(px)
            _put_to(self, False, t, sz)
            if not has_edge or t > edge:
                edge = t
                has_edge = True
            if sz > 0.0 and (not has_top_ask or t < top_ask):
                top_ask = t
                has_top_ask = True
        if self.has_depth and has_edge and (not self._ceiling_known or edge > self._ceiling):
            self._ceiling = edge
            self._ceiling_known = True
        # the diff is the newest word on the levels it sets: opposite levels it crosses are stale
        if _best_of(self, True, &b) and _best_of(self, False, &a) and b >= a:
            if has_top_bid:
                while _best_of(self, False, &a) and a <= top_bid:
                    self._asks.erase(a)
            if has_top_ask:
                while _best_of(self, True, &b) and b >= top_ask:
                    self._bids.erase(b)

    # --- reads ---------------------------------------------------------------------------------------------
    def level_size(self, side, tick_t tick):
        """Displayed size at ``tick`` on ``side``: 0.0 if known empty, ``None`` if unknown."""
        cdef double size
        if self._level(_is_bid(side), tick, &size):
            return size
        return None

    cdef bint _level(self, bint bid, tick_t tick, double* out) noexcept:
        # level_size at C level: False for the reference's None (unknown), else the size in ``out``
        cdef Levels* levels = _side_levels(self, bid)
        cdef Levels.iterator it = levels.find(tick)
        cdef tick_t best
        if it != levels.end():
            out[0] = deref(it).second
            return True
        if not _best_of(self, bid, &best):
            return False
        out[0] = 0.0
        if (tick > best) if bid else (tick < best):
            return True
        if bid:
            if self.has_depth and self._floor_known and tick >= self._floor:
                return True
        elif self.has_depth and self._ceiling_known and tick <= self._ceiling:
            return True
        return False

    def crossing_levels(self, side, tick_t tick) -> list:
        """Opposite levels at or through our price (asks ``<= tick`` for a bid), best first."""
        cdef list out = []
        cdef Levels.iterator it
        cdef Levels.reverse_iterator rit
        if _is_bid(side):
            it = self._asks.begin()
            while it != self._asks.end() and deref(it).first <= tick:
                out.append((deref(it).first, deref(it).second))
                inc(it)
        else:
            rit = self._bids.rbegin()
            while rit != self._bids.rend() and deref(rit).first >= tick:
                out.append((deref(rit).first, deref(rit).second))
                inc(rit)
        return out

    def crossing_size(self, side, tick_t tick):
        """Opposite-side size at or through our price; 0 when the book does not reach it."""
        cdef bint any_level
        cdef double total = self._crossing(_is_bid(side), tick, &any_level)
        if not any_level:
            return 0  # the reference's sum() over nothing is the int 0
        return total

    cdef double _crossing(self, bint bid, tick_t tick, bint* any_level) noexcept:
        # crossing_size at C level; ``any_level`` False where the reference returns the int 0
        cdef double total = 0.0
        cdef Levels.iterator it
        cdef Levels.reverse_iterator rit
        any_level[0] = False
        if bid:
            it = self._asks.begin()
            while it != self._asks.end() and deref(it).first <= tick:
                total += deref(it).second
                any_level[0] = True
                inc(it)
        else:
            rit = self._bids.rbegin()
            while rit != self._bids.rend() and deref(rit).first >= tick:
                total += deref(rit).second
                any_level[0] = True
                inc(rit)
        return total
