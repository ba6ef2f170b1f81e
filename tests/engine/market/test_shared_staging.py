"""The two compiled books share one staging of a diff's levels (``_book.staged_diff``) and still behave as their
references.

In a backtest the paper venue's ``LevelBook`` and the strategy's ``OrderBook`` apply the same ``DepthUpdate`` one after
the other; the levels are read into C doubles once and kept for the very tuple objects they came from. These tests
drive both compiled books beside ``PyLevelBook`` and ``PyOrderBook`` through the cases where a cache could go wrong: a
different event object carrying the same tuples, equal contents in other tuples, diffs applied out of step between the
two books, mutable lists mutated in between, other level shapes, and bad levels (the same error, nothing written).
"""

from __future__ import annotations

import random

import pytest

from apps.engine.execution import _fillmodel
from apps.engine.execution.fillmodel import PyLevelBook
from apps.engine.market import _book
from apps.engine.market.book import PyOrderBook
from apps.engine.market.events import DepthSnapshot, DepthUpdate, EventError, Side

TICK = 0.1


class Pair:
    """A compiled book pair and its references, fed the same diffs and compared whole after each step."""

    def __init__(self, *, checked: bool = True) -> None:
        self.venue, self.ref_venue = _fillmodel.LevelBook(TICK), PyLevelBook(TICK)
        self.book, self.ref_book = _book.OrderBook(checked=checked), PyOrderBook(checked=checked)
        bids = tuple((round(100.0 + 0.1 * i, 1), 1.0) for i in range(50))
        asks = tuple((round(105.1 + 0.1 * i, 1), 2.0) for i in range(50))
        for v in (self.venue, self.ref_venue):
            v.apply_snapshot(bids, asks)
        for b in (self.book, self.ref_book):
            b.apply_snapshot(DepthSnapshot(1, 1, bids, asks, last_update_id=1))

    def venue_diff(self, bids, asks) -> None:
        self.venue.apply_diff(bids, asks)
        self.ref_venue.apply_diff(bids, asks)

    def book_update(self, upd) -> None:
        self.book.apply_update(upd)
        self.ref_book.apply_update(upd)

    def check(self) -> None:
        assert self.venue.bids == dict(sorted(self.ref_venue.bids.items()))
        assert self.venue.asks == dict(sorted(self.ref_venue.asks.items()))
        assert self.book.bids() == self.ref_book.bids()
        assert self.book.asks() == self.ref_book.asks()
        assert (self.book.last_update_id, self.book.ts_exch_ns, self.book.ts_local_ns) == (
            self.ref_book.last_update_id,
            self.ref_book.ts_exch_ns,
            self.ref_book.ts_local_ns,
        )


def _random_diff(rng: random.Random, k: int) -> DepthUpdate:
    bid_ticks, ask_ticks = sorted(rng.sample(range(60), 8)), sorted(rng.sample(range(60), 8))
    bids = tuple((round(99.0 + 0.1 * t, 1), rng.choice((0.0, 0.5, 1.25, 3.0))) for t in bid_ticks)
    asks = tuple((round(105.0 + 0.1 * t, 1), rng.choice((0.0, 0.5, 2.5))) for t in ask_ticks)
    return DepthUpdate(k, k + 1, bids, asks, last_update_id=k)


def test_the_books_agree_with_their_references_when_the_venue_stages_first() -> None:
    pair, rng = Pair(), random.Random(7)
    for k in range(300):
        upd = _random_diff(rng, k)
        pair.venue_diff(upd.bids, upd.asks)
        pair.book_update(upd)
        pair.check()


def test_a_different_event_carrying_the_same_tuples_reads_the_same_levels() -> None:
    pair, rng = Pair(), random.Random(11)
    for k in range(100):
        upd = _random_diff(rng, k)
        pair.venue_diff(upd.bids, upd.asks)
        other = DepthUpdate(k + 5, k + 6, upd.bids, upd.asks, last_update_id=k + 1000)
        pair.book_update(other)
        pair.check()


def test_equal_contents_in_new_tuples_and_diffs_out_of_step_give_the_references_books() -> None:
    # the strategy's book applies each diff two steps after the venue: every lookup misses or finds other tuples
    pair, rng = Pair(), random.Random(13)
    pending: list[DepthUpdate] = []
    for k in range(200):
        upd = _random_diff(rng, k)
        pair.venue_diff(upd.bids, upd.asks)
        pending.append(upd)
        if len(pending) > 2:
            old = pending.pop(0)
            # a copy with equal, but not identical, tuples of levels
            copy = DepthUpdate(
                old.ts_exch_ns, old.ts_local_ns, tuple(lv for lv in old.bids), tuple(lv for lv in old.asks)
            )
            assert copy.bids is not old.bids
            pair.book_update(copy)
            pair.book_update(old)
        pair.check()


def test_a_list_of_levels_mutated_between_the_two_books_is_read_afresh() -> None:
    pair = Pair()
    bids = [(100.0, 7.0), (100.5, 0.0)]
    asks = [(105.2, 9.0)]
    pair.venue_diff(bids, asks)
    bids[0] = (100.0, 8.0)  # the strategy's book must see what the list holds now
    asks.append((105.3, 0.0))
    upd = DepthUpdate(2, 2, bids, asks)
    pair.book_update(upd)
    pair.check()
    assert pair.book.size_at(Side.BUY, 100.0) == 8.0


@pytest.mark.parametrize(
    "level",
    [[100.2, 4.0], (100.2, 4), (100, 4.0)],
    ids=["list", "int-size", "int-price"],
)
def test_other_level_shapes_are_not_staged_and_convert_as_before(level) -> None:
    pair = Pair()
    bids = ((100.1, 3.0), level)
    pair.venue_diff(bids, ())
    pair.book_update(DepthUpdate(3, 3, bids, ()))
    pair.check()


def test_a_float_subclass_level_is_not_staged() -> None:
    class F(float):
        pass

    pair = Pair()
    bids = ((F(100.3), 5.0),)
    pair.venue_diff(bids, ())
    pair.book_update(DepthUpdate(3, 3, bids, ()))
    pair.check()


@pytest.mark.parametrize(
    ("bad", "where"),
    [((-1.0, 1.0), "bids"), ((100.4, -2.0), "asks"), ((100.4, float("inf")), "bids"), ((float("nan"), 1.0), "asks")],
)
def test_a_bad_level_staged_by_the_venue_still_raises_the_books_error_and_writes_nothing(bad, where) -> None:
    pair = Pair()
    good = ((100.1, 3.0),)
    bids, asks = ((*good, bad), ()) if where == "bids" else (good, ((105.5, 1.0), bad))
    upd = DepthUpdate(4, 4, bids, asks, last_update_id=4)
    # the venue's own rules first (it raises only for a price with no tick; the reference raises the same type)
    try:
        pair.ref_venue.apply_diff(bids, asks)
    except Exception as exc:  # noqa: BLE001 - the reference's error type is what the compiled one must raise
        with pytest.raises(type(exc)):
            pair.venue.apply_diff(bids, asks)
    else:
        pair.venue.apply_diff(bids, asks)
    before = (pair.book.bids(), pair.book.asks(), pair.book.last_update_id)
    with pytest.raises(EventError) as got:
        pair.book.apply_update(upd)
    with pytest.raises(EventError) as want:
        pair.ref_book.apply_update(upd)
    assert str(got.value) == str(want.value)
    assert (pair.book.bids(), pair.book.asks(), pair.book.last_update_id) == before
    # the unchecked book takes the same staged levels as they are, as its reference does
    loose, loose_ref = _book.OrderBook(checked=False), PyOrderBook(checked=False)
    if not any(x != x for x in bad):  # a NaN key has no place the two layouts agree on
        loose.apply_update(upd)
        loose_ref.apply_update(upd)
        assert loose.bids() == loose_ref.bids()
        assert loose.asks() == loose_ref.asks()
