"""Behaviour of the realised/bipower σ estimator on time and volume clocks."""

from __future__ import annotations

import csv
import gzip
import math
from pathlib import Path

import numpy as np
import pytest

from apps.engine.estimators.base import EstimatorState
from apps.engine.estimators.sigma import SigmaEstimator, SigmaParams, bipower_variation, realised_variance

NS = 1_000_000_000
SIGMA = 1e-4  # per √s, about 3 % a day


def _gbm(est: SigmaEstimator, rng, seconds: float, step_s: float, *, sigma=SIGMA, t0_s=0.0, mid0=100.0, volume=None):
    """Feed a driftless log-Brownian mid sampled every step_s; volume(rng) gives each event's volume."""
    n = int(seconds / step_s)
    log_mid = math.log(mid0)
    ts = int(t0_s * NS)
    for i in range(1, n + 1):
        log_mid += sigma * math.sqrt(step_s) * rng.standard_normal()
        ts = int((t0_s + i * step_s) * NS)
        est.update(ts, math.exp(log_mid), 0.0 if volume is None else volume(rng))
    return ts, math.exp(log_mid)


def test_it_recovers_a_known_sigma_on_the_time_clock():
    est = SigmaEstimator(SigmaParams(window_buckets=600, target_bucket_s=3.0))
    rng = np.random.default_rng(0)
    last, _ = _gbm(est, rng, 1800.0, 0.2)
    snap = est.snapshot(last)
    assert snap.state is EstimatorState.OK
    assert snap.detail["volume_clock"] == 0.0
    # 600 buckets: sd of σ̂ is ≈ 3.3 % (bipower) and 2.9 % (RV); 12 % is about 3.5 sd.
    assert est.sigma_clean == pytest.approx(SIGMA, rel=0.12)
    assert est.sigma_total == pytest.approx(SIGMA, rel=0.12)
    assert snap.ci_low <= SIGMA <= snap.ci_high
    assert snap.detail["mean_bucket_s"] == pytest.approx(3.0, rel=0.1)


def test_it_switches_to_a_volume_clock_and_still_recovers_sigma():
    params = SigmaParams(window_buckets=600, target_bucket_s=2.0, min_volume_history_s=60.0)
    est = SigmaEstimator(params)
    rng = np.random.default_rng(1)
    # Trades every 0.1 s with random sizes; the volume clock sizes buckets to ≈ 2 s of volume.
    last, _ = _gbm(est, rng, 1500.0, 0.1, volume=lambda g: float(g.lognormal(0.0, 1.0)))
    snap = est.snapshot(last)
    assert snap.detail["volume_clock"] == 1.0
    assert snap.detail["bucket_volume"] > 0
    assert snap.detail["mean_bucket_s"] == pytest.approx(2.0, rel=0.2)
    assert est.sigma_clean == pytest.approx(SIGMA, rel=0.12)
    assert est.sigma_total == pytest.approx(SIGMA, rel=0.12)


def test_volume_buckets_shorten_when_trading_speeds_up():
    params = SigmaParams(
        window_buckets=60, min_buckets=10, target_bucket_s=2.0, volume_lookback_s=120.0, min_volume_history_s=30.0
    )
    est = SigmaEstimator(params)
    rng = np.random.default_rng(2)
    last, mid = _gbm(est, rng, 300.0, 0.1, volume=lambda g: 1.0)
    slow = est.snapshot(last).detail["mean_bucket_s"]
    # Ten times the volume per event for the next 120 s: the lookback still remembers the slow period,
    # so buckets fill faster than target and the mean bucket duration drops.
    last, _ = _gbm(est, rng, 60.0, 0.1, volume=lambda g: 10.0, t0_s=last / NS, mid0=mid)
    fast = est.snapshot(last).detail["mean_bucket_s"]
    assert fast < 0.6 * slow


def test_bipower_ignores_an_injected_jump_while_realised_variance_does_not():
    est = SigmaEstimator(SigmaParams(window_buckets=300, target_bucket_s=1.0))
    rng = np.random.default_rng(3)
    last, mid = _gbm(est, rng, 300.0, 0.1)
    clean_before, total_before = est.sigma_clean, est.sigma_total
    jump = 0.003  # 30 bps, about 30 one-second σ
    est.update(last + NS // 10, mid * math.exp(jump))
    last, _ = _gbm(est, rng, 20.0, 0.1, t0_s=(last + NS // 10) / NS, mid0=mid * math.exp(jump))
    # RV gains J² (≈ 900 one-bucket variances over 300 buckets: σ doubles); BV gains only ≈ π·|J|·|r|,
    # the leak through the jump's neighbours (tens of percent of variance at most).
    rv_rise = est.sigma_total / total_before - 1.0
    bv_rise = est.sigma_clean / clean_before - 1.0
    assert rv_rise > 0.7
    assert abs(bv_rise) < 0.2
    assert abs(bv_rise) < 0.25 * rv_rise
    snap = est.snapshot(last)
    assert snap.detail["jump_share"] > 0.5
    assert snap.detail["sigma_inventory"] == est.sigma_total
    assert snap.detail["sigma_spread"] == est.sigma_clean


def test_inventory_sigma_rises_within_a_few_events_after_a_jump():
    est = SigmaEstimator(SigmaParams(window_buckets=300, target_bucket_s=5.0))
    rng = np.random.default_rng(4)
    last, mid = _gbm(est, rng, 600.0, 0.5)
    before_inv, before_spread = est.sigma_for_inventory, est.sigma_for_spread
    # A 50 bps jump lands mid-bucket; the open bucket counts in sigma_total, so the very next event
    # raises the inventory σ without waiting for the bucket to close.
    est.update(last + NS // 10, mid * math.exp(0.005))
    assert est.sigma_for_inventory > 1.3 * before_inv
    assert est.sigma_for_spread == before_spread  # no bucket closed: the spread σ has not moved


def test_the_pure_estimators_agree_on_gaussian_returns_and_split_on_a_jump():
    rng = np.random.default_rng(5)
    r = 0.001 * rng.standard_normal(4000)
    assert bipower_variation(r) == pytest.approx(realised_variance(r), rel=0.08)
    r[2000] += 0.05
    assert realised_variance(r) > 1.5 * bipower_variation(r)


def test_it_flags_a_correction_factor_far_from_one_after_a_volatility_regime_change():
    est = SigmaEstimator(SigmaParams(window_buckets=400, target_bucket_s=1.0, correction_half_life_buckets=20.0))
    rng = np.random.default_rng(6)
    last, mid = _gbm(est, rng, 400.0, 0.1)
    calm = est.snapshot(last)
    assert 1 / 1.5 <= calm.detail["correction_factor"] <= 1.5
    assert calm.detail["correction_flag"] == 0.0
    last, _ = _gbm(est, rng, 40.0, 0.1, sigma=4 * SIGMA, t0_s=last / NS, mid0=mid)
    shocked = est.snapshot(last)
    assert shocked.detail["correction_factor"] > 1.5
    assert shocked.detail["correction_flag"] == 1.0
    assert "correction factor" in shocked.message


def test_it_warms_up_goes_stale_and_fails_on_a_frozen_mid():
    est = SigmaEstimator(SigmaParams(target_bucket_s=1.0, min_buckets=30, stale_after_s=10.0))
    assert est.snapshot(0).state is EstimatorState.WARMING
    rng = np.random.default_rng(7)
    last, _ = _gbm(est, rng, 10.0, 0.1)
    assert est.snapshot(last).state is EstimatorState.WARMING
    last, _ = _gbm(est, rng, 30.0, 0.1, t0_s=last / NS)
    assert est.snapshot(last).state is EstimatorState.OK
    assert est.snapshot(last + 11 * NS).state is EstimatorState.STALE

    frozen = SigmaEstimator(SigmaParams(target_bucket_s=1.0, min_buckets=5))
    for i in range(100):
        frozen.update(i * NS // 2, 100.0)
    snap = frozen.snapshot(99 * NS // 2)
    assert snap.state is EstimatorState.FAILED
    assert "plausible range" in snap.message
    assert snap.value == 0.0  # reported as measured, not clamped


def test_it_reports_each_scale_and_rejects_bad_params():
    est = SigmaEstimator(SigmaParams(window_buckets=400, target_bucket_s=1.0, scales=(1, 2, 4)))
    rng = np.random.default_rng(8)
    last, _ = _gbm(est, rng, 400.0, 0.1)
    d = est.snapshot(last).detail
    for k in (1, 2, 4):
        assert d[f"sigma_total_k{k}"] == pytest.approx(SIGMA, rel=0.3)
    assert d["n_blocks_k4"] == pytest.approx(d["n_blocks_k1"] / 4, abs=1)
    with pytest.raises(ValueError, match="headline_scale"):
        SigmaParams(scales=(1, 2), headline_scale=3).validate()
    with pytest.raises(ValueError, match="sigma_max"):
        SigmaParams(sigma_max=float("nan")).validate()
    with pytest.raises(ValueError, match="mid"):
        est.update(last + 1, float("nan"))


USDM = Path(__file__).resolve().parents[3] / ".." / "shared" / "data" / "hftbacktest-binance-usdm-btcusdt-20240808"


def test_it_measures_a_plausible_sigma_on_binance_usdm_btcusdt():
    derived = USDM / "derived"
    if not (derived / "bbo.csv.gz").exists():
        pytest.skip(f"shared data not found at {derived}")
    with gzip.open(derived / "bbo.csv.gz", "rt") as fh:
        events = [
            (int(r["local_ts_ns"]), 0, 0.5 * (float(r["bid_px"]) + float(r["ask_px"]))) for r in csv.DictReader(fh)
        ]
    with gzip.open(derived / "trades.csv.gz", "rt") as fh:
        events += [(int(r["local_ts_ns"]), 1, float(r["qty"])) for r in csv.DictReader(fh)]
    events.sort(key=lambda e: (e[0], e[1]))
    est = SigmaEstimator(SigmaParams(target_bucket_s=1.0, window_buckets=300, scales=(1, 2, 4, 8)))
    mid = None
    for ts, kind, x in events:
        if kind == 0:
            mid = x
        if mid is not None:
            est.update(ts, mid, x if kind == 1 else 0.0)
    snap = est.snapshot(events[-1][0])
    d = snap.detail
    print(
        f"sigma_clean {d['sigma_clean']:.3g}/sqrt(s)  sigma_total {d['sigma_total']:.3g}/sqrt(s)  "
        f"jump share {d['jump_share']:.2f}  mean bucket {d['mean_bucket_s']:.2f} s  "
        f"noise ratio {d['noise_ratio']:.2f}  correction {d['correction_factor']:.2f}"
    )
    assert snap.state is EstimatorState.OK
    assert d["volume_clock"] == 1.0
    # BTC moves a few percent a day: 1e-4/sqrt(s) is ~3 %/day; anything outside 1e-5..1e-3 is a bug.
    assert 1e-5 < d["sigma_clean"] < 1e-3
    assert d["sigma_total"] >= d["sigma_clean"]  # the last minutes hold sweeps of several bps


@pytest.mark.parametrize(
    ("scales", "headline", "n_returns"),
    [((1, 2, 4), 1, 300), ((1, 2, 4), 4, 300), ((4, 1, 2), 2, 97), ((1, 3), 3, 5), ((2, 5), 5, 9)],
)
def test_the_closed_statistics_are_the_headline_scales_sums(scales, headline, n_returns):
    """_compute_closed (sigma.closed_statistics: plain loops, sums oldest first) takes the headline scale's sums
    inside its loop over the scales: they must be what aggregating the window at the headline scale with numpy
    and summing it directly gives (to rounding: numpy sums pairwise and BLAS dots in its own order), and every
    scale's entry what that scale alone gives (including scales too coarse for two blocks)."""
    from apps.engine.estimators.sigma import aggregate_returns

    est = SigmaEstimator(SigmaParams(scales=scales, headline_scale=headline, window_buckets=300, min_buckets=3))
    rng = np.random.default_rng(n_returns)
    # Python floats, as the estimator appends them (math.log of a ratio; the bucket's elapsed seconds)
    est._returns.extend(
        (SIGMA * rng.standard_normal(n_returns) * rng.choice([1.0, 30.0], n_returns, p=[0.97, 0.03])).tolist()
    )
    est._durations.extend(rng.uniform(0.2, 30.0, n_returns).tolist())
    closed = est._compute_closed()
    r = np.array(est._returns, dtype=float)
    dt = np.array(est._durations, dtype=float)
    rk, dtk = aggregate_returns(r, dt, headline)
    want = (int(rk.size), float(dtk.sum()), realised_variance(rk), bipower_variation(rk))
    got = (closed.n, closed.elapsed_s, closed.rv, closed.bv)
    assert [type(x) for x in got] == [type(x) for x in want]
    assert got[0] == want[0]
    assert got[1:] == pytest.approx(want[1:], rel=1e-13, abs=0.0, nan_ok=True)
    assert list(closed.per_scale) == list(dict.fromkeys(scales))
    for k in scales:
        rk, dtk = aggregate_returns(r, dt, k)
        t = float(dtk.sum())
        if rk.size >= 2 and t > 0:
            want_k = (math.sqrt(realised_variance(rk) / t), math.sqrt(bipower_variation(rk) / t), rk.size)
        else:
            want_k = (math.nan, math.nan, int(rk.size))
        got_k = closed.per_scale[k]
        assert got_k[2] == want_k[2] and type(got_k[2]) is int
        assert got_k[:2] == pytest.approx(want_k[:2], rel=1e-13, abs=0.0, nan_ok=True)


@pytest.mark.parametrize(
    ("scales", "headline", "n_returns"),
    [((1, 2, 4), 1, 300), ((1, 2, 4), 4, 300), ((4, 1, 2), 2, 97), ((1, 3), 3, 5), ((2, 5), 5, 9), ((1, 2), 2, 0)],
)
def test_the_compiled_closed_statistics_match_the_reference_bit_for_bit(scales, headline, n_returns):
    from apps.engine.estimators import _estimators
    from apps.engine.estimators.sigma import PySigmaEstimator

    p = SigmaParams(scales=scales, headline_scale=headline, window_buckets=300, min_buckets=3)
    compiled, reference = _estimators.SigmaEstimator(p), PySigmaEstimator(p)
    rng = np.random.default_rng(n_returns + 7)
    r = SIGMA * rng.standard_normal(n_returns) * rng.choice([1.0, 30.0], n_returns, p=[0.97, 0.03])
    dt = rng.uniform(0.2, 30.0, n_returns)
    for est in (compiled, reference):
        est._returns.extend(r.tolist())
        est._durations.extend(dt.tolist())
    got, want = compiled._compute_closed(), reference._compute_closed()
    assert type(got) is type(want)
    fields = ("n", "elapsed_s", "rv", "bv")
    assert [np.float64(getattr(got, f)).tobytes() for f in fields] == [
        np.float64(getattr(want, f)).tobytes() for f in fields
    ]
    assert [type(getattr(got, f)) for f in fields] == [type(getattr(want, f)) for f in fields]
    assert list(got.per_scale) == list(want.per_scale)
    for k, (a, b, n) in want.per_scale.items():
        ga, gb, gn = got.per_scale[k]
        assert (np.float64(ga).tobytes(), np.float64(gb).tobytes(), gn, type(gn)) == (
            np.float64(a).tobytes(),
            np.float64(b).tobytes(),
            n,
            type(n),
        )
