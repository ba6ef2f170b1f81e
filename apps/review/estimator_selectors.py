"""Reads of a session's estimator history (:class:`~apps.trading.models.EstimatorSnapshotRecord`), downsampled in SQL.

The driver records one row per estimator every ``snapshot_interval_s`` of data time (1 s by default; see
:mod:`apps.engine.simulation.snapshots` for names and units), so a day is 86,400 rows per estimator. A chart
needs a few hundred: when a series has more rows in the range than ``points``, the rows are grouped in buckets of
equal width (``time_bucket`` on TimescaleDB, ``date_bin`` on plain PostgreSQL), chosen so that no series returns
more than ``points`` buckets, and only the buckets leave the database. In a bucket:

* value: the mean; std: the mean;
* interval: the envelope (lowest lower bound, highest upper bound) of the rows' intervals, where an interval is
  the estimator's own (credible/confidence) or value ± 1 sd when it has none: a bucket never looks surer than
  its rows;
* state: the worst state of its rows (failed > stale > warming > ok), so a short failure stays visible;
* n: the rows it holds.

γ's named contributions (``gamma_contrib_*`` in each γ row's detail, in nats of log γ) are averaged per bucket
the same way.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import connection

from apps.engine.simulation.snapshots import NAMES
from apps.marketdata.importer import ns_to_dt
from apps.marketdata.timescale import timescale_installed
from apps.trading.models import EstimatorSnapshotRecord

TABLE = EstimatorSnapshotRecord._meta.db_table
DEFAULT_POINTS = 600
MAX_POINTS = 5000
STATES = ("ok", "warming", "stale", "failed")  # by rank: a bucket shows its worst
CONTRIB_PREFIX = "gamma_contrib_"


@dataclass(frozen=True)
class SeriesMeta:
    """How a series is shown: label, display unit and the factor from the engine's unit to it, the band."""

    label: str
    unit: str
    scale: float
    band: str  # "interval" (the estimator's own), "sd" (value ± 1 sd), "" (none recorded)


SERIES: dict[str, SeriesMeta] = {
    "kappa": SeriesMeta("κ (order-arrival decay)", "per unit fraction of mid (κ≈3333 ⇔ 3 bps)", 1.0, "interval"),
    "sigma_clean": SeriesMeta("σ clean (bipower, jumps removed)", "bps/√s", 1e4, "interval"),
    "sigma_total": SeriesMeta("σ total (realised)", "bps/√s", 1e4, "sd"),
    "lambda": SeriesMeta("λ = A (market trade arrivals)", "trades/s", 1.0, "interval"),
    "flow": SeriesMeta("taker-flow imbalance", "−1 … 1", 1.0, "interval"),
    "drift": SeriesMeta("drift μ (Kalman)", "bps/min", 1e4 * 60.0, "interval"),
    "microprice": SeriesMeta("microprice offset", "bps of mid", 1e4, "interval"),
    "gamma": SeriesMeta("γ (risk aversion)", "per base unit", 1.0, ""),
}
assert set(SERIES) == set(NAMES)

_STATE_RANK = "CASE state WHEN 'failed' THEN 3 WHEN 'stale' THEN 2 WHEN 'warming' THEN 1 ELSE 0 END"
_LO = "coalesce(ci_low, value - std)"
_HI = "coalesce(ci_high, value + std)"

_COUNTS_SQL = f"""
SELECT name, count(*), min(ts_ns), max(ts_ns) FROM {TABLE}
WHERE session_id = %(sid)s AND ts >= %(start)s AND ts < %(end)s GROUP BY name
"""  # noqa: S608 - the table name comes from model metadata
_RAW_SQL = f"""
SELECT name, ts_ns / 1e9, value, std, {_LO}, {_HI}, {_STATE_RANK}, 1 FROM {TABLE}
WHERE session_id = %(sid)s AND ts >= %(start)s AND ts < %(end)s ORDER BY name, ts_ns
"""  # noqa: S608
_BUCKET_SQL = """
SELECT name, extract(epoch FROM b), avg(value), avg(std), min(lo), max(hi), max(r), count(*) FROM (
    SELECT name, {bucket} AS b, value, std, {lo} AS lo, {hi} AS hi, {rank} AS r FROM {table}
    WHERE session_id = %(sid)s AND ts >= %(start)s AND ts < %(end)s
) s GROUP BY name, b ORDER BY name, b
"""
_RAW_CONTRIB_SQL = f"""
SELECT ts_ns / 1e9, d.key, d.value::float8 FROM {TABLE}, jsonb_each_text(detail) d
WHERE session_id = %(sid)s AND name = 'gamma' AND ts >= %(start)s AND ts < %(end)s
  AND d.key LIKE 'gamma\\_contrib\\_%%' ORDER BY ts_ns
"""  # noqa: S608
_BUCKET_CONTRIB_SQL = """
SELECT extract(epoch FROM {bucket}) AS t, d.key, avg(d.value::float8) FROM {table}, jsonb_each_text(detail) d
WHERE session_id = %(sid)s AND name = 'gamma' AND ts >= %(start)s AND ts < %(end)s
  AND d.key LIKE 'gamma\\_contrib\\_%%' GROUP BY 1, 2 ORDER BY 1
"""

_FAR_PAST = datetime.fromisoformat("1970-01-01T00:00:00+00:00")
_FAR_FUTURE = datetime.fromisoformat("9999-01-01T00:00:00+00:00")


def parse_points(raw: str | None) -> int:
    """``points`` from a query string: a whole number in [2, MAX_POINTS]; ValueError names the field."""
    if raw is None or raw == "":
        return DEFAULT_POINTS
    if not raw.isdigit() or not 2 <= int(raw) <= MAX_POINTS:
        raise ValueError(f"points must be a whole number from 2 to {MAX_POINTS}")
    return int(raw)


def parse_ns(name: str, raw: str | None) -> int | None:
    """``start_ns``/``end_ns``: integer nanoseconds since the epoch (UTC), or absent."""
    if raw is None or raw == "":
        return None
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name} must be an integer number of nanoseconds since the epoch") from None
    if not 0 <= value < 2**63:
        raise ValueError(f"{name} must be between 0 and 2^63 - 1 nanoseconds since the epoch")
    return value


def bucket_width_us(first_ns: int, last_ns: int, points: int) -> int:
    """Bucket width (µs) such that buckets aligned to the epoch over [first, last] number at most ``points``.

    With width w, [first, last] meets at most ⌊(last − first)/w⌋ + 2 aligned buckets; w > (last − first)/(points − 1)
    makes that ≤ points.
    """
    span_us = (last_ns - first_ns) / 1000.0
    return max(1, math.floor(span_us / (points - 1)) + 1)


def estimator_history(
    session_id: int, *, points: int = DEFAULT_POINTS, start_ns: int | None = None, end_ns: int | None = None
) -> dict[str, Any]:
    """Every estimator series of a session in [start_ns, end_ns), at most ``points`` points each (oldest first).

    Times are seconds since the epoch (UTC) as floats, values in the engine's units (multiply by each series'
    ``scale`` for its display ``unit``), states as names. At most four queries, whatever the session's length."""
    params = {
        "sid": session_id,
        "start": ns_to_dt(start_ns) if start_ns is not None else _FAR_PAST,
        "end": ns_to_dt(end_ns) if end_ns is not None else _FAR_FUTURE,
    }
    with connection.cursor() as cur:
        cur.execute(_COUNTS_SQL, params)
        counts = {name: (n, lo, hi) for name, n, lo, hi in cur.fetchall()}
        most = max((n for n, _, _ in counts.values()), default=0)
        width_us: int | None = None
        bucket = ""
        if most > points:
            first = min(lo for _, lo, _ in counts.values())
            last = max(hi for _, _, hi in counts.values())
            width_us = bucket_width_us(first, last, points)
            bucket = _bucket_expr(cur)  # one query: is TimescaleDB installed
            params["width"] = f"{width_us} microseconds"
            cur.execute(
                _BUCKET_SQL.format(bucket=bucket, lo=_LO, hi=_HI, rank=_STATE_RANK, table=TABLE),
                params,
            )
        else:
            cur.execute(_RAW_SQL, params)
        rows = cur.fetchall()
        contrib_rows: list[tuple[Any, ...]] = []
        if "gamma" in counts:
            if width_us is None:
                cur.execute(_RAW_CONTRIB_SQL, params)
            else:
                cur.execute(_BUCKET_CONTRIB_SQL.format(bucket=bucket, table=TABLE), params)
            contrib_rows = cur.fetchall()
    series: dict[str, dict[str, Any]] = {}
    for name, t, value, std, lo, hi, rank, n in rows:
        s = series.get(name)
        if s is None:
            s = series[name] = _empty_series(name, counts[name][0])
        s["t"].append(float(t))
        s["value"].append(value)
        s["std"].append(std)
        s["lo"].append(lo)
        s["hi"].append(hi)
        s["state"].append(STATES[rank])
        s["n"].append(n)
    return {
        "session_id": session_id,
        "points_max": points,
        "downsampled": width_us is not None,
        "bucket_s": width_us / 1e6 if width_us is not None else None,
        "series": [series[name] for name in NAMES if name in series],
        "gamma_contributions": _contributions(contrib_rows),
        "states": list(STATES),
    }


def _bucket_expr(cur: Any) -> str:
    # time_bucket's default origin (2000-01-03) and the epoch differ by whole days: the same buckets for any width
    # that divides a day, the only ones a chart of a session asks for in practice
    if timescale_installed(cur):
        return "time_bucket(%(width)s::interval, ts)"
    return "date_bin(%(width)s::interval, ts, 'epoch'::timestamptz)"


def _empty_series(name: str, rows: int) -> dict[str, Any]:
    meta = SERIES.get(name, SeriesMeta(name, "", 1.0, "interval"))
    return {
        "name": name,
        "label": meta.label,
        "unit": meta.unit,
        "scale": meta.scale,
        "band": meta.band,
        "rows": rows,
        "t": [],
        "value": [],
        "std": [],
        "lo": [],
        "hi": [],
        "state": [],
        "n": [],
    }


def _contributions(rows: list[tuple[Any, ...]]) -> dict[str, Any]:
    """{"t": [...], "series": {feature: [...]}} aligned on t (None where a row lacked the feature)."""
    times: list[float] = []
    index: dict[float, int] = {}
    by_key: dict[str, dict[int, float]] = {}
    for t, key, value in rows:
        t = float(t)
        i = index.get(t)
        if i is None:
            i = index[t] = len(times)
            times.append(t)
        by_key.setdefault(key.removeprefix(CONTRIB_PREFIX), {})[i] = value
    return {
        "unit": "nats of log γ",
        "t": times,
        "series": {k: [v.get(i) for i in range(len(times))] for k, v in sorted(by_key.items())},
    }


def has_snapshots(session_id: int) -> bool:
    return EstimatorSnapshotRecord.objects.filter(session_id=session_id).exists()
