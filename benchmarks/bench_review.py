"""Server time of the session review page and its chart data for a FULL DAY of BTCUSDT-rate records.

A scratch database (created, migrated, dropped) on the configured server gets one backtest session holding a day
at real rates, built server-side with ``generate_series``: decisions at 10/s (864,000, with a random-walk mid and
our bid/ask), P&L points at 1/s (86,400) and a fill every 5 s (17,280), plus a few risk events. Then, through
Django's test client (the whole view, middleware and template included; a logged-in viewer):

* the review page (``/review/sessions/<id>/``);
* ``series.json`` for the whole day at 1,500 and at 5,000 points (bucketed in SQL);
* ``series.json`` zoomed into one minute (bucketed) and into 10 s (raw events);
* ``decision.json`` at a moment in the middle of the day;
* the panels the page loads beside the charts: the estimator histories (``estimators.json``, one snapshot per
  second per estimator for the day) and the analytics, after a first fill-rate read that builds the session's decision
  aggregates (timed on its own row, once) (markouts, fill rate against distance, spreads, κ
  diagnostics; this scratch day stores no public trades, so κ diagnostics and the public fill rate answer "none
  stored" and the mids come from the decisions).

Each is timed ``REPS`` times after one warm-up; the table gives the median. Target: each under 1 s on plain
PostgreSQL.
"""

from __future__ import annotations

import os
import statistics
import time
from datetime import UTC, datetime
from typing import Any

from benchmarks.bench_import import _admin_conninfo  # the scratch database is made the same way

DAY_START = datetime(2024, 8, 8, tzinfo=UTC)
T0_NS = int(DAY_START.timestamp()) * 1_000_000_000
DAY_S = 86_400
DECISIONS_PER_S = 10
REPS = 5
TARGET_S = 1.0

_FILL_DAY = """
INSERT INTO trading_quotedecisionrecord
  (session_id, ts, ts_ns, mid, bid_px, ask_px, bid_size, ask_size, inputs, reasons)
SELECT %(sid)s, 'epoch'::timestamptz + make_interval(secs => ns / 1e9), ns, m, m - 0.5, m + 0.5, 0.01, 0.01,
       jsonb_build_object('mid', m, 'sigma', 0.0002, 'kappa', 3333, 'gamma', 0.1, 'q', 0), '[]'::jsonb
FROM (SELECT %(t0)s::bigint + g * 100000000::bigint AS ns,
             60000 + 50 * sin(g / 20000.0) + 5 * sin(g / 37.0) + random() AS m
      FROM generate_series(0, %(n_dec)s - 1) g) s;
INSERT INTO trading_pnlpoint (session_id, ts, ts_ns, mid, position, cash, total, spread_capture, adverse_selection,
                              inventory, fees, funding)
SELECT %(sid)s, 'epoch'::timestamptz + make_interval(secs => ns / 1e9), ns, 60000, sin(g / 500.0) * 0.05, 0,
       g * 0.001, g * 0.002, -g * 0.0008, sin(g / 900.0), -g * 0.0002, 0
FROM (SELECT %(t0)s::bigint + g * 1000000000::bigint AS ns, g FROM generate_series(0, %(n_pnl)s - 1) g) s;
INSERT INTO trading_fillrecord (session_id, ts, ts_ns, client_order_id, fill_id, side, price, size, fee, liquidity)
SELECT %(sid)s, 'epoch'::timestamptz + make_interval(secs => ns / 1e9), ns, 'o' || g, 'f' || g,
       CASE WHEN g %% 2 = 0 THEN 1 ELSE -1 END, 60000 + sin(g / 4000.0) * 50, 0.001, -0.0006, 'maker'
FROM (SELECT %(t0)s::bigint + g * 5000000000::bigint AS ns, g FROM generate_series(0, %(n_fill)s - 1) g) s;
INSERT INTO trading_riskeventrecord (session_id, ts, ts_ns, rule, action, "values", message)
SELECT %(sid)s, 'epoch'::timestamptz + make_interval(secs => ns / 1e9), ns, 'max_inventory', 'reduce', '{}'::jsonb, ''
FROM (SELECT %(t0)s::bigint + g * 3600000000000::bigint AS ns FROM generate_series(1, 23) g) s;
INSERT INTO trading_estimatorsnapshotrecord (session_id, ts, ts_ns, name, value, std, state, ci_low, ci_high, detail)
SELECT %(sid)s, 'epoch'::timestamptz + make_interval(secs => ns / 1e9), ns, n, 1 + sin(g / 700.0) * 0.1, 0.05,
       CASE WHEN g %% 5000 < 30 THEN 'stale' ELSE 'ok' END, 0.9, 1.1, '{}'::jsonb
FROM (SELECT %(t0)s::bigint + g * 1000000000::bigint AS ns, g FROM generate_series(0, %(n_pnl)s - 1) g) s,
     unnest(%(names)s::text[]) n;
ANALYZE trading_quotedecisionrecord; ANALYZE trading_pnlpoint; ANALYZE trading_fillrecord;
ANALYZE trading_estimatorsnapshotrecord;
"""


def _time(client: Any, url: str, params: dict[str, str] | None = None) -> tuple[float, Any]:
    resp = client.get(url, params or {})  # warm-up (and the answer checked by the caller)
    if resp.status_code != 200:
        raise RuntimeError(f"{url} answered {resp.status_code}: {resp.content[:200]!r}")
    times = []
    for _ in range(REPS):
        t0 = time.perf_counter()
        client.get(url, params or {})
        times.append(time.perf_counter() - t0)
    return statistics.median(times), resp


def _measure(session_id: int) -> list[dict[str, Any]]:
    from django.test import Client
    from django.urls import reverse

    from tests.roles import make_user

    client = Client()
    client.force_login(make_user("viewer", "bench-viewer"))
    rows = []
    page_s, _ = _time(client, reverse("review:session", args=[session_id]))
    rows.append(
        {
            "name": "review page (full day)",
            "value": page_s * 1000,
            "unit": "ms",
            "target": "< 1,000",
            "note": "HTML only; the charts load series.json",
        }
    )
    series = reverse("review:series", args=[session_id])
    day_end_ns = T0_NS + DAY_S * 1_000_000_000
    for points in (1500, 5000):
        s, resp = _time(client, series, {"points": str(points)})
        d = resp.json()
        n = len(d["quotes"]["t"])
        if n > points:
            raise RuntimeError(f"series.json returned {n} points for points={points}")
        rows.append(
            {
                "name": f"series.json whole day, {points} pts",
                "value": s * 1000,
                "unit": "ms",
                "target": "< 1,000",
                "note": f"{n} quote pts ({d['bucket_s']:.1f} s buckets), {len(d['pnl']['t'])} P&L, "
                f"{len(d['fills']['t'])} fill pts ({d['fills']['mode']}), db {d['db_mode']}",
            }
        )
    mid_ns = T0_NS + DAY_S // 2 * 1_000_000_000
    for label, span_ns in (("1 minute", 60 * 1_000_000_000), ("10 s", 10 * 1_000_000_000)):
        s, resp = _time(client, series, {"from": str(mid_ns), "to": str(mid_ns + span_ns), "points": "1500"})
        d = resp.json()
        rows.append(
            {
                "name": f"series.json zoomed to {label}",
                "value": s * 1000,
                "unit": "ms",
                "target": "< 1,000",
                "note": f"{len(d['quotes']['t'])} pts, {d['quotes']['mode']}",
            }
        )
    s, resp = _time(client, reverse("review:decision", args=[session_id]), {"at": str(mid_ns + 12_345_678)})
    rows.append(
        {
            "name": "decision.json at a mid-day instant",
            "value": s * 1000,
            "unit": "ms",
            "target": "< 1,000",
            "note": f"{len(resp.json()['orders'])} orders; day end ts_ns {day_end_ns}",
        }
    )
    # the first analytics read of a session folds its decisions into the aggregates (apps/review/decision_aggregates)
    t0 = time.perf_counter()
    resp = client.get(reverse("review:fill_rate", args=[session_id]))
    first_s = time.perf_counter() - t0
    if resp.status_code != 200:
        raise RuntimeError(f"fill-rate.json answered {resp.status_code}: {resp.content[:200]!r}")
    rows.append(
        {
            "name": "fill-rate.json first read, never folded (backfill)",
            "value": first_s * 1000,
            "unit": "ms",
            "target": "once",
            "note": "once, for a session recorded before the beat ran; the beat folds live ones as they record",
        }
    )
    # what the beat (apps.review.tasks.fold_decisions, every MM_REVIEW_FOLD_S = 5 s) does on a running session: fold
    # the 5 s of decisions recorded since its last pass into a day's aggregates
    from django.db import connection as conn

    from apps.review.decision_aggregates import catch_up

    fold_ms = []
    for rep in range(REPS):
        t_new = day_end_ns + rep * 5_000_000_000
        with conn.cursor() as cur:
            cur.execute(_FILL_DAY.split(";")[0], {"sid": session_id, "t0": t_new, "n_dec": 5 * DECISIONS_PER_S})
        t0 = time.perf_counter()
        catch_up(session_id)
        fold_ms.append((time.perf_counter() - t0) * 1000)
    rows.append(
        {
            "name": "beat fold of 5 s of new decisions",
            "value": statistics.median(fold_ms),
            "unit": "ms",
            "target": "off the request path",
            "note": f"{5 * DECISIONS_PER_S} decisions into a folded day, median of {REPS}",
        }
    )
    for name, label, params in (
        ("review:estimators_json", "estimators.json whole day (600 pts/series)", {}),
        ("review:markouts", "markouts.json whole day", {}),
        ("review:fill_rate", "fill-rate.json whole day", {}),
        ("review:spreads", "spreads.json whole day", {}),
        ("review:kappa_diagnostics", "kappa.json whole day", {}),
    ):
        s, resp = _time(client, reverse(name, args=[session_id]), params)
        rows.append(
            {
                "name": label,
                "value": s * 1000,
                "unit": "ms",
                "target": "< 1,000",
                "note": f"{len(resp.content):,} bytes",
            }
        )
    return rows


def run() -> list[dict[str, Any]]:
    import django

    django.setup()
    import psycopg
    from django.conf import settings
    from django.core.management import call_command
    from django.db import connection

    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "testserver"]
    sd = connection.settings_dict
    scratch = f"mm_bench_review_{os.getpid()}"
    admin = _admin_conninfo(sd)
    with psycopg.connect(**admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{scratch}"')
    connection.close()
    original = sd["NAME"]
    sd["NAME"] = scratch
    try:
        call_command("migrate", verbosity=0)
        from apps.engine.simulation.snapshots import NAMES
        from apps.marketdata.models import Instrument
        from apps.trading.models import BacktestRun, TradingSession

        inst = Instrument.objects.create(venue="binance-usdm", symbol="BTCUSDT", tick_size=0.1, lot_size=0.001)
        s = TradingSession.objects.create(name="bench-day", mode="backtest", instrument=inst, status="stopped")
        BacktestRun.objects.create(session=s, strategy="glft", data_format="synthetic", status="done")
        t0 = time.perf_counter()
        with connection.cursor() as cur:
            cur.execute("SET synchronous_commit = off")
            cur.execute(
                _FILL_DAY,
                {
                    "sid": s.pk,
                    "t0": T0_NS,
                    "n_dec": DAY_S * DECISIONS_PER_S,
                    "n_pnl": DAY_S,
                    "n_fill": DAY_S // 5,
                    "names": list(NAMES),
                },
            )
        build_s = time.perf_counter() - t0
        rows = [
            {
                "name": "build the day (generate_series)",
                "value": build_s,
                "unit": "s",
                "note": f"{DAY_S * DECISIONS_PER_S:,} decisions, {DAY_S:,} P&L points, {DAY_S // 5:,} fills, "
                f"{DAY_S * len(NAMES):,} estimator snapshots",
            }
        ]
        rows += _measure(s.pk)
        return rows
    finally:
        connection.close()
        sd["NAME"] = original
        with psycopg.connect(**admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{scratch}" WITH (FORCE)')
