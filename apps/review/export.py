"""A session's fills, decisions and P&L points as CSV (streamed row by row) or Parquet (written in row-group batches).

Rows are read with a server-side cursor in chunks, oldest first, so a day of decisions never sits in memory at once.
Decisions' ``inputs`` and ``reasons`` are JSON text columns (their keys vary by strategy).
"""

from __future__ import annotations

import csv
import json
import tempfile
from collections.abc import Iterator
from typing import IO, Any

from apps.trading.models import FillRecord, PnlPoint, QuoteDecisionRecord

CHUNK_ROWS = 5000
PARQUET_BATCH_ROWS = 50_000

# table -> (model, columns, JSON columns)
TABLES: dict[str, tuple[Any, tuple[str, ...], frozenset[str]]] = {
    "fills": (
        FillRecord,
        ("ts", "ts_ns", "client_order_id", "fill_id", "side", "price", "size", "fee", "liquidity"),
        frozenset(),
    ),
    "decisions": (
        QuoteDecisionRecord,
        ("ts", "ts_ns", "mid", "bid_px", "ask_px", "bid_size", "ask_size", "inputs", "reasons"),
        frozenset({"inputs", "reasons"}),
    ),
    "pnl": (
        PnlPoint,
        (
            "ts",
            "ts_ns",
            "mid",
            "position",
            "cash",
            "total",
            "spread_capture",
            "adverse_selection",
            "inventory",
            "fees",
            "funding",
        ),
        frozenset(),
    ),
}
FORMATS = ("csv", "parquet")


def rows(table: str, session_id: int) -> Iterator[tuple[Any, ...]]:
    model, cols, json_cols = TABLES[table]
    idx = [i for i, c in enumerate(cols) if c in json_cols]
    qs = model.objects.filter(session_id=session_id).order_by("ts", "ts_ns", "id").values_list(*cols)
    for row in qs.iterator(chunk_size=CHUNK_ROWS):
        if idx:
            row = list(row)
            for i in idx:
                row[i] = json.dumps(row[i], separators=(",", ":"))
        yield tuple(row)


class _Echo:
    def write(self, value: str) -> str:
        return value


def csv_lines(table: str, session_id: int) -> Iterator[str]:
    """The CSV text, a header line then one line per row (ts in ISO 8601 UTC)."""
    _model, cols, _ = TABLES[table]
    writer = csv.writer(_Echo())
    yield writer.writerow(cols)
    for row in rows(table, session_id):
        yield writer.writerow([v.isoformat() if hasattr(v, "isoformat") else v for v in row])


def _schema(table: str) -> Any:
    import pyarrow as pa

    model, cols, json_cols = TABLES[table]
    fields = []
    for c in cols:
        if c in json_cols:
            typ = pa.string()
        elif c == "ts":
            typ = pa.timestamp("us", tz="UTC")
        else:
            f = model._meta.get_field(c)
            typ = {
                "BigIntegerField": pa.int64(),
                "SmallIntegerField": pa.int16(),
                "FloatField": pa.float64(),
                "CharField": pa.string(),
            }[f.get_internal_type()]
        fields.append(pa.field(c, typ))
    return pa.schema(fields)


def write_parquet(table: str, session_id: int) -> IO[bytes]:
    """The Parquet file in a temporary file (rewound), one row group per :data:`PARQUET_BATCH_ROWS` rows."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = _schema(table)
    out = tempfile.TemporaryFile()  # noqa: SIM115 - handed to the response, which closes it
    with pq.ParquetWriter(out, schema, compression="zstd") as writer:
        batch: list[tuple[Any, ...]] = []
        written = 0

        def flush() -> None:
            columns = list(zip(*batch, strict=True)) if batch else [[] for _ in schema]
            arrays = [pa.array(c, type=f.type) for c, f in zip(columns, schema, strict=True)]
            writer.write_table(pa.Table.from_arrays(arrays, schema=schema))
            batch.clear()

        for row in rows(table, session_id):
            batch.append(row)
            written += 1
            if len(batch) >= PARQUET_BATCH_ROWS:
                flush()
        if batch or not written:  # an empty export is still a valid file with the schema
            flush()
    out.seek(0)
    return out
