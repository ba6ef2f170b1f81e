"""Shared fixtures: the real stack (daphne, Celery worker) as subprocesses against the test database."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

BASE_DIR = Path(__file__).resolve().parent.parent
SHARED = BASE_DIR.parent / "shared"


def shared_data(*parts: str) -> Path:
    path = SHARED.joinpath("data", *parts)
    if not path.exists():
        pytest.skip(f"shared data not present: {path} (a user's clone has no ../shared)")
    return path


def wait_until(cond, seconds: float, poll_s: float = 0.05) -> bool:
    """Poll ``cond`` until it holds or ``seconds`` pass; the final answer is ``cond()`` itself."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(poll_s)
    return cond()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def database_url_for_test_db() -> str:
    from django.db import connection

    sd = connection.settings_dict
    host = sd["HOST"]
    user = sd["USER"] or "postgres"
    auth = f"{user}:{sd['PASSWORD']}@" if sd["PASSWORD"] else f"{user}@"
    if host.startswith("/"):
        return f"postgresql://{auth}/{sd['NAME']}?host={host}"
    port = f":{sd['PORT']}" if sd["PORT"] else ""
    return f"postgresql://{auth}{host or '127.0.0.1'}{port}/{sd['NAME']}"


def stack_env(**extra: str) -> dict[str, str]:
    from django.conf import settings

    if settings.EMBEDDED_REDIS:  # the subprocesses get REDIS_URL set, so they would not start it themselves
        from mmweb import embedded

        embedded.ensure_redis_once()

    env = dict(os.environ)
    env.update(
        DATABASE_URL=database_url_for_test_db(),
        REDIS_URL=settings.REDIS_URL,
        DJANGO_SETTINGS_MODULE="mmweb.settings",
        MM_LOOP_INTERVAL_MS="50",
        MM_PUBLISH_INTERVAL_MS="200",
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


@dataclass
class Stack:
    url: str
    procs: dict[str, subprocess.Popen]
    logs: Path

    def log(self, name: str) -> str:
        return (self.logs / f"{name}.log").read_text(errors="replace")


def _wait_port(port: int, proc: subprocess.Popen, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening on {port}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listening on {port} after {timeout_s}s")


def _wait_worker_ready(log: Path, proc: subprocess.Popen, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"celery worker exited with {proc.returncode}:\n{log.read_text(errors='replace')}")
        if log.exists() and "ready." in log.read_text(errors="replace"):
            return
        time.sleep(0.1)
    raise RuntimeError(f"celery worker not ready after {timeout_s}s:\n{log.read_text(errors='replace')}")


def _stop(procs: dict[str, subprocess.Popen]) -> None:
    for p in procs.values():
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGTERM)
    for p in procs.values():
        try:
            p.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()


def start_worker(
    env: dict[str, str], logs: Path, name: str = "worker", queues: str = "quoting,periodic", concurrency: int = 3
) -> subprocess.Popen:
    log = logs / f"{name}.log"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "mmweb",
            "worker",
            "-Q",
            queues,
            "-c",
            str(concurrency),
            "--prefetch-multiplier=1",
            "-n",
            f"{name}-{os.getpid()}@%h",
            "-l",
            "INFO",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
        ],
        cwd=BASE_DIR,
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    _wait_worker_ready(log, proc)
    return proc


@pytest.fixture(scope="session")
def django_db_modify_db_settings(django_db_modify_db_settings_parallel_suffix) -> None:
    """A test database per pytest process: two runs on one server (a developer's and a helper's) must not drop
    each other's database."""
    from django.conf import settings

    for db in settings.DATABASES.values():
        test = db.setdefault("TEST", {})
        test["NAME"] = f"{test.get('NAME') or 'test_' + db['NAME']}_{os.getpid()}"


@pytest.fixture
def purge_queues() -> None:
    from mmweb.celery import app

    app.control.purge()  # only our queues' pending messages; nothing else on the server is touched


@pytest.fixture
def live_stack(transactional_db, tmp_path: Path, purge_queues) -> Iterator[Stack]:
    """daphne on a free port plus one Celery worker serving both queues, on the test database."""
    env = stack_env()
    port = free_port()
    logs = tmp_path / "logs"
    logs.mkdir()
    procs: dict[str, subprocess.Popen] = {}
    try:
        procs["worker"] = start_worker(env, logs)
        procs["daphne"] = subprocess.Popen(
            [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "mmweb.asgi:application"],
            cwd=BASE_DIR,
            env=env,
            stdout=(logs / "daphne.log").open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        _wait_port(port, procs["daphne"])
        yield Stack(url=f"http://127.0.0.1:{port}", procs=procs, logs=logs)
    finally:
        _stop(procs)


@pytest.fixture
def operator(django_user_model):
    return django_user_model.objects.create_user("op", password="op-password-123", is_staff=True, is_superuser=True)
