"""The twenty-first stop's decision paths in the compiled core (``apps/engine/_core.pyx``) against the reference.

* The decision's ``InputPairs`` (its MarketState's ``extra_inputs``) is kept and written again by the next decision
  when nothing else holds it; a quoter that keeps the states it is handed keeps their inputs as they were.
* The compiled quoter is called at C level when the core module's ``quote`` is it; any other ``quote`` (here a
  wrapper that keeps states) is called as the reference calls it, with the same decisions.
* ``MarketEstimators.cached_depth_cost`` is twinned (the cached snapshot and curve read directly).
* An order's ``remaining`` computed in C when its memo does not hold (``max(0.0, round(size - filled, 12))`` and the
  two memo stores): the property's value, bits and memo, on sizes and fills at rounding edges, negative, NaN, inf,
  and for memos that hold, do not hold, or are not a pair.
"""

from __future__ import annotations

import math
import random
import struct

import pytest

from apps.engine import core as core_module
from apps.engine.core import CORE_COMPILED, PyStrategyCore, StrategyCore, StrategyParams
from apps.engine.execution.orders import Order
from apps.engine.market.events import BestBidAsk, Side
from tests.engine.test_core_equivalence import _decision, _step_both
from tests.engine.test_core_reads import usdm  # noqa: F401 - the fixture: the USD-M recording's first 26,000 events

pytestmark = pytest.mark.skipif(not CORE_COMPILED, reason="the compiled strategy core is not selected")


def _bits(x):
    return struct.pack("<d", x) if type(x) is float else x


def _step(i, ev, ref, fast):
    """Event ``i`` through both cores: the same actions and state; True (and the same decision) where one was made."""
    _step_both(ref, fast, ev, f"event {i}")
    if type(ev) is BestBidAsk and ref.last_decision is not None:
        assert _decision(fast) == _decision(ref), f"event {i}: the decision differs"
        return True
    return False


def _run_lockstep(stream, tick, lot, params):
    ref = PyStrategyCore(params, tick_size=tick, lot_size=lot)
    fast = StrategyCore(params, tick_size=tick, lot_size=lot)
    assert type(fast) is not PyStrategyCore
    decisions = 0
    for i, ev in enumerate(stream):
        if _step(i, ev, ref, fast):
            a_in, b_in = ref.last_decision.inputs, fast.last_decision.inputs
            assert b_in.layout.names == a_in.layout.names
            assert b_in.vector.tobytes() == a_in.vector.tobytes()
            decisions += 1
    return ref, fast, decisions


def test_a_quoter_that_keeps_its_states_sees_their_inputs_unchanged(usdm, monkeypatch):  # noqa: F811
    """core.quote replaced by a wrapper (the Python-level call, as the reference's) that keeps every other state the
    compiled core hands it, with a copy of its inputs taken then: the decisions are the reference's, and after the run
    every kept state's inputs are still what they were (a held InputPairs is never emptied for reuse)."""
    events, tick, lot = usdm
    start = next(i for i, e in enumerate(events) if type(e) is BestBidAsk)
    stream = events[start : start + 16_000]
    original = core_module.quote
    kept = []
    calls = [0]

    def keeping_quote(params, risk, market, q, *, tick_size, lot_size):
        calls[0] += 1
        extra = market.extra_inputs
        if calls[0] % 2 == 0 and type(extra).__name__ == "InputPairs":
            kept.append((market, [(k, _bits(v)) for k, v in extra.items()], len(extra)))
        return original(params, risk, market, q, tick_size=tick_size, lot_size=lot_size)

    monkeypatch.setattr(core_module, "quote", keeping_quote)
    params = StrategyParams.from_dict({"max_inventory": 0.05})
    _ref, _fast, decisions = _run_lockstep(stream, tick, lot, params)
    assert decisions > 50
    assert len(kept) > 10, "the compiled core's states were not seen"
    for market, items, n in kept:
        extra = market.extra_inputs
        assert len(extra) == n
        assert [(k, _bits(v)) for k, v in extra.items()] == items


def test_the_decisions_after_a_replaced_quote_is_restored_are_the_references(usdm, monkeypatch):  # noqa: F811
    """The C-level call and the Python-level one alternate (core.quote replaced, then restored mid-run): the same
    decisions as the reference's throughout, and a decision's inputs reused once nothing holds them."""
    events, tick, lot = usdm
    start = next(i for i, e in enumerate(events) if type(e) is BestBidAsk)
    stream = events[start : start + 16_000]
    original = core_module.quote
    params = StrategyParams.from_dict({"max_inventory": 0.05})
    ref = PyStrategyCore(params, tick_size=tick, lot_size=lot)
    fast = StrategyCore(params, tick_size=tick, lot_size=lot)
    seen = []

    def wrapped(params, risk, market, q, *, tick_size, lot_size):
        if type(market.extra_inputs).__name__ == "InputPairs":  # the compiled core's (the reference's is a dict)
            seen.append(id(market.extra_inputs))
        return original(params, risk, market, q, tick_size=tick_size, lot_size=lot_size)

    for i, ev in enumerate(stream):
        if i % 2_000 == 0:
            monkeypatch.setattr(core_module, "quote", wrapped if (i // 2_000) % 2 else original)
        if _step(i, ev, ref, fast):
            assert fast.last_decision.inputs.vector.tobytes() == ref.last_decision.inputs.vector.tobytes()
    # nothing held the compiled core's pairs between decisions: one object, emptied and written again each time
    assert len(seen) > 10 and len(set(seen)) == 1


def test_the_depth_cost_read_is_the_references_with_depth_pricing(usdm):  # noqa: F811
    """With the depth-priced half-spread on (the cached depth cost read by the twin), the decisions are the reference's,
    and the depth inputs are in them."""
    events, tick, lot = usdm
    start = next(i for i, e in enumerate(events) if type(e) is BestBidAsk)
    params = StrategyParams.from_dict({"max_inventory": 0.05, "fill_cost_by_depth": True})
    _ref, fast, decisions = _run_lockstep(events[start : start + 16_000], tick, lot, params)
    assert decisions > 50
    names = fast.last_decision.inputs.layout.names
    assert "depth_markout_state_ok" in names


def _order(size, filled):
    o = Order("t-1", Side.BUY, 100.0, 1.0)
    o.size = size
    o.filled = filled
    return o


def _remaining_cases():
    rng = random.Random(21)
    cases = [
        (1.0, 0.0),
        (1.0, 1.0),
        (0.3, 0.1),
        (0.1 + 0.2, 0.3),
        (1.0, 1.5),
        (0.0, 0.0),
        (-0.0, 0.0),
        (0.0, -0.0),
        (1e-13, 0.0),
        (5e-13, 0.0),
        (4.9e-13, 0.0),
        (1e-201, 0.0),
        (8192.5, 0.25),
        (1e20, 1.0),
        (math.nan, 0.0),
        (1.0, math.nan),
        (math.inf, 1.0),
        (1.0, math.inf),
        (math.inf, math.inf),
        (0.123456789012345, 0.0000000000004),
    ]
    for _ in range(3000):
        lots = rng.randrange(1, 10_000)
        lot = rng.choice((0.001, 0.01, 0.1, 1e-5, 0.003))
        size = round(lots * lot, 10)
        filled = round(rng.randrange(0, lots + 2) * lot, 10)
        cases.append((size, filled))
        cases.append((rng.uniform(0.0, 10.0), rng.uniform(0.0, 10.0)))
        k = rng.randrange(1, 10**6)
        cases.append(((k + 0.5) * 1e-12, 0.0))  # half-way at the 12th place
    return cases


def test_an_orders_remaining_is_the_propertys():
    from apps.engine import _core

    for size, filled in _remaining_cases():
        a, b = _order(size, filled), _order(size, filled)
        want = a.remaining  # the property (computes and stores the memo)
        got = _core._order_remaining(b)
        assert _bits(got) == _bits(want), (size, filled)
        assert type(got) is type(want)
        assert [_bits(x) for x in b._remaining_of] == [_bits(x) for x in a._remaining_of]
        assert _bits(b._remaining) == _bits(a._remaining)
        # read again: the memo holds (or, for NaN, never does: computed again), the same value
        assert _bits(_core._order_remaining(b)) == _bits(a.remaining)


def test_an_orders_remaining_after_its_fill_changes_and_with_odd_memos():
    from apps.engine import _core

    a, b = _order(1.0, 0.0), _order(1.0, 0.0)
    assert _core._order_remaining(b) == a.remaining == 1.0
    for fill in (0.25, 0.5, 0.5, 1.0, 1.25):
        a.filled = b.filled = fill
        assert _bits(_core._order_remaining(b)) == _bits(a.remaining)
        assert b._remaining_of == a._remaining_of
    # an int size: the property's own path (Python's arithmetic), the same value and memo
    a, b = _order(3, 1.0), _order(3, 1.0)
    assert _bits(_core._order_remaining(b)) == _bits(a.remaining)
    assert b._remaining_of == a._remaining_of
    # a memo that is not a pair: the property reads it (and raises as it does)
    b = _order(1.0, 0.0)
    b._remaining_of = (1.0,)
    with pytest.raises(IndexError):
        _ = b.remaining
    with pytest.raises(IndexError):
        _core._order_remaining(b)
    # a memo pair that does not hold: recomputed
    a, b = _order(2.0, 0.5), _order(2.0, 0.5)
    b._remaining_of = (2.0, 0.25)
    b._remaining = 1.75
    assert _bits(_core._order_remaining(b)) == _bits(a.remaining) and b._remaining_of == (2.0, 0.5)


def test_a_new_order_is_the_dataclasses():
    """The tracker's new order built slot by slot (``_new_order``): equal to ``Order(...)``, every field the same
    object or an equal one (a new empty set each), the memo fields set, and its remaining the same."""
    from apps.engine import _core
    from apps.engine.execution.orders import OrderStatus, TimeInForce

    for cid, side, price, size, tif in (
        ("a-1", Side.BUY, 100.5, 0.25, TimeInForce.POST_ONLY),
        ("a-2", Side.SELL, 0.1, 3.0, TimeInForce.IOC),
        ("a-3", Side.SELL, 1e-9, 1e9, TimeInForce.GTC),
    ):
        want = Order(client_order_id=cid, side=side, price=price, size=size, tif=tif)
        got = _core._order_for_test(cid, side, price, size, tif)
        assert type(got) is Order
        assert got == want
        for name in Order.__dataclass_fields__:
            a, b = getattr(want, name), getattr(got, name)
            if name == "fill_ids":
                assert type(b) is set and not b
            else:
                assert b is a, name
        assert got.status is OrderStatus.PENDING_NEW
        assert got._remaining_of is None and got.remaining == want.remaining
        got.fill_ids.add("x")
        assert not _core._order_for_test(cid, side, price, size, tif).fill_ids  # a new set each
