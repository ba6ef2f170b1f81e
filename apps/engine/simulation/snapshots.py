"""What the driver records of a strategy's estimators at each snapshot instant (a pure read, no side effects).

The driver (:class:`apps.engine.simulation.backtest.EngineLoop`) calls :func:`estimator_readings` on a local-time
grid every ``BacktestConfig.snapshot_interval_s`` and hands the result to its sink, so κ, σ, λ, flow, drift,
microprice and γ have a history a review page can chart.

A reading never refreshes an estimator: it takes the snapshot each estimator last *cached* for the quoter (via
:meth:`MarketEstimators.ages`, which says which ones exist, and :meth:`MarketEstimators.peek`, which returns the
cached one). Computing a fresh snapshot would move the refresh clocks and draw from the κ goodness-of-fit's random
generator, and the decisions would then depend on whether anyone was recording. Each reading carries
``age_s`` (seconds between when the quoter's snapshot was computed and the snapshot instant) in its detail.

Names, values and units of the readings (one :class:`EstimatorSnapshot` each):

==================  =====================================================================================
``kappa``           κ, per unit fractional distance from mid (posterior mean, sd, credible interval); detail
                    has ``a_per_s`` (A = the trade arrival rate, see :mod:`apps.engine.estimators.market`),
                    the fit model and the goodness-of-fit statistics
``sigma_clean``     σ from bipower variation (jumps removed), per √s, with its interval
``sigma_total``     σ from realised variance, per √s, with its sd (no interval is computed for it)
``lambda``          λ, market trade arrival rate, per s
``flow``            taker-flow imbalance in [−1, 1]
``drift``           μ, Kalman drift of the mid, 1/s, with its posterior sd
``microprice``      the microprice regression's offset, fraction of mid
``gamma``           γ of the last decision, per base unit; detail has γ₀ and every feature's value
                    (``gamma_x_*``) and log-contribution (``gamma_contrib_*``). Only when that decision ran the
                    γ model (quotes pulled ⇒ no γ row)
==================  =====================================================================================

Strategies without :class:`MarketEstimators` (the baselines) give no readings.
"""

from __future__ import annotations

import math
from typing import Any

from apps.engine.estimators.base import EstimatorSnapshot, EstimatorState

# the quoter's estimator caches (MarketEstimators), in the order they are read, and the name each is recorded under
CACHED = (("kappa", "kappa"), ("sigma", "sigma_clean"), ("arrival", "lambda"), ("flow", "flow"))
CACHED_REST = (("drift", "drift"), ("microprice", "microprice"))
NAMES = ("kappa", "sigma_clean", "sigma_total", "lambda", "flow", "drift", "microprice", "gamma")
_NS = 1_000_000_000
# the detail kept per reading (a day is 86,400 snapshots: the full per-scale detail would triple the rows' size);
# the decision inputs keep everything the quoter used
KEEP: dict[str, tuple[str, ...]] = {
    "kappa": (
        "n_orders",
        "avg_distance_bps",
        "kappa_model",
        "kappa_raw",
        "kappa_tick",
        "ks_stat",
        "ks_p",
        "powerlaw_alpha",
        "loglik_ratio",
        "loglik_ratio_p",
    ),
    "sigma": ("sigma_total", "jump_share", "n_buckets", "mean_bucket_s", "correction_factor", "noise_ratio"),
    "arrival": ("decayed_count", "exposure_s"),
    "flow": ("buy_volume", "sell_volume", "n_eff"),
    "drift": ("n_obs", "nis_mean", "theta_per_s"),
    "microprice": ("beta_book", "beta_flow", "r2_oos", "residual_std", "n_labels"),
}


def estimator_readings(strategy: Any, now_ns: int) -> list[EstimatorSnapshot]:
    """Every estimator's last cached snapshot at ``now_ns`` (ns), renamed as in the module docstring, plus γ."""
    market = getattr(strategy, "market", None)
    if market is None:
        return []
    ages = market.ages(now_ns)
    out: list[EstimatorSnapshot] = []
    lam: EstimatorSnapshot | None = None
    for source, name in CACHED + CACHED_REST:
        age = ages.get(f"{source}_age_s", math.nan)
        if age != age:  # never computed: nothing to record, and computing one here would change the run
            continue
        snap = market.peek(source, now_ns)
        d = snap.detail
        detail = {k: d[k] for k in KEEP[source] if k in d}
        detail["age_s"] = age
        if source == "arrival":
            lam = snap
        if source == "sigma":
            out.append(_renamed(snap, name, detail))
            total_detail = {"sigma_clean": snap.value, "age_s": age}
            out.append(
                EstimatorSnapshot(
                    "sigma_total",
                    snap.detail.get("sigma_total", math.nan),
                    snap.detail.get("sigma_total_std", math.nan),
                    snap.state,
                    snap.last_input_ns,
                    detail=total_detail,
                    message=snap.message,
                )
            )
            continue
        out.append(_renamed(snap, name, detail))
    if lam is not None and out and out[0].name == "kappa":
        # A = λ on κ's beyond-the-touch scale (apps.engine.estimators.market, "A and λ")
        out[0].detail["a_per_s"] = lam.value
        out[0].detail["a_state"] = lam.state.value  # type: ignore[assignment]
    gamma = _gamma(strategy)
    if gamma is not None:
        out.append(gamma)
    return out


def _renamed(snap: EstimatorSnapshot, name: str, detail: dict[str, float]) -> EstimatorSnapshot:
    return EstimatorSnapshot(
        name, snap.value, snap.std, snap.state, snap.last_input_ns, snap.ci_low, snap.ci_high, detail, snap.message
    )


def _gamma(strategy: Any) -> EstimatorSnapshot | None:
    d = getattr(strategy, "last_decision", None)
    if d is None:
        return None
    inputs = d.inputs
    if "gamma_log_contribution" not in inputs:  # the γ model did not run (quotes pulled): γ is not a measurement
        return None
    detail = {
        k: v
        for k, v in inputs.items()
        if k.startswith(("gamma_x_", "gamma_contrib_"))
        or k
        in (
            "gamma_base",
            "gamma_full_inventory",
            "gamma_log_contribution",
            "gamma_log_contribution_bounded",
            "gamma_bound_shrink_nats",
            "gamma_bound",
        )
    }
    detail["decision_ts_ns"] = d.ts_ns  # type: ignore[assignment]
    return EstimatorSnapshot("gamma", inputs["gamma"], math.nan, EstimatorState.OK, d.ts_ns, detail=detail)


__all__ = ["NAMES", "estimator_readings"]
