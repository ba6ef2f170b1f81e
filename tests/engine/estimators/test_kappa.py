"""Behaviour of the trade-tape κ estimator, its fits and goodness-of-fit statistics."""

from __future__ import annotations

import csv
import gzip
import math
from pathlib import Path

import numpy as np
import pytest
from scipy import optimize

from apps.engine.estimators import kappa as kappa_module
from apps.engine.estimators.base import EstimatorState
from apps.engine.estimators.kappa import (
    KappaParams,
    TradeKappaEstimator,
    exponential_gof_continuous,
    fit_intensity_curve,
    gamma_posterior,
    tick_posterior,
)

NS = 1_000_000_000
MID = 100.0
SHARED = Path(__file__).resolve().parents[3] / ".." / "shared"
USDM = SHARED / "data" / "hftbacktest-binance-usdm-btcusdt-20240808" / "derived"


def _feed(est: TradeKappaEstimator, deltas, sizes=None, *, t0_ns: int = NS, dt_ns: int = 10_000_000, sign=None):
    """Trades at mid·(1 ± δ) every dt_ns, alternating sides; returns the last timestamp."""
    ts = t0_ns
    for i, d in enumerate(deltas):
        ts = t0_ns + i * dt_ns
        side = (1 if i % 2 == 0 else -1) if sign is None else sign
        est.update(ts, MID * (1 + side * d), 1.0 if sizes is None else float(sizes[i]), MID)
    return ts


def test_it_covers_the_true_kappa_with_its_credible_interval_whatever_the_order_sizes():
    kappa = 3333.0
    covered = 0
    trials = 40
    for seed in range(trials):
        rng = np.random.default_rng(seed)
        est = TradeKappaEstimator(KappaParams(window_s=1e6, min_volume=0.0))
        sizes = rng.lognormal(0.0, 1.0, 300)
        last = _feed(est, rng.exponential(1 / kappa, 300), sizes)
        snap = est.snapshot(last)
        assert snap.state is EstimatorState.OK
        assert snap.ci_low < snap.value < snap.ci_high
        assert snap.detail["n_orders"] == 300  # one observation per order, whatever its size
        assert snap.detail["volume"] == pytest.approx(sizes.sum())  # the min_volume gate reads base volume
        covered += snap.ci_low <= kappa <= snap.ci_high
    # 95 % intervals: fewer than 34 hits out of 40 has probability below 1 % if they are honest.
    assert covered >= 34


def test_it_reports_the_average_order_distance_in_bps_each_order_counted_once():
    est = TradeKappaEstimator(KappaParams(min_volume=0.0))
    est.update(NS, MID * (1 + 0.0002), 3.0, MID)  # 2 bps, 3 units
    est.update(NS + 1, MID * (1 - 0.0006), 1.0, MID)  # 6 bps, 1 unit
    snap = est.snapshot(NS + 1)
    assert snap.detail["avg_distance_bps"] == pytest.approx((2 + 6) / 2)
    assert snap.detail["kappa_raw_mle"] == pytest.approx(1 / 0.0004)
    assert snap.detail["volume"] == 4.0


def test_it_matches_the_conjugate_gamma_posterior_for_equal_sizes():
    rng = np.random.default_rng(7)
    deltas = rng.exponential(1 / 2000.0, 50)
    params = KappaParams(min_volume=0.0, prior_kappa=1500.0, prior_shape=3.0)
    est = TradeKappaEstimator(params)
    last = _feed(est, deltas)
    snap = est.snapshot(last)
    a = 3.0 + 50
    b = 3.0 / 1500.0 + deltas.sum()
    assert snap.value == pytest.approx(a / b, rel=1e-9)
    assert snap.std == pytest.approx(math.sqrt(a) / b, rel=1e-9)


def test_it_stays_warming_until_the_window_holds_min_volume():
    est = TradeKappaEstimator(KappaParams(min_volume=5.0))
    assert est.snapshot(NS).state is EstimatorState.WARMING
    rng = np.random.default_rng(1)
    last = _feed(est, rng.exponential(1 / 3000.0, 4))  # 4 units < 5
    warming = est.snapshot(last)
    assert warming.state is EstimatorState.WARMING
    assert "min_volume" in warming.message
    est.update(last + 1, MID * 1.0003, 1.0, MID)
    assert est.snapshot(last + 1).state is EstimatorState.OK


def test_it_fails_outside_the_plausible_range_and_does_not_clamp():
    est = TradeKappaEstimator(KappaParams(min_volume=0.0, kappa_max=50_000.0))
    rng = np.random.default_rng(3)
    last = _feed(est, rng.exponential(1e-6, 200))  # mean 0.01 bps ⇒ κ ≈ 1e6
    snap = est.snapshot(last)
    assert snap.state is EstimatorState.FAILED
    assert snap.value > 2 * 50_000.0  # the implausible value is reported as measured
    assert "plausible range" in snap.message


def _touch_orders(est, t0_ns: int, n: int, dt_ns: int, *, tick: float, excess_ticks=None) -> int:
    """``n`` taker orders every ``dt_ns`` on a book one ``tick`` wide around MID, alternating sides: at the touch, or
    ``excess_ticks[i] + 1`` ticks past it; returns the last timestamp."""
    half = tick / 2
    ts = t0_ns
    for i in range(n):
        ts = t0_ns + i * dt_ns
        k = 0 if excess_ticks is None else excess_ticks[i] + 1
        side = 1 if i % 2 == 0 else -1
        est.update(ts, MID + side * (half + k * tick), 1.0, MID, half)
    return ts


def test_a_one_tick_book_is_warming_not_failed_until_its_first_window_has_passed():
    # tick 0.001 at 100: an order at the touch is 0.5e-5 from the mid; 200 of them take the raw posterior mean to
    # (2 + 200) / (0.001 + 200 · 0.5e-5) ≈ 1e5 > kappa_max
    p = KappaParams(min_volume=0.0, tick_size=0.001, window_s=60.0, stale_after_s=60.0, tick_min_through=5.0)
    est = TradeKappaEstimator(p)
    last = _touch_orders(est, NS, 200, 40_000_000, tick=0.001)
    snap = est.snapshot(last)
    assert snap.state is EstimatorState.WARMING, snap.message
    assert "0 of the 5 orders through the touch" in snap.message and "8.0 s into the first 60 s window" in snap.message
    assert snap.value > 1.5 * p.kappa_max  # reported as measured, not clamped
    assert snap.detail["kappa_model"] == 0.0
    # the window has been full once and still no order went through the touch: the raw value is a failed estimate
    last = _touch_orders(est, last + NS // 2, 110, NS // 2, tick=0.001)
    late = est.snapshot(last)
    assert late.state is EstimatorState.FAILED and "plausible range" in late.message
    # a gap longer than the window empties it: the next orders start a new first window
    t = last + 2 * int(p.window_s) * NS
    assert est.snapshot(t).state is EstimatorState.STALE
    last = _touch_orders(est, t, 200, 40_000_000, tick=0.001)
    again = est.snapshot(last)
    assert again.state is EstimatorState.WARMING and "8.0 s into the first 60 s window" in again.message
    # enough orders through the touch: the tick model measures the decay, in range
    last = _touch_orders(est, last + NS // 2, 8, NS // 2, tick=0.001, excess_ticks=[2, 5, 3, 4, 6, 1, 5, 3])
    ok = est.snapshot(last)
    assert ok.detail["kappa_model"] == 1.0 and ok.detail["n_orders_through_touch"] == 8
    assert ok.state is EstimatorState.OK, ok.message
    assert p.kappa_min <= ok.value <= p.kappa_max


def test_a_raw_kappa_out_of_range_without_a_tick_grid_fails_at_once():
    # no tick model to wait for (tick_size 0): an implausible κ is FAILED from the first snapshot, as before
    est = TradeKappaEstimator(KappaParams(min_volume=0.0, kappa_max=50_000.0))
    last = _touch_orders(est, NS, 200, 40_000_000, tick=0.001)
    snap = est.snapshot(last)
    assert snap.state is EstimatorState.FAILED and snap.value > 75_000.0


def test_it_goes_stale_without_trades():
    est = TradeKappaEstimator(KappaParams(min_volume=0.0, stale_after_s=5.0, window_s=60.0))
    rng = np.random.default_rng(2)
    last = _feed(est, rng.exponential(1 / 3000.0, 100))
    assert est.snapshot(last + 4 * NS).state is EstimatorState.OK
    stale = est.snapshot(last + 6 * NS)
    assert stale.state is EstimatorState.STALE
    assert stale.last_input_ns == last


def test_it_forgets_trades_that_left_the_window():
    est = TradeKappaEstimator(KappaParams(min_volume=0.0, window_s=10.0, stale_after_s=100.0))
    rng = np.random.default_rng(4)
    last = _feed(est, rng.exponential(1 / 1000.0, 500), dt_ns=10_000_000)  # 5 s of κ = 1000
    last = _feed(est, rng.exponential(1 / 8000.0, 500), t0_ns=last + 20 * NS)  # later, κ = 8000
    snap = est.snapshot(last)
    assert snap.detail["n_orders"] == 500
    assert snap.ci_low < 8000.0 < snap.ci_high
    # Reading later expires the rest without any new input.
    assert est.snapshot(last + 11 * NS).detail["n_orders"] == 0


def test_it_corrects_the_half_tick_bias_on_a_coarse_tick_grid():
    """Depths beyond the touch drawn from Exp(κ) and printed on a grid where κ·tick/mid = 1.5."""
    kappa, tick = 3000.0, 0.05
    tau = tick / MID
    rng = np.random.default_rng(11)
    est = TradeKappaEstimator(KappaParams(min_volume=0.0, window_s=1e6, tick_size=tick))
    for i, reach in enumerate(rng.exponential(1 / kappa, 3000)):
        level = math.floor(reach / tau)
        est.update(NS + i, MID + 0.5 * tick + level * tick, 1.0, MID, half_spread_px=0.5 * tick)
    snap = est.snapshot(NS + 3000)
    raw, corrected = snap.detail["kappa_raw"], snap.detail["kappa_tick"]
    print(f"coarse grid: kappa raw {raw:.0f} vs tick-corrected {corrected:.0f} (truth {kappa:.0f})")
    assert snap.value == corrected
    assert snap.ci_low <= kappa <= snap.ci_high
    assert raw < 0.9 * kappa  # the raw model mistakes the half spread for decay
    assert snap.detail["frac_orders_at_touch"] > 0.7


def test_tick_posterior_tends_to_the_gamma_posterior_on_a_fine_grid():
    fine = tick_posterior(200.0, 200.0 / 3000.0, 1e-9, 2.0, 0.001)
    exact = gamma_posterior(200.0, 200.0 / 3000.0, 2.0, 0.001)
    assert fine.mean == pytest.approx(exact.mean, rel=1e-3)
    assert fine.ci_low == pytest.approx(exact.ci_low, rel=1e-3)
    assert fine.ci_high == pytest.approx(exact.ci_high, rel=1e-3)


def test_it_rejects_invalid_params_naming_them():
    with pytest.raises(ValueError, match="prior_kappa"):
        KappaParams(prior_kappa=float("nan")).validate()
    with pytest.raises(ValueError, match="kappa_min"):
        KappaParams(kappa_min=100.0, kappa_max=50.0).validate()
    with pytest.raises(ValueError, match="window_s"):
        TradeKappaEstimator(KappaParams(window_s=0.0))


def test_goodness_of_fit_accepts_exponential_and_prefers_power_law_for_pareto_tails():
    rng = np.random.default_rng(5)
    expo = exponential_gof_continuous(rng.exponential(1 / 3000.0, 2000))
    assert expo.ks_p > 0.01
    assert expo.loglik_ratio > 0
    pareto = exponential_gof_continuous(1e-5 * (1 + rng.pareto(1.5, 2000)))
    assert pareto.ks_p < 1e-3
    assert pareto.loglik_ratio < 0
    assert pareto.loglik_ratio_p < 0.01
    assert pareto.powerlaw_alpha == pytest.approx(2.5, abs=0.15)


def test_snapshot_detail_carries_the_goodness_of_fit():
    rng = np.random.default_rng(6)
    est = TradeKappaEstimator(KappaParams(min_volume=0.0, window_s=1e6))
    last = _feed(est, rng.exponential(1 / 3000.0, 300))
    detail = est.snapshot(last).detail
    for key in ("ks_stat", "ks_p", "powerlaw_alpha", "loglik_ratio", "loglik_ratio_p"):
        assert math.isfinite(detail[key]), key


def test_intensity_fit_recovers_a_and_kappa_with_honest_errors():
    rng = np.random.default_rng(8)
    a_true, kappa_true, duration_s = 5.0, 3000.0, 600.0
    depths = rng.exponential(1 / kappa_true, rng.poisson(a_true * duration_s))
    half_spread = 0.5e-4
    fit = fit_intensity_curve(depths, duration_s, min_delta=half_spread, bin_width=0.5e-4, n_bins=20)
    assert abs(fit.kappa - kappa_true) < 3 * fit.kappa_std
    assert abs(fit.a_per_s - a_true) < 3 * fit.a_std
    assert fit.kappa_std < 0.1 * kappa_true
    # The reach rates are decreasing in depth and start at the count beyond min_delta per second.
    assert all(r1 >= r2 for r1, r2 in zip(fit.rate_per_s, fit.rate_per_s[1:]))
    assert fit.rate_per_s[0] == pytest.approx(np.sum(depths >= half_spread) / duration_s)


def _load_usdm_pairs():
    if not (USDM / "trades.csv.gz").exists():
        pytest.skip(f"shared data not found at {USDM}")
    with gzip.open(USDM / "bbo.csv.gz", "rt") as fh:
        rows = list(csv.DictReader(fh))
    bbo_t = np.array([int(r["tx_ts_ms"]) for r in rows])
    bid = np.array([float(r["bid_px"]) for r in rows])
    ask = np.array([float(r["ask_px"]) for r in rows])
    with gzip.open(USDM / "trades.csv.gz", "rt") as fh:
        trades = list(csv.DictReader(fh))
    t = np.array([int(r["trade_ts_ms"]) for r in trades])
    px = np.array([float(r["price"]) for r in trades])
    qty = np.array([float(r["qty"]) for r in trades])
    idx = np.searchsorted(bbo_t, t, side="left") - 1  # last bbo with T strictly before the trade's T
    ok = idx >= 0
    return t[ok], px[ok], qty[ok], bid[idx[ok]], ask[idx[ok]]


def test_it_measures_a_plausible_kappa_on_binance_usdm_btcusdt():
    t_ms, px, qty, bid, ask = _load_usdm_pairs()
    # The seed's default upper bound, κ = 50 000 (0.2 bps mean distance), is too tight for this contract:
    # its tick is 0.016 bps and in calm minutes the average trade sits ~0.1 bps from mid (κ ≈ 56 000).
    params = KappaParams(window_s=60.0, min_volume=5.0, tick_size=0.1, kappa_max=200_000.0)
    est = TradeKappaEstimator(params)
    snaps = []
    next_read = t_ms[0] + 60_000
    for ts, p, q, b, a in zip(t_ms, px, qty, bid, ask):
        ts_ns = int(ts) * 1_000_000
        est.update(ts_ns, float(p), float(q), 0.5 * (b + a), 0.5 * (a - b))
        if ts >= next_read:
            snaps.append(est.snapshot(ts_ns))
            next_read += 60_000
    assert len(snaps) >= 4
    for s in snaps:
        d = s.detail
        print(
            f"kappa raw {d['kappa_raw']:8.0f}  tick-corrected {d['kappa_tick']:8.0f}  "
            f"[{s.ci_low:.0f}, {s.ci_high:.0f}]  avg {d['avg_distance_bps']:.2f} bps  "
            f"beyond touch {d['avg_distance_beyond_touch_bps']:.2f} bps  at touch {d['frac_orders_at_touch']:.2f}  "
            f"orders {d['n_orders']:.0f}  KS p {d['ks_p']:.2g}  alpha {d['powerlaw_alpha']:.2f}  "
            f"LR {d['loglik_ratio']:.1f}  state {s.state.value}"
        )
        # Half a tick is 0.008 bps here, so measuring beyond the touch moves κ up only slightly.
        assert 1_000 < d["kappa_raw"] < 200_000
        # the tick model uses only prints that went through the touch; its κ is the decay of reach beyond the
        # touch, so it is not tied to the raw κ (which the at-touch half-tick prints dominate)
        assert 1_000 < d["kappa_tick"] < 200_000 and d["n_orders_through_touch"] > 5
        assert s.ci_low < s.value < s.ci_high
        assert 0.1 < d["frac_orders_at_touch"] < 0.99
        assert s.state is EstimatorState.OK
        # Real trade depths are a point mass at the touch plus a heavy tail: the exponential is rejected,
        # and the estimator says so instead of hiding it.
        assert d["ks_p"] < 1e-3


def test_intensity_fit_on_binance_usdm_btcusdt_exposes_the_non_exponential_shape():
    t_ms, px, _qty, bid, ask = _load_usdm_pairs()
    mid = 0.5 * (bid + ask)
    tick = 0.1
    levels = np.maximum(np.round((np.abs(px - mid) - 0.5 * (ask - bid)) / tick), 0)
    tau = tick / float(mid.mean())  # one tick as a fraction of mid (it moves < 0.5 % over the file)
    beyond = levels * tau  # depth beyond the touch, on one common tick grid
    duration_s = (t_ms[-1] - t_ms[0]) / 1000.0
    fits = {}
    for width in (1, 20):
        fit = fit_intensity_curve(beyond, duration_s, bin_width=width * tau, n_bins=40, min_delta=0.0)
        fits[width] = fit
        print(
            f"bins of {width:2d} ticks: A {fit.a_per_s:.1f} ± {fit.a_std:.1f}/s  "
            f"kappa {fit.kappa:.0f} ± {fit.kappa_std:.0f}  ({fit.n_trades} trades over {duration_s:.0f} s)"
        )
        assert fit.converged
        # At depth 0 beyond the touch every trade counts: A is the trade rate.
        assert abs(fit.a_per_s - beyond.size / duration_s) < 4 * fit.a_std + 1.0
    # Under a true exponential the bin width would not matter; here the mass at the touch makes fine bins
    # see a steep first step and coarse bins the heavy tail.
    assert fits[1].kappa > fits[20].kappa + 4 * (fits[1].kappa_std + fits[20].kappa_std)


def test_it_accepts_a_trade_event_with_the_preceding_top_of_book():
    from apps.engine.market.events import BestBidAsk, Side, Trade

    est = TradeKappaEstimator(KappaParams(min_volume=0.0, tick_size=0.1))
    bbo = BestBidAsk(ts_exch_ns=NS, ts_local_ns=NS, bid_px=99.9, bid_size=1.0, ask_px=100.1, ask_size=1.0)
    est.update_from_events(Trade(NS + 1, NS + 1, price=100.4, size=2.0, aggressor=Side.BUY), bbo)
    d = est.snapshot(NS + 1).detail
    assert d["avg_distance_bps"] == pytest.approx(40.0)
    assert d["avg_distance_beyond_touch_bps"] == pytest.approx(30.0)  # 3 ticks past the 0.1 half spread


@pytest.mark.parametrize("n", [3, 10, 250, 5000, 12000])
def test_the_fast_ks_test_equals_scipys_kstest(n):
    from scipy import stats

    from apps.engine.estimators.kappa import ks_uniform

    rng = np.random.default_rng(n)
    for power in (0.8, 1.0, 1.25):  # uniform, and two laws it must reject at size
        u = rng.random(n) ** power
        ref = stats.kstest(u, "uniform")
        d, p = ks_uniform(u)
        assert d == pytest.approx(ref.statistic, rel=1e-12)
        assert p == pytest.approx(ref.pvalue, rel=1e-9, abs=1e-300)
    x = rng.exponential(3.0, n)
    ref = stats.kstest(x, "expon", args=(0.0, x.mean()))
    d, p = ks_uniform(-np.expm1(-x / x.mean()))
    assert (d, p) == (pytest.approx(ref.statistic, rel=1e-12), pytest.approx(ref.pvalue, rel=1e-9))


def test_the_ks_survival_function_is_scipys_kstwo_sf_exactly():
    """kappa.kstwo_sf skips scipy's distribution framework around the function kstwo.sf calls: the same doubles on
    a grid of statistics and counts, at the support's edges (1/(2n), 1) and just inside them, and for NaN."""
    from scipy import stats

    from apps.engine.estimators.kappa import kstwo_sf

    assert kappa_module._kolmogn is not None  # else the framework path runs and this compares it with itself
    rng = np.random.default_rng(7)
    for n in (1, 2, 3, 7, 40, 141, 500, 2000, 5000, 12000):
        edge = 0.5 / n
        ds = [edge, np.nextafter(edge, 1.0), np.nextafter(edge, 0.0), 0.0, 1.0, np.nextafter(1.0, 0.0), 1.5, -0.1]
        ds += list(rng.uniform(edge, min(1.0, 12.0 * edge + 0.05), 40)) + list(rng.uniform(0.0, 1.0, 10))
        for d in ds:
            ref = float(stats.kstwo.sf(d, n))
            got = kstwo_sf(float(d), n)
            assert got == ref or (math.isnan(got) and math.isnan(ref)), (d, n, got, ref)
    assert math.isnan(kstwo_sf(math.nan, 10)) and math.isnan(float(stats.kstwo.sf(math.nan, 10)))


def _grid_posterior_plainly(n, s, tau, a0, b0, u_mode, curv, ci_level, n_grid):
    """tick_posterior_at_mode's grid written as plain numpy expressions (pairwise sums, numpy's cumulative sum) and its
    interval by SciPy's cubic Hermite spline and Brent's root: an independent oracle the reference's loops must agree
    with to rounding."""
    from scipy.interpolate import CubicHermiteSpline

    sd_u = 1.0 / math.sqrt(max(curv, 1e-12))
    u0 = u_mode - 12 * sd_u
    step = 24 * sd_u / (n_grid - 1)
    u = u0 + step * np.arange(n_grid)
    k = np.exp(u)
    logp = a0 * u - b0 * k + n * np.log(-np.expm1(-k * tau)) - k * s
    x = k * tau
    dlogp = a0 + k * (np.where(x < 700.0, n * tau / np.expm1(np.minimum(x, 700.0)), 0.0) - b0 - s)
    w = np.exp(logp - logp.max())
    cdf = np.cumsum(w)
    cdf -= 0.5 * (w[0] + w)
    cdf *= step
    z = float(cdf[-1])
    kw = k * w
    mean = step * (float(kw.sum()) - 0.5 * float(kw[0] + kw[-1])) / z
    dev2w = (k - mean) ** 2 * w
    var = step * (float(dev2w.sum()) - 0.5 * float(dev2w[0] + dev2w[-1])) / z
    wd = w * dlogp
    ccdf = np.concatenate(([0.0], np.cumsum(0.5 * step * (w[:-1] + w[1:]) + step * step / 12.0 * (wd[:-1] - wd[1:]))))
    spline = CubicHermiteSpline(u, ccdf, w)
    tail = 0.5 * (1.0 - ci_level)

    def quantile(target: float) -> float:
        i = int(np.argmax(ccdf >= target)) if (ccdf >= target).any() else -1
        if i < 0:
            return float(u[-1])
        if not ccdf[i] - ccdf[i - 1] > 0.0:
            return float(u[i])
        return optimize.brentq(lambda v: float(spline(v)) - target, u[i - 1], u[i], xtol=1e-15, rtol=8.9e-16)

    zc = float(ccdf[-1])
    return mean, math.sqrt(max(var, 0.0)), math.exp(quantile(tail * zc)), math.exp(quantile((1.0 - tail) * zc))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_tick_posterior_grid_agrees_with_its_plain_numpy_expressions(seed):
    """The reference's loops (sums in grid order, the C library's exp/log, its own bisection of the cubic through the
    corrected cumulative integral) against numpy's vector kernels, pairwise sums and SciPy's Hermite spline and Brent
    root: the same numbers to rounding. The moments: measured over 3,000 generated posteriors, within 3.5e-15 relative
    on an AVX2 machine; NumPy's AVX-512 exp/log kernels differ from its AVX2 ones in the last bit, which the coarse
    grids (2 and 9 points) amplify: over 4,000 posteriors on an AVX-512 machine the mean stays within 5.8e-14 relative,
    and the standard deviation within a few ulps of the *mean*, not of itself (``k − mean`` loses the digits κ and its
    mean share: where the grid is degenerate the std is 1e-16 of the mean, all rounding); hence its absolute term. The
    interval to 1e-11: two root finders on two forms of one cubic."""
    from apps.engine.estimators.kappa import tick_mode, tick_posterior_at_mode

    rng = np.random.default_rng(seed)
    checked = 0
    for i in range(400):
        n = float(rng.uniform(5.0, 3000.0)) if i % 3 else float(rng.uniform(0.1, 10.0))
        tau = float(10 ** rng.uniform(-7, -2))
        s = n * tau * float(10 ** rng.uniform(-3, 2))
        a0 = float(rng.uniform(0.5, 5.0))
        b0 = a0 / float(10 ** rng.uniform(2, 4.5))
        ci = float(rng.choice([0.9, 0.95, 0.99]))
        n_grid = int(rng.choice([201, 201, 801, 101, 9, 2]))
        u_mode, curv = tick_mode(n, s, tau, a0, b0)
        post = tick_posterior_at_mode(n, s, tau, a0, b0, u_mode, curv, ci, n_grid)
        with np.errstate(all="ignore"):
            want = _grid_posterior_plainly(n, s, tau, a0, b0, u_mode, curv, ci, n_grid)
        got = (post.mean, post.std, post.ci_low, post.ci_high)
        assert got[0] == pytest.approx(want[0], rel=1e-13, abs=0.0), (i, got, want)
        assert got[1] == pytest.approx(want[1], rel=1e-13, abs=1e-13 * abs(want[0])), (i, got, want)
        assert got[2:] == pytest.approx(want[2:], rel=1e-11, abs=0.0), (i, got, want)
        checked += 1
    assert checked == 400


def _interval_by_chord(n, s, tau, a0, b0, u_mode, curv, ci_level, n_grid):
    """The interval as it was computed before the corrected cumulative integral: the chord through the plain trapezoid
    sums. On a 25,601-point grid its error (O(step²)) is ~1e-7: a reference for the 201-point default."""
    sd_u = 1.0 / math.sqrt(max(curv, 1e-12))
    u = u_mode - 12 * sd_u + 24 * sd_u / (n_grid - 1) * np.arange(n_grid)
    k = np.exp(u)
    logp = a0 * u - b0 * k + n * np.log(-np.expm1(-k * tau)) - k * s
    w = np.exp(logp - logp.max())
    cdf = np.concatenate(([0.0], np.cumsum(0.5 * (w[:-1] + w[1:]))))
    tail = 0.5 * (1.0 - ci_level)
    lo, hi = np.interp((tail * cdf[-1], (1.0 - tail) * cdf[-1]), cdf, u)
    return math.exp(lo), math.exp(hi)


def test_the_201_point_interval_is_more_accurate_than_the_801_point_chord_was():
    """Against a 25,601-point reference: the default grid's interval within 2e-6 relative over 500 posteriors (measured
    on 1,500: 8.5e-7), where the 801-point chord it replaced erred by up to 2.2e-4; the moments agree to 1e-10."""
    from apps.engine.estimators.kappa import tick_mode, tick_posterior_at_mode

    p = KappaParams()
    rng = np.random.default_rng(1)
    worst_new = worst_old = 0.0
    for _ in range(500):
        n = float(rng.choice([3, 10, 30, 100, 300, 1000, 3000, 10000]) * rng.uniform(0.5, 1.5))
        tau = float(rng.uniform(1e-7, 2e-4))
        s = n * float(np.exp(rng.uniform(math.log(0.05), math.log(30)))) * tau
        u_mode, curv = tick_mode(n, s, tau, p.prior_shape, p.prior_rate)
        ref = _interval_by_chord(n, s, tau, p.prior_shape, p.prior_rate, u_mode, curv, 0.95, 25_601)
        old = _interval_by_chord(n, s, tau, p.prior_shape, p.prior_rate, u_mode, curv, 0.95, 801)
        post = tick_posterior_at_mode(n, s, tau, p.prior_shape, p.prior_rate, u_mode, curv)
        fine = tick_posterior_at_mode(n, s, tau, p.prior_shape, p.prior_rate, u_mode, curv, 0.95, 1601)
        assert post.mean == pytest.approx(fine.mean, rel=1e-10) and post.std == pytest.approx(fine.std, rel=1e-10)
        for got, was, want in zip((post.ci_low, post.ci_high), old, ref, strict=True):
            worst_new = max(worst_new, abs(got - want) / want)
            worst_old = max(worst_old, abs(was - want) / want)
    assert worst_new < 2e-6
    assert worst_old > 20 * worst_new  # what the change bought (the chord at 801 points: ~1e-4)


@pytest.mark.parametrize("n_grid", [0, 1, 801.0, "801", None])
def test_the_tick_posterior_grid_refuses_a_grid_that_is_not_an_integer_of_two_points_or_more(n_grid):
    from apps.engine.estimators.kappa import tick_mode, tick_posterior_at_mode

    u_mode, curv = tick_mode(50.0, 50 * 3e-5, 1e-5, 2.0, 2.0 / 3000)
    with pytest.raises(ValueError, match="n_grid must be an integer >= 2"):
        tick_posterior_at_mode(50.0, 50 * 3e-5, 1e-5, 2.0, 2.0 / 3000, u_mode, curv, 0.95, n_grid)


@pytest.mark.parametrize(
    "levels",
    [
        np.random.default_rng(3).geometric(0.35, size=3000).astype(float) - 1.0,  # tick levels from 0, a few dozen
        np.random.default_rng(4).geometric(0.9, size=40).astype(float),  # from 1
        np.array([0.0, 0.0, 0.0, 2.0]),  # the deepest level next to the size bound
        np.array([0.0, 1.0, 9.0]),  # a level beyond the table's bound: q ** k directly
        np.array([0.0, 0.5, 2.0, 1.0]),  # not integers: directly
    ],
)
def test_the_tick_gof_reads_powers_from_a_table_with_the_direct_formulas_bits(levels):
    """exponential_gof_ticks takes q**k for each trade from a table of q**j (one pow per level): the same doubles as
    ``q ** k`` per trade, so the KS statistic, its p-value and the power-law comparison are unchanged to the bit."""

    def direct(k: np.ndarray, rng: np.random.Generator) -> kappa_module.ExpGoodnessOfFit:
        mean = float(k.mean())
        q = mean / (1.0 + mean)
        cdf_hi = 1.0 - q ** (k + 1.0)
        cdf_lo = 1.0 - q**k
        u = cdf_lo + rng.random(k.size) * (cdf_hi - cdf_lo)
        d, p = kappa_module.ks_uniform(u)
        tail = k[k >= 1]
        alpha = ratio = vp = math.nan
        if tail.size >= 3:
            alpha, ratio, vp = kappa_module.exp_vs_powerlaw(tail)
        return kappa_module.ExpGoodnessOfFit(d, p, alpha, ratio, vp, int(k.size), int(tail.size))

    got = kappa_module.exponential_gof_ticks(levels, np.random.default_rng(11))
    want = direct(levels, np.random.default_rng(11))
    assert repr(got) == repr(want)
    idx = kappa_module._small_levels(levels)
    table = levels.size > float(levels.max()) and bool((levels == np.floor(levels)).all())
    assert (idx is not None) == table


def test_an_orders_further_prints_deepen_it_and_add_to_its_volume_counted_once():
    """A taker order sweeping three levels is one observation: its deepest print against the touch before its first
    print, its size the sum of its prints; the window keeps it by its first print's time."""
    tick, half = 0.1, 0.05
    est = TradeKappaEstimator(KappaParams(min_volume=0.0, tick_size=tick, window_s=10.0, stale_after_s=100.0))
    est.update(NS, MID + half, 1.0, MID, half)  # at the touch
    est.extend(NS + 1_000, MID + half + 2 * tick, 0.5)  # two ticks past it
    est.extend(NS + 2_000, MID + half + tick, 0.25)  # a shallower print of the same order changes no depth
    d = est.snapshot(NS + 2_000).detail
    assert d["n_orders"] == 1.0 and d["volume"] == pytest.approx(1.75)
    assert d["avg_distance_bps"] == pytest.approx((half + 2 * tick) / MID * 1e4)
    assert d["avg_distance_beyond_touch_bps"] == pytest.approx(2 * tick / MID * 1e4)
    assert d["frac_orders_at_touch"] == 0.0
    assert est.last_input_ns == NS + 2_000
    # the order's depth is against its own touch: a print after the book moved is not re-measured from a new mid
    est.update(2 * NS, MID - half, 1.0, MID, half)
    est.extend(2 * NS + 1, MID - half - tick, 1.0)
    d = est.snapshot(2 * NS + 1).detail
    assert d["n_orders"] == 2.0 and d["volume"] == pytest.approx(3.75)
    assert d["avg_distance_beyond_touch_bps"] == pytest.approx((2 + 1) / 2 * tick / MID * 1e4)
    # the first order leaves the window at its first print's time plus the window
    d = est.snapshot(NS + 10 * NS + 1_500).detail
    assert d["n_orders"] == 1.0 and d["volume"] == pytest.approx(2.0)


def test_extending_with_no_order_in_the_window_changes_nothing_and_bad_prints_are_refused():
    est = TradeKappaEstimator(KappaParams(min_volume=0.0, window_s=1.0))
    est.extend(NS, MID * 1.001, 1.0)  # nothing recorded: a no-op
    assert est.snapshot(NS).message == "no trades yet"
    est.update(NS, MID * 1.0002, 1.0, MID)
    with pytest.raises(ValueError, match="price"):
        est.extend(NS + 1, math.nan, 1.0)
    with pytest.raises(ValueError, match="size"):
        est.extend(NS + 1, MID, -1.0)
    assert est.snapshot(NS + 1).detail["volume"] == 1.0  # the refused prints left the order as it was
    est.update(5 * NS, MID * 1.0002, 1.0, MID)  # the first order left the window when this one came
    est.extend(5 * NS + 1, MID * 1.0004, 2.0)
    d = est.snapshot(5 * NS + 1).detail
    assert d["n_orders"] == 1.0 and d["volume"] == 3.0


def test_trade_events_of_one_taker_order_are_one_observation():
    from apps.engine.market.events import BestBidAsk, Side, Trade

    est = TradeKappaEstimator(KappaParams(min_volume=0.0, tick_size=0.1))
    bbo = BestBidAsk(ts_exch_ns=NS, ts_local_ns=NS, bid_px=99.9, bid_size=1.0, ask_px=100.1, ask_size=1.0)
    moved = BestBidAsk(ts_exch_ns=NS + 5, ts_local_ns=NS + 5, bid_px=100.1, bid_size=1.0, ask_px=100.3, ask_size=1.0)
    sweep = [Trade(NS + 2, NS + 3 + i, price=100.1 + 0.1 * i, size=1.0, aggressor=Side.BUY) for i in range(3)]
    est.update_from_events(sweep[0], bbo)
    for t in sweep[1:]:
        est.update_from_events(t, moved)  # the book its prints moved is not the order's touch
    other = Trade(NS + 4, NS + 9, price=100.1, size=1.0, aggressor=Side.SELL)  # a new order, at its touch
    est.update_from_events(other, moved)
    d = est.snapshot(NS + 9).detail
    assert d["n_orders"] == 2.0 and d["volume"] == 4.0
    assert d["avg_distance_beyond_touch_bps"] == pytest.approx((2 * 0.1 / 100.0 * 1e4 + 0.0) / 2)  # 2 ticks, and 0


def test_a_print_that_cannot_be_placed_on_the_tick_grid_leaves_the_order_as_it_was():
    """extend_trusted (no input checks) with a NaN price raises before it touches the order's row or the sums."""
    est = TradeKappaEstimator(KappaParams(min_volume=0.0, tick_size=0.1))
    est.update(NS, MID + 0.15, 1.0, MID, 0.05)
    before = est.snapshot(NS).detail
    with pytest.raises(ValueError):
        est.extend_trusted(NS + 1, math.nan, 1.0)
    after = est.snapshot(NS).detail
    assert {k: after[k] for k in ("n_orders", "volume", "avg_distance_bps", "avg_distance_beyond_touch_bps")} == {
        k: before[k] for k in ("n_orders", "volume", "avg_distance_bps", "avg_distance_beyond_touch_bps")
    }
