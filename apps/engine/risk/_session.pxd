# cython: language_level=3
"""What other compiled modules see of :mod:`apps.engine.risk._session`: the risk evaluation at C level (the backtest
driver calls it for a session whose ``evaluate`` is this module's, see ``_backtest.pyx``'s ``_risk_at``)."""


# evaluate(risk, now_ns, core_state, decision_inputs) without the Python call: (started, cleared, trips)
cdef tuple c_evaluate(object risk, object now_ns, object core_state, object decision_inputs)
