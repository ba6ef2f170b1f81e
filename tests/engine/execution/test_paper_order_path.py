"""The compiled venue's order path (``_paper.pyx``: ``submit``, the arrivals, acks, rejects, fills) against the
reference ``PyPaperVenue``, on random streams of actions that include every kind of bad input.

Both venues get the same market events and the same actions at the same times; everything they return (local
rejects, visible events), every error they raise, and their state after each step (open orders with their queues,
counters, position) must be equal. The random streams mix well-formed quotes with what a broken strategy could send:
int and str sides, lower-case and unknown time-in-force values, NaN, infinite, negative, huge and int prices, sizes
below a lot, reused and empty client ids, cancels of unknown orders, modifies, cancel-alls, and NumPy times.
"""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

from apps.engine.execution import paper
from apps.engine.execution.latency import EmpiricalLatency
from apps.engine.execution.orders import TimeInForce
from apps.engine.market.events import (
    BestBidAsk,
    CancelAll,
    CancelOrder,
    DepthUpdate,
    ModifyOrder,
    PlaceOrder,
    Side,
    Trade,
)

pytestmark = pytest.mark.skipif(not paper.PAPER_COMPILED, reason="the compiled venue is not selected")

SIDES = [Side.BUY, Side.SELL, 1, -1, 0, "buy", None]
TIFS = ["GTC", "gtc", "IOC", "post_only", TimeInForce.POST_ONLY, TimeInForce.GTC, "FOK", None, 3]


def _price(rng: random.Random, mid: float) -> object:
    r = rng.random()
    if r < 0.75:
        return round(mid + rng.choice([-1, 1]) * rng.randint(0, 12) * 0.1 + rng.uniform(-0.04, 0.04), 6)
    return rng.choice([math.nan, math.inf, -1.0, 0.0, 1e300, 100, 1e-12, "100", True])


def _size(rng: random.Random) -> object:
    r = rng.random()
    if r < 0.8:
        return rng.choice([0.01, 0.02, 0.015, 0.05, 0.0333])
    return rng.choice([0.0, -0.01, math.nan, 0.004, 2, None])


def _actions(rng: random.Random, mid: float, ids: list[str], n_new: list[int]) -> list:
    out = []
    for _ in range(rng.randint(0, 4)):
        r = rng.random()
        if r < 0.5:
            if ids and rng.random() < 0.05:
                cid = rng.choice(ids)  # a reused id
            elif rng.random() < 0.02:
                cid = ""
            else:
                n_new[0] += 1
                cid = f"c{n_new[0]}"
                ids.append(cid)
            side = rng.choice(SIDES) if rng.random() < 0.1 else rng.choice([Side.BUY, Side.SELL])
            tif = rng.choice(TIFS) if rng.random() < 0.3 else "GTC"
            out.append(PlaceOrder(cid, side, _price(rng, mid), _size(rng), tif))
        elif r < 0.8:
            cid = rng.choice(ids) if ids and rng.random() < 0.9 else "nobody"
            out.append(CancelOrder(cid))
        elif r < 0.9:
            cid = rng.choice(ids) if ids else "nobody"
            out.append(ModifyOrder(cid, _price(rng, mid), _size(rng)))
        else:
            out.append(CancelAll("test"))
    return out


def _market(rng: random.Random, t: int, mid: float) -> object:
    r = rng.random()
    bid, ask = round(mid, 1), round(mid + 0.1, 1)
    if r < 0.5:
        return BestBidAsk(t, t, bid, rng.uniform(0.01, 3.0), ask, rng.uniform(0.01, 3.0))
    if r < 0.75:
        side = rng.choice([Side.BUY, Side.SELL])
        px = round(ask + rng.randint(0, 3) * 0.1, 1) if side is Side.BUY else round(bid - rng.randint(0, 3) * 0.1, 1)
        return Trade(t, t, px, rng.uniform(0.001, 2.0), side)
    levels = [(round(bid - k * 0.1, 1), rng.choice([0.0, rng.uniform(0.01, 5.0)])) for k in range(4)]
    asks = [(round(ask + k * 0.1, 1), rng.choice([0.0, rng.uniform(0.01, 5.0)])) for k in range(4)]
    return DepthUpdate(t, t, levels, asks)


def _state(v) -> tuple:
    views = sorted(v.open_orders(), key=lambda o: o.client_order_id)
    queues = sorted(
        (cid, r.tick, r.crossed, r.queue.ahead, r.queue.level_size, r.queue.priority, r.queue.trade_credit)
        for cid, r in v._live.items()
    )
    return (views, queues, v._seq, v._priority, v._fill_seq, v.position(), v._last_arrival_ns, v._last_visible_ns)


def _call(f, *args):
    try:
        return ("ok", f(*args))
    except Exception as exc:  # noqa: BLE001 - the two must fail alike, whatever they raise
        return ("raised", type(exc).__name__, str(exc))


def _run(seed: int, **cfg) -> int:
    rng = random.Random(seed)
    config = paper.PaperVenueConfig(
        **{"tick_size": 0.1, "lot_size": 0.01, "maker_fee": -0.0001, "taker_fee": 0.0004} | cfg
    )
    ref, com = paper.PyPaperVenue(config, seed=seed), paper.PaperVenue(config, seed=seed)
    assert type(com) is not paper.PyPaperVenue
    ids: list[str] = []
    n_new = [0]
    mid = 100.0
    t = 1_000_000_000
    seen = 0
    for _ in range(600):
        t += rng.randint(1, 8_000_000)
        mid = round(mid + rng.choice([-0.1, 0.0, 0.1]), 1)
        ev = _market(rng, t, mid)
        got, want = _call(com.on_market, ev), _call(ref.on_market, ev)
        assert got == want, (seed, "on_market", ev)
        actions = _actions(rng, mid, ids, n_new)
        now = np.int64(t) if rng.random() < 0.1 else t
        got, want = _call(com.submit, actions, now), _call(ref.submit, actions, now)
        assert got == want, (seed, "submit", actions)
        if rng.random() < 0.3:
            later = t + rng.randint(0, 30_000_000)
            got, want = _call(com.advance, later), _call(ref.advance, later)
            assert got == want, (seed, "advance", later)
            seen += len(got[1]) if got[0] == "ok" else 0
        assert _state(com) == _state(ref), seed
        seen += len(got[1]) if got[0] == "ok" else 0
    return seen


@pytest.mark.parametrize("seed", range(6))
def test_the_compiled_order_path_matches_the_reference_on_random_actions(seed):
    assert _run(seed, entry_latency_ns=3_000_000, response_latency_ns=2_000_000) > 100


@pytest.mark.parametrize("seed", range(3))
def test_the_compiled_order_path_matches_the_reference_without_partial_fills(seed):
    assert _run(100 + seed, partial_fills=False, entry_latency_ns=1_000_000, response_latency_ns=1_000_000) > 100


@pytest.mark.parametrize("seed", range(3))
def test_the_compiled_order_path_draws_sampled_latencies_alike(seed):
    """Sampled latencies draw from the venue's generator: both must draw the same numbers in the same order."""
    entry = EmpiricalLatency((1_000_000, 4_000_000, 9_000_000))
    response = EmpiricalLatency((500_000, 2_500_000))
    assert _run(200 + seed, entry_latency_ns=entry, response_latency_ns=response) > 100


def test_the_compiled_order_path_matches_the_reference_on_the_exchange_clock():
    assert _run(300, venue_clock="exchange", entry_latency_ns=2_000_000, response_latency_ns=2_000_000) > 100
