"""OrderBook and BinanceBookSync: unit behaviour on hand-made diffs, then the real Binance recordings."""

from __future__ import annotations

import contextlib
import itertools
import math
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from apps.engine.market import _book
from apps.engine.market.book import BinanceBookSync, BookSyncParams, GapEvent, PyOrderBook, SyncRule, SyncState
from apps.engine.market.events import BestBidAsk, DepthSnapshot, DepthUpdate, EventError, Side

DATA = Path(__file__).resolve().parents[3] / ".." / "shared" / "data"
USDM_RAW = DATA / "hftbacktest-binance-usdm-btcusdt-20240808" / "raw" / "usdm_btcusdt_20240808.gz"
SPOT_RAW = [
    DATA / "hftbacktest-binance-spot-btcusdt-20240808" / "raw" / "spot_btcusdt_20240808.gz",
    DATA / "hftbacktest-binance-spot-btcusdt-20240808" / "raw" / "spot_btcusdt_20240809.gz",
]


# Every OrderBook test runs against both implementations: the pure-Python reference and the compiled class that
# apps.engine.market.book selects (importing _book directly: this module fails loudly when it did not build).
BOOKS = [pytest.param(PyOrderBook, id="reference"), pytest.param(_book.OrderBook, id="compiled")]
both = pytest.mark.parametrize("Book", BOOKS)


def snap(bids, asks, last_id=0):
    return DepthSnapshot(1, 1, tuple(bids), tuple(asks), last_update_id=last_id)


def diff(first, last, prev=0, bids=(), asks=()):
    return DepthUpdate(2, 2, tuple(bids), tuple(asks), first_update_id=first, last_update_id=last, prev_update_id=prev)


# --- OrderBook ---------------------------------------------------------------------------------------


@both
def test_it_matches_a_naive_dict_book_under_random_updates(Book):
    rng = np.random.default_rng(7)
    book = Book()
    ref_bids: dict[float, float] = {}
    ref_asks: dict[float, float] = {}
    for _ in range(3000):
        # bids on ticks 1..60, asks on 61..120 so the reference is never crossed
        bids = [(float(t), float(rng.choice([0.0, rng.uniform(0.1, 5)]))) for t in rng.integers(1, 61, 3)]
        asks = [(float(t), float(rng.choice([0.0, rng.uniform(0.1, 5)]))) for t in rng.integers(61, 121, 3)]
        book.apply_update(DepthUpdate(0, 0, tuple(bids), tuple(asks)))
        for ref, levels in ((ref_bids, bids), (ref_asks, asks)):
            for px, sz in levels:
                if sz == 0:
                    ref.pop(px, None)
                else:
                    ref[px] = sz
    assert book.bids() == sorted(ref_bids.items(), key=lambda kv: -kv[0])
    assert book.asks() == sorted(ref_asks.items())
    assert book.best_bid() == max(ref_bids.items())
    assert book.best_ask() == min(ref_asks.items())
    assert book.bids(3) == book.bids()[:3]
    assert not book.is_crossed


@both
def test_it_reports_none_on_an_empty_side(Book):
    book = Book()
    assert book.best_bid() is None and book.best_ask() is None
    assert book.mid is None and book.spread is None and not book.is_crossed
    book.set_level(Side.BUY, 100.0, 1.0)
    assert book.best_bid() == (100.0, 1.0) and book.mid is None


@both
def test_it_deletes_on_zero_and_ignores_deleting_a_missing_level(Book):
    book = Book()
    book.apply_snapshot(snap([(100.0, 1.0), (99.0, 2.0)], [(101.0, 3.0)]))
    book.apply_update(diff(0, 0, bids=[(100.0, 0.0), (98.0, 0.0)]))
    assert book.bids() == [(99.0, 2.0)]
    assert book.mid == pytest.approx(100.0) and book.spread == pytest.approx(2.0)


@both
def test_it_flags_crossed_and_locked_books(Book):
    book = Book()
    book.apply_snapshot(snap([(100.0, 1.0)], [(101.0, 1.0)]))
    book.set_level(Side.SELL, 100.0, 1.0)  # locked
    assert book.is_crossed
    book.set_level(Side.SELL, 99.5, 1.0)  # crossed
    assert book.is_crossed and book.best_ask() == (99.5, 1.0)


@both
def test_a_snapshot_replaces_the_book_and_sets_the_update_id(Book):
    book = Book()
    book.apply_update(diff(0, 0, bids=[(50.0, 1.0)], asks=[(500.0, 1.0)]))
    book.apply_snapshot(snap([(100.0, 1.0), (101.0, 2.0)], [(102.0, 1.0)], last_id=42))
    assert book.bids() == [(101.0, 2.0), (100.0, 1.0)]  # re-sorted best first
    assert book.asks() == [(102.0, 1.0)] and book.last_update_id == 42


@both
@pytest.mark.parametrize("level", [(math.nan, 1.0), (-1.0, 1.0), (100.0, -1.0), (100.0, math.nan), (math.inf, 1.0)])
def test_it_rejects_a_bad_level_without_changing_anything(Book, level):
    book = Book()
    book.apply_snapshot(snap([(100.0, 1.0)], [(101.0, 1.0)], last_id=5))
    with pytest.raises(EventError):
        book.apply_update(diff(6, 6, bids=[(99.0, 1.0), level]))
    assert book.bids() == [(100.0, 1.0)] and book.last_update_id == 5


@both
def test_an_unchecked_book_applies_validated_levels_as_the_checked_one_does(Book):
    checked, unchecked = Book(), Book(checked=False)
    for book in (checked, unchecked):
        book.apply_snapshot(snap([(100.0, 1.0), (99.0, 2.0)], [(101.0, 1.0)], last_id=5))
        book.apply_update(diff(6, 6, bids=[(100.0, 0.0), (100.5, 3.0)], asks=[(101.0, 0.5), (102.0, 4.0)]))
    assert (checked.bids(), checked.asks()) == (unchecked.bids(), unchecked.asks())
    assert unchecked.best_bid() == (100.5, 3.0) and unchecked.last_update_id == 6


@both
def test_a_bad_ask_rejects_the_whole_diff_even_after_good_bids(Book):
    book = Book()
    book.apply_snapshot(snap([(100.0, 1.0)], [(101.0, 1.0)], last_id=5))
    with pytest.raises(EventError, match="size=inf"):
        book.apply_update(diff(6, 6, bids=[(100.0, 0.0), (100.5, 2.0)], asks=[(102.0, math.inf)]))
    assert book.bids() == [(100.0, 1.0)] and book.asks() == [(101.0, 1.0)] and book.last_update_id == 5


@both
def test_a_price_repeated_in_one_diff_ends_at_its_last_size(Book):
    book = Book()
    book.apply_snapshot(snap([(100.0, 1.0)], [(101.0, 1.0)]))
    book.apply_update(diff(0, 0, bids=[(100.0, 0.0), (100.0, 3.0), (99.0, 2.0), (99.0, 0.0)]))
    assert book.bids() == [(100.0, 3.0)]
    book.apply_update(diff(0, 0, asks=[(102.0, 1.0), (102.0, 0.0), (102.0, 0.0), (101.0, 0.0), (101.0, 4.0)]))
    assert book.asks() == [(101.0, 4.0)] and book.n_ask_levels == 1


class _Float(float):
    """A float subclass: the compiled book reads it through Python's generic unpacking, not in place."""


# The compiled book reads a level that is an exact 2-tuple of exact floats in place and anything else through Python's
# unpacking; each shape below must give the reference's book, and the reference's error (type and message) when bad.
_LEVEL_SHAPES = [
    pytest.param(lambda px, sz: (px, sz), id="float-tuple"),
    pytest.param(lambda px, sz: [px, sz], id="list"),
    pytest.param(lambda px, sz: (_Float(px), sz), id="float-subclass-price"),
    pytest.param(lambda px, sz: (px, _Float(sz)), id="float-subclass-size"),
    pytest.param(lambda px, sz: (int(px), sz) if math.isfinite(px) and px == int(px) else (px, sz), id="int-price"),
    pytest.param(lambda px, sz: (px, int(sz)) if math.isfinite(sz) and sz == int(sz) else (px, sz), id="int-size"),
]


def _outcome(book, upd):
    try:
        book.apply_update(upd)
    except Exception as exc:  # noqa: BLE001 - the exception itself is compared
        err = (type(exc), str(exc))
    else:
        err = None
    return err, book.bids(), book.asks(), book.last_update_id


@pytest.mark.parametrize("shape", _LEVEL_SHAPES)
@pytest.mark.parametrize(
    "bad", [None, (math.nan, 1.0), (-1.0, 1.0), (0.0, 1.0), (100.0, -1.0), (100.0, math.nan), (100.0, math.inf)]
)
def test_compiled_level_shapes_give_the_references_book_and_errors(shape, bad):
    bids = [shape(99.0 - k, float(k % 3)) for k in range(6)]
    asks = [shape(101.0 + k, float(k % 2)) for k in range(5)]
    if bad is not None:
        asks.insert(2, shape(*bad))
    books = [PyOrderBook(), _book.OrderBook()]
    for book in books:
        book.apply_snapshot(snap([(99.0, 5.0), (98.5, 1.0)], [(101.0, 2.0)], last_id=3))
    got = [_outcome(book, diff(4, 4, bids=bids, asks=asks)) for book in books]
    assert got[0] == got[1]
    assert (got[1][0] is None) == (bad is None)


@pytest.mark.parametrize("malformed", [(100.0,), (100.0, 1.0, 2.0), 100.0])
def test_compiled_malformed_levels_raise_the_references_error_type(malformed):
    # (the wording of Python's unpacking errors differs between Cython and the interpreter, before this fast path
    # too: the type is the contract)
    errors = []
    for Book in (PyOrderBook, _book.OrderBook):
        book = Book()
        with pytest.raises((TypeError, ValueError)) as info:
            book.apply_update(diff(1, 1, bids=[(99.0, 1.0), malformed]))
        errors.append(info.type)
        assert book.bids() == []
    assert errors[0] == errors[1]


@pytest.mark.parametrize("order", ["ascending", "descending", "shuffled"])
def test_compiled_deep_book_matches_the_reference_in_any_level_order(order):
    # Thousands of levels (dozens of the compiled book's 64-level blocks, split and emptied as diffs go): each diff
    # touches levels across the whole side, in price order (as Binance sends them: the block hint's fast case), in
    # reverse, or shuffled; both books must agree after every diff.
    rng = np.random.default_rng(7)
    ref, fast = PyOrderBook(), _book.OrderBook()
    ticks = np.arange(1, 4001)
    for step in range(120):
        sides = []
        for lo, hi in ((1, 2000), (2001, 4000)):
            picked = rng.choice(ticks[lo - 1 : hi], size=int(rng.integers(1, 160)), replace=False)
            picked = np.sort(picked)
            if order == "descending":
                picked = picked[::-1]
            elif order == "shuffled":
                rng.shuffle(picked)
            sizes = np.where(rng.random(len(picked)) < (0.25 if step > 40 else 0.02), 0.0, rng.random(len(picked)))
            sides.append([(float(t) * 0.5, float(s)) for t, s in zip(picked, sizes, strict=True)])
        upd = diff(step + 1, step + 1, bids=sides[0], asks=sides[1])
        ref.apply_update(upd)
        fast.apply_update(upd)
        assert fast.bids() == ref.bids() and fast.asks() == ref.asks()
    assert ref.n_bid_levels > 200 and ref.n_ask_levels > 200


# --- OrderBook against an obviously-correct reference (hypothesis) -------------------------------------


class _RefBook:
    """Naive book: one dict per side, levels applied one by one, sorted on every read."""

    def __init__(self) -> None:
        self.bid: dict[float, float] = {}
        self.ask: dict[float, float] = {}
        self.last_update_id = 0

    @staticmethod
    def _check(levels) -> None:
        for px, sz in levels:
            if not (math.isfinite(px) and px > 0 and math.isfinite(sz) and sz >= 0):
                raise EventError(f"bad level {px!r} {sz!r}")

    def apply(self, ev) -> None:
        self._check(ev.bids)
        self._check(ev.asks)
        if isinstance(ev, DepthSnapshot):
            self.bid = {px: sz for px, sz in ev.bids if sz > 0}
            self.ask = {px: sz for px, sz in ev.asks if sz > 0}
            self.last_update_id = ev.last_update_id
            return
        for side, levels in ((self.bid, ev.bids), (self.ask, ev.asks)):
            for px, sz in levels:
                if sz == 0:
                    side.pop(px, None)
                else:
                    side[px] = sz
        if ev.last_update_id:
            self.last_update_id = ev.last_update_id

    def bids(self) -> list[tuple[float, float]]:
        return sorted(self.bid.items(), reverse=True)

    def asks(self) -> list[tuple[float, float]]:
        return sorted(self.ask.items())


# One shared price grid for both sides, so levels collide, repeat within a diff and books cross.
_GRID = [100.0 + 0.5 * i for i in range(12)]
_good_size = st.one_of(st.sampled_from([0.0, -0.0, 0.0, 1.0]), st.floats(min_value=1e-9, max_value=1e6))
_good_level = st.tuples(st.sampled_from(_GRID), _good_size)
_bad_level = st.one_of(
    st.tuples(st.sampled_from([math.nan, math.inf, -math.inf, 0.0, -0.0, -100.0]), _good_size),
    st.tuples(st.sampled_from(_GRID), st.sampled_from([math.nan, math.inf, -math.inf, -1.0, -5e-324])),
)


@st.composite
def _book_events(draw):
    bids = draw(st.lists(_good_level, max_size=10))
    asks = draw(st.lists(_good_level, max_size=10))
    if draw(st.integers(0, 7)) == 0:  # now and then one bad level anywhere in either side
        side = bids if draw(st.booleans()) else asks
        side.insert(draw(st.integers(0, len(side))), draw(_bad_level))
    uid = draw(st.sampled_from([0, 0, 7, 8, 9]))
    ts = draw(st.integers(1, 10**6))
    if draw(st.integers(0, 11)) == 0:
        return DepthSnapshot(ts, ts + 1, tuple(bids), tuple(asks), last_update_id=uid)
    return DepthUpdate(ts, ts + 1, tuple(bids), tuple(asks), last_update_id=uid)


def _assert_same(book: PyOrderBook, ref: _RefBook) -> None:
    bids, asks = ref.bids(), ref.asks()
    assert book.bids() == bids and book.asks() == asks
    assert book.best_bid() == (bids[0] if bids else None)
    assert book.best_ask() == (asks[0] if asks else None)
    assert (book.n_bid_levels, book.n_ask_levels) == (len(bids), len(asks))
    for n in range(-3, max(len(bids), len(asks)) + 2):
        assert book.bids(n) == bids[:n] and book.asks(n) == asks[:n]
    for px in _GRID:
        assert book.size_at(Side.BUY, px) == ref.bid.get(px, 0.0)
        assert book.size_at(Side.SELL, px) == ref.ask.get(px, 0.0)
    if bids and asks:
        assert book.mid == 0.5 * (bids[0][0] + asks[0][0])
        assert book.spread == asks[0][0] - bids[0][0]
        assert book.is_crossed == (bids[0][0] >= asks[0][0])
    else:
        assert book.mid is None and book.spread is None and not book.is_crossed
    assert book.last_update_id == ref.last_update_id


@both
@settings(max_examples=200, deadline=None)
@given(st.lists(_book_events(), min_size=1, max_size=40))
def test_it_matches_a_naive_reference_book_under_random_diffs_and_snapshots(Book, events):
    book, ref = Book(), _RefBook()
    for ev in events:
        before = (book.last_update_id, book.ts_exch_ns, book.ts_local_ns)
        try:
            ref.apply(ev)
        except EventError:
            with pytest.raises(EventError, match="OrderBook: bad level"):
                (book.apply_snapshot if isinstance(ev, DepthSnapshot) else book.apply_update)(ev)
            assert (book.last_update_id, book.ts_exch_ns, book.ts_local_ns) == before  # untouched
        else:
            (book.apply_snapshot if isinstance(ev, DepthSnapshot) else book.apply_update)(ev)
            assert (book.ts_exch_ns, book.ts_local_ns) == (ev.ts_exch_ns, ev.ts_local_ns)
        _assert_same(book, ref)


# --- BinanceBookSync on hand-made sequences ----------------------------------------------------------


def test_futures_sync_buffers_drops_stale_and_starts_at_the_bridging_diff():
    applied = []
    sync = BinanceBookSync(on_apply=lambda d, b: applied.append(d.last_update_id))
    assert sync.on_diff(diff(1, 5, 0, bids=[(99.0, 9.0)])) is None  # stale: u < 10
    assert sync.on_diff(diff(6, 12, 5, bids=[(100.0, 7.0)])) is None  # bridges 10
    assert sync.needs_snapshot and sync.n_buffered == 2 and applied == []
    assert sync.on_snapshot(snap([(100.0, 1.0)], [(101.0, 1.0)], last_id=10)) == []
    assert applied == [12] and sync.in_sync and sync.n_dropped_stale == 1
    assert sync.book.best_bid() == (100.0, 7.0)
    assert sync.on_diff(diff(13, 15, 12, asks=[(101.0, 0.5)])) is None
    assert sync.book.best_ask() == (101.0, 0.5) and sync.book.last_update_id == 15


def test_futures_sync_reports_a_pu_gap_clears_the_book_and_recovers_on_a_new_snapshot():
    sync = BinanceBookSync(BookSyncParams(rule=SyncRule.FUTURES))
    sync.on_snapshot(snap([(100.0, 1.0)], [(101.0, 1.0)], last_id=10))
    assert sync.on_diff(diff(9, 12, 8)) is None
    gap = sync.on_diff(diff(20, 25, 18))  # pu 18 but the previous u was 12
    assert isinstance(gap, GapEvent)
    assert (gap.kind, gap.expected, gap.got, gap.rule) == ("sequence", 12, 18, SyncRule.FUTURES)
    assert sync.state is SyncState.WAITING_SNAPSHOT and sync.book.best_bid() is None
    assert sync.on_diff(diff(26, 30, 25, bids=[(100.5, 2.0)])) is None  # buffered meanwhile
    assert sync.on_snapshot(snap([(100.0, 1.0)], [(101.0, 1.0)], last_id=27)) == []
    assert sync.in_sync and sync.book.best_bid() == (100.5, 2.0) and sync.n_gaps == 1


def test_spot_sync_uses_u_plus_one_continuity():
    sync = BinanceBookSync(BookSyncParams(rule=SyncRule.SPOT))
    sync.on_diff(diff(5, 10))  # u <= lastUpdateId: stale for spot (futures would keep it)
    sync.on_diff(diff(11, 14, bids=[(100.0, 3.0)]))
    assert sync.on_snapshot(snap([(100.0, 1.0)], [(101.0, 1.0)], last_id=10)) == []
    assert sync.in_sync and sync.n_dropped_stale == 1 and sync.book.best_bid() == (100.0, 3.0)
    assert sync.on_diff(diff(15, 16)) is None
    gap = sync.on_diff(diff(18, 20))
    assert gap is not None and (gap.expected, gap.got) == (17, 18)


def test_spot_sync_is_whole_when_the_stream_has_reached_the_snapshot_exactly():
    """A spot snapshot taken right after the last diff sent (nothing bridges it until the market moves): the buffered
    diff with ``u == lastUpdateId`` proves the book is the snapshot, so the book is in sync without waiting."""
    sync = BinanceBookSync(BookSyncParams(rule=SyncRule.SPOT))
    sync.on_diff(diff(5, 8))
    sync.on_diff(diff(9, 10, bids=[(100.0, 3.0)]))
    assert sync.on_snapshot(snap([(100.0, 3.0)], [(101.0, 1.0)], last_id=10)) == []
    assert sync.in_sync and sync.n_dropped_stale == 2 and sync.n_applied == 0
    assert sync.book.best_bid() == (100.0, 3.0) and sync.book.last_update_id == 10
    assert sync.on_diff(diff(11, 12, asks=[(101.0, 2.0)])) is None and sync.book.best_ask() == (101.0, 2.0)
    # the diff that reaches the snapshot may also come after it
    late = BinanceBookSync(BookSyncParams(rule=SyncRule.SPOT))
    late.on_snapshot(snap([(100.0, 1.0)], [(101.0, 1.0)], last_id=10))
    assert late.on_diff(diff(7, 9)) is None and not late.in_sync  # still behind the snapshot
    assert late.on_diff(diff(10, 10)) is None and late.in_sync
    gap = late.on_diff(diff(13, 14))  # the chain rule holds from the snapshot on
    assert gap is not None and (gap.kind, gap.expected, gap.got) == ("sequence", 11, 13)
    # futures keeps its rule: U <= lastUpdateId <= u already bridges with the diff u == lastUpdateId (applied)
    fut = BinanceBookSync()
    fut.on_snapshot(snap([(100.0, 1.0)], [(101.0, 1.0)], last_id=10))
    assert fut.on_diff(diff(8, 9, 7)) is None and not fut.in_sync
    assert fut.on_diff(diff(10, 10, 9)) is None and fut.in_sync and fut.n_applied == 1


def test_it_reports_a_snapshot_older_than_every_buffered_diff():
    sync = BinanceBookSync()
    sync.on_diff(diff(50, 60, 49))
    gaps = sync.on_snapshot(snap([(100.0, 1.0)], [(101.0, 1.0)], last_id=40))
    assert [(g.kind, g.expected, g.got) for g in gaps] == [("snapshot_too_old", 40, 50)]
    assert sync.needs_snapshot and sync.n_buffered == 1  # the diff waits for the next snapshot


def test_it_ignores_a_snapshot_while_in_sync():
    sync = BinanceBookSync()
    sync.on_snapshot(snap([(100.0, 1.0)], [(101.0, 1.0)], last_id=10))
    sync.on_diff(diff(10, 11, 9))
    sync.on_snapshot(snap([(50.0, 1.0)], [(51.0, 1.0)], last_id=5))
    assert sync.book.best_bid() == (100.0, 1.0) and sync.n_snapshots_ignored == 1


def test_an_unappliable_diff_is_a_gap_and_is_not_rebuffered():
    sync = BinanceBookSync()
    sync.on_snapshot(snap([(100.0, 1.0)], [(101.0, 1.0)], last_id=10))
    gap = sync.on_diff(diff(10, 11, 9, bids=[(math.nan, 1.0)]))
    assert gap is not None and gap.kind == "bad_diff" and sync.n_buffered == 0


def test_the_buffer_drops_the_oldest_diff_when_full():
    sync = BinanceBookSync(BookSyncParams(max_buffer=2))
    for i in range(3):
        sync.on_diff(diff(10 * i, 10 * i + 9, 10 * i - 1))
    assert sync.n_buffered == 2 and sync.n_buffer_overflow == 1


@pytest.mark.parametrize("kwargs", [{"max_buffer": 0}, {"rule": "futures"}, {"max_buffer": 1.5}])
def test_params_validate_names_the_bad_value(kwargs):
    name = next(iter(kwargs))
    with pytest.raises(ValueError, match=name):
        BookSyncParams(**kwargs).validate()


# --- real recordings -----------------------------------------------------------------------------------


def _need(*paths):
    missing = [p for p in paths if not p.exists()]
    if missing:
        pytest.skip(f"real data not present: {missing[0]}")


def _parsed(paths):
    from apps.marketdata.parsers.binance_raw import parse_file

    _need(*paths)
    return list(itertools.chain.from_iterable(parse_file(p) for p in paths))


@pytest.fixture(scope="module")
def usdm_events():
    return _parsed([USDM_RAW])


@pytest.fixture(scope="module")
def spot_events():
    return _parsed(SPOT_RAW)


def _rebuild(events, rule, drop_update_id=None, Book=PyOrderBook):
    tops: dict[int, tuple] = {}
    crossed: list[int] = []

    def on_apply(d, book):
        if book.is_crossed:
            crossed.append(d.last_update_id)
        tops[d.last_update_id] = (book.best_bid(), book.best_ask())

    sync = BinanceBookSync(BookSyncParams(rule=rule), Book(), on_apply=on_apply)
    tickers: dict[int, tuple] = {}
    gaps: list[GapEvent] = []
    for ev in events:
        if isinstance(ev, (DepthUpdate, DepthSnapshot)):
            if isinstance(ev, DepthUpdate) and ev.last_update_id == drop_update_id:
                continue
            gaps += sync.process(ev)
        elif isinstance(ev, BestBidAsk):
            tickers[ev.update_id] = ((ev.bid_px, ev.bid_size), (ev.ask_px, ev.ask_size))
    return sync, tops, tickers, crossed, gaps


@both
def test_usdm_rebuilt_top_of_book_equals_book_ticker_at_every_shared_update_id(Book, usdm_events):
    sync, tops, tickers, crossed, gaps = _rebuild(usdm_events, SyncRule.FUTURES, Book=Book)
    shared = sorted(set(tops) & set(tickers))
    assert len(shared) == 629  # MANIFEST: 629 bookTicker messages share an update id with a depth diff
    assert [u for u in shared if tops[u] != tickers[u]] == []
    assert crossed == [] and gaps == [] and sync.in_sync
    assert sync.n_applied + sync.n_dropped_stale == 6551  # every diff message accounted for


@both
def test_spot_rebuilt_top_of_book_equals_book_ticker_across_the_midnight_file_boundary(Book, spot_events):
    sync, tops, tickers, crossed, gaps = _rebuild(spot_events, SyncRule.SPOT, Book=Book)
    shared = sorted(set(tops) & set(tickers))
    assert len(shared) == 1072  # MANIFEST: all 1,072 messages sharing an update id
    assert [u for u in shared if tops[u] != tickers[u]] == []
    assert crossed == [] and gaps == [] and sync.in_sync
    assert sync.n_applied + sync.n_dropped_stale == 6495


def test_spot_data_breaks_the_futures_rule_so_the_rule_parameter_matters(spot_events):
    # Spot diffs carry no pu (0), so the futures continuity check must fail on the second diff.
    _sync, _tops, _tickers, _crossed, gaps = _rebuild(spot_events[:2000], SyncRule.FUTURES)
    assert gaps and gaps[0].kind == "sequence" and gaps[0].got == 0


@both
def test_usdm_a_missing_diff_is_reported_as_a_gap_with_expected_and_got_ids(Book, usdm_events):
    diffs = [ev for ev in usdm_events if isinstance(ev, DepthUpdate)]
    victim = diffs[3000]
    sync, _tops, _tickers, _crossed, gaps = _rebuild(
        usdm_events, SyncRule.FUTURES, drop_update_id=victim.last_update_id, Book=Book
    )
    assert len(gaps) == 1
    assert (gaps[0].expected, gaps[0].got) == (victim.prev_update_id, victim.last_update_id)
    assert sync.needs_snapshot and sync.book.best_bid() is None  # no snapshot follows in this file


@both
def test_usdm_all_level_updates_apply_in_a_few_seconds(Book, usdm_events):
    events = [ev for ev in usdm_events if isinstance(ev, (DepthUpdate, DepthSnapshot))]
    n_levels = sum(len(ev.bids) + len(ev.asks) for ev in events if isinstance(ev, DepthUpdate))
    assert n_levels == 443_521  # MANIFEST: depth_updates.csv rows
    book = Book()
    t0 = time.perf_counter()
    for ev in events:
        if isinstance(ev, DepthSnapshot):
            book.apply_snapshot(ev)
        else:
            book.apply_update(ev)
    elapsed = time.perf_counter() - t0
    print(f"\nOrderBook: {n_levels} level updates in {elapsed:.2f} s = {n_levels / elapsed:,.0f} levels/s")
    assert elapsed < 5.0


@both
def test_usdm_replay_as_market_estimators_does_it_ends_with_a_sane_touch_equal_to_a_naive_book(Book, usdm_events):
    # MarketEstimators applies every DepthUpdate and DepthSnapshot as it comes (diffs before the
    # snapshot included), counting EventErrors instead of stopping.
    book, ref, errors = Book(), _RefBook(), 0
    for ev in usdm_events:
        if isinstance(ev, (DepthUpdate, DepthSnapshot)):
            try:
                (book.apply_snapshot if isinstance(ev, DepthSnapshot) else book.apply_update)(ev)
            except EventError:
                errors += 1
            with contextlib.suppress(EventError):
                ref.apply(ev)
    assert errors == 0
    (bid_px, bid_sz), (ask_px, ask_sz) = book.best_bid(), book.best_ask()
    assert 10_000 < bid_px < ask_px < 1.01 * bid_px and bid_sz > 0 and ask_sz > 0
    assert book.n_bid_levels > 1000 and book.n_ask_levels > 1000
    assert book.bids() == ref.bids() and book.asks() == ref.asks()
    # liquidity near the touch counts every level in the band: more than the 50 levels once read
    from apps.engine.estimators.book_signals import liquidity_within

    mid = 0.5 * (bid_px + ask_px)
    for bps in (0.5, 5.0, 50.0):
        assert book.size_within(mid, bps * 1e-4) == pytest.approx(
            liquidity_within(book.bids(), book.asks(), mid, bps * 1e-4), rel=1e-12
        )
    in_band = sum(1 for px, _ in book.bids() if mid - px <= 5e-4 * mid)
    assert in_band > 50


@both
@settings(max_examples=200, deadline=None)
@given(
    bids=st.dictionaries(st.integers(1, 60), st.floats(0.001, 10.0), max_size=40),
    asks=st.dictionaries(st.integers(61, 120), st.floats(0.001, 10.0), max_size=40),
    mid_ticks=st.floats(50.0, 70.0),
    band_ticks=st.floats(0.0, 80.0),
)
def test_size_within_equals_walking_every_level(Book, bids, asks, mid_ticks, band_ticks):
    from apps.engine.estimators.book_signals import liquidity_within

    book = Book()
    tick = 0.5
    book.apply_snapshot(
        DepthSnapshot(
            0, 0, tuple((k * tick, v) for k, v in bids.items()), tuple((k * tick, v) for k, v in asks.items())
        )
    )
    mid, frac = mid_ticks * tick, band_ticks * tick / (mid_ticks * tick)
    assert book.size_within(mid, frac) == pytest.approx(liquidity_within(book.bids(), book.asks(), mid, frac), abs=1e-9)


@both
@pytest.mark.parametrize("mid, frac", [(math.nan, 0.001), (0.0, 0.001), (100.0, -0.1), (100.0, math.inf)])
def test_size_within_rejects_a_bad_mid_or_band(Book, mid, frac):
    with pytest.raises(ValueError, match="must be a finite"):
        Book().size_within(mid, frac)


@both
def test_a_copied_or_pickled_book_is_an_independent_equal_book(Book):
    import copy
    import pickle

    book = Book(checked=False)
    book.apply_snapshot(snap([(100.0, 1.0), (99.5, 2.0)], [(100.5, 3.0)], last_id=7))
    for clone in (copy.deepcopy(book), pickle.loads(pickle.dumps(book))):
        assert type(clone) is Book
        assert (clone.bids(), clone.asks(), clone.last_update_id) == (book.bids(), book.asks(), 7)
        clone.set_level(Side.BUY, 100.0, 0.0)
        assert book.best_bid() == (100.0, 1.0) and clone.best_bid() == (99.5, 2.0)
