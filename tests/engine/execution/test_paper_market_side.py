"""The compiled venue's market side (``_paper.pyx``: book tickers, depth diffs, snapshots and trades against our
resting orders) against the reference ``PyPaperVenue``, on random streams aimed at the levels where our orders rest.

The streams keep many of our orders resting on both sides, several at one tick, and send market data that lands on
their levels: depth diffs that add, resize, remove and empty those levels (and diffs that cross the book), book tickers
that move to and through our prices, snapshots, and trades at and through our prices from either side (and prints
that are not market trades). After every step the two venues' returned events, their resting orders with every queue
field to the bit, their books and their counters must be equal.
"""

from __future__ import annotations

import random

import pytest

from apps.engine.execution import paper
from apps.engine.market.events import (
    BestBidAsk,
    CancelAll,
    CancelOrder,
    DepthSnapshot,
    DepthUpdate,
    ModifyOrder,
    PlaceOrder,
    Side,
    Trade,
)

pytestmark = pytest.mark.skipif(not paper.PAPER_COMPILED, reason="the compiled venue is not selected")

TICK = 0.1


def _bits(x: object) -> object:
    # a number to its exact double (the reference's int 0 for "no crossing level" is the compiled 0.0: equal)
    return x if x is None else float(x).hex()


def _state(v) -> tuple:
    live = tuple(
        (
            cid,
            r.tick,
            _bits(r.crossed),
            _bits(r.queue.ahead),
            _bits(r.queue.level_size),
            r.queue.priority,
            _bits(r.queue.trade_credit),
            _bits(r.order.remaining),
            r.order.status,
        )
        for cid, r in v._live.items()
    )
    book = v.book
    return (
        live,
        sorted(book.bids.items()),
        sorted(book.asks.items()),
        book._bid_floor,
        book._ask_ceiling,
        book.has_depth,
        v._seq,
        v._priority,
        v._fill_seq,
        v.non_market_trades,
        _bits(v.position()),
        v._venue_now_ns,
    )


def _call(f, *args):
    try:
        return ("ok", f(*args))
    except Exception as exc:  # noqa: BLE001 - the two must fail alike, whatever they raise
        return ("raised", type(exc).__name__, str(exc))


def _px(tick: int) -> float:
    return round(tick * TICK, 1)


def _size(rng: random.Random) -> float:
    return rng.choice([0.01, 0.02, 0.05, 0.1, rng.uniform(0.001, 3.0)])


class _Stream:
    """Random market data and actions around a drifting mid, aimed at the ticks where our orders rest."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.mid = 1000  # the best bid's tick; the best ask is one tick above
        self.n = 0

    def our_ticks(self, venue) -> list[tuple[int, bool]]:
        return [(r.tick, r.order.side is Side.BUY) for r in venue._live.values()]

    def market(self, t: int, venue) -> object:
        rng = self.rng
        self.mid += rng.choice([-1, 0, 0, 1])
        bid, ask = self.mid, self.mid + 1
        ours = self.our_ticks(venue)
        r = rng.random()
        if r < 0.3:
            b, a = bid + rng.choice([0, 0, 0, -1, 1, 2]), ask + rng.choice([0, 0, 0, 1, -1, -2])
            if ours and rng.random() < 0.4:  # the touch moves onto (or through) one of our prices
                tick, is_bid = rng.choice(ours)
                if is_bid:
                    a = tick - rng.choice([0, 0, 1])
                    b = min(b, a - 1)
                else:
                    b = tick + rng.choice([0, 0, 1])
                    a = max(a, b + 1)
            if b >= a:
                b = a - 1
            return BestBidAsk(t, t, _px(b), _size(rng), _px(a), _size(rng))
        if r < 0.55:
            return self.diff(t, bid, ask, ours)
        if r < 0.9:
            aggressor = rng.choice([Side.BUY, Side.SELL])
            if ours and rng.random() < 0.7:
                tick, is_bid = rng.choice(ours)
                # at our price, or through it, from the side that reaches it (or, sometimes, the other)
                step = rng.choice([0, 0, 1, 2])
                tick = tick - step if is_bid else tick + step
                if rng.random() < 0.85:
                    aggressor = Side.SELL if is_bid else Side.BUY
            else:
                tick = ask + rng.randint(0, 2) if aggressor is Side.BUY else bid - rng.randint(0, 2)
            market = rng.random() > 0.05
            return Trade(t, t, _px(tick), _size(rng), aggressor, market=market)
        if r < 0.93:
            bids = tuple((_px(bid - k), _size(rng)) for k in range(rng.randint(0, 12)))
            asks = tuple((_px(ask + k), _size(rng)) for k in range(rng.randint(0, 12)))
            return DepthSnapshot(t, t, bids, asks)
        return self.diff(t, bid, ask, ours)

    def diff(self, t: int, bid: int, ask: int, ours: list[tuple[int, bool]]) -> DepthUpdate:
        rng = self.rng
        bids: dict[int, float] = {}
        asks: dict[int, float] = {}
        for _ in range(rng.randint(0, 10)):  # the book around the touch
            k = rng.randint(0, 15)
            size = 0.0 if rng.random() < 0.3 else _size(rng)
            if rng.random() < 0.5:
                bids[bid - k] = size
            else:
                asks[ask + k] = size
        for tick, is_bid in ours:  # our levels: added, resized, emptied, or crossed by the other side
            u = rng.random()
            if u < 0.5:
                size = 0.0 if rng.random() < 0.35 else _size(rng)
                (bids if is_bid else asks)[tick] = size
            elif u < 0.6:
                through = tick - rng.randint(0, 2) if is_bid else tick + rng.randint(0, 2)
                (asks if is_bid else bids)[through] = _size(rng)
        bid_levels = [(_px(k), s) for k, s in bids.items()]
        ask_levels = [(_px(k), s) for k, s in asks.items()]
        if rng.random() < 0.7:  # the venue's own order (bids descending, asks ascending); else any order
            bid_levels.sort(reverse=True)
            ask_levels.sort()
        else:
            rng.shuffle(bid_levels)
            rng.shuffle(ask_levels)
        return DepthUpdate(t, t, tuple(bid_levels), tuple(ask_levels))

    def actions(self, venue) -> list:
        rng = self.rng
        out = []
        live = list(venue._live)
        for _ in range(rng.randint(0, 3)):
            u = rng.random()
            if u < 0.55 or not live:
                self.n += 1
                side = rng.choice([Side.BUY, Side.SELL])
                # several orders per tick: a few prices at and behind the touch (and, rarely, through it)
                k = rng.choice([0, 0, 1, 1, 2, 3, 5, -1])
                tick = self.mid - k if side is Side.BUY else self.mid + 1 + k
                tif = rng.choice(["GTC"] * 8 + ["POST_ONLY", "IOC"])
                out.append(PlaceOrder(f"o{self.n}", side, _px(tick), _size(rng), tif))
            elif u < 0.8:
                out.append(CancelOrder(rng.choice(live)))
            elif u < 0.95:
                cid = rng.choice(live)
                r = venue._live[cid]
                tick = r.tick + rng.choice([0, 0, -1, 1])
                size = rng.choice([r.order.remaining / 2, r.order.remaining, r.order.remaining * 2])
                out.append(ModifyOrder(cid, _px(tick), max(round(size, 2), 0.01)))
            else:
                out.append(CancelAll("test"))
        return out


def _run(seed: int, steps: int = 1200, **cfg) -> dict[str, int]:
    rng = random.Random(seed)
    config = paper.PaperVenueConfig(
        **{"tick_size": TICK, "lot_size": 0.01, "maker_fee": -0.0001, "taker_fee": 0.0004} | cfg
    )
    ref, com = paper.PyPaperVenue(config, seed=seed), paper.PaperVenue(config, seed=seed)
    assert type(com) is not paper.PyPaperVenue
    stream = _Stream(rng)
    t = 1_000_000_000
    seen = {"fills": 0, "resting": 0, "shared_tick": 0}
    bids, asks = tuple((_px(1000 - k), 1.0) for k in range(20)), tuple((_px(1001 + k), 1.0) for k in range(20))
    first = DepthSnapshot(t, t, bids, asks)
    assert _call(com.on_market, first) == _call(ref.on_market, first)
    for step in range(steps):
        t += rng.randint(1, 3_000_000)
        ev = stream.market(t, ref)
        got, want = _call(com.on_market, ev), _call(ref.on_market, ev)
        assert got == want, (seed, step, "on_market", ev)
        assert _state(com) == _state(ref), (seed, step, ev)
        seen["fills"] += sum(type(e).__name__ == "Fill" for e in got[1]) if got[0] == "ok" else 0
        actions = stream.actions(ref)
        got, want = _call(com.submit, actions, t), _call(ref.submit, actions, t)
        assert got == want, (seed, step, "submit", actions)
        if rng.random() < 0.3:
            later = t + rng.randint(0, 3_000_000)
            got, want = _call(com.advance, later), _call(ref.advance, later)
            assert got == want, (seed, step, "advance", later)
        assert _state(com) == _state(ref), (seed, step, actions)
        ticks = [r.tick for r in ref._live.values()]
        seen["resting"] += len(ticks)
        seen["shared_tick"] += len(ticks) - len(set(ticks))
    return seen


def _check(seen: dict[str, int]) -> None:
    # the stream did what it is for: many resting orders, several sharing a tick, and fills
    assert seen["resting"] > 1000 and seen["shared_tick"] > 100 and seen["fills"] > 30, seen


@pytest.mark.parametrize("seed", range(4))
def test_the_compiled_market_side_matches_the_reference_where_our_orders_rest(seed):
    _check(_run(seed, entry_latency_ns=1_000_000, response_latency_ns=1_000_000))


@pytest.mark.parametrize("seed", range(2))
def test_the_compiled_market_side_matches_the_reference_under_the_probabilistic_queue(seed):
    _check(_run(10 + seed, queue_model="probabilistic", queue_power=1.5, entry_latency_ns=500_000))


@pytest.mark.parametrize("seed", range(2))
def test_the_compiled_market_side_matches_the_reference_without_partial_fills(seed):
    _check(_run(20 + seed, partial_fills=False, entry_latency_ns=1_000_000, response_latency_ns=2_000_000))


def test_the_compiled_market_side_matches_the_reference_on_the_exchange_clock():
    _check(_run(30, venue_clock="exchange", entry_latency_ns=1_000_000, response_latency_ns=1_000_000))
