"""Import rate of the shared Binance USD-M raw recording beside a plain COPY of the same rows, and the query time of
a 1-minute-bar chart over it. Runs in a scratch database (created, migrated, dropped) on the configured server.

Rows are stored rows: one per trade, quote, depth-diff message and snapshot (depth levels are arrays in a
message row, see apps.marketdata.models), 93,954 for this file. The plain COPY loads exactly those rows, from files
dumped with COPY TO, into the same tables with the same indexes, so the ratio is the cost of parsing, validation,
book checking and the ON CONFLICT staging step.
"""

from __future__ import annotations

import os
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
USDM = (
    BASE_DIR.parent
    / "shared"
    / "data"
    / "hftbacktest-binance-usdm-btcusdt-20240808"
    / "raw"
    / "usdm_btcusdt_20240808.gz"
)
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
            import_s = time.perf_counter() - t0
            f = summary.files[0]
            n_rows = sum(f.inserted.values())
            iid = Instrument.objects.get(venue="binance-usdm", symbol="BTCUSDT").pk

            # 1-minute bars over everything imported (the chart query)
            start, end = datetime(2024, 8, 8, tzinfo=UTC), datetime(2024, 8, 9, tzinfo=UTC)
            selectors.bars(iid, start, end)  # warm
            q0 = time.perf_counter()
            reps = 5
            for _ in range(reps):
                bars = selectors.bars(iid, start, end)
            query_ms = (time.perf_counter() - q0) / reps * 1000

            # the same rows, dumped to files, then loaded with plain COPY into the emptied tables
            connection.ensure_connection()
            raw = connection.connection
            files = {}
            for table in TABLES:
                path = Path(tmp) / f"{table}.copy"
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
            copy_s = time.perf_counter() - c0
        import_rate = n_rows / import_s
        copy_rate = n_rows / copy_s
        levels = 443_521 + 2_000
        rows_out = [
            {"name": "import usdm raw (stored rows/s)", "value": import_rate, "unit": "rows/s", "target": ">= 150,000",
             "note": f"{n_rows:,} rows ({levels:,} depth levels) in {import_s:.2f} s; mode {summary.db_mode}"},
            {"name": "import usdm raw (rows+levels/s)", "value": (n_rows - 6_552 + levels) / import_s,
             "unit": "rows/s", "note": "counting each depth level as a row, as a per-level schema would"},
            {"name": "plain COPY of the same rows", "value": copy_rate, "unit": "rows/s",
             "note": f"{copy_s:.2f} s from prepared files, same tables and indexes"},
            {"name": "import / plain COPY", "value": import_rate / copy_rate, "unit": "ratio", "target": ">= 0.5"},
            {"name": "1-minute bars query", "value": query_ms, "unit": "ms",
             "note": f"{len(bars)} bars over the imported day ({summary.db_mode})"},
        ]  # fmt: skip
    finally:
        connection.close()
        sd["NAME"] = original
        with psycopg.connect(**admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{scratch}" WITH (FORCE)')
    return rows_out
