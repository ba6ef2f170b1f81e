"""An import loses nothing across a PostgreSQL restart in its middle: ``import_marketdata`` runs as its own process
(parser and sidecar, each with a writer) against a private embedded PostgreSQL, which the test stops as soon as
the first rows are stored and starts again 1.5 s later. Every row of the two real spot files is then stored
once, and the command ends normally with its summary."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import psycopg
import pytest

from mmweb import embedded
from tests.conftest import BASE_DIR, shared_data

SPOT = ("hftbacktest-binance-spot-btcusdt-20240808", "raw")


@pytest.fixture
def private_stack(tmp_path, monkeypatch):
    """A MM_VAR_DIR of its own: the command started with it (and no DATABASE_URL/REDIS_URL) uses the embedded
    servers there, which this test may stop without touching the test database's server."""
    monkeypatch.setenv("MM_VAR_DIR", str(tmp_path / "var"))
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env["MM_VAR_DIR"] = str(tmp_path / "var")
    env.pop("DJANGO_SETTINGS_MODULE", None)
    url = embedded.ensure_postgres()
    yield url, env
    embedded.stop_postgres()
    embedded.stop_redis()


def _manage(env, *args, **kwargs):
    return subprocess.Popen(
        [sys.executable, str(BASE_DIR / "manage.py"), *args],
        cwd=BASE_DIR,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        **kwargs,
    )


def _counts(url: str) -> dict[str, tuple[int, int]] | None:
    """(rows, distinct natural keys) per tick table, or None while the server is away."""
    queries = {
        "trades": "SELECT count(*), count(DISTINCT trade_id) FROM marketdata_tradetick",
        "quotes": "SELECT count(*), count(DISTINCT (dedupe_key, ts)) FROM marketdata_quotetick",
        "depth_updates": "SELECT count(*), count(DISTINCT (dedupe_key, ts)) FROM marketdata_depthupdaterecord",
        "depth_snapshots": "SELECT count(*), count(DISTINCT (dedupe_key, ts)) FROM marketdata_depthsnapshotrecord",
    }
    try:
        with psycopg.connect(url, connect_timeout=2) as conn:
            return {k: conn.execute(q).fetchone() for k, q in queries.items()}
    except psycopg.OperationalError:
        return None


def test_an_import_loses_nothing_across_a_postgresql_restart_in_its_middle(private_stack):
    url, env = private_stack
    root = shared_data(*SPOT)
    migrate = _manage(env, "migrate", "--verbosity", "0")
    out, _ = migrate.communicate(timeout=300)
    assert migrate.returncode == 0, out

    files = [str(root / "spot_btcusdt_20240808.gz"), str(root / "spot_btcusdt_20240809.gz")]
    args = ["--format", "binance-raw", "--venue", "binance", "--symbol", "BTCUSDT"]
    proc = _manage(env, "import_marketdata", *files, *args, "--tick-size", "0.01", "--lot-size", "0.00001")
    deadline = time.monotonic() + 120
    while True:  # stop the server as soon as the import has stored something
        counts = _counts(url)
        if counts and counts["quotes"][0] > 0:
            break
        assert proc.poll() is None, proc.communicate()[0]
        assert time.monotonic() < deadline, "the import stored nothing in 120 s"
        time.sleep(0.02)
    assert embedded.stop_postgres() is True
    stopped_at = counts
    time.sleep(1.5)
    embedded.ensure_postgres()
    out, _ = proc.communicate(timeout=300)

    assert proc.returncode == 0, out
    assert stopped_at["quotes"][0] < 73_174  # the restart did happen in the middle
    expected = {"trades": 19_904, "quotes": 73_174, "depth_snapshots": 1}
    final = _counts(url)
    for table, n in expected.items():
        assert final[table] == (n, n), (table, final[table], out)
    assert final["depth_updates"][0] == final["depth_updates"][1] > 1_000
    assert "ERROR" not in out and "quarantined 0" in out
