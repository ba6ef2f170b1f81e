"""Tests of the exponential Hawkes intensity, its maximum-likelihood fit and the fill-cascade flag."""

from __future__ import annotations

import csv
import gzip
import math
from pathlib import Path

import numpy as np
import pytest

from apps.engine.estimators import hawkes
from apps.engine.estimators.base import EstimatorState
from apps.engine.estimators.hawkes import (
    NS_PER_S,
    FillCascade,
    FillCascadeParams,
    HawkesIntensity,
    HawkesParams,
    cascade_hold_s,
    fit_hawkes,
    hawkes_loglik,
)
from apps.engine.market.events import Fill, Side

SHARED = Path(__file__).resolve().parents[3] / ".." / "shared"


def simulate_hawkes(mu: float, alpha: float, beta: float, horizon_s: float, seed: int) -> np.ndarray:
    """Ogata thinning: between events the intensity only decays, so its current value bounds it."""
    rng = np.random.default_rng(seed)
    t, excitation, events = 0.0, 0.0, []
    while True:
        bound = mu + excitation
        wait = rng.exponential(1.0 / bound)
        t += wait
        excitation *= math.exp(-beta * wait)
        if t > horizon_s:
            return np.asarray(events)
        if rng.uniform() * bound <= mu + excitation:
            events.append(t)
            excitation += alpha


def brute_force_loglik(times: np.ndarray, mu: float, alpha: float, beta: float, end: float) -> float:
    total = 0.0
    for i, t in enumerate(times):
        total += math.log(mu + alpha * sum(math.exp(-beta * (t - s)) for s in times[:i]))
    compensator = mu * end + alpha / beta * sum(1 - math.exp(-beta * (end - s)) for s in times)
    return total - compensator


# --- parameters -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "bad"),
    [
        ({"mu_per_s": 0.0}, "mu_per_s"),
        ({"mu_per_s": math.nan}, "mu_per_s"),
        ({"alpha_per_s": -0.1}, "alpha_per_s"),
        ({"beta_per_s": 0.0}, "beta_per_s"),
        ({"alpha_per_s": 1.0, "beta_per_s": 1.0}, "branching ratio"),
    ],
)
def test_it_rejects_invalid_hawkes_params(kwargs, bad):
    with pytest.raises(ValueError, match=bad):
        HawkesParams(**kwargs).validate()


def test_it_rejects_cascade_thresholds_out_of_order():
    with pytest.raises(ValueError, match="clear_excess_ratio"):
        FillCascadeParams(raise_excess_ratio=1.0, clear_excess_ratio=2.0).validate()


# --- online intensity -------------------------------------------------------------------------


def test_it_matches_the_direct_sum_over_past_events():
    params = HawkesParams(mu_per_s=0.7, alpha_per_s=1.1, beta_per_s=2.3)
    rng = np.random.default_rng(3)
    times_s = np.sort(rng.uniform(0.0, 20.0, 60))
    h = HawkesIntensity(params)
    for t in times_s:
        h.update(int(t * NS_PER_S))
    for now in (20.0, 20.3, 25.0):
        expected = 0.7 + 1.1 * np.exp(-2.3 * (now - np.floor(times_s * NS_PER_S) / NS_PER_S)).sum()
        assert h.intensity(int(now * NS_PER_S)) == pytest.approx(expected, rel=1e-9)


def test_it_decays_to_the_baseline_and_refuses_time_going_backwards():
    h = HawkesIntensity(HawkesParams(mu_per_s=1.0, alpha_per_s=0.5, beta_per_s=1.0))
    h.update(10 * NS_PER_S)
    assert h.intensity(10 * NS_PER_S) == pytest.approx(1.5)
    assert h.intensity(60 * NS_PER_S) == pytest.approx(1.0, abs=1e-12)
    with pytest.raises(ValueError, match="backwards"):
        h.update(9 * NS_PER_S)


def test_it_reports_warming_without_a_fit_and_an_uncertainty_with_one():
    times = simulate_hawkes(0.5, 0.8, 1.6, 1000.0, seed=11)
    fit = fit_hawkes(times, start_s=0.0, end_s=1000.0)
    prior = HawkesIntensity(HawkesParams())
    assert prior.snapshot(0).state is EstimatorState.WARMING
    assert math.isnan(prior.snapshot(0).std)
    fitted = HawkesIntensity.from_fit(fit)
    fitted.update(0)
    snap = fitted.snapshot(NS_PER_S // 10)
    assert snap.state is EstimatorState.OK
    assert 0 < snap.std < snap.value
    assert snap.ci_low < snap.value < snap.ci_high


# --- likelihood and fit ---------------------------------------------------------------------


def test_recursive_loglik_equals_the_double_sum():
    rng = np.random.default_rng(5)
    times = np.sort(rng.uniform(0.0, 30.0, 80))
    params = HawkesParams(mu_per_s=1.2, alpha_per_s=0.9, beta_per_s=1.7)
    fast = hawkes_loglik(times, params, start_s=0.0, end_s=30.0)
    slow = brute_force_loglik(times, 1.2, 0.9, 1.7, 30.0)
    assert fast == pytest.approx(slow, rel=1e-10)


@pytest.mark.parametrize("seed", [0, 1])
def test_it_recovers_simulated_parameters(seed):
    """Tolerance: each estimate within 4 standard errors and 20 % of the truth (about 4,000 events)."""
    mu, alpha, beta, horizon = 0.5, 0.8, 1.6, 4000.0
    times = simulate_hawkes(mu, alpha, beta, horizon, seed=seed)
    fit = fit_hawkes(times, start_s=0.0, end_s=horizon)
    assert fit.state is EstimatorState.OK, fit.message
    for est, se, truth in (
        (fit.mu_per_s, fit.stderr_mu, mu),
        (fit.alpha_per_s, fit.stderr_alpha, alpha),
        (fit.beta_per_s, fit.stderr_beta, beta),
    ):
        assert abs(est - truth) < 4 * se
        assert abs(est - truth) < 0.2 * truth
    assert fit.branching_ratio == pytest.approx(0.5, abs=0.1)
    # A correct model leaves the time-rescaled gaps i.i.d. Exp(1), and self-excitation beats Poisson.
    assert fit.ks_pvalue > 0.01
    assert fit.lr_stat > 100


def test_a_warm_started_refit_lands_on_the_cold_fit_of_the_next_window():
    """The estimators re-fit on a sliding window from the previous fit: it must reach the same optimum."""
    times = simulate_hawkes(0.5, 0.8, 1.6, 6000.0, seed=3)
    first = fit_hawkes(times[: times.size // 2])
    later = times[times.size // 4 :]
    cold = fit_hawkes(later)
    warm = fit_hawkes(later, warm_start=first.params)
    assert cold.ok and warm.ok
    assert warm.loglik == pytest.approx(cold.loglik, abs=1e-6 * abs(cold.loglik))
    for name in ("mu_per_s", "alpha_per_s", "beta_per_s"):
        assert getattr(warm, name) == pytest.approx(getattr(cold, name), rel=1e-3)
    # a start the new window's bounds exclude (a rate a million times too high) falls back to the cold starts
    wild = HawkesParams(mu_per_s=1e9, alpha_per_s=1e9, beta_per_s=2e9)
    assert fit_hawkes(later, warm_start=wild).loglik == pytest.approx(cold.loglik, abs=1e-6 * abs(cold.loglik))


def test_it_finds_no_excitation_in_a_poisson_process():
    rng = np.random.default_rng(8)
    times = np.cumsum(rng.exponential(1.0 / 2.0, 3000))
    fit = fit_hawkes(times, start_s=0.0, end_s=float(times[-1]))
    assert fit.state is EstimatorState.OK
    assert fit.branching_ratio < 0.1
    assert fit.lr_stat < 10  # no significant gain over a constant rate
    assert fit.mu_per_s / (1 - fit.branching_ratio) == pytest.approx(2.0, rel=0.08)


def test_it_fails_rather_than_clamps_a_non_stationary_fit():
    # A Poisson process whose rate grows e-fold every 200 s: the best Hawkes description has n >= 1.
    rng = np.random.default_rng(1)
    horizon, peak = 600.0, math.exp(3.0)
    candidates = np.sort(rng.uniform(0.0, horizon, rng.poisson(peak * horizon)))
    times = candidates[rng.uniform(0.0, peak, candidates.size) < np.exp(candidates / 200.0)]
    fit = fit_hawkes(times, start_s=0.0, end_s=horizon)
    assert fit.state is EstimatorState.FAILED
    assert "branching ratio" in fit.message
    assert fit.branching_ratio >= 1.0
    with pytest.raises(ValueError):
        HawkesIntensity.from_fit(fit)


def test_it_is_warming_with_too_few_events_and_rejects_unsorted_times():
    assert fit_hawkes([0.0, 1.0, 2.0], min_events=50).state is EstimatorState.WARMING
    with pytest.raises(ValueError, match="sorted"):
        fit_hawkes([0.0, 2.0, 1.0])


def test_it_fits_real_binance_trade_arrivals():
    # One taker order matching several makers prints several trades in the same ms: counted once.
    times_s = _real_trade_times_s()
    fit = fit_hawkes(times_s)
    assert fit.state is EstimatorState.OK, fit.message
    assert 0.1 < fit.branching_ratio < 1.0
    assert fit.lr_stat > 100  # trade arrivals cluster: a constant rate is firmly rejected
    assert fit.stderr_beta < 0.5 * fit.beta_per_s


def _real_trade_times_s() -> np.ndarray:
    path = SHARED / "data" / "hftbacktest-binance-usdm-btcusdt-20240808" / "derived" / "trades.csv.gz"
    if not path.exists():
        pytest.skip(f"real data not available at {path}")
    with gzip.open(path, "rt") as fh:
        return np.array(sorted({int(row["trade_ts_ms"]) for row in csv.DictReader(fh)})) / 1e3


@pytest.mark.skipif(not hawkes.ESTIMATORS_COMPILED, reason="the compiled estimators are not built")
def test_the_compiled_kernel_recursions_equal_the_reference_bit_for_bit():
    """The likelihood's recursions in C (``_estimators.kernel_sums``, what every fit calls) against the readable
    loop, on the real tape's gaps and on edge cases: the same doubles, not close ones."""
    assert hawkes._kernel_sums is not hawkes.py_kernel_sums
    t = _real_trade_times_s()
    gaps = np.diff(t - t[0])
    cases = [
        (gaps, 0.37),
        (gaps[:2000], np.float64(11.0)),  # the optimiser passes NumPy scalars
        (gaps[5000:9000], 950.0),
        (np.zeros(40), 3.0),  # simultaneous events
        (np.array([]), 1.0),
        (np.array([1e-9, 5.0, 1e4, 0.0, 0.25]), 1e-3),
        (gaps[:500].astype(np.float32), 2.5),
        (gaps[:1000:2], 7.0),  # a strided view
    ]
    for g, beta in cases:
        ref_a, ref_b = hawkes.py_kernel_sums(g, beta)
        a, b = hawkes._kernel_sums(g, beta)
        assert a.dtype == ref_a.dtype and b.dtype == ref_b.dtype
        assert a.tobytes() == ref_a.tobytes() and b.tobytes() == ref_b.tobytes(), (len(g), beta)
    for bad in (np.zeros((3, 2)), [0.5, 1.0]):  # not a fit's input: the reference's own result or error
        try:
            expected = hawkes.py_kernel_sums(bad, 1.0)
        except Exception as exc:  # noqa: BLE001 - whatever it raises, the twin raises the same
            with pytest.raises(type(exc)):
                hawkes._kernel_sums(bad, 1.0)
        else:
            got = hawkes._kernel_sums(bad, 1.0)
            assert all(x.tobytes() == y.tobytes() for x, y in zip(got, expected, strict=True))


def _as_bytes(result) -> bytes:
    ll, grad, hess = result
    return np.array([ll, *grad, *hess]).tobytes()


@pytest.mark.skipif(not hawkes.ESTIMATORS_COMPILED, reason="the compiled estimators are not built")
def test_the_compiled_likelihood_derivatives_equal_the_reference_bit_for_bit():
    """``_estimators.loglik_derivs`` (what every Newton step evaluates) against the plain-float reference, on the real
    tape and on edges: the same doubles, so a fit gives the same parameters compiled or not, on every CPU."""
    assert hawkes._loglik_derivs is not hawkes.py_loglik_derivs
    t = _real_trade_times_s()
    rel = t - t[0]
    length = float(rel[-1]) + 0.5
    cases = [
        (rel, 0.8, 2.5, 11.0),
        (rel[:2000], np.float64(0.3), np.float64(0.2), np.float64(950.0)),  # NumPy scalars, as from a fit's exp
        (rel[:1], 1.0, 0.5, 2.0),  # one event, no gap
        (np.zeros(30), 2.0, 1.0, 3.0),  # simultaneous events
        (rel[:500], -5.0, 1.0, 2.0),  # λ ≤ 0: −∞ and NaN derivatives
        (rel[:500], math.nan, 1.0, 2.0),
        (rel[:500], 1e-12, 1e6, 1e-3),
    ]
    for r, mu, alpha, beta in cases:
        g = np.diff(r)
        ref = hawkes.py_loglik_derivs(r, g, length, mu, alpha, beta)
        got = hawkes._loglik_derivs(r, g, length, mu, alpha, beta)
        assert _as_bytes(got) == _as_bytes(ref), (len(r), mu, alpha, beta)
    with pytest.raises(ValueError, match="gaps"):
        hawkes._loglik_derivs(rel[:10], np.diff(rel[:12]), length, 1.0, 1.0, 1.0)
    with pytest.raises(ZeroDivisionError):  # β = 0: the reference's own error
        hawkes._loglik_derivs(rel[:10], np.diff(rel[:10]), length, 1.0, 1.0, 0.0)


def test_the_analytic_gradient_and_hessian_match_finite_differences():
    times = simulate_hawkes(0.5, 0.8, 1.6, 600.0, seed=4)
    g = np.diff(times)
    p = [0.6, 0.7, 1.9]
    ll, grad, h = hawkes._loglik_derivs(times, g, 600.0, *p)
    assert ll == pytest.approx(brute_force_loglik(times, *p, 600.0), rel=1e-11)
    full = [[h[0], h[1], h[2]], [h[1], h[3], h[4]], [h[2], h[4], h[5]]]
    for k in range(3):
        step = 1e-6 * p[k]
        up, down = list(p), list(p)
        up[k] += step
        down[k] -= step
        f_up, g_up, _ = hawkes._loglik_derivs(times, g, 600.0, *up)
        f_down, g_down, _ = hawkes._loglik_derivs(times, g, 600.0, *down)
        assert grad[k] == pytest.approx((f_up - f_down) / (2 * step), rel=1e-5, abs=1e-6)
        for j in range(3):
            assert full[j][k] == pytest.approx((g_up[j] - g_down[j]) / (2 * step), rel=1e-5, abs=1e-6)


def test_the_fit_ends_at_a_stationary_point_of_the_likelihood():
    """Newton's optimum: the gradient in log parameters vanishes there (to the stated tolerance), and no
    nearby point has a higher likelihood."""
    times = simulate_hawkes(0.5, 0.8, 1.6, 2000.0, seed=2)
    fit = fit_hawkes(times, start_s=0.0, end_s=2000.0)
    assert fit.ok and fit.converged
    p = (fit.mu_per_s, fit.alpha_per_s, fit.beta_per_s)
    ll, grad, _ = hawkes._loglik_derivs(times, np.diff(times), 2000.0, *p)
    assert ll == fit.loglik
    assert max(abs(gk * pk) for gk, pk in zip(grad, p, strict=True)) <= hawkes._GTOL * (1 + abs(ll))
    for k in range(3):
        for f in (1 - 1e-4, 1 + 1e-4):
            q = list(p)
            q[k] *= f
            assert hawkes.hawkes_loglik(times, HawkesParams(*q), start_s=0.0, end_s=2000.0) < ll


def test_the_small_linear_algebra_matches_numpy_and_refuses_a_singular_matrix():
    rng = np.random.default_rng(11)
    for _ in range(20):
        a = rng.normal(size=(3, 3))
        m = a @ a.T + 0.1 * np.eye(3)  # symmetric positive definite, like an information matrix
        assert hawkes._inverse(m) == pytest.approx(np.linalg.inv(m), rel=1e-9, abs=1e-12)
        v = rng.normal(size=3)
        assert hawkes._cholesky_solve(m.tolist(), v.tolist()) == pytest.approx(np.linalg.solve(m, v), rel=1e-9)
        g = rng.normal(size=3)
        assert hawkes._quadratic_form(g.tolist(), m) == pytest.approx(float(g @ m @ g), rel=1e-12)
    with pytest.raises(np.linalg.LinAlgError):
        hawkes._inverse(np.array([[1.0, 2.0, 3.0], [2.0, 4.0, 6.0], [0.0, 1.0, 1.0]]))
    assert hawkes._cholesky_solve([[1.0, 0.0], [0.0, -1.0]], [1.0, 1.0]) is None  # not positive definite


# --- fill cascade ---------------------------------------------------------------------------


def _burst(cascade: FillCascade, side: Side, start_s: float, n: int, spacing_s: float) -> int:
    ts = 0
    for k in range(n):
        ts = int((start_s + k * spacing_s) * NS_PER_S)
        cascade.update(ts, side)
    return ts


def test_it_holds_the_cascade_flag_for_the_decay_time_then_clears():
    hawkes = HawkesParams(mu_per_s=0.05, alpha_per_s=0.1, beta_per_s=0.2)
    cascade = FillCascade(hawkes, FillCascadeParams(raise_excess_ratio=4.0, clear_excess_ratio=1.0))
    last = _burst(cascade, Side.BUY, 100.0, 5, 0.1)
    excess = 0.1 * sum(math.exp(-0.2 * 0.1 * k) for k in range(5))
    hold_s = math.log(excess / 0.05) / 0.2  # about 11.4 s
    assert cascade.flagged(Side.BUY, last)
    assert cascade.flagged(Side.BUY, last + int((hold_s - 0.05) * NS_PER_S))
    assert not cascade.flagged(Side.BUY, last + int((hold_s + 0.05) * NS_PER_S))
    assert not cascade.flagged(Side.SELL, last)
    snap = cascade.snapshot(last + NS_PER_S)
    assert snap.detail["buy_flag"] == 1.0 and snap.detail["sell_flag"] == 0.0
    assert snap.detail["buy_clears_in_s"] == pytest.approx(hold_s - 1.0, abs=1e-6)


def test_a_slower_fitted_decay_holds_the_flag_longer():
    def hold_after_burst(beta: float) -> float:
        cascade = FillCascade(HawkesParams(mu_per_s=0.05, alpha_per_s=0.05, beta_per_s=beta))
        last = _burst(cascade, Side.SELL, 0.0, 6, 0.05)
        return (cascade.clears_at_ns(Side.SELL) - last) / NS_PER_S

    fast, slow = hold_after_burst(2.0), hold_after_burst(0.1)
    assert slow > 10 * fast
    excess = 0.05 * sum(math.exp(-0.1 * 0.05 * k) for k in range(6))
    assert slow == pytest.approx(math.log(excess / 0.05) / 0.1, rel=1e-6)


def test_hold_time_is_zero_below_the_threshold():
    assert cascade_hold_s(0.5, 1.0, 2.0) == 0.0
    assert cascade_hold_s(math.e, 1.0, 2.0) == pytest.approx(0.5)


def test_an_isolated_fill_does_not_raise_the_flag():
    cascade = FillCascade(HawkesParams(mu_per_s=0.05, alpha_per_s=0.1, beta_per_s=0.2))
    cascade.update(10 * NS_PER_S, Side.BUY)  # excess 0.1 = 2 μ < 4 μ
    fill = Fill(
        ts_exch_ns=0,
        ts_local_ns=200 * NS_PER_S,
        client_order_id="c1",
        fill_id="f1",
        side=Side.BUY,
        price=100.0,
        size=1.0,
    )
    cascade.on_fill(fill)
    assert cascade.excess_ratio(Side.BUY, 200 * NS_PER_S) == pytest.approx(2.0, rel=1e-6)
    assert not cascade.flagged(Side.BUY, 200 * NS_PER_S)
    assert cascade.clears_at_ns(Side.BUY) is None


def test_it_adopts_a_fit_and_reports_a_failed_calibration():
    times = simulate_hawkes(0.05, 0.6, 1.0, 20000.0, seed=4)
    fit = fit_hawkes(times, start_s=0.0, end_s=20000.0)
    assert fit.ok, fit.message
    cascade = FillCascade(HawkesParams(mu_per_s=0.05, alpha_per_s=0.05, beta_per_s=0.1))
    assert cascade.snapshot(0).state is EstimatorState.WARMING
    cascade.calibrate(fit)
    assert cascade.snapshot(0).state is EstimatorState.OK
    last = _burst(cascade, Side.BUY, 50.0, 4, 0.2)
    held_s = (cascade.clears_at_ns(Side.BUY) - last) / NS_PER_S
    excess = fit.alpha_per_s * sum(math.exp(-fit.beta_per_s * 0.2 * k) for k in range(4))
    assert held_s == pytest.approx(math.log(excess / fit.mu_per_s) / fit.beta_per_s, rel=1e-6)

    bad = fit_hawkes([0.0, 1.0], min_events=50)
    cascade.calibrate(bad)
    snap = cascade.snapshot(last)
    assert snap.state is EstimatorState.FAILED
    assert "min_events" in snap.message
    assert cascade.hawkes_params.beta_per_s == fit.beta_per_s  # kept running on the last good fit
