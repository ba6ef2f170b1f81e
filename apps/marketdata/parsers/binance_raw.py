"""``binance-raw``: recorded Binance websocket lines, ``<local_ts> <json>`` (hftbacktest collector style).

Input
-----
One message per line: an integer local receive time (ns or µs or ms since the epoch, unit detected by
magnitude, see :func:`~.common.epoch_to_ns`), one space, then JSON that is either

* a combined-stream wrapper ``{"stream": "btcusdt@trade", "data": {...}}`` for ``@trade``,
  ``@aggTrade``, ``@bookTicker``, ``@depth`` / ``@depth@100ms`` / ``@depth@0ms`` diffs, or
  ``@depth5/10/20`` partial books; bare payloads (no wrapper) are recognised from their keys too;
* a REST depth snapshot ``{"lastUpdateId", "E"?, "T"?, "bids", "asks"}``.

Output
------
* ``@trade`` / ``@aggTrade`` -> :class:`Trade`. ``m=true`` (buyer is maker) means a **SELL** aggressor.
  ``trade_id`` is ``t`` (trade) or ``"a<id>"`` (aggTrade, prefixed so the two id spaces cannot collide).
* ``@bookTicker`` -> :class:`BestBidAsk` with ``update_id = u``.
* depth diff -> :class:`DepthUpdate` (``U``, ``u``, ``pu``; ``pu`` is 0 on spot). Sizes are absolute, 0 deletes.
* REST snapshot and partial-book streams -> :class:`DepthSnapshot` (best-first).

``ts_exch_ns`` is the matching-engine time ``T`` when the message has one (trade time, transaction
time), else the event time ``E``, else 0 (spot bookTicker and spot REST snapshot carry no exchange time).

Quarantine rules
----------------
* ``unparsable``: no space separator, non-integer timestamp, invalid JSON, missing or non-numeric fields.
* ``unknown_message``: valid JSON that is none of the above. Subscription acks ``{"result", "id"}``
  are ignored (counted in ``ParseStats.ignored``), not quarantined.
* ``bad_price`` / ``bad_size``: a price <= 0 or non-finite; a size negative or non-finite. A zero size
  is bad in trades and snapshots, allowed in bookTicker (empty side) and in diffs (it deletes a level).
  A diff with one bad level is quarantined whole: the book sync then sees the gap and resyncs,
  which is safer than applying half a message.
* ``crossed_book``: bookTicker or snapshot with bid >= ask.
* ``bad_side``: trade whose ``m`` is not a boolean.
* ``duplicate_trade_id``: a trade id among the last ``dedupe_window`` ids (reconnect replays).
* ``ts_out_of_order``: the local receive time went backwards (the recorder writes in arrival order,
  so this means a corrupted or badly concatenated file). Exchange times are *not* required to be
  monotonic across streams (depth and trade messages interleave with different latencies).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

from apps.engine.events import BestBidAsk, DepthSnapshot, DepthUpdate, Side, Trade

from .common import (
    BAD_SIDE,
    DUPLICATE_TRADE_ID,
    UNKNOWN_MESSAGE,
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
    parse_levels,
    quarantine,
    sorted_snapshot_sides,
)

FORMAT = "binance-raw"
_PARTIAL_DEPTH = re.compile(r"@depth(5|10|20)(@|$)")


def _exch_ns(data: dict) -> int:
    ts = data.get("T") or data.get("E")
    if ts is None:
        return 0
    if not isinstance(ts, int) or isinstance(ts, bool):
        raise BadRecordError(UNPARSABLE, f"exchange time is not an integer: {ts!r}")
    return epoch_to_ns(ts)


def _int_field(data: dict, key: str, *, required: bool = True) -> int:
    v = data.get(key)
    if v is None and not required:
        return 0
    if not isinstance(v, int) or isinstance(v, bool):
        raise BadRecordError(UNPARSABLE, f"field {key!r} must be an integer, got {v!r}")
    return v


def _trade(data: dict, local_ns: int, id_key: str, recent: RecentIds) -> Trade:
    price = check_price(parse_float(data.get("p"), "p"))
    size = check_size(parse_float(data.get("q"), "q"), "q", allow_zero=False)
    m = data.get("m")
    if not isinstance(m, bool):
        raise BadRecordError(BAD_SIDE, f"'m' must be true/false, got {m!r}")
    tid = str(_int_field(data, id_key))
    if id_key == "a":
        tid = "a" + tid
    if recent.seen_before(tid):
        raise BadRecordError(DUPLICATE_TRADE_ID, f"trade id {tid} seen before")
    return Trade(
        ts_exch_ns=_exch_ns(data),
        ts_local_ns=local_ns,
        price=price,
        size=size,
        aggressor=Side.SELL if m else Side.BUY,
        trade_id=tid,
    )


def _book_ticker(data: dict, local_ns: int) -> BestBidAsk:
    bid = check_price(parse_float(data.get("b"), "b"), "bid price")
    ask = check_price(parse_float(data.get("a"), "a"), "ask price")
    bid_sz = check_size(parse_float(data.get("B"), "B"), "bid size", allow_zero=True)
    ask_sz = check_size(parse_float(data.get("A"), "A"), "ask size", allow_zero=True)
    check_not_crossed(bid, ask)
    return BestBidAsk(_exch_ns(data), local_ns, bid, bid_sz, ask, ask_sz, update_id=_int_field(data, "u"))


def _snapshot(data: dict, local_ns: int, bids_key: str, asks_key: str, id_key: str) -> DepthSnapshot:
    bids = parse_levels(data.get(bids_key), "bids", allow_zero=False)
    asks = parse_levels(data.get(asks_key), "asks", allow_zero=False)
    bids, asks = sorted_snapshot_sides(bids, asks)
    return DepthSnapshot(_exch_ns(data), local_ns, bids, asks, last_update_id=_int_field(data, id_key))


def _diff(data: dict, local_ns: int) -> DepthUpdate:
    return DepthUpdate(
        ts_exch_ns=_exch_ns(data),
        ts_local_ns=local_ns,
        bids=parse_levels(data.get("b"), "b", allow_zero=True),
        asks=parse_levels(data.get("a"), "a", allow_zero=True),
        first_update_id=_int_field(data, "U"),
        last_update_id=_int_field(data, "u"),
        prev_update_id=_int_field(data, "pu", required=False),
    )


def decode_message(msg: object, local_ns: int, recent: RecentIds) -> MarketItem | None:
    """Turn one decoded JSON message into an event; None for a control message to ignore.

    Raises :class:`~.common.BadRecordError` for anything to quarantine.
    """
    stream = ""
    data = msg
    if isinstance(msg, dict) and "stream" in msg and "data" in msg:
        stream = str(msg["stream"])
        data = msg["data"]
    if not isinstance(data, dict):
        raise BadRecordError(UNKNOWN_MESSAGE, f"payload is a {type(data).__name__}, not an object")
    kind = data.get("e")
    if kind == "trade":
        return _trade(data, local_ns, "t", recent)
    if kind == "aggTrade":
        return _trade(data, local_ns, "a", recent)
    if kind == "bookTicker" or (kind is None and {"u", "b", "B", "a", "A"} <= data.keys()):
        return _book_ticker(data, local_ns)
    if kind == "depthUpdate":
        if _PARTIAL_DEPTH.search(stream):
            return _snapshot(data, local_ns, "b", "a", "u")
        return _diff(data, local_ns)
    if kind is None and "lastUpdateId" in data and "bids" in data:
        return _snapshot(data, local_ns, "bids", "asks", "lastUpdateId")
    if "result" in data and "id" in data:
        return None
    raise BadRecordError(UNKNOWN_MESSAGE, f"stream {stream!r}, event type {kind!r}")


def _parse(lines: Lines, stats: ParseStats | None, dedupe_window: int) -> Iterator[MarketItem]:
    clock = MonotonicClock("local receive time")
    recent = RecentIds(dedupe_window)
    for line_no, text in lines:
        if not text.strip():
            if stats is not None:
                stats.ignored["blank_line"] += 1
            continue
        try:
            ts_text, sep, body = text.partition(" ")
            if not sep:
                raise BadRecordError(UNPARSABLE, "expected '<local_ts> <json>'")
            try:
                local_ns = epoch_to_ns(int(ts_text))
            except ValueError:
                raise BadRecordError(UNPARSABLE, f"local timestamp is not an integer: {ts_text[:40]!r}") from None
            clock.check(local_ns)
            try:
                msg = json.loads(body)
            except ValueError as exc:
                raise BadRecordError(UNPARSABLE, f"invalid JSON: {exc}") from None
            ev = decode_message(msg, local_ns, recent)
        except BadRecordError as err:
            yield quarantine(line_no, err, text)
            continue
        clock.advance(local_ns)
        if ev is None:
            if stats is not None:
                stats.ignored["control_message"] += 1
            continue
        yield ev


def parse_lines(lines: Lines, *, stats: ParseStats | None = None, dedupe_window: int = 100_000) -> Iterator[MarketItem]:
    """Parse ``(line_no, text)`` pairs of a binance-raw recording; see the module docstring."""
    if stats is not None:
        stats.fmt = FORMAT
    return observed(_parse(counting(lines, stats), stats, dedupe_window), stats)


def parse_file(path: str | Path, *, stats: ParseStats | None = None, **kwargs: int) -> Iterator[MarketItem]:
    """Parse a plain, .gz or .zip binance-raw file."""
    if stats is not None and not stats.source:
        stats.source = str(path)
    return parse_lines(open_text(path), stats=stats, **kwargs)
