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


def _schema_sql() -> str:
    out = []
    for name in ("0001_initial", "0002_store"):
        buf = io.StringIO()
        call_command("sqlmigrate", "marketdata", name, stdout=buf)
        out.append(buf.getvalue())
    return "\n".join(out)


def _names(cur, sql: str) -> set[str]:
    cur.execute(sql)
    return {r[0] for r in cur.fetchall()}


@pytest.mark.django_db
def test_timescale_ddl_creates_hypertables_compression_and_continuous_aggregates(timescale_url):
    schema = _schema_sql()
    with psycopg.connect(timescale_url, autocommit=True) as conn:
        cur = conn.cursor()
        cur.execute(schema)
        assert timescale.detect_mode(cur) == timescale.POSTGRESQL  # extension present, no hypertables yet
        report = timescale.apply_storage(cur)
        assert report.mode == timescale.TIMESCALEDB, report.notes
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
        cur.execute("SELECT count(*) FROM marketdata_quotetick")
        assert cur.fetchone()[0] == 1  # same (instrument, dedupe_key, ts): stored once
        cur.execute("SELECT sum(n_trades), sum(volume) FROM marketdata_trade_bars_1s WHERE instrument_id = %s", (iid,))
        assert cur.fetchone() == (3, 3.0)
        cur.execute("SELECT mid_close, spread_mean FROM marketdata_quote_bars_1m WHERE instrument_id = %s", (iid,))
        mid, spread = cur.fetchone()
        assert mid == pytest.approx(100.0) and spread == pytest.approx(0.2)
    assert os.environ.get("DATABASE_URL", "") != timescale_url  # never pointed Django at the test engine
