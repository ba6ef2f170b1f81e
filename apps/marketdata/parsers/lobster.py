"""``lobster``: LOBSTER message + orderbook file pairs (Nasdaq TotalView-ITCH reconstructions).

Files (no header): ``<TICKER>_<YYYY-MM-DD>_<start>_<end>_message_<N>.csv`` with
``time, type, order_id, size, price, direction`` and ``..._orderbook_<N>.csv`` with
``ask_px_1, ask_sz_1, bid_px_1, bid_sz_1, ...`` (N levels). Orderbook row *i* is the book **after**
message *i*.

* ``time``: seconds after midnight, exchange local time (``America/New_York`` for Nasdaq), up to 9
  decimals; parsed exactly as an integer. The date comes from the file name (or ``session_date``).
* ``price``: USD × 10,000 (divided here). ``size``: shares.
* ``direction``: side of the **resting** order, so a trade's aggressor is ``-direction``.
* types: 1 submit, 2 partial cancel, 3 delete, 4 visible execution, 5 hidden execution, 7 halt.

Output per row, in this order: a :class:`Trade` for types 4 and 5 (``trade_id`` is the 1-based
message row number: LOBSTER has no trade ids, and one order can execute many times), then a
:class:`BestBidAsk` from the orderbook row (``update_id`` = row number). Types 1/2/3/7 yield no
trade and are counted in ``ParseStats.ignored``. There is no receive clock: ``ts_local_ns =
ts_exch_ns``.

Quarantine rules
----------------
* ``unparsable``: wrong column count or non-numeric field (message or orderbook row).
* ``unknown_message``: a message type outside 1–5, 7.
* ``bad_price`` / ``bad_size`` / ``bad_side``: an order message (submit, cancel, delete, execution) with
  price <= 0, size <= 0 or direction not ±1; such a row yields nothing, its book row included.
* ``empty_book``: orderbook row with a dummy price (±9,999,999,999) or a zero size on a side.
* ``crossed_book``: orderbook row with bid >= ask.
* ``ts_out_of_order``: message time earlier than the previous accepted one (the whole row pair
  is quarantined).
* ``missing_row``: one file has a row the other lacks.
Orderbook-row quarantines carry the row number and an ``orderbook:`` prefix in ``raw``.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from itertools import zip_longest
from pathlib import Path
from zoneinfo import ZoneInfo

from apps.engine.market.events import BestBidAsk, Side, Trade

from .common import (
    BAD_SIDE,
    EMPTY_BOOK,
    MISSING_ROW,
    UNKNOWN_MESSAGE,
    UNPARSABLE,
    BadRecordError,
    Lines,
    MarketItem,
    MonotonicClock,
    ParseStats,
    check_not_crossed,
    check_price,
    check_size,
    counting,
    observed,
    open_text,
    parse_int,
    quarantine,
    zip_members,
)

FORMAT = "lobster"
PRICE_SCALE = 10_000  # LOBSTER prices are USD × 10,000
DUMMY_PRICE = 9_999_999_999  # fills empty levels (negative on the bid side)
DEFAULT_TZ = "America/New_York"
_NAME = re.compile(
    r"(?P<ticker>[A-Za-z0-9.]+)_(?P<date>\d{4}-\d{2}-\d{2})_\d+_\d+_(?P<kind>message|orderbook)_(?P<level>\d+)"
)
_TRADE_TYPES = {4: "visible_execution", 5: "hidden_execution"}
_OTHER_TYPES = {1: "submit", 2: "partial_cancel", 3: "delete", 7: "halt"}
_HALT = 7


def session_date_from_name(name: str) -> dt.date:
    m = _NAME.search(Path(name).name)
    if m is None:
        raise ValueError(f"cannot read a LOBSTER date from file name {name!r}; pass session_date")
    return dt.date.fromisoformat(m.group("date"))


def midnight_ns(day: dt.date, tz: str = DEFAULT_TZ) -> int:
    """Epoch ns of local midnight of ``day`` in ``tz``."""
    t = dt.datetime(day.year, day.month, day.day, tzinfo=ZoneInfo(tz))
    return int(t.timestamp()) * 1_000_000_000


def seconds_text_to_ns(text: str) -> int:
    """``"34200.017459617"`` -> 34,200,017,459,617 ns, exactly (no float rounding)."""
    whole, _, frac = text.strip().partition(".")
    if not whole.isdigit() or (frac and not frac.isdigit()) or len(frac) > 9:
        raise BadRecordError(UNPARSABLE, f"time is not seconds with <= 9 decimals: {text!r}")
    return int(whole) * 1_000_000_000 + int(frac.ljust(9, "0") or "0")


def _order_fields(cells: list[str]) -> tuple[float, float, int]:
    """(price, size, direction) of an order message (types 1-5), checked: price > 0, size > 0, direction ±1."""
    size, price_i, direction = int(cells[3]), int(cells[4]), int(cells[5])  # integers: checked by the caller
    if direction not in (1, -1):
        raise BadRecordError(BAD_SIDE, f"direction must be 1 or -1, got {direction}")
    return check_price(price_i / PRICE_SCALE), check_size(float(size), allow_zero=False), direction


def _trade(cells: list[str], ts: int, row_no: int) -> Trade:
    price, size, direction = _order_fields(cells)
    aggressor = Side.SELL if direction == 1 else Side.BUY  # resting buy was hit by a seller
    return Trade(ts, ts, price, size, aggressor, str(row_no))


def _top_of_book(cells: list[str], ts: int, row_no: int) -> BestBidAsk:
    if len(cells) < 4 or len(cells) % 4:
        raise BadRecordError(UNPARSABLE, f"orderbook row needs 4*levels columns, got {len(cells)}")
    ask_i, ask_sz = parse_int(cells[0], "ask price"), parse_int(cells[1], "ask size")
    bid_i, bid_sz = parse_int(cells[2], "bid price"), parse_int(cells[3], "bid size")
    if abs(ask_i) >= DUMMY_PRICE or abs(bid_i) >= DUMMY_PRICE or ask_sz == 0 or bid_sz == 0:
        raise BadRecordError(EMPTY_BOOK, "a side of the top of book is empty")
    bid = check_price(bid_i / PRICE_SCALE, "bid price")
    ask = check_price(ask_i / PRICE_SCALE, "ask price")
    check_size(float(bid_sz), "bid size", allow_zero=False)
    check_size(float(ask_sz), "ask size", allow_zero=False)
    check_not_crossed(bid, ask)
    return BestBidAsk(ts, ts, bid, float(bid_sz), ask, float(ask_sz), update_id=row_no)


def _parse(messages: Lines, orderbook: Lines, midnight: int, stats: ParseStats | None) -> Iterator[MarketItem]:
    clock = MonotonicClock("message time")
    for msg, book in zip_longest(messages, orderbook):
        if msg is None:
            row_no, text = book
            yield quarantine(
                row_no, BadRecordError(MISSING_ROW, "orderbook row without a message"), "orderbook:" + text
            )
            continue
        row_no, text = msg
        if not text.strip():
            continue
        try:
            if book is None:
                raise BadRecordError(MISSING_ROW, "message without an orderbook row")
            cells = text.split(",")
            if len(cells) != 6:
                raise BadRecordError(UNPARSABLE, f"message needs 6 columns, got {len(cells)}")
            ts = midnight + seconds_text_to_ns(cells[0])
            clock.check(ts)
            mtype = parse_int(cells[1], "type")
            for i, what in ((2, "order_id"), (3, "size"), (4, "price"), (5, "direction")):
                parse_int(cells[i], what)
            if mtype in _TRADE_TYPES:
                trade: Trade | None = _trade(cells, ts, row_no)
            elif mtype in _OTHER_TYPES:
                if mtype != _HALT:  # a halt carries no order (price -1 or 0 or 1, size 0)
                    _order_fields(cells)
                trade = None
            else:
                raise BadRecordError(UNKNOWN_MESSAGE, f"message type {mtype}")
        except BadRecordError as err:
            yield quarantine(row_no, err, text)
            continue
        clock.advance(ts)
        if trade is not None:
            yield trade
        elif stats is not None:
            stats.ignored[_OTHER_TYPES[mtype]] += 1
        book_no, book_text = book
        try:
            yield _top_of_book(book_text.split(","), ts, book_no)
        except BadRecordError as err:
            yield quarantine(book_no, err, "orderbook:" + book_text)


def parse_pair(
    messages: Lines,
    orderbook: Lines,
    session_date: dt.date,
    *,
    tz: str = DEFAULT_TZ,
    stats: ParseStats | None = None,
) -> Iterator[MarketItem]:
    """Parse paired ``(line_no, text)`` streams of a message file and its orderbook file."""
    if stats is not None:
        stats.fmt = FORMAT
        stats.has_local_clock = False
    return observed(_parse(counting(messages, stats), orderbook, midnight_ns(session_date, tz), stats), stats)


def parse_file(
    path: str | Path,
    orderbook_path: str | Path | None = None,
    *,
    session_date: dt.date | None = None,
    tz: str = DEFAULT_TZ,
    stats: ParseStats | None = None,
) -> Iterator[MarketItem]:
    """Parse a LOBSTER pair given the message file (plain/.gz) or a zip holding both files.

    Without ``orderbook_path`` the orderbook file is the message file's name with ``message``
    replaced by ``orderbook``; inside a zip the members are matched by name.
    """
    p = Path(path)
    if stats is not None and not stats.source:
        stats.source = str(p)
    if p.suffix.lower() == ".zip":
        names = zip_members(p)
        msg = [n for n in names if (m := _NAME.search(Path(n).name)) and m.group("kind") == "message"]
        book = [n for n in names if (m := _NAME.search(Path(n).name)) and m.group("kind") == "orderbook"]
        if len(msg) != 1 or len(book) != 1:
            raise ValueError(f"{p}: expected one message and one orderbook member, found {msg} and {book}")
        day = session_date or session_date_from_name(msg[0])
        return parse_pair(open_text(p, msg[0]), open_text(p, book[0]), day, tz=tz, stats=stats)
    if orderbook_path is None:
        orderbook_path = p.with_name(p.name.replace("_message_", "_orderbook_"))
        if orderbook_path == p:
            raise ValueError(f"{p}: not a LOBSTER message file name; pass orderbook_path")
    day = session_date or session_date_from_name(p.name)
    return parse_pair(open_text(p), open_text(orderbook_path), day, tz=tz, stats=stats)
