# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
# distutils: language = c++
"""Compiled per-event path of the paper venue: the same behaviour as the reference ``PyPaperVenue`` in
:mod:`apps.engine.execution.paper`, which stays the readable version of every rule.

Design. ``PaperVenueBase`` is a compiled base class that holds the venue's state in typed slots and overrides only
the methods a market event runs through: ``on_market`` (dispatch), ``_after_book_change`` (every resting order
against the changed book), ``_on_trade`` and ``_resting_on`` (our orders a trade reaches), ``_drain`` and
``next_event_ns`` (the in-flight heaps). :mod:`apps.engine.execution.paper` builds the venue the engine uses as
``class PaperVenue(PaperVenueBase, PyPaperVenue)``: everything else (submitting, arrivals at the matching engine,
fills through the ``Order`` state machine, acks, rejects, cancel-all) is the reference's own Python, and so are the
rare branches here (an arrival due, a fill): they call the same reference methods.

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

from apps.engine._slots cimport slot_get, slot_offset
from apps.engine.execution._fillmodel cimport LevelBook, QueueState, _whole_fill, tick_t

import heapq

from apps.engine.execution._fillmodel import queue_after_trade
from apps.engine.execution.orders import round_size
from apps.engine.market.events import OPPOSITE, BestBidAsk, DepthSnapshot, DepthUpdate, Fill, Side, Trade

# BestBidAsk's slots (-1: not a plain slot, read by name)
cdef Py_ssize_t _B_TS = slot_offset(BestBidAsk, "ts_local_ns"), _B_BID = slot_offset(BestBidAsk, "bid_px")
cdef Py_ssize_t _B_BSZ = slot_offset(BestBidAsk, "bid_size"), _B_ASK = slot_offset(BestBidAsk, "ask_px")
cdef Py_ssize_t _B_ASZ = slot_offset(BestBidAsk, "ask_size")
cdef bint _BBO_SLOTS = min(_B_TS, _B_BID, _B_BSZ, _B_ASK, _B_ASZ) >= 0

cdef object _BUY = Side.BUY
cdef object _SELL = Side.SELL


@cython.final
cdef class Resting:
    """One resting order at the venue (the reference: ``paper._Resting``; the same fields)."""

    cdef public object order
    cdef public tick_t tick
    cdef public object queue
    # opposite-side size at/through our price already used for fills (see the reference)
    cdef public double crossed
    cdef readonly bint bid  # order.side is BUY (an order never changes side)

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
    if book._level(r.bid, r.tick, &displayed):
        q = r.queue
        if type(q) is QueueState:
            (<QueueState>q)._observe(displayed, params)
        else:
            q.observe_level(displayed, params)
    return 0


cdef class PaperVenueBase:
    """The compiled half of ``paper.PaperVenue``; the reference ``PyPaperVenue`` is the other (see the module)."""

    # the reference's state, set by its __init__ (typed where the per-event path reads it)
    cdef object _config
    cdef bint _exchange_clock
    cdef bint _partial  # config.partial_fills
    cdef public object _rng, _entry, _response, _queue_params, _book
    cdef public dict _live
    cdef public set _known_ids
    cdef public list _inbox, _outbox, _fills
    cdef public object _seq, _priority, _fill_seq, non_market_trades
    cdef public object _last_arrival_ns, _last_visible_ns, _venue_now_ns, _feed_delay_ns, _position

    @property
    def config(self):
        return self._config

    @config.setter
    def config(self, value):
        self._config = value
        self._exchange_clock = value.venue_clock == "exchange"
        self._partial = value.partial_fills

    # --- the market event ----------------------------------------------------------------------------------------
    def on_market(self, event):
        """Feed one market event in local-time order; returns our events visible by its local time."""
        cdef object t, book = self._book
        cdef list inbox = self._inbox, outbox
        if type(book) is not LevelBook:
            return super(PaperVenueBase, self).on_market(event)
        cls = type(event)
        # a book ticker's fields by slot offset (the same objects getattr gives: apps/engine/_slots.pxd)
        cdef bint bbo_slots = _BBO_SLOTS and cls is BestBidAsk
        if self._exchange_clock:
            t = self._event_venue_time(event)
        elif bbo_slots:
            t = slot_get(event, _B_TS)
        else:
            t = event.ts_local_ns
        if inbox and (<tuple>inbox[0])[0] <= t:
            self._process_arrivals(t)
        if t > self._venue_now_ns:
            self._venue_now_ns = t
        # the exact classes first (an isinstance that fails costs a type walk); a subclass takes the isinstance chain
        if cls is BestBidAsk:
            if bbo_slots:
                (<LevelBook>book)._apply_bbo(
                    slot_get(event, _B_BID), slot_get(event, _B_BSZ), slot_get(event, _B_ASK), slot_get(event, _B_ASZ)
                )
            else:
                (<LevelBook>book)._apply_bbo(event.bid_px, event.bid_size, event.ask_px, event.ask_size)
            self._book_changed(t, <LevelBook>book)
        elif cls is DepthUpdate:
            book.apply_diff(event.bids, event.asks)
            self._book_changed(t, <LevelBook>book)
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
            book.apply_diff(event.bids, event.asks)
            self._book_changed(t, <LevelBook>book)
        now = t if not self._exchange_clock else event.ts_local_ns  # t is the local stamp already on the local clock
        outbox = self._outbox
        if not outbox or (<tuple>outbox[0])[0] > now:
            return []  # nothing of ours visible yet (most events)
        return self._drain(now)

    def _after_book_change(self, t):
        book = self._book
        if type(book) is not LevelBook:
            return super(PaperVenueBase, self)._after_book_change(t)
        self._book_changed(t, <LevelBook>book)

    cdef int _book_changed(self, object t, LevelBook book) except -1:
        cdef dict live = self._live
        cdef Resting r
        cdef bint any_level
        if not live:
            return 0
        params = self._queue_params
        # Most book changes fill none of our orders: then nothing removes an order during the walk, so it reads the
        # dict in place (no list of ids, no lookup per order). A fill (fresh crossed size) takes the reference's
        # walk over a copy of the ids, from the first order, as the reference does; the check has no side effect.
        for value in live.values():
            r = <Resting?>value
            if book._crossing(r.bid, r.tick, &any_level) - r.crossed > 0:
                return self._book_changed_with_fills(t, book, params)
        for value in live.values():
            r = <Resting>value
            r.crossed = book._crossing(r.bid, r.tick, &any_level)
            _observe_level(r, book, params)
        return 0

    cdef int _book_changed_with_fills(self, object t, LevelBook book, object params) except -1:
        cdef dict live = self._live
        cdef Resting r
        cdef double crossing, fresh
        cdef bint any_level
        for cid in list(live):
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
                self._fill(order, order.price, size, "maker", t)
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
        resting_side = OPPOSITE[trade.aggressor]
        trade_tick = book._tick(trade.price)
        available = float(trade.size)
        buy_side = resting_side is _BUY
        # most trades reach none of our orders: look before building the ordered list
        for value in self._live.values():
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
                q.trade_credit += trade.size
                if q.ahead is None:
                    continue  # never observed: we cannot claim a place in this queue yet
                size, q.ahead = queue_after_trade(q.ahead, order.remaining, available)
            size = round_size(size, lot)
            if size > 0:
                if self._partial:
                    available -= size
                else:
                    size = _whole_fill(size, order.remaining)  # and the trade stays whole for our next order
                self._fill(order, order.price, size, "maker", t)
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
        cdef list out = []
        cdef list outbox = self._outbox
        while outbox and (<tuple>outbox[0])[0] <= now_local_ns:
            ev = heapq.heappop(outbox)[2]
            if type(ev) is Fill:
                self._fills.append(ev)
                self._position += ev.size if ev.side is _BUY else -ev.size
            out.append(ev)
        return out

    def next_event_ns(self):
        """Local time of the next thing the venue does on its own, or ``None`` when nothing is in flight
        (the reference's docstring says why a driver needs it)."""
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
