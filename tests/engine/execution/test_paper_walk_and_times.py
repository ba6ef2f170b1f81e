"""Two shortcuts of the compiled venue's market side (``_paper.pyx``) against the reference ``PyPaperVenue``:

- the resting orders' walk after a book change and a trade's first look read ``_live``'s values from a tuple kept
  with the dict and its version tag: ``_live`` changed by hand between events (an order moved to the end, removed and
  put back, the dict replaced by a reordered copy or by an equal one, an entry replaced by itself) must be walked in
  its new order, as the reference walks it;
- the venue's times (``t > _venue_now_ns``, the inbox's and outbox's heads against the event's time) are compared as
  exact ints in C: clocks set by hand past int64, negative, of other digit counts, equal, or floats, and actions sent
  at float times (float arrival and visibility times in the heaps) must give the reference's events and state.

After every step the two venues' returned events, resting orders (every queue field to the bit), books and counters
must be equal (``test_paper_market_side._state``).
"""

from __future__ import annotations

import random

import pytest

from apps.engine.execution import paper
from apps.engine.market.events import DepthSnapshot
from tests.engine.execution.test_paper_market_side import _call, _px, _state, _Stream

pytestmark = pytest.mark.skipif(not paper.PAPER_COMPILED, reason="the compiled venue is not selected")

TICK = 0.1


def _pair(seed: int, **cfg):
    config = paper.PaperVenueConfig(
        **{"tick_size": TICK, "lot_size": 0.01, "maker_fee": -0.0001, "taker_fee": 0.0004} | cfg
    )
    ref, com = paper.PyPaperVenue(config, seed=seed), paper.PaperVenue(config, seed=seed)
    assert type(com) is not paper.PyPaperVenue
    return ref, com


def _start(ref, com, t: int) -> None:
    bids, asks = tuple((_px(1000 - k), 1.0) for k in range(20)), tuple((_px(1001 + k), 1.0) for k in range(20))
    first = DepthSnapshot(t, t, bids, asks)
    assert _call(com.on_market, first) == _call(ref.on_market, first)


def _reorder(v, how: int, rng_state: int) -> None:
    """The same change of ``_live`` in either venue (its own Resting objects)."""
    live = v._live
    if not live:
        return
    keys = list(live)
    cid = keys[rng_state % len(keys)]
    if how == 0:  # moved to the end of the same dict
        live[cid] = live.pop(cid)
    elif how == 1:  # the dict replaced by a reversed copy
        v._live = dict(reversed(list(live.items())))
    elif how == 2:  # replaced by an equal copy (same order, another dict)
        v._live = dict(live)
    elif how == 3:  # an entry replaced by itself (the dict's version moves, its contents do not)
        live[cid] = live[cid]
    elif how == 4:  # removed and put back at the end, in another dict built in the old order
        r = live.pop(cid)
        v._live = {**live, cid: r}


@pytest.mark.parametrize("seed", range(3))
def test_the_walk_follows_live_changed_by_hand(seed):
    rng = random.Random(seed)
    ref, com = _pair(seed, entry_latency_ns=1_000_000, response_latency_ns=1_000_000)
    stream = _Stream(rng)
    t = 1_000_000_000
    _start(ref, com, t)
    changed = fills = 0
    for step in range(900):
        t += rng.randint(1, 3_000_000)
        if rng.random() < 0.35:
            how, k = rng.randrange(5), rng.randrange(1000)
            _reorder(ref, how, k)
            _reorder(com, how, k)
            changed += 1
            assert _state(com) == _state(ref), (seed, step, "reorder", how)
        ev = stream.market(t, ref)
        got, want = _call(com.on_market, ev), _call(ref.on_market, ev)
        assert got == want, (seed, step, "on_market", ev)
        fills += sum(type(e).__name__ == "Fill" for e in got[1]) if got[0] == "ok" else 0
        assert _state(com) == _state(ref), (seed, step, ev)
        actions = stream.actions(ref)
        got, want = _call(com.submit, actions, t), _call(ref.submit, actions, t)
        assert got == want, (seed, step, "submit", actions)
        assert _state(com) == _state(ref), (seed, step, actions)
    assert changed > 200 and fills > 20, (changed, fills)


_ODD_CLOCKS = [
    0,
    -1,
    -(1 << 40),
    5,
    (1 << 30) - 1,
    1 << 30,
    (1 << 60) - 1,
    (1 << 63) - 1,
    1 << 63,
    1 << 64,
    1 << 95,
    -(1 << 95),
    0.5,
    float("inf"),
]


@pytest.mark.parametrize("seed", range(3))
def test_times_of_every_kind_are_compared_as_the_reference_compares_them(seed):
    rng = random.Random(100 + seed)
    ref, com = _pair(100 + seed, entry_latency_ns=1_000_000, response_latency_ns=2_000_000)
    stream = _Stream(rng)
    # time bases of one, two and three 30-bit digits (and one just below 2**63)
    t = rng.choice([1_000, 1 << 31, 1_000_000_000_000_000_000, (1 << 63) - (1 << 40)])
    _start(ref, com, t)
    kinds = set()
    for step in range(700):
        t += rng.randint(0, 3_000_000)  # equal times too
        u = rng.random()
        if u < 0.15:  # the venue's clock set by hand
            value = rng.choice([*_ODD_CLOCKS, t, t - 1, t + 1, float(t), t + 0.5, t - 0.5])
            ref._venue_now_ns = com._venue_now_ns = value
            kinds.add(type(value).__name__)
        ev = stream.market(t, ref)
        got, want = _call(com.on_market, ev), _call(ref.on_market, ev)
        assert got == want, (seed, step, "on_market", ev)
        assert _state(com) == _state(ref), (seed, step, ev)
        actions = stream.actions(ref)
        # sent at the event's time, or at a float time just before it (float arrivals and acks in the heaps)
        at = t if rng.random() < 0.8 else t - rng.choice([0.5, 1.5, 1e3])
        got, want = _call(com.submit, actions, at), _call(ref.submit, actions, at)
        assert got == want, (seed, step, "submit", actions, at)
        if rng.random() < 0.2:
            later = t + rng.choice([0, 1, 999_999, 2_000_000])
            got, want = _call(com.advance, later), _call(ref.advance, later)
            assert got == want, (seed, step, "advance", later)
        assert _state(com) == _state(ref), (seed, step, actions)
        assert type(com._venue_now_ns) is type(ref._venue_now_ns)
    assert {"int", "float"} <= kinds
