"""Batched, COPY-based writer for high-rate records (ticks, decisions, order events, fills).

The hot path calls :meth:`BatchedWriter.add` (a deque append); a background thread flushes on size or time with
``COPY ... FROM STDIN``. Rows that fail to write stay buffered and are retried; when the buffer passes
``max_buffer_rows`` the oldest rows spill to files under ``spill_dir`` and are replayed, oldest first, once the
database answers again. ``overflowing`` tells the caller to stop producing (quoting halts on it).

Order *state* (latest status per client order id) is upserted rather than copied, de-duplicated per flush.

Tables with a unique index besides the primary key (the natural keys of :mod:`apps.marketdata.models`, detected
once per table, or forced with ``TableSpec(dedupe=True)``) cannot take a plain COPY: one already-stored row would
fail the whole batch, and the retry would fail forever. Their rows are copied into a per-connection temporary
staging table and moved with ``INSERT ... SELECT ... ON CONFLICT DO NOTHING``; rows already stored are counted in
``stats.duplicates`` (per table), new ones in ``stats.inserted``. ``benchmarks/bench_import.py`` measures the cost.
A spec with ``direct_first`` COPYs straight into its table inside a savepoint and takes the staging road only
after a COPY hit a stored key (``UniqueViolation``; the savepoint undoes it): the unique index, not a check
beforehand, is what keeps rows single, so concurrent writers of the same rows are safe (``stats.direct`` counts
the rows that went straight in).

A spec with ``binary_types`` is sent as binary COPY (:func:`binary_encoder`): no text for the server to parse
(float arrays in text form are slow for PostgreSQL to read), and the rows are still plain tuples, so spilling,
the journal and poison-row isolation work the same.

By default the writer uses Django's connection (one per thread: the background thread has its own); pass
``connect`` (a function returning a psycopg connection in autocommit mode) to write to another database.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import struct
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from django.db import connection

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TableSpec:
    """A table the writer copies into. ``dedupe``: None = detect (a unique index besides the primary key)."""

    table: str
    columns: tuple[str, ...]
    json_columns: frozenset[str] = frozenset()
    dedupe: bool | None = None
    # PostgreSQL binary COPY: one type per column (see :func:`binary_encoder`); None = text COPY of Python values
    binary_types: tuple[str, ...] | None = None
    # dedupe tables: COPY straight into the table first (inside a savepoint) and use the staging table only when
    # that hits a stored natural key; after one such hit the writer stages that table for the rest of its life
    direct_first: bool = False

    def __post_init__(self) -> None:
        if self.binary_types is not None:
            if len(self.binary_types) != len(self.columns):
                raise ValueError(f"{self.table}: {len(self.binary_types)} binary types for {len(self.columns)} columns")
            if self.json_columns:
                raise ValueError(f"{self.table}: json columns need the text COPY (binary_types=None)")
            object.__setattr__(self, "_encode", binary_encoder(self.binary_types))

    def encode(self, rows: Sequence[tuple[Any, ...]]) -> bytes:
        """``rows`` as binary COPY tuples (no file header or trailer); needs ``binary_types``."""
        return self._encode(rows)  # type: ignore[attr-defined]


@dataclass
class WriterStats:
    rows_written: int = 0
    flushes: int = 0
    failures: int = 0
    rows_spilled: int = 0
    rows_replayed: int = 0
    last_error: str = ""
    per_table: dict[str, int] = field(default_factory=dict)
    inserted: dict[str, int] = field(default_factory=dict)
    duplicates: dict[str, int] = field(default_factory=dict)
    rows_rejected: int = 0  # rows the database refused as data (kept in a rejected-*.pickle file, not dropped)
    direct: dict[str, int] = field(default_factory=dict)  # dedupe-table rows COPYed straight in (no staging)


class Journal:
    """Write-ahead log of one writer: every row is appended (one ``write`` system call, so it survives a SIGKILL of
    the process; a machine crash can lose the OS cache) with a sequence number before it is buffered. Each flush
    records, in the same database transaction, the highest sequence number it covered (``WriterProgress``). A
    successor replays exactly the rows above that mark: nothing lost, nothing written twice."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)

    def append(self, seq: int, kind: str, table: str, row: tuple[Any, ...]) -> None:
        data = pickle.dumps((seq, kind, table, row), protocol=pickle.HIGHEST_PROTOCOL)
        os.write(self._fd, len(data).to_bytes(4, "little") + data)

    def close(self, *, delete: bool) -> None:
        os.close(self._fd)
        if delete:
            self.path.unlink(missing_ok=True)

    @staticmethod
    def read(path: Path) -> list[tuple[int, str, str, tuple[Any, ...]]]:
        """Every complete record; a torn last record (the process died mid-write) is ignored."""
        out = []
        data = path.read_bytes()
        i = 0
        while i + 4 <= len(data):
            n = int.from_bytes(data[i : i + 4], "little")
            if i + 4 + n > len(data):
                break
            out.append(pickle.loads(data[i + 4 : i + 4 + n]))  # noqa: S301 - our own journal under var/
            i += 4 + n
        return out


class BatchedWriter:
    def __init__(
        self,
        specs: Sequence[TableSpec],
        *,
        upsert_spec: TableSpec | None = None,
        upsert_conflict: tuple[str, ...] = (),
        flush_interval_s: float = 0.5,
        max_batch_rows: int = 5000,
        max_buffer_rows: int = 200_000,
        spill_dir: Path | None = None,
        connect: Callable[[], Any] | None = None,
        journal_path: Path | None = None,
        owner: str = "",
    ) -> None:
        if flush_interval_s <= 0:
            raise ValueError(f"flush_interval_s must be > 0, got {flush_interval_s}")
        if max_batch_rows <= 0 or max_buffer_rows < max_batch_rows:
            raise ValueError("need 0 < max_batch_rows <= max_buffer_rows")
        self.specs = {s.table: s for s in specs}
        self.upsert_spec = upsert_spec
        self.upsert_conflict = upsert_conflict
        self.flush_interval_s = flush_interval_s
        self.max_batch_rows = max_batch_rows
        self.max_buffer_rows = max_buffer_rows
        self.spill_dir = spill_dir
        self.stats = WriterStats()
        self._buffers: dict[str, deque[tuple[Any, ...]]] = {t: deque() for t in self.specs}
        self._upserts: dict[tuple[Any, ...], tuple[Any, ...]] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._flush_lock = threading.Lock()  # the background thread and an explicit flush() never interleave
        self._connect = connect
        self._own_conn: Any = None
        self._dedupe: dict[str, bool] = {t: s.dedupe for t, s in self.specs.items() if s.dedupe is not None}
        self._staged: set[str] = set()  # staging tables created on the current connection
        self._conflicted: set[str] = set()  # direct_first tables that hit a stored row: staged from then on
        if journal_path is not None and not owner:
            raise ValueError("a journaled writer needs an owner id (its progress mark in the database)")
        self.owner = owner
        self.journal = Journal(journal_path) if journal_path is not None else None
        self._seq = 0

    # --- producer side (hot path) -------------------------------------------------------------

    def add(self, table: str, row: tuple[Any, ...]) -> None:
        spec = self.specs[table]
        if len(row) != len(spec.columns):
            raise ValueError(f"{table}: row has {len(row)} values, expected {len(spec.columns)} ({spec.columns})")
        with self._lock:
            if self.journal is not None:
                self._seq += 1
                self.journal.append(self._seq, "add", table, row)
            self._buffers[table].append(row)
            if len(self._buffers[table]) >= self.max_batch_rows:
                self._wake.set()

    def add_many(self, table: str, rows: list[tuple[Any, ...]]) -> None:
        """:meth:`add` for a list of rows (one lock round for all: the importer's hot path)."""
        n = len(self.specs[table].columns)
        if any(len(row) != n for row in rows):
            bad = next(row for row in rows if len(row) != n)
            raise ValueError(f"{table}: row has {len(bad)} values, expected {n} ({self.specs[table].columns})")
        with self._lock:
            if self.journal is not None:
                for row in rows:
                    self._seq += 1
                    self.journal.append(self._seq, "add", table, row)
            buf = self._buffers[table]
            buf.extend(rows)
            if len(buf) >= self.max_batch_rows:
                self._wake.set()

    def upsert(self, row: tuple[Any, ...]) -> None:
        assert self.upsert_spec is not None
        key = tuple(row[self.upsert_spec.columns.index(c)] for c in self.upsert_conflict)
        with self._lock:
            if self.journal is not None:
                self._seq += 1
                self.journal.append(self._seq, "upsert", self.upsert_spec.table, row)
            self._upserts[key] = row

    def flush_soon(self) -> None:
        """Ask the writer thread to flush now rather than at the next interval (e.g. after an emergency cancel)."""
        self._wake.set()

    @property
    def buffered_rows(self) -> int:
        with self._lock:
            return sum(len(b) for b in self._buffers.values()) + len(self._upserts)

    @property
    def overflowing(self) -> bool:
        return self.buffered_rows >= self.max_buffer_rows

    # --- lifecycle --------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="batched-writer", daemon=True)
        self._thread.start()

    def close(self, timeout_s: float = 30.0) -> None:
        """Flush everything and stop the thread; rows that still cannot be written are spilled to disk."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None
        else:
            self.flush()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                self._wake.wait(self.flush_interval_s)
                self._wake.clear()
                self.flush()
            # final drain: keep trying briefly, then spill whatever is left
            deadline = time.monotonic() + 5.0
            while self.buffered_rows and time.monotonic() < deadline:
                if not self.flush():
                    time.sleep(0.2)
            if self.buffered_rows:
                self._spill_all()
        finally:
            self._drop_connection()
            if self.journal is not None:
                # everything is in the database (or in a spill file the next writer for this session replays)
                self.journal.close(delete=not self.buffered_rows)

    # --- flushing ---------------------------------------------------------------------------

    def flush(self) -> bool:
        """Write what is buffered. Returns False (keeping every row) when the database is unavailable."""
        with self._flush_lock:
            return self._flush()

    def _raw_connection(self) -> Any:
        if self._connect is not None:
            if self._own_conn is None or self._own_conn.closed or self._own_conn.broken:
                self._drop_connection()
                self._own_conn = self._connect()
            return self._own_conn
        # keep one connection for the writer's life (CONN_MAX_AGE=0 would otherwise reconnect on every flush);
        # drop it only when it is broken, e.g. after a database restart
        if connection.connection is not None and not connection.is_usable():
            self._drop_connection()
        if connection.connection is None:
            self._staged.clear()
        connection.ensure_connection()
        return connection.connection

    def _drop_connection(self) -> None:
        self._staged.clear()
        if self._connect is None:
            connection.close()
            return
        if self._own_conn is not None:
            try:
                self._own_conn.close()
            except Exception:
                logger.debug("batched writer: close failed", exc_info=True)
            self._own_conn = None

    def _flush(self) -> bool:
        with self._lock:
            batches = {t: list(b) for t, b in self._buffers.items() if b}
            upserts = list(self._upserts.values())
            covered_seq = self._seq  # every journaled row up to here is in this snapshot or already written
        if not batches and not upserts and not self._spill_files():
            return True
        results: dict[str, tuple[int, int]] = {}
        try:
            conn = self._raw_connection()
            self._replay_spill(conn)
            with conn.transaction():
                cur = conn.cursor()
                for table, rows in batches.items():
                    results[table] = self._write_table(cur, self.specs[table], rows)
                if upserts:
                    self._upsert_rows(cur, upserts)
                if self.journal is not None:
                    self._mark_progress(cur, covered_seq)
        except Exception as exc:  # noqa: BLE001 - any database failure keeps the rows for a retry
            if _is_data_error(exc):
                # a row the database refuses as data would block every later flush: isolate it
                self._drop_connection()
                return self._flush_isolating(batches, upserts, covered_seq, exc)
            self.stats.failures += 1
            self.stats.last_error = f"{type(exc).__name__}: {exc}"
            logger.warning("batched writer: flush failed, %d rows kept: %s", self.buffered_rows, exc)
            self._drop_connection()
            self._spill_overflow()
            return False
        self._forget(batches, upserts)
        self._count(results)
        self.stats.flushes += 1
        return True

    def _forget(self, batches: dict[str, list[tuple[Any, ...]]], upserts: list[tuple[Any, ...]]) -> None:
        """Drop rows a flush has dealt with from the buffers (newer rows added meanwhile stay)."""
        with self._lock:
            for table, rows in batches.items():
                for _ in range(len(rows)):
                    self._buffers[table].popleft()
                self.stats.per_table[table] = self.stats.per_table.get(table, 0) + len(rows)
                self.stats.rows_written += len(rows)
            for row in upserts:
                key = tuple(row[self.upsert_spec.columns.index(c)] for c in self.upsert_conflict)
                if self._upserts.get(key) is row:
                    del self._upserts[key]

    def _mark_progress(self, cur: Any, seq: int) -> None:
        cur.execute(
            "INSERT INTO marketdata_writerprogress (owner, seq, updated_at) VALUES (%s, %s, now()) "
            "ON CONFLICT (owner) DO UPDATE SET seq = GREATEST(marketdata_writerprogress.seq, EXCLUDED.seq), "
            "updated_at = now()",
            (self.owner, seq),
        )

    def _flush_isolating(
        self,
        batches: dict[str, list[tuple[Any, ...]]],
        upserts: list[tuple[Any, ...]],
        covered_seq: int,
        first_error: Exception,
    ) -> bool:
        """Write row by row; rows the database refuses go to a rejected-*.pickle file with the error."""
        logger.error("batched writer: a batch was refused (%s); writing row by row to isolate bad rows", first_error)
        rejected: list[tuple[str, tuple[Any, ...], str]] = []
        try:
            conn = self._raw_connection()
            cur = conn.cursor()
            for table, rows in batches.items():
                for row in rows:
                    try:
                        with conn.transaction():
                            self._write_table(cur, self.specs[table], [row])
                    except Exception as exc:
                        if not _is_data_error(exc):
                            raise
                        rejected.append((table, row, f"{type(exc).__name__}: {exc}"))
            for row in upserts:
                try:
                    with conn.transaction():
                        self._upsert_rows(cur, [row])
                except Exception as exc:
                    if not _is_data_error(exc):
                        raise
                    rejected.append((self.upsert_spec.table, row, f"{type(exc).__name__}: {exc}"))
            if self.journal is not None:
                with conn.transaction():
                    self._mark_progress(cur, covered_seq)
        except Exception as exc:  # noqa: BLE001 - connection trouble mid-way: rows stay buffered, retried
            self.stats.failures += 1
            self.stats.last_error = f"{type(exc).__name__}: {exc}"
            self._drop_connection()
            return False
        if rejected:
            self._save_rejected(rejected)
        self._forget(batches, upserts)
        self.stats.rows_written -= len(rejected)
        self.stats.rows_rejected += len(rejected)
        self.stats.flushes += 1
        return True

    def _save_rejected(self, rejected: list[tuple[str, tuple[Any, ...], str]]) -> None:
        directory = self.spill_dir or Path(os.environ.get("MM_VAR_DIR", "var")) / "spill"
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"rejected-{time.time_ns()}.pickle"
        path.write_bytes(pickle.dumps(rejected))
        logger.error(
            "batched writer: %d row(s) refused by the database kept in %s; first: %s",
            len(rejected),
            path,
            rejected[0][2],
        )

    def _count(self, results: dict[str, tuple[int, int]]) -> None:
        for table, (inserted, duplicates) in results.items():
            self.stats.inserted[table] = self.stats.inserted.get(table, 0) + inserted
            self.stats.duplicates[table] = self.stats.duplicates.get(table, 0) + duplicates

    def _needs_dedupe(self, cur: Any, table: str) -> bool:
        if table not in self._dedupe:
            cur.execute(
                "SELECT count(*) FROM pg_index WHERE indrelid = %s::regclass AND indisunique AND NOT indisprimary",
                (table,),
            )
            self._dedupe[table] = bool(cur.fetchone()[0])
        return self._dedupe[table]

    def _write_table(self, cur: Any, spec: TableSpec, rows: list[tuple[Any, ...]]) -> tuple[int, int]:
        """COPY ``rows`` into ``spec.table``; returns (rows inserted, rows skipped as already stored)."""
        if not self._needs_dedupe(cur, spec.table):
            self._copy(cur, spec.table, spec, rows)
            return len(rows), 0
        if spec.direct_first and spec.table not in self._conflicted:
            import psycopg

            try:
                with cur.connection.transaction():  # a savepoint: a conflict undoes only this COPY
                    self._copy(cur, spec.table, spec, rows)
            except psycopg.errors.UniqueViolation:
                # a row is already stored (a re-import, an overlapping file, a concurrent import): stage from now on
                self._conflicted.add(spec.table)
            else:
                self.stats.direct[spec.table] = self.stats.direct.get(spec.table, 0) + len(rows)
                return len(rows), 0
        cols = ", ".join(spec.columns)
        stage = f"_stage_{spec.table}"
        if stage not in self._staged:
            # identifiers come from model metadata; temp tables are per connection and not WAL-logged
            cur.execute(
                f"CREATE TEMP TABLE IF NOT EXISTS {stage} ON COMMIT DELETE ROWS AS "  # noqa: S608
                f"SELECT {cols} FROM {spec.table} WITH NO DATA"
            )
            self._staged.add(stage)
        self._copy(cur, stage, spec, rows)
        cur.execute(f"INSERT INTO {spec.table} ({cols}) SELECT {cols} FROM {stage} ON CONFLICT DO NOTHING")  # noqa: S608
        inserted = cur.rowcount
        cur.execute(f"TRUNCATE {stage}")
        return inserted, len(rows) - inserted

    @staticmethod
    def _encode(spec: TableSpec, row: tuple[Any, ...]) -> tuple[Any, ...]:
        if not spec.json_columns:
            return row
        return tuple(json.dumps(v) if c in spec.json_columns else v for c, v in zip(spec.columns, row, strict=True))

    def _copy(self, cur: Any, target: str, spec: TableSpec, rows: list[tuple[Any, ...]]) -> None:
        cols = ", ".join(spec.columns)
        if spec.binary_types is not None:
            with cur.copy(f"COPY {target} ({cols}) FROM STDIN (FORMAT BINARY)") as copy:
                copy.write(BINARY_COPY_HEADER)
                # in slices, so the server parses one while the next is encoded
                for i in range(0, len(rows), _BINARY_SLICE_ROWS):
                    copy.write(spec.encode(rows[i : i + _BINARY_SLICE_ROWS]))
                copy.write(BINARY_COPY_TRAILER)
            return
        encode = self._encode
        with cur.copy(f"COPY {target} ({cols}) FROM STDIN") as copy:
            if spec.json_columns:
                for row in rows:
                    copy.write_row(encode(spec, row))
            else:
                write = copy.write_row
                for row in rows:
                    write(row)

    def _upsert_rows(self, cur: Any, rows: list[tuple[Any, ...]]) -> None:
        spec = self.upsert_spec
        assert spec is not None
        cols = ", ".join(spec.columns)
        placeholders = ", ".join(["%s"] * len(spec.columns))
        updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in spec.columns if c not in self.upsert_conflict)
        # identifiers come from model metadata, values are bound parameters
        sql = (
            f"INSERT INTO {spec.table} ({cols}) VALUES ({placeholders}) "  # noqa: S608
            f"ON CONFLICT ({', '.join(self.upsert_conflict)}) DO UPDATE SET {updates}"
        )
        cur.executemany(sql, [self._encode(spec, r) for r in rows])

    # --- spilling -----------------------------------------------------------------------------

    def _spill_files(self) -> list[Path]:
        if self.spill_dir is None or not self.spill_dir.exists():
            return []
        return sorted(self.spill_dir.glob(f"spill-{self.owner}-*.pickle" if self.owner else "spill-*.pickle"))

    def _spill_overflow(self) -> None:
        if self.spill_dir is not None and self.buffered_rows > self.max_buffer_rows:
            self._spill_all()

    def _spill_all(self) -> None:
        if self.spill_dir is None:
            logger.error("batched writer: %d rows unwritten and no spill_dir", self.buffered_rows)
            return
        self.spill_dir.mkdir(parents=True, exist_ok=True)
        with self._lock:
            payload = {
                "tables": {t: list(b) for t, b in self._buffers.items() if b},
                "upserts": list(self._upserts.values()),
            }
            for b in self._buffers.values():
                b.clear()
            self._upserts.clear()
        n = sum(len(v) for v in payload["tables"].values()) + len(payload["upserts"])
        path = self.spill_dir / (
            f"spill-{self.owner}-{time.time_ns()}.pickle" if self.owner else f"spill-{time.time_ns()}.pickle"
        )
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(pickle.dumps(payload))
        tmp.rename(path)  # atomic: a half-written spill file is never replayed
        self.stats.rows_spilled += n
        logger.warning("batched writer: spilled %d rows to %s", n, path)

    def _replay_spill(self, conn: Any) -> None:
        for path in self._spill_files():
            payload = pickle.loads(path.read_bytes())  # noqa: S301 - our own spill files under var/
            results: dict[str, tuple[int, int]] = {}
            with conn.transaction():
                cur = conn.cursor()
                for table, rows in payload["tables"].items():
                    results[table] = self._write_table(cur, self.specs[table], rows)
                if payload["upserts"]:
                    self._upsert_rows(cur, payload["upserts"])
            path.unlink()
            self._count(results)
            for table, rows in payload["tables"].items():
                self.stats.per_table[table] = self.stats.per_table.get(table, 0) + len(rows)
                self.stats.rows_written += len(rows)
            self.stats.rows_replayed += sum(len(v) for v in payload["tables"].values()) + len(payload["upserts"])


# --- binary COPY encoding -------------------------------------------------------------------------

BINARY_COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + (0).to_bytes(4, "big") + (0).to_bytes(4, "big")
BINARY_COPY_TRAILER = (-1).to_bytes(2, "big", signed=True)
_BINARY_SLICE_ROWS = 5000
_PG_EPOCH_US = 946_684_800_000_000  # 2000-01-01 in µs since the Unix epoch
_FIXED = {  # type -> (struct code, byte length, value expression over {v})
    "int2": ("h", 2, "{v}"),
    "int4": ("i", 4, "{v}"),
    "int8": ("q", 8, "{v}"),
    "float8": ("d", 8, "{v}"),
    "bool": ("?", 1, "{v} if {v}.__class__ is bool else _not_bool({v})"),  # struct's "?" would take None
    # int ns since the Unix epoch -> timestamptz (µs since 2000-01-01, floored like ``ns // 1000``)
    "timestamptz_ns": ("q", 8, "{v} // 1000 - " + str(_PG_EPOCH_US)),
}
_VARIABLE = ("text", "float8[]")
_F8_ELEMENTS = np.dtype([("n", ">i4"), ("v", ">f8")])  # one float8[] element: length 8, then the value
_I4 = struct.Struct(">i")
_EMPTY_F8_ARRAY = struct.pack(">iiii", 12, 0, 0, 701)  # length 12: ndim 0, no nulls, element oid float8
_F8_ARRAY_HEAD = struct.Struct(">iiiiii")  # field length, ndim 1, no nulls, oid 701, n, lower bound 1


def _not_bool(v: Any) -> bool:
    raise TypeError(f"expected bool, got {type(v).__name__}")


def _text_field(v: str) -> bytes:
    b = v.encode()
    return _I4.pack(len(b)) + b


def _f8_array_field(v: Sequence[float]) -> bytes:
    n = len(v)
    if not n:
        return _EMPTY_F8_ARRAY
    a = np.empty(n, _F8_ELEMENTS)
    a["n"] = 8
    a["v"] = v
    return _F8_ARRAY_HEAD.pack(20 + 12 * n, 1, 0, 701, n, 1) + a.tobytes()


def _field_slow(t: str, v: Any) -> bytes:
    """One field, NULL allowed, types checked (the fast encoder's fallback)."""
    if v is None:
        return _I4.pack(-1)
    try:
        if t == "text":
            if not isinstance(v, str):
                raise TypeError(f"expected str, got {type(v).__name__}")
            return _text_field(v)
        if t == "float8[]":
            return _f8_array_field([float(x) for x in v])
        code, size, _expr = _FIXED[t]
        if t == "bool" and not isinstance(v, bool):
            _not_bool(v)
        if t == "timestamptz_ns":
            v = v // 1000 - _PG_EPOCH_US
        return _I4.pack(size) + struct.pack(">" + code, v)
    except (TypeError, ValueError, OverflowError, struct.error) as exc:
        import psycopg

        raise psycopg.DataError(f"binary COPY: {t} value {v!r} cannot be encoded: {exc}") from None


def binary_encoder(types: Sequence[str]) -> Callable[[Sequence[tuple[Any, ...]]], bytes]:
    """A function turning rows into PostgreSQL binary COPY tuples of ``types`` (``int2``, ``int4``, ``int8``,
    ``float8``, ``bool``, ``text``, ``float8[]``, ``timestamptz_ns``: int ns since the Unix epoch).

    The per-row code is generated once: runs of fixed-width columns are one ``struct`` pack each, so a row of
    scalars costs one C call. A row the fast code cannot pack (a NULL, a wrong type) is encoded field by field,
    and a value that cannot be encoded raises ``psycopg.DataError`` (the writer then isolates the row).
    """
    unknown = [t for t in types if t not in _FIXED and t not in _VARIABLE]
    if unknown:
        raise ValueError(f"unknown binary COPY types {unknown}; known: {sorted(_FIXED) + list(_VARIABLE)}")
    names = [f"c{i}" for i in range(len(types))]
    env: dict[str, Any] = {"_text_field": _text_field, "_f8_array_field": _f8_array_field, "_not_bool": _not_bool}
    parts: list[str] = []
    fmt, args = ">h", [str(len(types))]

    def close_run() -> None:
        nonlocal fmt, args
        if len(fmt) > 1:
            env[f"_s{len(parts)}"] = struct.Struct(fmt).pack
            parts.append(f"_s{len(parts)}({', '.join(args)})")
        fmt, args = ">", []

    for name, t in zip(names, types, strict=True):
        if t in _FIXED:
            code, size, expr = _FIXED[t]
            fmt += "i" + code
            args += [str(size), expr.format(v=name)]
        else:
            close_run()
            parts.append(f"_text_field({name})" if t == "text" else f"_f8_array_field({name})")
    close_run()
    src = (
        "def encode(rows):\n"
        "    out = []\n"
        "    ap = out.append\n"
        "    for row in rows:\n"
        "        try:\n"
        f"            {', '.join(names)}, = row\n"
        f"            ap({' + '.join(parts)})\n"
        "        except Exception:\n"
        "            ap(_slow(row))\n"
        "    return b''.join(out)\n"
    )
    types = tuple(types)

    def slow(row: tuple[Any, ...]) -> bytes:
        if len(row) != len(types):
            import psycopg

            raise psycopg.DataError(f"binary COPY: row has {len(row)} values, expected {len(types)}")
        return struct.pack(">h", len(types)) + b"".join(_field_slow(t, v) for t, v in zip(types, row, strict=True))

    env["_slow"] = slow
    exec(src, env)  # noqa: S102 - source built above from constant pieces
    return env["encode"]


def _is_data_error(exc: Exception) -> bool:
    """The database refused the rows themselves (bad value, constraint), as opposed to being unreachable."""
    import psycopg

    return isinstance(exc, (psycopg.errors.DataError, psycopg.errors.IntegrityError)) and not isinstance(
        exc, psycopg.errors.OperationalError
    )
