"""A newcomer's first commands on a fresh checkout: an empty ``var/`` (no database yet, nothing migrated).

Every project management command answers ``--help``; ``estimate``, ``backtest`` and ``import_marketdata`` run for
real on an unmigrated embedded database (migrating it first, and saying so); on a database the project does not
own (``DATABASE_URL``) an unmigrated schema stops the command with the exact command to run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import psycopg
import pytest

from mmweb import embedded
from tests.conftest import BASE_DIR, shared_data

HL_FILE = ("hftbacktest-hyperliquid-btc-20250126-tiny", "raw", "hyperliquid_btc_20250126.gz")
MIGRATING = "unapplied migration(s): migrating it first"

_HELP_ALL = """
import sys
from django.core.management import ManagementUtility
for name in sys.argv[1:]:
    try:
        ManagementUtility(["manage.py", name, "--help"]).execute()
    except SystemExit as exc:
        if exc.code not in (0, None):
            print(f"HELP FAILED {name} {exc.code}")
    print(f"HELP OK {name}")
"""


def project_commands() -> list[str]:
    return sorted(p.stem for p in BASE_DIR.glob("apps/*/management/commands/*.py") if not p.name.startswith("_"))


@pytest.fixture(scope="module")
def fresh_var(tmp_path_factory):
    """One empty ``var/`` for the module (one initdb); each test that needs a fresh database drops it first."""
    var = tmp_path_factory.mktemp("fresh") / "var"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MM_VAR_DIR", str(var))
        yield var
        embedded.stop_postgres()
        embedded.stop_redis()


def _env(var, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "DJANGO_SETTINGS_MODULE")}
    env.update(MM_VAR_DIR=str(var), PYTHONUNBUFFERED="1", **extra)
    return env


def _manage(var, *args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=BASE_DIR,
        env=_env(var, **env),
        capture_output=True,
        text=True,
        timeout=180,
    )


def _drop_database(name: str = embedded.PG_DBNAME) -> None:
    """Back to an empty database on the same server (the next command recreates it): fresh, without a new initdb."""
    admin = embedded.ensure_postgres().replace(f"/{embedded.PG_DBNAME}?", "/postgres?")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_every_project_command_answers_help_on_a_fresh_checkout(fresh_var):
    names = project_commands()
    assert {"backtest", "estimate", "import_marketdata", "export_marketdata", "start_paper_session"} <= set(names)
    proc = subprocess.run(
        [sys.executable, "-c", _HELP_ALL, *names],
        cwd=BASE_DIR,
        env=_env(fresh_var, DJANGO_SETTINGS_MODULE="mmweb.settings"),
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    for name in names:
        assert f"HELP OK {name}" in proc.stdout and f"HELP FAILED {name}" not in proc.stdout, proc.stdout[-3000:]
        assert f"manage.py {name}" in proc.stdout  # its usage line


def test_estimate_backtest_and_import_run_on_an_unmigrated_database(fresh_var):
    data = str(shared_data(*HL_FILE))
    _drop_database()

    est = _manage(fresh_var, "estimate", data, "--format", "hyperliquid", "--json")
    assert est.returncode == 0, est.stderr[-3000:]
    assert json.loads(est.stdout)["tick_size"] == 1.0  # the known instrument's tick

    bt = _manage(fresh_var, "backtest", "--data", data, "--format", "hyperliquid")
    assert bt.returncode == 0, bt.stderr[-3000:]
    assert MIGRATING in bt.stdout and "data: hyperliquid:BTC" in bt.stdout and "P&L total (USD)" in bt.stdout

    _drop_database()
    imp = _manage(fresh_var, "import_marketdata", data, "--format", "hyperliquid")
    assert imp.returncode == 0, imp.stderr[-3000:]
    assert MIGRATING in imp.stdout
    again = _manage(fresh_var, "import_marketdata", data, "--format", "hyperliquid")
    assert again.returncode == 0 and MIGRATING not in again.stdout  # migrated once, not every time


def test_on_a_database_the_project_does_not_own_an_unmigrated_schema_stops_with_the_command_to_run(fresh_var):
    admin = embedded.ensure_postgres().replace(f"/{embedded.PG_DBNAME}?", "/postgres?")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute('DROP DATABASE IF EXISTS "theirs"')
        conn.execute('CREATE DATABASE "theirs"')
    url = admin.replace("/postgres?", "/theirs?")
    proc = _manage(
        fresh_var, "import_marketdata", str(shared_data(*HL_FILE)), "--format", "hyperliquid", DATABASE_URL=url
    )
    assert proc.returncode == 1
    assert "unapplied migration(s)" in proc.stderr and "run `python manage.py migrate` first" in proc.stderr
    with psycopg.connect(url) as conn:  # nothing was created behind the owner's back
        assert conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").fetchone() == (0,)
