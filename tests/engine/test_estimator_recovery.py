"""The estimators recover known truths, flag a wrong model, and give sane numbers on real recordings.

* Simulator (known κ, A = λ, σ): κ's 90 % credible interval, and σ's and λ's own (95 %) intervals, cover
  the truth in at least 90 % of seeds.
* A power-law tape: the goodness-of-fit test rejects the exponential.
* Shared recordings (skipped without ../shared/data): finite, plausible, and stable between the two halves.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from apps.engine.estimators.kappa import KappaParams
from apps.engine.estimators.market import EstimatorConfig, MarketEstimators, estimate_events
from apps.engine.estimators.sigma import SigmaParams
from apps.engine.market.events import BestBidAsk, Side, Trade
from apps.engine.simulation.simulator import MarketSimulator, SimulatorParams
from tests.conftest import shared_data

SEEDS = range(20)
SECONDS = 150


def _run_sim(seed: int) -> tuple[MarketEstimators, SimulatorParams]:
    sp = SimulatorParams(jump_intensity=1e-9, depth_levels=5)
    cfg = EstimatorConfig(
        kappa=KappaParams(window_s=SECONDS * 2, min_volume=0.0, ci_level=0.90, gof_interval_s=1e9),
        sigma=SigmaParams(window_buckets=600, min_buckets=30),
        hawkes_refit_s=1e9,
    )
    cfg = replace(cfg, arrival=replace(cfg.arrival, half_life_s=1e6))
    est = MarketEstimators(cfg, tick_size=sp.tick_size)
    for ev in MarketSimulator(sp, seed=seed).events(until_ns=sp.start_ts_ns + SECONDS * 10**9):
        est.on_event(ev)
    return est, sp


@pytest.fixture(scope="module")
def sims():
    return [_run_sim(s) for s in SEEDS]


def _coverage(hits: list[bool]) -> float:
    return sum(hits) / len(hits)


def test_kappa_credible_interval_covers_the_true_kappa_in_90_percent_of_seeds(sims):
    hits = []
    for est, sp in sims:
        k = est.kappa.snapshot(est.now_ns)
        assert k.usable, k.message
        hits.append(k.ci_low <= sp.kappa <= k.ci_high)
    assert _coverage(hits) >= 0.9, hits


def test_sigma_interval_covers_the_true_sigma_in_90_percent_of_seeds(sims):
    hits = []
    for est, sp in sims:
        s = est.sigma.snapshot(est.now_ns)
        assert s.usable, s.message
        hits.append(s.ci_low <= sp.sigma <= s.ci_high)
    assert _coverage(hits) >= 0.9, hits


def test_lambda_and_a_intervals_cover_the_true_arrival_rate_in_90_percent_of_seeds(sims):
    hits = []
    for est, sp in sims:
        lam = est.arrival.snapshot(est.now_ns)
        assert lam.usable, lam.message
        # κ is measured beyond the touch, so A (intensity at depth 0 of that scale) is λ itself
        hits.append(lam.ci_low <= sp.arrival_rate_A <= lam.ci_high)
    assert _coverage(hits) >= 0.9, hits


def test_kappa_outside_its_plausible_range_is_failed_not_clamped():
    cfg = EstimatorConfig(kappa=KappaParams(min_volume=0.0, kappa_max=1000.0))
    est = MarketEstimators(cfg, tick_size=0.1)
    sp = SimulatorParams()
    for ev in MarketSimulator(sp, seed=1).events(until_ns=sp.start_ts_ns + 30 * 10**9):
        est.on_event(ev)
    k = est.kappa.snapshot(est.now_ns)
    assert k.state.value == "failed" and k.value > 1000.0


def _tape(draw_depth, n: int = 3000, seed: int = 0) -> list:
    """A one-tick book at 60,000 with trades whose distance beyond the touch comes from ``draw_depth``."""
    rng = np.random.default_rng(seed)
    events: list = []
    t0 = 1_700_000_000 * 10**9
    for i in range(n):
        ts = t0 + i * 100_000_000
        events.append(BestBidAsk(ts, ts, 59999.9, 1.0, 60000.0, 1.0))
        side = Side.BUY if rng.random() < 0.5 else Side.SELL
        ticks = int(draw_depth(rng))
        px = 60000.0 + 0.1 * ticks if side is Side.BUY else 59999.9 - 0.1 * ticks
        events.append(Trade(ts + 1, ts + 1, round(px, 1), 0.01, side))
    return events


def test_the_fit_test_rejects_the_exponential_when_distances_follow_a_power_law():
    # the simulator has no power-law option, so the tape is drawn here: Pareto(α = 1.5) ticks beyond the touch
    def pareto(rng):
        return math.floor(rng.pareto(1.5) * 3)

    def geometric(rng):
        return rng.geometric(0.2) - 1

    cfg = EstimatorConfig(kappa=KappaParams(window_s=1e6, min_volume=0.0, kappa_max=1e7, gof_max_trades=3000))
    bad = estimate_events(_tape(pareto), tick_size=0.1, config=cfg)["kappa"]["fit_test"]
    good = estimate_events(_tape(geometric), tick_size=0.1, config=cfg)["kappa"]["fit_test"]
    assert bad["ks_p"] < 0.01 and bad["loglik_ratio"] < 0  # exponential rejected, power law preferred
    assert good["ks_p"] > 0.01


DATASETS = [
    ("binance-raw", ("hftbacktest-binance-usdm-btcusdt-20240808", "raw", "usdm_btcusdt_20240808.gz"), 0.1),
    ("binance-raw", ("hftbacktest-binance-spot-btcusdt-20240808", "raw", "spot_btcusdt_20240808.gz"), 0.01),
]


@pytest.mark.parametrize(("fmt", "parts", "tick"), DATASETS, ids=["usdm", "spot"])
def test_real_data_estimates_are_finite_plausible_and_stable_under_halves(fmt, parts, tick):
    from apps.marketdata.parsers import parse_file

    path = shared_data(*parts)
    events = [e for e in parse_file(fmt, path) if hasattr(e, "ts_local_ns")]
    half = len(events) // 2
    reports = [estimate_events(chunk, tick_size=tick) for chunk in (events[:half], events[half:])]
    for r in reports:
        k, s = r["kappa"], r["sigma"]
        assert k["value"] is not None and 100 < k["value"] < 50_000, k
        assert k["ci_low"] < k["value"] < k["ci_high"]
        assert 0.05 < k["avg_trade_distance_bps"] < 50
        assert s["sigma_clean"] is not None and 1e-6 < s["sigma_clean"] < 1e-3
        assert 1e-6 < s["sigma_total"] < 1e-3
        assert r["lambda_per_s"]["value"] > 0 and math.isfinite(r["lambda_per_s"]["value"])
    a, b = reports
    # stable: the halves agree within a factor of 3 (markets do move within a few minutes)
    for get in (
        lambda r: r["kappa"]["value"],
        lambda r: r["sigma"]["sigma_clean"],
        lambda r: r["lambda_per_s"]["value"],
    ):
        x, y = get(a), get(b)
        assert 1 / 3 < x / y < 3, (x, y)
