"""tools/tape_edge.py: the tape's upper bound on a passive quote's edge, on hand-built events with known answers."""

from __future__ import annotations

import pytest

from apps.engine.market.events import BestBidAsk, Side, Trade
from tools.tape_edge import edges, sweeps

S = 1_000_000_000


def bbo(t: int, bid: float, ask: float) -> BestBidAsk:
    return BestBidAsk(t, t, bid, 1.0, ask, 1.0)


def trade(t: int, price: float, aggressor: Side, *, market: bool = True) -> Trade:
    return Trade(t, t, price, 1.0, aggressor, market=market)


def test_a_sweep_is_one_event_at_its_deepest_price_per_side():
    ev = [
        trade(10, 99.0, Side.SELL),
        trade(10, 98.9, Side.SELL),  # the same sweep: a maker buy reached down to 98.9
        trade(10, 101.0, Side.BUY),  # the same time, the other aggressor: its own event
        trade(11, 98.0, Side.SELL),
        trade(12, 97.0, Side.SELL, market=False),  # an insurance-fund print fills no quote
    ]
    assert sweeps(ev) == [(10, 1, 98.9), (10, -1, 101.0), (11, 1, 98.0)]


def test_the_prints_of_one_order_delivered_apart_are_one_event_at_the_first_local_time():
    """Binance delivers each print of a sweep as its own message: one exchange time, local times apart."""
    ev = [
        Trade(5, 100, 99.0, 1.0, Side.SELL),
        Trade(5, 104, 98.9, 1.0, Side.SELL),  # the same order
        Trade(5, 107, 101.0, 1.0, Side.BUY),  # the same exchange time, the other aggressor: another order
        Trade(6, 109, 98.8, 1.0, Side.SELL),  # a millisecond later: another order
    ]
    assert sweeps(ev) == [(100, 1, 98.9), (107, -1, 101.0), (109, 1, 98.8)]


def test_depth_and_move_from_the_mid_before_the_event():
    ev = [
        bbo(0, 99.0, 101.0),  # mid 100 in force before the trades
        trade(S, 98.9, Side.SELL),  # a maker buy 110 bps below that mid
        bbo(S, 97.0, 99.0),  # at the trade's own time: not "before" it
        trade(S + 1, 99.0, Side.BUY),  # a maker sell at 99 against the mid 98 now in force: depth +1/98
        bbo(2 * S + 1, 96.0, 98.0),  # mid 97 from just after the first event's horizon
        bbo(3 * S, 96.0, 98.0),
    ]
    depth, move = edges(ev, split_ns=0, horizon_s=1.0)
    assert depth == pytest.approx([110.0, 1e4 / 98])
    # event 1: the mid at t + 1 s (2 s exactly) is still 98: −(100 − 98)/100; event 2 (maker sold): mid 98 → 97
    assert move == pytest.approx([-200.0, 1e4 / 98])


def test_events_before_the_split_or_past_the_last_mid_are_left_out():
    ev = [bbo(0, 99.0, 101.0), trade(S, 99.0, Side.SELL), trade(3 * S, 99.0, Side.SELL), bbo(3 * S + 5, 99.0, 101.0)]
    assert edges(ev, split_ns=2 * S, horizon_s=1.0) == ([], [])  # the second event's horizon has no mid yet
    depth, _ = edges(ev, split_ns=0, horizon_s=1.0)
    assert depth == pytest.approx([100.0])  # only the first: 99 is 100 bps below the mid 100
