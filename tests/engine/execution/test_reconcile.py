"""The one order reconciler of the core and the baselines: keep, move, place, cancel, and the worst-case guard."""

from __future__ import annotations

import inspect
import itertools

from apps.engine.execution.orders import OrderTracker
from apps.engine.execution.reconcile import needs_requote, reconcile_side
from apps.engine.market.events import CancelOrder, Fill, OrderAck, PlaceOrder, Side

TICK = 0.1


def _ids():
    counter = itertools.count(1)
    return lambda: f"t-{next(counter)}"


def _open(tracker: OrderTracker, cid: str, side: Side, price: float, size: float) -> None:
    tracker.on_actions([PlaceOrder(cid, side, price, size, tif="POST_ONLY")])
    tracker.on_event(OrderAck(1, 1, cid, "open", price, size))


def _run(tracker: OrderTracker, targets, *, max_inventory: float = 1.0, requote_ticks: int = 3, side=Side.BUY):
    return reconcile_side(
        tracker,
        side,
        targets,
        tick_size=TICK,
        requote_ticks=requote_ticks,
        max_inventory=max_inventory,
        modify_orders=False,
        new_order_id=_ids(),
    )


def test_it_keeps_an_order_within_the_requote_threshold_and_replaces_one_beyond_it():
    t = OrderTracker()
    _open(t, "a", Side.BUY, 100.0, 0.1)
    assert _run(t, [(100.2, 0.1)]).actions == []
    assert _run(t, [(100.3, 0.1)]).actions == [PlaceOrder("t-1", Side.BUY, 100.3, 0.1, "POST_ONLY"), CancelOrder("a")]


def test_it_leaves_a_side_alone_while_an_order_awaits_its_ack():
    t = OrderTracker()
    t.on_actions([PlaceOrder("a", Side.BUY, 100.0, 0.1, tif="POST_ONLY")])
    assert _run(t, [(99.0, 0.1)]).actions == []


def test_the_guard_counts_orders_being_cancelled_as_if_they_could_still_fill():
    t = OrderTracker()
    _open(t, "a", Side.BUY, 100.0, 0.1)
    t.on_event(Fill(2, 2, "a", "f1", Side.BUY, 100.0, 0.05, remaining=0.05))  # q = 0.05, 0.05 still resting
    t.on_actions([CancelOrder("a")])  # in flight: "a" may still fill its last 0.05
    r = _run(t, [(99.0, 0.1)], max_inventory=0.15)
    assert r.actions == [] and r.guard_skips == 1  # 0.05 + 0.05 + 0.1 > 0.15
    assert _run(t, [(99.0, 0.05)], max_inventory=0.15).actions == [PlaceOrder("t-1", Side.BUY, 99.0, 0.05, "POST_ONLY")]


def test_the_core_and_the_baselines_reconcile_with_it():
    from apps.engine import core
    from apps.engine.simulation import baselines

    for module in (core, baselines):
        assert "reconcile_side(" in inspect.getsource(module)


def test_requote_threshold():
    assert not needs_requote(100.0, 100.05, 0.1, 1)
    assert needs_requote(100.0, 100.1, 0.1, 1)
    assert not needs_requote(100.0, 100.1, 0.1, 2)
    assert needs_requote(100.0, None, 0.1, 1)


def test_a_move_of_whole_ticks_counts_whole_despite_float_noise():
    # 100.0 − 99.7 is 0.29999999999999716 in floats, less than 3 × 0.1 = 0.30000000000000004
    assert needs_requote(100.0, 99.7, 0.1, 3)
    assert needs_requote(100.0, 100.3, 0.1, 3)
    assert not needs_requote(100.0, 99.8, 0.1, 3)
    # the slack is a named parameter, in ticks
    assert not needs_requote(100.0, 99.7, 0.1, 3, eps_ticks=0.0)
