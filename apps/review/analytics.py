"""Session analytics for the review page: markouts, fill rate against quote distance, spreads, κ diagnostics.

Pure functions on arrays (numpy, and scipy.stats for the t and χ² quantiles and the Kolmogorov–Smirnov
distribution); no Django, no I/O. :mod:`apps.review.analytics_data` fetches their inputs with bounded queries.

Symbols and units
-----------------
* ``s`` — the side of a fill: +1 we bought (our bid was hit), −1 we sold (our ask was lifted).
* ``p`` — fill price, ``v`` fill size (base units), quote currency per base unit for prices.
* ``m₀`` — the mid in force just before the fill (the last mid strictly earlier than the fill).
* ``m(t + h)`` — the mid in force at the fill time plus a horizon ``h`` (seconds): the last mid at or before it.
* Distances from the mid are reported in basis points of the mid (1 bp = 1e-4), as the UI shows them; κ is per
  unit *fractional* distance (the engine's convention: κ = 1/E[δ], δ = |price − mid| / mid).

Markout at horizon ``h`` (what the fill was worth ``h`` seconds later, from our side):

* against the fill price: ``s·(m(t+h) − p)`` — spread captured minus the adverse move; in bps ``1e4·s·(m(t+h) − p)/p``,
  in quote currency ``s·(m(t+h) − p)·v`` (the P&L of that fill marked to the mid at t+h);
* against the mid just before the fill: ``s·(m(t+h) − m₀)`` — the adverse move alone (negative = adverse selection);
  in bps ``1e4·s·(m(t+h) − m₀)/m₀``, in quote currency ``s·(m(t+h) − m₀)·v``.

Each is summarised per side (buy, sell, all) as the mean over fills with a 95 % Student-t interval and the count;
fills whose mid at ``t + h`` is unknown (past the end of the mid series) are left out of that horizon, so the count
can fall with ``h``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import stats

from apps.engine.estimators.kappa import exp_vs_powerlaw

HORIZONS_S: tuple[float, ...] = (0.1, 1.0, 5.0, 30.0, 60.0)
_BPS = 1e4
SIDES = (("buy", 1), ("sell", -1), ("all", 0))


def _finite(x: float) -> float | None:
    """JSON-safe float: None for NaN/inf."""
    return float(x) if x is not None and math.isfinite(x) else None


def mean_ci(x: np.ndarray, level: float = 0.95) -> dict[str, Any]:
    """Mean of ``x`` with a two-sided Student-t interval at ``level``, the count and the sum.

    ``mean ± t_{(1+level)/2, n−1} · sd/√n`` with the sample sd (ddof=1). One value has no interval (``None``);
    no value has no mean. Values are returned as JSON-safe floats (``None`` where undefined).

    >>> mean_ci(np.array([1.0, 2.0, 3.0]))["mean"]
    2.0
    """
    x = np.asarray(x, dtype=float)
    x = x[np.isfinite(x)]
    n = int(x.size)
    if n == 0:
        return {"n": 0, "mean": None, "ci_low": None, "ci_high": None, "sum": 0.0}
    mean = float(x.mean())
    lo = hi = math.nan
    if n > 1:
        half = float(stats.t.ppf(0.5 + level / 2.0, n - 1)) * float(x.std(ddof=1)) / math.sqrt(n)
        lo, hi = mean - half, mean + half
    return {"n": n, "mean": _finite(mean), "ci_low": _finite(lo), "ci_high": _finite(hi), "sum": float(x.sum())}


def markouts(
    side: np.ndarray,
    price: np.ndarray,
    size: np.ndarray,
    mid_before: np.ndarray,
    mid_after: np.ndarray,
    horizons_s: Sequence[float] = HORIZONS_S,
    level: float = 0.95,
) -> dict[str, Any]:
    """Markout curves by side (module docstring for the definitions).

    Parameters
    ----------
    side, price, size : arrays of shape (n,)
        Per fill: +1/−1, price (quote currency), size (base units).
    mid_before : array (n,)
        m₀, the mid just before each fill (NaN if none was known).
    mid_after : array (n, H)
        m(t + h) for each horizon in ``horizons_s`` (NaN where unknown).

    Returns
    -------
    dict
        ``{"horizons_s": [...], "sides": {"buy"|"sell"|"all": {measure: [mean_ci per horizon]}}}`` with the measures
        ``vs_fill_bps``, ``vs_fill_quote``, ``vs_mid_bps``, ``vs_mid_quote``.
    """
    side = np.asarray(side, dtype=float)
    price = np.asarray(price, dtype=float)
    size = np.asarray(size, dtype=float)
    m0 = np.asarray(mid_before, dtype=float)
    mh = np.asarray(mid_after, dtype=float).reshape(side.size, len(horizons_s))
    with np.errstate(invalid="ignore", divide="ignore"):
        m0_ok = np.where(m0 > 0, m0, np.nan)
        measures = {
            "vs_fill_bps": _BPS * side[:, None] * (mh - price[:, None]) / price[:, None],
            "vs_fill_quote": side[:, None] * (mh - price[:, None]) * size[:, None],
            "vs_mid_bps": _BPS * side[:, None] * (mh - m0_ok[:, None]) / m0_ok[:, None],
            "vs_mid_quote": side[:, None] * (mh - m0_ok[:, None]) * size[:, None],
        }
    out: dict[str, Any] = {}
    for name, s in SIDES:
        rows = np.ones(side.size, dtype=bool) if s == 0 else side == s
        out[name] = {
            key: [mean_ci(values[rows, j], level) for j in range(len(horizons_s))] for key, values in measures.items()
        }
    return {"horizons_s": [float(h) for h in horizons_s], "n_fills": int(side.size), "sides": out}


def poisson_rate_ci(count: np.ndarray, exposure_s: np.ndarray, level: float = 0.95) -> tuple[np.ndarray, ...]:
    """Rate ``count / exposure`` (per second) with Garwood's exact Poisson interval; NaN where exposure is 0."""
    k = np.asarray(count, dtype=float)
    t = np.asarray(exposure_s, dtype=float)
    a = 1.0 - level
    with np.errstate(invalid="ignore", divide="ignore"):
        rate = np.where(t > 0, k / t, np.nan)
        lo = np.where(k > 0, stats.chi2.ppf(a / 2, 2 * k) / 2.0, 0.0) / t
        hi = stats.chi2.ppf(1 - a / 2, 2 * k + 2) / 2.0 / t
    lo = np.where(t > 0, lo, np.nan)
    hi = np.where(t > 0, hi, np.nan)
    return rate, lo, hi


def distance_edges_bps(bin_bps: float, max_bps: float) -> np.ndarray:
    """Bucket edges 0, w, 2w, …, ≥ max (bps). Bucket j is ``[e_j, e_{j+1})``."""
    if not (math.isfinite(bin_bps) and bin_bps > 0):
        raise ValueError(f"bin_bps must be a positive number, got {bin_bps!r}")
    if not (math.isfinite(max_bps) and max_bps >= bin_bps):
        raise ValueError(f"max_bps must be a number >= bin_bps ({bin_bps:g}), got {max_bps!r}")
    n = math.ceil(max_bps / bin_bps - 1e-9)
    if n > 500:
        raise ValueError(f"max_bps / bin_bps gives {n} buckets; at most 500")
    return bin_bps * np.arange(n + 1)


def fill_rate_curve(
    edges_bps: np.ndarray,
    quote_time_s: np.ndarray,
    our_fills: np.ndarray,
    public_reach: np.ndarray,
    duration_s: float,
    level: float = 0.95,
) -> dict[str, Any]:
    """Fill rate against quote distance, ours beside the one implied by public trades, for one side.

    Ours, bucket j = ``[e_j, e_{j+1})`` bps from the mid: ``fills_j / T_j`` per second, where ``T_j`` is the time
    our quote on that side spent at a distance in the bucket (each decision's quote is in force until the next
    decision) and ``fills_j`` the fills of that side whose quote in force just before the fill was in the bucket.

    Implied by public trades, at the bucket centre ``c_j``: ``N(δ ≥ c_j) / T``, the number of market trades on the
    side that hits a resting order there (sell-aggressor trades for our bid, buy-aggressor ones for our ask) that
    printed at or through ``c_j`` bps from the mid just before them, per second of the observed span ``T`` — the
    rate a resting order at that distance would have been reached (ignoring queue position).

    Parameters
    ----------
    edges_bps : array (K+1,)
    quote_time_s, our_fills : arrays (K,)
    public_reach : array (K,) or None
        Trades reaching at least each bucket centre (None: no public trades stored).
    duration_s : float
        T, seconds.
    """
    e = np.asarray(edges_bps, dtype=float)
    rate, lo, hi = poisson_rate_ci(our_fills, quote_time_s, level)
    out: dict[str, Any] = {
        "center_bps": [float(x) for x in 0.5 * (e[:-1] + e[1:])],
        "quote_time_s": [float(x) for x in np.asarray(quote_time_s, dtype=float)],
        "fills": [int(x) for x in np.asarray(our_fills)],
        "ours_per_s": [_finite(x) for x in rate],
        "ours_ci_low": [_finite(x) for x in lo],
        "ours_ci_high": [_finite(x) for x in hi],
        "public_trades_reaching": None,
        "public_per_s": None,
    }
    if public_reach is not None and duration_s > 0:
        reach = np.asarray(public_reach, dtype=float)
        out["public_trades_reaching"] = [float(x) for x in reach]
        out["public_per_s"] = [_finite(x) for x in reach / duration_s]
    return out


def weighted_quantiles(centers: np.ndarray, weights: np.ndarray, qs: Sequence[float]) -> list[float | None]:
    """Quantiles of a histogram (values at bucket centres, weights e.g. seconds), by the cumulative weight."""
    w = np.asarray(weights, dtype=float)
    c = np.asarray(centers, dtype=float)
    total = float(w.sum())
    if total <= 0:
        return [None for _ in qs]
    cum = np.cumsum(w) / total
    return [float(c[min(int(np.searchsorted(cum, q)), c.size - 1)]) for q in qs]


# --------------------------------------------------------------------------------------------------
# κ diagnostics
# --------------------------------------------------------------------------------------------------


def _ks(sorted_x: np.ndarray, cdf: np.ndarray) -> float:
    """Two-sided K–S distance between the empirical law of ``sorted_x`` and the model CDF at those points."""
    n = sorted_x.size
    i = np.arange(1.0, n + 1.0)
    return float(max((i / n - cdf).max(), (cdf - (i - 1.0) / n).max()))


def powerlaw_fit(x: np.ndarray, n_candidates: int = 60, min_tail: int = 20) -> dict[str, Any]:
    """Power law p(δ) = (α−1)/x_min · (δ/x_min)^{−α} for δ ≥ x_min, by maximum likelihood (Clauset et al. 2009).

    For each candidate x_min (quantiles of the positive sample, keeping at least ``min_tail`` points in the tail)
    α̂ = 1 + n / Σ ln(δ/x_min); the x_min whose fit has the smallest K–S distance on its tail is kept.
    """
    x = np.sort(np.asarray(x, dtype=float))
    x = x[np.isfinite(x) & (x > 0)]
    if x.size < max(min_tail, 3):
        return {"alpha": None, "x_min": None, "ks_stat": None, "n_tail": int(x.size)}
    top = max(0.0, 1.0 - min_tail / x.size)
    # candidates are sample values (quantiles snapped to the sample), so x_min is the tail's smallest point
    candidates = np.unique(x[(np.linspace(0.0, min(top, 0.95), n_candidates) * (x.size - 1)).astype(int)])
    best: tuple[float, float, float, int] | None = None
    for x_min in candidates:
        tail = x[x >= x_min]
        logs = np.log(tail / x_min)
        if tail.size < min_tail or logs.sum() <= 0:
            continue
        alpha = 1.0 + tail.size / float(logs.sum())
        ks = _ks(tail, 1.0 - (tail / x_min) ** (1.0 - alpha))
        if best is None or ks < best[2]:
            best = (float(x_min), alpha, ks, int(tail.size))
    if best is None:
        return {"alpha": None, "x_min": None, "ks_stat": None, "n_tail": 0}
    return {"alpha": best[1], "x_min": best[0], "ks_stat": best[2], "n_tail": best[3]}


def kappa_diagnostics(delta: np.ndarray, n_bins: int = 40) -> dict[str, Any]:
    """Distribution of trade distances from the mid and the two candidate laws, fitted by maximum likelihood.

    ``delta`` are δ = |price − mid|/mid (fractions of mid, mid = the one in force just before each trade, as in
    :mod:`apps.engine.estimators.kappa`'s raw model). Reported:

    * exponential δ ~ Exp(κ): κ̂ = 1/mean(δ) (per unit fractional distance; mean distance 1e4/κ̂ bps), its
      asymptotic sd κ̂/√n, and the K–S statistic against Exp(κ̂) (with its p-value, optimistic because κ is
      fitted on the same sample);
    * power law on the tail δ ≥ x_min (:func:`powerlaw_fit`): α̂, x_min, K–S statistic on the tail;
    * on that same tail, the shifted exponential κ_tail e^{−κ_tail(δ − x_min)} against the power law: the
      log-likelihood ratio ℓ_exp − ℓ_pow (> 0 favours the exponential) and Vuong's p-value;
      ``preferred`` names the law with the higher likelihood on the tail;
    * a histogram in bps with both fitted densities at the bin centres (per bp, the power law scaled by the tail's
      share of the sample).
    """
    d = np.asarray(delta, dtype=float)
    d = np.sort(d[np.isfinite(d) & (d >= 0)])
    n = int(d.size)
    out: dict[str, Any] = {"n": n, "exponential": None, "power_law": None, "comparison": None, "histogram": None}
    if n < 3 or d.mean() <= 0:
        return out
    mean = float(d.mean())
    kappa = 1.0 / mean
    ks_exp = _ks(d, -np.expm1(-kappa * d))
    out["exponential"] = {
        "kappa": kappa,
        "kappa_std": kappa / math.sqrt(n),
        "mean_distance_bps": mean * _BPS,
        "ks_stat": ks_exp,
        "ks_p": float(stats.kstwo.sf(ks_exp, n)),
    }
    pl = powerlaw_fit(d)
    out["power_law"] = {
        "alpha": pl["alpha"],
        "x_min_bps": pl["x_min"] * _BPS if pl["x_min"] is not None else None,
        "ks_stat": pl["ks_stat"],
        "n_tail": pl["n_tail"],
    }
    if pl["x_min"] is not None:
        tail = d[d >= pl["x_min"]]
        excess = tail - pl["x_min"]
        _, ratio, p = exp_vs_powerlaw(tail)
        ks_tail_exp = _ks(tail, -np.expm1(-excess / excess.mean())) if excess.mean() > 0 else math.nan
        out["comparison"] = {
            "x_min_bps": pl["x_min"] * _BPS,
            "n_tail": int(tail.size),
            "exp_tail_kappa": _finite(1.0 / float(excess.mean())) if excess.mean() > 0 else None,
            "exp_tail_ks_stat": _finite(ks_tail_exp),
            "powerlaw_ks_stat": pl["ks_stat"],
            "loglik_ratio": _finite(ratio),
            "vuong_p": _finite(p),
            "preferred": None if not math.isfinite(ratio) else ("exponential" if ratio > 0 else "power_law"),
        }
    hi = float(np.quantile(d, 0.99)) * _BPS
    edges = np.linspace(0.0, hi if hi > 0 else float(d.max()) * _BPS or 1.0, n_bins + 1)
    counts, _ = np.histogram(d * _BPS, bins=edges)
    width = float(edges[1] - edges[0])
    centers = 0.5 * (edges[:-1] + edges[1:])
    exp_pdf = kappa / _BPS * np.exp(-kappa * centers / _BPS)  # per bp
    pow_pdf: list[float | None] = [None] * n_bins
    if pl["alpha"] is not None:
        a, xm = pl["alpha"], pl["x_min"] * _BPS
        share = pl["n_tail"] / n
        pow_pdf = [_finite(share * (a - 1.0) / xm * (c / xm) ** (-a)) if c >= xm else None for c in centers.tolist()]
    out["histogram"] = {
        "edges_bps": [float(x) for x in edges],
        "center_bps": [float(x) for x in centers],
        "density_per_bp": [float(c) / (n * width) for c in counts],
        "exp_pdf_per_bp": [float(x) for x in exp_pdf],
        "powerlaw_pdf_per_bp": pow_pdf,
        "beyond_last_edge": int(n - counts.sum()),
    }
    return out
