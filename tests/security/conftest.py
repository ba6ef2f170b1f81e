"""Fixtures for the security probes: a user of each role (none, viewer, operator, admin), a session to aim at,
and a bare daphne started with the default settings (no ALLOWED_HOSTS / CSRF_TRUSTED_ORIGINS from the
environment)."""

from __future__ import annotations

import base64
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import BASE_DIR, _stop, _wait_port, free_port, stack_env

# Variables that would change the settings under test; the bare server runs with their defaults.
_SETTINGS_VARS = ("ALLOWED_HOSTS", "CSRF_TRUSTED_ORIGINS", "DEBUG", "MM_SECURE", "MM_BEHIND_PROXY")


@pytest.fixture
def norole(django_user_model):
    """Logged in, in no role group: may read nothing and do nothing."""
    from tests.roles import make_user

    return make_user("none", "norole")


@pytest.fixture
def viewer(django_user_model):
    """A viewer: may read, may not act."""
    from tests.roles import make_user

    return make_user("viewer", "viewer")


@pytest.fixture
def staff(django_user_model):
    """An operator (may act on sessions; may not re-arm)."""
    from tests.roles import make_user

    return make_user("operator", "staff-op")


@pytest.fixture
def admin_user(django_user_model):
    """An admin (not a superuser): may also re-arm and edit parameters."""
    from tests.roles import make_user

    return make_user("admin", "admin-user")


@pytest.fixture
def session(db):
    from apps.control.services import Actor, create_paper_session

    return create_paper_session(Actor(label="test"), name="probe", seed=7, start=False)


def cookie_for(user) -> str:
    from django.test import Client

    client = Client()
    client.force_login(user)
    return f"sessionid={client.cookies['sessionid'].value}"


@dataclass
class Daphne:
    port: int
    logs: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return (self.logs / "daphne.log").read_text(errors="replace")

    def ws_handshake(
        self, path: str, *, origin: str | None = None, cookie: str | None = None, host: str | None = None
    ) -> int:
        """Open a WebSocket handshake by hand and return the HTTP status daphne answers (101 = accepted)."""
        lines = [
            f"GET {path} HTTP/1.1",
            f"Host: {host or f'127.0.0.1:{self.port}'}",
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Key: {base64.b64encode(os.urandom(16)).decode()}",
            "Sec-WebSocket-Version: 13",
        ]
        if origin:
            lines.append(f"Origin: {origin}")
        if cookie:
            lines.append(f"Cookie: {cookie}")
        with socket.create_connection(("127.0.0.1", self.port), timeout=15) as s:
            s.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
        return int(data.split(b" ", 2)[1])

    def request(self, path: str, *, host: str | None = None, cookie: str | None = None) -> tuple[int, dict, bytes]:
        """A plain HTTP/1.1 GET with exactly the headers given (urllib would send its own Host)."""
        lines = [f"GET {path} HTTP/1.1", f"Host: {host or f'127.0.0.1:{self.port}'}", "Connection: close"]
        if cookie:
            lines.append(f"Cookie: {cookie}")
        with socket.create_connection(("127.0.0.1", self.port), timeout=15) as s:
            s.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
            data = b""
            while chunk := s.recv(65536):
                data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin1").split("\r\n")
        headers = {k.strip().lower(): v.strip() for k, v in (h.split(":", 1) for h in header_lines)}
        return int(status_line.split(" ", 2)[1]), headers, body


@pytest.fixture
def bare_daphne(transactional_db, tmp_path: Path) -> Iterator[Daphne]:
    """daphne alone (no worker) on a free port, on the test database, with the default security settings."""
    env = stack_env()
    for var in _SETTINGS_VARS:
        env.pop(var, None)
    port = free_port()
    logs = tmp_path / "logs"
    logs.mkdir()
    procs: dict[str, subprocess.Popen] = {}
    try:
        procs["daphne"] = subprocess.Popen(
            [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "mmweb.asgi:application"],
            cwd=BASE_DIR,
            env=env,
            stdout=(logs / "daphne.log").open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        _wait_port(port, procs["daphne"])
        yield Daphne(port=port, logs=logs)
    finally:
        _stop(procs)
