"""Fit the strategy's parameters on one time range of market events and score them on a later, held-out one.

What is fitted (each with a 95 % interval where one exists; units as in the engine)
-----------------------------------------------------------------------------------
κ, A
    κ from the ticks travelled *beyond the touch* by each taker order that went through it, at its deepest print
    against the touch before its first (the tick likelihood of :func:`apps.engine.estimators.kappa.tick_posterior`,
    prior the session's ``strategy.kappa_prior`` with :class:`KappaParams`' Gamma shape, each order one draw);
    A = taker orders per second (Poisson interval), the intensity at depth 0 of that scale, as
    :mod:`apps.engine.estimators.market` counts them (the prints of one order, one exchange time and one aggressor,
    are one order: :func:`_order_starts`). The joint Poisson fit of ``λ(δ) = A·e^{−κδ}``
    (:func:`fit_intensity_curve`) is kept as a cross-check.
σ model
    ``sigma_total = √(RV/T)`` and ``sigma_clean = √(BV/T)`` of 1-s mid returns (the sigma estimator's
    realised/bipower machinery and its log-space interval).
Hawkes
    :func:`apps.engine.estimators.hawkes.fit_hawkes` on the taker orders' times (μ, α, β with standard errors),
    proposed as ``strategy.hawkes_prior_{mu,alpha,beta}_per_s`` (all three when a partial change would break
    α < β). As :class:`~apps.engine.estimators.market.MarketEstimators` counts them: the prints of one order (one
    exchange time, one aggressor) are one event, timed on the exchange clock (:func:`_order_times_s`).
microprice coefficients
    Least squares of the mid's fractional change over ``quote_life_s`` on book imbalance (best 5 levels) and
    taker-flow imbalance (trailing 10 s), no intercept, on non-overlapping samples; proposed as
    ``strategy.imbalance_coef_bps`` / ``strategy.flow_coef_bps`` (β·10⁴).
drift observation variances
    For the ``trade_flow`` and ``microprice`` readings of μ: ``R̂ = mean((z − μ_realised)²) − σ²/H``, the prediction
    error's variance minus the realised drift's own diffusion noise over H seconds. Not identified (the prior is
    kept) when the interval reaches 0. Proposed as ``strategy.drift_obs_var_trade_flow`` / ``_microprice``.
adverse selection
    Mean markout over ``quote_life_s`` of public trades within ``as_max_distance_bps`` of mid (where our quotes
    sit), in bps against the maker; proposed as ``strategy.adverse_selection_bps`` (clipped at 0: the quoter
    takes a cost).
γ βs
    On consecutive windows of ``beta_window_s``: regress the realised risk of the next window,
    ``y = ½ ln(RV_next / (σ_ref² W))`` (log of realised over reference volatility), on the market features at
    the window's start (volatility regime, thin book, flow toxicity, cascade intensity; built as the engine builds
    them, from trailing windows) by least squares with an intercept. ``γ ∝`` the risk a feature predicts, so the
    slope is the β. A β is proposed only with ``min_windows`` windows and a standard error ≤ ``max_beta_se``;
    otherwise, and for the features that depend on our own trading (inventory, drawdown, estimator uncertainty),
    the prior is kept and the result says why.

Every fitted value that is a parameter is proposed by its session path (``strategy.<field>``, the βs as
``strategy.risk_aversion.beta_<feature>``; ``settable``) and applied through :func:`apps.control.params.change`.
The κ, drift and Hawkes priors are estimator fields (:data:`apps.engine.core.ESTIMATOR_FIELDS`): they take effect
when a session starts. Only A and σ are review only (``measured.*``): the estimators measure them live, there is
no parameter to set.

A change is proposed only where the data contradict the value in force: when the old value lies inside the fitted
95 % interval it is kept (and the fitted value shown beside it).
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from scipy import stats

from apps.engine.core import StrategyParams
from apps.engine.estimators.hawkes import HawkesParams, fit_hawkes, hawkes_loglik
from apps.engine.estimators.kappa import KappaParams, fit_intensity_curve, tick_posterior
from apps.engine.estimators.market import EstimatorConfig, infer_tick_size
from apps.engine.estimators.sigma import _THETA_BV, _THETA_RV, bipower_variation, sigma_log_interval
from apps.engine.market.book import OrderBook
from apps.engine.market.events import BestBidAsk, DepthSnapshot, DepthUpdate, Trade
from apps.engine.quoting.quoter import QuoterParams
from apps.engine.quoting.risk_aversion import FEATURE_NAMES

__all__ = ["CalibrationConfig", "CalibrationResult", "MarketSeries", "calibrate", "check_split", "collect"]

_NS = 1_000_000_000
_BPS = 1e4
_Z95 = float(stats.norm.ppf(0.975))
PRIOR_SIGMA = 1e-4  # per √s: the σ the quoter's defaults are scaled for (QuoterParams.gamma_base docstring)
_EST = EstimatorConfig()
MARKET_FEATURES = ("volatility_regime", "thin_book", "flow_toxicity", "cascade_intensity")
OWN_FEATURES = tuple(f for f in FEATURE_NAMES if f not in MARKET_FEATURES)


def check_split(fit_start_ns: int, fit_end_ns: int, validate_start_ns: int, validate_end_ns: int) -> None:
    """Raise ValueError naming the field unless fit and validation are non-empty and validation starts at or after
    the fit range ends (the held-out range never overlaps the fitted one)."""
    for name, v in (
        ("fit_start", fit_start_ns),
        ("fit_end", fit_end_ns),
        ("validate_start", validate_start_ns),
        ("validate_end", validate_end_ns),
    ):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
            raise ValueError(f"{name} must be an integer ns timestamp, got {v!r}")
    if not fit_start_ns < fit_end_ns:
        raise ValueError(f"fit_end must be after fit_start ({fit_end_ns} <= {fit_start_ns})")
    if not validate_start_ns < validate_end_ns:
        raise ValueError(f"validate_end must be after validate_start ({validate_end_ns} <= {validate_start_ns})")
    if not fit_end_ns <= validate_start_ns:
        raise ValueError(
            f"validate_start must be at or after fit_end: the validation range may not overlap the fit range "
            f"({validate_start_ns} < {fit_end_ns})"
        )


@dataclass(frozen=True, slots=True)
class CalibrationConfig:
    """Knobs of the fit (seconds, bps as named); ``baseline`` holds the session's current ``strategy`` values."""

    quote_life_s: float = QuoterParams().quote_life_s
    as_max_distance_bps: float = 3.0
    sigma_bucket_s: float = 1.0
    flow_window_s: float = 10.0
    drift_horizon_s: float = 5.0
    beta_window_s: float = 10.0
    beta_lookback_s: float = 60.0
    cascade_window_s: float = 5.0
    min_windows: int = 30
    max_beta_se: float = 0.5
    hawkes_max_events: int = 3000
    imbalance_levels: int = _EST.imbalance_levels
    near_touch_bps: float = _EST.near_touch_bps
    baseline: Mapping[str, float] = field(default_factory=dict)

    def validate(self) -> CalibrationConfig:
        for f in (
            "quote_life_s",
            "as_max_distance_bps",
            "sigma_bucket_s",
            "flow_window_s",
            "drift_horizon_s",
            "beta_window_s",
            "beta_lookback_s",
            "cascade_window_s",
            "max_beta_se",
        ):
            v = getattr(self, f)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise ValueError(f"CalibrationConfig.{f} must be a finite number > 0, got {v!r}")
        return self

    def old(self, name: str) -> float:
        """The current value of a ``strategy`` field (``risk_aversion.beta_<feature>`` for a β): the baseline's, else
        the engine's default."""
        head, _, beta = name.partition(".")
        if beta:
            risk = self.baseline.get(head)
            if isinstance(risk, Mapping) and beta in risk:
                return float(risk[beta])
            return float(StrategyParams().as_dict()[head][beta])
        if name in self.baseline:
            return float(self.baseline[name])
        return float(StrategyParams().as_dict()[name])


# --- the event stream as arrays ---------------------------------------------------------------------------


@dataclass
class MarketSeries:
    """Top of book, book signals and trades of one range, as arrays (ns times, prices in quote currency)."""

    start_ns: int
    end_ns: int
    tick_size: float
    q_ts: np.ndarray
    mid: np.ndarray
    imbalance: np.ndarray
    depth: np.ndarray
    t_ts: np.ndarray
    t_px: np.ndarray
    t_size: np.ndarray
    t_side: np.ndarray
    t_mid: np.ndarray
    t_half: np.ndarray
    t_exch: np.ndarray  # each print's exchange time, ns (its local time where the feed gives none)

    @property
    def duration_s(self) -> float:
        return (self.end_ns - self.start_ns) / _NS

    def mid_at(self, ts_ns: np.ndarray) -> np.ndarray:
        """The mid in effect at each time (last top of book at or before it; the first one before any)."""
        i = np.searchsorted(self.q_ts, ts_ns, side="right") - 1
        return self.mid[np.clip(i, 0, self.mid.size - 1)]

    def at(self, arr: np.ndarray, ts_ns: np.ndarray) -> np.ndarray:
        i = np.searchsorted(self.q_ts, ts_ns, side="right") - 1
        return arr[np.clip(i, 0, arr.size - 1)]

    def flow_imbalance(self, ts_ns: np.ndarray, window_s: float) -> np.ndarray:
        """Signed taker volume over total in ``(t − window, t]``, 0 with no trades."""
        signed = np.concatenate(([0.0], np.cumsum(self.t_size * self.t_side)))
        total = np.concatenate(([0.0], np.cumsum(self.t_size)))
        hi = np.searchsorted(self.t_ts, ts_ns, side="right")
        lo = np.searchsorted(self.t_ts, ts_ns - int(window_s * _NS), side="right")
        tot = total[hi] - total[lo]
        return np.where(tot > 0, (signed[hi] - signed[lo]) / np.where(tot > 0, tot, 1.0), 0.0)

    def trade_count(self, ts_ns: np.ndarray, window_s: float) -> np.ndarray:
        hi = np.searchsorted(self.t_ts, ts_ns, side="right")
        lo = np.searchsorted(self.t_ts, ts_ns - int(window_s * _NS), side="right")
        return hi - lo


def collect(
    events: Iterable[Any],
    start_ns: int,
    end_ns: int,
    *,
    tick_size: float = 0.0,
    imbalance_levels: int = _EST.imbalance_levels,
    near_touch_bps: float = _EST.near_touch_bps,
) -> MarketSeries:
    """Arrays of the events with ``start_ns <= ts_local_ns < end_ns`` (events outside are skipped, so one stream
    can feed both ranges). Each trade is paired with the last top of book before it."""
    book = OrderBook(checked=False)
    has_book = False
    q: list[tuple[int, float, float, float]] = []
    t: list[tuple[int, float, float, int, float, float]] = []
    t_exch: list[int] = []
    last: BestBidAsk | None = None
    prices: list[float] = []
    for ev in events:
        ts = ev.ts_local_ns
        cls = type(ev)
        if cls is DepthSnapshot:
            book.apply_snapshot(ev)
            has_book = True
            continue
        if cls is DepthUpdate:
            if has_book:
                book.apply_update(ev)
            continue
        if ts < start_ns:
            if cls is BestBidAsk:
                last = ev
            continue
        if ts >= end_ns:
            break
        if cls is BestBidAsk:
            if not (ev.ask_px > ev.bid_px > 0):
                continue
            last = ev
            mid = 0.5 * (ev.bid_px + ev.ask_px)
            if has_book:
                b = sum(s for _, s in book.bids(imbalance_levels))
                a = sum(s for _, s in book.asks(imbalance_levels))
                depth = book.size_within(mid, near_touch_bps * 1e-4)
            else:
                b, a, depth = ev.bid_size, ev.ask_size, ev.bid_size + ev.ask_size
            imb = (b - a) / (b + a) if b + a > 0 else 0.0
            q.append((ts, mid, imb, depth))
            if len(prices) < 5000:
                prices += [ev.bid_px, ev.ask_px]
        elif cls is Trade and ev.market and last is not None:  # an insurance-fund / ADL print is not order flow
            t.append((ts, ev.price, ev.size, int(ev.aggressor), last.mid, 0.5 * (last.ask_px - last.bid_px)))
            t_exch.append(ev.order_key[0])
    if len(q) < 2:
        raise ValueError(f"the range [{start_ns}, {end_ns}) holds {len(q)} top-of-book updates; at least 2 needed")
    qa = np.array(q, dtype=float)
    ta = np.array(t, dtype=float).reshape(-1, 6)
    tick = tick_size if tick_size > 0 else infer_tick_size(prices)
    return MarketSeries(
        start_ns=int(start_ns),
        end_ns=int(end_ns),
        tick_size=float(tick),
        q_ts=np.array([r[0] for r in q], dtype=np.int64),
        mid=qa[:, 1],
        imbalance=qa[:, 2],
        depth=qa[:, 3],
        t_ts=np.array([r[0] for r in t], dtype=np.int64),
        t_px=ta[:, 1],
        t_size=ta[:, 2],
        t_side=ta[:, 3],
        t_mid=ta[:, 4],
        t_half=ta[:, 5],
        t_exch=np.array(t_exch, dtype=np.int64),
    )


# --- results ------------------------------------------------------------------------------------------------


@dataclass
class Estimate:
    """One fitted quantity: ``param`` is its dotted name (``strategy.<field>`` when a session can set it),
    ``old`` the value in force (the session's/preset's or the engine default), ``new`` the fit, ``ci`` its 95 %
    interval, ``proposed`` whether the proposal changes it (false when it could not be identified: ``note`` says
    why and the prior is kept)."""

    param: str
    label: str
    unit: str
    old: float | None
    new: float
    ci_low: float = math.nan
    ci_high: float = math.nan
    settable: bool = False
    proposed: bool = True
    method: str = ""
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {k: _json_safe(v) for k, v in asdict(self).items()}


@dataclass
class Score:
    """An in- and out-of-sample score of the fitted value against the old one (``better`` says which way)."""

    name: str
    metric: str
    better: str  # "higher" or "lower"
    in_fitted: float
    in_old: float
    out_fitted: float
    out_old: float

    def as_dict(self) -> dict[str, Any]:
        return {k: _json_safe(v) for k, v in asdict(self).items()}


@dataclass
class CalibrationResult:
    estimates: list[Estimate]
    scores: list[Score]
    plots: dict[str, str]
    summary: dict[str, Any]

    def changes(self) -> dict[str, float]:
        """The session parameter changes the proposal makes (settable, proposed, and different from old)."""
        return {e.param: e.new for e in self.estimates if e.settable and e.proposed and e.new != e.old}

    def estimate(self, param: str) -> Estimate:
        for e in self.estimates:
            if e.param == param:
                return e
        raise KeyError(param)


def _json_safe(v: Any) -> Any:
    """A value for JSON: NaN and ±inf as None, numpy scalars as Python numbers."""
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, (np.floating, np.integer)):
        return _json_safe(v.item())
    return v


# --- the fit -------------------------------------------------------------------------------------------------


def calibrate(fit: MarketSeries, val: MarketSeries, config: CalibrationConfig | None = None) -> CalibrationResult:
    """Fit every parameter on ``fit`` and score it on ``val`` (which must start at or after ``fit`` ends)."""
    cfg = (config or CalibrationConfig()).validate()
    check_split(fit.start_ns, fit.end_ns, val.start_ns, val.end_ns)
    estimates: list[Estimate] = []
    scores: list[Score] = []
    plots: dict[str, str] = {}
    summary: dict[str, Any] = {
        "fit": {"duration_s": fit.duration_s, "trades": int(fit.t_ts.size), "quotes": int(fit.q_ts.size)},
        "validate": {"duration_s": val.duration_s, "trades": int(val.t_ts.size), "quotes": int(val.q_ts.size)},
        "tick_size": fit.tick_size,
    }
    _fit_kappa(fit, val, cfg, estimates, scores, plots)
    sigma = _fit_sigma(fit, val, cfg, estimates, scores, plots)
    _fit_hawkes(fit, val, cfg, estimates, scores)
    micro = _fit_microprice(fit, val, cfg, estimates, scores)
    _fit_drift(fit, val, cfg, sigma, micro, estimates, scores)
    _fit_adverse(fit, val, cfg, estimates, scores, plots)
    _fit_betas(fit, val, cfg, sigma, estimates, scores)
    for e in estimates:
        _keep_prior_when_consistent(e)
    _hawkes_as_a_set(estimates)
    return CalibrationResult(estimates, scores, plots, summary)


def _hawkes_as_a_set(estimates: list[Estimate]) -> None:
    """The Hawkes prior is valid only as a set (α < β): when the proposed values beside the kept ones would break
    that, the whole fitted set is proposed, so the session never gets a new α beside an old β it contradicts."""
    group = {e.param.removeprefix("strategy.hawkes_prior_"): e for e in estimates if "hawkes_prior_" in e.param}
    if len(group) != 3 or not any(e.proposed for e in group.values()):
        return
    value = {k: (e.new if e.proposed else e.old) for k, e in group.items()}
    if value["alpha_per_s"] < value["beta_per_s"]:
        return
    for e in group.values():
        if not e.proposed:
            e.proposed = True
            e.note = (e.note + "; " if e.note else "") + "proposed with the rest of its set (α < β must hold)"


def _keep_prior_when_consistent(e: Estimate) -> None:
    """Propose a change only where the data contradict the value in force: an old value inside the fitted 95 %
    interval is kept (the fitted value is still shown)."""
    finite = math.isfinite(e.ci_low) and math.isfinite(e.ci_high)
    if e.proposed and e.old is not None and finite and e.ci_low <= e.old <= e.ci_high:
        e.proposed = False
        e.note = (e.note + "; " if e.note else "") + "the old value lies inside the interval: kept"


def _order_starts(s: MarketSeries) -> np.ndarray:
    """Which prints open a taker order: the first of each run of prints with one exchange time and one aggressor
    (MarketEstimators' rule; a feed without exchange times carries the local time in ``t_exch``)."""
    ex, side = s.t_exch, s.t_side
    first = np.ones(ex.size, dtype=bool)
    first[1:] = (ex[1:] != ex[:-1]) | (side[1:] != side[:-1])
    return first


def _through_touch(s: MarketSeries) -> tuple[np.ndarray, np.ndarray]:
    """(k − 1, τ) of the taker orders that went through the touch: ticks their deepest print travelled past the first
    level, measured against the touch before the order's first print (the book its own prints moved is not the one a
    resting quote was placed in), and tick/mid of that touch."""
    if s.t_px.size == 0:
        return np.empty(0), np.empty(0)
    first = _order_starts(s)
    starts = np.flatnonzero(first)
    order = np.cumsum(first) - 1  # each print's order
    mid, half = s.t_mid[starts][order], s.t_half[starts][order]
    k_print = np.maximum(np.rint((np.abs(s.t_px - mid) - half) / s.tick_size), 0)
    k = np.maximum.reduceat(k_print, starts)
    sel = k >= 1
    return k[sel] - 1, s.tick_size / s.t_mid[starts][sel]


def _geom_loglik(excess: np.ndarray, tau: np.ndarray, kappa: float) -> float:
    """Mean log-likelihood per order of ticks beyond the first level under κ: ln(1 − e^{−κτ}) − κ(k−1)τ."""
    if excess.size == 0:
        return math.nan
    return float(np.mean(np.log(-np.expm1(-kappa * tau)) - kappa * excess * tau))


def _fit_kappa(
    fit: MarketSeries, val: MarketSeries, cfg: CalibrationConfig, est: list, scores: list, plots: dict
) -> None:
    prior = KappaParams(prior_kappa=cfg.old("kappa_prior"))
    excess, tau = _through_touch(fit)
    if excess.size < 5:
        est.append(
            Estimate(
                "strategy.kappa_prior",
                "κ prior (fill-rate decay)",
                "per unit fractional distance",
                prior.prior_kappa,
                math.nan,
                settable=True,
                proposed=False,
                note=f"only {excess.size} taker orders through the touch; κ not identified",
            )
        )
    else:
        post = tick_posterior(
            float(excess.size), float(np.sum(excess * tau)), float(np.mean(tau)), prior.prior_shape, prior.prior_rate
        )
        est.append(
            Estimate(
                "strategy.kappa_prior",
                "κ prior (fill-rate decay beyond the touch)",
                "per unit fractional distance",
                prior.prior_kappa,
                post.mean,
                post.ci_low,
                post.ci_high,
                settable=True,
                method="tick likelihood, Gamma prior",
                note="κ itself is estimated live; this is the estimator's prior mean, set before the session starts",
            )
        )
        ve, vt = _through_touch(val)
        scores.append(
            Score(
                "kappa",
                "mean log-likelihood per taker order beyond the touch",
                "higher",
                _geom_loglik(excess, tau, post.mean),
                _geom_loglik(excess, tau, prior.prior_kappa),
                _geom_loglik(ve, vt, post.mean),
                _geom_loglik(ve, vt, prior.prior_kappa),
            )
        )
        d = excess * tau
        hist, edges = np.histogram(d * _BPS, bins=30)
        width = (edges[1] - edges[0]) / _BPS
        xs = 0.5 * (edges[:-1] + edges[1:])
        plots["kappa"] = svg_chart(
            "Depth beyond the touch (fit range)",
            "bps",
            "taker orders",
            [
                ("observed", xs, hist.astype(float), "bar"),
                ("fitted κ", xs, d.size * width * post.mean * np.exp(-post.mean * xs / _BPS), "line"),
                ("prior κ", xs, d.size * width * prior.prior_kappa * np.exp(-prior.prior_kappa * xs / _BPS), "line"),
            ],
        )
        try:
            joint = fit_intensity_curve(d, fit.duration_s, bin_width=float(np.mean(tau)))
            est.append(
                Estimate(
                    "measured.intensity_fit.kappa",
                    "κ (joint λ(δ) fit, cross-check)",
                    "per unit fractional distance",
                    None,
                    joint.kappa,
                    joint.kappa - _Z95 * joint.kappa_std,
                    joint.kappa + _Z95 * joint.kappa_std,
                    proposed=False,
                    method="Poisson counts in depth bins",
                    note="cross-check of the tick likelihood",
                )
            )
        except ValueError:
            pass
    n = int(np.count_nonzero(_order_starts(fit))) if fit.t_ts.size else 0
    a = n / fit.duration_s
    lo = stats.chi2.ppf(0.025, 2 * n) / 2 / fit.duration_s if n else 0.0
    hi = stats.chi2.ppf(0.975, 2 * n + 2) / 2 / fit.duration_s
    est.append(
        Estimate(
            "measured.A_per_s",
            "A (taker-order intensity at depth 0 beyond the touch)",
            "1/s",
            None,
            a,
            lo,
            hi,
            proposed=False,
            method="taker-order count / duration, Poisson interval",
            note="measured live by the quoter",
        )
    )


def _returns(s: MarketSeries, step_s: float) -> np.ndarray:
    grid = s.start_ns + (np.arange(int(s.duration_s / step_s) + 1) * step_s * _NS).astype(np.int64)
    return np.diff(np.log(s.mid_at(grid)))


def _gauss_ll(r: np.ndarray, sigma: float, dt: float) -> float:
    var = sigma * sigma * dt
    return float(np.mean(-0.5 * np.log(2 * math.pi * var) - 0.5 * r * r / var)) if r.size else math.nan


def _fit_sigma(fit, val, cfg: CalibrationConfig, est: list, scores: list, plots: dict) -> dict[str, float]:
    dt = cfg.sigma_bucket_s
    r = _returns(fit, dt)
    n = r.size
    total = math.sqrt(float(np.sum(r * r)) / (n * dt)) if n else math.nan
    clean = math.sqrt(max(bipower_variation(r), 0.0) / (n * dt)) if n > 2 else math.nan
    _, tlo, thi = sigma_log_interval(total, n, _THETA_RV, 0.95)
    _, clo, chi = sigma_log_interval(clean, n, _THETA_BV, 0.95)
    for param, label, v, lo, hi in (
        ("measured.sigma_clean", "σ clean (bipower, diffusive)", clean, clo, chi),
        ("measured.sigma_total", "σ total (realised, with jumps)", total, tlo, thi),
    ):
        est.append(
            Estimate(
                param,
                label,
                "per √s",
                PRIOR_SIGMA,
                v,
                lo,
                hi,
                proposed=False,
                method=f"{dt:g}-s mid returns",
                note="measured live by the quoter; the reference is 1e-4/√s",
            )
        )
    rv = _returns(val, dt)
    scores.append(
        Score(
            "sigma",
            f"mean Gaussian log-likelihood of {dt:g}-s returns",
            "higher",
            _gauss_ll(r, total, dt),
            _gauss_ll(r, PRIOR_SIGMA, dt),
            _gauss_ll(rv, total, dt),
            _gauss_ll(rv, PRIOR_SIGMA, dt),
        )
    )
    # minutes, or 10-s blocks on a range shorter than 10 minutes (a short recording still gets a curve)
    block_s = 60.0 if val.duration_s >= 600 else 10.0
    block = max(int(block_s / dt), 2)
    m = rv.size // block
    if m:
        realised = np.sqrt(np.sum(rv[: m * block].reshape(m, block) ** 2, axis=1) / (block * dt))
        err = lambda s: float(np.sqrt(np.mean((realised - s) ** 2)))  # noqa: E731
        scores.append(
            Score(
                "sigma_forecast",
                f"RMS error of {block_s:g}-s realised σ (validation)",
                "lower",
                math.nan,
                math.nan,
                err(total),
                err(PRIOR_SIGMA),
            )
        )
        xs = np.arange(m, dtype=float) * block_s
        plots["sigma"] = svg_chart(
            f"Realised σ per {block_s:g} s (validation) vs fitted",
            "s into the validation range",
            "σ per √s",
            [
                ("realised", xs, realised, "line"),
                ("fitted σ total", xs, np.full(m, total), "line"),
                ("reference", xs, np.full(m, PRIOR_SIGMA), "line"),
            ],
        )
    return {"total": total, "clean": clean}


def _order_times_s(s: MarketSeries) -> np.ndarray:
    """The taker orders' times in s from the series' start, sorted: the first print of each run of prints with one
    exchange time and aggressor (one order, as MarketEstimators counts them), at its exchange time (the fit's clock:
    local times add the feed's delivery jitter) moved onto the local clock by the orders' median local − exchange
    offset, so they fall in the series' window."""
    ex = s.t_exch
    if ex.size == 0:
        return np.empty(0)
    first = _order_starts(s)
    ex_o, local_o = ex[first], s.t_ts[first]
    offset = int(np.median(local_o - ex_o))
    return np.sort((ex_o + offset - s.start_ns) / _NS)


def _order_window(times: np.ndarray, duration_s: float) -> tuple[float, float]:
    """The series' window ``[0, duration_s]`` widened to an order the clock offset put just outside it."""
    if not times.size:
        return 0.0, duration_s
    return min(0.0, float(times[0])), max(duration_s, float(times[-1]))


def _fit_hawkes(fit, val, cfg: CalibrationConfig, est: list, scores: list) -> None:
    orders = _order_times_s(fit)
    times = orders[-cfg.hawkes_max_events :]
    if times.size < 50:
        return
    start, end = _order_window(times, fit.duration_s)
    if orders.size > cfg.hawkes_max_events:
        start = float(times[0])  # from the first order kept
    h = fit_hawkes(times, start_s=start, end_s=end)
    for attr, label, se in (
        ("mu_per_s", "Hawkes μ (baseline)", h.stderr_mu),
        ("alpha_per_s", "Hawkes α (jump per event)", h.stderr_alpha),
        ("beta_per_s", "Hawkes β (decay)", h.stderr_beta),
    ):
        v = getattr(h, attr)
        est.append(
            Estimate(
                f"strategy.hawkes_prior_{attr}",
                label,
                "1/s",
                cfg.old(f"hawkes_prior_{attr}"),
                v,
                v - _Z95 * se,
                v + _Z95 * se,
                settable=True,
                proposed=h.ok,
                method="exact MLE (estimators/hawkes.py)",
                note=h.message or f"branching ratio {h.branching_ratio:.3g}",
            )
        )
    if not h.ok:
        return
    rate = times.size / (end - start)
    vt = _order_times_s(val)
    v0, v_end = _order_window(vt, val.duration_s)
    vt = vt - v0
    poisson = HawkesParams(rate, 0.0, 1.0)
    per = lambda ts, p, end: hawkes_loglik(ts, p, start_s=0.0, end_s=end) / max(ts.size, 1)  # noqa: E731
    ft = times - start
    scores.append(
        Score(
            "hawkes",
            "log-likelihood per taker order (old = Poisson at the fitted rate)",
            "higher",
            per(ft, h.params, end - start),
            per(ft, poisson, end - start),
            per(vt, h.params, v_end - v0),
            per(vt, poisson, v_end - v0),
        )
    )


def _micro_xy(s: MarketSeries, cfg: CalibrationConfig) -> tuple[np.ndarray, np.ndarray]:
    h = cfg.quote_life_s
    grid = s.start_ns + (np.arange(int(s.duration_s / h)) * h * _NS).astype(np.int64)
    m0, m1 = s.mid_at(grid), s.mid_at(grid + int(h * _NS))
    x = np.column_stack((s.at(s.imbalance, grid), s.flow_imbalance(grid, cfg.flow_window_s)))
    return x, m1 / m0 - 1.0


def _ols(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares coefficients and their standard errors (homoscedastic)."""
    coef, *_ = np.linalg.lstsq(x, y, rcond=None)
    dof = max(y.size - x.shape[1], 1)
    s2 = float(np.sum((y - x @ coef) ** 2)) / dof
    try:
        cov = s2 * np.linalg.inv(x.T @ x)
        se = np.sqrt(np.maximum(np.diag(cov), 0.0))
    except np.linalg.LinAlgError:
        se = np.full(coef.size, math.nan)
    return coef, se


def _fit_microprice(fit, val, cfg: CalibrationConfig, est: list, scores: list) -> np.ndarray:
    x, y = _micro_xy(fit, cfg)
    coef, se = _ols(x, y)
    for i, name in enumerate(("imbalance_coef_bps", "flow_coef_bps")):
        est.append(
            Estimate(
                f"strategy.{name}",
                f"microprice: bps per unit {'book' if i == 0 else 'flow'} imbalance",
                "bps",
                cfg.old(name),
                round(float(coef[i]) * _BPS, 6),
                float(coef[i] - _Z95 * se[i]) * _BPS,
                float(coef[i] + _Z95 * se[i]) * _BPS,
                settable=True,
                method=f"least squares of the {cfg.quote_life_s:g}-s mid change, no intercept",
            )
        )
    old = np.array([cfg.old("imbalance_coef_bps"), cfg.old("flow_coef_bps")]) / _BPS
    xv, yv = _micro_xy(val, cfg)
    mse = lambda xx, yy, c: float(np.mean((yy - xx @ c) ** 2) * _BPS**2)  # noqa: E731
    scores.append(
        Score(
            "microprice",
            f"mean squared error of the {cfg.quote_life_s:g}-s mid change, bps²",
            "lower",
            mse(x, y, coef),
            mse(x, y, old),
            mse(xv, yv, coef),
            mse(xv, yv, old),
        )
    )
    return coef


def _drift_errors(s: MarketSeries, cfg: CalibrationConfig, micro: np.ndarray) -> dict[str, np.ndarray]:
    h = cfg.drift_horizon_s
    grid = s.start_ns + (np.arange(int(s.duration_s / h)) * h * _NS).astype(np.int64)
    real = np.log(s.mid_at(grid + int(h * _NS)) / s.mid_at(grid)) / h
    readings = {
        "trade_flow": _EST.flow_drift_per_s * s.flow_imbalance(grid, cfg.flow_window_s),
        "microprice": (np.column_stack((s.at(s.imbalance, grid), s.flow_imbalance(grid, cfg.flow_window_s))) @ micro)
        / cfg.quote_life_s,
    }
    return {k: v - real for k, v in readings.items()}


def _fit_drift(fit, val, cfg: CalibrationConfig, sigma: dict, micro: np.ndarray, est: list, scores: list) -> None:
    h = cfg.drift_horizon_s
    noise = sigma["total"] ** 2 / h  # variance of the realised drift over h from the diffusion itself
    errs, verrs = _drift_errors(fit, cfg, micro), _drift_errors(val, cfg, micro)
    for source, e in errs.items():
        old = cfg.old(f"drift_obs_var_{source}")
        e2 = e * e
        r_hat = float(np.mean(e2)) - noise
        se = float(np.std(e2, ddof=1) / math.sqrt(e2.size)) if e2.size > 1 else math.nan
        lo, hi = r_hat - _Z95 * se, r_hat + _Z95 * se
        ok = lo > 0
        est.append(
            Estimate(
                f"strategy.drift_obs_var_{source}",
                f"drift observation variance R ({source})",
                "1/s²",
                old,
                r_hat if ok else old,
                lo,
                hi,
                settable=True,
                proposed=ok,
                method=f"prediction error² minus σ²/H over H = {h:g} s",
                note="" if ok else f"not identified: the interval reaches 0 (R̂ = {r_hat:.3g}); prior kept",
            )
        )
        new = r_hat if ok else old
        nis = lambda ee, r: float(np.mean(ee * ee / (r + noise)))  # noqa: E731
        scores.append(
            Score(
                f"drift_{source}",
                "mean normalised squared error (1 = consistent)",
                "closer to 1",
                nis(e, new),
                nis(e, old),
                nis(verrs[source], new),
                nis(verrs[source], old),
            )
        )


def _markouts(s: MarketSeries, cfg: CalibrationConfig, horizon_s: float) -> np.ndarray:
    """bps against the maker of each trade within ``as_max_distance_bps`` of mid, ``horizon_s`` after it."""
    sel = np.abs(s.t_px - s.t_mid) / s.t_mid * _BPS <= cfg.as_max_distance_bps
    sel &= s.t_ts + int(horizon_s * _NS) < s.end_ns
    later = s.mid_at(s.t_ts[sel] + int(horizon_s * _NS))
    return s.t_side[sel] * (later - s.t_mid[sel]) / s.t_mid[sel] * _BPS


def _fit_adverse(fit, val, cfg: CalibrationConfig, est: list, scores: list, plots: dict) -> None:
    m = _markouts(fit, cfg, cfg.quote_life_s)
    old = cfg.old("adverse_selection_bps")
    if m.size < 10:
        est.append(
            Estimate(
                "strategy.adverse_selection_bps",
                "adverse selection",
                "bps",
                old,
                old,
                settable=True,
                proposed=False,
                note=f"only {m.size} trades near the touch; prior kept",
            )
        )
        return
    mean, se = float(np.mean(m)), float(np.std(m, ddof=1) / math.sqrt(m.size))
    new = round(max(mean, 0.0), 6)
    est.append(
        Estimate(
            "strategy.adverse_selection_bps",
            f"adverse selection (markout at {cfg.quote_life_s:g} s)",
            "bps",
            old,
            new,
            mean - _Z95 * se,
            mean + _Z95 * se,
            settable=True,
            method=f"mean markout of {m.size} trades within {cfg.as_max_distance_bps:g} bps of mid",
            note="" if mean >= 0 else f"measured {mean:.3g} bps (favourable), proposed as 0: the quoter takes a cost",
        )
    )
    mv = _markouts(val, cfg, cfg.quote_life_s)
    mse = lambda x, c: float(np.mean((x - c) ** 2)) if x.size else math.nan  # noqa: E731
    scores.append(
        Score(
            "adverse_selection",
            "mean squared markout prediction error, bps²",
            "lower",
            mse(m, new),
            mse(m, old),
            mse(mv, new),
            mse(mv, old),
        )
    )
    hs = np.array([0.1, 1.0, 5.0, 30.0, 60.0])
    curve = np.array([float(np.mean(_markouts(fit, cfg, h))) if _markouts(fit, cfg, h).size else 0.0 for h in hs])
    plots["markout"] = svg_chart(
        "Markout of near-touch trades against the maker (fit)",
        "horizon s",
        "bps",
        [("markout", hs, curve, "line"), ("proposed", hs, np.full(hs.size, new), "line")],
    )


def _beta_xy(s: MarketSeries, cfg: CalibrationConfig, sigma_ref: float, depth_ref: float, lam_base: float):
    w, lb = cfg.beta_window_s, cfg.beta_lookback_s
    dt = cfg.sigma_bucket_s
    n_win = int((s.duration_s - lb) / w)
    if n_win < 1:
        return np.empty((0, len(MARKET_FEATURES))), np.empty(0)
    starts = s.start_ns + int(lb * _NS) + (np.arange(n_win) * w * _NS).astype(np.int64)
    rows, ys = [], []
    for t0 in starts:
        back = t0 - (np.arange(int(lb / dt), -1, -1) * dt * _NS).astype(np.int64)
        fwd = t0 + (np.arange(int(w / dt) + 1) * dt * _NS).astype(np.int64)
        rb, rf = np.diff(np.log(s.mid_at(back))), np.diff(np.log(s.mid_at(fwd)))
        rv_b, rv_f = float(np.sum(rb * rb)), float(np.sum(rf * rf))
        if rv_b <= 0 or rv_f <= 0:
            continue
        t = np.array([t0])
        cnt = float(s.trade_count(t, cfg.cascade_window_s)[0])
        depth = float(s.at(s.depth, t)[0])
        rows.append(
            (
                0.5 * math.log(rv_b / (sigma_ref**2 * lb)),
                math.log(depth_ref / depth) if depth > 0 else 0.0,
                min(abs(float(s.flow_imbalance(t, cfg.flow_window_s)[0])), 1.0),
                max(math.log(cnt / (lam_base * cfg.cascade_window_s)), 0.0) if cnt > 0 else 0.0,
            )
        )
        ys.append(0.5 * math.log(rv_f / (sigma_ref**2 * w)))
    return np.array(rows).reshape(-1, len(MARKET_FEATURES)), np.array(ys)


def _fit_betas(fit, val, cfg: CalibrationConfig, sigma: dict, est: list, scores: list) -> None:
    sigma_ref = sigma["total"]
    depth_ref = float(np.median(fit.depth[fit.depth > 0])) if np.any(fit.depth > 0) else 1.0
    lam_base = max(fit.t_ts.size / fit.duration_s, 1e-9)
    x, y = _beta_xy(fit, cfg, sigma_ref, depth_ref, lam_base)
    prior_b = np.array([cfg.old(f"risk_aversion.beta_{f}") for f in MARKET_FEATURES])
    fitted_b = prior_b.copy()
    if y.size >= cfg.min_windows:
        varies = np.std(x, axis=0) > 1e-9
        coef, se = _ols(np.column_stack((np.ones(y.size), x[:, varies])), y)
        b_all = np.full(len(MARKET_FEATURES), math.nan)
        se_all = np.full(len(MARKET_FEATURES), math.nan)
        b_all[varies], se_all[varies] = coef[1:], se[1:]
    else:
        varies = np.zeros(len(MARKET_FEATURES), dtype=bool)
        b_all = se_all = np.full(len(MARKET_FEATURES), math.nan)
    for i, name in enumerate(MARKET_FEATURES):
        b, s = float(b_all[i]), float(se_all[i])
        if y.size < cfg.min_windows:
            note, ok = f"only {y.size} windows (< {cfg.min_windows}); prior kept", False
        elif not varies[i]:
            note, ok = "the feature does not vary on this range; not identified, prior kept", False
        elif not s <= cfg.max_beta_se:
            note, ok = f"standard error {s:.3g} > {cfg.max_beta_se:g}; not identified, prior kept", False
        else:
            note, ok = "", True
        if ok:
            fitted_b[i] = b
        est.append(
            Estimate(
                f"strategy.risk_aversion.beta_{name}",
                f"γ β: {name}",
                "nats per unit feature",
                float(prior_b[i]),
                round(b, 6) if ok else float(prior_b[i]),
                b - _Z95 * s,
                b + _Z95 * s,
                settable=True,
                proposed=ok,
                method=f"regression of next-{cfg.beta_window_s:g}-s log realised risk on the features",
                note=note,
            )
        )
    for name in OWN_FEATURES:
        est.append(
            Estimate(
                f"strategy.risk_aversion.beta_{name}",
                f"γ β: {name}",
                "nats per unit feature",
                cfg.old(f"risk_aversion.beta_{name}"),
                cfg.old(f"risk_aversion.beta_{name}"),
                settable=True,
                proposed=False,
                note="depends on our own position/P&L, not on market data: not identified here, prior kept",
            )
        )
    if y.size < cfg.min_windows:
        return
    xv, yv = _beta_xy(val, cfg, sigma_ref, depth_ref, lam_base)

    def mse(xx: np.ndarray, yy: np.ndarray, b: np.ndarray) -> float:
        c = float(np.mean(y - x @ b))  # the intercept each β vector implies on the fit range
        return float(np.mean((yy - c - xx @ b) ** 2)) if yy.size else math.nan

    scores.append(
        Score(
            "gamma_betas",
            "mean squared error of next-window log realised risk",
            "lower",
            mse(x, y, fitted_b),
            mse(x, y, prior_b),
            mse(xv, yv, fitted_b),
            mse(xv, yv, prior_b),
        )
    )


# --- plots: small self-contained SVG (matplotlib is not a requirement) ----------------------------------------

_COLOURS = ("#4c78a8", "#e45756", "#54a24b", "#b279a2")


def svg_chart(title: str, xlabel: str, ylabel: str, series: list[tuple[str, Any, Any, str]]) -> str:
    """A line/bar chart as SVG text: ``series`` are (label, xs, ys, "line"|"bar"); labels are escaped."""
    w, h, pad = 480, 260, 44
    xs_all = np.concatenate([np.asarray(s[1], dtype=float) for s in series])
    ys_all = np.concatenate([np.asarray(s[2], dtype=float) for s in series])
    ys_all = ys_all[np.isfinite(ys_all)]
    x0, x1 = float(np.min(xs_all)), float(np.max(xs_all))
    y0, y1 = min(float(np.min(ys_all)), 0.0) if ys_all.size else 0.0, float(np.max(ys_all)) if ys_all.size else 1.0
    x1 = x1 if x1 > x0 else x0 + 1.0
    y1 = y1 if y1 > y0 else y0 + 1.0

    def px(x: float) -> float:
        return pad + (x - x0) / (x1 - x0) * (w - 2 * pad)

    def py(y: float) -> float:
        return h - pad - (y - y0) / (y1 - y0) * (h - 2 * pad)

    e = html.escape
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {w} {h}" width="{w}" height="{h}" role="img">',
        f'<text x="{w / 2}" y="16" text-anchor="middle" font-size="13">{e(title)}</text>',
        f'<line x1="{pad}" y1="{h - pad}" x2="{w - pad}" y2="{h - pad}" stroke="#888"/>',
        f'<line x1="{pad}" y1="{pad}" x2="{pad}" y2="{h - pad}" stroke="#888"/>',
        f'<text x="{w / 2}" y="{h - 8}" text-anchor="middle" font-size="11">{e(xlabel)}</text>',
        f'<text x="4" y="{pad - 8}" font-size="11">{e(ylabel)}</text>',
        f'<text x="{pad}" y="{h - pad + 14}" font-size="10">{x0:.3g}</text>',
        f'<text x="{w - pad}" y="{h - pad + 14}" font-size="10" text-anchor="end">{x1:.3g}</text>',
        f'<text x="{pad - 4}" y="{h - pad}" font-size="10" text-anchor="end">{y0:.3g}</text>',
        f'<text x="{pad - 4}" y="{pad + 4}" font-size="10" text-anchor="end">{y1:.3g}</text>',
    ]
    for i, (label, xs, ys, kind) in enumerate(series):
        c = _COLOURS[i % len(_COLOURS)]
        xs, ys = np.asarray(xs, dtype=float), np.asarray(ys, dtype=float)
        if kind == "bar" and xs.size:
            bw = max((w - 2 * pad) / xs.size - 1, 1)
            for x, y in zip(xs, ys, strict=True):
                if math.isfinite(y):
                    out.append(
                        f'<rect x="{px(x) - bw / 2:.1f}" y="{py(y):.1f}" width="{bw:.1f}" '
                        f'height="{max(py(y0) - py(y), 0):.1f}" fill="{c}" opacity="0.5"/>'
                    )
        else:
            pts = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in zip(xs, ys, strict=True) if math.isfinite(y))
            out.append(f'<polyline points="{pts}" fill="none" stroke="{c}" stroke-width="1.5"/>')
        out.append(
            f'<text x="{w - pad}" y="{pad + 12 * i}" font-size="11" text-anchor="end" fill="{c}">{e(label)}</text>'
        )
    out.append("</svg>")
    return "".join(out)
