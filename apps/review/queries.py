"""Reads behind the session review page: the chart series at screen resolution, the decision in force at an instant.

Downsampling happens in the database. A range holding at most ``points`` decisions comes back raw (every event,
exact ``ts_ns``); a longer one is cut into at most ``points`` equal buckets with ``date_bin`` (plain PostgreSQL)
or ``time_bucket`` (TimescaleDB), and each bucket yields one point: the mid's min and max (so a spike inside a
bucket survives as the band's edge), and the last decision's mid, bid and ask (read back over the ``(session,
ts)`` index at the bucket's ``max(ts)``: one cheap probe per bucket instead of sorting every row of the range).
P&L points are bucketed the same way (last value per bucket). Fills come raw up to the cap, else as per-bucket,
per-side sums. Python never sees more than a few thousand rows, whatever the session's length.

Times: ``ts_ns`` integers at the edges; the chart gets seconds since the epoch (float, UTC).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db import connection

from apps.marketdata.timescale import TIMESCALEDB, db_mode

MAX_POINTS = 5000
DEFAULT_POINTS = 1500
MAX_MARKERS = 500
MAX_ORDERS = 100
PNL_PARTS = ("spread_capture", "adverse_selection", "inventory", "fees", "funding")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

_mode_cache: dict[str, str] = {}


def storage_mode() -> str:
    """The database's storage mode, asked once per process (it changes only by a migration)."""
    alias = connection.alias
    if alias not in _mode_cache:
        _mode_cache[alias] = db_mode()
    return _mode_cache[alias]


def ns_to_dt(ts_ns: int) -> datetime:
    return _EPOCH + timedelta(microseconds=ts_ns // 1000)


def dt_to_ns(ts: datetime) -> int:
    return (ts - _EPOCH) // timedelta(microseconds=1) * 1000


def parse_instant(value: str, field: str) -> int:
    """``value`` as ns since the epoch: an integer (ns) or an ISO 8601 time (UTC when it names no zone).
    ValueError naming ``field`` otherwise."""
    value = (value or "").strip()
    if not value:
        raise ValueError(f"{field} is required: an integer ts_ns or an ISO 8601 time")
    if value.lstrip("-").isdigit():
        return int(value)
    try:
        ts = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{field} must be an integer ts_ns or an ISO 8601 time, got {value[:40]!r}") from None
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    return dt_to_ns(ts)


def parse_points(value: str | None) -> int:
    if value in (None, ""):
        return DEFAULT_POINTS
    if not value.isdigit() or not 2 <= int(value) <= MAX_POINTS:
        raise ValueError(f"points must be a whole number from 2 to {MAX_POINTS}")
    return int(value)


# ------------------------------------------------------------------ span


_SPAN = """
SELECT (SELECT min(ts_ns) FROM trading_quotedecisionrecord WHERE session_id = %(sid)s
          AND ts = (SELECT min(ts) FROM trading_quotedecisionrecord WHERE session_id = %(sid)s)),
       (SELECT max(ts_ns) FROM trading_quotedecisionrecord WHERE session_id = %(sid)s
          AND ts = (SELECT max(ts) FROM trading_quotedecisionrecord WHERE session_id = %(sid)s)),
       (SELECT min(ts) FROM trading_pnlpoint WHERE session_id = %(sid)s),
       (SELECT max(ts) FROM trading_pnlpoint WHERE session_id = %(sid)s),
       (SELECT min(ts) FROM trading_fillrecord WHERE session_id = %(sid)s),
       (SELECT max(ts) FROM trading_fillrecord WHERE session_id = %(sid)s)
"""


@dataclass(frozen=True, slots=True)
class Span:
    start_ns: int
    end_ns: int  # inclusive: the last recorded event
    recorded: bool  # False when nothing is recorded yet (the span is the session's wall-clock life)

    @property
    def seconds(self) -> float:
        return (self.end_ns - self.start_ns) / 1e9


def session_span(session: Any) -> Span:
    """First and last recorded event of a session (decisions, P&L points, fills): one query over the indexes."""
    with connection.cursor() as cur:
        cur.execute(_SPAN, {"sid": session.pk})
        d0, d1, p0, p1, f0, f1 = cur.fetchone()
    starts = [v for v in (d0, p0 and dt_to_ns(p0), f0 and dt_to_ns(f0)) if v is not None]
    ends = [v for v in (d1, p1 and dt_to_ns(p1) + 999, f1 and dt_to_ns(f1) + 999) if v is not None]
    if starts:
        return Span(min(starts), max(ends), True)
    t0 = session.started_at or session.created_at
    t1 = session.ended_at or max(t0, datetime.now(UTC))
    return Span(dt_to_ns(t0), dt_to_ns(t1), False)


# ------------------------------------------------------------------ series


def _bucket_expr() -> str:
    fn = "time_bucket" if storage_mode() == TIMESCALEDB else "date_bin"
    return f"{fn}(%(width)s::interval, ts, %(origin)s::timestamptz)"


_RAW_QUOTES = """
SELECT ts_ns, mid, bid_px, ask_px FROM trading_quotedecisionrecord
WHERE session_id = %(sid)s AND ts >= %(start)s AND ts <= %(end)s AND ts_ns >= %(start_ns)s AND ts_ns <= %(end_ns)s
ORDER BY ts, ts_ns, id LIMIT %(limit)s
"""
_BUCKET_QUOTES = """
WITH b AS (
  SELECT {bucket} AS bucket, min(mid) AS lo, max(mid) AS hi, count(*) AS n, max(ts) AS last_ts
  FROM trading_quotedecisionrecord
  WHERE session_id = %(sid)s AND ts >= %(start)s AND ts <= %(end)s
  GROUP BY 1
)
SELECT b.bucket, b.lo, b.hi, b.n, d.ts_ns, d.mid, d.bid_px, d.ask_px FROM b
CROSS JOIN LATERAL (
  SELECT ts_ns, mid, bid_px, ask_px FROM trading_quotedecisionrecord
  WHERE session_id = %(sid)s AND ts = b.last_ts ORDER BY ts_ns DESC, id DESC LIMIT 1
) d ORDER BY b.bucket
"""
_PNL_COLS = ("ts_ns", "mid", "position", "total", *PNL_PARTS)
_RAW_PNL = """
SELECT {cols} FROM trading_pnlpoint
WHERE session_id = %(sid)s AND ts >= %(start)s AND ts <= %(end)s AND ts_ns >= %(start_ns)s AND ts_ns <= %(end_ns)s
ORDER BY ts, ts_ns, id LIMIT %(limit)s
"""
_BUCKET_PNL = """
WITH b AS (
  SELECT {bucket} AS bucket, max(ts) AS last_ts FROM trading_pnlpoint
  WHERE session_id = %(sid)s AND ts >= %(start)s AND ts <= %(end)s GROUP BY 1
)
SELECT {pcols} FROM b CROSS JOIN LATERAL (
  SELECT {cols} FROM trading_pnlpoint WHERE session_id = %(sid)s AND ts = b.last_ts ORDER BY ts_ns DESC, id DESC LIMIT 1
) p ORDER BY b.bucket
"""
_RAW_FILLS = """
SELECT ts_ns, side, price, size, fee, liquidity, client_order_id FROM trading_fillrecord
WHERE session_id = %(sid)s AND ts >= %(start)s AND ts <= %(end)s AND ts_ns >= %(start_ns)s AND ts_ns <= %(end_ns)s
ORDER BY ts, ts_ns, id LIMIT %(limit)s
"""
_BUCKET_FILLS = """
SELECT {bucket} AS bucket, side, sum(price * size) / nullif(sum(size), 0), sum(size), sum(fee), count(*), max(ts_ns)
FROM trading_fillrecord WHERE session_id = %(sid)s AND ts >= %(start)s AND ts <= %(end)s
GROUP BY 1, 2 ORDER BY 1, 2
"""
# the running position and cash for sessions without P&L points: fills summed per bucket, opened by what came before
_FILL_FLOWS = """
SELECT {bucket} AS bucket, sum(side * size), sum(-side * price * size - fee) FROM trading_fillrecord
WHERE session_id = %(sid)s AND ts >= %(start)s AND ts <= %(end)s GROUP BY 1 ORDER BY 1
"""
_FILLS_BEFORE = """
SELECT coalesce(sum(side * size), 0), coalesce(sum(-side * price * size - fee), 0) FROM trading_fillrecord
WHERE session_id = %(sid)s AND ts < %(start)s
"""
_MARKERS = """
(SELECT 'params' AS kind, ts, NULL::bigint AS ts_ns, action AS label, reason AS message, detail, actor_label
   FROM control_auditevent WHERE session_id = %(sid)s AND action LIKE 'params.%%'
   AND ts >= %(start)s AND ts <= %(end)s ORDER BY ts LIMIT %(limit)s)
UNION ALL
(SELECT 'risk', ts, ts_ns, rule || ': ' || action, message, "values", ''
   FROM trading_riskeventrecord WHERE session_id = %(sid)s AND ts >= %(start)s AND ts <= %(end)s
   ORDER BY ts LIMIT %(limit)s)
"""


def _json(value: Any) -> Any:
    """A jsonb column read on a raw cursor: Django leaves it as text."""
    return json.loads(value) if isinstance(value, str) else value


def _sec(ts_ns: int) -> float:
    return round(ts_ns / 1e9, 6)


def _params(session_id: int, start_ns: int, end_ns: int, points: int) -> dict[str, Any]:
    span_us = max((end_ns - start_ns) // 1000, 1)
    width_us = max(math.ceil((span_us + 1) / points), 1)
    return {
        "sid": session_id,
        "start_ns": start_ns,
        "end_ns": end_ns,
        "start": ns_to_dt(start_ns),
        "end": ns_to_dt(end_ns),
        "origin": ns_to_dt(start_ns),
        "width": timedelta(microseconds=width_us),
        "width_s": width_us / 1e6,
        "limit": points + 1,
    }


def _quotes(cur: Any, p: dict[str, Any], points: int) -> dict[str, Any]:
    cur.execute(_RAW_QUOTES, p)
    rows = cur.fetchall()
    if len(rows) <= points:
        return {
            "mode": "raw",
            "t": [_sec(r[0]) for r in rows],
            "mid": [r[1] for r in rows],
            "mid_lo": [r[1] for r in rows],
            "mid_hi": [r[1] for r in rows],
            "bid": [r[2] for r in rows],
            "ask": [r[3] for r in rows],
            "n": [1] * len(rows),
        }
    cur.execute(_BUCKET_QUOTES.format(bucket=_bucket_expr()), p)
    rows = cur.fetchall()
    return {
        "mode": "bucketed",
        "t": [_sec(r[4]) for r in rows],  # the bucket's last decision: a line through real points
        "mid_lo": [r[1] for r in rows],
        "mid_hi": [r[2] for r in rows],
        "n": [r[3] for r in rows],
        "mid": [r[5] for r in rows],
        "bid": [r[6] for r in rows],
        "ask": [r[7] for r in rows],
    }


def _pnl_recorded(cur: Any, p: dict[str, Any], points: int) -> dict[str, Any] | None:
    cols = ", ".join(_PNL_COLS)
    cur.execute(_RAW_PNL.format(cols=cols), p)
    rows = cur.fetchall()
    mode = "raw"
    if len(rows) > points:
        pcols = ", ".join(f"p.{c}" for c in _PNL_COLS)
        cur.execute(_BUCKET_PNL.format(bucket=_bucket_expr(), cols=cols, pcols=pcols), p)
        rows = cur.fetchall()
        mode = "bucketed"
    if not rows:
        return None
    out: dict[str, Any] = {"source": "recorded", "mode": mode, "t": [_sec(r[0]) for r in rows]}
    for i, name in enumerate(_PNL_COLS[1:], start=1):
        out[name] = [r[i] for r in rows]
    out["note"] = "P&L by part as the session's ledger recorded it (PnlPoint), marked to its mid"
    return out


def _pnl_computed(cur: Any, p: dict[str, Any], quotes: dict[str, Any]) -> dict[str, Any]:
    """Position and total P&L from the fills, marked to the decisions' mid on the quote series' grid. The parts
    (spread capture, adverse selection, ...) need the ledger's markouts, which only P&L points carry."""
    note = (
        "no P&L points recorded for this session: position and total are computed from its fills marked to the "
        "decisions' mid; the split by part is not available"
    )
    if not quotes["t"]:
        return {"source": "none", "t": [], "note": "nothing recorded in this range"}
    cur.execute(_FILLS_BEFORE, p)
    position, cash = cur.fetchone()
    cur.execute(_FILL_FLOWS.format(bucket=_bucket_expr()), p)
    flows = cur.fetchall()
    width_ns = int(p["width"] / timedelta(microseconds=1)) * 1000
    origin_ns = dt_to_ns(p["origin"])
    out_pos, out_total = [], []
    i = 0
    for t, mid in zip(quotes["t"], quotes["mid"], strict=True):
        t_ns = round(t * 1e9)
        point_bucket_ns = t_ns - (t_ns - origin_ns) % width_ns
        # the fills of every bucket up to this point's own (on the grid: a bucket's fills count at its points)
        while i < len(flows) and dt_to_ns(flows[i][0]) <= point_bucket_ns:
            position += flows[i][1]
            cash += flows[i][2]
            i += 1
        pos = round(position, 12)
        out_pos.append(pos)
        out_total.append(cash + pos * mid if mid is not None else None)
    return {"source": "computed", "t": quotes["t"], "position": out_pos, "total": out_total, "note": note}


def _fills(cur: Any, p: dict[str, Any], cap: int) -> dict[str, Any]:
    cur.execute(_RAW_FILLS, {**p, "limit": cap + 1})
    rows = cur.fetchall()
    if len(rows) <= cap:
        return {
            "mode": "raw",
            "t": [_sec(r[0]) for r in rows],
            "side": [r[1] for r in rows],
            "price": [r[2] for r in rows],
            "size": [r[3] for r in rows],
            "fee": [r[4] for r in rows],
            "n": [1] * len(rows),
        }
    # per bucket and side, so half as many buckets as points: never more than ``cap`` rows
    cur.execute(
        _BUCKET_FILLS.format(bucket=_bucket_expr()), _params(p["sid"], p["start_ns"], p["end_ns"], max(cap // 2, 1))
    )
    rows = cur.fetchall()
    return {
        "mode": "bucketed",  # per bucket and side: the size-weighted price, total size and fees, and the count
        "t": [_sec(r[6]) for r in rows],
        "side": [r[1] for r in rows],
        "price": [r[2] for r in rows],
        "size": [r[3] for r in rows],
        "fee": [r[4] for r in rows],
        "n": [r[5] for r in rows],
    }


def _markers(cur: Any, p: dict[str, Any]) -> list[dict[str, Any]]:
    cur.execute(_MARKERS, {**p, "limit": MAX_MARKERS})
    out = []
    for kind, ts, ts_ns, label, message, detail, actor in cur.fetchall():
        out.append(
            {
                "kind": kind,
                "t": _sec(ts_ns if ts_ns is not None else dt_to_ns(ts)),
                "label": label,
                "message": message,
                "detail": _json(detail) or {},
                "actor": actor,
            }
        )
    out.sort(key=lambda m: m["t"])
    return out[:MAX_MARKERS]


def series(session_id: int, start_ns: int, end_ns: int, points: int) -> dict[str, Any]:
    """Everything the review charts draw over ``[start_ns, end_ns]``: at most ``points`` quote points and P&L
    points, at most ``points`` fill points and :data:`MAX_MARKERS` markers."""
    if end_ns < start_ns:
        raise ValueError("to must not be before from")
    p = _params(session_id, start_ns, end_ns, points)
    with connection.cursor() as cur:
        quotes = _quotes(cur, p, points)
        pnl = _pnl_recorded(cur, p, points) or _pnl_computed(cur, p, quotes)
        fills = _fills(cur, p, points)
        markers = _markers(cur, p)
    return {
        "session": session_id,
        "from_ns": start_ns,
        "to_ns": end_ns,
        "points": points,
        "bucket_s": p["width_s"] if quotes["mode"] == "bucketed" else None,
        "db_mode": storage_mode(),
        "quotes": quotes,
        "pnl": pnl,
        "fills": fills,
        "markers": markers,
    }


# ------------------------------------------------------------------ the decision in force


_DECISION_COLS = ("id", "ts", "ts_ns", "mid", "bid_px", "ask_px", "bid_size", "ask_size", "inputs", "reasons")
_DECISION_AT = (
    "SELECT " + ", ".join(_DECISION_COLS) + " FROM trading_quotedecisionrecord"  # noqa: S608 - constant names
    " WHERE session_id = %(sid)s AND ts <= %(at)s AND ts_ns <= %(at_ns)s"
    " ORDER BY ts DESC, ts_ns DESC, id DESC LIMIT 1"
)
_DECISION_NEXT = """
SELECT ts, ts_ns FROM trading_quotedecisionrecord
WHERE session_id = %(sid)s AND ts >= %(ts)s AND (ts_ns > %(ts_ns)s OR (ts_ns = %(ts_ns)s AND id > %(id)s))
ORDER BY ts, ts_ns, id LIMIT 1
"""
_ORDERS_AFTER = """
SELECT e.ts_ns, e.client_order_id, e.detail, o.status, o.filled, o.side, o.price, o.size
FROM trading_ordereventrecord e
LEFT JOIN trading_order o ON o.session_id = e.session_id AND o.client_order_id = e.client_order_id
WHERE e.session_id = %(sid)s AND e.kind = 'place' AND e.ts >= %(ts)s AND e.ts_ns >= %(ts_ns)s
  AND (%(next_ts)s::timestamptz IS NULL OR (e.ts <= %(next_ts)s AND e.ts_ns < %(next_ns)s))
ORDER BY e.ts, e.ts_ns, e.id LIMIT %(limit)s
"""
_VERSION_AT = """
SELECT version, ts FROM control_parameterversion WHERE session_id = %(sid)s
ORDER BY (ts <= %(ts)s) DESC, CASE WHEN ts <= %(ts)s THEN version END DESC NULLS LAST, version ASC LIMIT 1
"""


def decision_at(session: Any, at_ns: int) -> dict[str, Any] | None:
    """The latest decision at or before ``at_ns``, its inputs, its parameter-set version and the orders it placed
    (place events from it up to the next decision). None when the session had decided nothing by then."""
    with connection.cursor() as cur:
        cur.execute(_DECISION_AT, {"sid": session.pk, "at": ns_to_dt(at_ns), "at_ns": at_ns})
        row = cur.fetchone()
        if row is None:
            return None
        d = dict(zip(_DECISION_COLS, row, strict=True))
        d["inputs"], d["reasons"] = _json(d["inputs"]), _json(d["reasons"])
        cur.execute(_DECISION_NEXT, {"sid": session.pk, "ts": d["ts"], "ts_ns": d["ts_ns"], "id": d["id"]})
        nxt = cur.fetchone()
        cur.execute(
            _ORDERS_AFTER,
            {
                "sid": session.pk,
                "ts": d["ts"],
                "ts_ns": d["ts_ns"],
                "next_ts": nxt[0] if nxt else None,
                "next_ns": nxt[1] if nxt else None,
                "limit": MAX_ORDERS,
            },
        )
        orders = [
            {
                "ts_ns": ts_ns,
                "t": _sec(ts_ns),
                "client_order_id": clid,
                "side": (detail or {}).get("side", side),
                "price": (detail or {}).get("price", price),
                "size": (detail or {}).get("size", size),
                "tif": (detail or {}).get("tif"),
                "status": status,
                "filled": filled,
            }
            for ts_ns, clid, detail, status, filled, side, price, size in (
                (r[0], r[1], _json(r[2]), *r[3:]) for r in cur.fetchall()
            )
        ]
        inputs = d["inputs"] or {}
        if inputs.get("params_version") is not None:
            version, version_source = inputs["params_version"], "recorded with the decision"
        else:
            cur.execute(_VERSION_AT, {"sid": session.pk, "ts": d["ts"]})
            v = cur.fetchone()
            if v is None:
                version, version_source = session.params_version, "the session's current version (no history)"
            elif v[1] <= d["ts"]:
                version, version_source = v[0], "the version in force at the decision's time"
            else:  # a backtest's data time is before the version rows' wall-clock time: its first version ran it
                version, version_source = v[0], "the session's first version (the decision predates every change)"
    return {
        "session": session.pk,
        "at_ns": at_ns,
        "decision": {
            "id": d["id"],
            "ts": d["ts"].isoformat(),
            "ts_ns": d["ts_ns"],
            "t": _sec(d["ts_ns"]),
            "mid": d["mid"],
            "bid_px": d["bid_px"],
            "ask_px": d["ask_px"],
            "bid_size": d["bid_size"],
            "ask_size": d["ask_size"],
            "reasons": d["reasons"] or [],
            "inputs": inputs,
        },
        "params_version": version,
        "params_version_source": version_source,
        "next_decision_ns": nxt[1] if nxt else None,
        "orders": orders,
    }


def page_summary(session: Any) -> dict[str, Any]:
    """The last P&L point (the session's result by part), one query."""
    with connection.cursor() as cur:
        cur.execute(
            f"SELECT {', '.join(_PNL_COLS)} FROM trading_pnlpoint WHERE session_id = %s "  # noqa: S608
            "ORDER BY ts DESC, ts_ns DESC, id DESC LIMIT 1",
            [session.pk],
        )
        row = cur.fetchone()
    return dict(zip(_PNL_COLS, row, strict=True)) if row else {}
