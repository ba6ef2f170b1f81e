"""The pure trading engine: events, book, estimators, pricing, quoting, fills, simulator.

Never imports Django and never does I/O; the same code runs live, in paper mode and in backtests.
"""
