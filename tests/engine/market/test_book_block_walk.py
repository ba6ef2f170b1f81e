"""The compiled book's block search from the previous level (``_find_block``'s walk) and its ``size_within`` sum,
held to the reference book level by level.

When a side's keys fall from level to level (asks, keyed -price, in Binance's order: lowest price first), the
compiled book looks for each level's block by stepping down from the previous level's block: up to four blocks one
by one, then a search of the tails below. These tests make diffs whose consecutive levels lie 0 to ~15 blocks apart
(every stop of the walk and the search past it), start above every resting level (a new best: the hint past the
last block), come in the other order or shuffled (the full search), and empty and split blocks on the way; after
every diff both books must hold the same levels, the same ``size_within`` sums (the same doubles added in the same
order) and the same ``size_at`` answers.
"""

from __future__ import annotations

import numpy as np
import pytest

from apps.engine.market import _book
from apps.engine.market.book import PyOrderBook
from apps.engine.market.events import DepthUpdate, Side

BANDS = (0.0, 1e-4, 5e-4, 2e-3, 1e-2, 0.5)


def _same_books(ref: PyOrderBook, fast: _book.OrderBook, rng: np.random.Generator) -> None:
    assert fast.bids() == ref.bids()
    assert fast.asks() == ref.asks()
    assert (fast.n_bid_levels, fast.n_ask_levels) == (ref.n_bid_levels, ref.n_ask_levels)
    if ref.n_bid_levels and ref.n_ask_levels:
        mids = [ref.mid, ref.mid * (1 + float(rng.normal()) * 1e-3), ref.bids()[-1][0], ref.asks()[-1][0]]
        for mid in mids:
            for band in BANDS:
                a, b = fast.size_within(mid, band), ref.size_within(mid, band)
                assert a == b, (mid, band, a, b)
    for price, _ in ref.bids(40)[::3] + ref.asks(40)[::3]:
        for side in (Side.BUY, Side.SELL):
            assert fast.size_at(side, price) == ref.size_at(side, price)


def _side_levels(rng, resting, lo_tick, hi_tick, outward_desc, mode, max_gap_levels):
    """One side's diff levels: ticks picked from the touch outwards with gaps of up to ``max_gap_levels`` resting
    levels (so 0 to several blocks apart), some new levels between and beyond, some removed (resting or absent)."""
    ordered = sorted(resting, reverse=outward_desc)  # from the touch outwards
    picks = []
    j = int(rng.integers(0, 3))
    while j < len(ordered) and len(picks) < 90:
        picks.append(ordered[j])
        j += 1 + int(rng.integers(0, max_gap_levels))
    new = rng.integers(lo_tick, hi_tick, size=int(rng.integers(0, 30))).tolist()
    ticks = sorted(set(picks) | set(new), reverse=outward_desc)
    if mode == "reversed":
        ticks = ticks[::-1]
    elif mode == "shuffled":
        rng.shuffle(ticks)
    out = []
    for t in ticks:
        r = rng.random()
        size = 0.0 if r < 0.3 else float(np.round(rng.random() * 5, 3) + 0.001)
        out.append((t, size))
    return out


@pytest.mark.parametrize("mode", ["feed", "reversed", "shuffled"])
@pytest.mark.parametrize("max_gap_levels", [2, 64, 400, 1500])
def test_walk_from_the_previous_block_matches_the_reference(mode, max_gap_levels):
    rng = np.random.default_rng(1000 + max_gap_levels + {"feed": 0, "reversed": 1, "shuffled": 2}[mode])
    ref, fast = PyOrderBook(), _book.OrderBook()
    tick = 0.1
    bid_ticks: set[int] = set()
    ask_ticks: set[int] = set()
    # a deep book first (~4,000 levels a side: ~80+ blocks), built by diffs in the feed's order
    for start in range(0, 4000, 500):
        bids = [(float((600_000 - t) * tick), 1.0 + (t % 7)) for t in range(start, start + 500)]
        asks = [(float((600_010 + t) * tick), 2.0 + (t % 5)) for t in range(start, start + 500)]
        upd = DepthUpdate(1, 1, tuple(bids), tuple(asks))
        ref.apply_update(upd)
        fast.apply_update(upd)
    bid_ticks = {round(p / tick) for p, _ in ref.bids()}
    ask_ticks = {round(p / tick) for p, _ in ref.asks()}
    _same_books(ref, fast, rng)
    for step in range(60):
        touch_bid, touch_ask = max(bid_ticks), min(ask_ticks)
        b = _side_levels(
            rng, bid_ticks, touch_bid - 6000, touch_bid + (6 if step % 5 == 0 else 1), True, mode, max_gap_levels
        )
        a = _side_levels(
            rng, ask_ticks, touch_ask - (6 if step % 7 == 0 else 0), touch_ask + 6000, False, mode, max_gap_levels
        )
        b = [(t, s) for t, s in b if t < touch_ask]  # never cross the book
        a = [(t, s) for t, s in a if t > max([touch_bid] + [t2 for t2, s2 in b if s2 > 0])]
        if step % 11 == 0 and b:  # a level above every resting bid first: the walk starts past the last block
            b = [(touch_bid + 3, 0.5), *b] if mode == "feed" else b
        upd = DepthUpdate(2, 2, tuple((float(t * tick), s) for t, s in b), tuple((float(t * tick), s) for t, s in a))
        ref.apply_update(upd)
        fast.apply_update(upd)
        for t, s in b:
            (bid_ticks.add if s > 0 else bid_ticks.discard)(t)
        for t, s in a:
            (ask_ticks.add if s > 0 else ask_ticks.discard)(t)
        _same_books(ref, fast, rng)
    assert ref.n_bid_levels > 1000 and ref.n_ask_levels > 1000


def test_walk_survives_blocks_emptied_and_split_between_levels_of_one_diff():
    # One diff that empties whole blocks (every level of a run removed) and then, further out, inserts enough new
    # levels to split blocks: the hint then points at blocks that moved; the answer must not depend on it.
    rng = np.random.default_rng(5)
    ref, fast = PyOrderBook(), _book.OrderBook()
    bids = tuple((float(100_000 - t), 1.0) for t in range(3000))
    asks = tuple((float(100_001 + t), 1.0) for t in range(3000))
    for book in (ref, fast):
        book.apply_update(DepthUpdate(1, 1, bids, asks))
    for step in range(40):
        lo = int(rng.integers(0, 2500))
        removed = [(float(100_000 - t), 0.0) for t in range(lo, lo + int(rng.integers(50, 300)))]
        added = [(float(100_000 - t) - 0.5, 2.0) for t in range(lo + 300, lo + 300 + int(rng.integers(40, 200)))]
        side = tuple(sorted(removed + added, key=lambda lv: -lv[0]))
        if step % 2:
            side = side[::-1]
        for book in (ref, fast):
            book.apply_update(DepthUpdate(2, 2, side, ()))
        _same_books(ref, fast, rng)
