# cython: language_level=3
"""What other compiled modules see of :mod:`apps.engine.estimators._estimators`: :class:`MarketFields`, the slots of
``MarketEstimators``'s per-event fields (``apps/engine/_core.pyx`` reads and writes them as C fields)."""

from libc.stdint cimport int64_t


cdef class MarketFields:
    # integer times (ns) and counters, in int64 (Python sees them under their names without the ``c`` prefix, e.g.
    # ``_now_ns`` for ``c_now_ns``, through properties that take integers only: a float time or an int past
    # 2**63 - 1 is refused, never truncated)
    cdef int64_t c_now_ns, c_first_ns, c_events_seen, c_trades_seen, c_non_market_trades, c_version
    cdef int64_t c_refresh_due_ns, c_kappa_trades_since, c_kappa_trades_n, c_kappa_min_due_ns
    cdef int64_t c_next_drift_ns, c_next_hawkes_fit_ns
    # the last market print's exchange time and aggressor (its taker order), and the orders counted
    cdef int64_t c_order_ts_exch_ns, c_order_side, c_taker_orders_seen
    # floats the reference only ever stores as floats
    cdef public double _pending_volume, _flow_value, _mean_trade_size, _size_decay
    # whether κ holds the open taker order as its last row
    cdef public bint _has_bbo_stream, _order_in_kappa
    cdef public object bbo, hawkes, _mids, _trade_times, _order_local_ns, _trade_depths, _all_snaps
    # what the core's decision reads (objects, stored and returned as they are)
    cdef public object config, book, sigma, adverse, drift, fill_cascade, hawkes_fit, _cache
    cdef public object funding_rate, funding_interval_s, _sigma_ref, _depth_ref, _ref_t_ns
    # what the refresh step reads and writes (MarketStep.refresh): objects, as the reference stores them (the
    # fresh-until time is an int or a float, the fit time an int or None)
    cdef public object _all_fresh_until_ns, _hawkes_fit_at, _depth_curve
    # the MarketStep whose on_bbo and on_trade are this object's _on_bbo and _on_trade (MarketEstimators sets the
    # three together), which the core then calls at C level; None: the core calls _on_bbo/_on_trade by name. Whoever
    # rebinds or deletes those two sets this too.
    cdef public object c_step


# MarketStep.on_bbo / on_trade at C level (the step as built by MarketEstimators; TypeError for anything else)
cdef int step_on_bbo(object step, object b) except -1
cdef int step_on_trade(object step, object t) except -1


# (spread σ, inventory σ) of the compiled SigmaEstimator in one call; None for another class
cdef tuple sigma_reads(object sigma)

# (n_events, params, _s, last_event_ns) of the compiled HawkesIntensity in one call; None for another class
cdef tuple hawkes_reads(object h)
