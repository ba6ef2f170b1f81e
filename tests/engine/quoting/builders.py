"""The market the quoting property tests quote into, built in one place so each test varies only what it studies."""

from __future__ import annotations

from typing import Any

from apps.engine.quoting.quoter import MarketState

# A session that ends two minutes in: glft_finite quotes with a finite horizon instead of falling back to glft.
SESSION_END = {"session_end_ns": 120 * 10**9}


def market_state(**overrides: Any) -> MarketState:
    """A calm market at mid 100: bid 99.99 / ask 100.01 (2 bps wide), κ = 5000 (1/κ = 2 bps), σ = 1e-4 per √s for
    both the clean and the inventory σ, A = 5 fills/s, mean trade size 1. ``overrides`` replace or add fields."""
    base: dict[str, Any] = {
        "ts_ns": 1,
        "best_bid": 99.99,
        "best_ask": 100.01,
        "kappa": 5000.0,
        "sigma_clean": 1e-4,
        "sigma_inventory": 1e-4,
        "a_per_s": 5.0,
        "mean_trade_size": 1.0,
    }
    return MarketState(**(base | overrides))
