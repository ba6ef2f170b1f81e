"""``tardis``: Tardis.dev downloadable CSVs (trades, quotes / book_ticker, incremental_book_L2, book_snapshot_N).

The kind is detected from the header row (first line):

==========================  ====================================================================
kind                        columns after ``exchange,symbol,timestamp,local_timestamp``
==========================  ====================================================================
``trades``                  ``id,side,price,amount`` -> :class:`Trade` (``side`` is the aggressor)
``quotes``                  ``ask_amount,ask_price,bid_price,bid_amount`` (ask first!) -> :class:`BestBidAsk`
``incremental_book_L2``     ``is_snapshot,side,price,amount`` -> :class:`DepthUpdate` / :class:`DepthSnapshot`
``book_snapshot_N``         ``asks[0].price,asks[0].amount,bids[0].price,bids[0].amount,...`` -> :class:`DepthSnapshot`
==========================  ====================================================================

``timestamp`` (exchange) and ``local_timestamp`` (Tardis receive time) are µs since the epoch.

incremental_book_L2 rows are one price level each. Consecutive rows with the same
``(timestamp, local_timestamp, is_snapshot)`` are one exchange message and become one event; a run of
``is_snapshot=true`` rows is a full snapshot (Tardis sends one at the start of each file and after every
reconnect). Tardis has no sequence ids, so ``first/last_update_id`` are 0.

Quarantine rules
----------------
* ``unparsable``: wrong number of columns, non-integer timestamps, non-numeric price/amount.
* ``bad_price`` / ``bad_size``: price <= 0 or non-finite; amount negative or non-finite, or 0 in a trade or a
  snapshot row (0 in an incremental row deletes the level; 0 in a quote means an empty size and is kept).
* ``bad_side``: trade side not ``buy``/``sell`` (Tardis writes ``unknown`` when the venue does not say);
  incremental row side not ``bid``/``ask``.
* ``empty_book``: a quote with an empty bid or ask price.
* ``crossed_book``: quote or snapshot with best bid >= best ask (the whole snapshot is quarantined).
* ``duplicate_trade_id``: a non-empty trade id among the last ``dedupe_window`` ids.
* ``ts_out_of_order``: ``local_timestamp`` went backwards (Tardis files are ordered by it; exchange
  timestamps may legitimately go backwards, so they are not checked).

A bad incremental row is quarantined alone and the rest of its message is still emitted: with no
sequence ids the loss cannot be detected downstream, so watch the quarantine count.
A repeated header line (concatenated files) is skipped and counted in ``ParseStats.ignored``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from apps.engine.market.events import BestBidAsk, DepthSnapshot, DepthUpdate, Side, Trade

from .common import (
    BAD_SIDE,
    DUPLICATE_TRADE_ID,
    EMPTY_BOOK,
    UNPARSABLE,
    BadRecordError,
    Lines,
    MarketItem,
    MonotonicClock,
    ParseStats,
    Quarantined,
    RecentIds,
    check_not_crossed,
    check_price,
    check_size,
    counting,
    observed,
    open_text,
    parse_float,
    quarantine,
    sorted_snapshot_sides,
)

FORMAT = "tardis"
_BASE = ["exchange", "symbol", "timestamp", "local_timestamp"]
_SIDES = {"buy": Side.BUY, "sell": Side.SELL}
_BOOK_SIDES = {"bid": Side.BUY, "buy": Side.BUY, "ask": Side.SELL, "sell": Side.SELL}
_SNAP_COL = re.compile(r"^(asks|bids)\[(\d+)\]\.(price|amount)$")


def detect_kind(header: list[str]) -> str:
    """``trades`` | ``quotes`` | ``incremental_book_L2`` | ``book_snapshot`` from the header columns."""
    if header[:4] != _BASE:
        raise ValueError(f"not a Tardis CSV header: {','.join(header)[:200]!r}")
    cols = set(header[4:])
    if {"id", "side", "price", "amount"} <= cols:
        return "trades"
    if {"ask_amount", "ask_price", "bid_price", "bid_amount"} <= cols:
        return "quotes"
    if {"is_snapshot", "side", "price", "amount"} <= cols:
        return "incremental_book_L2"
    if cols and all(_SNAP_COL.match(c) for c in cols):
        return "book_snapshot"
    raise ValueError(f"unsupported Tardis CSV kind, columns {header[4:]!r}")


def _us_to_ns(text: str, what: str) -> int:
    try:
        return int(text) * 1_000
    except ValueError:
        raise BadRecordError(UNPARSABLE, f"{what} is not integer µs: {text!r}") from None


class _Row:
    """Column access by name for one split CSV line."""

    __slots__ = ("cells", "index")

    def __init__(self, cells: list[str], index: dict[str, int]) -> None:
        self.cells = cells
        self.index = index

    def __getitem__(self, name: str) -> str:
        return self.cells[self.index[name]]


def _trade(row: _Row, ts: int, local: int, recent: RecentIds) -> Trade:
    side = _SIDES.get(row["side"])
    if side is None:
        raise BadRecordError(BAD_SIDE, f"side {row['side']!r} is not buy/sell")
    price = check_price(parse_float(row["price"], "price"))
    size = check_size(parse_float(row["amount"], "amount"), "amount", allow_zero=False)
    tid = row["id"]
    if tid and recent.seen_before(tid):
        raise BadRecordError(DUPLICATE_TRADE_ID, f"trade id {tid} seen before")
    return Trade(ts, local, price, size, side, tid)


def _quote(row: _Row, ts: int, local: int) -> BestBidAsk:
    if not row["bid_price"] or not row["ask_price"]:
        raise BadRecordError(EMPTY_BOOK, "bid or ask price is empty")
    bid = check_price(parse_float(row["bid_price"], "bid_price"), "bid_price")
    ask = check_price(parse_float(row["ask_price"], "ask_price"), "ask_price")
    bid_sz = check_size(parse_float(row["bid_amount"] or "0", "bid_amount"), "bid_amount", allow_zero=True)
    ask_sz = check_size(parse_float(row["ask_amount"] or "0", "ask_amount"), "ask_amount", allow_zero=True)
    check_not_crossed(bid, ask)
    return BestBidAsk(ts, local, bid, bid_sz, ask, ask_sz)


def _snapshot_row(row: _Row, ts: int, local: int, depth: int) -> DepthSnapshot:
    bids, asks = [], []
    for side, out in (("bids", bids), ("asks", asks)):
        for i in range(depth):
            px_t, sz_t = row[f"{side}[{i}].price"], row[f"{side}[{i}].amount"]
            if not px_t:  # fewer levels than the file's depth
                break
            px = check_price(parse_float(px_t, f"{side}[{i}].price"), f"{side}[{i}].price")
            sz = check_size(parse_float(sz_t, f"{side}[{i}].amount"), f"{side}[{i}].amount", allow_zero=False)
            out.append((px, sz))
    b, a = sorted_snapshot_sides(bids, asks)
    return DepthSnapshot(ts, local, b, a)


class _L2Group:
    """Rows of one incremental_book_L2 message being collected."""

    __slots__ = ("asks", "bids", "key", "line_no")

    def __init__(self, key: tuple[int, int, bool], line_no: int) -> None:
        self.key = key
        self.line_no = line_no
        self.bids: list[tuple[float, float]] = []
        self.asks: list[tuple[float, float]] = []

    def emit(self) -> MarketItem:
        ts, local, is_snapshot = self.key
        if not is_snapshot:
            return DepthUpdate(ts, local, tuple(self.bids), tuple(self.asks))
        try:
            b, a = sorted_snapshot_sides(self.bids, self.asks)
        except BadRecordError as err:
            return Quarantined(
                self.line_no, err.reason, f"<snapshot of {len(self.bids) + len(self.asks)} rows>", err.detail
            )
        return DepthSnapshot(ts, local, b, a)


def _parse(lines: Lines, stats: ParseStats | None, dedupe_window: int) -> Iterator[MarketItem]:
    it = iter(lines)
    header_text = ""
    for _line_no, header_text in it:
        if header_text.strip():
            break
    else:
        return
    header = header_text.strip().split(",")
    kind = detect_kind(header)
    if stats is not None:
        stats.kind = kind
        stats.ignored["header"] += 1
    index = {name: i for i, name in enumerate(header)}
    n_cols = len(header)
    depth = sum(1 for c in header if c.endswith(".price") and c.startswith("asks[")) if kind == "book_snapshot" else 0
    clock = MonotonicClock("local_timestamp")
    recent = RecentIds(dedupe_window)
    group: _L2Group | None = None
    for line_no, text in it:
        if not text.strip():
            continue
        if text == header_text:
            if stats is not None:
                stats.ignored["repeated_header"] += 1
            continue
        try:
            cells = text.split(",")
            if len(cells) != n_cols:
                raise BadRecordError(UNPARSABLE, f"expected {n_cols} columns, got {len(cells)}")
            row = _Row(cells, index)
            ts = _us_to_ns(row["timestamp"], "timestamp")
            local = _us_to_ns(row["local_timestamp"], "local_timestamp")
            clock.step(local)
            if kind == "trades":
                ev: MarketItem | None = _trade(row, ts, local, recent)
            elif kind == "quotes":
                ev = _quote(row, ts, local)
            elif kind == "book_snapshot":
                ev = _snapshot_row(row, ts, local, depth)
            else:
                ev = None
                is_snapshot = row["is_snapshot"] == "true"
                side = _BOOK_SIDES.get(row["side"])
                if side is None:
                    raise BadRecordError(BAD_SIDE, f"book side {row['side']!r} is not bid/ask")
                px = check_price(parse_float(row["price"], "price"))
                sz = check_size(parse_float(row["amount"], "amount"), "amount", allow_zero=not is_snapshot)
                key = (ts, local, is_snapshot)
                if group is None or group.key != key:
                    if group is not None:
                        yield group.emit()
                    group = _L2Group(key, line_no)
                (group.bids if side is Side.BUY else group.asks).append((px, sz))
        except BadRecordError as err:
            yield quarantine(line_no, err, text)
            continue
        if ev is not None:
            yield ev
    if group is not None:
        yield group.emit()


def parse_lines(lines: Lines, *, stats: ParseStats | None = None, dedupe_window: int = 100_000) -> Iterator[MarketItem]:
    """Parse ``(line_no, text)`` pairs of one Tardis CSV (header first); see the module docstring."""
    if stats is not None:
        stats.fmt = FORMAT
    return observed(_parse(counting(lines, stats), stats, dedupe_window), stats)


def parse_file(path: str | Path, *, stats: ParseStats | None = None, **kwargs: int) -> Iterator[MarketItem]:
    """Parse a plain, .gz or .zip Tardis CSV."""
    if stats is not None and not stats.source:
        stats.source = str(path)
    return parse_lines(open_text(path), stats=stats, **kwargs)
