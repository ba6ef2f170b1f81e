"""Reads of stored market data: event streams by local time, bars, counts."""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from django.db import connection

from apps.engine.market.events import BestBidAsk, DepthSnapshot, DepthUpdate, Funding, MarketEvent, Side, Trade
from apps.marketdata.importer import ns_to_dt
from apps.marketdata.timescale import TIMESCALEDB, detect_mode

# At equal local time: book state first (snapshot, diff), then funding, trades, quotes (a LOBSTER trade precedes
# the book row that follows it).
_RANK = {"snap": 0, "depth": 1, "funding": 2, "trade": 3, "quote": 4}
_MARGIN_NS = 60 * 10**9  # rows are found by ``ts`` (exchange time, indexed) and filtered by local time

_QUERIES = {
    "snap": (
        "SELECT ts_local_ns, id, ts_exch_ns, last_update_id, bid_px, bid_size, ask_px, ask_size "
        "FROM marketdata_depthsnapshotrecord"
    ),
    "depth": (
        "SELECT ts_local_ns, id, ts_exch_ns, first_update_id, last_update_id, prev_update_id, "
        "bid_px, bid_size, ask_px, ask_size FROM marketdata_depthupdaterecord"
    ),
    "funding": "SELECT ts_local_ns, id, ts_exch_ns, rate, interval_s FROM marketdata_fundingrate",
    "trade": "SELECT ts_local_ns, id, ts_exch_ns, price, size, aggressor, trade_id FROM marketdata_tradetick",
    "quote": (
        "SELECT ts_local_ns, id, ts_exch_ns, bid_px, bid_size, ask_px, ask_size, update_id FROM marketdata_quotetick"
    ),
}


def _event(kind: str, r: tuple[Any, ...]) -> MarketEvent:
    loc, _id, exch = r[0], r[1], r[2]
    if kind == "trade":
        return Trade(exch, loc, r[3], r[4], Side(r[5]), r[6])
    if kind == "quote":
        return BestBidAsk(exch, loc, r[3], r[4], r[5], r[6], update_id=r[7])
    if kind == "depth":
        return DepthUpdate(
            exch, loc, tuple(zip(r[6], r[7], strict=True)), tuple(zip(r[8], r[9], strict=True)), r[3], r[4], r[5]
        )
    if kind == "snap":
        return DepthSnapshot(exch, loc, tuple(zip(r[4], r[5], strict=True)), tuple(zip(r[6], r[7], strict=True)), r[3])
    return Funding(exch, loc, r[3], r[4])


def _stream(kind: str, instrument_id: int, start_ns: int, end_ns: int, chunk: int) -> Iterator[tuple]:
    sql = (
        f"{_QUERIES[kind]} WHERE instrument_id = %s AND ts >= %s AND ts < %s "
        "AND ts_local_ns >= %s AND ts_local_ns < %s ORDER BY ts_local_ns, id"
    )
    params = (instrument_id, ns_to_dt(start_ns - _MARGIN_NS), ns_to_dt(end_ns + _MARGIN_NS), start_ns, end_ns)
    rank = _RANK[kind]
    # a named (server-side) cursor streams in chunks; it needs a transaction, which Django's atomic provides
    with connection.connection.cursor(name=f"replay_{kind}") as cur:
        cur.itersize = chunk
        cur.execute(sql, params)
        for r in cur:
            yield (r[0], rank, r[1], kind, r)


def iter_events(
    instrument_id: int,
    start_ns: int,
    end_ns: int,
    *,
    kinds: tuple[str, ...] = ("snap", "depth", "funding", "trade", "quote"),
    chunk: int = 5000,
) -> Iterator[MarketEvent]:
    """Stored events of one instrument with ``start_ns <= ts_local_ns < end_ns``, merged by local time.

    Ties at equal local time go snapshot, depth diff, funding, trade, quote, then insertion order. Streams from
    server-side cursors (constant memory), closed when the iterator is exhausted or closed early. Rows are
    located by exchange time ``ts`` within ±60 s of the range, so an event whose local clock is more than a
    minute off its exchange clock is missed.
    """
    unknown = set(kinds) - set(_RANK)
    if unknown:
        raise ValueError(f"unknown kinds {sorted(unknown)}; known: {sorted(_RANK)}")
    if end_ns <= start_ns:
        raise ValueError(f"end_ns must be > start_ns, got start_ns={start_ns} end_ns={end_ns}")
    from django.db import transaction

    with transaction.atomic():
        connection.ensure_connection()
        streams = [_stream(k, instrument_id, start_ns, end_ns, chunk) for k in kinds]
        try:
            for _loc, _rank, _id, kind, r in heapq.merge(*streams):
                yield _event(kind, r)
        finally:
            # A consumer that stops early (or raises) closes this generator: close the named cursors now,
            # inside the transaction that owns them, not whenever the garbage collector gets to them.
            for stream in streams:
                stream.close()


def stored_range_ns(instrument_id: int) -> tuple[int, int] | None:
    """(first, last + 1) local ns over every table :func:`iter_events` reads (trades, quotes, depth diffs and
    snapshots, funding), or None when nothing is stored. A recording may start with a book snapshot (a
    Hyperliquid l2Book stream is nothing else), so the snapshot and funding tables count too."""
    lo, hi = None, None
    with connection.cursor() as cur:
        for table in (
            "marketdata_tradetick",
            "marketdata_quotetick",
            "marketdata_depthupdaterecord",
            "marketdata_depthsnapshotrecord",
            "marketdata_fundingrate",
        ):
            cur.execute(
                f"SELECT min(ts_local_ns), max(ts_local_ns) FROM {table} WHERE instrument_id = %s",  # noqa: S608
                (instrument_id,),
            )
            a, b = cur.fetchone()
            if a is not None:
                lo = a if lo is None else min(lo, a)
                hi = b if hi is None else max(hi, b)
    return None if lo is None else (lo, hi + 1)


# The close is read from the last quote of each bucket by an index lookup ((instrument, ts) index, newest first),
# so the quotes are only counted and averaged (a parallel hash aggregate) instead of sorted per bucket: over a
# day of BTCUSDT quotes (16M rows) the sort for array_agg(... ORDER BY ts DESC) spilled to disk and took ~10 s.
_BARS_SQL = """
WITH q AS (
    SELECT date_bin(%(width)s::interval, ts, 'epoch'::timestamptz) AS bucket,
           avg(ask_px - bid_px) AS spread_mean, count(*) AS n_quotes, max(ts) AS last_ts
    FROM marketdata_quotetick WHERE instrument_id = %(iid)s AND ts >= %(start)s AND ts < %(end)s GROUP BY 1
), t AS (
    SELECT date_bin(%(width)s::interval, ts, 'epoch'::timestamptz) AS bucket,
           sum(size) AS volume, count(*) AS n_trades
    FROM marketdata_tradetick WHERE instrument_id = %(iid)s AND ts >= %(start)s AND ts < %(end)s GROUP BY 1
)
SELECT coalesce(q.bucket, t.bucket) AS bucket,
       (SELECT (c.bid_px + c.ask_px) / 2 FROM marketdata_quotetick c
        WHERE c.instrument_id = %(iid)s AND c.ts = q.last_ts ORDER BY c.id DESC LIMIT 1) AS mid_close,
       q.spread_mean, coalesce(q.n_quotes, 0), coalesce(t.volume, 0), coalesce(t.n_trades, 0)
FROM q FULL OUTER JOIN t ON q.bucket = t.bucket ORDER BY 1
"""
_CAGG_SQL = """
SELECT coalesce(q.bucket, t.bucket) AS bucket, q.mid_close, q.spread_mean, coalesce(q.n_quotes, 0),
       coalesce(t.volume, 0), coalesce(t.n_trades, 0)
FROM (SELECT * FROM marketdata_quote_bars_{s} WHERE instrument_id = %(iid)s AND bucket >= %(start)s
      AND bucket < %(end)s) q
FULL OUTER JOIN (SELECT * FROM marketdata_trade_bars_{s} WHERE instrument_id = %(iid)s AND bucket >= %(start)s
      AND bucket < %(end)s) t ON q.bucket = t.bucket
ORDER BY 1
"""


CAGG_SUFFIX = {"1 second": "1s", "1 minute": "1m"}  # the widths the continuous aggregates hold


def bars(instrument_id: int, start: datetime, end: datetime, width: str = "1 minute") -> list[dict[str, Any]]:
    """Bars of mid (close), mean spread, quote count, volume and trade count, oldest first.

    On TimescaleDB the 1 s / 1 min continuous aggregates answer; otherwise the raw rows are aggregated
    (``date_bin`` over the ``(instrument, ts)`` index range).
    """
    with connection.cursor() as cur:
        return bars_on(cur, instrument_id, start, end, width)


def bars_on(cur: Any, instrument_id: int, start: datetime, end: datetime, width: str) -> list[dict[str, Any]]:
    """:func:`bars` on a given DB-API cursor (Django's or a bare psycopg one)."""
    width_seconds(width)
    params = {"iid": instrument_id, "start": start, "end": end, "width": width}
    suffix = CAGG_SUFFIX.get(width)
    if suffix and detect_mode(cur) == TIMESCALEDB:
        cur.execute(_CAGG_SQL.format(s=suffix), params)
    else:
        cur.execute(_BARS_SQL, params)
    cols = ("bucket", "mid", "spread", "n_quotes", "volume", "n_trades")
    return [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]


def width_seconds(width: str) -> int:
    """Seconds in a bar width written ``"N second(s)"`` or ``"N minute(s)"``; ValueError for anything else."""
    parts = width.split()
    unit = {"second": 1, "seconds": 1, "minute": 60, "minutes": 60}.get(parts[-1]) if len(parts) == 2 else None
    if unit is None or not parts[0].isdigit() or int(parts[0]) <= 0:
        raise ValueError(
            f"width must be a positive whole number of seconds or minutes (e.g. '1 minute'), got {width!r}"
        )
    return int(parts[0]) * unit
