"""κ, the decay of fill intensity with quote distance, estimated from the trade tape.

Model
-----
GLFT/Avellaneda–Stoikov assume that a resting order at distance δ from mid is hit with intensity

    λ(δ) = A · exp(−κ δ)                                   [λ, A in 1/s; δ a fraction of mid; κ per unit δ]

so the distance ``D`` that a market order reaches from mid has survival ``P(D ≥ δ) = exp(−κ δ)``, i.e.
``D ~ Exp(κ)`` and ``κ = 1 / E[D]``. κ is therefore measured where trades *execute* relative to the mid
that prevailed just before them — never from the shape of the resting L2 book, which measures standing
liquidity (it often grows with distance and yields a κ 50× too small; see the seed documents).

Two likelihoods for δ are kept side by side:

* **raw (continuous)** — δ = |price − mid| / mid treated as a continuous Exp(κ) draw. Conjugate:
  prior κ ~ Gamma(α0, β0) (shape, rate) gives the posterior Gamma(α0 + n, β0 + Σδ).
* **tick (discretised, beyond the touch)** — on a real book prices live on a tick grid and the spread is
  usually one tick, so most trades print *exactly* half a spread from mid: the continuous model then
  measures the spread, not the decay. With ``tick_size > 0`` we measure the distance **beyond the touch**,
  ``δ_eff = |price − mid| − half_spread`` (price units, the half spread at the trade), rounded to a whole
  number of ticks ``k`` (τ = tick/mid). Whether a print stops AT the touch (k = 0) depends on where the
  unobserved true mid sits inside its tick, so those prints are not used for κ (their share of the orders is reported
  as ``frac_orders_at_touch``). For the prints that went THROUGH the touch (k ≥ 1), memorylessness of Exp(κ)
  makes the ticks travelled past the first level, ``k − 1``, geometric with ``P = (1 − e^{−κτ}) e^{−κ(k−1)τ}``
  whatever the mid's position was, so the log-likelihood is ``n·ln(1 − e^{−κτ}) − κ·Σ(k − 1)τ``, which tends
  to the continuous one as κτ → 0. The prior is the same Gamma; the posterior is no longer Gamma and is
  integrated numerically on a grid around its (unique) mode. κ here is the decay of reach beyond the touch, which
  is what a quote placed beyond the touch faces (any constant shift is absorbed into A in λ(δ) = A e^{−κδ}).
  On the simulator (true κ = 5000) its 90 % interval covers the truth in ≥ 90 % of seeds
  (tests/engine/test_estimator_recovery.py); counting the at-touch prints as level 0 biased κ ~10 % low.
  With fewer than ``tick_min_through`` orders through the touch in the window (a level-1 feed whose
  executions all happen at the touch, a wide-spread stock) the raw model is used; ``detail["kappa_model"]``
  (1 tick, 0 raw) and ``n_orders_through_touch`` say which one produced the value.

The reported ``value`` comes from the tick model when ``tick_size > 0`` and from the raw model otherwise;
both are in ``detail`` (``kappa_raw``, ``kappa_tick``) so the effect of the correction is visible.

One taker order, one observation
--------------------------------
λ(δ) is the rate of taker *orders* that reach δ: an order that sweeps three levels fills a small resting quote on
any of them once. Binance's trade streams print every maker an order meets as its own trade (3.9 prints per order on
the shared USD-M recording, 11–14 per order one tick or more past the touch), so counting prints would weigh a deep
order by its number of makers and take its copies for independent draws. The estimator therefore records one
observation per order: :meth:`PyTradeKappaEstimator.update_trusted` opens it with its first print and the touch in
force before it, and :meth:`PyTradeKappaEstimator.extend_trusted` folds each further print of the same order into it
(its size adds to the volume; the order's depth is its deepest print, measured against the order's own touch, not
against a book its earlier prints already moved). :class:`~apps.engine.estimators.market.MarketEstimators` says which
prints belong to one order (the same exchange time and aggressor, ``Trade.order_key``). Each order counts once,
whatever its size: a 0.01 BTC quote at δ is filled by any order that reaches δ, so the count of orders reaching each
depth is what λ(δ) describes, and the posteriors are exact for independent orders:
``Gamma(α0 + n, β0 + Σδ)`` over the n orders in the window. ``min_volume`` still gates on base-asset volume.

Assumptions: orders in the window are independent draws (the Hawkes branching ratio of order flow, ~0.6 on USD-M,
makes the interval somewhat optimistic); the mid passed in is the one *before* the order's first print (pair it
with the last top-of-book strictly earlier).

Goodness of fit
---------------
``detail`` carries a Kolmogorov–Smirnov test of the exponential (``ks_stat``, ``ks_p``; unweighted, per
trade, κ re-fitted on the same sample so the p-value is optimistic — Lilliefors), computed on the
randomised probability-integral transform in the tick model (δ is discrete there), and a power-law
alternative on the tail ``δ ≥ δ_min`` (``powerlaw_alpha``, ``loglik_ratio`` = ℓ_exp − ℓ_powerlaw, > 0
favours the exponential, and its Vuong p-value ``loglik_ratio_p``).

``fit_intensity_curve`` fits A and κ jointly from how often trades reach each depth (Poisson likelihood
on disjoint depth bins), with standard errors.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from itertools import islice

import numpy as np
from scipy import optimize, special, stats

from apps.engine import compiled
from apps.engine.cfloat import c_div as _div
from apps.engine.cfloat import c_exp as _exp
from apps.engine.cfloat import c_log as _log
from apps.engine.estimators.base import EstimatorSnapshot, EstimatorState
from apps.engine.market.events import BestBidAsk, Trade
from apps.engine.validation import fraction, non_negative, positive

_NS_PER_S = 1_000_000_000
_BPS = 1e4


@dataclass(frozen=True, slots=True)
class KappaParams:
    """Parameters of :class:`TradeKappaEstimator`.

    Attributes
    ----------
    window_s : float
        Length of the trade window, seconds.
    min_volume : float
        Base-asset volume (all prints of the window's taker orders) the window must hold before κ is reported
        (state WARMING below it).
    prior_kappa : float
        Prior mean of κ, per unit fractional distance (2000 ⇔ 5 bps mean distance).
    prior_shape : float
        Prior shape α0 of the Gamma prior, in pseudo-trades; the prior rate is β0 = α0 / prior_kappa.
        Small values (default 2) let a handful of trades dominate.
    kappa_min, kappa_max : float
        Plausible range of κ. Outside it the estimator is FAILED (the value is reported, never clamped).
        The defaults, 100–50 000, mean an average trade distance between 100 bps and 0.2 bps.
    stale_after_s : float
        Seconds without a trade after which the estimate is STALE. Default 60 s, the trade-rate estimator's
        (``ArrivalParams.stale_after_s``): κ and λ read the same tape and agree on when it has gone quiet for
        too long. A lull shorter than that leaves the window's trades as the best estimate (at 30 s our quotes
        idled 8 % of a LOBSTER AMZN day; Binance books never go 30 s without a trade).
    tick_size : float
        Price tick in quote currency. 0 uses the continuous model on raw δ; > 0 the discretised model on
        the distance beyond the touch (module docstring).
    ci_level : float
        Probability mass of the reported credible interval.
    gof_min_trades : int
        Fewest taker orders in the window for the goodness-of-fit statistics (NaN below it).
    gof_max_trades : int
        The goodness-of-fit statistics use at most the latest this-many taker orders (bounds the cost).
    gof_interval_s : float
        Minimum seconds between goodness-of-fit recomputations (they are cached in between).
    gof_seed : int
        Seed for the randomised probability-integral transform in the tick model.
    tick_min_through : float
        Number of taker orders through the touch the tick model needs; below it the raw model is used and
        ``detail["kappa_model"]`` says so (0 = "raw", 1 = "tick"). A level-1 feed whose executions all happen AT
        the touch (LOBSTER) never feeds the tick model; there the half-spread is the information.
    """

    window_s: float = 60.0
    min_volume: float = 1.0
    prior_kappa: float = 2000.0
    prior_shape: float = 2.0
    kappa_min: float = 100.0
    kappa_max: float = 50_000.0
    stale_after_s: float = 60.0
    tick_size: float = 0.0
    ci_level: float = 0.95
    gof_min_trades: int = 20
    gof_max_trades: int = 5000
    gof_interval_s: float = 1.0
    gof_seed: int = 0
    tick_min_through: float = 5.0

    def validate(self) -> KappaParams:
        for name in ("window_s", "prior_kappa", "prior_shape", "kappa_min", "kappa_max", "stale_after_s"):
            positive(name, getattr(self, name), "KappaParams")
        for name in ("min_volume", "tick_size", "gof_interval_s", "tick_min_through"):
            non_negative(name, getattr(self, name), "KappaParams")
        if self.kappa_min >= self.kappa_max:
            raise ValueError(f"kappa_min must be < kappa_max, got {self.kappa_min!r} >= {self.kappa_max!r}")
        fraction("ci_level", self.ci_level, "KappaParams", open_low=True, closed_high=False)
        if self.gof_min_trades < 3:
            raise ValueError(f"gof_min_trades must be >= 3, got {self.gof_min_trades!r}")
        if self.gof_max_trades < self.gof_min_trades:
            raise ValueError(f"gof_max_trades must be >= gof_min_trades, got {self.gof_max_trades!r}")
        return self

    @property
    def prior_rate(self) -> float:
        """β0 = α0 / prior_kappa, in units of fractional distance."""
        return self.prior_shape / self.prior_kappa


# --------------------------------------------------------------------------------------------------
# Pure functions: posteriors, fits, tests
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class KappaPosterior:
    """Posterior summary of κ: mean, sd, equal-tailed credible interval (all per unit fractional distance)."""

    mean: float
    std: float
    ci_low: float
    ci_high: float


def gamma_posterior(
    n_eff: float, sum_delta: float, prior_shape: float, prior_rate: float, ci_level: float = 0.95
) -> KappaPosterior:
    """Posterior of κ for δ ~ Exp(κ) with prior Gamma(α0, β0): Gamma(α0 + n, β0 + Σδ).

    Parameters
    ----------
    n_eff : float
        (Effective) number of observations n.
    sum_delta : float
        Σδ over them (fractions of mid), weighted consistently with ``n_eff``.
    prior_shape, prior_rate : float
        α0 (dimensionless) and β0 (fractional distance).
    """
    a = prior_shape + n_eff
    b = prior_rate + sum_delta
    tail = 0.5 * (1.0 - ci_level)
    return KappaPosterior(
        mean=a / b,
        std=math.sqrt(a) / b,
        ci_low=float(special.gammaincinv(a, tail)) / b,
        ci_high=float(special.gammaincinv(a, 1.0 - tail)) / b,
    )


def tick_posterior(
    n_eff: float,
    sum_delta_beyond: float,
    tick_frac: float,
    prior_shape: float,
    prior_rate: float,
    ci_level: float = 0.95,
    n_grid: int = 201,
) -> KappaPosterior:
    """Posterior of κ for trade depths observed on a tick grid beyond the touch.

    Likelihood: a trade k ticks beyond the touch has probability ``(1 − e^{−κτ}) e^{−κkτ}``, so with
    ``S = Σ kτ`` the log posterior is ``(α0−1) ln κ − β0 κ + n ln(1 − e^{−κτ}) − κ S``. It is log-concave
    in κ, so the mode is the unique root of its derivative; the density is then integrated on a grid in
    ln κ spanning ±12 Laplace standard deviations around the mode.

    Parameters
    ----------
    n_eff : float
        (Effective) number of trades n.
    sum_delta_beyond : float
        S = Σ k·τ, the summed distance beyond the touch (fraction of mid), weighted like ``n_eff``.
    tick_frac : float
        τ = tick / mid, one tick as a fraction of mid.
    """
    u_mode, curv = tick_mode(n_eff, sum_delta_beyond, tick_frac, prior_shape, prior_rate)
    return tick_posterior_at_mode(
        n_eff, sum_delta_beyond, tick_frac, prior_shape, prior_rate, u_mode, curv, ci_level, n_grid
    )


def tick_mode(
    n_eff: float, sum_delta_beyond: float, tick_frac: float, prior_shape: float, prior_rate: float
) -> tuple[float, float]:
    """The mode of :func:`tick_posterior`'s log density in u = ln κ and its curvature there: ``(u_mode, curv)``.

    The mode is the root of the derivative (bracketed, then ``scipy.optimize.brentq`` with ``xtol=1e-12``); the
    curvature is minus the derivative's central difference with step 1e-4. The compiled module
    (``_estimators.tick_mode``) does the same operations in C and is held to this function bit for bit.
    """
    a0, b0, n, s, tau = prior_shape, prior_rate, n_eff, sum_delta_beyond, tick_frac

    # Work in u = ln κ, where the density is κ^{α0} e^{−β0κ} (1 − e^{−κτ})^n e^{−κS} (Jacobian κ).
    # d/dκ of n ln(1 − e^{−κτ}) is nτ / (e^{κτ} − 1). The derivative in u tends to α0 + n > 0 as κ → 0
    # and to −∞ as κ → ∞, so its root (the mode) is bracketed.
    def dlogpost(log_k: float) -> float:
        k = math.exp(log_k)
        x = k * tau
        touch_term = n * tau / math.expm1(x) if x < 700.0 else 0.0
        return a0 + k * (touch_term - b0 - s)

    lo, hi = math.log(1e-6 / max(tau, 1e-300)), math.log(1e3 / max(tau, 1e-300))
    while dlogpost(lo) <= 0:
        lo -= 5.0
    while dlogpost(hi) >= 0:
        hi += 5.0
    u_mode = optimize.brentq(dlogpost, lo, hi, xtol=1e-12)
    h = 1e-4
    curv = -(dlogpost(u_mode + h) - dlogpost(u_mode - h)) / (2 * h)
    return u_mode, curv


def _hermite_quantile(cdf: list[float], w: list[float], u: list[float], step: float, target: float) -> float:
    """The ``u`` at which the cumulative integral first reaches ``target``: between the two grid points around it, the
    root of the cubic Hermite interpolant of ``cdf`` whose end slopes are the density itself (``cdf' = w``), found by
    60 bisections of the step (the cubic's error is O(step⁴), against O(step²) for the chord). ``u[i]`` where the
    integral does not grow across the step, ``u[-1]`` if it never reaches ``target``, ``target`` itself if NaN."""
    n = len(cdf)
    for i in range(1, n):
        if cdf[i] >= target:
            j = i - 1
            c0, c1 = cdf[j], cdf[i]
            if not c1 - c0 > 0.0:
                return u[i]
            m0, m1 = step * w[j], step * w[i]
            lo, hi = 0.0, 1.0
            for _ in range(60):
                t = 0.5 * (lo + hi)
                t2 = t * t
                t3 = t2 * t
                c = (
                    (2.0 * t3 - 3.0 * t2 + 1.0) * c0
                    + (t3 - 2.0 * t2 + t) * m0
                    + (3.0 * t2 - 2.0 * t3) * c1
                    + (t3 - t2) * m1
                )
                if c < target:
                    lo = t
                else:
                    hi = t
            return u[j] + 0.5 * (lo + hi) * step
    return target if target != target else u[n - 1]


def tick_posterior_at_mode(
    n_eff: float,
    sum_delta_beyond: float,
    tick_frac: float,
    prior_shape: float,
    prior_rate: float,
    u_mode: float,
    curv: float,
    ci_level: float = 0.95,
    n_grid: int = 201,
) -> KappaPosterior:
    """:func:`tick_posterior` from its mode and curvature (:func:`tick_mode`): the density integrated on the grid
    in ln κ spanning ±12 Laplace standard deviations around the mode (trapezoid rule on ``n_grid`` points).

    Written as plain loops over the grid with the C library's ``exp``/``expm1``/``log`` (``math``), every sum taken
    in grid order, so that the compiled twin (``apps/engine/estimators/_estimators.pyx``: ``_tick_grid``) gives the
    same bits with the same operations in C, on every CPU. (NumPy's vector ``exp``/``log`` kernels differ in the
    last bit between AVX2 and AVX-512 machines, which made the decisions' fingerprints differ by platform.) The
    moments are trapezoid sums, exact to ~1e-11 already on 101 points (the density is smooth and vanishes at both
    ends). The credible interval is the root of the cubic Hermite interpolant of the cumulative integral with its
    Euler–Maclaurin end terms (:func:`_hermite_quantile`), O(step⁴): on the default 201 points within ~1e-6 of a
    25,601-point reference, where the chord through the plain trapezoid sums on 801 points erred by ~2e-4.
    """
    if not (isinstance(n_grid, int) and n_grid >= 2):
        raise ValueError(f"tick_posterior_at_mode: n_grid must be an integer >= 2, got {n_grid!r}")
    a0, b0, n, s, tau = prior_shape, prior_rate, n_eff, sum_delta_beyond, tick_frac
    sd_u = 1.0 / math.sqrt(max(curv, 1e-12))
    u0 = u_mode - 12 * sd_u
    step = 24 * sd_u / (n_grid - 1)
    neg_tau = -tau
    u = [0.0] * n_grid
    k = [0.0] * n_grid
    logp = [0.0] * n_grid
    dlogp = [0.0] * n_grid
    top = -math.inf
    for i in range(n_grid):
        ui = step * i + u0
        ki = _exp(ui)
        # density in u: κ^{α0} e^{−β0 κ} (1 − e^{−κτ})^n e^{−κS}; ln(1 − e^{−κτ}) as log(−expm1(−κτ))
        lp = a0 * ui - b0 * ki + n * _log(-math.expm1(ki * neg_tau)) - ki * s
        # its derivative in u (tick_mode's dlogpost): α0 + κ(nτ/(e^{κτ} − 1) − β0 − S)
        x = ki * tau
        touch = _div(n * tau, math.expm1(x)) if x < 700.0 else 0.0
        u[i], k[i], logp[i], dlogp[i] = ui, ki, lp, a0 + ki * (touch - b0 - s)
        if (lp != lp or lp > top) and top == top:  # the maximum, NaN if any is NaN
            top = lp
    # trapezoid rule on the uniform grid: cumulative integral, normaliser, first two moments
    w = [_exp(lp - top) for lp in logp]
    w0 = w[0]
    cdf = [0.0] * n_grid
    run = 0.0
    kw_sum = 0.0
    for i in range(n_grid):
        run += w[i]
        cdf[i] = (run - 0.5 * (w0 + w[i])) * step
        kw_sum += k[i] * w[i]
    z = cdf[n_grid - 1]
    last = n_grid - 1
    mean = _div(step * (kw_sum - 0.5 * (k[0] * w0 + k[last] * w[last])), z)
    dev_sum = 0.0
    for i in range(n_grid):
        d = k[i] - mean
        dev_sum += d * d * w[i]
    d0, dl = k[0] - mean, k[last] - mean
    var = _div(step * (dev_sum - 0.5 * (d0 * d0 * w0 + dl * dl * w[last])), z)
    # the interval from the cumulative integral with the Euler–Maclaurin end terms, −step²/12·(w'(b) − w'(a)) a step
    # with w' = w·dlogp, and the cubic through it (_hermite_quantile): O(step⁴) where the chord through the plain
    # trapezoid sums was O(step²) (the moments above are already exact: the trapezoid rule converges geometrically on
    # a smooth density that vanishes at both ends)
    h12 = step * step / 12.0
    ccdf = [0.0] * n_grid
    for i in range(1, n_grid):
        ccdf[i] = ccdf[i - 1] + 0.5 * step * (w[i - 1] + w[i]) + h12 * (w[i - 1] * dlogp[i - 1] - w[i] * dlogp[i])
    zc = ccdf[last]
    tail = 0.5 * (1.0 - ci_level)
    return KappaPosterior(
        mean=mean,
        std=math.sqrt(max(var, 0.0)),
        ci_low=_exp(_hermite_quantile(ccdf, w, u, step, tail * zc)),
        ci_high=_exp(_hermite_quantile(ccdf, w, u, step, (1.0 - tail) * zc)),
    )


@dataclass(frozen=True, slots=True)
class ExpGoodnessOfFit:
    """KS test of the exponential and its comparison with a power law on the tail.

    ``ks_stat``/``ks_p``: Kolmogorov–Smirnov statistic and p-value (exponential with κ fitted on the same
    sample, so p is optimistic). ``powerlaw_alpha``: MLE exponent α of p(δ) ∝ δ^{−α} for δ ≥ δ_min.
    ``loglik_ratio``: ℓ_exp − ℓ_powerlaw on that tail (> 0 favours the exponential); ``loglik_ratio_p``:
    Vuong's two-sided p-value for the sign of the ratio. ``n``: trades used; ``n_tail``: trades with δ ≥ δ_min.
    """

    ks_stat: float = math.nan
    ks_p: float = math.nan
    powerlaw_alpha: float = math.nan
    loglik_ratio: float = math.nan
    loglik_ratio_p: float = math.nan
    n: int = 0
    n_tail: int = 0

    def as_detail(self) -> dict[str, float]:
        return {
            "ks_stat": self.ks_stat,
            "ks_p": self.ks_p,
            "powerlaw_alpha": self.powerlaw_alpha,
            "loglik_ratio": self.loglik_ratio,
            "loglik_ratio_p": self.loglik_ratio_p,
            "gof_n": float(self.n),
            "gof_n_tail": float(self.n_tail),
        }


def _small_levels(x: np.ndarray) -> np.ndarray | None:
    """``x`` as array indices when every value is a non-negative integer below ``x.size`` (tick levels beyond the
    touch, which span a few dozen values in a window of thousands of trades): a per-level table of ``pow`` is then
    cheaper than a call per trade. None otherwise (or for an empty ``x``)."""
    if x.size == 0:
        return None
    lo = float(x.min())
    hi = float(x.max())
    if not (lo >= 0.0 and hi < x.size):  # NaN fails both
        return None
    idx = x.astype(np.intp)
    if not bool((idx == x).all()):
        return None
    return idx


def exp_vs_powerlaw(tail: np.ndarray) -> tuple[float, float, float]:
    """Compare a shifted exponential with a power law on ``tail`` (all values ≥ x_min = tail.min() > 0).

    Returns ``(alpha, loglik_ratio, vuong_p)``; both models are fitted by maximum likelihood on the same
    support x ≥ x_min: exponential density κ e^{−κ(x − x_min)}, power law (α−1)/x_min · (x/x_min)^{−α}.
    """
    x = np.asarray(tail, dtype=float)
    n = x.size
    x_min = float(x.min())
    log_ratio = np.log(x / x_min)
    excess = x - x_min
    if n < 3 or x_min <= 0 or log_ratio.sum() <= 0 or excess.sum() <= 0:
        return math.nan, math.nan, math.nan
    alpha = 1.0 + n / float(log_ratio.sum())
    kappa = n / float(excess.sum())
    l_exp = math.log(kappa) - kappa * excess
    l_pow = math.log((alpha - 1.0) / x_min) - alpha * log_ratio
    diff = l_exp - l_pow
    ratio = float(diff.sum())
    sd = float(diff.std())
    p = float(special.erfc(abs(ratio) / (math.sqrt(2.0 * n) * sd))) if sd > 0 else math.nan
    return alpha, ratio, p


def ks_uniform(u: np.ndarray) -> tuple[float, float]:
    """Two-sided one-sample Kolmogorov–Smirnov test of ``u`` against U(0, 1): ``(D, p)``.

    Same statistic and p-value as ``scipy.stats.kstest(u, "uniform")`` (its default: the exact distribution of
    D), at a quarter of its cost: the κ estimator runs it every ``gof_interval_s``.
    A continuous law F is tested by passing ``F(x)``.
    """
    x = np.sort(np.asarray(u, dtype=float))
    n = x.size
    i = np.arange(1.0, n + 1.0)
    d = max(float((i / n - x).max()), float((x - (i - 1.0) / n).max()))
    p = float(kstwo_sf(d, n))
    return d, min(max(p, 0.0), 1.0)


try:  # the function scipy's kstwo._sf is (scipy >= 1.5); pinned to kstwo.sf by tests/engine/estimators/test_kappa.py
    from scipy.stats._ksstats import kolmogn as _kolmogn
except ImportError:  # pragma: no cover - a scipy that moved it: the public path, same values
    _kolmogn = None


def kstwo_sf(d: float, n: int) -> float:
    """``scipy.stats.kstwo.sf(d, n)`` (the exact two-sided KS survival function) for a count n ≥ 1, without the
    distribution framework's argument handling around it (~200 µs of a 250 µs call): the same support rule
    (1 at or below 1/(2n), 0 at or above 1, NaN for NaN) and, inside it, the very function ``kstwo`` calls."""
    if _kolmogn is None or type(n) is not int or n < 1:
        return float(stats.kstwo.sf(d, n))
    d = float(d)
    if d != d:
        return math.nan
    if d <= 0.5 / n:
        return 1.0
    if d >= 1.0:
        return 0.0
    return float(_kolmogn(n, d, cdf=False))


def exponential_gof_continuous(delta: np.ndarray) -> ExpGoodnessOfFit:
    """KS test of δ ~ Exp(κ̂) with κ̂ = 1/mean(δ), plus the power-law comparison on δ ≥ min positive δ."""
    d = np.asarray(delta, dtype=float)
    if d.size < 3 or d.mean() <= 0:
        return ExpGoodnessOfFit(n=int(d.size))
    ks_stat, ks_p = ks_uniform(-np.expm1(-d / float(d.mean())))  # the fitted exponential's CDF
    pos = d[d > 0]
    alpha = ratio = p = math.nan
    if pos.size >= 3:
        alpha, ratio, p = exp_vs_powerlaw(pos)
    return ExpGoodnessOfFit(ks_stat, ks_p, alpha, ratio, p, int(d.size), int(pos.size))


def exponential_gof_ticks(levels: np.ndarray, rng: np.random.Generator) -> ExpGoodnessOfFit:
    """Goodness of fit of the geometric (tick-discretised exponential) law of ticks beyond the touch.

    The levels are integers, so the KS test is run on the randomised probability-integral transform
    ``u = F(k−1) + V·(F(k) − F(k−1))`` with V ~ U(0, 1), which is exactly uniform under the model.
    The power-law comparison uses the levels ≥ 1 (the tail beyond the touch) as continuous values.
    """
    k = np.asarray(levels, dtype=float)
    if k.size < 3:
        return ExpGoodnessOfFit(n=int(k.size))
    mean = float(k.mean())
    if mean <= 0:
        # Every trade at the touch: the geometric MLE is degenerate (κ = ∞); nothing to test.
        return ExpGoodnessOfFit(n=int(k.size))
    q = mean / (1.0 + mean)  # P(level ≥ j+1 | ≥ j) at the MLE
    idx = _small_levels(k)
    if idx is not None:
        # q**j once for each j up to the deepest level + 1, then read per trade: the very values q ** k gives (the
        # same pow of the same two doubles) for a few dozen pow calls instead of two per trade
        powers = q ** np.arange(float(k.max()) + 2.0)
        cdf_hi = 1.0 - powers[idx + 1]
        cdf_lo = 1.0 - powers[idx]
    else:
        cdf_hi = 1.0 - q ** (k + 1.0)
        cdf_lo = 1.0 - q**k
    u = cdf_lo + rng.random(k.size) * (cdf_hi - cdf_lo)
    ks_stat, ks_p = ks_uniform(u)
    tail = k[k >= 1]
    alpha = ratio = p = math.nan
    if tail.size >= 3:
        alpha, ratio, p = exp_vs_powerlaw(tail)
    return ExpGoodnessOfFit(ks_stat, ks_p, alpha, ratio, p, int(k.size), int(tail.size))


@dataclass(frozen=True, slots=True)
class IntensityFit:
    """Joint fit of λ(δ) = A e^{−κδ}: A per second, κ per unit fractional distance, with standard errors.

    ``depths`` are the bin edges used (fractions of mid), ``rate_per_s`` the observed rate of trades
    reaching at least each edge, ``n_trades`` the trades used, ``converged`` whether the optimiser did.
    """

    a_per_s: float
    kappa: float
    a_std: float
    kappa_std: float
    depths: tuple[float, ...] = ()
    rate_per_s: tuple[float, ...] = ()
    n_trades: int = 0
    converged: bool = True


def fit_intensity_curve(
    deltas: np.ndarray, duration_s: float, *, bin_width: float | None = None, n_bins: int = 20, min_delta: float = 0.0
) -> IntensityFit:
    """Fit λ(δ) = A·e^{−κδ} from how often trades reach each depth.

    Trades reaching depth ≥ d arrive as a Poisson process of rate λ(d). Counting the trades whose depth
    falls in disjoint bins ``[d_j, d_{j+1})`` (the last bin open) gives independent Poisson counts with
    means ``T·A·(e^{−κ d_j} − e^{−κ d_{j+1}})``; A and κ maximise that likelihood and their standard errors
    come from the inverse observed information (delta method for A, fitted in log A).

    Parameters
    ----------
    deltas : array
        Trade depths from mid (fractions of mid), e.g. |price − mid| / mid or the depth beyond the touch.
    duration_s : float
        Observation time T over which the trades were collected, seconds.
    bin_width : float, optional
        Width of the depth bins (fraction of mid); put it on the tick grid (tick/mid) for tick data. A depth
        exactly on an edge belongs to the bin above it.
        Defaults to the range between ``min_delta`` and the 99th percentile divided by ``n_bins``.
    n_bins : int
        Number of bins below the open last bin.
    min_delta : float
        Depth of the first edge d_0; trades shallower than it are dropped (e.g. the half spread).
    """
    positive("duration_s", duration_s, "fit_intensity_curve")
    d = np.asarray(deltas, dtype=float)
    d = d[np.isfinite(d) & (d >= min_delta)]
    n = d.size
    if n < 2:
        raise ValueError(f"fit_intensity_curve needs at least 2 trades at depth >= min_delta, got {n}")
    if bin_width is None:
        span = float(np.quantile(d, 0.99)) - min_delta
        bin_width = span / n_bins if span > 0 else 1e-6
    positive("bin_width", bin_width, "fit_intensity_curve")
    edges = min_delta + bin_width * np.arange(n_bins + 1)
    # Depths on a grid land exactly on edges; the relative nudge keeps k·w in bin k despite rounding.
    idx = np.minimum(np.floor((d - min_delta) / bin_width * (1 + 1e-9) + 1e-9).astype(int), n_bins)
    counts = np.bincount(idx, minlength=n_bins + 1).astype(float)
    lower = edges
    upper = np.append(edges[1:], np.inf)

    def nll(theta: np.ndarray) -> float:
        log_a, log_k = theta
        k = math.exp(log_k)
        mass = np.exp(-k * lower) - np.where(np.isinf(upper), 0.0, np.exp(-k * np.where(np.isinf(upper), 0, upper)))
        mu = duration_s * math.exp(log_a) * np.maximum(mass, 1e-300)
        return float(np.sum(mu - counts * np.log(mu)))

    mean_excess = float(np.mean(d - min_delta))
    k0 = 1.0 / mean_excess if mean_excess > 0 else 1.0 / bin_width
    a0 = n / duration_s * math.exp(k0 * min_delta)
    res = optimize.minimize(
        nll,
        np.array([math.log(a0), math.log(k0)]),
        method="Nelder-Mead",
        options={"xatol": 1e-10, "fatol": 1e-10, "maxiter": 4000},
    )
    log_a, log_k = res.x
    hess = _numeric_hessian(nll, res.x)
    try:
        cov = np.linalg.inv(hess)
        sd_log_a, sd_log_k = math.sqrt(max(cov[0, 0], 0.0)), math.sqrt(max(cov[1, 1], 0.0))
    except np.linalg.LinAlgError:
        sd_log_a = sd_log_k = math.nan
    a, k = math.exp(log_a), math.exp(log_k)
    reach = counts[::-1].cumsum()[::-1] / duration_s
    return IntensityFit(
        a_per_s=a,
        kappa=k,
        a_std=a * sd_log_a,
        kappa_std=k * sd_log_k,
        depths=tuple(float(e) for e in edges),
        rate_per_s=tuple(float(r) for r in reach),
        n_trades=int(n),
        converged=bool(res.success),
    )


def _numeric_hessian(f, x: np.ndarray, h: float = 1e-4) -> np.ndarray:
    m = x.size
    out = np.empty((m, m))
    for i in range(m):
        for j in range(m):
            ei = np.zeros(m)
            ej = np.zeros(m)
            ei[i] = h
            ej[j] = h
            out[i, j] = (f(x + ei + ej) - f(x + ei - ej) - f(x - ei + ej) + f(x - ei - ej)) / (4 * h * h)
    return out


# --------------------------------------------------------------------------------------------------
# The online estimator
# --------------------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Sums:
    # one row per taker order (the module docstring): its size, its deepest distance, its deepest tick level
    volume: float = 0.0  # Σ size, base units (the min_volume gate)
    delta_raw: float = 0.0  # Σδ
    delta_beyond: float = 0.0  # Σkτ (distance beyond the touch on the tick grid)
    tick: float = 0.0  # Στ
    at_touch: float = 0.0  # orders whose deepest print was at the touch (k = 0)
    count: int = 0  # n, the orders (the rows in the window)
    # orders that went THROUGH the touch (k >= 1): the tick model's sample
    thr_orders: float = 0.0  # n
    thr_excess: float = 0.0  # Σ(k−1)τ
    thr_tick: float = 0.0  # Στ

    def add(self, sign: float, size: float, d_raw: float, d_beyond: float, tau: float, k: int) -> None:
        self.volume += sign * size
        self.delta_raw += sign * d_raw
        self.delta_beyond += sign * d_beyond
        self.tick += sign * tau
        if k == 0:
            self.at_touch += sign
        else:
            self.thr_orders += sign
            self.thr_excess += sign * ((k - 1) * tau)
            self.thr_tick += sign * tau
        self.count += int(sign)


@dataclass(slots=True)
class _GofCache:
    computed_at_ns: int = -1
    n_updates: int = -1
    result: ExpGoodnessOfFit = field(default_factory=ExpGoodnessOfFit)


class PyTradeKappaEstimator:
    """Online κ from the trade tape, with a Gamma-prior posterior (see the module docstring).

    Estimates κ (per unit fractional distance from mid) in λ(δ) = A·e^{−κδ} from how far the taker orders of the
    last ``window_s`` seconds reached from the mid before them, one observation per order (module docstring).

    States: WARMING until the window holds ``min_volume``; STALE after ``stale_after_s`` without a trade;
    FAILED when κ falls outside [kappa_min, kappa_max] (the value is still reported, never clamped), except while
    the raw model stands in for the tick model (fewer than ``tick_min_through`` orders through the touch) during the
    first ``window_s`` after the window began filling: WARMING then, because on a book a tick or two wide the raw
    model measures the half-spread and its κ is far above any plausible decay until enough orders went through.

    Examples
    --------
    >>> est = TradeKappaEstimator(KappaParams(min_volume=0.0))
    >>> est.update(0, price=100.03, size=1.0, mid=100.0)
    >>> round(est.snapshot(0).detail["avg_distance_bps"], 6)
    3.0
    """

    name = "kappa"

    def __init__(self, params: KappaParams | None = None) -> None:
        self.params = (params or KappaParams()).validate()
        self._trades: deque[tuple[int, float, float, float, float, int]] = deque()
        self._window_ns = int(self.params.window_s * _NS_PER_S)
        self._sums = _Sums()
        self._last_input_ns = 0
        self._fill_start_ns = 0  # when the window began filling: the first order, or the first after a gap > window_s
        self._n_updates = 0
        self._pops_since_resum = 0
        self._gof = _GofCache()
        self._rng = np.random.default_rng(self.params.gof_seed)
        # the open order (the last row): the touch its depth is measured against (MarketEstimators reads it for its
        # intensity fit's depths), and its key (update_from_events)
        self.order_mid = math.nan
        self.order_half_spread = math.nan
        self._order_key = None

    # -- mutation ---------------------------------------------------------------------------------

    def update(self, ts_ns: int, price: float, size: float, mid: float, half_spread_px: float | None = None) -> None:
        """Record one taker order (its first print; :meth:`extend` adds the order's further prints).

        Parameters
        ----------
        ts_ns : int
            Local time of the trade, ns.
        price, mid : float
            Trade price and the mid of the last top of book strictly before the trade (quote currency).
        size : float
            Trade size, base units (the weight).
        half_spread_px : float, optional
            Half the bid–ask spread at the trade, quote currency; used by the tick model. When omitted the
            book is assumed one tick wide (half_spread = tick/2).
        """
        for nm, v in (("price", price), ("size", size), ("mid", mid)):
            positive(nm, v, "TradeKappaEstimator.update")
        if half_spread_px is None:
            half_spread_px = 0.5 * self.params.tick_size
        else:
            non_negative("half_spread_px", half_spread_px, "TradeKappaEstimator.update")
        self.update_trusted(ts_ns, price, size, mid, half_spread_px)

    def update_trusted(self, ts_ns: int, price: float, size: float, mid: float, half_spread_px: float) -> None:
        """:meth:`update` without the input checks (``half_spread_px`` required), for callers that feed
        validated trade and top-of-book events (:class:`~apps.engine.estimators.market.MarketEstimators`)."""
        self.order_mid = mid
        self.order_half_spread = half_spread_px
        dist_px = abs(price - mid)
        d_raw = dist_px / mid
        tick = self.params.tick_size
        if tick > 0:
            # Prints inside the touch (stale mid, hidden liquidity) count as at the touch.
            k = max(round((dist_px - half_spread_px) / tick), 0)
            tau = tick / mid
            d_beyond = k * tau
        else:
            k = 0
            tau = 0.0
            d_beyond = 0.0
        self._trades.append((ts_ns, size, d_raw, d_beyond, tau, k))
        self._sums.add(+1.0, size, d_raw, d_beyond, tau, k)
        if self._last_input_ns == 0 or ts_ns - self._last_input_ns > self._window_ns:
            self._fill_start_ns = ts_ns
        if ts_ns > self._last_input_ns:
            self._last_input_ns = ts_ns
        self._n_updates += 1
        if self._trades[0][0] < self._last_input_ns - self._window_ns:
            self._expire(self._last_input_ns)

    def extend(self, ts_ns: int, price: float, size: float) -> None:
        """Add a further print of the last recorded taker order (module docstring): its size adds to the order's, and
        the order's depth becomes the deeper of the two, both against the touch the order was recorded with.

        Parameters
        ----------
        ts_ns : int
            Local time of the print, ns (the order keeps its first print's time in the window).
        price, size : float
            The print's price (quote currency) and size (base units).
        """
        for nm, v in (("price", price), ("size", size)):
            positive(nm, v, "TradeKappaEstimator.extend")
        self.extend_trusted(ts_ns, price, size)

    def extend_trusted(self, ts_ns: int, price: float, size: float) -> None:
        """:meth:`extend` without the input checks. Nothing to extend (no order recorded, or its row has left the
        window) is a no-op: the order is outside the window."""
        trades = self._trades
        if not trades:
            return
        row = trades[-1]
        ts0, w, d_raw, d_beyond, tau, k = row
        mid = self.order_mid
        dist_px = abs(price - mid)
        d = dist_px / mid
        if d > d_raw:
            d_raw = d
        tick = self.params.tick_size
        if tick > 0:
            # (raises on a NaN before anything is changed)
            k2 = max(round((dist_px - self.order_half_spread) / tick), 0)
            if k2 > k:
                k = k2
                d_beyond = k * tau
        self._sums.add(-1.0, *row[1:])
        w = w + size
        trades[-1] = (ts0, w, d_raw, d_beyond, tau, k)
        self._sums.add(+1.0, w, d_raw, d_beyond, tau, k)
        if ts_ns > self._last_input_ns:
            self._last_input_ns = ts_ns
        self._n_updates += 1

    def update_from_events(self, trade: Trade, bbo: BestBidAsk) -> None:
        """Record an :class:`~apps.engine.market.events.Trade` against the :class:`BestBidAsk` that preceded its taker
        order: a print with the last recorded print's order key (``Trade.order_key``) extends that order, any other
        opens one against ``bbo``.

        A non-market print (``trade.market`` False: insurance fund, ADL) is not order flow and is skipped."""
        if not trade.market:
            return
        key = trade.order_key
        if key == self._order_key and self._trades:
            self.extend(trade.ts_local_ns, trade.price, trade.size)
            return
        self.update(trade.ts_local_ns, trade.price, trade.size, bbo.mid, 0.5 * (bbo.ask_px - bbo.bid_px))
        self._order_key = key

    def _expire(self, now_ns: int) -> None:
        cutoff = now_ns - self._window_ns
        while self._trades and self._trades[0][0] < cutoff:
            _ts, w, d_raw, d_beyond, tau, k = self._trades.popleft()
            self._sums.add(-1.0, w, d_raw, d_beyond, tau, k)
            self._pops_since_resum += 1
        if not self._trades:
            self._sums = _Sums()
            self._pops_since_resum = 0
        elif self._pops_since_resum > 50_000:
            # Bound the floating-point drift of the running sums.
            self._sums = self._resum(self._trades)
            self._pops_since_resum = 0

    @staticmethod
    def _resum(trades) -> _Sums:
        s = _Sums()
        for _, w, d_raw, d_beyond, tau, k in trades:
            s.add(+1.0, w, d_raw, d_beyond, tau, k)
        return s

    # -- reading ----------------------------------------------------------------------------------

    # The tick posterior the snapshot uses (the compiled class finds the mode in C: _estimators.tick_posterior).
    _tick_posterior = staticmethod(tick_posterior)

    def _window_sums(self, now_ns: int) -> tuple[_Sums, int]:
        """Sums over trades inside the window at ``now_ns`` without mutating; returns (sums, first index)."""
        cutoff = now_ns - self._window_ns
        s = _Sums(**{f: getattr(self._sums, f) for f in _Sums.__dataclass_fields__})
        first = 0
        for ts, w, d_raw, d_beyond, tau, k in self._trades:
            if ts >= cutoff:
                break
            s.add(-1.0, w, d_raw, d_beyond, tau, k)
            first += 1
        return s, first

    def goodness_of_fit(self, now_ns: int) -> ExpGoodnessOfFit:
        """KS and power-law statistics on the taker orders in the window (cached for ``gof_interval_s``)."""
        p = self.params
        c = self._gof
        fresh = c.n_updates == self._n_updates or (
            c.computed_at_ns >= 0 and now_ns - c.computed_at_ns < p.gof_interval_s * _NS_PER_S
        )
        if fresh and c.computed_at_ns >= 0:
            return c.result
        _, first = self._window_sums(now_ns)
        trades = self._trades
        # the window's latest gof_max_trades rows, in order (list(trades)[first:][-gof_max_trades:] without the copy)
        rows = list(islice(trades, max(first, len(trades) - p.gof_max_trades), None))
        if len(rows) < p.gof_min_trades:
            result = ExpGoodnessOfFit(n=len(rows))
        elif p.tick_size > 0:
            result = exponential_gof_ticks(np.array([r[5] for r in rows], dtype=float), self._rng)
        else:
            result = exponential_gof_continuous(np.array([r[2] for r in rows], dtype=float))
        self._gof = _GofCache(now_ns, self._n_updates, result)
        return result

    def snapshot(self, now_ns: int) -> EstimatorSnapshot:
        """Read κ at ``now_ns`` (ns): value = posterior mean, std = posterior sd, credible interval."""
        p = self.params
        if self._last_input_ns == 0 and not self._trades:
            return EstimatorSnapshot(self.name, math.nan, math.nan, EstimatorState.WARMING, 0, message="no trades yet")
        s, _ = self._window_sums(now_ns)
        detail: dict[str, float] = {
            "n_orders": float(s.count),
            "volume": s.volume,
            "window_s": p.window_s,
            "min_volume": p.min_volume,
        }
        value = std = lo = hi = math.nan
        if s.count > 0 and s.volume > 0:
            n = float(s.count)
            mean_raw = s.delta_raw / n
            raw = gamma_posterior(n, s.delta_raw, p.prior_shape, p.prior_rate, p.ci_level)
            detail.update(
                avg_distance_bps=mean_raw * _BPS,
                kappa_raw=raw.mean,
                kappa_raw_mle=1.0 / mean_raw if mean_raw > 0 else math.inf,
                kappa_raw_std=raw.std,
            )
            post = raw
            if p.tick_size > 0:
                detail.update(
                    avg_distance_beyond_touch_bps=s.delta_beyond / n * _BPS,
                    tick_bps=s.tick / n * _BPS,
                    frac_orders_at_touch=s.at_touch / n,
                )
                detail["kappa_model"] = 0.0
                n_thr = s.thr_orders
                if n_thr > 0 and n_thr >= p.tick_min_through:
                    # Only orders that went through the touch: whether an order stops AT the touch depends on where
                    # the mid sits inside its tick (unobserved), but by memorylessness the ticks travelled past the
                    # first level beyond the touch are geometric with q = e^{−κτ} whatever that position was.
                    tick = self._tick_posterior(
                        n_thr, s.thr_excess, s.thr_tick / n_thr, p.prior_shape, p.prior_rate, p.ci_level
                    )
                    detail.update(kappa_tick=tick.mean, kappa_tick_std=tick.std, kappa_model=1.0)
                    post = tick
                detail["n_orders_through_touch"] = n_thr
            value, std, lo, hi = post.mean, post.std, post.ci_low, post.ci_high
            detail.update(self.goodness_of_fit(now_ns).as_detail())

        state, message = self._state(now_ns, s, value)
        return EstimatorSnapshot(self.name, value, std, state, self._last_input_ns, lo, hi, detail, message)

    def _state(self, now_ns: int, s: _Sums, value: float) -> tuple[EstimatorState, str]:
        p = self.params
        idle_s = (now_ns - self._last_input_ns) / _NS_PER_S
        if idle_s > p.stale_after_s:
            return EstimatorState.STALE, f"no trade for {idle_s:.1f} s (stale after {p.stale_after_s:g} s)"
        if s.volume < p.min_volume or s.count == 0:
            return EstimatorState.WARMING, (
                f"volume {s.volume:g} in the last {p.window_s:g} s is below min_volume {p.min_volume:g}"
            )
        out_of_range = not math.isfinite(value) or not (p.kappa_min <= value <= p.kappa_max)
        if out_of_range and p.tick_size > 0 and s.thr_orders < p.tick_min_through:
            # The raw model stands in for the tick model, and on a book one or a few ticks wide it measures the
            # half-spread, not the decay. Until the window has been full once, too few orders through the touch
            # is the start of a session, not a failed estimate.
            filled_s = (now_ns - self._fill_start_ns) / _NS_PER_S
            if filled_s < p.window_s:
                return EstimatorState.WARMING, (
                    f"{s.thr_orders:g} of the {p.tick_min_through:g} orders through the touch the tick model needs, "
                    f"{filled_s:.1f} s into the first {p.window_s:g} s window (the raw model's kappa {value:.6g} "
                    f"measures the half-spread)"
                )
        if out_of_range:
            return EstimatorState.FAILED, (
                f"kappa {value:.6g} outside the plausible range [{p.kappa_min:g}, {p.kappa_max:g}]"
            )
        return EstimatorState.OK, ""

    @property
    def last_input_ns(self) -> int:
        return self._last_input_ns


# The compiled class (apps/engine/estimators/_estimators.pyx, same API, same results) unless MM_PURE_PYTHON=1 is set
# or the module did not build (apps.engine.compiled, docs/compiled-core.md); PyTradeKappaEstimator stays the reference.
_compiled = compiled.load("apps.engine.estimators._estimators")
TradeKappaEstimator: type[PyTradeKappaEstimator] = (
    _compiled.TradeKappaEstimator if _compiled is not None else PyTradeKappaEstimator
)
ESTIMATORS_COMPILED: bool = _compiled is not None
