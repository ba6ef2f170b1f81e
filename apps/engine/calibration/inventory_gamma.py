"""γ₀ implied by the inventory limit: the risk aversion at which GLFT's skew at Q_max equals ρ times its half-spread.

GLFT's asymptotic quotes (:mod:`apps.engine.quoting.quoter`) are ``bid = δ + k·q`` and ``ask = δ − k·q`` from the
reservation of a flat book, with ``k = σ_inv·c2`` the inventory slope and ``δ = c1 + (Δ/2)·σ_spread·c2 + c_f`` the
quoted half-spread (c_f the cost of a fill). γ is in units of 1/(base unit · fraction of mid), so one γ₀ means a
very different skew on BTC at 60,000 than on ETH at 2,500, and on a quiet market than on a wild one. Q_max, on the
other hand, is a choice the operator makes per instrument. Asking for ``k(γ₀)·Q_max = ρ·δ(γ₀)`` ties them: with
ρ = 1 the reducing side reaches the mid as the inventory reaches its limit (and the side that would add stops
there anyway), so inventory mean-reverts through the quotes before the limit binds, whatever the instrument's
price scale.

``k/δ`` rises monotonically with γ₀ (c2 ∝ √γ grows; c1 with ξ = γ₀ falls), so each decision's inputs (κ, A at the
mid, σ_inv, σ_spread, c_f) give one γ₀ by bisection on log γ₀; :func:`implied_gamma_base` takes the median over a
fit range's decisions. It is a walk-forward calibration: :mod:`apps.engine.simulation.evaluate` computes it from the
decisions of a pass over the fit part only, and the evaluated part runs with it fixed.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from apps.engine.quoting.pricing import glft_coefficients
from apps.engine.validation import positive

__all__ = ["ImpliedGamma", "gamma_for_skew_ratio", "implied_gamma_base"]

_LOG_LO, _LOG_HI = math.log(1e-6), math.log(1e15)
_NEEDED = ("kappa", "glft_a_mid_per_s", "sigma_inventory", "sigma_spread")


def _ratio(gamma: float, inputs: Mapping[str, float], order_size: float, max_inventory: float) -> float:
    c1, c2 = glft_coefficients(gamma, gamma, order_size, inputs["glft_a_mid_per_s"], inputs["kappa"])
    delta = c1 + 0.5 * order_size * inputs["sigma_spread"] * c2 + inputs.get("half_spread_fill_cost_frac", 0.0)
    return inputs["sigma_inventory"] * c2 * max_inventory / delta


def gamma_for_skew_ratio(
    inputs: Mapping[str, float], order_size: float, max_inventory: float, skew_ratio: float
) -> float:
    """γ₀ with ``k(γ₀)·Q_max = skew_ratio·δ(γ₀)`` for one decision's inputs (NaN when they are not usable or no
    γ₀ in [1e-6, 1e15] reaches the ratio)."""
    for name in _NEEDED:
        v = inputs.get(name, math.nan)
        if not (math.isfinite(v) and v > 0):
            return math.nan
    lo, hi = _LOG_LO, _LOG_HI
    if _ratio(math.exp(hi), inputs, order_size, max_inventory) < skew_ratio:
        return math.nan
    if _ratio(math.exp(lo), inputs, order_size, max_inventory) >= skew_ratio:
        return math.exp(lo)
    for _ in range(80):
        mid = 0.5 * (lo + hi)
        if _ratio(math.exp(mid), inputs, order_size, max_inventory) < skew_ratio:
            lo = mid
        else:
            hi = mid
    return math.exp(hi)


@dataclass(frozen=True, slots=True)
class ImpliedGamma:
    """The median implied γ₀ over the usable decisions, its 10th and 90th percentiles, and how many were used."""

    gamma_base: float
    p10: float
    p90: float
    decisions: int


def implied_gamma_base(
    decision_inputs: Iterable[Mapping[str, float]], order_size: float, max_inventory: float, skew_ratio: float = 1.0
) -> ImpliedGamma:
    """Median over ``decision_inputs`` (each a decision's ``inputs``) of :func:`gamma_for_skew_ratio`.

    Raises ValueError when no decision has usable κ, A, σ (nothing to calibrate from)."""
    where = "implied_gamma_base"
    positive("order_size", order_size, where)
    positive("max_inventory", max_inventory, where)
    positive("skew_ratio", skew_ratio, where)
    gs = sorted(
        g
        for g in (gamma_for_skew_ratio(i, order_size, max_inventory, skew_ratio) for i in decision_inputs)
        if math.isfinite(g)
    )
    if not gs:
        raise ValueError(f"{where}: no decision with usable kappa, A, sigma to calibrate gamma from")
    n = len(gs)
    return ImpliedGamma(statistics.median(gs), gs[n // 10], gs[(9 * n) // 10], n)
