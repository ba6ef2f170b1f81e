"""Simple signals from the resting order book (pure functions).

The book is the wrong source for κ (it measures standing liquidity, not where trades execute; see
:mod:`apps.engine.estimators.kappa`). It is the right source for these: depth imbalance (a directional
lean), liquidity near the touch (thin-book risk), the queue at the touch (fill-time context) and the
market spread (a sanity reference for our own).

``bids`` and ``asks`` are sequences of ``(price, size)`` pairs, best first (bids descending, asks
ascending); prices in quote currency, sizes in base units. Distances are fractions of mid.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

Level = tuple[float, float]


def imbalance(bids: Sequence[Level], asks: Sequence[Level], n_levels: int = 5) -> float:
    """Depth imbalance over the best ``n_levels`` of each side: ``(B − A) / (B + A)`` in [−1, 1].

    +1 means all the depth is on the bid (buying pressure). NaN when both sides are empty.

    >>> imbalance([(99.0, 3.0)], [(101.0, 1.0)])
    0.5
    """
    if n_levels < 1:
        raise ValueError(f"n_levels must be >= 1, got {n_levels!r}")
    b = sum(size for _, size in bids[:n_levels])
    a = sum(size for _, size in asks[:n_levels])
    total = b + a
    return (b - a) / total if total > 0 else math.nan


def check_band(mid: float, within_frac: float) -> None:
    """ValueError unless ``mid`` is finite and positive and ``within_frac`` finite and non-negative."""
    if not (math.isfinite(mid) and mid > 0):
        raise ValueError(f"mid must be a finite positive number, got {mid!r}")
    if not (math.isfinite(within_frac) and within_frac >= 0):
        raise ValueError(f"within_frac must be a finite non-negative number, got {within_frac!r}")


def liquidity_within(bids: Sequence[Level], asks: Sequence[Level], mid: float, within_frac: float) -> float:
    """Total base size resting within ``within_frac`` of ``mid`` on both sides (within_frac = 0.001 is 10 bps).

    >>> liquidity_within([(99.95, 1.0), (99.0, 5.0)], [(100.05, 2.0)], 100.0, 0.001)
    3.0
    """
    check_band(mid, within_frac)
    limit = within_frac * mid
    # A small tolerance so a level exactly at the boundary is not lost to float rounding.
    eps = 1e-12 * mid
    total = 0.0
    for px, size in bids:
        if mid - px > limit + eps:
            break
        total += size
    for px, size in asks:
        if px - mid > limit + eps:
            break
        total += size
    return total


def queue_at_touch(bids: Sequence[Level], asks: Sequence[Level]) -> tuple[float, float]:
    """Base size at the best bid and best ask (0.0 for an empty side)."""
    return (bids[0][1] if bids else 0.0, asks[0][1] if asks else 0.0)


def market_spread_frac(bids: Sequence[Level], asks: Sequence[Level]) -> float:
    """Best ask minus best bid as a fraction of their mid; NaN when a side is empty.

    >>> round(market_spread_frac([(99.99, 1.0)], [(100.01, 1.0)]) * 1e4, 6)
    2.0
    """
    if not bids or not asks:
        return math.nan
    bid, ask = bids[0][0], asks[0][0]
    return (ask - bid) / (0.5 * (ask + bid))
