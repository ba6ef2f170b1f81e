"""Prediction-market mode (seed 004): binary-outcome tokens priced in (0, 1) on a 0.01 grid.

Differences from the perpetual-futures quoter, and why
-----------------------------------------------------
* **Absolute units.** A token's price ``p`` is a probability; its moves are additive, not multiplicative, and
  a 1-cent move means the same at 0.05 and at 0.50. So σ is the volatility of the *price itself*
  (price units per √second, :func:`token_sigma`), distances and κ are in price units (κ per unit of price:
  κ = 100 ⇔ fills concentrated about 1 cent from mid), and γ is per contract per unit of price.
* **Settlement is the horizon.** ``T`` is the time left to settlement (seconds), not a tuning constant
  (seed 004's code normalised it to a 15-minute window and floored it; here it is what it is).
* **Bounded martingale.** ``p`` is a conditional probability, so the variance of its remaining moves cannot
  exceed ``p·(1 − p)`` (the variance of the 0/1 payoff). The inventory term uses
  ``V = min(σ²·T, p·(1 − p))``, and the decision says when that bound binds.
* **Hard price bounds.** Quotes live on the grid between ``min_price`` and ``max_price``. A quote the model
  puts outside them is *not quoted* (with the reason), never silently clamped onto the edge (seed 004's
  ``max(0.01, min(0.99, ·))`` did exactly that).

Formulas (Avellaneda–Stoikov in absolute units)
    r = p − q·γ·V,      δ* = (1/γ)·ln(1 + γ/κ),     bid = floor_grid(r − δ*),  ask = ceil_grid(r + δ*)
with q in contracts (positive = long YES), γ per contract per unit price, κ per unit price.

Status
------
No venue quotes prediction markets yet, so only the tests call this module. It is kept (issue 14) as the
pricing library of the prediction-market venue to come, which will call :func:`prediction_quote` the way the
perpetual-futures core calls :func:`apps.engine.quoting.quoter.quote`.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from apps.engine.validation import finite, fraction

__all__ = ["PredictionParams", "PredictionQuote", "prediction_quote", "time_to_settlement_s", "token_sigma"]

_NS = 1_000_000_000


@dataclass(frozen=True, slots=True)
class PredictionParams:
    """Grid and bounds of a prediction market.

    Attributes
    ----------
    tick : float
        Price grid step (0.01).
    min_price, max_price : float
        Lowest and highest quotable prices (0.01 and 0.99), on the grid, ``0 < min_price < max_price < 1``.
    """

    tick: float = 0.01
    min_price: float = 0.01
    max_price: float = 0.99

    def validate(self) -> PredictionParams:
        for name in ("tick", "min_price", "max_price"):
            finite(name, getattr(self, name), "PredictionParams")
        fraction("tick", self.tick, "PredictionParams", open_low=True, closed_high=False)
        if not 0 < self.min_price < self.max_price < 1:
            raise ValueError(
                f"need 0 < min_price < max_price < 1, got min_price={self.min_price!r}, max_price={self.max_price!r}"
            )
        return self


def time_to_settlement_s(now_ns: int, settlement_ns: int) -> float:
    """Seconds left to settlement (0 at or after it)."""
    return max((settlement_ns - now_ns) / _NS, 0.0)


def token_sigma(times_ns: Sequence[int], prices: Sequence[float]) -> float:
    """σ of the token price, price units per √second: √(Σ(Δp)² / elapsed) over the observations.

    Uses absolute (not log) price changes; NaN with fewer than two observations or no elapsed time.

    >>> round(token_sigma([0, 1_000_000_000, 2_000_000_000], [0.50, 0.51, 0.50]), 6)
    0.01
    """
    if len(times_ns) != len(prices):
        raise ValueError(f"times_ns and prices differ in length: {len(times_ns)} != {len(prices)}")
    if len(prices) < 2:
        return math.nan
    for i, p in enumerate(prices):
        if not (isinstance(p, (int, float)) and math.isfinite(p) and 0 < p < 1):
            raise ValueError(f"prices[{i}] must be in (0, 1), got {p!r}")
    elapsed = (times_ns[-1] - times_ns[0]) / _NS
    if elapsed <= 0:
        return math.nan
    ss = math.fsum((b - a) ** 2 for a, b in itertools.pairwise(prices))
    return math.sqrt(ss / elapsed)


@dataclass(frozen=True, slots=True)
class PredictionQuote:
    """Bid/ask on the grid (None = not quoted; ``reasons`` says why) and every term, in price units."""

    bid: float | None
    ask: float | None
    inputs: dict[str, float] = field(default_factory=dict)
    reasons: tuple[str, ...] = ()


def _grid_floor(x: float, tick: float) -> float:
    return round(math.floor(x / tick + 1e-9) * tick, 10)


def _grid_ceil(x: float, tick: float) -> float:
    return round(math.ceil(x / tick - 1e-9) * tick, 10)


def prediction_quote(
    mid: float,
    q: float,
    gamma: float,
    sigma: float,
    kappa: float,
    time_to_settlement: float,
    params: PredictionParams | None = None,
) -> PredictionQuote:
    """Quotes for a binary token (module docstring).

    Parameters
    ----------
    mid : float
        Token mid price in (0, 1).
    q : float
        Inventory in contracts (positive = long YES).
    gamma : float
        Risk aversion > 0 per contract per unit price.
    sigma : float
        Token price volatility ≥ 0, price units per √second (:func:`token_sigma`).
    kappa : float
        Fill-intensity decay > 0 per unit price.
    time_to_settlement : float
        Seconds to settlement ≥ 0 (:func:`time_to_settlement_s`).
    """
    pp = (params or PredictionParams()).validate()
    m = finite("mid", mid)
    if not 0 < m < 1:
        raise ValueError(f"mid must be in (0, 1), got {mid!r}")
    qq = finite("q", q)
    g = finite("gamma", gamma)
    s = finite("sigma", sigma)
    k = finite("kappa", kappa)
    t = finite("time_to_settlement", time_to_settlement)
    if g <= 0 or k <= 0:
        raise ValueError(f"gamma and kappa must be > 0, got gamma={gamma!r}, kappa={kappa!r}")
    if s < 0 or t < 0:
        raise ValueError(f"sigma and time_to_settlement must be >= 0, got sigma={sigma!r}, T={time_to_settlement!r}")
    reasons: list[str] = []
    diffusive = s * s * t
    cap = m * (1.0 - m)
    var = min(diffusive, cap)
    if diffusive > cap:
        reasons.append(f"variance bound binding: σ²T={diffusive:.4g} > p(1−p)={cap:.4g}")
    inventory_term = qq * g * var
    r = m - inventory_term
    delta = math.log1p(g / k) / g
    raw_bid, raw_ask = r - delta, r + delta
    bid: float | None = _grid_floor(raw_bid, pp.tick)
    ask: float | None = _grid_ceil(raw_ask, pp.tick)
    if bid is not None and bid < pp.min_price - 1e-12:
        reasons.append(f"no bid: model bid {raw_bid:.4f} below min_price {pp.min_price:g}")
        bid = None
    elif bid is not None and bid > pp.max_price + 1e-12:
        reasons.append(f"no bid: model bid {raw_bid:.4f} above max_price {pp.max_price:g}")
        bid = None
    if ask is not None and ask > pp.max_price + 1e-12:
        reasons.append(f"no ask: model ask {raw_ask:.4f} above max_price {pp.max_price:g}")
        ask = None
    elif ask is not None and ask < pp.min_price - 1e-12:
        reasons.append(f"no ask: model ask {raw_ask:.4f} below min_price {pp.min_price:g}")
        ask = None
    inputs = {
        "mid": m,
        "q": qq,
        "gamma": g,
        "sigma": s,
        "kappa": k,
        "time_to_settlement_s": t,
        "variance_diffusive": diffusive,
        "variance_cap": cap,
        "variance_used": var,
        "inventory_term": inventory_term,
        "reservation_price": r,
        "half_spread": delta,
        "raw_bid": raw_bid,
        "raw_ask": raw_ask,
    }
    return PredictionQuote(bid, ask, inputs, tuple(reasons))
