"""docker-compose.yml cannot be run here (no Docker engine), so it is checked against the real entry points."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
import yaml
from django.conf import settings

BASE_DIR = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((BASE_DIR / "docker-compose.yml").read_text())


def test_it_has_every_service_the_platform_needs(compose):
    assert set(compose["services"]) >= {"db", "redis", "migrate", "web", "worker-quoting", "worker-periodic", "beat"}
    assert compose["services"]["db"]["image"].startswith("timescale/timescaledb:")
    assert compose["services"]["redis"]["image"].startswith("redis:")


def test_long_running_services_have_health_checks(compose):
    for name in ("db", "redis", "web", "worker-quoting", "worker-periodic"):
        hc = compose["services"][name].get("healthcheck")
        assert hc and hc["test"], f"{name} has no health check"


def test_web_runs_daphne_on_the_real_asgi_application(compose):
    cmd = compose["services"]["web"]["command"]
    assert cmd[:3] == ["python", "-m", "daphne"]
    module, attr = cmd[-1].split(":")
    assert module == settings.ASGI_APPLICATION.rsplit(".", 1)[0] and attr == "application"
    assert hasattr(importlib.import_module(module), attr)


def test_workers_serve_the_queues_the_tasks_are_routed_to(compose):
    routed = {r["queue"] for r in settings.CELERY_TASK_ROUTES.values()}
    served = set()
    for name in ("worker-quoting", "worker-periodic"):
        cmd = compose["services"][name]["command"]
        assert cmd[:5] == ["python", "-m", "celery", "-A", "mmweb"] and "worker" in cmd
        served.update(cmd[cmd.index("-Q") + 1].split(","))
    assert routed <= served
    quoting = compose["services"]["worker-quoting"]["command"]
    assert "--prefetch-multiplier=1" in quoting
    assert compose["services"]["beat"]["command"][:6] == ["python", "-m", "celery", "-A", "mmweb", "beat"]


def test_app_services_get_the_environment_settings_reads(compose):
    for name in ("web", "worker-quoting", "worker-periodic", "beat", "migrate"):
        env = compose["services"][name]["environment"]
        for var in ("DATABASE_URL", "REDIS_URL", "SECRET_KEY", "ALLOWED_HOSTS"):
            assert var in env, f"{name} lacks {var}"
        assert env["DATABASE_URL"].startswith("postgresql://") and "@db:" in env["DATABASE_URL"]
        assert env["REDIS_URL"].startswith("redis://redis:")
        assert compose["services"][name]["depends_on"]


def test_the_migrate_service_uses_real_management_commands(compose):
    from django.core.management import get_commands

    cmd = compose["services"]["migrate"]["command"][-1]
    for part in cmd.split("&&"):
        words = part.split()
        assert words[:2] == ["python", "manage.py"]
        assert words[2] in get_commands(), words[2]


def test_workers_keep_their_journals_on_a_volume(compose):
    svc = compose["services"]["worker-quoting"]
    assert any(v.endswith(":/data") for v in svc["volumes"]) and svc["environment"]["MM_VAR_DIR"].startswith("/data")
    assert "appdata" in compose["volumes"]
