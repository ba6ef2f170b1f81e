"""Calibration: fit the strategy's parameters on one stored range and score them on a later one (pure, no I/O)."""
