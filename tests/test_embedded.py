"""The embedded servers start, are reused, keep their data across restarts and stop cleanly."""

from __future__ import annotations

import os

import psycopg
import pytest
import redis

from mmweb import embedded


@pytest.fixture
def own_var(tmp_path, monkeypatch):
    monkeypatch.setenv("MM_VAR_DIR", str(tmp_path / "var"))
    yield tmp_path / "var"
    embedded.stop_postgres()
    embedded.stop_redis()


def _pg_pid(var) -> int:
    return int((var / "pgdata" / "postmaster.pid").read_text().splitlines()[0])


def test_embedded_postgresql_starts_is_reused_and_keeps_data_across_a_restart(own_var):
    url = embedded.ensure_postgres()
    assert url.startswith("postgresql://") and str(own_var) in url
    pid = _pg_pid(own_var)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE kept (x int)")
        conn.execute("INSERT INTO kept VALUES (42)")
    assert embedded.ensure_postgres() == url and _pg_pid(own_var) == pid  # reused, not restarted
    assert embedded.stop_postgres() is True
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert embedded.status()["postgres"] is None
    url2 = embedded.ensure_postgres()
    with psycopg.connect(url2) as conn:
        assert conn.execute("SELECT x FROM kept").fetchone() == (42,)
    assert _pg_pid(own_var) != pid


def test_embedded_postgresql_listens_on_no_tcp_port(own_var):
    url = embedded.ensure_postgres()
    with psycopg.connect(url) as conn:
        assert conn.execute("SHOW listen_addresses").fetchone() == ("",)


def test_embedded_redis_starts_is_reused_and_stops(own_var):
    url = embedded.ensure_redis()
    assert url.startswith("unix://")
    client = redis.Redis.from_url(url)
    client.set("k", "v")
    pid = int((own_var / "redis" / "redis.pid").read_text())
    assert embedded.ensure_redis() == url
    assert int((own_var / "redis" / "redis.pid").read_text()) == pid
    assert client.config_get("port")["port"] == "0"  # no TCP listener
    assert embedded.stop_redis() is True
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert embedded.stop_redis() is False  # idempotent


def test_stopping_when_nothing_runs_is_harmless(own_var):
    assert embedded.stop_postgres() is False
    assert embedded.stop_redis() is False
