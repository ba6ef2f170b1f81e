# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Compiled per-event path of the strategy core: the same behaviour as the reference ``PyStrategyCore`` in
:mod:`apps.engine.core`, which stays the readable version of every step.

Design, as for the driver and the paper venue: ``StrategyCoreBase`` holds the state the per-event path reads in
slots, and :mod:`apps.engine.core` builds ``class StrategyCore(StrategyCoreBase, PyStrategyCore)``. It overrides
only ``on_event``, and in it only what most events of a real feed do:

* a book ticker or a trade is handed to the market estimators as ``MarketEstimators.on_event`` would (its clock,
  first-event time and counter, then the compiled ``MarketStep`` call it holds in ``_on_bbo``/``_on_trade``);
  depth events go to ``MarketEstimators.on_event`` itself;
* after a book ticker, the check of ``PyStrategyCore._decide`` that nothing a decision depends on changed (the
  touch, the position, the estimates' version, the halt, the decision interval) runs here without a Python call;
  the six snapshots are taken through ``MarketEstimators.snapshots`` only when one of them is due (its own fast
  test, read here), so the estimates' version moves exactly when the reference's would. When the check fails,
  the reference's ``_decide_now``, ``_reconcile`` and the tracker run as they do there.

Every other event (our order events and fills, funding, marks, timers) runs the reference's ``on_event``.
"""

from libc.stdint cimport int64_t

from apps.engine.core import PyStrategyCore
from apps.engine.market.events import BestBidAsk, DepthSnapshot, DepthUpdate, Trade

cdef object _reference_on_event = PyStrategyCore.on_event
cdef object _BBO = BestBidAsk
cdef object _TRADE = Trade
cdef object _DEPTH_UPDATE = DepthUpdate
cdef object _DEPTH_SNAPSHOT = DepthSnapshot
cdef double _NS = 1e9


cdef class StrategyCoreBase:
    """The compiled half of ``core.StrategyCore``; the reference ``PyStrategyCore`` is the other (see the module)."""

    # the reference's state, set by its __init__ (slots where the per-event path reads it)
    cdef public object market, tracker, params, last_quote, _decision_key, _now_ns, _decision_ns
    cdef public bint halted, decisions_changed

    def on_event(self, event):
        cls = type(event)
        if cls is _BBO:
            return self._on_bbo(event)
        if cls is _TRADE or cls is _DEPTH_UPDATE or cls is _DEPTH_SNAPSHOT:
            ts = event.ts_local_ns
            if ts > self._now_ns:
                self._now_ns = ts
            self.decisions_changed = False
            if cls is _TRADE:
                _market_trade(self.market, event, ts)
            else:
                self.market.on_event(event)
            return []  # state only; the next top-of-book change re-quotes
        return _reference_on_event(self, event)

    cdef object _on_bbo(self, object event):
        ts = event.ts_local_ns
        if ts > self._now_ns:
            self._now_ns = ts
        self.decisions_changed = False
        m = self.market
        # MarketEstimators.on_event for a BestBidAsk
        if ts > m._now_ns:
            m._now_ns = ts
        if not m._first_ns:
            m._first_ns = ts
        m.events_seen += 1
        m._has_bbo_stream = True
        m._on_bbo(event)
        if self.halted:
            return []
        bbo = m.bbo  # the event itself (_on_bbo sets it): never None here
        now = self._now_ns
        # PyStrategyCore._decide: MarketEstimators.snapshots, called only when its own fast test fails
        if now < m._all_fresh_until_ns and m._kappa_trades_since < m.config.kappa_refresh_trades:
            snaps = m._all_snaps
        else:
            snaps = m.snapshots(now)
        bid = bbo.bid_px
        ask = bbo.ask_px
        q = self.tracker.position
        version = m.version
        halted = self.halted
        key = self._decision_key
        if (
            key is not None
            and _same(key[0], bid)
            and _same(key[1], ask)
            and _same(key[2], q)
            and _same(key[3], version)
            and _same(key[4], halted)
            and self.last_quote is not None
            and <double>(<int64_t>now - <int64_t>self._decision_ns) < <double>self.params.decision_interval_s * _NS
        ):
            return []  # nothing the decision depends on changed
        result = self._decide_now(now, (bid, ask, q, version, halted), snaps)
        actions = self._reconcile(result)
        self.tracker.on_actions(actions)
        return actions


cdef inline bint _same(object a, object b) except -1:
    """One item of a tuple ``==``: identity first, then ``==`` (as tuple comparison does)."""
    return a is b or a == b


cdef int _market_trade(object m, object ev, object ts) except -1:
    """MarketEstimators.on_event for a Trade."""
    if ts > m._now_ns:
        m._now_ns = ts
    if not m._first_ns:
        m._first_ns = ts
    m.events_seen += 1
    if ev.market:
        m._on_trade(ev)
    else:
        m.non_market_trades += 1  # not order flow a quote meets: no κ, flow, arrival, Hawkes, σ volume
    return 0
