"""Storage mode: TimescaleDB hypertables, compression and continuous aggregates when present; BRIN on plain PostgreSQL.

Everything here takes a DB-API cursor (Django's or a bare psycopg one) on a connection in autocommit mode, so the
same DDL runs from the migration (``0003_storage``) and, in a test, against a real TimescaleDB engine that cannot
run Django migrations. Every statement is idempotent; :func:`apply_storage` can be run again after TimescaleDB is
installed on a database that started plain.

TimescaleDB mode
----------------
* The tick tables and our fills (:data:`HYPERTABLES`) become hypertables partitioned on ``ts`` (chunk interval
  per table). A hypertable needs the partitioning column in every unique index, so the primary key becomes
  ``(id, ts)`` and the natural keys already end in ``ts`` (see :mod:`apps.marketdata.models` and
  :class:`apps.trading.models.FillRecord`).
* Compression: segment by ``instrument_id`` (fills: ``session_id``), order by ``ts``; a policy compresses chunks
  older than :data:`COMPRESS_AFTER`.
* Continuous aggregates (:data:`CAGGS`), real-time (``materialized_only = false``) so the newest bucket is
  included: ``marketdata_quote_bars_1s`` / ``_1m`` (mid open/high/low/close, mean spread, quote count) and
  ``marketdata_trade_bars_1s`` / ``_1m`` (volume, buy volume, notional, trade count, price OHLC), each with a
  refresh policy. They are separate for quotes and trades because a continuous aggregate reads one hypertable;
  :func:`apps.marketdata.selectors.bars` joins them. ``trading_fill_bars_1s`` / ``_1m`` hold, per session and
  bucket, the fill count, bought and sold size, cash flow and fees: summed from the session's start they are its
  inventory and cash, which :func:`apps.trading.selectors.session_pnl` marks to the quote bars' mid for the P&L.

Tables are set up as they exist: the market-data migration runs before the trading tables are created, and the
trading migration that makes fills time-keyed runs :func:`apply_storage` again for them.

Plain PostgreSQL mode
---------------------
The same migration succeeds; the Timescale parts are skipped and each tick table gets a BRIN index on ``ts``
(tiny, and ideal for append-mostly time order). Bars are computed from the raw rows by the selectors.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

logger = logging.getLogger(__name__)

TIMESCALEDB = "timescaledb"
POSTGRESQL = "postgresql"


@dataclass(frozen=True)
class Hypertable:
    chunk_interval: str
    segment_by: str = "instrument_id"  # compression segments: the column every query filters on


# Quotes and depth arrive at up to ~100/s per instrument, trades less, funding rarely; our fills far less.
HYPERTABLES: dict[str, Hypertable] = {
    "marketdata_tradetick": Hypertable("1 day"),
    "marketdata_quotetick": Hypertable("1 day"),
    "marketdata_depthupdaterecord": Hypertable("1 day"),
    "marketdata_depthsnapshotrecord": Hypertable("7 days"),
    "marketdata_fundingrate": Hypertable("30 days"),
    "trading_fillrecord": Hypertable("7 days", segment_by="session_id"),
}
COMPRESS_AFTER = "7 days"

_QUOTE_BARS = """
SELECT instrument_id,
       time_bucket(INTERVAL '{width}', ts) AS bucket,
       first((bid_px + ask_px) / 2, ts) AS mid_open,
       max((bid_px + ask_px) / 2) AS mid_high,
       min((bid_px + ask_px) / 2) AS mid_low,
       last((bid_px + ask_px) / 2, ts) AS mid_close,
       avg(ask_px - bid_px) AS spread_mean,
       count(*) AS n_quotes
FROM marketdata_quotetick
GROUP BY instrument_id, bucket
"""
_TRADE_BARS = """
SELECT instrument_id,
       time_bucket(INTERVAL '{width}', ts) AS bucket,
       first(price, ts) AS price_open,
       max(price) AS price_high,
       min(price) AS price_low,
       last(price, ts) AS price_close,
       sum(size) AS volume,
       sum(CASE WHEN aggressor > 0 THEN size ELSE 0 END) AS buy_volume,
       sum(price * size) AS notional,
       count(*) AS n_trades
FROM marketdata_tradetick
GROUP BY instrument_id, bucket
"""
# Our fills per session and bucket. side is +1 buy / -1 sell; cash_flow is -side*price*size (before fees), so a
# session's inventory is the running sum of buy_size - sell_size and its cash the running sum of cash_flow - fees.
_FILL_BARS = """
SELECT session_id,
       time_bucket(INTERVAL '{width}', ts) AS bucket,
       count(*) AS n_fills,
       sum(CASE WHEN side > 0 THEN size ELSE 0 END) AS buy_size,
       sum(CASE WHEN side > 0 THEN 0 ELSE size END) AS sell_size,
       sum(CASE WHEN side > 0 THEN -price * size ELSE price * size END) AS cash_flow,
       sum(fee) AS fees,
       last(price, ts) AS last_price
FROM trading_fillrecord
GROUP BY session_id, bucket
"""


@dataclass(frozen=True)
class Cagg:
    name: str
    source: str  # the hypertable it reads
    query: str
    width: str
    start_offset: str
    end_offset: str
    schedule: str


def _one_second_and_one_minute(prefix: str, source: str, query: str) -> tuple[Cagg, Cagg]:
    """The 1 s and 1 min aggregates of ``query``: refreshed every 10 s over the last hour, every minute over the
    last day (real-time aggregation covers the newest, unmaterialized buckets)."""
    return (
        Cagg(f"{prefix}_1s", source, query, "1 second", "1 hour", "1 second", "10 seconds"),
        Cagg(f"{prefix}_1m", source, query, "1 minute", "1 day", "1 minute", "1 minute"),
    )


CAGGS: tuple[Cagg, ...] = (
    *_one_second_and_one_minute("marketdata_quote_bars", "marketdata_quotetick", _QUOTE_BARS),
    *_one_second_and_one_minute("marketdata_trade_bars", "marketdata_tradetick", _TRADE_BARS),
    *_one_second_and_one_minute("trading_fill_bars", "trading_fillrecord", _FILL_BARS),
)


@dataclass
class StorageReport:
    mode: str
    hypertables: list[str] = field(default_factory=list)
    caggs: list[str] = field(default_factory=list)
    brin_indexes: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _scalar(cursor: Any, sql: str, params: tuple[Any, ...] = ()) -> Any:
    cursor.execute(sql, params)
    row = cursor.fetchone()
    return row[0] if row else None


def timescale_available(cursor: Any) -> bool:
    """The server can install TimescaleDB (it is in ``pg_available_extensions``)."""
    return bool(_scalar(cursor, "SELECT count(*) FROM pg_available_extensions WHERE name = 'timescaledb'"))


def timescale_installed(cursor: Any) -> bool:
    return bool(_scalar(cursor, "SELECT count(*) FROM pg_extension WHERE extname = 'timescaledb'"))


def _is_hypertable(cursor: Any, table: str) -> bool:
    return bool(
        _scalar(cursor, "SELECT count(*) FROM timescaledb_information.hypertables WHERE hypertable_name = %s", (table,))
    )


def detect_mode(cursor: Any) -> str:
    """``"timescaledb"`` when the tick tables are hypertables, else ``"postgresql"``."""
    if not timescale_installed(cursor):
        return POSTGRESQL
    return TIMESCALEDB if _is_hypertable(cursor, "marketdata_quotetick") else POSTGRESQL


def _try_create_extension(cursor: Any, report: StorageReport) -> bool:
    if timescale_installed(cursor):
        return True
    if not timescale_available(cursor):
        report.notes.append("timescaledb extension not available on this server")
        return False
    try:
        cursor.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
    except Exception as exc:  # noqa: BLE001 - e.g. not in shared_preload_libraries: fall back to plain mode
        report.notes.append(f"CREATE EXTENSION timescaledb failed ({type(exc).__name__}: {exc}); plain mode")
        return False
    return True


def _primary_key(cursor: Any, table: str) -> tuple[str, list[str]]:
    cursor.execute(
        """
        SELECT c.conname, array_agg(a.attname::text ORDER BY k.ord)
        FROM pg_constraint c
        JOIN LATERAL unnest(c.conkey) WITH ORDINALITY AS k(attnum, ord) ON true
        JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.attnum
        WHERE c.conrelid = %s::regclass AND c.contype = 'p'
        GROUP BY c.conname
        """,
        (table,),
    )
    row = cursor.fetchone()
    return (row[0], list(row[1])) if row else ("", [])


def _table_exists(cursor: Any, table: str) -> bool:
    return _scalar(cursor, "SELECT to_regclass(%s) IS NOT NULL", (table,))


def make_hypertable(cursor: Any, table: str, spec: Hypertable) -> None:
    """Turn ``table`` into a hypertable on ``ts`` with compression and a compression policy (idempotent)."""
    if not _is_hypertable(cursor, table):
        name, cols = _primary_key(cursor, table)
        if cols != ["id", "ts"]:
            if name:
                cursor.execute(f'ALTER TABLE "{table}" DROP CONSTRAINT "{name}"')
            cursor.execute(f'ALTER TABLE "{table}" ADD CONSTRAINT "{table}_pkey" PRIMARY KEY (id, ts)')
        cursor.execute(
            "SELECT create_hypertable(%s::regclass, 'ts', chunk_time_interval => %s::interval, "
            "if_not_exists => TRUE, migrate_data => TRUE)",
            (table, spec.chunk_interval),
        )
    cursor.execute(
        f'ALTER TABLE "{table}" SET (timescaledb.compress, '
        f"timescaledb.compress_segmentby = '{spec.segment_by}', timescaledb.compress_orderby = 'ts')"
    )
    cursor.execute(
        "SELECT add_compression_policy(%s::regclass, %s::interval, if_not_exists => TRUE)", (table, COMPRESS_AFTER)
    )


def make_cagg(cursor: Any, cagg: Cagg) -> None:
    exists = _scalar(
        cursor, "SELECT count(*) FROM timescaledb_information.continuous_aggregates WHERE view_name = %s", (cagg.name,)
    )
    if not exists:
        # continuous aggregates cannot be created inside a transaction block: the caller runs in autocommit
        cursor.execute(
            f"CREATE MATERIALIZED VIEW {cagg.name} "
            "WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS "
            f"{cagg.query.format(width=cagg.width)} WITH NO DATA"
        )
    cursor.execute(
        "SELECT add_continuous_aggregate_policy(%s::regclass, start_offset => %s::interval, "
        "end_offset => %s::interval, schedule_interval => %s::interval, if_not_exists => TRUE)",
        (cagg.name, cagg.start_offset, cagg.end_offset, cagg.schedule),
    )


def make_brin(cursor: Any, table: str) -> str:
    name = f"{table}_ts_brin"
    cursor.execute(f'CREATE INDEX IF NOT EXISTS "{name}" ON "{table}" USING brin (ts)')
    return name


def apply_storage(cursor: Any, *, use_timescale: bool = True) -> StorageReport:
    """Set up the storage for the current schema: TimescaleDB when it can be installed, else plain PostgreSQL.

    ``cursor`` must be on a connection in autocommit mode (continuous aggregates refuse transaction blocks).
    """
    report = StorageReport(mode=POSTGRESQL)
    tables = [t for t in HYPERTABLES if _table_exists(cursor, t)]
    report.notes.extend(
        f"{t} does not exist yet; set up when its migration runs" for t in HYPERTABLES if t not in tables
    )
    if use_timescale and _try_create_extension(cursor, report):
        for table in tables:
            make_hypertable(cursor, table, HYPERTABLES[table])
            report.hypertables.append(table)
        for cagg in CAGGS:
            if cagg.source in tables:
                make_cagg(cursor, cagg)
                report.caggs.append(cagg.name)
        report.mode = TIMESCALEDB
    else:
        for table in tables:
            report.brin_indexes.append(make_brin(cursor, table))
    logger.info("market-data storage: %s", report)
    return report


def migrate_storage(apps: Any, schema_editor: Any) -> None:
    """The ``RunPython`` step of the storage migrations (marketdata 0003, trading 0003): :func:`apply_storage` on
    the migration's connection (the migrations are not atomic, so it is in autocommit mode)."""
    with schema_editor.connection.cursor() as cursor:
        apply_storage(cursor)


def db_mode() -> str:
    """The storage mode of Django's default database: ``"timescaledb"`` or ``"postgresql"``."""
    from django.db import connection

    with connection.cursor() as cursor:
        return detect_mode(cursor)
