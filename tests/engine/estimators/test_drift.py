"""Tests of the OU Kalman drift filter: tracking, uncertainty growth, source weighting and adaptation."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from apps.engine.estimators.base import EstimatorState
from apps.engine.estimators.drift import DriftParams, KalmanDrift

NS = 1_000_000_000
DT_S = 0.5


def simulate_ou(theta: float, stationary_sd: float, obs_sd: float, n: int, seed: int):
    """Exact OU drift sampled every DT_S seconds and noisy readings of it."""
    rng = np.random.default_rng(seed)
    a = math.exp(-theta * DT_S)
    step_sd = stationary_sd * math.sqrt(1 - a * a)
    mu = rng.normal(0.0, stationary_sd)
    truth, readings = np.empty(n), np.empty(n)
    for k in range(n):
        mu = a * mu + step_sd * rng.normal()
        truth[k] = mu
        readings[k] = mu + obs_sd * rng.normal()
    return truth, readings


def run_filter(f: KalmanDrift, truth: np.ndarray, readings: np.ndarray) -> tuple[float, float]:
    """Feed readings; return (95 % interval coverage of the truth, RMSE of the posterior mean)."""
    covered, sq_err = 0, 0.0
    for k, (mu, z) in enumerate(zip(truth, readings)):
        ts = int(k * DT_S * NS)
        f.update(ts, "microprice", float(z))
        snap = f.snapshot(ts)
        covered += snap.ci_low <= mu <= snap.ci_high
        sq_err += (snap.value - mu) ** 2
    return covered / truth.size, math.sqrt(sq_err / truth.size)


@pytest.mark.parametrize(
    ("kwargs", "bad"),
    [
        ({"theta_per_s": 0.0}, "theta_per_s"),
        ({"drift_std_per_s": math.nan}, "drift_std_per_s"),
        ({"obs_var_momentum": -1.0}, "obs_var_momentum"),
        ({"adapt_rate": -0.1}, "adapt_rate"),
        ({"theta_per_s": 20.0}, "theta_per_s"),
    ],
)
def test_it_rejects_invalid_params(kwargs, bad):
    with pytest.raises(ValueError, match=bad):
        DriftParams(**kwargs).validate()


@pytest.mark.parametrize("adapt_rate", [0.0, 0.01])
def test_it_recovers_a_known_ou_drift_from_noisy_readings(adapt_rate):
    obs_sd = 1e-5
    truth, readings = simulate_ou(theta=1 / 30, stationary_sd=1e-5, obs_sd=obs_sd, n=4000, seed=0)
    f = KalmanDrift(
        DriftParams(theta_per_s=1 / 30, drift_std_per_s=1e-5, obs_var_microprice=obs_sd**2, adapt_rate=adapt_rate)
    )
    coverage, rmse = run_filter(f, truth, readings)
    assert coverage > 0.9  # nominal 95 %
    assert rmse < 0.5 * obs_sd  # much better than a single reading
    assert f.snapshot(int(4000 * DT_S * NS)).state is EstimatorState.OK


def test_its_variance_grows_toward_the_stationary_variance_without_observations():
    f = KalmanDrift(DriftParams(theta_per_s=0.05, drift_std_per_s=1e-5, adapt_rate=0.0))
    for k in range(20):
        f.update(k * NS, "microprice", 2e-5)
    t_last = 19 * NS
    stds = [f.snapshot(t_last + int(s * NS)).std for s in (0, 1, 10, 100, 1000)]
    means = [f.snapshot(t_last + int(s * NS)).value for s in (0, 10)]
    assert all(later > earlier for earlier, later in itertools.pairwise(stds))
    assert stds[-1] == pytest.approx(1e-5, rel=1e-6)  # forgets everything: back to the stationary prior
    assert means[1] == pytest.approx(means[0] * math.exp(-0.05 * 10), rel=1e-9)
    # advance() applies the same time update to the state.
    f.advance(t_last + 10 * NS)
    assert math.sqrt(f.var_per_s2) == pytest.approx(stds[2], rel=1e-12)


def test_expected_return_integrates_the_decaying_mean():
    f = KalmanDrift(DriftParams(theta_per_s=0.2, adapt_rate=0.0))
    for k in range(10):
        f.update(k * NS, "momentum", 3e-5)
    now = 9 * NS
    grid = np.linspace(0.0, 5.0, 50_001)
    means = [f.predict(now + int(t * NS))[0] for t in grid[::100]]
    riemann = float(np.trapezoid(means, grid[::100]))
    assert f.expected_return(5.0, now) == pytest.approx(riemann, rel=1e-4)


def test_it_weights_sources_by_their_observation_variance():
    params = DriftParams(obs_var_trade_flow=1e-8, obs_var_microprice=1e-11, adapt_rate=0.0)
    noisy, precise = KalmanDrift(params), KalmanDrift(params)
    noisy.update(0, "trade_flow", 5e-5)
    precise.update(0, "microprice", 5e-5)
    assert 0 < noisy.mean_per_s < 0.05 * 5e-5
    assert precise.mean_per_s > 0.85 * 5e-5
    assert precise.var_per_s2 < noisy.var_per_s2
    overridden = KalmanDrift(params)
    overridden.update(0, "trade_flow", 5e-5, obs_var=1e-11)
    assert overridden.mean_per_s == pytest.approx(precise.mean_per_s)


def test_it_rejects_unknown_sources_bad_readings_and_time_going_backwards():
    f = KalmanDrift()
    with pytest.raises(ValueError, match="unknown observation source"):
        f.update(0, "astrology", 1e-5)
    with pytest.raises(ValueError, match="finite"):
        f.update(0, "momentum", math.nan)
    f.update(10 * NS, "momentum", 1e-5)
    with pytest.raises(ValueError, match="backwards"):
        f.update(9 * NS, "momentum", 1e-5)


def test_it_reports_warming_ok_stale_and_failed():
    f = KalmanDrift(DriftParams(warmup_obs=5, stale_after_s=10.0, adapt_rate=0.0))
    f.update(0, "microprice", 0.0)
    assert f.snapshot(0).state is EstimatorState.WARMING
    for k in range(1, 6):
        f.update(k * NS, "microprice", 0.0)
    assert f.snapshot(5 * NS).state is EstimatorState.OK
    stale = f.snapshot(20 * NS)
    assert stale.state is EstimatorState.STALE and "stale_after_s" in stale.message

    # Readings 100 posterior sds away from each other: the claimed uncertainty is not credible.
    overconfident = KalmanDrift(
        DriftParams(warmup_obs=5, adapt_rate=0.0, obs_var_microprice=1e-14, drift_std_per_s=1e-7, nis_halflife_obs=5.0)
    )
    rng = np.random.default_rng(2)
    for k in range(40):
        overconfident.update(k * NS, "microprice", float(rng.normal(0.0, 1e-5)))
    snap = overconfident.snapshot(40 * NS)
    assert snap.state is EstimatorState.FAILED and "NIS" in snap.message


def _adapted(theta: float, sd: float, obs_sd: float, seed: int) -> KalmanDrift:
    truth, readings = simulate_ou(theta, sd, obs_sd, n=5000, seed=seed)
    f = KalmanDrift(
        DriftParams(theta_per_s=1 / 30, drift_std_per_s=1e-5, obs_var_microprice=obs_sd**2, adapt_rate=0.01)
    )
    coverage, _ = run_filter(f, truth, readings)
    assert coverage > 0.85
    return f


def test_it_raises_the_process_noise_when_the_drift_moves_more_than_assumed():
    prior_noise = 2 * (1 / 30) * 1e-5**2
    f = _adapted(theta=1 / 30, sd=5e-5, obs_sd=1e-5, seed=1)
    assert f.process_noise_var > 5 * prior_noise
    assert f.nis_mean == pytest.approx(1.0, abs=0.3)


def test_it_lowers_the_stationary_drift_sd_when_the_drift_is_calmer_than_assumed():
    f = _adapted(theta=1 / 30, sd=2e-6, obs_sd=1e-5, seed=1)
    assert f.stationary_std_per_s < 0.4 * 1e-5


def test_it_lowers_theta_when_the_drift_persists_longer_than_assumed():
    f = _adapted(theta=1 / 300, sd=1e-5, obs_sd=3e-6, seed=3)
    assert f.theta_per_s < 0.5 * (1 / 30)


def test_it_raises_theta_when_the_drift_reverts_faster_than_assumed():
    f = _adapted(theta=0.5, sd=1e-5, obs_sd=3e-6, seed=3)
    assert f.theta_per_s > 5 * (1 / 30)
