"""The TimescaleDB DDL proven against a real TimescaleDB engine: PGlite 0.3.14 + TimescaleDB 2.23 (npm), served
over the PostgreSQL wire protocol on 127.0.0.1 by pglite-socket (tools/pglite). Django migrations cannot run there
(one connection, no COPY), so the schema comes from ``sqlmigrate`` and the storage DDL is applied directly."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import time
from collections.abc import Iterator

import psycopg
import pytest
from django.core.management import call_command

from apps.marketdata import timescale
from tests.conftest import BASE_DIR, free_port

PGLITE_DIR = BASE_DIR / "tools" / "pglite"


def _npm_ci() -> None:
    if (PGLITE_DIR / "node_modules" / "@electric-sql" / "pglite-socket").exists():
        return
    if shutil.which("npm") is None:
        pytest.skip("npm is not installed; cannot install the PGlite TimescaleDB engine")
    proc = subprocess.run(
        ["npm", "ci", "--no-audit", "--no-fund"], cwd=PGLITE_DIR, capture_output=True, text=True, timeout=600
    )
    if proc.returncode != 0:
        pytest.skip(f"npm ci failed in {PGLITE_DIR} (offline?): {proc.stderr[-500:]}")


@pytest.fixture(scope="module")
def timescale_url(tmp_path_factory) -> Iterator[str]:
    if shutil.which("node") is None:
        pytest.skip("node is not installed; cannot run the PGlite TimescaleDB engine")
    _npm_ci()
    port = free_port()
    log = tmp_path_factory.mktemp("pglite") / "server.log"
    proc = subprocess.Popen(
        ["node", "server.mjs", str(port)],
        cwd=PGLITE_DIR,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while b"READY" not in log.read_bytes():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"pglite server did not start:\n{log.read_text(errors='replace')}")
            time.sleep(0.1)
        yield f"postgresql://postgres:any@127.0.0.1:{port}/postgres?sslmode=disable"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# The schema the storage DDL runs on: market data, then trading (whose fills become a hypertable too), in the order
# migrate applies them. 0003/0004 of marketdata are the storage step itself and the writer's progress table.
_MIGRATIONS = (
    ("marketdata", "0001_initial"),
    ("marketdata", "0002_store"),
    ("trading", "0001_initial"),
    ("trading", "0002_backtest"),
    ("trading", "0003_fill_storage"),
)


def _schema_sql() -> str:
    out = []
    for app, name in _MIGRATIONS:
        buf = io.StringIO()
        call_command("sqlmigrate", app, name, stdout=buf)
        out.append(buf.getvalue())
    return "\n".join(out)


# PGlite is one backend behind every socket connection, so psycopg's automatic prepared statements (named per
# connection, _pg3_0...) collide across connections: they are switched off (prepare_threshold=None).
@pytest.fixture(scope="module")
def storage(timescale_url, django_db_blocker):
    """The schema on the TimescaleDB engine with the storage applied: (url, mode before, report)."""
    with django_db_blocker.unblock():
        schema = _schema_sql()
    with psycopg.connect(timescale_url, autocommit=True, prepare_threshold=None) as conn:
        cur = conn.cursor()
        cur.execute(schema)
        mode_before = timescale.detect_mode(cur)
        report = timescale.apply_storage(cur)
    return timescale_url, mode_before, report


def _names(cur, sql: str) -> set[str]:
    cur.execute(sql)
    return {r[0] for r in cur.fetchall()}


def test_timescale_ddl_creates_hypertables_compression_and_continuous_aggregates(storage):
    timescale_url, mode_before, report = storage
    with psycopg.connect(timescale_url, autocommit=True, prepare_threshold=None) as conn:
        cur = conn.cursor()
        assert mode_before == timescale.POSTGRESQL  # extension present, no hypertables yet
        assert report.mode == timescale.TIMESCALEDB, report.notes
        assert report.notes == []  # every table exists, none skipped
        assert timescale.detect_mode(cur) == timescale.TIMESCALEDB

        hypertables = _names(cur, "SELECT hypertable_name FROM timescaledb_information.hypertables")
        assert set(timescale.HYPERTABLES) <= hypertables
        compressed = _names(
            cur, "SELECT hypertable_name FROM timescaledb_information.hypertables WHERE compression_enabled"
        )
        assert set(timescale.HYPERTABLES) <= compressed
        policies = _names(
            cur,
            "SELECT hypertable_name FROM timescaledb_information.jobs WHERE proc_name = 'policy_compression'",
        )
        assert set(timescale.HYPERTABLES) <= policies
        caggs = _names(cur, "SELECT view_name FROM timescaledb_information.continuous_aggregates")
        assert {c.name for c in timescale.CAGGS} <= caggs
        cur.execute(
            "SELECT count(*) FROM timescaledb_information.jobs WHERE proc_name = 'policy_refresh_continuous_aggregate'"
        )
        assert cur.fetchone()[0] == len(timescale.CAGGS)

        # idempotent: a second run changes nothing and does not fail
        assert timescale.apply_storage(cur).mode == timescale.TIMESCALEDB

        # the natural keys work on hypertables: a re-inserted trade is ignored, the bars see the rest
        cur.execute(
            "INSERT INTO marketdata_instrument (venue, symbol, kind, tick_size, lot_size, contract_multiplier) "
            "VALUES ('binance', 'BTCUSDT', 'perp', 0.1, 0.001, 1) RETURNING id"
        )
        iid = cur.fetchone()[0]
        trade = (
            "INSERT INTO marketdata_tradetick (instrument_id, ts, ts_exch_ns, ts_local_ns, price, size, aggressor, "
            "trade_id) VALUES (%s, to_timestamp(%s / 1e9), %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING"
        )
        t0 = 1_723_161_256_000_000_000
        for i in range(3):
            cur.execute(trade, (iid, t0 + i * 10**9, t0 + i * 10**9, t0 + i * 10**9, 100.0 + i, 1.0, 1, str(i)))
        cur.execute(trade, (iid, t0, t0, t0, 100.0, 1.0, 1, "0"))
        assert cur.rowcount == 0
        for i in range(2):
            cur.execute(
                "INSERT INTO marketdata_quotetick (instrument_id, ts, ts_exch_ns, ts_local_ns, bid_px, bid_size, "
                "ask_px, ask_size, update_id, dedupe_key) "
                "VALUES (%s, to_timestamp(%s / 1e9), %s, %s, 99.9, 1, 100.1, 1, %s, 7) ON CONFLICT DO NOTHING",
                (iid, t0, t0, t0, i),
            )
        cur.execute("SELECT count(*) FROM marketdata_quotetick WHERE instrument_id = %s", (iid,))
        assert cur.fetchone()[0] == 1  # same (instrument, dedupe_key, ts): stored once
        cur.execute("SELECT sum(n_trades), sum(volume) FROM marketdata_trade_bars_1s WHERE instrument_id = %s", (iid,))
        assert cur.fetchone() == (3, 3.0)
        cur.execute("SELECT mid_close, spread_mean FROM marketdata_quote_bars_1m WHERE instrument_id = %s", (iid,))
        mid, spread = cur.fetchone()
        assert mid == pytest.approx(100.0) and spread == pytest.approx(0.2)
    assert os.environ.get("DATABASE_URL", "") != timescale_url  # never pointed Django at the test engine


@pytest.mark.django_db
def test_session_pnl_from_the_fill_caggs_equals_the_raw_rows_path_and_the_oracle(storage):
    """Fills are a hypertable compressed per session; the per-session P&L and inventory read from the
    ``trading_fill_bars_*`` and quote-bar continuous aggregates equal, bucket for bucket, what plain PostgreSQL
    computes from the raw rows of the same record, and the fill-by-fill oracle."""
    from django.db import connection

    from apps.trading.selectors import session_pnl_on
    from tests.trading.pnl_fixture import NS, T0_NS, as_tuples, load, make_record, ns_dt, oracle
    from tests.trading.test_session_pnl import assert_rows_equal

    timescale_url, _mode, _report = storage
    rec = make_record(seed=23, quote_from_s=20)
    start, end = ns_dt(T0_NS), ns_dt(T0_NS + 301 * NS)
    mid_start = ns_dt(T0_NS + 150 * NS + 250_000_000)
    with psycopg.connect(timescale_url, autocommit=True, prepare_threshold=None) as conn:
        cur = conn.cursor()
        cur.execute(
            "SELECT segmentby FROM timescaledb_information.hypertable_compression_settings "
            "WHERE hypertable = 'trading_fillrecord'::regclass"
        )
        assert cur.fetchone()[0] == "session_id"
        iid, sid = load(cur, rec)
        assert timescale.detect_mode(cur) == timescale.TIMESCALEDB
        cur.execute("SELECT sum(n_fills), count(*) FROM trading_fill_bars_1m WHERE session_id = %s", (sid,))
        n_fills, n_buckets = cur.fetchone()
        assert n_fills == len(rec.fills) and n_buckets == 5  # the aggregate itself, not a fallback
        ts_bars = {w: session_pnl_on(cur, sid, iid, start, end, w) for w in ("1 second", "1 minute")}
        ts_mid = session_pnl_on(cur, sid, iid, mid_start, end, "1 second")
        # a second session on the same instrument does not leak into the first
        cur.execute(
            "INSERT INTO trading_fillrecord (session_id, ts, ts_ns, client_order_id, fill_id, side, price, size, "
            "fee, liquidity) SELECT %s, ts, ts_ns, client_order_id, fill_id || 'x', side, price, size * 3, fee, "
            "liquidity FROM trading_fillrecord WHERE session_id = %s",
            (_other_session(cur, iid), sid),
        )
        assert as_tuples(session_pnl_on(cur, sid, iid, start, end, "1 second")) == as_tuples(ts_bars["1 second"])

    with connection.cursor() as dj:  # Django's test database: plain PostgreSQL, the same record
        assert timescale.detect_mode(dj) == timescale.POSTGRESQL
        d_iid, d_sid = load(dj, rec)
        for width, step in (("1 second", 1), ("1 minute", 60)):
            plain = session_pnl_on(dj, d_sid, d_iid, start, end, width)
            assert_rows_equal(as_tuples(ts_bars[width]), as_tuples(plain))
            assert_rows_equal(as_tuples(ts_bars[width]), oracle(rec, T0_NS, T0_NS + 301 * NS, step))
        assert_rows_equal(as_tuples(ts_mid), as_tuples(session_pnl_on(dj, d_sid, d_iid, mid_start, end, "1 second")))


def _other_session(cur, iid: int) -> int:
    cur.execute(
        "INSERT INTO trading_tradingsession (name, mode, feed, instrument_id, status, status_reason, params, seed, "
        "created_at, lease_owner, last_state) VALUES ('other', 'paper', 'simulator', %s, 'stopped', '', '{}', 0, "
        "now(), '', '{}') RETURNING id",
        (iid,),
    )
    return cur.fetchone()[0]
