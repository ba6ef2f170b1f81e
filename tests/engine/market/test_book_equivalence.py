"""The compiled book and its pure-Python reference agree exactly, step by step, on every shared recording.

Each recording is parsed with the project's own parsers and fed to a :class:`PyOrderBook` and a compiled
:class:`_book.OrderBook` side by side:

- depth diffs and snapshots (Binance USD-M BTC and ETH, Binance spot across midnight, Hyperliquid l2Book) are
  applied as :class:`~apps.engine.estimators.market.MarketEstimators` applies them: every one as it comes, an
  ``EventError`` counted, never stopping (both books must raise on the same events);
- quotes are the moments the engine reads the book (a decision runs on each top-of-book change), so the reads
  are compared there too; on the quote-only recordings (Tardis, LOBSTER) each quote is the diff that sets the new
  touch and deletes the touch it replaces, so inserts, updates and deletes all run there as well.

After every event: best bid/ask with sizes, level counts, mid, spread, crossed flag, sequence id and clocks, the
best 25 levels per side (the engine reads ``levels + 5``), ``size_within`` at 0.5/5/50 bps of the mid and
``size_at`` on both touches are compared with ``==``: no tolerance, the floats are the same doubles. The whole
book is compared every 64 events and at the end.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from apps.engine.market import _book
from apps.engine.market.book import PyOrderBook
from apps.engine.market.events import BestBidAsk, DepthSnapshot, DepthUpdate, EventError, Side
from apps.marketdata.parsers import parse_file

DATA = Path(__file__).resolve().parents[3] / ".." / "shared" / "data"

# (id, format, files, depth events expected, quote events expected): the counts are the MANIFESTs' and pin that
# the whole recording was fed, not a prefix.
RECORDINGS = [
    (
        "usdm-btcusdt",
        "binance-raw",
        ["hftbacktest-binance-usdm-btcusdt-20240808/raw/usdm_btcusdt_20240808.gz"],
        6_552,
        66_089,
    ),
    (
        "usdm-ethusdt",
        "binance-raw",
        ["hftbacktest-binance-usdm-ethusdt-20240808/raw/usdm_ethusdt_20240808.gz"],
        6_587,
        53_992,
    ),
    (
        "spot-btcusdt",
        "binance-raw",
        [
            "hftbacktest-binance-spot-btcusdt-20240808/raw/spot_btcusdt_20240808.gz",
            "hftbacktest-binance-spot-btcusdt-20240808/raw/spot_btcusdt_20240809.gz",
        ],
        None,
        73_174,
    ),
    (
        "hyperliquid-btc",
        "hyperliquid",
        ["hftbacktest-hyperliquid-btc-20250126-tiny/raw/hyperliquid_btc_20250126.gz"],
        46,
        0,
    ),
    (
        "tardis-btcusdt",
        "tardis",
        ["tardis-binance-futures-btcusdt-20200222/binance-futures_quotes_BTCUSDT_2020-02-22.csv.gz"],
        0,
        9_999,
    ),
    (
        "lobster-amzn",
        "lobster",
        ["lobster-amzn-20120621-level1/AMZN_2012-06-21_34200000_57600000_message_1.csv.gz"],
        0,
        57_515,
    ),
]

_LEVELS = 25
_BANDS = (0.5e-4, 5e-4, 50e-4)


def _reads(book) -> tuple:
    bb, ba = book.best_bid(), book.best_ask()
    out: list = [
        bb,
        ba,
        book.n_bid_levels,
        book.n_ask_levels,
        book.mid,
        book.spread,
        book.is_crossed,
        book.last_update_id,
        book.ts_exch_ns,
        book.ts_local_ns,
        book.bids(_LEVELS),
        book.asks(_LEVELS),
    ]
    if bb is not None:
        out.append(book.size_at(Side.BUY, bb[0]))
        out.append(book.size_at(Side.SELL, bb[0]))
    if ba is not None:
        out.append(book.size_at(Side.SELL, ba[0]))
    mid = book.mid
    if mid is not None and mid > 0:
        out.extend(book.size_within(mid, frac) for frac in _BANDS)
    return tuple(out)


def _apply(book, ev) -> str | None:
    try:
        (book.apply_snapshot if isinstance(ev, DepthSnapshot) else book.apply_update)(ev)
    except EventError as exc:
        return str(exc)
    return None


def _touch_diff(q: BestBidAsk, prev: BestBidAsk | None) -> DepthUpdate:
    bids = [(q.bid_px, q.bid_size)]
    asks = [(q.ask_px, q.ask_size)]
    if prev is not None and prev.bid_px != q.bid_px:
        bids.insert(0, (prev.bid_px, 0.0))
    if prev is not None and prev.ask_px != q.ask_px:
        asks.insert(0, (prev.ask_px, 0.0))
    return DepthUpdate(q.ts_exch_ns, q.ts_local_ns, tuple(bids), tuple(asks), last_update_id=q.update_id)


@pytest.mark.parametrize(("fmt", "files", "n_depth", "n_quotes"), [pytest.param(*r[1:], id=r[0]) for r in RECORDINGS])
def test_compiled_and_reference_books_agree_at_every_event(fmt, files, n_depth, n_quotes):
    paths = [DATA / f for f in files]
    missing = [p for p in paths if not p.exists()]
    if missing:
        pytest.skip(f"real data not present: {missing[0]}")
    ref, fast = PyOrderBook(), _book.OrderBook()
    depth = quotes = errors = steps = 0
    prev_quote: BestBidAsk | None = None
    quote_only = n_depth == 0
    for path in paths:
        for ev in parse_file(fmt, path):
            if isinstance(ev, (DepthUpdate, DepthSnapshot)):
                depth += 1
                err = _apply(ref, ev)
                assert _apply(fast, ev) == err, f"event {depth}: the books disagree on whether {ev!r} is bad"
                errors += err is not None
            elif isinstance(ev, BestBidAsk):
                quotes += 1
                if quote_only:
                    diff = _touch_diff(ev, prev_quote)
                    assert _apply(fast, diff) == _apply(ref, diff)
                    prev_quote = ev
            else:
                continue
            steps += 1
            assert _reads(fast) == _reads(ref), f"{path.name}: step {steps} ({type(ev).__name__}) differs"
            if steps % 64 == 0:
                assert fast.bids() == ref.bids() and fast.asks() == ref.asks(), f"step {steps}: full book differs"
    assert fast.bids() == ref.bids() and fast.asks() == ref.asks()
    if n_depth is not None:
        assert depth == n_depth
    else:
        assert depth > 6_000
    assert quotes == n_quotes
    # the books were not trivially empty: real depth was built and read
    assert ref.n_bid_levels > 0 and ref.n_ask_levels > 0
    assert errors == 0
