"""``binance-public``: Binance public data CSVs (data.binance.vision): trades, aggTrades, bookTicker.

Spot files have no header; futures files have one since about 2022. Both are accepted. The kind is
taken from, in order: the header, the ``kind`` argument, the file name (``BTCUSDT-aggTrades-2024-08-08``),
the shape of the first row. Columns (headerless files use this order):

==============  ==============================================================================================
kind            columns
==============  ==============================================================================================
``trades``      ``id, price, qty, quote_qty, time, is_buyer_maker[, is_best_match]`` (futures 6, spot 7)
``aggTrades``   ``agg_trade_id, price, quantity, first_trade_id, last_trade_id, transact_time,
                is_buyer_maker[, is_best_match]``
``bookTicker``  ``update_id, best_bid_price, best_bid_qty, best_ask_price, best_ask_qty, transaction_time, event_time``
==============  ==============================================================================================

Times are epoch ms (spot files from 2025 on are µs): the unit is detected by magnitude.
``is_buyer_maker = true`` means a **SELL** aggressor. aggTrade ids are prefixed ``a`` as in
``binance-raw``. There is no receive clock, so ``ts_local_ns = ts_exch_ns``.

Quarantine rules
----------------
* ``unparsable``: wrong column count, non-numeric fields.
* ``bad_price`` / ``bad_size``: price <= 0 or non-finite; size non-finite or <= 0 (trades) / < 0 (bookTicker).
* ``bad_side``: ``is_buyer_maker`` not a boolean.
* ``crossed_book``: bookTicker with bid >= ask.
* ``duplicate_trade_id``: (agg)trade id among the last ``dedupe_window`` ids.
* ``ts_out_of_order``: trade time earlier than the previous accepted trade's (the files are in id
  order, which is time order). bookTicker rows are not ordering-checked: the file is in update-id
  order and its two clocks are not guaranteed monotonic.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from apps.engine.market.events import BestBidAsk, Side, Trade

from .common import (
    BAD_SIDE,
    DUPLICATE_TRADE_ID,
    UNPARSABLE,
    BadRecordError,
    Lines,
    MarketItem,
    MonotonicClock,
    ParseStats,
    RecentIds,
    check_not_crossed,
    check_price,
    check_size,
    counting,
    epoch_to_ns,
    observed,
    open_text,
    parse_float,
    parse_int,
    quarantine,
)

FORMAT = "binance-public"
KINDS = ("trades", "aggTrades", "bookTicker")
_NAME_KIND = re.compile(r"-(trades|aggTrades|bookTicker)-", re.IGNORECASE)
_BOOL = {"true": True, "false": False}
# kind -> (id, price, size, time, is_buyer_maker) column positions; bookTicker handled separately
_TRADE_COLS = {"trades": (0, 1, 2, 4, 5), "aggTrades": (0, 1, 2, 5, 6)}
_N_COLS = {"trades": (6, 7), "aggTrades": (7, 8), "bookTicker": (7,)}


def _is_int(text: str) -> bool:
    return text.strip().lstrip("-").isdigit()


def kind_from_header(header: list[str]) -> str:
    cols = {c.strip().lower() for c in header}
    if "best_bid_price" in cols:
        return "bookTicker"
    if "first_trade_id" in cols:
        return "aggTrades"
    if "quote_qty" in cols or "quoteqty" in cols:
        return "trades"
    raise ValueError(f"unknown Binance public CSV header {header!r}")


def kind_from_name(name: str) -> str | None:
    m = _NAME_KIND.search(Path(name).name)
    if m is None:
        return None
    return {k.lower(): k for k in KINDS}[m.group(1).lower()]


def kind_from_row(cells: list[str]) -> str:
    """Guess the kind of a headerless file from its first data row."""
    n = len(cells)
    if n == 6:
        return "trades"  # futures trades
    if n == 8:
        return "aggTrades"  # spot aggTrades
    if n == 7:
        if cells[5].strip().lower() in _BOOL:
            return "trades"  # spot trades: ..., is_buyer_maker, is_best_match
        if cells[6].strip().lower() in _BOOL:
            return "aggTrades"  # futures aggTrades: ..., transact_time, is_buyer_maker
        return "bookTicker"
    raise ValueError(f"cannot tell the Binance public CSV kind from a {n}-column row")


def _bool(text: str) -> bool:
    v = _BOOL.get(text.strip().lower())
    if v is None:
        raise BadRecordError(BAD_SIDE, f"is_buyer_maker must be true/false, got {text!r}")
    return v


def _trade(cells: list[str], kind: str, recent: RecentIds, clock: MonotonicClock) -> Trade:
    i_id, i_px, i_sz, i_t, i_m = _TRADE_COLS[kind]
    ts = epoch_to_ns(parse_int(cells[i_t], "time"))
    clock.check(ts)
    price = check_price(parse_float(cells[i_px], "price"))
    size = check_size(parse_float(cells[i_sz], "qty"), "qty", allow_zero=False)
    side = Side.SELL if _bool(cells[i_m]) else Side.BUY
    tid = str(parse_int(cells[i_id], "id"))
    if kind == "aggTrades":
        tid = "a" + tid
    if recent.seen_before(tid):
        raise BadRecordError(DUPLICATE_TRADE_ID, f"trade id {tid} seen before")
    clock.advance(ts)
    return Trade(ts, ts, price, size, side, tid)


def _book_ticker(cells: list[str]) -> BestBidAsk:
    update_id = parse_int(cells[0], "update_id")
    bid = check_price(parse_float(cells[1], "best_bid_price"), "best_bid_price")
    bid_sz = check_size(parse_float(cells[2], "best_bid_qty"), "best_bid_qty", allow_zero=True)
    ask = check_price(parse_float(cells[3], "best_ask_price"), "best_ask_price")
    ask_sz = check_size(parse_float(cells[4], "best_ask_qty"), "best_ask_qty", allow_zero=True)
    check_not_crossed(bid, ask)
    ts = epoch_to_ns(parse_int(cells[5], "transaction_time"))
    return BestBidAsk(ts, ts, bid, bid_sz, ask, ask_sz, update_id=update_id)


def _parse(
    lines: Lines, stats: ParseStats | None, kind: str | None, name: str, dedupe_window: int
) -> Iterator[MarketItem]:
    if kind is not None and kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    clock = MonotonicClock("trade time")
    recent = RecentIds(dedupe_window)
    n_cols: tuple[int, ...] = ()
    for line_no, text in lines:
        if not text.strip():
            continue
        cells = text.split(",")
        if not _is_int(cells[0]):
            # A header (first line, or repeated where files were concatenated / zip members chained),
            # or a bad row.
            try:
                kind = kind_from_header(cells)
            except ValueError:
                yield quarantine(line_no, BadRecordError(UNPARSABLE, "not a header and no integer id"), text)
                continue
            n_cols = (len(cells),)
            if stats is not None:
                stats.kind = kind
                stats.ignored["header"] += 1
            continue
        if not n_cols:
            kind = kind or kind_from_name(name) or kind_from_row(cells)
            n_cols = _N_COLS[kind]
            if stats is not None:
                stats.kind = kind
        try:
            if len(cells) not in n_cols:
                raise BadRecordError(UNPARSABLE, f"expected {' or '.join(map(str, n_cols))} columns, got {len(cells)}")
            if kind == "bookTicker":
                ev: MarketItem = _book_ticker(cells)
            else:
                ev = _trade(cells, kind, recent, clock)  # type: ignore[arg-type]
        except BadRecordError as err:
            yield quarantine(line_no, err, text)
            continue
        yield ev


def parse_lines(
    lines: Lines,
    *,
    stats: ParseStats | None = None,
    kind: str | None = None,
    name: str = "",
    dedupe_window: int = 100_000,
) -> Iterator[MarketItem]:
    """Parse ``(line_no, text)`` rows of one Binance public CSV; ``name`` (file name) helps detect the kind."""
    if stats is not None:
        stats.fmt = FORMAT
        stats.has_local_clock = False
    return observed(_parse(counting(lines, stats), stats, kind, name, dedupe_window), stats)


def parse_file(
    path: str | Path, *, stats: ParseStats | None = None, kind: str | None = None, dedupe_window: int = 100_000
) -> Iterator[MarketItem]:
    """Parse a plain, .gz or .zip (the usual download) Binance public CSV."""
    if stats is not None and not stats.source:
        stats.source = str(path)
    return parse_lines(open_text(path), stats=stats, kind=kind, name=str(path), dedupe_window=dedupe_window)
