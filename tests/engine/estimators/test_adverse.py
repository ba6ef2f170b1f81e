"""Measured adverse selection: hand-built markouts with known answers, the mid before a fill, states, interval."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest

from apps.engine.estimators.adverse import AdverseSelectionEstimator, AdverseSelectionParams
from apps.engine.estimators.base import EstimatorState
from apps.engine.estimators.market import MarketEstimators
from apps.engine.market.events import BestBidAsk, Fill, Side, Trade
from apps.engine.quoting.quoter import MarketState, QuoterParams, quote
from apps.engine.quoting.risk_aversion import RiskAversionParams

S = 1_000_000_000
MS = 1_000_000


def test_own_buy_fill_then_mid_drop_is_adverse_by_the_drop():
    est = AdverseSelectionEstimator(AdverseSelectionParams(horizon_s=1.0, min_own_fills=1, public_weight=0.0))
    est.on_book(0, 100.0)
    est.on_book(10 * MS, 99.99)  # the trade that filled our bid moved the mid at 10 ms
    est.on_own_fill(10 * MS, +1)  # we bought at venue time 10 ms: reference is the mid before it, 100.00
    est.on_book(500 * MS, 99.98)
    assert est.snapshot(600 * MS).state is EstimatorState.WARMING  # horizon not over yet
    est.on_book(1200 * MS, 99.90)  # the mid in force at 1.01 s was 99.98
    snap = est.snapshot(1200 * MS)
    assert snap.state is EstimatorState.OK
    assert snap.value == pytest.approx((100.0 - 99.98) / 100.0)  # 2 bps against our buy


def test_sell_fill_then_mid_drop_is_favourable_negative_adverse():
    est = AdverseSelectionEstimator(AdverseSelectionParams(horizon_s=1.0, min_own_fills=1, public_weight=0.0))
    est.on_book(0, 100.0)
    est.on_own_fill(5 * MS, -1)
    est.on_book(2 * S, 99.99)  # at 1.005 s the mid was still 100.00 ...
    assert est.snapshot(2 * S).value == pytest.approx(0.0)
    est.on_own_fill(2 * S + 1, -1)
    est.on_book(2 * S + 500 * MS, 99.95)
    est.on_book(4 * S, 99.0)  # ... the second sale saw 99.99 → 99.95 within its horizon
    snap = est.snapshot(4 * S)
    assert snap.value == pytest.approx(0.5 * (0.0 - (99.99 - 99.95) / 99.99))
    assert snap.ci_low < snap.value < snap.ci_high


def test_public_trades_count_only_near_the_mid_and_from_the_makers_side():
    p = AdverseSelectionParams(horizon_s=1.0, public_max_distance_bps=2.0, min_public_trades=2, public_weight=1.0)
    est = AdverseSelectionEstimator(p)
    est.on_book(0, 100.0)
    est.on_public_trade(1 * MS, 100.01, +1)  # 1 bp away, aggressor bought: a maker sold at the ask
    est.on_public_trade(2 * MS, 100.50, +1)  # 50 bps away: not comparable to our quotes, ignored
    est.on_public_trade(3 * MS, 99.99, -1)  # a maker bought at the bid
    est.on_book(2 * S, 100.03)
    snap = est.snapshot(2 * S)
    assert snap.detail["public_markouts"] == 2.0
    # the maker who sold loses 3 bps, the one who bought gains 3 bps
    assert snap.value == pytest.approx(0.0, abs=1e-15)
    assert snap.state is EstimatorState.OK


def test_warming_then_stale():
    p = AdverseSelectionParams(horizon_s=1.0, min_own_fills=3, min_public_trades=1000, stale_after_s=10.0)
    est = AdverseSelectionEstimator(p)
    assert est.snapshot(0).state is EstimatorState.WARMING and math.isnan(est.snapshot(0).value)
    est.on_book(0, 100.0)
    for i in range(3):
        est.on_own_fill(i * MS + 1, +1)
    est.on_book(2 * S, 100.0)
    assert est.snapshot(2 * S).state is EstimatorState.OK
    assert est.snapshot(13 * S).state is EstimatorState.STALE


def test_params_reject_nonsense():
    with pytest.raises(ValueError, match="horizon_s"):
        AdverseSelectionParams(horizon_s=0.0).validate()
    with pytest.raises(ValueError, match="public_weight"):
        AdverseSelectionParams(public_weight=-1.0).validate()


def test_market_estimators_feed_it_from_book_trades_and_our_fills():
    m = MarketEstimators()
    m.on_event(BestBidAsk(0, 0, 99.99, 1.0, 100.01, 1.0))
    m.on_event(Trade(1 * MS, 2 * MS, 100.01, 0.1, Side.BUY))
    m.on_fill(Fill(1 * MS, 12 * MS, "c1", "f1", Side.SELL, 100.01, 0.01))
    m.on_event(BestBidAsk(5 * MS, 15 * MS, 100.01, 1.0, 100.03, 1.0))
    m.on_event(BestBidAsk(2 * S, 2 * S + 10 * MS, 100.0, 1.0, 100.02, 1.0))
    snap = m.adverse.snapshot(3 * S)
    assert snap.detail["own_markouts"] == 1.0 and snap.detail["public_markouts"] == 1.0
    # both sold at mid 100.00 (the mid before the fill's venue time, 1 ms < its 12 ms arrival), then 100.02 at +1 s
    assert snap.detail["own_mean_bps"] == pytest.approx(2.0, rel=1e-9)


def _market(**kw) -> MarketState:
    base = {
        "ts_ns": 1,
        "best_bid": 99.99,
        "best_ask": 100.01,
        "kappa": 2e4,
        "sigma_clean": 1e-5,
        "sigma_inventory": 1e-5,
        "a_per_s": 5.0,
        "mean_trade_size": 1.0,
    }
    return MarketState(**(base | kw))


def test_measured_adverse_selection_replaces_the_prior_and_keeps_quotes_off_the_touch():
    # 1/κ = 0.5 bps: the quotes sit at the touch (1 bp wide market, 0.01 tick)
    p = QuoterParams(gamma_base=1.0, order_size=1.0, max_inventory=10.0, adverse_selection_bps=0.0)
    risk = RiskAversionParams()
    prior = quote(p, risk, _market(), 0.0, tick_size=0.01, lot_size=0.001)
    assert prior.inputs["adverse_selection_measured"] == 0.0
    assert prior.bids and prior.asks  # no cost assumed: the touch pays
    measured = quote(
        p, risk, _market(adverse_selection=3e-4, adverse_selection_ok=True), 0.0, tick_size=0.01, lot_size=0.001
    )
    assert measured.inputs["adverse_selection_measured"] == 1.0
    assert measured.inputs["adverse_selection_frac"] == pytest.approx(3e-4)
    # the measured 3 bps move is a cost of every fill: the quotes move out by it, off the touch, E[P&L] > 0
    mid = measured.inputs["mid"]
    assert measured.inputs["half_spread_fill_cost_frac"] == pytest.approx(3e-4)
    assert measured.bids[0].price < 99.995 and measured.asks[0].price > 100.005
    assert (mid - measured.bids[0].price) / mid >= prior.inputs["half_spread_frac"] + 3e-4 - 1e-12
    assert measured.bids[0].expected_pnl > 0 and measured.asks[0].expected_pnl > 0
    # the textbook δ* (costs only in the filter): the touch does not pay for a 3 bps move, both sides dropped
    textbook = replace(p, fill_cost_in_spread=False)
    kept_in = quote(
        textbook, risk, _market(adverse_selection=3e-4, adverse_selection_ok=True), 0.0, tick_size=0.01, lot_size=0.001
    )
    assert not kept_in.bids and not kept_in.asks
    assert any("at the touch" in r for r in kept_in.reasons)
    # not OK → the prior again
    stale = quote(
        p, risk, _market(adverse_selection=3e-4, adverse_selection_ok=False), 0.0, tick_size=0.01, lot_size=0.001
    )
    assert stale.inputs["adverse_selection_measured"] == 0.0 and stale.bids
