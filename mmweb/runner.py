"""`make run`: bring the whole platform up on this machine and take it down cleanly.

1. DATABASE_URL / REDIS_URL unset → start (or reuse) the embedded PostgreSQL and Redis under ./var/.
2. migrate; create the operator account (printed).
3. start daphne (127.0.0.1:8000), a Celery worker for the quoting queue, one for periodic jobs, and beat.
4. start one paper-trading session on the built-in simulator; print the URL and the login.
On Ctrl-C / SIGTERM: stop every session (each loop cancels all its open orders), wait until no order is open,
then stop every process this runner started, then the embedded servers it started.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from mmweb import embedded

BASE_DIR = Path(__file__).resolve().parent.parent
PY = sys.executable
HOST = os.environ.get("MM_HOST", "127.0.0.1")
PORT = os.environ.get("MM_PORT", "8000")


def _log(msg: str) -> None:
    print(f"[make run] {msg}", flush=True)


def _manage(*args: str, env: dict[str, str], capture: bool = False) -> str:
    res = subprocess.run(
        [PY, "manage.py", *args],
        cwd=BASE_DIR,
        env=env,
        check=True,
        text=True,
        stdout=subprocess.PIPE if capture else None,
    )
    return res.stdout or ""


def _wait_http(url: str, timeout_s: float) -> bool:
    import urllib.request

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1) as r:  # noqa: S310 - our own 127.0.0.1 server
                if r.status < 500:
                    return True
        except Exception:  # noqa: BLE001 - not up yet
            time.sleep(0.2)
    return False


def main() -> int:
    env = dict(os.environ)
    started_pg = started_redis = False
    if not env.get("DATABASE_URL"):
        env["DATABASE_URL"] = embedded.ensure_postgres()
        started_pg = True
        _log(f"embedded PostgreSQL: {env['DATABASE_URL']}")
    if not env.get("REDIS_URL"):
        env["REDIS_URL"] = embedded.ensure_redis()
        started_redis = True
        _log(f"embedded Redis: {env['REDIS_URL']}")
    env.setdefault("DJANGO_SETTINGS_MODULE", "mmweb.settings")

    _manage("migrate", "--noinput", "-v", "0", env=env)
    login = _manage("ensure_operator", env=env, capture=True).strip()

    logs = embedded.var_dir() / "logs"
    logs.mkdir(exist_ok=True)
    specs = {
        "daphne": [PY, "-m", "daphne", "-b", HOST, "-p", PORT, "mmweb.asgi:application"],
        "worker-quoting": [
            PY,
            "-m",
            "celery",
            "-A",
            "mmweb",
            "worker",
            "-Q",
            "quoting",
            "-c",
            "2",
            "--prefetch-multiplier=1",
            "-n",
            "quoting@%h",
            "-l",
            "INFO",
        ],
        "worker-periodic": [
            PY,
            "-m",
            "celery",
            "-A",
            "mmweb",
            "worker",
            "-Q",
            "periodic",
            "-c",
            "1",
            "-n",
            "periodic@%h",
            "-l",
            "INFO",
        ],
        "beat": [
            PY,
            "-m",
            "celery",
            "-A",
            "mmweb",
            "beat",
            "-l",
            "INFO",
            "-s",
            str(embedded.var_dir() / "celerybeat-schedule"),
        ],
    }
    procs: dict[str, subprocess.Popen] = {}
    stopping = False

    def _on_signal(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    try:
        for name, cmd in specs.items():
            out = open(logs / f"{name}.log", "ab")  # noqa: SIM115 - kept open for the child's lifetime
            procs[name] = subprocess.Popen(
                cmd, cwd=BASE_DIR, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        url = f"http://{HOST}:{PORT}/"
        if not _wait_http(url + "login/", 60):
            _log(f"daphne did not answer on {url}; see {logs / 'daphne.log'}")
            return 1
        session_id = _manage("start_paper_session", "--name", "paper-sim", "--seed", "1", env=env, capture=True).strip()
        _log(f"paper session #{session_id} started on the market simulator")
        _log(f"dashboard: {url}sessions/{session_id}/")
        _log(login)
        _log(f"logs: {logs}/  —  Ctrl-C stops everything (orders are cancelled first)")
        while not stopping:
            for name, p in procs.items():
                if p.poll() is not None:
                    _log(f"{name} exited with {p.returncode}; see {logs / (name + '.log')}; shutting down")
                    stopping = True
                    break
            time.sleep(0.5)
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        _log("stopping sessions and cancelling open orders ...")
        try:
            _log(_manage("stop_all_sessions", "--reason", "make run shutdown", env=env, capture=True).strip())
        except subprocess.CalledProcessError as exc:
            _log(f"stop_all_sessions failed ({exc}); the dead-man's switch will cancel on next start")
        for _name, p in procs.items():
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        for name, p in procs.items():
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _log(f"{name} did not stop; killing it")
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
        if started_pg:
            embedded.stop_postgres()
        if started_redis:
            embedded.stop_redis()
        _log("all processes stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
