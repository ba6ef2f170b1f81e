"""Export stored market data to Parquet, streaming (constant memory: one row group per chunk)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from django.db import connection, transaction

# table label -> (table, columns, arrow types)
_TABLES: dict[str, tuple[str, tuple[str, ...]]] = {
    "trades": (
        "marketdata_tradetick",
        ("ts", "ts_exch_ns", "ts_local_ns", "price", "size", "aggressor", "trade_id"),
    ),
    "quotes": (
        "marketdata_quotetick",
        ("ts", "ts_exch_ns", "ts_local_ns", "bid_px", "bid_size", "ask_px", "ask_size", "update_id"),
    ),
    "depth_updates": (
        "marketdata_depthupdaterecord",
        (
            "ts", "ts_exch_ns", "ts_local_ns", "first_update_id", "last_update_id", "prev_update_id",
            "bid_px", "bid_size", "ask_px", "ask_size",
        ),
    ),
}  # fmt: skip
TABLES = tuple(_TABLES)


def _schema(label: str):
    import pyarrow as pa

    ts = pa.timestamp("us", tz="UTC")
    f64, i64 = pa.float64(), pa.int64()
    types = {
        "ts": ts,
        "ts_exch_ns": i64,
        "ts_local_ns": i64,
        "aggressor": pa.int8(),
        "trade_id": pa.string(),
        "update_id": i64,
        "first_update_id": i64,
        "last_update_id": i64,
        "prev_update_id": i64,
    }
    cols = _TABLES[label][1]
    return pa.schema(
        [
            (c, types.get(c, pa.list_(f64) if label == "depth_updates" and c.endswith(("_px", "_size")) else f64))
            for c in cols
        ]
    )


@dataclass(frozen=True)
class ExportResult:
    path: Path
    table: str
    rows: int


def export_parquet(
    instrument_id: int, table: str, start: datetime, end: datetime, out: Path, *, chunk_rows: int = 100_000
) -> ExportResult:
    """Write rows of ``table`` (one of :data:`TABLES`) with ``start <= ts < end`` to ``out``, ordered by ts."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if table not in _TABLES:
        raise ValueError(f"table must be one of {TABLES}, got {table!r}")
    if end <= start:
        raise ValueError(f"end must be after start, got start={start} end={end}")
    if chunk_rows <= 0:
        raise ValueError(f"chunk_rows must be > 0, got {chunk_rows!r}")
    db_table, cols = _TABLES[table]
    schema = _schema(table)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".part")
    n = 0
    with transaction.atomic(), pq.ParquetWriter(tmp, schema, compression="zstd") as writer:
        connection.ensure_connection()
        with connection.connection.cursor(name="export_parquet") as cur:
            cur.itersize = chunk_rows
            cur.execute(
                f"SELECT {', '.join(cols)} FROM {db_table} "  # noqa: S608 - fixed identifiers
                "WHERE instrument_id = %s AND ts >= %s AND ts < %s ORDER BY ts, id",
                (instrument_id, start, end),
            )
            while rows := cur.fetchmany(chunk_rows):
                columns = list(zip(*rows, strict=True))
                writer.write_table(pa.table(columns, schema=schema))
                n += len(rows)
    tmp.rename(out)  # a reader never sees a half-written file
    return ExportResult(out, table, n)
