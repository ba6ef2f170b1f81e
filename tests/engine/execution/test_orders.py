"""Order lifecycle, rounding and the strategy-side OrderTracker."""

from __future__ import annotations

import pytest

from apps.engine.execution.orders import (
    IllegalTransitionError,
    Order,
    OrderStatus,
    OrderTracker,
    TimeInForce,
    price_to_ticks,
    round_price,
    round_size,
)
from apps.engine.market.events import CancelAll, CancelOrder, Fill, ModifyOrder, OrderAck, OrderReject, PlaceOrder, Side

S = OrderStatus


def _order(**kw) -> Order:
    base = {"client_order_id": "o1", "side": Side.BUY, "price": 100.0, "size": 2.0}
    base.update(kw)
    return Order(**base)


# --- state machine ------------------------------------------------------------------------------


def test_it_walks_the_normal_lifecycle_to_filled() -> None:
    o = _order()
    o.transition(S.OPEN)
    assert o.apply_fill("f1", 0.5)
    assert o.status is S.PARTIALLY_FILLED and o.remaining == pytest.approx(1.5)
    assert o.apply_fill("f2", 1.5)
    assert o.status is S.FILLED and o.remaining == 0.0


@pytest.mark.parametrize(
    ("start", "target"),
    [
        (S.FILLED, S.OPEN),
        (S.CANCELLED, S.PENDING_CANCEL),
        (S.REJECTED, S.OPEN),
        (S.PENDING_NEW, S.PENDING_MODIFY),
        (S.OPEN, S.PENDING_NEW),
        (S.OPEN, S.REJECTED),
    ],
)
def test_it_raises_on_illegal_transitions(start: OrderStatus, target: OrderStatus) -> None:
    o = _order(status=start)
    with pytest.raises(IllegalTransitionError):
        o.transition(target)


def test_it_resumes_the_previous_status_when_a_cancel_is_rejected() -> None:
    o = _order()
    o.transition(S.OPEN)
    o.apply_fill("f1", 0.5)
    o.transition(S.PENDING_CANCEL)
    o.resume()
    assert o.status is S.PARTIALLY_FILLED


def test_it_keeps_a_pending_cancel_through_a_partial_fill_and_resumes_partially_filled() -> None:
    o = _order()
    o.transition(S.OPEN)
    o.transition(S.PENDING_CANCEL)
    o.apply_fill("f1", 0.5)
    assert o.status is S.PENDING_CANCEL
    o.resume()
    assert o.status is S.PARTIALLY_FILLED


def test_it_ignores_a_fill_id_it_already_applied() -> None:
    o = _order()
    o.transition(S.OPEN)
    assert o.apply_fill("f1", 0.5)
    assert not o.apply_fill("f1", 0.5)
    assert o.filled == pytest.approx(0.5)


def test_it_parses_time_in_force_and_rejects_unknown_ones() -> None:
    assert TimeInForce.parse("post_only") is TimeInForce.POST_ONLY
    with pytest.raises(ValueError, match="tif"):
        TimeInForce.parse("FOK")


# --- rounding -----------------------------------------------------------------------------------


def test_it_rounds_bids_down_and_asks_up_to_the_tick() -> None:
    assert round_price(100.07, 0.05, Side.BUY) == 100.05
    assert round_price(100.07, 0.05, Side.SELL) == 100.10
    assert round_price(100.03, 0.05, Side.SELL) == 100.05


def test_it_leaves_on_grid_prices_alone_despite_float_noise() -> None:
    # 100.07 / 0.01 is 10006.999999999998 in floating point
    assert price_to_ticks(100.07, 0.01, Side.BUY) == 10007
    assert price_to_ticks(100.07, 0.01, Side.SELL) == 10007
    assert round_price(0.3, 0.1, Side.BUY) == 0.3


def test_it_rounds_sizes_down_to_the_lot() -> None:
    assert round_size(1.2345, 0.01) == 1.23
    assert round_size(0.3, 0.1) == 0.3  # 0.3/0.1 = 2.9999999999999996
    assert round_size(0.004, 0.01) == 0.0


# --- tracker ------------------------------------------------------------------------------------


def _fill(
    fid: str,
    cid: str = "o1",
    side: Side = Side.BUY,
    px: float = 100.0,
    sz: float = 1.0,
    fee: float = 0.0,
    remaining: float = 0.0,
) -> Fill:
    return Fill(10, 10, cid, fid, side, px, sz, fee, "maker", remaining)


def test_tracker_follows_ack_and_fills_into_position_and_cash() -> None:
    tr = OrderTracker()
    tr.on_action(PlaceOrder("o1", Side.BUY, 100.0, 2.0))
    assert tr.get("o1").status is S.PENDING_NEW
    tr.on_event(OrderAck(1, 1, "o1", "open", 100.0, 2.0))
    assert tr.get("o1").status is S.OPEN
    tr.on_event(_fill("f1", sz=0.5, fee=0.01, remaining=1.5))
    assert tr.position == pytest.approx(0.5)
    assert tr.cash == pytest.approx(-50.0 - 0.01)
    assert tr.fees_paid == pytest.approx(0.01)
    assert tr.get("o1").status is S.PARTIALLY_FILLED
    assert [o.client_order_id for o in tr.open_orders()] == ["o1"]


def test_tracker_ignores_a_duplicated_fill() -> None:
    tr = OrderTracker()
    tr.on_action(PlaceOrder("o1", Side.SELL, 100.0, 2.0))
    tr.on_event(OrderAck(1, 1, "o1", "open", 100.0, 2.0))
    f = _fill("f1", side=Side.SELL, sz=1.0, remaining=1.0)
    assert tr.on_event(f)
    assert not tr.on_event(f)
    assert tr.position == pytest.approx(-1.0)
    assert tr.cash == pytest.approx(100.0)
    assert tr.stats.duplicate_fills == 1


def test_tracker_counts_a_fill_that_races_a_cancel() -> None:
    tr = OrderTracker()
    tr.on_action(PlaceOrder("o1", Side.BUY, 100.0, 1.0))
    tr.on_event(OrderAck(1, 1, "o1", "open", 100.0, 1.0))
    tr.on_action(CancelOrder("o1"))
    assert tr.get("o1").status is S.PENDING_CANCEL
    tr.on_event(_fill("f1", sz=1.0, remaining=0.0))
    assert tr.get("o1").status is S.FILLED
    tr.on_event(OrderReject(3, 3, "o1", "order_not_open"))  # the cancel came too late
    assert tr.get("o1").status is S.FILLED
    assert tr.position == pytest.approx(1.0)
    assert tr.open_orders() == []


def test_tracker_marks_a_rejected_place_as_rejected_and_a_rejected_cancel_as_resumed() -> None:
    tr = OrderTracker()
    tr.on_actions([PlaceOrder("a", Side.BUY, 100.0, 1.0), PlaceOrder("b", Side.BUY, 99.0, 1.0)])
    tr.on_event(OrderReject(1, 1, "a", "post_only_would_cross"))
    assert tr.get("a").status is S.REJECTED
    tr.on_event(OrderAck(1, 1, "b", "open", 99.0, 1.0))
    tr.on_action(CancelOrder("b"))
    tr.on_event(OrderReject(2, 2, "b", "rate_limited"))
    assert tr.get("b").status is S.OPEN


def test_tracker_applies_a_modify_ack_with_new_price_and_remaining_size() -> None:
    tr = OrderTracker()
    tr.on_action(PlaceOrder("o1", Side.BUY, 100.0, 2.0))
    tr.on_event(OrderAck(1, 1, "o1", "open", 100.0, 2.0))
    tr.on_event(_fill("f1", sz=0.5, remaining=1.5))
    tr.on_action(ModifyOrder("o1", 99.5, 1.0))
    assert tr.get("o1").status is S.PENDING_MODIFY
    tr.on_event(OrderAck(2, 2, "o1", "modified", 99.5, 1.0))
    o = tr.get("o1")
    assert (o.price, o.remaining, o.status) == (99.5, pytest.approx(1.0), S.PARTIALLY_FILLED)


def test_tracker_cancel_all_moves_every_live_order_to_pending_cancel() -> None:
    tr = OrderTracker()
    tr.on_actions([PlaceOrder("a", Side.BUY, 99.0, 1.0), PlaceOrder("b", Side.SELL, 101.0, 1.0)])
    tr.on_event(OrderAck(1, 1, "a", "open", 99.0, 1.0))
    tr.on_action(CancelAll("kill"))
    assert {o.status for o in tr.open_orders()} == {S.PENDING_CANCEL}
    tr.on_event(OrderAck(2, 2, "a", "cancelled"))
    tr.on_event(OrderAck(2, 2, "b", "cancelled"))  # b was cancelled before its ack arrived
    assert tr.open_orders() == []


def test_tracker_refuses_to_reuse_a_client_order_id() -> None:
    tr = OrderTracker()
    tr.on_action(PlaceOrder("o1", Side.BUY, 100.0, 1.0))
    with pytest.raises(ValueError, match="o1"):
        tr.on_action(PlaceOrder("o1", Side.BUY, 100.0, 1.0))


def test_tracker_forgets_the_oldest_finished_orders_but_never_a_live_one() -> None:
    tr = OrderTracker(retain_terminal=3)
    tr.on_action(PlaceOrder("keep", Side.SELL, 101.0, 1.0))
    tr.on_event(OrderAck(1, 1, "keep", "open", 101.0, 1.0))
    for i in range(5):
        cid = f"o{i}"
        tr.on_action(PlaceOrder(cid, Side.BUY, 100.0, 1.0))
        tr.on_event(OrderAck(1, 1, cid, "open", 100.0, 1.0))
        tr.on_event(OrderAck(2, 2, cid, "cancelled", 100.0, 1.0))
    assert [tr.get(f"o{i}") is None for i in range(5)] == [True, True, False, False, False]  # the last 3 kept
    assert tr.get("keep").status is S.OPEN  # live for all this time: never forgotten
    # a late fill for a forgotten order still moves the position, and is counted as unknown
    unknown = tr.stats.unknown_order_events
    assert tr.on_event(_fill("late", cid="o0", sz=1.0))
    assert tr.position == pytest.approx(1.0) and tr.stats.unknown_order_events == unknown + 1
    # the orders forgotten by forget_live_orders() go the same way
    gone = tr.forget_live_orders()
    assert [o.client_order_id for o in gone] == ["keep"] and tr.get("keep") is not None
    assert tr.get("o2") is None  # pushed out by "keep"
    with pytest.raises(ValueError, match="retain_terminal"):
        OrderTracker(retain_terminal=0)


def test_tracker_memory_is_bounded_over_many_orders() -> None:
    tr = OrderTracker(retain_terminal=100)
    for i in range(5000):
        cid = f"o{i}"
        tr.on_action(PlaceOrder(cid, Side.BUY, 100.0, 1.0))
        tr.on_event(OrderAck(1, 1, cid, "open", 100.0, 1.0))
        tr.on_event(OrderAck(2, 2, cid, "cancelled", 100.0, 1.0))
    assert len(tr._orders) == 100 and len(tr._finished) == 100


def test_remaining_follows_every_change_of_size_and_filled_bit_for_bit() -> None:
    """remaining keeps its last value while size and filled are unchanged; every change (a fill, a modify, a direct
    assignment, ±0, NaN) gives the formula's value, bit for bit."""
    import math
    import struct

    import numpy as np

    def direct(o: Order) -> float:
        return max(0.0, round(o.size - o.filled, 12))

    rng = np.random.default_rng(11)
    o = Order("c1", Side.BUY, 100.0, 0.5)
    specials = [0.0, -0.0, 1e-13, 0.1 + 0.2, 0.3, math.nan, 5e-13, 2.5e-12]
    for i in range(5_000):
        u = rng.random()
        if u < 0.3:
            o.filled = round(float(rng.integers(0, 60)) * 0.01, 12)
        elif u < 0.5:
            o.size = round(float(rng.integers(1, 60)) * 0.01, 10)
        elif u < 0.6:
            o.size, o.filled = float(rng.choice(specials)), float(rng.choice(specials))
        want = direct(o)
        for _ in range(2):  # the first read computes, the second is the kept value
            got = o.remaining
            assert (math.isnan(want) and math.isnan(got)) or struct.pack("<d", got) == struct.pack("<d", want), i
