"""Behaviour of the order-book signal functions."""

from __future__ import annotations

import math

import pytest

from apps.engine.estimators.book_signals import imbalance, liquidity_within, market_spread_frac, queue_at_touch

BIDS = [(99.9, 2.0), (99.8, 3.0), (99.0, 10.0)]
ASKS = [(100.1, 1.0), (100.2, 1.0), (101.0, 20.0)]


def test_imbalance_counts_only_the_requested_levels():
    assert imbalance(BIDS, ASKS, n_levels=1) == pytest.approx((2 - 1) / 3)
    assert imbalance(BIDS, ASKS, n_levels=2) == pytest.approx((5 - 2) / 7)
    assert imbalance(BIDS, ASKS, n_levels=3) == pytest.approx((15 - 22) / 37)
    assert imbalance(BIDS, [], n_levels=3) == 1.0
    assert math.isnan(imbalance([], [], n_levels=3))
    with pytest.raises(ValueError, match="n_levels"):
        imbalance(BIDS, ASKS, n_levels=0)


def test_liquidity_within_stops_at_the_distance_from_mid():
    mid = 100.0
    assert liquidity_within(BIDS, ASKS, mid, 0.001) == pytest.approx(2.0 + 1.0)  # 10 bps: touch only
    assert liquidity_within(BIDS, ASKS, mid, 0.002) == pytest.approx(5.0 + 2.0)  # boundary levels included
    assert liquidity_within(BIDS, ASKS, mid, 0.02) == pytest.approx(15.0 + 22.0)
    assert liquidity_within(BIDS, ASKS, mid, 0.0) == 0.0
    with pytest.raises(ValueError, match="mid"):
        liquidity_within(BIDS, ASKS, 0.0, 0.001)


def test_queue_at_touch_and_market_spread():
    assert queue_at_touch(BIDS, ASKS) == (2.0, 1.0)
    assert queue_at_touch([], ASKS) == (0.0, 1.0)
    assert market_spread_frac(BIDS, ASKS) == pytest.approx(0.2 / 100.0)
    assert math.isnan(market_spread_frac(BIDS, []))
