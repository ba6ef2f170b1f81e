"""The pure trading engine, laid out by its parts.

* ``market/``      event types, the L2 book and its exchange synchronisation, feed plumbing
* ``estimators/``  κ, σ, λ/A, flow, Hawkes, drift, microprice, book signals; ``market.MarketEstimators`` owns them
* ``quoting/``     pricing closed forms, the γ model (``risk_aversion``), the quoter, GLFT on a grid, prediction
* ``execution/``   order state machine and tracker, the one order reconciler (requote rule, inventory guard),
                   the paper venue, its queue-aware fill model, latency models
* ``risk/``        risk rules and the kill switch
* ``simulation/``  the market simulator, baseline quoters and the backtest driver
* ``accounting/``  P&L attribution
* ``core``         the strategy core: it composes the parts above (events in, actions and decisions out)
* ``validation``   the parameter checks every part uses (errors name the owner, the field and the value)

Never imports Django and never does I/O; the same code runs live, in paper mode and in backtests.
"""
