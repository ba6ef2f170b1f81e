"""The compiled strategy core's per-event path against the reference from a stream's very first event.

``apps/engine/_core.pyx`` writes the estimators' clock, first-event time and counters as C fields of
``_estimators.MarketFields``; the branch that stamps the first event's time runs only on a stream's first event, and
the recordings in tests/engine/test_core_equivalence.py do not start with the kind of event each path handles. Here
the USD-M BTCUSDT recording is cut to start at its first book ticker, at its first trade and at its first depth diff;
the reference ``PyStrategyCore`` and the compiled ``StrategyCore`` (each with its own estimators) take the same
events, and after every event their state (clock, first-event time, counters, refresh schedule, decision key,
position) and the actions they returned must be the same.
"""

from __future__ import annotations

import pytest

from apps.engine.core import CORE_COMPILED, PyStrategyCore, StrategyCore, StrategyParams
from apps.engine.market.events import BestBidAsk, DepthUpdate, Trade
from tests.engine.test_core_equivalence import _step_both
from tests.engine.test_core_reads import usdm  # noqa: F401 - the fixture: the USD-M recording's first 26,000 events

pytestmark = pytest.mark.skipif(not CORE_COMPILED, reason="the compiled strategy core is not selected")

_N = 3_000  # events replayed from the first one of the kind


def _lockstep(stream, tick, lot, check=None):
    """The reference and the compiled core over ``stream``, each refreshed after every event: the same actions and
    the same state after every event (and ``check(i, ref, fast)`` when given)."""
    params = StrategyParams.from_dict({"max_inventory": 0.05})
    ref = PyStrategyCore(params, tick_size=tick, lot_size=lot)
    fast = StrategyCore(params, tick_size=tick, lot_size=lot)
    assert type(fast) is not PyStrategyCore
    for i, ev in enumerate(stream):
        _step_both(ref, fast, ev, f"event {i} ({type(ev).__name__})")
        if check is not None:
            check(i, ref, fast)
    return ref, fast


@pytest.mark.parametrize("first", [BestBidAsk, Trade, DepthUpdate], ids=lambda c: c.__name__)
def test_the_compiled_core_matches_the_reference_from_the_first_event(usdm, first):  # noqa: F811
    events, tick, lot = usdm
    start = next(i for i, e in enumerate(events) if type(e) is first)
    stream = events[start : start + _N]
    _, fast = _lockstep(stream, tick, lot)
    assert fast.market._first_ns == stream[0].ts_local_ns
    assert fast.decisions_computed > 0


def test_the_compiled_core_counts_a_depth_diff_the_book_refuses_as_the_reference_does(usdm):  # noqa: F811
    """A depth diff with a level no book can hold (a NaN price, a negative or infinite size) is refused by the book
    with an EventError and counted in ``book_errors``; the compiled core's depth path (``_market_depth_update``) must
    count it, keep the book as it was and go on exactly as the reference's ``MarketEstimators.on_event``."""
    events, tick, lot = usdm
    start = next(i for i, e in enumerate(events) if type(e) is DepthUpdate)
    stream = list(events[start : start + 1_500])
    bad_levels = [((float("nan"), 1.0),), ((61_000.0, -1.0),), ((61_000.0, float("inf")),)]
    k = n_depth = 0
    for i, ev in enumerate(list(stream)):
        n_depth += type(ev) is DepthUpdate
        if type(ev) is DepthUpdate and n_depth % 10 == 1:
            bad = DepthUpdate(ev.ts_exch_ns, ev.ts_local_ns, ev.bids + bad_levels[k % 3], ev.asks, ev.last_update_id)
            stream[i] = bad
            k += 1
    assert k >= 3

    def same_book(i, ref, fast):
        assert fast.market.book_errors == ref.market.book_errors, f"event {i}"
        assert fast.market.book.best_bid() == ref.market.book.best_bid(), f"event {i}"
        assert fast.market.book.best_ask() == ref.market.book.best_ask(), f"event {i}"

    _, fast = _lockstep(stream, tick, lot, same_book)
    assert fast.market.book_errors == k
