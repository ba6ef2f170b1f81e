"""Reads of a session's record: P&L and inventory over time, from the fills and the market's mid.

A session's inventory at the end of a bucket is the sum of every fill's signed size up to then, and its cash the
sum of ``-side·price·size - fee``; its P&L is ``cash + inventory·mid``, marked to the last mid at or before the end
of the bucket (the same identity as :mod:`apps.engine.accounting.pnl`, in quote currency). On TimescaleDB the per-bucket
sums come from the ``trading_fill_bars_1s`` / ``_1m`` continuous aggregates and the mids from the quote bars
(:mod:`apps.marketdata.timescale`); on plain PostgreSQL the same sums are computed from the raw rows over the
``(session, ts)`` index. Either way the rows are identical, up to float summation order.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db import connection
from django.utils import timezone

from apps.marketdata.selectors import CAGG_SUFFIX, bars_on, width_seconds
from apps.marketdata.timescale import TIMESCALEDB, detect_mode

_FILL_COLS = ("bucket", "n_fills", "buy_size", "sell_size", "cash_flow", "fees", "last_price")

_RAW_BARS = """
SELECT date_bin(%(width)s::interval, ts, 'epoch'::timestamptz) AS bucket, count(*),
       sum(CASE WHEN side > 0 THEN size ELSE 0 END), sum(CASE WHEN side > 0 THEN 0 ELSE size END),
       sum(CASE WHEN side > 0 THEN -price * size ELSE price * size END), sum(fee),
       (array_agg(price ORDER BY ts DESC, id DESC))[1]
FROM trading_fillrecord WHERE session_id = %(sid)s AND ts >= %(start)s AND ts < %(end)s
GROUP BY 1 ORDER BY 1
"""
_CAGG_BARS = """
SELECT bucket, n_fills, buy_size, sell_size, cash_flow, fees, last_price FROM trading_fill_bars_{s}
WHERE session_id = %(sid)s AND bucket >= %(start)s AND bucket < %(end)s ORDER BY bucket
"""
_RAW_BEFORE = """
SELECT count(*), coalesce(sum(CASE WHEN side > 0 THEN size ELSE 0 END), 0),
       coalesce(sum(CASE WHEN side > 0 THEN 0 ELSE size END), 0),
       coalesce(sum(CASE WHEN side > 0 THEN -price * size ELSE price * size END), 0), coalesce(sum(fee), 0)
FROM trading_fillrecord WHERE session_id = %(sid)s AND ts < %(start)s
"""
_CAGG_BEFORE = """
SELECT coalesce(sum(n_fills), 0), coalesce(sum(buy_size), 0), coalesce(sum(sell_size), 0),
       coalesce(sum(cash_flow), 0), coalesce(sum(fees), 0)
FROM trading_fill_bars_{s} WHERE session_id = %(sid)s AND bucket < %(start)s
"""
_LAST_FILL_PRICE = """
SELECT price FROM trading_fillrecord WHERE session_id = %(sid)s AND ts < %(start)s ORDER BY ts DESC, id DESC LIMIT 1
"""
_LAST_MID = """
SELECT (bid_px + ask_px) / 2 FROM marketdata_quotetick WHERE instrument_id = %(iid)s AND ts < %(start)s
ORDER BY ts DESC, id DESC LIMIT 1
"""
# A backtest's marks: the mids its engine sampled from the data it replayed (PnlPoint), the last one in a bucket
_RUN_MIDS = """
SELECT date_bin(%(width)s::interval, ts, 'epoch'::timestamptz) AS bucket, (array_agg(mid ORDER BY ts_ns DESC))[1]
FROM trading_pnlpoint WHERE session_id = %(sid)s AND ts >= %(start)s AND ts < %(end)s
GROUP BY 1 ORDER BY 1
"""
_RUN_LAST_MID = """
SELECT mid FROM trading_pnlpoint WHERE session_id = %(sid)s AND ts < %(start)s ORDER BY ts DESC, ts_ns DESC LIMIT 1
"""
QUOTES, RUN = "quotes", "run"  # where the marks come from: the instrument's quote bars, or the backtest's own mids


@dataclass(frozen=True, slots=True)
class PnlBar:
    """One bucket of a session: what it traded in the bucket and where it stood at the bucket's end."""

    bucket: datetime  # start of the bucket
    n_fills: int
    buy_size: float  # base units bought in the bucket
    sell_size: float
    fees: float  # quote currency paid in the bucket (a rebate is negative)
    inventory: float  # base units held at the end of the bucket
    cash: float  # quote currency at the end of the bucket: -Σ side·price·size - Σ fee since the session began
    mid: float | None  # the mark: last mid at or before the bucket's end (last fill price before any mid)
    pnl: float | None  # cash + inventory·mid; None while inventory is held with no mark at all


def _align(ts: datetime, step: int, *, up: bool = False) -> datetime:
    """``ts`` down (or up) to a bucket edge, buckets of ``step`` seconds counted from the epoch."""
    epoch = ts.timestamp()
    edge = int(epoch // step) * step
    return datetime.fromtimestamp(edge + step if up and edge < epoch else edge, tz=UTC)


def _fetchone(cur: Any, sql: str, params: dict[str, Any]) -> tuple[Any, ...] | None:
    cur.execute(sql, params)
    return cur.fetchone()


def session_pnl_on(
    cur: Any,
    session_id: int,
    instrument_id: int,
    start: datetime,
    end: datetime,
    width: str = "1 minute",
    marks: str = QUOTES,
) -> list[PnlBar]:
    """Per-bucket P&L and inventory of a session over ``[start, end)`` on a DB-API cursor, oldest first.

    ``start`` is aligned down and ``end`` up to bucket edges (the continuous aggregates hold whole buckets, and
    the raw road must sum the same fills); fills before ``start`` are summed into the opening inventory and cash,
    so a window in the middle of a session shows the session's real position. A bucket appears when the session
    filled or the instrument quoted in it.

    ``marks`` = :data:`RUN` marks to the mids a backtest's engine sampled from its data (``PnlPoint``) instead of
    the instrument's stored quotes: a backtest over files stores no quotes, and its own mids are the ones its
    summary's P&L is marked to, so the last bucket's P&L is the summary's."""
    if marks not in (QUOTES, RUN):
        raise ValueError(f"marks must be {QUOTES!r} or {RUN!r}, got {marks!r}")
    step = width_seconds(width)
    if end <= start:
        raise ValueError(f"end ({end.isoformat()}) must be after start ({start.isoformat()})")
    start, end = _align(start, step), _align(end, step, up=True)
    params = {"sid": session_id, "iid": instrument_id, "start": start, "end": end, "width": width}
    suffix = CAGG_SUFFIX.get(width)
    use_cagg = suffix is not None and detect_mode(cur) == TIMESCALEDB
    _n, bought, sold, cash_flow, fees = _fetchone(
        cur, (_CAGG_BEFORE.format(s=suffix) if use_cagg else _RAW_BEFORE), params
    )
    inventory, cash = bought - sold, cash_flow - fees
    mid_row = _fetchone(cur, _LAST_MID if marks == QUOTES else _RUN_LAST_MID, params)
    quoted = mid_row is not None  # once the market has quoted, the mark is a mid, never a fill price
    mark_row = mid_row or _fetchone(cur, _LAST_FILL_PRICE, params)
    mark = mark_row[0] if mark_row else None

    cur.execute(_CAGG_BARS.format(s=suffix) if use_cagg else _RAW_BARS, params)
    fills = {row[0]: dict(zip(_FILL_COLS, row, strict=True)) for row in cur.fetchall()}
    if marks == QUOTES:
        mids = {b["bucket"]: b["mid"] for b in bars_on(cur, instrument_id, start, end, width) if b["mid"] is not None}
    else:
        cur.execute(_RUN_MIDS, params)
        mids = {bucket: mid for bucket, mid in cur.fetchall() if mid is not None}

    out: list[PnlBar] = []
    for bucket in sorted(fills.keys() | mids.keys()):
        f = fills.get(bucket)
        if f is not None:
            inventory += f["buy_size"] - f["sell_size"]
            cash += f["cash_flow"] - f["fees"]
        if bucket in mids:
            mark, quoted = mids[bucket], True
        elif not quoted and f is not None:
            mark = f["last_price"]
        inventory = round(inventory, 12)  # sums of decimal lot sizes: 0.3 - 0.1 - 0.2 is flat, not 5.6e-17
        pnl = cash if inventory == 0 else (cash + inventory * mark if mark is not None else None)
        out.append(
            PnlBar(
                bucket=bucket,
                n_fills=f["n_fills"] if f else 0,
                buy_size=f["buy_size"] if f else 0.0,
                sell_size=f["sell_size"] if f else 0.0,
                fees=f["fees"] if f else 0.0,
                inventory=inventory,
                cash=cash,
                mid=mark,
                pnl=pnl,
            )
        )
    return out


def session_pnl(
    session: Any, start: datetime | None = None, end: datetime | None = None, width: str = "1 minute"
) -> list[PnlBar]:
    """:func:`session_pnl_on` for a :class:`~apps.trading.models.TradingSession` on Django's database.

    The range defaults to the session's own: from its first fill or start (whichever is earlier) to its end, or
    now while it runs. A backtest is marked to its own sampled mids (``marks=RUN``, see :func:`session_pnl_on`)
    and its range reaches its last P&L sample, the end of its data."""
    backtest = session.mode == "backtest" and session.pnl_points.exists()
    if start is None:
        first = session.fills.order_by("ts").values_list("ts", flat=True).first()
        candidates = [t for t in (first, session.started_at, session.created_at) if t is not None]
        start = min(candidates)
    if end is None:
        last = session.fills.order_by("-ts").values_list("ts", flat=True).first()
        last_mark = session.pnl_points.order_by("-ts").values_list("ts", flat=True).first() if backtest else None
        until = [t for t in (session.ended_at or timezone.now(), last, last_mark) if t is not None]
        end = max(until) + timedelta(seconds=1)
    with connection.cursor() as cur:
        return session_pnl_on(
            cur, session.pk, session.instrument_id, start, end, width, marks=RUN if backtest else QUOTES
        )


def position_from_fills(session_id: int) -> tuple[float, float, float, int]:
    """(position, cash net of fees, fees, fill count) from every recorded fill of a session: what a restarted
    quoting loop continues from (it does not reset)."""
    from django.db.models import Case, F, FloatField, Sum, When

    from apps.trading.models import FillRecord

    signed = Case(When(side__gt=0, then=F("size")), default=-F("size"), output_field=FloatField())
    flow = Case(
        When(side__gt=0, then=-F("price") * F("size")), default=F("price") * F("size"), output_field=FloatField()
    )
    fills = FillRecord.objects.filter(session_id=session_id)
    agg = fills.aggregate(q=Sum(signed), cash=Sum(flow), fees=Sum("fee"))
    fees = agg["fees"] or 0.0
    return round(agg["q"] or 0.0, 12), (agg["cash"] or 0.0) - fees, fees, fills.count()
