"""Behaviour of the aggressor-flow imbalance and the trade arrival rate λ."""

from __future__ import annotations

import math

import numpy as np
import pytest

from apps.engine.estimators.base import EstimatorState
from apps.engine.estimators.flow import ArrivalParams, FlowImbalance, FlowParams, TradeArrivalRate

NS = 1_000_000_000


def test_it_weights_imbalance_by_volume():
    flow = FlowImbalance(FlowParams(min_volume=0.0))
    flow.update(NS, 3.0, +1)
    flow.update(NS, 1.0, -1)
    snap = flow.snapshot(NS)
    assert snap.value == pytest.approx(0.5)
    assert snap.state is EstimatorState.OK
    assert snap.ci_low < 0.5 < snap.ci_high


def test_old_flow_fades_with_the_half_life():
    flow = FlowImbalance(FlowParams(half_life_s=10.0, min_volume=0.0, stale_after_s=100.0))
    flow.update(0, 4.0, +1)  # buys, then sells of equal size one half-life later
    flow.update(10 * NS, 4.0, -1)
    # Buy volume has halved to 2 by then: (2 − 4) / 6.
    assert flow.snapshot(10 * NS).value == pytest.approx(-1 / 3)
    # Decay preserves the ratio between sides with no new trades.
    assert flow.snapshot(20 * NS).value == pytest.approx(-1 / 3)


def test_imbalance_sd_matches_the_spread_of_balanced_random_flow():
    rng = np.random.default_rng(0)
    values, sds = [], []
    for _ in range(300):
        flow = FlowImbalance(FlowParams(half_life_s=5.0, min_volume=0.0))
        for i in range(200):
            flow.update(i * NS // 10, float(rng.lognormal()), int(rng.choice([-1, 1])))
        snap = flow.snapshot(199 * NS // 10)
        values.append(snap.value)
        sds.append(snap.std)
    assert np.std(values) == pytest.approx(np.mean(sds), rel=0.15)


def test_flow_states_and_validation():
    flow = FlowImbalance(FlowParams(min_volume=5.0, stale_after_s=10.0))
    assert flow.snapshot(0).state is EstimatorState.WARMING
    flow.update(NS, 2.0, +1)
    assert flow.snapshot(NS).state is EstimatorState.WARMING
    flow.update(NS, 4.0, -1)
    assert flow.snapshot(NS).state is EstimatorState.OK
    assert flow.snapshot(12 * NS).state is EstimatorState.STALE
    with pytest.raises(ValueError, match="aggressor"):
        flow.update(NS, 1.0, 0)
    with pytest.raises(ValueError, match="half_life_s"):
        FlowParams(half_life_s=-1.0).validate()


def test_arrival_rate_recovers_a_poisson_rate_with_an_honest_sd():
    rate = 20.0
    estimates, sds = [], []
    for seed in range(100):
        rng = np.random.default_rng(seed)
        lam = TradeArrivalRate(ArrivalParams(half_life_s=10.0))
        times = np.cumsum(rng.exponential(1 / rate, 3000))
        lam.start(0)
        for t in times:
            lam.update(int(t * NS))
        snap = lam.snapshot(int(times[-1] * NS))
        estimates.append(snap.value)
        sds.append(snap.std)
    assert np.mean(estimates) == pytest.approx(rate, rel=0.03)
    assert np.std(estimates) == pytest.approx(np.mean(sds), rel=0.2)


def test_arrival_rate_is_unbiased_during_cold_start_and_decays_when_quiet():
    rng = np.random.default_rng(1)
    est = []
    for _ in range(200):
        lam = TradeArrivalRate(ArrivalParams(half_life_s=60.0, min_trades=0.0))
        lam.start(0)
        for t in np.cumsum(rng.exponential(1 / 5.0, 100)):
            if t > 10.0:
                break
            lam.update(int(t * NS))
        est.append(lam.snapshot(10 * NS).value)
    # 10 s into a 60 s half-life the naive N/τ would read ≈ 0.16·5; the exposure correction does not.
    assert np.mean(est) == pytest.approx(5.0, rel=0.05)
    lam = TradeArrivalRate(ArrivalParams(half_life_s=10.0, min_trades=0.0, stale_after_s=1e3))
    for i in range(100):
        lam.update(i * NS // 10)
    busy = lam.snapshot(10 * NS).value
    assert lam.snapshot(30 * NS).value < 0.4 * busy


def test_arrival_rate_states():
    lam = TradeArrivalRate(ArrivalParams(min_trades=10.0, stale_after_s=5.0, lambda_max=50.0))
    assert lam.snapshot(0).state is EstimatorState.WARMING
    for i in range(5):
        lam.update(i * NS)
    assert lam.snapshot(5 * NS).state is EstimatorState.WARMING
    for i in range(1000):
        lam.update(5 * NS + i * NS // 5000)  # 1000 trades in 0.2 s: ≈ 190/s over the 5 s exposure
    failed = lam.snapshot(5 * NS + NS // 5)
    assert failed.state is EstimatorState.FAILED and failed.value > 50.0
    assert lam.snapshot(20 * NS).state is EstimatorState.STALE
    assert math.isnan(TradeArrivalRate().snapshot(0).value)


def test_a_quiet_spell_after_the_warm_up_is_a_low_rate_not_a_warm_up():
    lam = TradeArrivalRate(ArrivalParams(half_life_s=30.0, min_trades=10.0, stale_after_s=60.0))
    for i in range(9):
        lam.update(i * NS)
    assert lam.snapshot(9 * NS).state is EstimatorState.WARMING  # 9 trades since the start
    lam.update(9 * NS)
    busy = lam.snapshot(10 * NS)
    assert busy.state is EstimatorState.OK
    quiet = lam.snapshot(55 * NS)  # 45 s without a trade: the decayed count is ~3.5, the rate low, the state OK
    assert quiet.detail["decayed_count"] < 10.0
    assert quiet.state is EstimatorState.OK and 0 < quiet.value < 0.5 * busy.value
    assert quiet.ci_high - quiet.ci_low > 0
    assert lam.snapshot(71 * NS).state is EstimatorState.STALE  # silence past stale_after_s is still stale
