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
  USD-M trades carry ``X``, the trade type: ``"MARKET"`` for an ordinary trade, else ``"INSURANCE_FUND"``
  (a liquidation the insurance fund took over), ``"ADL"`` (auto-deleveraging) or ``"NA"``; any value other
  than ``MARKET`` gives ``market=False`` and ``kind=X`` (counted in ``ParseStats.non_market_trades``). Spot
  trades have no ``X`` (market trades). A non-string ``X`` is ``unparsable``.
* ``@markPrice`` / ``@markPrice@1s`` (``"e": "markPriceUpdate"``) -> :class:`MarkPrice`: mark price ``p``,
  funding rate ``r``, next funding time ``T`` (ms), exchange time ``E`` (``T`` is *not* the event time
  here). Delivery contracts send ``r`` and ``T`` as ``""``: rate 0, no funding time.
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
* ``ts_out_of_order``: the local receive time is earlier than that of the last line whose receive time
  was in order (the recorder writes in arrival order, so this means a corrupted or badly concatenated
  file). The receive time is the recorder's, not the message's: a line quarantined for its content still
  sets it. Exchange times are *not* required to be monotonic across streams (depth and trade messages
  interleave with different latencies).

Speed
-----
:func:`records` is the parser itself, yielding plain tuples (the importer's road); :func:`parse_lines`
turns them into events. JSON is decoded by orjson, and the standard library decides whenever orjson
refuses a line (so ``NaN`` literals and huge integers are treated exactly as ``json`` treats them). A depth
diff in the combined-stream wrapper is first decoded by msgspec into typed fields (:class:`_DepthDiff`, strict:
integers must be JSON integers, levels pairs of strings), which is about 2-3x cheaper than a dict of lists of
lists for these large messages; anything it refuses goes the orjson road. Each message takes a fast path when
all its checks pass at once; otherwise the checking functions
(:func:`decode_message` and its helpers) run and raise the precise reason, so both roads quarantine the
same lines with the same reason and detail (``tests/marketdata/test_fast_import.py``).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import msgspec
from orjson import loads as _orjson_loads

from apps.engine.market.events import BestBidAsk, DepthSnapshot, DepthUpdate, MarkPrice, Side, Trade

from .common import (
    BAD_SIDE,
    DUPLICATE_TRADE_ID,
    TS_OUT_OF_ORDER,
    UNKNOWN_MESSAGE,
    UNPARSABLE,
    BadRecordError,
    Lines,
    MarketItem,
    ParseStats,
    Quarantined,
    RecentIds,
    check_not_crossed,
    check_price,
    check_size,
    epoch_to_ns,
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


def _trade_type(data: dict) -> str:
    x = data.get("X", "MARKET")
    if not isinstance(x, str) or not x:
        raise BadRecordError(UNPARSABLE, f"field 'X' (trade type) must be a non-empty string, got {x!r}")
    return x


def _mark_price(data: dict, local_ns: int) -> MarkPrice:
    mark = check_price(parse_float(data.get("p"), "p"), "mark price")
    r = data.get("r")
    rate = 0.0 if r == "" else parse_float(r, "r")
    if not math.isfinite(rate):
        raise BadRecordError(UNPARSABLE, f"field 'r' (funding rate) must be finite, got {r!r}")
    t = data.get("T")
    next_ns = 0 if t == "" or t is None else epoch_to_ns(_int_field(data, "T"))
    e = data.get("E")
    if not isinstance(e, int) or isinstance(e, bool):
        raise BadRecordError(UNPARSABLE, f"field 'E' (event time) must be an integer, got {e!r}")
    return MarkPrice(epoch_to_ns(e), local_ns, mark, rate, next_ns)


def _trade(data: dict, local_ns: int, id_key: str, recent: RecentIds) -> Trade:
    kind = _trade_type(data)
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
        market=kind == "MARKET",
        kind=kind,
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
    if kind == "markPriceUpdate":
        return _mark_price(data, local_ns)
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


# Record kinds yielded by :func:`records` (the first element of each tuple).
TRADE, QUOTE, DEPTH, SNAPSHOT, RAW, OTHER_TRADE, MARK = 1, 2, 3, 4, 5, 6, 7
_DEPTH_MARK = 'depthUpdate"'
_INF = math.inf
_MS_LO, _MS_HI = 10**11, 10**14  # epoch_to_ns's millisecond band (the exchange clocks' unit)
_NS_LO = 10**17


def _loads(body: str) -> object:
    try:
        return _orjson_loads(body)
    except ValueError:
        # orjson refuses a few things json accepts (NaN literals, integers past 64 bits): the standard library
        # decides, so what is accepted and the error message are exactly json's
        try:
            return json.loads(body)
        except ValueError as exc:
            raise BadRecordError(UNPARSABLE, f"invalid JSON: {exc}") from None


def _fast_levels(levels: object, allow_zero: bool) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
    """``[["px", "size"], ...]`` to (prices, sizes) with C-level loops; None when anything needs the slow path's
    check (which then raises the precise error, or accepts the same values).

    The decimal strings are joined into one JSON array and decoded by orjson (correctly rounded, so each value
    equals ``float(text)``); exactly one float per string, or the slow path decides (a string that is no JSON
    number, e.g. ``" 1"`` or ``"nan"``, makes the array invalid or changes the count or a type).
    """
    if type(levels) is not list:
        return None
    if not levels:
        return (), ()
    if set(map(type, levels)) != _LIST:
        return None
    try:
        px_s, sz_s = zip(*levels, strict=True)  # ValueError unless every level is a pair
    except ValueError:
        return None
    return _fast_floats(px_s, sz_s, allow_zero)


def _fast_floats(
    px_s: tuple[str, ...], sz_s: tuple[str, ...], allow_zero: bool
) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
    """The price and size strings of a side as floats, checked; None for the slow path (see :func:`_fast_levels`)."""
    n = len(px_s)
    try:
        values = _orjson_loads("[" + ",".join(px_s) + "," + ",".join(sz_s) + "]")
    except (TypeError, ValueError):
        return None
    if len(values) != 2 * n or set(map(type, values)) != _FLOAT:
        return None
    pxs = tuple(values[:n])
    szs = tuple(values[n:])
    # a NaN or infinity cannot come out of JSON numbers, but an overflow can ("1e999"): keep the sum check
    if not math.isfinite(sum(values)) or min(pxs) <= 0:
        return None
    low = min(szs)
    if low < 0 or (low == 0 and not allow_zero):
        return None
    return pxs, szs


_LIST, _FLOAT = frozenset({list}), frozenset({float})


class _DepthDiff(msgspec.Struct):
    """The fields of a depth diff the importer reads, as their JSON types; others are skipped (but must be valid
    JSON). A missing ``pu`` is 0 as in :func:`_diff`; a null one, or any other type, fails the decoding."""

    e: str
    U: int
    u: int
    b: list[tuple[str, str]]
    a: list[tuple[str, str]]
    T: int | None = None
    E: int | None = None
    pu: int = 0


class _DepthWrapper(msgspec.Struct):
    stream: str
    data: _DepthDiff


_decode_depth = msgspec.json.Decoder(_DepthWrapper).decode


def _fast_depth(body: str, line_no: int, local_ns: int) -> tuple | None:
    """A ``DEPTH`` record of a wrapped depth diff whose every check passes, or None for the general road (which
    decides, and names the reason when the line is bad): the same record that road builds."""
    try:
        msg = _decode_depth(body)
    except msgspec.MsgspecError:
        return None
    d = msg.data
    ts = d.T or d.E
    if d.e != "depthUpdate" or ts is None or not (_MS_LO <= ts < _MS_HI) or _PARTIAL_DEPTH.search(msg.stream):
        return None
    # levels are (str, str) pairs by type, so the zips are exact
    bid = _fast_floats(*zip(*d.b, strict=True), True) if d.b else ((), ())
    if bid is None:
        return None
    ask = _fast_floats(*zip(*d.a, strict=True), True) if d.a else ((), ())
    if ask is None:
        return None
    return (DEPTH, line_no, local_ns, ts * 1_000_000, d.U, d.u, d.pu, *bid, *ask)


def records(
    lines: Lines, stats: ParseStats, dedupe_window: int = 100_000, *, defer_depth: Callable[[], bool] | None = None
) -> Iterator[tuple | Quarantined]:
    """The parser's core, in the cheapest form: plain tuples instead of event objects.

    Yields, in file order, :class:`~.common.Quarantined` records and tuples

    * ``(TRADE, line_no, ts_local_ns, ts_exch_ns, price, size, aggressor, trade_id)`` (aggressor +1 / -1),
    * ``(OTHER_TRADE, ..., trade_id, kind)``: the same for a non-market trade (``X`` other than ``MARKET``),
    * ``(MARK, line_no, ts_local_ns, ts_exch_ns, mark_price, funding_rate, next_funding_ns)``,
    * ``(QUOTE, line_no, ts_local_ns, ts_exch_ns, bid_px, bid_size, ask_px, ask_size, update_id)``,
    * ``(DEPTH, line_no, ts_local_ns, ts_exch_ns, first_update_id, last_update_id, prev_update_id, bid_px,
      bid_size, ask_px, ask_size)`` and the same for ``SNAPSHOT`` (first and previous ids 0); the sides are
      parallel float tuples, best first in a snapshot (:func:`depth_event` makes the event).

    With ``defer_depth``, a line that can only be a depth message (it holds ``depthUpdate"``, and neither a
    backslash nor ``rade``, so no trade) is yielded undecoded once its receive time is checked, as
    ``(RAW, line_no, text)``, whenever ``defer_depth()`` says so. Its decoding (``records`` over that line
    alone, with a ParseStats of its own: without trades there is no state across lines) can then happen
    elsewhere, e.g. in the importer's sidecar process.

    Same checks, reasons and messages as :func:`decode_message`: each message takes a fast path when every
    check passes at once, else the checking functions above decide. Fills ``stats`` (lines, events by event
    class name, quarantines, ignored lines, clock offsets) exactly as :func:`parse_lines` does.
    """
    stats.fmt = stats.fmt or FORMAT
    note = stats.note
    add_quarantine = stats.add_quarantine
    ignored = stats.ignored
    recent = RecentIds(dedupe_window)
    seen_before = recent.seen_before
    orjson_loads = _orjson_loads
    fast_levels = _fast_levels
    fast_depth = _fast_depth
    inf = _INF
    ms_lo, ms_hi, ns_lo = _MS_LO, _MS_HI, _NS_LO
    last_local: int | None = None
    # the two hot kinds are counted here and merged into ``stats`` at the end (and whenever the consumer stops)
    n_quotes = n_trades = 0
    lo, hi = _NO_LO, 0
    # clock offsets (ms) wait in lists and go to the reservoirs in bulk (see _OFFSET_BATCH)
    quote_offsets: list[float] = []
    trade_offsets: list[float] = []
    add_quote_offset, add_trade_offset = quote_offsets.append, trade_offsets.append
    try:
        for line_no, text in lines:
            stats.lines += 1
            ts_text, sep, body = text.partition(" ")
            try:
                try:
                    v = int(ts_text)
                except ValueError:
                    if not text.strip():
                        ignored["blank_line"] += 1
                        continue
                    if not sep:
                        raise BadRecordError(UNPARSABLE, "expected '<local_ts> <json>'") from None
                    raise BadRecordError(UNPARSABLE, f"local timestamp is not an integer: {ts_text[:40]!r}") from None
                if not sep:
                    raise BadRecordError(UNPARSABLE, "expected '<local_ts> <json>'")
                local_ns = v if v >= ns_lo else epoch_to_ns(v)
                if last_local is not None and local_ns < last_local:
                    raise BadRecordError(TS_OUT_OF_ORDER, f"local receive time went back {last_local - local_ns} ns")
                last_local = local_ns
                if _DEPTH_MARK in body:
                    if defer_depth is not None and "\\" not in body and "rade" not in body and defer_depth():
                        yield (RAW, line_no, text)
                        continue
                    if (rec := fast_depth(body, line_no, local_ns)) is not None:
                        note("DepthUpdate", rec[3], local_ns)
                        yield rec
                        continue
                try:
                    msg = orjson_loads(body)
                except ValueError:
                    msg = _loads(body)  # the standard library decides (see _loads)
                data = msg
                stream = ""
                if type(msg) is dict and "stream" in msg and "data" in msg:
                    stream = str(msg["stream"])
                    data = msg["data"]
                if type(data) is not dict:
                    raise BadRecordError(UNKNOWN_MESSAGE, f"payload is a {type(data).__name__}, not an object")
                kind = data.get("e")
                ts = data.get("T") or data.get("E")
                if type(ts) is int:
                    exch = ts * 1_000_000 if ms_lo <= ts < ms_hi else epoch_to_ns(ts)
                elif ts is None:
                    exch = 0
                else:
                    exch = -1  # the checking functions raise the error
                if kind == "bookTicker" or (kind is None and data.keys() >= _BOOK_TICKER_KEYS):
                    try:
                        b = float(data["b"])
                        bq = float(data["B"])
                        a = float(data["a"])
                        aq = float(data["A"])
                    except (KeyError, TypeError, ValueError):
                        b = -1.0
                    u = data.get("u")
                    if 0 < b < a < inf and 0 <= bq < inf and 0 <= aq < inf and type(u) is int and exch >= 0:
                        rec = (QUOTE, line_no, local_ns, exch, b, bq, a, aq, u)
                    else:
                        q = _book_ticker(data, local_ns)
                        rec = (QUOTE, line_no, local_ns, q.ts_exch_ns, q.bid_px, q.bid_size, q.ask_px, q.ask_size)
                        rec = (*rec, q.update_id)
                    exch = rec[3]
                    n_quotes += 1
                    if exch:
                        if exch < lo:
                            lo = exch
                        if exch > hi:
                            hi = exch
                        add_quote_offset((local_ns - exch) / 1e6)
                        if len(quote_offsets) >= _OFFSET_BATCH:
                            stats.reservoir("BestBidAsk").add_many(quote_offsets)
                            quote_offsets.clear()
                elif kind == "trade" or kind == "aggTrade":
                    id_key = "t" if kind == "trade" else "a"
                    try:
                        px = float(data["p"])
                        sz = float(data["q"])
                    except (KeyError, TypeError, ValueError):
                        px = -1.0
                    m = data.get("m")
                    tid = data.get(id_key)
                    x = data.get("X", "MARKET")
                    if (
                        0 < px < inf
                        and 0 < sz < inf
                        and (m is True or m is False)
                        and type(tid) is int
                        and exch >= 0
                        and x == "MARKET"
                    ):
                        tid = str(tid) if id_key == "t" else f"a{tid}"
                        if seen_before(tid):
                            raise BadRecordError(DUPLICATE_TRADE_ID, f"trade id {tid} seen before")
                        rec = (TRADE, line_no, local_ns, exch, px, sz, -1 if m else 1, tid)
                    else:
                        t = _trade(data, local_ns, id_key, recent)
                        rec = (TRADE, line_no, local_ns, t.ts_exch_ns, t.price, t.size, int(t.aggressor), t.trade_id)
                        if not t.market:
                            rec = (OTHER_TRADE, *rec[1:], t.kind)
                            stats.non_market_trades[t.kind] += 1
                    exch = rec[3]
                    n_trades += 1
                    if exch:
                        if exch < lo:
                            lo = exch
                        if exch > hi:
                            hi = exch
                        add_trade_offset((local_ns - exch) / 1e6)
                        if len(trade_offsets) >= _OFFSET_BATCH:
                            stats.reservoir("Trade").add_many(trade_offsets)
                            trade_offsets.clear()
                elif kind == "depthUpdate" and not _PARTIAL_DEPTH.search(stream):
                    bid = fast_levels(data.get("b"), True)
                    ask = fast_levels(data.get("a"), True) if bid is not None else None
                    fu, lu, pu = data.get("U"), data.get("u"), data.get("pu", 0)
                    if bid is not None and ask is not None and exch >= 0 and type(fu) is type(lu) is type(pu) is int:
                        rec = (DEPTH, line_no, local_ns, exch, fu, lu, pu, *bid, *ask)
                    else:
                        ev = _diff(data, local_ns)
                        ids = (ev.ts_exch_ns, ev.first_update_id, ev.last_update_id, ev.prev_update_id)
                        rec = (DEPTH, line_no, local_ns, *ids, *_split(ev.bids), *_split(ev.asks))
                    note("DepthUpdate", rec[3], local_ns)
                elif kind == "markPriceUpdate":
                    mp = _mark_price(data, local_ns)
                    rec = (MARK, line_no, local_ns, mp.ts_exch_ns, mp.mark_price, mp.funding_rate, mp.next_funding_ns)
                    note("MarkPrice", mp.ts_exch_ns, local_ns)
                else:
                    ev = decode_message(msg, local_ns, recent)
                    if ev is None:
                        ignored["control_message"] += 1
                        continue
                    assert isinstance(ev, DepthSnapshot), ev  # every other kind took a branch above
                    ids = (ev.ts_exch_ns, 0, ev.last_update_id, 0)
                    rec = (SNAPSHOT, line_no, local_ns, *ids, *_split(ev.bids), *_split(ev.asks))
                    note("DepthSnapshot", ev.ts_exch_ns, local_ns)
            except BadRecordError as err:
                q = quarantine(line_no, err, text)
                add_quarantine(q)
                yield q
                continue
            yield rec
    finally:
        if quote_offsets:
            stats.reservoir("BestBidAsk").add_many(quote_offsets)
        if trade_offsets:
            stats.reservoir("Trade").add_many(trade_offsets)
        if n_quotes:
            stats.events["BestBidAsk"] += n_quotes
        if n_trades:
            stats.events["Trade"] += n_trades
        if hi:
            if stats.first_ts_exch_ns is None or lo < stats.first_ts_exch_ns:
                stats.first_ts_exch_ns = lo
            if stats.last_ts_exch_ns is None or hi > stats.last_ts_exch_ns:
                stats.last_ts_exch_ns = hi


_NO_LO = 2**63
_OFFSET_BATCH = 4096
_BOOK_TICKER_KEYS = frozenset({"u", "b", "B", "a", "A"})


def _split(levels: tuple[tuple[float, float], ...]) -> tuple[tuple[float, ...], tuple[float, ...]]:
    if not levels:
        return (), ()
    pxs, szs = zip(*levels, strict=True)
    return pxs, szs


def depth_event(rec: tuple) -> DepthUpdate | DepthSnapshot:
    """The event of a ``DEPTH`` or ``SNAPSHOT`` record (levels as (price, size) pairs)."""
    kind, _l, local_ns, exch, first_id, last_id, prev_id, bp, bs, ap, as_ = rec
    bids, asks = tuple(zip(bp, bs, strict=True)), tuple(zip(ap, as_, strict=True))
    if kind == DEPTH:
        return DepthUpdate(exch, local_ns, bids, asks, first_id, last_id, prev_id)
    return DepthSnapshot(exch, local_ns, bids, asks, last_id)


def to_event(rec: tuple) -> MarketItem:
    """The engine event of one :func:`records` tuple."""
    kind = rec[0]
    if kind == QUOTE:
        _k, _l, local_ns, exch, b, bq, a, aq, u = rec
        return BestBidAsk(exch, local_ns, b, bq, a, aq, update_id=u)
    if kind == TRADE:
        _k, _l, local_ns, exch, px, sz, aggressor, tid = rec
        return Trade(exch, local_ns, px, sz, Side.SELL if aggressor < 0 else Side.BUY, tid)
    if kind == OTHER_TRADE:
        _k, _l, local_ns, exch, px, sz, aggressor, tid, label = rec
        return Trade(exch, local_ns, px, sz, Side.SELL if aggressor < 0 else Side.BUY, tid, False, label)
    if kind == MARK:
        _k, _l, local_ns, exch, mark, rate, next_ns = rec
        return MarkPrice(exch, local_ns, mark, rate, next_ns)
    return depth_event(rec)


def _parse(lines: Lines, stats: ParseStats | None, dedupe_window: int) -> Iterator[MarketItem]:
    for rec in records(lines, stats if stats is not None else ParseStats(), dedupe_window):
        yield rec if type(rec) is Quarantined else to_event(rec)


def parse_lines(lines: Lines, *, stats: ParseStats | None = None, dedupe_window: int = 100_000) -> Iterator[MarketItem]:
    """Parse ``(line_no, text)`` pairs of a binance-raw recording; see the module docstring."""
    if stats is not None:
        stats.fmt = FORMAT
    return _parse(lines, stats, dedupe_window)


def parse_file(path: str | Path, *, stats: ParseStats | None = None, **kwargs: int) -> Iterator[MarketItem]:
    """Parse a plain, .gz or .zip binance-raw file."""
    if stats is not None and not stats.source:
        stats.source = str(path)
    return parse_lines(open_text(path), stats=stats, **kwargs)
