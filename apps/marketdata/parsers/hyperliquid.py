"""``hyperliquid``: recorded Hyperliquid websocket lines, ``<local_ts> <json>``.

Channels
--------
* ``l2Book``: ``{"coin", "time" (ms), "levels": [[bids...], [asks...]]}``, each level
  ``{"px": str, "sz": str, "n": orders}``, best first. A periodic full snapshot (20 levels a side), not a
  diff -> :class:`DepthSnapshot` (the order count ``n`` is dropped).
* ``trades``: a list of ``{"coin", "side", "px", "sz", "time" (ms), "hash", "tid", "users"}`` ->
  one :class:`Trade` per element. ``side`` is the **aggressor**: ``B`` buy, ``A`` sell.
  ``trade_id`` is ``tid``. The first message after subscribing replays recent fills (up to about a
  minute old); deduplication by ``tid`` removes them when recordings are concatenated.
* ``bbo``: ``{"coin", "time", "bbo": [bid | null, ask | null]}`` -> :class:`BestBidAsk`.
* ``subscriptionResponse`` and ``pong`` are ignored (counted in ``ParseStats.ignored``).

The local time prefix is ns/µs/ms (detected by magnitude). ``coin`` (optional) keeps one coin;
other coins' messages are counted as ignored.

Quarantine rules
----------------
* ``unparsable``: no separator, bad timestamp, invalid JSON, missing/non-numeric fields.
* ``unknown_message``: another channel.
* ``bad_price`` / ``bad_size``: price <= 0 or non-finite; size <= 0 (levels and trades) or non-finite.
* ``bad_side``: trade side not ``B``/``A``.
* ``crossed_book``: snapshot or bbo with best bid >= best ask. ``empty_book``: bbo with a null side.
* ``duplicate_trade_id``: ``tid`` among the last ``dedupe_window`` ids. Each trade of a message is
  judged alone, so one bad trade does not drop its neighbours.
* ``ts_out_of_order``: the local receive time went backwards. Exchange times are not checked
  (the subscribe replay is legitimately older than the snapshots before it).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from apps.engine.market.events import BestBidAsk, DepthSnapshot, Side, Trade

from .common import (
    BAD_SIDE,
    DUPLICATE_TRADE_ID,
    EMPTY_BOOK,
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
    quarantine,
    sorted_snapshot_sides,
)

FORMAT = "hyperliquid"
_SIDES = {"B": Side.BUY, "A": Side.SELL}
_IGNORED_CHANNELS = {"subscriptionResponse", "pong"}


def _time_ns(obj: dict) -> int:
    t = obj.get("time")
    if not isinstance(t, int) or isinstance(t, bool):
        raise BadRecordError(UNPARSABLE, f"'time' must be integer ms, got {t!r}")
    return epoch_to_ns(t)


def _level(lvl: object, what: str) -> tuple[float, float]:
    if not isinstance(lvl, dict):
        raise BadRecordError(UNPARSABLE, f"{what} level is not an object: {lvl!r}")
    px = check_price(parse_float(lvl.get("px"), f"{what} px"), f"{what} px")
    sz = check_size(parse_float(lvl.get("sz"), f"{what} sz"), f"{what} sz", allow_zero=False)
    return px, sz


def _l2book(data: dict, local_ns: int) -> DepthSnapshot:
    levels = data.get("levels")
    if not isinstance(levels, list) or len(levels) != 2:
        raise BadRecordError(UNPARSABLE, "'levels' must be [bids, asks]")
    bids = [_level(lv, "bid") for lv in levels[0]]
    asks = [_level(lv, "ask") for lv in levels[1]]
    b, a = sorted_snapshot_sides(bids, asks)
    return DepthSnapshot(_time_ns(data), local_ns, b, a)


def _bbo(data: dict, local_ns: int) -> BestBidAsk:
    pair = data.get("bbo")
    if not isinstance(pair, list) or len(pair) != 2:
        raise BadRecordError(UNPARSABLE, "'bbo' must be [bid, ask]")
    if pair[0] is None or pair[1] is None:
        raise BadRecordError(EMPTY_BOOK, "bbo has an empty side")
    (bid, bid_sz), (ask, ask_sz) = _level(pair[0], "bid"), _level(pair[1], "ask")
    check_not_crossed(bid, ask)
    return BestBidAsk(_time_ns(data), local_ns, bid, bid_sz, ask, ask_sz)


def _trade(t: object, local_ns: int, recent: RecentIds) -> Trade:
    if not isinstance(t, dict):
        raise BadRecordError(UNPARSABLE, f"trade is not an object: {t!r}")
    side = _SIDES.get(t.get("side"))  # type: ignore[arg-type]
    if side is None:
        raise BadRecordError(BAD_SIDE, f"side {t.get('side')!r} is not B/A")
    price = check_price(parse_float(t.get("px"), "px"), "px")
    size = check_size(parse_float(t.get("sz"), "sz"), "sz", allow_zero=False)
    ts = _time_ns(t)
    tid = t.get("tid")
    if tid is None:
        raise BadRecordError(UNPARSABLE, "trade has no 'tid'")
    key = str(tid)
    if recent.seen_before(key):
        raise BadRecordError(DUPLICATE_TRADE_ID, f"tid {key} seen before")
    return Trade(ts, local_ns, price, size, side, key)


def _parse(lines: Lines, stats: ParseStats | None, coin: str | None, dedupe_window: int) -> Iterator[MarketItem]:
    clock = MonotonicClock("local receive time")
    recent = RecentIds(dedupe_window)
    for line_no, text in lines:
        if not text.strip():
            continue
        try:
            ts_text, sep, body = text.partition(" ")
            if not sep:
                raise BadRecordError(UNPARSABLE, "expected '<local_ts> <json>'")
            try:
                local_ns = epoch_to_ns(int(ts_text))
            except ValueError:
                raise BadRecordError(UNPARSABLE, f"local timestamp is not an integer: {ts_text[:40]!r}") from None
            clock.step(local_ns)
            try:
                msg = json.loads(body)
            except ValueError as exc:
                raise BadRecordError(UNPARSABLE, f"invalid JSON: {exc}") from None
            if not isinstance(msg, dict):
                raise BadRecordError(UNKNOWN_MESSAGE, "message is not an object")
            channel, data = msg.get("channel"), msg.get("data")
            if channel in _IGNORED_CHANNELS:
                items: list[MarketItem] = []
                if stats is not None:
                    stats.ignored[str(channel)] += 1
            elif channel == "trades":
                if not isinstance(data, list):
                    raise BadRecordError(UNPARSABLE, "trades data is not a list")
                items = []
                for t in data:
                    if coin is not None and isinstance(t, dict) and t.get("coin") != coin:
                        if stats is not None:
                            stats.ignored["other_coin"] += 1
                        continue
                    try:
                        items.append(_trade(t, local_ns, recent))
                    except BadRecordError as err:
                        items.append(quarantine(line_no, err, json.dumps(t)))
            elif channel in ("l2Book", "bbo"):
                if not isinstance(data, dict):
                    raise BadRecordError(UNPARSABLE, f"{channel} data is not an object")
                if coin is not None and data.get("coin") != coin:
                    if stats is not None:
                        stats.ignored["other_coin"] += 1
                    items = []
                else:
                    items = [_l2book(data, local_ns) if channel == "l2Book" else _bbo(data, local_ns)]
            else:
                raise BadRecordError(UNKNOWN_MESSAGE, f"channel {channel!r}")
        except BadRecordError as err:
            yield quarantine(line_no, err, text)
            continue
        yield from items


def parse_lines(
    lines: Lines,
    *,
    stats: ParseStats | None = None,
    coin: str | None = None,
    dedupe_window: int = 100_000,
) -> Iterator[MarketItem]:
    """Parse ``(line_no, text)`` pairs of a Hyperliquid recording; see the module docstring."""
    if stats is not None:
        stats.fmt = FORMAT
    return observed(_parse(counting(lines, stats), stats, coin, dedupe_window), stats)


def parse_file(
    path: str | Path, *, stats: ParseStats | None = None, coin: str | None = None, dedupe_window: int = 100_000
) -> Iterator[MarketItem]:
    """Parse a plain, .gz or .zip Hyperliquid recording."""
    if stats is not None and not stats.source:
        stats.source = str(path)
    return parse_lines(open_text(path), stats=stats, coin=coin, dedupe_window=dedupe_window)
