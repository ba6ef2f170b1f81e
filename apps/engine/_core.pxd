# cython: language_level=3
"""What other compiled modules see of :mod:`apps.engine._core`: :class:`StrategyCoreBase`, whose per-event entry
points (``c_on_event``, ``c_refresh``) the compiled backtest driver (``apps/engine/simulation/_backtest.pyx``) calls at
C level when its strategy is exactly the compiled core."""

from libc.stdint cimport int64_t

from apps.engine.estimators._estimators cimport MarketFields


cdef class StrategyCoreBase:
    # the reference's state, set by its __init__ (slots where the per-event path and the decision read it); the
    # reference's apply_params writes params, quoter_params, risk_params, _decision_key and _force_changed here
    cdef public object market, tracker, last_quote, _decision_key
    cdef int64_t c_now_ns, c_decision_ns  # the reference's _now_ns and _decision_ns (properties in _core.pyx)
    cdef object c_params  # the reference's params (property)
    cdef double c_interval_ns  # params.decision_interval_s * 1e9 when params is a StrategyParams (frozen), else NaN
    cdef object c_quoter_params  # the reference's quoter_params (property)
    # the fields the decision and the reconciliation read, cached by the setters when the parameters are exactly the
    # frozen dataclasses (else read from them each time): None in c_fill_cost_by_depth says "not cached"
    cdef object c_fill_cost_by_depth, c_levels, c_drift_horizon_s, c_requote_ticks, c_max_inventory, c_modify_orders
    cdef object c_loss_budget, c_session_end_ns
    cdef public object risk_params, last_decision, _peak_pnl, tick_size, lot_size, id_prefix
    cdef public bint halted, decisions_changed, _force_changed
    cdef public Py_ssize_t decisions_computed, _seq, inventory_guard_skips

    cdef object c_on_event(self, object event)  # on_event's actions, None for none
    cdef bint c_refresh(self) except -1
    cdef object _on_bbo(self, object event, MarketFields m)
    cdef object _c_decide_now(self, object now_ns, tuple key, tuple snaps)
    cdef int _c_set(self, object result) except -1
    cdef list _c_reconcile(self, object result)
    cdef Py_ssize_t _reconcile_side(
        self, list actions, object tracker, object side, object levels, double tick, Py_ssize_t requote_ticks,
        double max_inventory, bint modify_orders
    ) except -1
