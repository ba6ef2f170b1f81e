# cython: language_level=3
"""What other compiled modules see of :mod:`apps.engine.execution._paper`: :class:`PaperVenueBase`, whose per-event
entry points (``c_on_market``, ``c_next_event_ns``) the compiled backtest driver
(``apps/engine/simulation/_backtest.pyx``) calls at C level when its venue is exactly the compiled paper venue."""

cimport cython

from apps.engine.execution._fillmodel cimport LevelBook, tick_t


@cython.final
cdef class Resting:
    cdef public object order
    cdef public tick_t tick
    cdef public object queue
    # opposite-side size at/through our price already used for fills (see the reference)
    cdef public double crossed
    cdef readonly bint bid  # order.side is BUY (an order never changes side)
    # where its level was last found in the level book (LevelBook._level_near checks it before use)
    cdef Py_ssize_t _level_block, _level_index


cdef class PaperVenueBase:
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
    cdef dict _price_memo  # ticks -> ticks_to_price(ticks, config.tick_size)
    cdef dict _size_memo  # a float size -> round_size(size, config.lot_size)
    # the resting orders' walk after a book change: _live's values, read when _live (held) had this version tag
    cdef object _walk_of
    cdef unsigned long long _walk_version
    cdef tuple _walk

    cdef object c_on_market(self, object event)  # our events now visible: a list, or an empty tuple for none
    cdef object c_next_event_ns(self)
    cdef object c_drain(self, object now_local_ns)
    cdef int _book_changed(self, object t, LevelBook book) except -1
    cdef int _book_changed_with_fills(self, object t, LevelBook book, object params, Py_ssize_t first) except -1
    cdef int _trade(self, object trade, object t, LevelBook book) except -1
    cdef object _latency(self, object model)
    cdef object _c_check(self, object action)
    cdef object _c_round(self, object action, object side)
    cdef object _price_of(self, object ticks, object tick_size)
    cdef object _lots(self, object size, object lot)
    cdef int _arrivals(self, object t_ns) except -1
    cdef int _place(self, object a, object t) except -1
    cdef bint _crosses_own(self, bint bid, tick_t tick, object exclude) except -1
    cdef object _queue(self, bint bid, tick_t tick)
    cdef int _cancel(self, object cid, object t) except -1
    cdef object _visible(self, object t)
    cdef int _c_ack(self, object cid, object status, object price, object size, object t) except -1
    cdef int _c_reject(self, object cid, object reason, object t) except -1
    cdef int _c_fill(self, object order, object price, object size, object liquidity, object t) except -1


cdef inline bint idle(PaperVenueBase venue) noexcept:
    """Nothing in flight (no action on its way in, none of our events on its way out): ``c_next_event_ns()`` is then
    None. The driver asks this first, on every market event, before that call."""
    return not venue._inbox and not venue._outbox
