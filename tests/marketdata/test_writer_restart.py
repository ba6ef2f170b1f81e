"""The batched writer loses nothing across a PostgreSQL restart in the middle of a stream of rows: rows are kept
and retried while the server is down, spilled to disk when the buffer passes its bound, and replayed after.
Uses its own embedded PostgreSQL (a separate MM_VAR_DIR), so the test database's server is never touched."""

from __future__ import annotations

import threading
import time

import psycopg
import pytest

from apps.marketdata.writer import BatchedWriter, TableSpec
from mmweb import embedded

SPEC = TableSpec("ticks", ("seq", "payload"))
KEYED = TableSpec("keyed", ("k", "v"))


@pytest.fixture
def own_pg(tmp_path, monkeypatch):
    monkeypatch.setenv("MM_VAR_DIR", str(tmp_path / "var"))
    url = embedded.ensure_postgres()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE ticks (seq bigint NOT NULL, payload text)")
        conn.execute("CREATE TABLE keyed (k bigint UNIQUE, v text)")
    yield url
    embedded.stop_postgres()


def _count(url: str, table: str) -> tuple[int, int]:
    with psycopg.connect(url) as conn:
        return conn.execute(f"SELECT count(*), count(DISTINCT seq) FROM {table}").fetchone()


def test_writer_loses_no_row_across_a_postgresql_restart(own_pg, tmp_path):
    url = own_pg
    writer = BatchedWriter(
        [SPEC],
        flush_interval_s=0.05,
        max_batch_rows=500,
        max_buffer_rows=3000,  # small, so the outage forces a spill to disk
        spill_dir=tmp_path / "spill",
        connect=lambda: psycopg.connect(url, autocommit=True, connect_timeout=2),
    )
    writer.start()
    produced = 0
    stop = threading.Event()

    def produce() -> None:
        nonlocal produced
        while not stop.is_set():
            for _ in range(200):
                writer.add("ticks", (produced, f"row {produced}"))
                produced += 1
            time.sleep(0.01)

    t = threading.Thread(target=produce)
    t.start()
    time.sleep(0.5)
    assert embedded.stop_postgres() is True  # the server goes away mid-stream
    time.sleep(1.5)
    assert writer.stats.failures > 0 and writer.stats.rows_spilled > 0
    embedded.ensure_postgres()  # and comes back with the same data directory
    time.sleep(0.5)
    stop.set()
    t.join()
    writer.close()
    assert writer.buffered_rows == 0
    assert writer.stats.rows_replayed == writer.stats.rows_spilled
    assert _count(url, "ticks") == (produced, produced)  # every row, none twice
    assert not list((tmp_path / "spill").glob("spill-*"))


def test_writer_skips_already_stored_rows_instead_of_failing_the_batch(own_pg, tmp_path):
    url = own_pg
    writer = BatchedWriter(
        [KEYED], flush_interval_s=0.05, connect=lambda: psycopg.connect(url, autocommit=True, connect_timeout=2)
    )
    for k in range(10):
        writer.add("keyed", (k, "a"))
    assert writer.flush()
    for k in range(5, 15):
        writer.add("keyed", (k, "b"))
    assert writer.flush()  # a plain COPY would fail on k=5..9 and retry forever
    assert writer.stats.inserted == {"keyed": 15} and writer.stats.duplicates == {"keyed": 5}
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT count(*) FROM keyed").fetchone() == (15,)
