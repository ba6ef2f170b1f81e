"""Pure queue rules, the level book and latency models.

The level book and queue-state tests run against both implementations: the pure-Python reference and the compiled
class that the venues use (``apps/engine/execution/_fillmodel.pyx``; docs/compiled-core.md).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from apps.engine.execution import _fillmodel
from apps.engine.execution.fillmodel import (
    PyLevelBook,
    PyQueueState,
    QueueModelParams,
    cancel_share_ahead,
    queue_after_level_change,
    queue_after_trade,
)
from apps.engine.execution.latency import ConstantLatency, EmpiricalLatency, as_latency_model
from apps.engine.market.events import DepthSnapshot, DepthUpdate, Side

BOOKS = [pytest.param(PyLevelBook, id="reference"), pytest.param(_fillmodel.LevelBook, id="compiled")]
QUEUES = [pytest.param(PyQueueState, id="reference"), pytest.param(_fillmodel.QueueState, id="compiled")]
both_books = pytest.mark.parametrize("LevelBook", BOOKS)
both_queues = pytest.mark.parametrize("QueueState", QUEUES)

RISK_AVERSE = QueueModelParams("risk_averse")
PROPORTIONAL = QueueModelParams("probabilistic", power=1.0)


def test_it_consumes_the_queue_ahead_before_filling_us() -> None:
    assert queue_after_trade(ahead=5.0, remaining=1.0, volume=3.0) == (0.0, 2.0)
    fill, ahead = queue_after_trade(ahead=5.0, remaining=1.0, volume=5.4)
    assert fill == pytest.approx(0.4) and ahead == 0.0
    assert queue_after_trade(ahead=5.0, remaining=1.0, volume=50.0) == (1.0, 0.0)


def test_risk_averse_attributes_every_cancel_to_the_back() -> None:
    # 5 ahead, 4 behind, 2 cancelled: nothing ahead moves
    ahead, _ = queue_after_level_change(5.0, prev_size=9.0, new_size=7.0, trade_credit=0.0, params=RISK_AVERSE)
    assert ahead == 5.0


def test_risk_averse_never_lets_the_queue_ahead_exceed_the_displayed_size() -> None:
    ahead, _ = queue_after_level_change(5.0, prev_size=9.0, new_size=3.0, trade_credit=0.0, params=RISK_AVERSE)
    assert ahead == 3.0


def test_probabilistic_splits_cancels_in_proportion_to_the_queue_with_power_one() -> None:
    ahead, _ = queue_after_level_change(5.0, prev_size=9.0, new_size=7.0, trade_credit=0.0, params=PROPORTIONAL)
    assert ahead == pytest.approx(5.0 - 2.0 * 5.0 / 9.0)


def test_probabilistic_power_shifts_cancels_towards_the_bigger_side() -> None:
    p1 = cancel_share_ahead(5.0, 4.0, 1.0)
    p3 = cancel_share_ahead(5.0, 4.0, 3.0)
    assert p3 > p1 > 0.5
    assert cancel_share_ahead(0.0, 4.0, 2.0) == 0.0
    assert cancel_share_ahead(3.0, 0.0, 2.0) == 1.0
    assert cancel_share_ahead(1e6, 1.0, 50.0) == pytest.approx(1.0)  # no overflow


def test_a_decrease_explained_by_trades_is_not_counted_as_a_cancel() -> None:
    # trade of 2 already moved ahead 5 -> 3; the depth update then shows 9 -> 7
    ahead, credit = queue_after_level_change(3.0, prev_size=9.0, new_size=7.0, trade_credit=2.0, params=PROPORTIONAL)
    assert ahead == 3.0 and credit == 0.0


@both_queues
def test_queue_state_joins_behind_everything_on_first_sight_of_an_unknown_level(QueueState) -> None:
    q = QueueState(ahead=None, level_size=None, priority=1)
    q.observe_level(4.0, PROPORTIONAL)
    assert q.ahead == 4.0
    q.observe_level(6.0, PROPORTIONAL)  # joiners behind
    assert q.ahead == 4.0


def test_queue_model_params_validate_names_the_bad_value() -> None:
    with pytest.raises(ValueError, match="queue_model"):
        QueueModelParams("fifo").validate()
    with pytest.raises(ValueError, match="queue_power"):
        QueueModelParams("probabilistic", power=float("nan")).validate()


# --- level book ---------------------------------------------------------------------------------


@both_books
def test_level_book_knows_what_it_does_not_know_with_bbo_only(LevelBook) -> None:
    b = LevelBook(0.1)
    b.apply_bbo(100.0, 5.0, 100.2, 3.0)
    assert b.level_size(Side.BUY, b.tick_of(100.0)) == 5.0
    assert b.level_size(Side.BUY, b.tick_of(100.1)) == 0.0  # inside the spread
    assert b.level_size(Side.BUY, b.tick_of(99.9)) is None  # behind the best, never seen
    b.apply_bbo(99.8, 2.0, 100.1, 1.0)  # bid 100.0 is gone
    assert b.level_size(Side.BUY, b.tick_of(100.0)) == 0.0
    assert b.level_size(Side.SELL, b.tick_of(100.2)) is None


@both_books
def test_level_book_treats_missing_levels_inside_a_snapshot_as_empty(LevelBook) -> None:
    b = LevelBook(0.1)
    b.apply_snapshot(((100.0, 1.0), (99.7, 2.0)), ((100.1, 1.0),))
    assert b.level_size(Side.BUY, b.tick_of(99.8)) == 0.0
    assert b.level_size(Side.BUY, b.tick_of(99.5)) is None
    b.apply_diff(((99.7, 0.0),), ())
    assert b.level_size(Side.BUY, b.tick_of(99.7)) == 0.0
    assert b.crossing_size(Side.BUY, b.tick_of(100.1)) == 1.0
    assert b.crossing_size(Side.SELL, b.tick_of(100.1)) == 0.0
    assert b.crossing_size(Side.SELL, b.tick_of(100.0)) == 1.0


class _DictBook:
    """The reference: two plain dicts, no cache, the same rules as :class:`LevelBook` written the obvious way."""

    def __init__(self) -> None:
        self.bids: dict[int, float] = {}
        self.asks: dict[int, float] = {}
        self.has_depth = False

    @staticmethod
    def _put(levels: dict[int, float], tick: int, size: float) -> None:
        if size > 0.0:
            levels[tick] = float(size)
        else:
            levels.pop(tick, None)

    def snapshot(self, bids, asks, tick_size: float) -> None:
        self.bids, self.asks = {}, {}
        for px, sz in bids:
            self._put(self.bids, round(px / tick_size), sz)
        for px, sz in asks:
            self._put(self.asks, round(px / tick_size), sz)
        self.has_depth = True

    def diff(self, bids, asks, tick_size: float) -> None:
        for px, sz in bids:
            self._put(self.bids, round(px / tick_size), sz)
        for px, sz in asks:
            self._put(self.asks, round(px / tick_size), sz)
        if self.bids and self.asks and max(self.bids) >= min(self.asks):
            # the diff is the newest word on the levels it sets: the opposite levels it crosses go
            top_bid = max((round(px / tick_size) for px, sz in bids if sz > 0), default=None)
            top_ask = min((round(px / tick_size) for px, sz in asks if sz > 0), default=None)
            if top_bid is not None:
                self.asks = {t: s for t, s in self.asks.items() if t > top_bid}
            if top_ask is not None:
                self.bids = {t: s for t, s in self.bids.items() if t < top_ask}

    def bbo(self, bt: int, bid_size: float, at: int, ask_size: float) -> None:
        if not self.has_depth:
            self.bids, self.asks = {}, {}
        self.bids = {t: s for t, s in self.bids.items() if t <= bt and t < at}
        self.asks = {t: s for t, s in self.asks.items() if t >= at and t > bt}
        self._put(self.bids, bt, bid_size)
        self._put(self.asks, at, ask_size)

    def best(self) -> tuple[int | None, int | None]:
        return max(self.bids, default=None), min(self.asks, default=None)


def _assert_same(book: PyLevelBook, ref: _DictBook, where: str) -> None:
    got = (book.best_tick(Side.BUY), book.best_tick(Side.SELL))
    assert got == ref.best(), f"{where}: best (bid, ask) ticks {got}, reference {ref.best()}"
    assert book.bids == ref.bids and book.asks == ref.asks, f"{where}: levels differ from the reference"


@both_books
def test_level_book_finds_a_higher_bid_added_by_the_diff_that_deletes_the_best(LevelBook) -> None:
    b = LevelBook(1.0)
    b.apply_snapshot(((100.0, 1.0), (99.0, 1.0)), ((103.0, 1.0),))
    b.apply_diff(((100.0, 0.0), (101.0, 2.0)), ())
    assert b.best_tick(Side.BUY) == 101
    b.apply_diff((), ((103.0, 0.0), (102.0, 2.0)))
    assert b.best_tick(Side.SELL) == 102
    # the same through _set (the BBO path): delete the best, then add above it while the cache is invalid
    b.apply_bbo(98.0, 1.0, 102.0, 2.0)
    assert b.best_tick(Side.BUY) == 98
    b._set(Side.BUY, 98, 0.0)
    b._set(Side.BUY, 100, 1.0)
    assert b.best_tick(Side.BUY) == 100


_levels = st.lists(st.tuples(st.integers(0, 40), st.sampled_from([0.0, 0.0, 1.0, 2.5])), max_size=6)
_op = st.one_of(
    st.tuples(st.just("diff"), _levels, _levels),
    st.tuples(st.just("snapshot"), _levels, _levels),
    st.tuples(st.just("bbo"), st.integers(0, 40), st.integers(1, 8)),
)


@both_books
@settings(max_examples=400, deadline=None)
@given(st.lists(_op, min_size=1, max_size=40), st.sampled_from([1.0, 0.1, 0.01]))
def test_level_book_best_prices_equal_a_dict_reference_after_every_update(LevelBook, ops, tick_size: float) -> None:
    book, ref = LevelBook(tick_size), _DictBook()
    for i, op in enumerate(ops):
        if op[0] == "bbo":
            bt, at = op[1], op[1] + op[2]
            book.apply_bbo(bt * tick_size, 1.0, at * tick_size, 2.0)
            ref.bbo(bt, 1.0, at, 2.0)
        else:
            bids = tuple((t * tick_size, sz) for t, sz in op[1])
            asks = tuple((t * tick_size, sz) for t, sz in op[2])
            if op[0] == "snapshot":
                book.apply_snapshot(bids, asks)
                ref.snapshot(bids, asks, tick_size)
            else:
                book.apply_diff(bids, asks)
                ref.diff(bids, asks, tick_size)
        _assert_same(book, ref, f"after op {i} {op[0]}")


@both_books
def test_level_book_best_prices_equal_a_dict_reference_on_every_recorded_usdm_diff(LevelBook) -> None:
    from apps.marketdata.parsers import Quarantined, parse_file
    from tests.conftest import shared_data

    path = shared_data("hftbacktest-binance-usdm-btcusdt-20240808", "raw", "usdm_btcusdt_20240808.gz")
    book, ref = LevelBook(0.1), _DictBook()
    diffs = 0
    for ev in parse_file("binance-raw", path):
        if isinstance(ev, Quarantined):
            continue
        if isinstance(ev, DepthSnapshot):
            book.apply_snapshot(ev.bids, ev.asks)
            ref.snapshot(ev.bids, ev.asks, 0.1)
        elif isinstance(ev, DepthUpdate):
            book.apply_diff(ev.bids, ev.asks)
            ref.diff(ev.bids, ev.asks, 0.1)
            diffs += 1
            _assert_same(book, ref, f"after diff {diffs} (u={ev.last_update_id})")
    # the depth stream alone (bookTicker updates go through apply_bbo, which the property test covers)
    assert diffs == 6551


# --- latency ------------------------------------------------------------------------------------


def test_constant_latency_is_constant_and_validates() -> None:
    rng = np.random.default_rng(0)
    assert {ConstantLatency(250).sample_ns(rng) for _ in range(5)} == {250}
    with pytest.raises(ValueError, match="latency_ns"):
        as_latency_model(-1)
    with pytest.raises(ValueError):
        as_latency_model(1.5)


def test_empirical_latency_reproduces_its_samples_deterministically() -> None:
    model = EmpiricalLatency.from_array(np.array([1_000, 2_000, 50_000]))
    r1, r2 = np.random.default_rng(7), np.random.default_rng(7)
    draws1 = [model.sample_ns(r1) for _ in range(200)]
    draws2 = [model.sample_ns(r2) for _ in range(200)]
    assert draws1 == draws2
    assert set(draws1) == {1_000, 2_000, 50_000}
    # the sample mean approaches the recorded mean
    big = np.random.default_rng(1)
    mean = np.mean([model.sample_ns(big) for _ in range(20_000)])
    assert mean == pytest.approx(model.mean_ns, rel=0.05)


def test_empirical_latency_rejects_bad_samples() -> None:
    with pytest.raises(ValueError, match="samples_ns"):
        EmpiricalLatency.from_array([])
    with pytest.raises(ValueError, match="samples_ns"):
        EmpiricalLatency.from_array([1.0, float("nan")])
    with pytest.raises(ValueError, match="samples_ns"):
        EmpiricalLatency((5, -1)).validate()
