"""Import rate of the shared Binance USD-M raw recording beside a plain COPY of the same rows, and the query time of
a 1-minute-bar chart over it. Runs in a scratch database (created, migrated, dropped) on the configured server.

Rows are stored rows: one per trade, quote, depth-diff message and snapshot (depth levels are arrays in a
message row, see apps.marketdata.models), 93,954 for this file. The plain COPY loads exactly those rows, from files
dumped with COPY TO, into the same tables with the same indexes, so the ratio is the cost of reading, parsing,
validation and the book check. The MANIFEST counts the same recording as 532,923 rows (depth one row per price
level); that rate is printed too.

The machine is shared and its speed moves, so import and plain COPY alternate for ``ROUNDS`` rounds into emptied
tables, and the table gives the medians and the median of the per-round ratios.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from benchmarks.common import USDM_BTCUSDT_RAW

BASE_DIR = Path(__file__).resolve().parent.parent
USDM = USDM_BTCUSDT_RAW
TABLES = (
    "marketdata_tradetick",
    "marketdata_quotetick",
    "marketdata_depthupdaterecord",
    "marketdata_depthsnapshotrecord",
)


def _admin_conninfo(sd: dict) -> dict:
    info = {"dbname": "postgres", "user": sd["USER"] or "postgres", "host": sd["HOST"] or None}
    if sd.get("PORT"):
        info["port"] = sd["PORT"]
    if sd.get("PASSWORD"):
        info["password"] = sd["PASSWORD"]
    return info


DAY = (datetime(2024, 8, 8, tzinfo=UTC), datetime(2024, 8, 9, tzinfo=UTC))
FILL_BUDGET_S = 180.0  # stop adding copies past this (the day is then partly filled, and the note says how much)
COPIES_PER_STATEMENT = 20
ROUNDS = 5
MANIFEST_ROWS = 21_313 + 66_089 + 443_521 + 2_000  # trades, bbo, depth levels, snapshot levels (MANIFEST.md)


def _fill_day(raw, iid: int) -> dict:
    """Fill 2024-08-08 (UTC) with trades and quotes at the recording's density: the recording (its last ~6
    minutes) copied backwards in steps of its own span, server-side (INSERT ... SELECT), with new natural keys
    (trade ids prefixed with the copy number; quotes' keys include ``ts``, which moves)."""
    day_start, day_end = DAY
    (lo, hi) = raw.execute(
        "SELECT min(ts), max(ts) FROM marketdata_quotetick WHERE instrument_id = %s", (iid,)
    ).fetchone()
    step = hi - lo + timedelta(microseconds=1)  # copies abut: the same density as the recording
    step_us = step // timedelta(microseconds=1)
    copies = int((lo - day_start) / step) + 1
    quote_cols = "bid_px, bid_size, ask_px, ask_size, update_id, dedupe_key"
    t0 = time.perf_counter()
    done = 0
    raw.execute("SET synchronous_commit = off")  # scratch data: no need to wait for the WAL flush
    while done < copies and time.perf_counter() - t0 < FILL_BUDGET_S:
        k0, k1 = done + 1, min(done + COPIES_PER_STATEMENT, copies)
        shift = "k::bigint * %(step)s::bigint * interval '1 microsecond'"
        shift_ns = "k::bigint * %(step)s::bigint * 1000"
        params = {"iid": iid, "lo": lo, "hi": hi, "k0": k0, "k1": k1, "step": step_us, "start": day_start}
        with raw.transaction():
            raw.execute(
                f"INSERT INTO marketdata_quotetick (instrument_id, ts, ts_exch_ns, ts_local_ns, {quote_cols}) "  # noqa: S608
                f"SELECT instrument_id, ts - {shift}, ts_exch_ns - {shift_ns}, ts_local_ns - {shift_ns}, "
                f"{quote_cols} FROM marketdata_quotetick, generate_series(%(k0)s, %(k1)s) k "
                f"WHERE instrument_id = %(iid)s AND ts BETWEEN %(lo)s AND %(hi)s AND ts - {shift} >= %(start)s",
                params,
            )
            raw.execute(
                "INSERT INTO marketdata_tradetick (instrument_id, ts, ts_exch_ns, ts_local_ns, price, size, "  # noqa: S608
                "aggressor, trade_id) "
                f"SELECT instrument_id, ts - {shift}, ts_exch_ns - {shift_ns}, ts_local_ns - {shift_ns}, price, "
                "size, aggressor, k || ':' || trade_id FROM marketdata_tradetick, generate_series(%(k0)s, %(k1)s) k "
                f"WHERE instrument_id = %(iid)s AND ts BETWEEN %(lo)s AND %(hi)s AND ts - {shift} >= %(start)s",
                params,
            )
        done = k1
    fill_s = time.perf_counter() - t0
    raw.execute("VACUUM ANALYZE marketdata_quotetick")
    raw.execute("VACUUM ANALYZE marketdata_tradetick")
    n = sum(
        raw.execute(
            f"SELECT count(*) FROM {t} WHERE instrument_id = %s AND ts >= %s AND ts < %s",  # noqa: S608
            (iid, day_start, day_end),
        ).fetchone()[0]
        for t in ("marketdata_quotetick", "marketdata_tradetick")
    )
    covered = min(hi, day_end) - max(day_start, hi - step * (done + 1))
    full = done >= copies
    note = (
        f"{done} copies of the {step.total_seconds():.1f} s recording, {covered.total_seconds() / 3600:.1f} h of "
        f"the day, filled in {fill_s:.0f} s" + ("" if full else f" (stopped at the {FILL_BUDGET_S:.0f} s budget)")
    )
    return {"rows": n, "note": note}


def _time_day_bars(iid: int) -> dict:
    from apps.marketdata import selectors

    start, end = DAY
    t0 = time.perf_counter()
    bars = selectors.bars(iid, start, end)  # cold-ish (just vacuumed, so mostly cached)
    first_ms = (time.perf_counter() - t0) * 1000
    reps = 3
    q0 = time.perf_counter()
    for _ in range(reps):
        bars = selectors.bars(iid, start, end)
    ms = (time.perf_counter() - q0) / reps * 1000
    n_quotes = sum(b["n_quotes"] for b in bars)
    n_trades = sum(b["n_trades"] for b in bars)
    return {
        "ms": ms,
        "note": f"{len(bars)} bars, {n_quotes + n_trades:,} rows; mean of {reps}, first run {first_ms:.0f} ms",
    }


def _plain_copy(tmp: Path) -> float:
    """Dump the imported rows with COPY TO, empty the tables, and time a plain COPY FROM of those files."""
    from django.db import connection

    connection.ensure_connection()
    raw = connection.connection
    files = {}
    for table in TABLES:
        path = tmp / f"{table}.copy"
        with raw.cursor() as cur, path.open("wb") as out, cur.copy(f"COPY {table} TO STDOUT") as cp:
            for data in cp:
                out.write(data)
        files[table] = path
        raw.execute(f"TRUNCATE {table}")
    c0 = time.perf_counter()
    with raw.transaction(), raw.cursor() as cur:
        for table, path in files.items():
            with cur.copy(f"COPY {table} FROM STDIN") as cp, path.open("rb") as fh:
                while chunk := fh.read(1 << 20):
                    cp.write(chunk)
    return time.perf_counter() - c0


def run() -> list[dict]:
    if not USDM.exists():
        return [{"name": "import usdm raw", "value": "skipped", "unit": "", "note": f"no shared data at {USDM}"}]
    import django

    django.setup()
    import psycopg
    from django.core.management import call_command
    from django.db import connection

    from apps.marketdata import selectors
    from apps.marketdata.importer import ImportOptions
    from apps.marketdata.models import Instrument
    from apps.marketdata.services import import_files

    sd = connection.settings_dict
    original = sd["NAME"]
    scratch = f"mm_bench_import_{os.getpid()}"
    admin = _admin_conninfo(sd)
    with psycopg.connect(**admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{scratch}"')
    connection.close()
    sd["NAME"] = scratch
    rows_out: list[dict] = []
    try:
        call_command("migrate", verbosity=0)
        with tempfile.TemporaryDirectory() as tmp:
            import_times, copy_times = [], []
            for _round in range(ROUNDS):
                connection.ensure_connection()
                for table in (*TABLES, "marketdata_quarantine"):
                    connection.connection.execute(f"TRUNCATE {table}")
                t0 = time.perf_counter()
                summary = import_files(
                    [USDM],
                    fmt="binance-raw",
                    venue="binance-usdm",
                    symbol="BTCUSDT",
                    kind="perp",
                    tick_size=0.1,
                    lot_size=0.001,
                    options=ImportOptions(spill_dir=Path(tmp) / "spill"),
                )
                import_times.append(time.perf_counter() - t0)
                f = summary.files[0]
                n_rows = sum(f.inserted.values())
                if n_rows != 93_954 or f.error:
                    raise RuntimeError(f"the import stored {n_rows:,} rows (expected 93,954): {f.error}")
                copy_times.append(_plain_copy(Path(tmp)))
            import_s, copy_s = statistics.median(import_times), statistics.median(copy_times)
            ratio = statistics.median(c / i for c, i in zip(copy_times, import_times, strict=True))
            iid = Instrument.objects.get(venue="binance-usdm", symbol="BTCUSDT").pk

            # 1-minute bars over everything imported (the chart query)
            start, end = datetime(2024, 8, 8, tzinfo=UTC), datetime(2024, 8, 9, tzinfo=UTC)
            selectors.bars(iid, start, end)  # warm
            q0 = time.perf_counter()
            reps = 5
            for _ in range(reps):
                bars = selectors.bars(iid, start, end)
            query_ms = (time.perf_counter() - q0) / reps * 1000

            connection.ensure_connection()
            raw = connection.connection
            day_rows = _fill_day(raw, iid)
            connection.close()
            day_query = _time_day_bars(iid)
        import_rate = n_rows / import_s
        copy_rate = n_rows / copy_s
        rounds = ", ".join(f"{i:.2f}/{c:.2f}" for i, c in zip(import_times, copy_times, strict=True))
        rows_out = [
            {"name": "import usdm raw (stored rows/s)", "value": import_rate, "unit": "rows/s", "target": ">= 150,000",
             "note": f"{n_rows:,} rows in {import_s:.2f} s (median of {ROUNDS}); mode {summary.db_mode}"},
            {"name": "import usdm raw (manifest rows/s)", "value": MANIFEST_ROWS / import_s, "unit": "rows/s",
             "target": ">= 150,000",
             "note": f"{MANIFEST_ROWS:,} rows as the MANIFEST counts them (depth one row per price level)"},
            {"name": "plain COPY of the same rows", "value": copy_rate, "unit": "rows/s",
             "note": f"{copy_s:.2f} s (median) from prepared files, same tables and indexes"},
            {"name": "import / plain COPY", "value": ratio, "unit": "ratio", "target": ">= 0.5",
             "note": f"median of {ROUNDS} alternating rounds, import/COPY s: {rounds}"},
            {"name": "1-minute bars query", "value": query_ms, "unit": "ms",
             "note": f"{len(bars)} bars over the imported recording ({summary.db_mode})"},
            {"name": "day fill (trades + quotes)", "value": day_rows["rows"], "unit": "rows",
             "note": day_rows["note"]},
            {"name": "1-minute bars over a day", "value": day_query["ms"], "unit": "ms",
             "note": day_query["note"]},
        ]  # fmt: skip
    finally:
        connection.close()
        sd["NAME"] = original
        with psycopg.connect(**admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{scratch}" WITH (FORCE)')
    return rows_out
