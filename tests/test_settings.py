from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from mmweb.env import ConfigError, celery_broker_url, check_redis_url, env_bool, env_int, parse_database_url

BASE_DIR = Path(__file__).resolve().parent.parent


def test_database_urls_parse_for_tcp_and_unix_sockets():
    tcp = parse_database_url("postgresql://mm:s%40cret@db.local:5433/trading?sslmode=require")
    assert (tcp["HOST"], tcp["PORT"], tcp["NAME"], tcp["USER"], tcp["PASSWORD"]) == (
        "db.local",
        "5433",
        "trading",
        "mm",
        "s@cret",
    )
    assert tcp["OPTIONS"] == {"sslmode": "require"}
    sock = parse_database_url("postgresql://postgres@/mm?host=/work/var/pgdata")
    assert sock["HOST"] == "/work/var/pgdata" and sock["NAME"] == "mm"


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("mysql://u@h/db", "scheme must be postgres"),
        ("postgresql://u@h:5432/", "no database name"),
        ("postgresql://u@h:99999/db", "port"),
    ],
)
def test_bad_database_urls_say_what_is_wrong(url, fragment):
    with pytest.raises(ConfigError, match=fragment) as exc:
        parse_database_url(url)
    assert "DATABASE_URL" in str(exc.value)


def test_redis_urls_are_checked_and_unix_sockets_translated_for_celery():
    assert check_redis_url("redis://127.0.0.1:6379/0")
    with pytest.raises(ConfigError, match="REDIS_URL"):
        check_redis_url("http://127.0.0.1:6379")
    with pytest.raises(ConfigError, match="socket path"):
        check_redis_url("unix://")
    assert celery_broker_url("unix:///v/redis.sock") == "redis+socket:///v/redis.sock"
    assert celery_broker_url("redis://h:1/2") == "redis://h:1/2"


def test_booleans_and_integers_from_the_environment(monkeypatch):
    monkeypatch.setenv("X_FLAG", "yes")
    assert env_bool("X_FLAG", False) is True
    monkeypatch.setenv("X_FLAG", "maybe")
    with pytest.raises(ConfigError, match="X_FLAG='maybe' is not a boolean"):
        env_bool("X_FLAG", False)
    monkeypatch.setenv("X_N", "12x")
    with pytest.raises(ConfigError, match="X_N='12x' is not an integer"):
        env_int("X_N", 1)
    monkeypatch.setenv("X_N", "3")
    with pytest.raises(ConfigError, match="below the minimum 10"):
        env_int("X_N", 50, minimum=10)


@pytest.mark.parametrize(
    ("var", "value", "fragment"),
    [
        ("DATABASE_URL", "sqlite:///x.db", "DATABASE_URL='sqlite:///x.db': scheme must be"),
        ("DEBUG", "perhaps", "DEBUG='perhaps' is not a boolean"),
        ("SECRET_KEY", "short", "SECRET_KEY is shorter than 32"),
        ("MM_LOOP_INTERVAL_MS", "0", "MM_LOOP_INTERVAL_MS=0 is below the minimum"),
    ],
)
def test_starting_with_a_bad_setting_fails_with_a_clear_message(var, value, fragment):
    res = setup_with(var, value)
    assert res.returncode != 0
    assert fragment in res.stderr


def setup_with(var: str, value: str) -> subprocess.CompletedProcess:
    """``django.setup()`` in a fresh interpreter with one environment variable set (settings are read at import)."""
    env = {**os.environ, var: value, "DJANGO_SETTINGS_MODULE": "mmweb.settings"}
    return subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.django_db
def test_the_configured_database_is_postgresql():
    from django.db import connection

    assert connection.vendor == "postgresql"
    with connection.cursor() as cur:
        cur.execute("select version()")
        assert "PostgreSQL" in cur.fetchone()[0]
