"""The paper venue on hand-built event sequences whose right answer is known."""

from __future__ import annotations

import csv
import gzip
from pathlib import Path

import pytest

from apps.engine.execution.latency import EmpiricalLatency
from apps.engine.execution.orders import OrderTracker
from apps.engine.execution.paper import PaperVenue, PaperVenueConfig
from apps.engine.market.events import (
    BestBidAsk,
    CancelAll,
    CancelOrder,
    DepthSnapshot,
    DepthUpdate,
    Fill,
    ModifyOrder,
    OrderAck,
    OrderReject,
    PlaceOrder,
    Side,
    Trade,
)
from tests.engine.variants import VARIANTS, select

BUY, SELL = Side.BUY, Side.SELL


@pytest.fixture(autouse=True, params=VARIANTS)
def variant(request, monkeypatch):
    """Every test here runs against the reference venue and driver and against the compiled ones."""
    return select(request.param, monkeypatch, request.module)


def bbo(t: int, bid: float, bid_sz: float, ask: float, ask_sz: float) -> BestBidAsk:
    return BestBidAsk(t, t, bid, bid_sz, ask, ask_sz)


def trade(t: int, px: float, sz: float, aggressor: Side) -> Trade:
    return Trade(t, t, px, sz, aggressor)


def venue(**kw) -> PaperVenue:
    cfg = {"tick_size": 0.1, "lot_size": 0.01, "maker_fee": -0.0001, "taker_fee": 0.0004}
    cfg.update(kw)
    return PaperVenue(PaperVenueConfig(**cfg), seed=0)


def fills(events) -> list[Fill]:
    return [e for e in events if isinstance(e, Fill)]


def view(v: PaperVenue, cid: str):
    return next(o for o in v.open_orders() if o.client_order_id == cid)


def resting_bid(v: PaperVenue, t: int = 1, px: float = 100.0, size: float = 1.0, cid: str = "b1") -> list:
    """Book bid 100.0 x 5 / ask 100.2 x 5, then our bid joins; returns the events of the arrival."""
    v.on_market(bbo(t, 100.0, 5.0, 100.2, 5.0))
    assert v.submit([PlaceOrder(cid, BUY, px, size)], t) == []
    return v.on_market(bbo(t + 1, 100.0, 5.0, 100.2, 5.0))


# --- queue position -----------------------------------------------------------------------------


def test_it_joins_behind_the_displayed_queue_and_acks() -> None:
    v = venue()
    events = resting_bid(v)
    assert [type(e) for e in events] == [OrderAck]
    assert events[0].status == "open"
    assert view(v, "b1").queue_ahead == 5.0


def test_it_fills_only_after_trades_have_eaten_the_queue_ahead() -> None:
    v = venue()
    resting_bid(v)
    assert fills(v.on_market(trade(3, 100.0, 3.0, SELL))) == []
    assert view(v, "b1").queue_ahead == pytest.approx(2.0)
    got = fills(v.on_market(trade(4, 100.0, 2.5, SELL)))  # 2 ahead, then 0.5 for us
    assert len(got) == 1
    f = got[0]
    assert (f.price, f.size, f.remaining, f.liquidity) == (100.0, pytest.approx(0.5), pytest.approx(0.5), "maker")
    assert f.fee == pytest.approx(-0.0001 * 100.0 * 0.5)  # rebate
    assert view(v, "b1").status == "partially_filled"
    got = fills(v.on_market(trade(5, 100.0, 3.0, SELL)))
    assert sum(x.size for x in got) == pytest.approx(0.5)  # never more than the remaining
    assert v.open_orders() == []


def test_it_ignores_trades_by_buyers_and_trades_above_our_bid() -> None:
    v = venue()
    resting_bid(v)
    v.on_market(trade(3, 100.0, 9.0, BUY))  # a buyer lifting: does not touch the bid queue
    v.on_market(trade(4, 100.1, 9.0, SELL))  # above our price
    assert view(v, "b1").queue_ahead == 5.0
    assert view(v, "b1").remaining == 1.0


@pytest.mark.parametrize(("model", "expected_ahead"), [("risk_averse", 5.0), ("probabilistic", 5.0 - 2.0 * 5.0 / 9.0)])
def test_cancels_at_our_level_move_us_up_only_under_the_probabilistic_model(model: str, expected_ahead: float) -> None:
    v = venue(queue_model=model, queue_power=1.0)
    resting_bid(v)
    v.on_market(bbo(3, 100.0, 9.0, 100.2, 5.0))  # 4 join behind us
    assert view(v, "b1").queue_ahead == 5.0
    v.on_market(bbo(4, 100.0, 7.0, 100.2, 5.0))  # 2 cancelled, no trades
    assert view(v, "b1").queue_ahead == pytest.approx(expected_ahead)


@pytest.mark.parametrize("model", ["risk_averse", "probabilistic"])
def test_cancels_of_everything_behind_and_more_cap_the_queue_at_the_displayed_size(model: str) -> None:
    v = venue(queue_model=model)
    resting_bid(v)
    v.on_market(bbo(3, 100.0, 2.0, 100.2, 5.0))  # only 2 left at the level: at most 2 ahead
    assert view(v, "b1").queue_ahead == pytest.approx(2.0)


def test_a_depth_drop_that_mirrors_a_trade_is_not_counted_twice() -> None:
    v = venue(queue_model="probabilistic")
    resting_bid(v)
    v.on_market(bbo(3, 100.0, 9.0, 100.2, 5.0))
    v.on_market(trade(4, 100.0, 2.0, SELL))
    v.on_market(bbo(5, 100.0, 7.0, 100.2, 5.0))  # the same 2 units, seen in the book
    assert view(v, "b1").queue_ahead == pytest.approx(3.0)


def test_it_waits_to_see_a_level_before_claiming_a_queue_position() -> None:
    v = venue()
    v.on_market(bbo(1, 100.0, 5.0, 100.2, 5.0))
    v.submit([PlaceOrder("b1", BUY, 99.5, 1.0)], 1)
    v.on_market(bbo(2, 100.0, 5.0, 100.2, 5.0))
    assert view(v, "b1").queue_ahead is None  # BBO-only data says nothing about 99.5
    assert fills(v.on_market(trade(3, 99.5, 4.0, SELL))) == []
    v.on_market(bbo(4, 99.5, 3.0, 99.7, 1.0))
    assert view(v, "b1").queue_ahead == 3.0


# --- trade-through, book cross, partial fills --------------------------------------------------


def test_a_trade_through_our_price_fills_us_at_our_price_up_to_the_trade_size() -> None:
    v = venue()
    resting_bid(v, size=1.0)
    got = fills(v.on_market(trade(3, 99.8, 0.4, SELL)))
    assert [(f.price, f.size) for f in got] == [(100.0, pytest.approx(0.4))]
    assert view(v, "b1").queue_ahead == 0.0
    got = fills(v.on_market(trade(4, 99.9, 5.0, SELL)))
    assert [(f.price, f.size) for f in got] == [(100.0, pytest.approx(0.6))]


def test_it_never_fills_at_a_price_the_market_did_not_reach() -> None:
    v = venue()
    v.on_market(bbo(1, 100.0, 5.0, 100.2, 5.0))
    v.submit([PlaceOrder("a1", SELL, 100.5, 1.0)], 1)
    v.on_market(bbo(2, 100.0, 5.0, 100.2, 5.0))
    events = v.on_market(trade(3, 100.4, 50.0, BUY))
    events += v.on_market(bbo(4, 100.3, 1.0, 100.4, 1.0))
    assert fills(events) == []
    # at our price, but the level was never visible: we cannot claim any place in its queue
    assert fills(v.on_market(trade(5, 100.5, 50.0, BUY))) == []
    got = fills(v.on_market(trade(6, 100.6, 50.0, BUY)))  # through our price
    assert [(f.price, f.size) for f in got] == [(100.5, 1.0)]


def test_a_book_that_crosses_our_bid_fills_us_once_per_unit_of_displayed_size() -> None:
    v = venue()
    resting_bid(v, size=1.0)
    got = fills(v.on_market(bbo(3, 99.8, 4.0, 100.0, 0.3)))  # a seller now rests at our price
    assert [(f.price, f.size) for f in got] == [(100.0, pytest.approx(0.3))]
    assert fills(v.on_market(bbo(4, 99.8, 4.0, 100.0, 0.3))) == []  # same liquidity again: no new fill
    got = fills(v.on_market(bbo(5, 99.8, 4.0, 99.9, 2.0)))  # fresh size through our price
    assert sum(f.size for f in got) == pytest.approx(0.7)
    assert all(f.price == 100.0 for f in got)


def test_two_of_our_orders_at_one_level_share_a_trade_in_time_priority() -> None:
    v = venue()
    v.on_market(bbo(1, 100.0, 5.0, 100.2, 5.0))
    v.submit([PlaceOrder("b1", BUY, 100.0, 1.0)], 1)
    v.on_market(bbo(2, 100.0, 7.0, 100.2, 5.0))  # 2 more join behind b1
    v.submit([PlaceOrder("b2", BUY, 100.0, 1.0)], 2)
    v.on_market(bbo(3, 100.0, 7.0, 100.2, 5.0))
    assert (view(v, "b1").queue_ahead, view(v, "b2").queue_ahead) == (5.0, 7.0)
    got = fills(v.on_market(trade(4, 100.0, 8.5, SELL)))
    # 5 ahead, b1 (1.0), 2 more, b2 takes the last 0.5
    assert {f.client_order_id: f.size for f in got} == {"b1": pytest.approx(1.0), "b2": pytest.approx(0.5)}


# --- no partial fills (partial_fills=False: hftbacktest's NoPartialFillExchange) -------------------------------


def whole(**kw) -> PaperVenue:
    return venue(partial_fills=False, **kw)


def test_without_partial_fills_a_trade_smaller_than_our_order_fills_it_whole_once_the_queue_is_through() -> None:
    v = whole()
    resting_bid(v, size=1.0)  # 5.0 ahead
    got = fills(v.on_market(trade(3, 100.0, 5.3, SELL)))  # 0.3 past the queue: the partial venue fills 0.3
    assert [(f.client_order_id, f.price, f.size, f.remaining, f.liquidity) for f in got] == [
        ("b1", 100.0, 1.0, 0.0, "maker")
    ]
    assert got[0].fee == pytest.approx(-0.0001 * 100.0 * 1.0)  # the maker rebate on the whole size
    assert v.open_orders() == []
    assert v.position() == pytest.approx(1.0)
    assert [f.fill_id for f in v.fills_since(None)] == [got[0].fill_id]


def test_without_partial_fills_a_trade_that_does_not_clear_the_queue_ahead_fills_nothing() -> None:
    v = whole()
    resting_bid(v, size=1.0)
    assert fills(v.on_market(trade(3, 100.0, 3.0, SELL))) == []
    assert view(v, "b1").queue_ahead == pytest.approx(2.0)  # the queue still moves
    assert fills(v.on_market(trade(4, 100.0, 2.0, SELL))) == []  # exactly the queue ahead: nothing past it
    assert (view(v, "b1").queue_ahead, view(v, "b1").remaining) == (0.0, 1.0)
    got = fills(v.on_market(trade(5, 100.0, 0.01, SELL)))  # one lot past the queue: the whole order
    assert [(f.size, f.remaining) for f in got] == [(1.0, 0.0)]
    assert v.position() == pytest.approx(1.0)


def test_without_partial_fills_a_small_trade_through_our_price_fills_us_whole_at_our_price() -> None:
    v = whole()
    resting_bid(v, size=1.0)
    got = fills(v.on_market(trade(3, 99.8, 0.4, SELL)))
    assert [(f.price, f.size, f.liquidity) for f in got] == [(100.0, 1.0, "maker")]
    assert v.open_orders() == [] and v.position() == pytest.approx(1.0)


def test_without_partial_fills_a_book_moving_through_our_price_fills_us_whole() -> None:
    v = whole()
    resting_bid(v, size=1.0)
    got = fills(v.on_market(bbo(3, 99.8, 4.0, 100.0, 0.3)))  # 0.3 offered at our bid: the partial venue fills 0.3
    assert [(f.price, f.size, f.remaining, f.liquidity) for f in got] == [(100.0, 1.0, 0.0, "maker")]
    assert got[0].fee == pytest.approx(-0.0001 * 100.0 * 1.0)
    assert fills(v.on_market(bbo(4, 99.8, 4.0, 99.9, 2.0))) == []  # nothing left to fill
    assert v.position() == pytest.approx(1.0)


def test_without_partial_fills_an_ask_is_filled_whole_by_a_buyer_lifting_through_it() -> None:
    v = whole()
    v.on_market(bbo(1, 100.0, 5.0, 100.2, 5.0))
    v.submit([PlaceOrder("a1", SELL, 100.2, 0.5)], 1)
    v.on_market(bbo(2, 100.0, 5.0, 100.2, 5.0))
    assert fills(v.on_market(trade(3, 100.3, 0.02, BUY))) != []
    assert v.open_orders() == [] and v.position() == pytest.approx(-0.5)
    f = v.fills_since(None)[0]
    assert (f.side, f.price, f.size, f.fee) == (SELL, 100.2, 0.5, pytest.approx(-0.0001 * 100.2 * 0.5))


def test_without_partial_fills_each_of_our_orders_a_trade_reaches_sees_the_whole_trade() -> None:
    v = whole()
    v.on_market(bbo(1, 100.0, 5.0, 100.2, 5.0))
    v.submit([PlaceOrder("b1", BUY, 100.0, 1.0)], 1)
    v.on_market(bbo(2, 100.0, 7.0, 100.2, 5.0))
    v.submit([PlaceOrder("b2", BUY, 100.0, 1.0)], 2)
    v.on_market(bbo(3, 100.0, 7.0, 100.2, 5.0))
    assert (view(v, "b1").queue_ahead, view(v, "b2").queue_ahead) == (5.0, 7.0)
    got = fills(v.on_market(trade(4, 100.0, 7.5, SELL)))
    # with partial fills b1 would take 1.0 of the 2.5 past its queue and leave b2 nothing; here b1's whole fill does
    # not use the trade up: 7.5 is past b2's 7.0 ahead too (hftbacktest's queue positions ignore our other orders)
    assert {f.client_order_id: f.size for f in got} == {"b1": 1.0, "b2": 1.0}
    assert v.position() == pytest.approx(2.0)


@pytest.mark.parametrize("tif", ["GTC", "IOC"])
def test_without_partial_fills_a_crossing_order_takes_its_whole_size_at_the_best_level(tif: str) -> None:
    v = whole()
    v.on_market(DepthSnapshot(1, 1, ((100.0, 5.0),), ((100.1, 0.5), (100.2, 0.7), (100.4, 9.0))))
    v.submit([PlaceOrder("g1", BUY, 100.2, 2.0, tif=tif)], 1)
    events = v.on_market(DepthUpdate(2, 2, (), ()))
    assert [type(e) for e in events] == [OrderAck, Fill]  # no IOC remainder, no resting remainder
    f = fills(events)[0]
    assert (f.price, f.size, f.remaining, f.liquidity) == (100.1, 2.0, 0.0, "taker")
    assert f.fee == pytest.approx(0.0004 * 100.1 * 2.0)
    assert v.open_orders() == [] and v.position() == pytest.approx(2.0)


def test_without_partial_fills_a_post_only_order_that_would_cross_is_still_rejected() -> None:
    v = whole()
    v.on_market(bbo(1, 100.0, 5.0, 100.2, 5.0))
    v.submit([PlaceOrder("p1", BUY, 100.2, 1.0, tif="POST_ONLY")], 1)
    events = v.on_market(bbo(2, 100.0, 5.0, 100.2, 5.0))
    assert [(type(e), getattr(e, "reason", "")) for e in events] == [(OrderReject, "post_only_would_cross")]


# --- time in force, post-only, taking, self-trade ---------------------------------------------


def test_post_only_that_would_cross_is_rejected() -> None:
    v = venue()
    v.on_market(bbo(1, 100.0, 5.0, 100.2, 5.0))
    v.submit([PlaceOrder("p1", BUY, 100.2, 1.0, tif="POST_ONLY")], 1)
    events = v.on_market(bbo(2, 100.0, 5.0, 100.2, 5.0))
    assert [(type(e), getattr(e, "reason", "")) for e in events] == [(OrderReject, "post_only_would_cross")]
    assert v.open_orders() == []


def test_a_crossing_gtc_order_takes_displayed_liquidity_then_rests() -> None:
    v = venue()
    v.on_market(DepthSnapshot(1, 1, ((100.0, 5.0),), ((100.1, 0.5), (100.2, 0.7), (100.4, 9.0))))
    v.submit([PlaceOrder("g1", BUY, 100.25, 2.0)], 1)  # rounds down to 100.2
    events = v.on_market(DepthUpdate(2, 2, (), ()))
    got = fills(events)
    assert [(f.price, f.size, f.liquidity) for f in got] == [(100.1, 0.5, "taker"), (100.2, 0.7, "taker")]
    assert got[0].fee == pytest.approx(0.0004 * 100.1 * 0.5)
    o = view(v, "g1")
    assert (o.price, o.remaining) == (100.2, pytest.approx(0.8))
    # the liquidity it swept (we do not remove it from the recorded book) must not fill it again
    assert fills(v.on_market(DepthUpdate(3, 3, (), ((100.2, 0.7),)))) == []


def test_an_ioc_remainder_is_cancelled() -> None:
    v = venue()
    v.on_market(bbo(1, 100.0, 5.0, 100.2, 0.4))
    v.submit([PlaceOrder("i1", BUY, 100.2, 1.0, tif="IOC")], 1)
    events = v.on_market(bbo(2, 100.0, 5.0, 100.2, 0.4))
    assert [type(e) for e in events] == [OrderAck, Fill, OrderAck]
    assert events[-1].status == "cancelled" and events[-1].size == pytest.approx(0.6)
    assert v.open_orders() == []


def test_self_trade_prevention_rejects_an_order_crossing_our_own_quote() -> None:
    v = venue()
    v.on_market(bbo(1, 100.0, 5.0, 100.4, 5.0))
    v.submit([PlaceOrder("a1", SELL, 100.2, 1.0)], 1)
    v.on_market(bbo(2, 100.0, 5.0, 100.4, 5.0))
    v.submit([PlaceOrder("b1", BUY, 100.2, 1.0)], 2)
    events = v.on_market(bbo(3, 100.0, 5.0, 100.4, 5.0))
    assert [(type(e), e.reason) for e in events] == [(OrderReject, "self_trade_prevention")]
    assert [o.client_order_id for o in v.open_orders()] == ["a1"]


# --- modify and cancel --------------------------------------------------------------------------


def test_a_size_decrease_keeps_queue_priority() -> None:
    v = venue()
    resting_bid(v, size=2.0)
    v.on_market(trade(3, 100.0, 4.0, SELL))
    v.on_market(bbo(4, 100.0, 6.0, 100.2, 5.0))  # 4 traded, 5 joined behind
    v.submit([ModifyOrder("b1", 100.0, 1.0)], 4)
    events = v.on_market(bbo(5, 100.0, 6.0, 100.2, 5.0))
    assert [(type(e), e.status, e.size) for e in events] == [(OrderAck, "modified", 1.0)]
    assert view(v, "b1").queue_ahead == pytest.approx(1.0)
    assert view(v, "b1").remaining == 1.0


def test_a_size_increase_or_price_change_goes_to_the_back() -> None:
    v = venue()
    v.on_market(DepthSnapshot(1, 1, ((100.0, 5.0), (99.9, 8.0)), ((100.2, 5.0),)))
    v.submit([PlaceOrder("b1", BUY, 100.0, 1.0)], 1)
    v.on_market(trade(2, 100.0, 4.0, SELL))
    v.on_market(DepthUpdate(3, 3, ((100.0, 6.0),), ()))
    assert view(v, "b1").queue_ahead == pytest.approx(1.0)
    v.submit([ModifyOrder("b1", 100.0, 2.0)], 3)
    v.on_market(DepthUpdate(4, 4, (), ()))
    assert view(v, "b1").queue_ahead == 6.0  # bigger size: behind everyone now at the level
    v.submit([ModifyOrder("b1", 99.9, 2.0)], 4)
    v.on_market(DepthUpdate(5, 5, (), ()))
    o = view(v, "b1")
    assert (o.price, o.queue_ahead) == (99.9, 8.0)


def test_a_modify_that_would_cross_is_rejected_and_the_order_stays() -> None:
    v = venue()
    resting_bid(v)
    v.submit([ModifyOrder("b1", 100.3, 1.0)], 2)
    events = v.on_market(bbo(3, 100.0, 5.0, 100.2, 5.0))
    assert [(type(e), e.reason) for e in events] == [(OrderReject, "modify_would_cross")]
    assert view(v, "b1").price == 100.0


def test_a_cancel_delayed_by_latency_still_gets_filled_first() -> None:
    def run(entry_latency_ns: int) -> tuple[list[Fill], list]:
        v = venue(entry_latency_ns=entry_latency_ns)
        v.on_market(bbo(0, 99.9, 5.0, 100.2, 5.0))
        v.submit([PlaceOrder("b1", BUY, 100.0, 1.0)], 0)  # improves the bid: nothing ahead
        events = v.on_market(bbo(60, 99.9, 5.0, 100.2, 5.0))
        v.submit([CancelOrder("b1")], 100)
        events += v.on_market(trade(120, 99.9, 3.0, SELL))  # seller sweeps through 100.0
        events += v.advance(1_000)
        return fills(events), events

    got_fast, _ = run(0)
    assert got_fast == []
    got_slow, events = run(50)
    assert [(f.price, f.size) for f in got_slow] == [(100.0, 1.0)]
    assert isinstance(events[-1], OrderReject) and events[-1].reason == "order_not_open"


def test_response_latency_delays_visibility_of_acks_and_fills() -> None:
    v = venue(entry_latency_ns=10, response_latency_ns=30)
    v.on_market(bbo(0, 99.9, 5.0, 100.2, 5.0))
    v.submit([PlaceOrder("b1", BUY, 100.0, 1.0)], 0)
    assert v.on_market(bbo(10, 99.9, 5.0, 100.2, 5.0)) == []  # arrived at 10, visible at 40
    events = v.on_market(trade(20, 99.9, 3.0, SELL))
    assert events == []
    events = v.advance(45)
    assert [type(e) for e in events] == [OrderAck]
    assert events[0].ts_exch_ns == 10 and events[0].ts_local_ns == 40
    events = v.advance(50)
    assert [(type(e), e.ts_exch_ns, e.ts_local_ns) for e in events] == [(Fill, 20, 50)]


def test_actions_reach_the_engine_in_the_order_they_were_sent_even_with_random_latency() -> None:
    lat = EmpiricalLatency((10, 500))
    v = PaperVenue(PaperVenueConfig(0.1, 0.01, entry_latency_ns=lat), seed=3)
    v.on_market(bbo(0, 99.9, 5.0, 100.2, 5.0))
    for i in range(20):
        v.submit([PlaceOrder(f"o{i}", BUY, 99.0, 1.0), CancelOrder(f"o{i}")], i)
    events = v.advance(10_000)
    assert not any(isinstance(e, OrderReject) for e in events)  # no cancel overtook its place
    assert [e.status for e in events if e.client_order_id == "o7"] == ["open", "cancelled"]


def test_cancel_all_action_and_emergency_cancel_all_now() -> None:
    v = venue(entry_latency_ns=100)
    v.on_market(bbo(0, 99.9, 5.0, 100.2, 5.0))
    v.submit([PlaceOrder("b1", BUY, 99.8, 1.0), PlaceOrder("a1", SELL, 100.4, 1.0)], 0)
    v.on_market(bbo(200, 99.9, 5.0, 100.2, 5.0))
    assert len(v.open_orders()) == 2
    v.submit([CancelAll("test")], 200)
    events = v.on_market(bbo(400, 99.9, 5.0, 100.2, 5.0))
    assert sorted(e.client_order_id for e in events if e.status == "cancelled") == ["a1", "b1"]
    v.submit([PlaceOrder("b2", BUY, 99.8, 1.0)], 400)
    v.submit([PlaceOrder("b3", BUY, 99.7, 1.0)], 400)
    v.on_market(bbo(600, 99.9, 5.0, 100.2, 5.0))  # b2, b3 live
    v.submit([PlaceOrder("b4", BUY, 99.6, 1.0)], 600)  # still in flight
    events = v.cancel_all_now(610)
    assert sorted(e.client_order_id for e in events) == ["b2", "b3", "b4"]
    assert all(isinstance(e, OrderAck) and e.status == "cancelled" and e.ts_local_ns == 610 for e in events)
    assert v.open_orders() == []
    assert v.on_market(bbo(900, 99.9, 5.0, 100.2, 5.0)) == []  # b4 never arrives


# --- local validation and rounding ------------------------------------------------------------


def test_it_rounds_to_tick_and_lot_and_rejects_sizes_below_one_lot_locally() -> None:
    v = venue(tick_size=0.5, lot_size=0.1)
    v.on_market(bbo(0, 99.0, 5.0, 101.0, 5.0))
    local = v.submit(
        [
            PlaceOrder("b", BUY, 99.9, 1.26),
            PlaceOrder("a", SELL, 100.1, 0.33),
            PlaceOrder("tiny", BUY, 99.0, 0.05),
            PlaceOrder("nan", BUY, float("nan"), 1.0),
        ],
        0,
    )
    assert [(e.client_order_id, e.reason) for e in local] == [("tiny", "size_below_lot"), ("nan", "bad_price")]
    events = v.on_market(bbo(1, 99.0, 5.0, 101.0, 5.0))
    acks = {e.client_order_id: (e.price, e.size) for e in events}
    assert acks == {"b": (99.5, 1.2), "a": (100.5, 0.3)}


def test_it_rejects_duplicate_ids_and_cancels_of_unknown_orders_locally() -> None:
    v = venue()
    v.submit([PlaceOrder("x", BUY, 99.0, 1.0)], 0)
    local = v.submit([PlaceOrder("x", BUY, 99.0, 1.0), CancelOrder("nope"), ModifyOrder("nope", 1.0, 1.0)], 0)
    assert [e.reason for e in local] == ["duplicate_client_order_id", "unknown_order", "unknown_order"]


def test_config_validate_names_the_bad_parameter() -> None:
    for kw, name in [
        ({"tick_size": 0.0, "lot_size": 1.0}, "tick_size"),
        ({"tick_size": 0.1, "lot_size": float("nan")}, "lot_size"),
        ({"tick_size": 0.1, "lot_size": 1.0, "queue_model": "fifo"}, "queue_model"),
        ({"tick_size": 0.1, "lot_size": 1.0, "entry_latency_ns": -5}, "entry_latency_ns"),
        ({"tick_size": 0.1, "lot_size": 1.0, "taker_fee": float("inf")}, "taker_fee"),
        ({"tick_size": 0.1, "lot_size": 1.0, "venue_clock": "wall"}, "venue_clock"),
        ({"tick_size": 0.1, "lot_size": 1.0, "partial_fills": "no"}, "partial_fills"),
        ({"tick_size": 0.1, "lot_size": 1.0, "partial_fills": 0}, "partial_fills"),
    ]:
        with pytest.raises(ValueError, match=name):
            PaperVenueConfig(**kw).validate()


# --- tracker over the venue, determinism --------------------------------------------------------


def _scenario(seed: int, queue_model: str = "probabilistic") -> tuple[list, OrderTracker]:
    import numpy as np

    rng = np.random.default_rng(seed)
    lat = EmpiricalLatency.from_array(rng.integers(1_000, 40_000, size=50))
    v = PaperVenue(
        PaperVenueConfig(0.1, 0.01, entry_latency_ns=lat, response_latency_ns=lat, queue_model=queue_model), seed=seed
    )
    tracker = OrderTracker()
    out = []
    mid = 100.0
    n = 0
    for step in range(400):
        t = step * 10_000
        mid = round(mid + 0.1 * int(rng.integers(-1, 2)), 1)
        bid, ask = round(mid - 0.1, 1), round(mid + 0.1, 1)
        ev = bbo(t, bid, float(rng.integers(1, 10)), ask, float(rng.integers(1, 10)))
        evs = v.on_market(ev)
        if rng.random() < 0.5:
            side = SELL if rng.random() < 0.5 else BUY
            px = bid if side is SELL else ask
            evs += v.on_market(Trade(t + 1, t + 1, px, float(rng.integers(1, 6)), side))
        tracker.on_events(evs)
        out.extend(evs)
        if step % 5 == 0:
            actions = [CancelAll()] if tracker.open_orders() else []
            n += 1
            actions += [PlaceOrder(f"b{n}", BUY, bid, 1.0), PlaceOrder(f"a{n}", SELL, ask, 1.0)]
            tracker.on_actions(actions)
            out.extend(v.submit(actions, t + 2))
    tracker.on_events(v.advance(10**9))
    return out, tracker


def test_same_inputs_and_seed_give_identical_outputs() -> None:
    a, ta = _scenario(11)
    b, tb = _scenario(11)
    assert a == b
    assert (ta.position, ta.cash) == (tb.position, tb.cash)
    assert len(fills(a)) > 0


def test_tracker_position_matches_the_venue_fills_even_when_fills_are_delivered_twice() -> None:
    events, _ = _scenario(5)
    tracker = OrderTracker()
    for e in events:
        tracker.on_event(e)
        if isinstance(e, Fill):
            tracker.on_event(e)  # duplicated delivery
    expected = sum(int(f.side) * f.size for f in fills(events))
    assert tracker.position == pytest.approx(expected)
    assert tracker.stats.duplicate_fills == len(fills(events))


def test_risk_averse_fills_no_more_than_probabilistic_on_the_same_tape() -> None:
    ra, _ = _scenario(21, "risk_averse")
    pr, _ = _scenario(21, "probabilistic")
    vol = lambda ev: sum(f.size for f in fills(ev))  # noqa: E731
    assert vol(ra) <= vol(pr) + 1e-9


# --- real recorded data ---------------------------------------------------------------------------

USDM = Path(__file__).resolve().parents[3] / ".." / "shared" / "data" / "hftbacktest-binance-usdm-btcusdt-20240808"


def _real_events(seconds: float) -> list:
    """The first ``seconds`` of Binance USD-M BTCUSDT trades and bookTicker, merged in local-time order."""
    derived = USDM / "derived"
    if not (derived / "trades.csv.gz").exists():
        pytest.skip(f"recorded data not found under {derived}")
    events: list[tuple[int, int, object]] = []
    t0 = None
    with gzip.open(derived / "trades.csv.gz", "rt") as fh:
        for r in csv.DictReader(fh):
            t = int(r["local_ts_ns"])
            t0 = t if t0 is None else t0
            if t - t0 > seconds * 1e9:
                break
            side = BUY if r["aggressor_side"] == "buy" else SELL
            events.append((t, 1, Trade(int(r["trade_ts_ms"]) * 10**6, t, float(r["price"]), float(r["qty"]), side)))
    t_end = events[-1][0]
    with gzip.open(derived / "bbo.csv.gz", "rt") as fh:
        for r in csv.DictReader(fh):
            t = int(r["local_ts_ns"])
            if t > t_end:
                break
            ev = BestBidAsk(
                int(r["tx_ts_ms"]) * 10**6,
                t,
                float(r["bid_px"]),
                float(r["bid_qty"]),
                float(r["ask_px"]),
                float(r["ask_qty"]),
            )
            events.append((t, 0, ev))
    events.sort(key=lambda x: (x[0], x[1]))
    return [e for _, _, e in events]


def _join_the_touch(events: list, queue_model: str) -> tuple[list[Fill], OrderTracker, int]:
    """Keep one post-only 0.01 BTC order at each best price; cancel it once 2 ticks away. 5 ms latencies."""
    tick = 0.1
    v = PaperVenue(
        PaperVenueConfig(
            tick, 0.001, entry_latency_ns=5_000_000, response_latency_ns=5_000_000, queue_model=queue_model
        ),
        seed=1,
    )
    tracker = OrderTracker()
    got: list[Fill] = []
    n = 0
    for ev in events:
        out = v.on_market(ev)
        tracker.on_events(out)
        got += fills(out)
        if not isinstance(ev, BestBidAsk):
            continue
        actions = []
        for side, best in ((BUY, ev.bid_px), (SELL, ev.ask_px)):
            live = tracker.open_orders_on(side)
            if not live:
                n += 1
                actions.append(PlaceOrder(f"{side.label}{n}", side, best, 0.01, tif="POST_ONLY"))
            for o in live:
                if o.status.value in ("open", "partially_filled") and abs(o.price - best) > 2 * tick + 1e-9:
                    actions.append(CancelOrder(o.client_order_id))
        tracker.on_actions(actions)
        tracker.on_events(v.submit(actions, ev.ts_local_ns))
    return got, tracker, n


@pytest.mark.parametrize("queue_model", ["risk_averse", "probabilistic"])
def test_on_recorded_binance_data_every_fill_is_explained_by_the_market(queue_model: str) -> None:
    events = _real_events(60.0)
    by_ts: dict[int, list] = {}
    for e in events:
        by_ts.setdefault(e.ts_local_ns, []).append(e)
    got, tracker, n_orders = _join_the_touch(events, queue_model)
    assert n_orders > 50 and len(got) > 20
    kinds = {"at_price": 0, "through": 0, "cross": 0}
    for f in got:
        assert f.liquidity == "maker"  # post-only orders never take
        trigger = by_ts[f.ts_exch_ns]  # local venue clock: a fill happens at its trigger's local time
        kind = None
        for e in trigger:
            if isinstance(e, Trade) and e.aggressor is not f.side:
                if e.price == f.price:
                    kind = "at_price"
                elif (e.price < f.price) if f.side is BUY else (e.price > f.price):
                    kind = "through"
            elif isinstance(e, BestBidAsk) and (e.ask_px <= f.price if f.side is BUY else e.bid_px >= f.price):
                kind = "cross"
        assert kind is not None, f"fill {f} has no market event at or through its price"
        kinds[kind] += 1
        if kind != "cross":
            traded = sum(e.size for e in trigger if isinstance(e, Trade))
            ours = sum(x.size for x in got if x.ts_exch_ns == f.ts_exch_ns)
            assert ours <= traded + 1e-9
    assert kinds["at_price"] > 0 and kinds["through"] > 0
    assert tracker.position == pytest.approx(sum(int(f.side) * f.size for f in got))


@pytest.mark.parametrize(("clock", "filled"), [("local", True), ("exchange", False)])
def test_the_exchange_clock_orders_our_action_after_market_events_that_happened_before_it(
    clock: str, filled: bool
) -> None:
    # feed latency 30 ns: we see at local 130 what happened at the exchange at 100
    v = venue(venue_clock=clock)
    v.on_market(BestBidAsk(100, 130, 99.9, 5.0, 100.2, 5.0))
    v.submit([PlaceOrder("b1", BUY, 100.0, 1.0)], 130)  # reaches the engine at 130
    # a seller swept through 100.0 at exchange time 120 (seen locally at 150): before our order arrived
    events = v.on_market(Trade(120, 150, 99.9, 3.0, SELL))
    events += v.advance(1_000)
    assert bool(fills(events)) is filled
