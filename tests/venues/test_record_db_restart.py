"""``manage.py record`` survives its database going away: the command runs as its own process against the local
Binance server, on a PostgreSQL of this test's own (``mmweb.embedded`` under a temporary ``MM_VAR_DIR``, so the
shared test database is not disturbed), which the test stops in the middle of the replay and starts again. What the
batched writer could not write meanwhile it keeps (past its memory bound: spills to disk, replayed when the
database answers) and writes when the database is back; at the end the
stored rows are exactly the replayed slice's messages, no row lost, none twice."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import psycopg
import pytest

from mmweb import embedded
from tests.conftest import BASE_DIR, shared_data
from tests.venues.binance_server import BinanceReplayServer, load_recording


@pytest.fixture
def own_postgres(tmp_path, monkeypatch):
    """A PostgreSQL of our own under tmp_path/var (stopped at the end)."""
    var = tmp_path / "var"
    monkeypatch.setenv("MM_VAR_DIR", str(var))
    url = embedded.ensure_postgres()
    yield var, url
    embedded.stop_postgres()


class Lines:
    """The subprocess's stdout, line by line, collected on a thread (so the test can wait for a line)."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.lines: list[str] = []
        self._t = threading.Thread(target=self._read, args=(proc,), daemon=True)
        self._t.start()

    def _read(self, proc: subprocess.Popen) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, pred, seconds: float) -> str:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            for line in list(self.lines):
                if pred(line):
                    return line
            time.sleep(0.05)
        pytest.fail(f"no such line within {seconds} s; output so far: {self.lines[-20:]}")


def _count(url: str, sql: str, *args: object) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute(sql, args).fetchone()[0]


def test_record_survives_a_database_restart_and_stores_exactly_the_replayed_messages(own_postgres, tmp_path):
    from apps.marketdata.models import DepthSnapshotRecord, DepthUpdateRecord, Instrument, QuoteTick, TradeTick

    var, url = own_postgres
    path = shared_data("hftbacktest-binance-usdm-btcusdt-20240808", "raw", "usdm_btcusdt_20240808.gz")
    rec = load_recording(Path(path), 4000)  # ~14 s of the recording, replayed at 2x: ~7 s
    srv = BinanceReplayServer([rec], speed=2.0).start()
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "MM_SPILL_DIR")}
    env |= {
        "MM_VAR_DIR": str(var),  # settings start (or reuse) the embedded PostgreSQL under it: ours
        "MM_BINANCE_WS_URL": srv.base_ws,
        "MM_BINANCE_REST_URL": srv.base_http,
        "PYTHONUNBUFFERED": "1",
    }
    cmd = [sys.executable, "manage.py", "record", "--venue", "binance-usdm", "--symbols", "BTCUSDT", "--seconds", "16"]
    cmd += ["--max-buffer-rows", "500"]  # a small memory bound: the outage spills rows to disk
    proc = subprocess.Popen(cmd, cwd=BASE_DIR, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        out = Lines(proc)
        out.wait_for(lambda line: " live " in line and " written " in line, 90)  # migrated, synced, writing
        time.sleep(1.0)
        assert embedded.stop_postgres() is True  # mid-replay: the writer's flushes fail, it keeps (or spills) rows
        out.wait_for(lambda line: "flush failed" in line, 15)
        time.sleep(2.0)
        assert embedded.ensure_postgres() == url  # the same server again (same data directory and socket)
        assert proc.wait(timeout=90) == 0, out.lines[-30:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        srv.stop()
    assert srv.done.is_set(), "the whole slice was replayed while the recorder listened"
    last = out.wait_for(lambda line: line.startswith("recorded trades="), 5)
    counts = rec.counts()
    assert f"trades={counts['trade']} " in last and f"quotes={counts['bookTicker']} " in last, (last, counts)

    iid = _count(
        url, f"SELECT id FROM {Instrument._meta.db_table} WHERE venue = %s AND symbol = %s", "binance-usdm", "BTCUSDT"
    )
    for model, kind in ((TradeTick, "trade"), (QuoteTick, "bookTicker"), (DepthUpdateRecord, "depth")):
        n = _count(url, f"SELECT count(*) FROM {model._meta.db_table} WHERE instrument_id = %s", iid)
        assert n == counts[kind], f"{model.__name__}: {n} stored, {counts[kind]} replayed"
    assert _count(url, f"SELECT count(*) FROM {DepthSnapshotRecord._meta.db_table} WHERE instrument_id = %s", iid) == 1
    spilled = [line for line in out.lines if line.startswith("[") and not line.rstrip().endswith("spilled 0")]
    assert spilled, "the outage made the writer spill to disk (else this test tested less than it says)"
    assert not list((var / "spill" / "marketdata-record").glob("*.pickle")), "every spill file was replayed"
