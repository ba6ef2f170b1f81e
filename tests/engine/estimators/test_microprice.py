"""Tests of the online ridge microprice: learning, out-of-sample gating, labelling and forgetting."""

from __future__ import annotations

import csv
import gzip
import math
from collections import deque
from pathlib import Path

import numpy as np
import pytest

from apps.engine.estimators.base import EstimatorState
from apps.engine.estimators.microprice import (
    MicropriceParams,
    MicropriceRegression,
    book_imbalance,
    flow_imbalance,
)

NS = 1_000_000_000
SHARED = Path(__file__).resolve().parents[3] / ".." / "shared"


def features(n: int, rng: np.random.Generator) -> np.ndarray:
    """Two correlated, persistent imbalances in (−1, 1)."""
    latent = np.zeros((n, 2))
    for k in range(1, n):
        latent[k] = 0.8 * latent[k - 1] + rng.normal(0.0, 0.6, 2)
    latent[:, 1] += 0.5 * latent[:, 0]  # collinearity, as in real books
    return np.tanh(latent)


def feed_planted(
    model: MicropriceRegression, coef: tuple[float, float], noise_sd: float, n: int, seed: int, start_ns: int = 0
) -> int:
    """Observations one horizon apart; the mid moves by the planted relation over each horizon."""
    rng = np.random.default_rng(seed)
    x = features(n, rng)
    step_ns = round(model.params.horizon_s * NS)
    mid = 30_000.0
    ts = start_ns
    for k in range(n):
        ts = start_ns + k * step_ns
        model.observe(ts, mid, float(x[k, 0]), float(x[k, 1]))
        mid *= 1.0 + coef[0] * x[k, 0] + coef[1] * x[k, 1] + noise_sd * rng.normal()
    return ts


@pytest.mark.parametrize(
    ("kwargs", "bad"),
    [
        ({"horizon_s": 0.0}, "horizon_s"),
        ({"ridge_prior": -1.0}, "ridge_prior"),
        ({"r2_min": math.nan}, "r2_min"),
        ({"min_labels": 0}, "min_labels"),
        ({"half_life_s": math.inf}, "half_life_s"),
    ],
)
def test_it_rejects_invalid_params(kwargs, bad):
    with pytest.raises(ValueError, match=bad):
        MicropriceParams(**kwargs).validate()


def test_imbalance_helpers_and_their_undefined_case():
    assert book_imbalance(3.0, 1.0) == pytest.approx(0.5)
    assert flow_imbalance(0.0, 2.0) == pytest.approx(-1.0)
    with pytest.raises(ValueError, match="both zero"):
        book_imbalance(0.0, 0.0)


def test_it_learns_a_planted_linear_relation():
    model = MicropriceRegression(MicropriceParams(horizon_s=1.0, sample_interval_s=1.0, min_labels=200))
    last = feed_planted(model, coef=(2e-4, -1e-4), noise_sd=5e-5, n=3000, seed=0)
    beta_book, beta_flow = model.coefficients
    assert beta_book == pytest.approx(2e-4, rel=0.05)
    assert beta_flow == pytest.approx(-1e-4, rel=0.1)
    snap = model.snapshot(last)
    assert snap.state is EstimatorState.OK and snap.usable
    assert snap.detail["r2_oos"] > 0.6
    assert abs(beta_book - 2e-4) < 4 * snap.detail["se_beta_book"]
    assert snap.detail["residual_std"] == pytest.approx(5e-5, rel=0.15)
    assert model.predict(0.5, 0.5) == pytest.approx(0.5 * beta_book + 0.5 * beta_flow)
    assert model.microprice(100.0, 1.0, 0.0) == pytest.approx(100.0 * (1 + beta_book))


def test_it_refuses_pure_noise():
    model = MicropriceRegression(MicropriceParams(horizon_s=1.0, sample_interval_s=1.0, min_labels=200))
    last = feed_planted(model, coef=(0.0, 0.0), noise_sd=5e-5, n=3000, seed=1)
    snap = model.snapshot(last)
    assert snap.detail["r2_oos"] < 0.01
    assert snap.state is EstimatorState.FAILED and not snap.usable
    assert "R²" in snap.message


def test_it_is_warming_until_enough_labels_are_scored():
    model = MicropriceRegression(MicropriceParams(horizon_s=1.0, sample_interval_s=1.0, min_labels=200))
    last = feed_planted(model, coef=(2e-4, 0.0), noise_sd=1e-5, n=150, seed=2)
    snap = model.snapshot(last)
    assert snap.state is EstimatorState.WARMING and "min_labels" in snap.message
    assert model.n_labels == 149  # the last sample still waits for its horizon
    assert model.snapshot(last + 60 * NS).state is EstimatorState.WARMING


def test_it_labels_with_the_mid_in_effect_at_the_horizon():
    model = MicropriceRegression(MicropriceParams(horizon_s=1.0, sample_interval_s=10.0))
    model.observe(0, 100.0, 0.2, 0.0)
    model.observe(NS // 2, 101.0, 0.2, 0.0)  # the mid in effect at t = 1 s
    assert model.n_labels == 0
    model.observe(3 * NS // 2, 105.0, 0.2, 0.0)
    assert model.n_labels == 1
    assert model.snapshot(3 * NS // 2).detail["last_label"] == pytest.approx(0.01)
    # A mid observed exactly at the deadline is the one in effect there.
    model.observe(11 * NS, 105.0, 0.2, 0.0)
    model.observe(12 * NS, 94.5, 0.2, 0.0)
    assert model.snapshot(12 * NS).detail["last_label"] == pytest.approx(-0.1)


def test_it_samples_no_more_often_than_the_sample_interval():
    model = MicropriceRegression(MicropriceParams(horizon_s=1.0, sample_interval_s=0.5))
    for k in range(101):  # 10 s of observations every 0.1 s
        model.observe(k * NS // 10, 100.0, 0.0, 0.0)
    # Samples at 0, 0.5, ..., 10 s; those up to 9 s have a resolved horizon.
    assert model.n_labels == 19


def test_it_refuses_time_going_backwards_and_bad_inputs():
    model = MicropriceRegression()
    model.observe(5 * NS, 100.0, 0.0, 0.0)
    with pytest.raises(ValueError, match="backwards"):
        model.observe(4 * NS, 100.0, 0.0, 0.0)
    with pytest.raises(ValueError, match="mid"):
        model.observe(6 * NS, math.nan, 0.0, 0.0)
    with pytest.raises(ValueError, match="book_imbalance"):
        model.predict(math.inf, 0.0)


def test_it_forgets_a_relation_that_has_changed():
    params = MicropriceParams(horizon_s=1.0, sample_interval_s=1.0, half_life_s=300.0)
    model = MicropriceRegression(params)
    last = feed_planted(model, coef=(2e-4, 0.0), noise_sd=3e-5, n=2000, seed=3)
    assert model.coefficients[0] == pytest.approx(2e-4, rel=0.1)
    feed_planted(model, coef=(-2e-4, 0.0), noise_sd=3e-5, n=3000, seed=4, start_ns=last + NS)
    assert model.coefficients[0] == pytest.approx(-2e-4, rel=0.1)


def test_it_finds_the_queue_imbalance_signal_in_real_binance_data():
    base = SHARED / "data" / "hftbacktest-binance-usdm-btcusdt-20240808" / "derived"
    if not (base / "bbo.csv.gz").exists():
        pytest.skip(f"real data not available at {base}")
    with gzip.open(base / "bbo.csv.gz", "rt") as fh:
        bbo = [
            (int(r["local_ts_ns"]), float(r["bid_px"]), float(r["bid_qty"]), float(r["ask_px"]), float(r["ask_qty"]))
            for r in csv.DictReader(fh)
        ]
    with gzip.open(base / "trades.csv.gz", "rt") as fh:
        trades = [(int(r["local_ts_ns"]), float(r["qty"]), r["aggressor_side"] == "buy") for r in csv.DictReader(fh)]
    model = MicropriceRegression(MicropriceParams(horizon_s=1.0, sample_interval_s=0.1))
    window: deque[tuple[int, float, bool]] = deque()
    buy = sell = 0.0
    i = 0
    for ts, bid_px, bid_qty, ask_px, ask_qty in bbo:
        while i < len(trades) and trades[i][0] <= ts:  # taker flow over the last second
            window.append(trades[i])
            buy, sell = (buy + trades[i][1], sell) if trades[i][2] else (buy, sell + trades[i][1])
            i += 1
        while window and window[0][0] < ts - NS:
            _, qty, is_buy = window.popleft()
            buy, sell = (buy - qty, sell) if is_buy else (buy, sell - qty)
        flow = flow_imbalance(max(buy, 0.0), max(sell, 0.0)) if buy + sell > 1e-9 else 0.0
        model.observe(ts, 0.5 * (bid_px + ask_px), book_imbalance(bid_qty, ask_qty), flow)
    snap = model.snapshot(bbo[-1][0])
    # More size on the bid predicts an up-tick: a well-known, strongly significant effect.
    assert snap.detail["beta_book"] > 4 * snap.detail["se_beta_book"]
    assert snap.detail["r2_oos"] > 0.0
    assert snap.state in (EstimatorState.OK, EstimatorState.FAILED)
