"""The compiled fill model and its pure-Python reference agree exactly, on every shared recording.

``apps/engine/execution/_fillmodel.pyx`` (``LevelBook``, ``QueueState`` and the three queue rules) against
``apps/engine/execution/fillmodel.py`` (``PyLevelBook``, ``PyQueueState``, the functions):

- the queue rules and the queue state, on generated inputs (ties, zeros, NaN, infinities included): the same
  doubles, bit for bit (``-0.0`` is not ``0.0`` here), and the same exceptions;
- the level book, step by step on every shared Binance recording (the engine fingerprint's list,
  :data:`apps.marketdata.recordings.BINANCE_RAW_RECORDINGS`): every book ticker, snapshot and diff applied to both as
  the paper venue applies them, and after each one the best ticks, the displayed size and the crossing levels and
  sizes at ticks around both touches compared with ``==``; the whole book every 64 events and at the end;
- the whole backtest on the same recordings, for each strategy of the engine fingerprint (GLFT, fixed spread,
  Avellaneda–Stoikov): the paper venue run once with the reference classes and once with the compiled ones, and
  every decision, every fill and the summary compared through the fingerprint tool's digests.
"""

from __future__ import annotations

import math
import struct
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from apps.engine.execution import _fillmodel, fillmodel, paper
from apps.engine.execution.fillmodel import PyLevelBook, PyQueueState, QueueModelParams
from apps.engine.market.events import BestBidAsk, DepthSnapshot, DepthUpdate, Side
from apps.engine.simulation.backtest import EngineLoop
from apps.marketdata.recordings import BINANCE_RAW_RECORDINGS, load_binance_raw
from tools.engine_fingerprint import digest, strategies, venue

DATA = Path(__file__).resolve().parents[3] / ".." / "shared" / "data"
PARAMS = [
    QueueModelParams("risk_averse"),
    QueueModelParams("probabilistic", 1.0),
    QueueModelParams("probabilistic", 0.5),
    QueueModelParams("probabilistic", 3.0),
]
# market events per recording, as tools/engine_fingerprints.txt records them: the whole recording was fed
EVENTS = {"usdm-btcusdt": 93_954, "usdm-ethusdt": 74_655, "spot-btcusdt": 99_574}


def bits(x):
    """A value with its floats as their exact bit patterns (so -0.0 != 0.0 and NaN == NaN)."""
    if isinstance(x, float):
        return ("f", struct.pack("<d", x))
    if isinstance(x, tuple):
        return tuple(bits(v) for v in x)
    return x


def outcome(fn, *args):
    try:
        return bits(fn(*args))
    except (OverflowError, ValueError, ZeroDivisionError) as exc:
        return type(exc).__name__


# --- the pure rules and the queue state ----------------------------------------------------------------------

_size = st.one_of(
    st.sampled_from([0.0, -0.0, 1.0, 0.5, 2.5, 1e-9, 1e300, math.inf, math.nan]),
    st.floats(min_value=-5.0, max_value=50.0, allow_nan=False),
)
_power = st.sampled_from([0.5, 1.0, 3.0, 1e3, math.inf, math.nan])


@settings(max_examples=2000, deadline=None)
@given(_size, _size, _power)
def test_cancel_share_ahead_is_the_same_double(ahead, behind, power):
    ref = outcome(fillmodel.cancel_share_ahead, ahead, behind, power)
    assert outcome(_fillmodel.cancel_share_ahead, ahead, behind, power) == ref


@settings(max_examples=2000, deadline=None)
@given(_size, _size, _size)
def test_queue_after_trade_is_the_same_doubles(ahead, remaining, volume):
    ref = outcome(fillmodel.queue_after_trade, ahead, remaining, volume)
    assert outcome(_fillmodel.queue_after_trade, ahead, remaining, volume) == ref


@settings(max_examples=2000, deadline=None)
@given(_size, _size)
def test_whole_fill_is_the_same_double(part, remaining):
    ref = outcome(fillmodel.whole_fill, part, remaining)
    assert outcome(_fillmodel.whole_fill, part, remaining) == ref
    assert ref == bits(remaining if part > 0.0 else 0.0)  # whole when reached (NaN is not), else nothing


@settings(max_examples=3000, deadline=None)
@given(_size, _size, _size, _size, st.sampled_from(PARAMS))
def test_queue_after_level_change_is_the_same_doubles(ahead, prev_size, new_size, credit, params):
    ref = outcome(fillmodel.queue_after_level_change, ahead, prev_size, new_size, credit, params)
    assert outcome(_fillmodel.queue_after_level_change, ahead, prev_size, new_size, credit, params) == ref


_queue_op = st.one_of(
    st.tuples(st.just("observe"), st.floats(min_value=0.0, max_value=20.0)),
    st.tuples(st.just("trade"), st.floats(min_value=0.0, max_value=5.0)),
    st.tuples(st.just("through"), st.just(0.0)),
)


def _queue_state(q):
    return bits((q.ahead, q.level_size, q.priority, q.trade_credit))


@settings(max_examples=1000, deadline=None)
@given(
    st.one_of(st.none(), st.floats(min_value=0.0, max_value=20.0)),
    st.lists(_queue_op, max_size=30),
    st.sampled_from(PARAMS),
)
def test_queue_state_moves_like_the_reference_under_the_venues_operations(ahead, ops, params):
    ref, com = PyQueueState(ahead, ahead, 3), _fillmodel.QueueState(ahead, ahead, 3)
    assert _queue_state(com) == _queue_state(ref)
    for op, x in ops:
        raised = []
        for q in (ref, com):
            # the paper venue's own uses of the state (_on_trade, _after_book_change)
            try:
                if op == "observe":
                    q.observe_level(x, params)
                elif op == "trade":
                    q.trade_credit += x
                    if q.ahead is not None:
                        _, q.ahead = fillmodel.queue_after_trade(q.ahead, 1.0, x)
                else:
                    q.ahead = 0.0
            except OverflowError:  # (A/B)^p beyond a double: the reference raises, so must the compiled one
                raised.append(type(q).__name__)
        assert raised in ([], ["PyQueueState", "QueueState"]), (op, x, raised)
        if raised:
            return
        assert _queue_state(com) == _queue_state(ref), (op, x)
    assert com == _fillmodel.QueueState(ref.ahead, ref.level_size, ref.priority, ref.trade_credit)
    assert repr(com) == repr(ref).replace("PyQueueState", "QueueState")


def test_a_reference_overflow_is_a_compiled_overflow():
    with pytest.raises(OverflowError):
        fillmodel.cancel_share_ahead(1e-10, 1e200, 2.0)
    with pytest.raises(OverflowError):
        _fillmodel.cancel_share_ahead(1e-10, 1e200, 2.0)


# --- the level book on the recordings -------------------------------------------------------------------------


@pytest.fixture(scope="module", params=list(BINANCE_RAW_RECORDINGS))
def recording(request):
    name = request.param
    files, tick, lot = BINANCE_RAW_RECORDINGS[name]
    missing = [f for f in files if not (DATA / f).exists()]
    if missing:
        pytest.skip(f"shared recording missing: {missing}")
    events = load_binance_raw(DATA, files)
    return name, events, tick, lot


def _reads(book, ticks, crossing_ticks):
    out = [book.best_tick(Side.BUY), book.best_tick(Side.SELL), book.has_depth]
    for side in (Side.BUY, Side.SELL):
        out += [bits(book.level_size(side, t)) for t in ticks]
        for t in crossing_ticks:
            out += [bits(book.crossing_size(side, t)), bits(tuple(book.crossing_levels(side, t)))]
    return out


def test_the_level_books_agree_after_every_event_of_every_recording(recording):
    name, events, tick, _ = recording
    ref, com = PyLevelBook(tick), _fillmodel.LevelBook(tick)
    n = 0
    for ev in events:
        cls = type(ev)
        if cls is BestBidAsk:
            args = (ev.bid_px, ev.bid_size, ev.ask_px, ev.ask_size)
            ref.apply_bbo(*args)
            com.apply_bbo(*args)
        elif cls is DepthSnapshot:
            ref.apply_snapshot(ev.bids, ev.asks)
            com.apply_snapshot(ev.bids, ev.asks)
        elif cls is DepthUpdate:
            ref.apply_diff(ev.bids, ev.asks)
            com.apply_diff(ev.bids, ev.asks)
        else:
            continue
        n += 1
        bb, ba = ref.best_tick(Side.BUY), ref.best_tick(Side.SELL)
        centre = bb if bb is not None else (ba if ba is not None else 0)
        # around both touches, inside the spread and a few levels deep (where our orders rest and cross)
        near = {centre + k for k in (-40, -5, -1, 0, 1, 2, 5, 40)} | ({ba} if ba is not None else set())
        ticks = set(near)
        # and at the edges of what the depth data covered, where "unknown" turns into "known empty"
        for edge in (ref._bid_floor, ref._ask_ceiling):
            if edge is not None:
                ticks |= {edge - 1, edge, edge + 1}
        ticks, near = sorted(ticks), sorted(near)
        assert _reads(com, ticks, near) == _reads(ref, ticks, near), f"{name}: event {n} ({cls.__name__})"
        if n % 64 == 0:
            assert com.bids == ref.bids and com.asks == ref.asks, f"{name}: book after event {n}"
            assert (com._bid_floor, com._ask_ceiling) == (ref._bid_floor, ref._ask_ceiling)
    assert com.bids == ref.bids and com.asks == ref.asks
    assert n > 50_000, f"{name}: only {n} book events"


# --- the level book's compiled paths on generated books ---------------------------------------------------------


class _Float(float):
    """A float subclass: the compiled diff reads it through Python's generic unpacking, not in place."""


_SHAPES = {
    "float-tuple": lambda px, sz: (px, sz),
    "list": lambda px, sz: [px, sz],
    "float-subclass": lambda px, sz: (_Float(px), _Float(sz)),
    "int-size": lambda px, sz: (px, int(sz)) if math.isfinite(sz) and sz == int(sz) else (px, sz),
}


def _whole(book):
    # the whole state (as dicts: the reference's keep insertion order, the compiled copies list ticks ascending)
    return (book.bids, book.asks, book._bid_floor, book._ask_ceiling, book.has_depth)


def _apply(book, kind, args):
    try:
        getattr(book, kind)(*args)
    except (OverflowError, ValueError, TypeError) as exc:
        return type(exc).__name__
    return None


@pytest.mark.parametrize("shape", list(_SHAPES))
@pytest.mark.parametrize("order", ["ascending", "descending", "shuffled"])
def test_the_level_books_agree_on_deep_generated_books_in_any_level_order(shape, order):
    # Thousands of ticks per side (dozens of the compiled side's 64-level blocks, split and emptied as the diffs go),
    # diffs across the whole side in price order (as Binance sends them: the block hint's fast case), reversed or
    # shuffled, with crossing diffs, book tickers and now and then a bad price; after each step every read the
    # venue makes, over ticks deep into both sides, and the whole book must be the reference's.
    import numpy as np

    rng = np.random.default_rng(11)
    make = _SHAPES[shape]
    ref, com = PyLevelBook(0.5), _fillmodel.LevelBook(0.5)
    levels = [(float(t) * 0.5, 1.0) for t in range(1000, 3000)]
    for book in (ref, com):
        book.apply_snapshot(levels[:1000], levels[1001:])
    for step in range(100):
        bb, ba = ref.best_tick(Side.BUY), ref.best_tick(Side.SELL)
        if step % 10 == 4 and bb is not None and ba is not None and bb < ba:
            # a book ticker that only resizes both best levels (the compiled book's no-search case)
            args = (bb * 0.5, float(step), ba * 0.5, float(step + 1))
            kind = "apply_bbo"
        elif step % 10 == 9:
            bid = float(rng.integers(1500, 2500))
            args = (bid * 0.5, 1.0, (bid + float(rng.integers(1, 4))) * 0.5, 2.0)
            kind = "apply_bbo"
        else:
            sides = []
            for lo, hi in ((0, 2100), (1900, 4000)):  # overlapping ranges: some diffs cross the other side
                picked = np.sort(rng.choice(np.arange(lo, hi), size=int(rng.integers(1, 120)), replace=False))
                if order == "descending":
                    picked = picked[::-1]
                elif order == "shuffled":
                    rng.shuffle(picked)
                sizes = np.where(rng.random(len(picked)) < 0.3, 0.0, rng.integers(1, 5, len(picked)).astype(float))
                sides.append([make(float(t) * 0.5, float(z)) for t, z in zip(picked, sizes, strict=True)])
            if step % 25 == 24:  # a bad price part-way through the asks: both raise after the same levels
                sides[1].insert(len(sides[1]) // 2, make(math.nan if step % 50 == 49 else math.inf, 1.0))
            kind, args = "apply_diff", (tuple(sides[0]), tuple(sides[1]))
        err = _apply(com, kind, args)
        assert err == _apply(ref, kind, args), f"step {step}"
        assert _whole(com) == _whole(ref), f"step {step}"
        if err is not None:
            # the same levels were applied before the bad one, but the reference's best-tick cache is only written
            # after a side's loop (a stale best after the exception; the compiled book's best is always the true
            # one, as with the std::map before it): both resynchronise on a snapshot, as the venue would
            assert err in ("OverflowError", "ValueError")
            for book in (ref, com):
                book.apply_snapshot(
                    [(t * 0.5, z) for t, z in sorted(ref.bids.items()) if t < 2000],
                    [(t * 0.5, z) for t, z in sorted(ref.asks.items()) if t >= 2000],
                )
            continue
        probe = sorted({int(t) for t in rng.integers(0, 4000, 8)} | {ref.best_tick(Side.BUY) or 0})
        assert _reads(com, probe, probe) == _reads(ref, probe, probe), f"step {step}"
    assert len(ref.bids) > 200 and len(ref.asks) > 200


# --- the backtest on the recordings ------------------------------------------------------------------------------


def _backtests(events, tick, lot):
    out = {}
    for label, strategy in strategies(tick, lot).items():
        v = venue(tick, lot)
        result = EngineLoop(strategy, v, name=label).run(events)
        s = result.stats
        out[label] = (
            type(v.book),
            (s.market_events, s.actions, s.order_events, len(result.decisions), len(result.fills)),
            digest(result.decisions),
            digest(result.fills),
            digest([result.summary(timing=False)]),
        )
    return out


def test_the_backtest_is_identical_with_the_compiled_fill_model(recording, monkeypatch):
    name, events, tick, lot = recording
    compiled_runs = _backtests(events, tick, lot)  # the venue as the engine builds it: the compiled classes
    monkeypatch.setattr(paper, "LevelBook", PyLevelBook)
    monkeypatch.setattr(paper, "QueueState", PyQueueState)
    reference_runs = _backtests(events, tick, lot)
    for label, got in compiled_runs.items():
        want = reference_runs[label]
        assert got[0] is _fillmodel.LevelBook and want[0] is PyLevelBook, "the two runs used the same classes"
        assert got[1:] == want[1:], f"{name} {label}: compiled (counts, decisions, fills, summary) differ"
        assert got[1][0] == EVENTS[name], f"{name}: {got[1][0]} market events, not the whole recording"
    assert sum(got[1][4] for got in compiled_runs.values()) > 0, f"{name}: no fills at all: nothing was compared"
