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
