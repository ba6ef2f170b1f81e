"""The compiled venue's Order records (``_paper.pyx``: ``_new_order``, ``_transition``, ``_remaining``, which do the
reference ``orders.Order``'s stores by slot offset) against the reference ``PyPaperVenue``.

The random streams of ``test_paper_order_path`` run with every field of every order compared (status, resume status,
fills, the remaining-size memo), and again with the Order class's methods patched or its transition table replaced:
the compiled venue must then call the patched code (or raise the reference's error) exactly as the reference does.
"""

from __future__ import annotations

import dataclasses
from collections import Counter

import pytest

from apps.engine.execution import orders, paper
from apps.engine.execution.orders import Order, OrderStatus

from . import test_paper_order_path as order_path

pytestmark = pytest.mark.skipif(not paper.PAPER_COMPILED, reason="the compiled venue is not selected")

_FIELDS = [f.name for f in dataclasses.fields(Order)]


def _records(v) -> list:
    # every field of every open order, by slot (a set's contents, floats as their repr: -0.0 and 0.0 differ)
    out = []
    for cid, r in sorted(v._live.items()):
        o = r.order
        assert type(o) is Order
        out.append(
            (cid, [(name, type(getattr(o, name)), repr(getattr(o, name))) for name in _FIELDS if name != "fill_ids"])
        )
        out.append((cid, sorted(o.fill_ids)))
    return out


@pytest.fixture
def full_state(monkeypatch):
    original = order_path._state
    monkeypatch.setattr(order_path, "_state", lambda v: (original(v), _records(v)))


@pytest.mark.parametrize("seed", range(4))
def test_every_field_of_every_order_matches_the_reference(full_state, seed):
    assert order_path._run(400 + seed, entry_latency_ns=3_000_000, response_latency_ns=2_000_000) > 100


def test_a_new_order_has_its_own_fill_ids_and_the_reference_defaults(full_state):
    v = paper.PaperVenue(paper.PaperVenueConfig(tick_size=0.1, lot_size=0.01))
    order_path._call(v.on_market, order_path.BestBidAsk(1, 1, 100.0, 1.0, 100.1, 1.0))
    v.submit(
        [
            order_path.PlaceOrder("a", order_path.Side.BUY, 99.0, 0.01),
            order_path.PlaceOrder("b", order_path.Side.SELL, 101.0, 0.01),
        ],
        2,
    )
    v.advance(10**9)
    a, b = v._live["a"].order, v._live["b"].order
    assert a.fill_ids is not b.fill_ids
    want = Order("a", order_path.Side.BUY, 99.0, 0.01)
    want.transition(OrderStatus.OPEN)
    assert [getattr(a, n) for n in _FIELDS] == [getattr(want, n) for n in _FIELDS]
    assert a.remaining == 0.01 and a._remaining_of == (0.01, 0.0)


def _spied(monkeypatch, name):
    calls = []
    original = Order.__dict__[name]

    def spy(self, *args, **kwargs):
        calls.append((name, args if name == "__init__" else self.client_order_id, args, tuple(sorted(kwargs.items()))))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Order, name, spy)
    return calls


@pytest.mark.parametrize("name", ["transition", "__init__"])
def test_a_patched_order_method_is_called_by_both_venues(monkeypatch, full_state, name):
    calls = _spied(monkeypatch, name)
    order_path._run(500, entry_latency_ns=2_000_000, response_latency_ns=1_000_000)
    assert calls
    # the two venues run in lockstep on the same actions: every call was made twice, once by each
    assert all(n % 2 == 0 for n in Counter(calls).values())


def test_a_patched_remaining_is_read_by_both_venues(monkeypatch, full_state):
    reads = []
    original = Order.__dict__["remaining"]

    def remaining(self):
        reads.append(self.client_order_id)
        return original.fget(self)

    monkeypatch.setattr(Order, "remaining", property(remaining))
    order_path._run(501, entry_latency_ns=2_000_000, response_latency_ns=1_000_000)
    assert reads
    assert all(n % 2 == 0 for n in Counter(reads).values())


def test_a_replaced_transition_table_is_obeyed_alike(monkeypatch, full_state):
    table = dict(orders._ALLOWED)
    table[OrderStatus.OPEN] = table[OrderStatus.OPEN] - {OrderStatus.CANCELLED}  # a cancel is now illegal
    monkeypatch.setattr(orders, "_ALLOWED", table)
    order_path._run(502, entry_latency_ns=2_000_000, response_latency_ns=1_000_000)  # both raise alike (_call)


def test_a_replaced_can_transition_is_called_alike(monkeypatch, full_state):
    asked = []
    original = orders.can_transition

    def can(old, new):
        asked.append((old, new))
        return original(old, new)

    monkeypatch.setattr(orders, "can_transition", can)
    order_path._run(503, entry_latency_ns=2_000_000, response_latency_ns=1_000_000)
    assert asked
    assert all(n % 2 == 0 for n in Counter(asked).values())


def test_an_order_status_that_is_not_a_member_takes_the_reference(full_state):
    """A resting order whose status was set to its plain string value (equal to the member, not the member): the
    compiled cancel must go through ``Order.transition`` as the reference does, and both end alike."""
    cfg = paper.PaperVenueConfig(tick_size=0.1, lot_size=0.01, entry_latency_ns=0, response_latency_ns=0)
    venues = [paper.PyPaperVenue(cfg), paper.PaperVenue(cfg)]
    out = []
    for v in venues:
        v.on_market(order_path.BestBidAsk(1, 1, 100.0, 1.0, 100.1, 1.0))
        v.submit([order_path.PlaceOrder("a", order_path.Side.BUY, 99.0, 0.01)], 2)
        v.advance(3)
        v._live["a"].order.status = "open"
        got = order_path._call(v.submit, [order_path.CancelOrder("a")], 4)
        order_path._call(v.advance, 5)
        out.append((got, v._seq, sorted(v._live)))
    assert out[0] == out[1]


@pytest.mark.parametrize("status", [OrderStatus.FILLED, OrderStatus.PENDING_CANCEL, OrderStatus.PENDING_MODIFY])
def test_a_cancel_from_an_odd_status_ends_alike(full_state, status):
    """A resting order put by hand in a status the table does not let go to cancelled (filled: the reference raises
    IllegalTransitionError) or in a pending one (its resume status is kept or cleared as the reference does)."""
    cfg = paper.PaperVenueConfig(tick_size=0.1, lot_size=0.01, entry_latency_ns=0, response_latency_ns=0)
    out = []
    for v in (paper.PyPaperVenue(cfg), paper.PaperVenue(cfg)):
        v.on_market(order_path.BestBidAsk(1, 1, 100.0, 1.0, 100.1, 1.0))
        v.submit([order_path.PlaceOrder("a", order_path.Side.BUY, 99.0, 0.01)], 2)
        v.advance(3)
        order = v._live["a"].order
        order.status = status
        order.resume_status = OrderStatus.PARTIALLY_FILLED
        got = order_path._call(v.submit, [order_path.CancelOrder("a")], 4)
        got_adv = order_path._call(v.advance, 5)
        out.append((got, got_adv, order.status, order.resume_status, v._seq, sorted(v._live)))
    assert out[0] == out[1]


def test_an_entry_of_the_transition_table_changed_in_place_is_obeyed_alike(monkeypatch, full_state):
    monkeypatch.setitem(orders._ALLOWED, OrderStatus.OPEN, orders._ALLOWED[OrderStatus.OPEN] - {OrderStatus.CANCELLED})
    order_path._run(504, entry_latency_ns=2_000_000, response_latency_ns=1_000_000)


@pytest.mark.parametrize("size", [0.01, 0.0333, 0.015, 0.07, 0.3, 123456.789, 2])
def test_a_cancelled_orders_remaining_and_its_memo_match_the_reference(size):
    """A cancel reads the order's remaining size for the first time (no memo yet): the value, the memo and the ack."""
    cfg = paper.PaperVenueConfig(tick_size=0.1, lot_size=1e-15, entry_latency_ns=0, response_latency_ns=0)
    out = []
    for v in (paper.PyPaperVenue(cfg), paper.PaperVenue(cfg)):
        v.on_market(order_path.BestBidAsk(1, 1, 100.0, 1.0, 100.1, 1.0))
        v.submit([order_path.PlaceOrder("a", order_path.Side.BUY, 99.0, size)], 2)
        v.advance(3)
        order = v._live["a"].order
        if size == 0.07:
            order.filled = 0.03  # 0.07 - 0.03 is 0.04000000000000001 before the rounding
        got = order_path._call(v.submit, [order_path.CancelOrder("a")], 4)
        events = order_path._call(v.advance, 5)
        fields = [(n, type(getattr(order, n)), repr(getattr(order, n))) for n in _FIELDS if n != "fill_ids"]
        out.append((got, repr(events), fields))
    assert out[0] == out[1]
