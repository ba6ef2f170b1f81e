"""Roles outside the console views: what each role is offered on the page, who gets into the Django admin, the
commands that grant roles (``set_role``, ``ensure_operator``), and the production settings (secure cookies by
default off loopback, ``check --deploy`` clean)."""

from __future__ import annotations

import re
import subprocess
import sys
from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.test import Client
from django.urls import reverse

from apps.control import services
from apps.control.permissions import Role, assign_role, role_of
from apps.control.services import Actor
from apps.trading.models import TradingSession
from tests.conftest import BASE_DIR, stack_env
from tests.roles import PASSWORD, make_user

# --- what each role is offered ------------------------------------------------------------------------------------

BUTTONS = ("halt-button", "pause-button", "reduce-button", "stop-button", "rearm-button", "global-rearm")


def _buttons(html: str) -> set[str]:
    return {b for b in BUTTONS if f'id="{b}"' in html} | (
        {"global-halt"} if 'name="action" value="halt"' in html else set()
    )


@pytest.mark.parametrize(
    ("role", "running", "halted"),
    [
        ("viewer", set(), set()),
        ("operator", {"halt-button", "pause-button", "reduce-button", "stop-button", "global-halt"}, {"stop-button"}),
        (
            "admin",
            {"halt-button", "pause-button", "reduce-button", "stop-button", "global-halt"},
            {"stop-button", "rearm-button", "global-rearm"},
        ),
    ],
)
def test_each_role_is_offered_only_the_buttons_it_may_use(client, session, role, running, halted):
    client.force_login(make_user(role, f"page-{role}"))
    page = reverse("dashboard:session", args=[session.pk])
    TradingSession.objects.filter(pk=session.pk).update(status="running")
    html = client.get(page).content.decode()
    assert _buttons(html) == running
    assert ('id="read-only-note"' in html) is (role == "viewer")
    services.halt_session(Actor(label="t"), session.pk, "setup")
    services.halt_all(Actor(label="t"), "setup")
    html = client.get(page).content.decode()
    assert _buttons(html) == halted
    assert ('id="rearm-note"' in html) is (role == "operator")
    assert ('id="global-rearm-note"' in html) is (role == "operator")


# --- the Django admin ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["none", "viewer", "operator"])
def test_only_the_admin_role_gets_into_the_django_admin(db, client, role):
    user = make_user(role, f"adm-{role}")
    assert not user.is_staff
    client.force_login(user)
    resp = client.get("/admin/")
    assert resp.status_code == 302 and resp["Location"].startswith("/admin/login/")
    # a staff flag left on an account does not open it either: the site asks the role
    get_user_model().objects.filter(pk=user.pk).update(is_staff=True)
    resp = client.get("/admin/auth/user/")
    assert resp.status_code == 302 and resp["Location"].startswith("/admin/login/")


def test_an_admin_logs_into_the_django_admin_and_manages_users(db, client):
    from django.contrib.auth.models import Group

    admin = make_user("admin", "adm-admin")
    assert admin.is_staff and not admin.is_superuser
    resp = client.post("/admin/login/?next=/admin/", {"username": "adm-admin", "password": PASSWORD})
    assert resp.status_code == 302 and resp["Location"] == "/admin/"
    index = client.get("/admin/").content.decode()
    for model in ("auth/user", "auth/group", "trading/order", "trading/fillrecord", "control/auditevent"):
        assert f'href="/admin/{model}/"' in index, model
    users = client.get("/admin/auth/user/").content.decode()
    assert "console role" in users.lower()

    # make a viewer an admin by ticking the group: it becomes staff, so it can log in here too
    viewer = make_user("viewer", "to-promote")
    form = client.get(f"/admin/auth/user/{viewer.pk}/change/").content.decode()
    data = {
        "username": viewer.username,
        "is_active": "on",
        "groups": [Group.objects.get(name="admin").pk],
        "date_joined_0": "2026-01-01",
        "date_joined_1": "00:00:00",
        "initial-date_joined_0": "2026-01-01",
        "initial-date_joined_1": "00:00:00",
    }
    assert 'name="groups"' in form
    resp = client.post(f"/admin/auth/user/{viewer.pk}/change/", data)
    assert resp.status_code == 302, resp.content.decode()[:2000]
    viewer = get_user_model().objects.get(pk=viewer.pk)
    assert role_of(viewer) is Role.ADMIN and viewer.is_staff
    # and back to operator: no longer staff
    data["groups"] = [Group.objects.get(name="operator").pk]
    assert client.post(f"/admin/auth/user/{viewer.pk}/change/", data).status_code == 302
    viewer = get_user_model().objects.get(pk=viewer.pk)
    assert role_of(viewer) is Role.OPERATOR and not viewer.is_staff


def test_assign_role_puts_a_user_in_exactly_one_group_and_staff_only_for_admins(django_user_model):
    user = django_user_model.objects.create_user("multi", password=PASSWORD)
    for role in (Role.ADMIN, Role.VIEWER, Role.OPERATOR, Role.NONE):
        assign_role(user, role)
        user = django_user_model.objects.get(pk=user.pk)
        assert role_of(user) is role
        assert list(user.groups.values_list("name", flat=True)) == ([] if role is Role.NONE else [role.label])
        assert user.is_staff is (role is Role.ADMIN)


# --- manage.py set_role / ensure_operator -------------------------------------------------------------------------


def _run(*args: str) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command(*args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_set_role_creates_an_account_prints_its_password_once_and_it_logs_in(db):
    out, _ = _run("set_role", "alice", "operator", "--create", "--email", "alice@example.com")
    match = re.fullmatch(r"created alice / (\S+)  \(role operator; shown once, not stored\)\n", out)
    assert match, out
    alice = get_user_model().objects.get(username="alice")
    assert alice.email == "alice@example.com" and role_of(alice) is Role.OPERATOR and not alice.is_staff
    client = Client()
    assert client.post("/login/", {"username": "alice", "password": match.group(1)}).status_code == 302
    # a second run changes the role and says so; no new password
    out, _ = _run("set_role", "alice", "admin")
    assert out == "alice: role operator -> admin\n"
    assert get_user_model().objects.get(username="alice").is_staff
    out, _ = _run("set_role", "alice", "NONE")
    assert out == "alice: role admin -> none\n"
    assert client.get("/").status_code == 403  # still logged in, may read nothing


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("bob", "viewer"), "username: no account 'bob'; add --create to make it"),
        (("bob", "superuser", "--create"), "role: role must be one of admin, operator, viewer, none, not 'superuser'"),
        (("  ", "viewer", "--create"), "username: must not be empty"),
        (("bob", "viewer", "--create", "--email", "not-an-address"), "--email: 'not-an-address' is not an e-mail"),
        (("carol", "viewer", "--email", "c@example.com"), "--email: only used with --create"),
    ],
)
def test_set_role_refuses_bad_input_naming_the_argument(db, args, message):
    make_user("viewer", "carol")
    with pytest.raises(CommandError) as exc:
        _run("set_role", *args)
    assert str(exc.value).startswith(message), str(exc.value)
    assert not get_user_model().objects.filter(username="bob").exists()


def test_set_role_warns_that_a_superuser_stays_an_admin(db, django_user_model):
    django_user_model.objects.create_superuser("root", "root@example.invalid", PASSWORD)
    _out, err = _run("set_role", "root", "viewer")
    assert "root is a superuser and stays an admin" in err


def test_set_role_is_a_real_command_line(db):
    res = subprocess.run(
        [sys.executable, "manage.py", "set_role", "nobody-here", "viewer"],
        cwd=BASE_DIR,
        env=stack_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 1 and "CommandError: username: no account 'nobody-here'" in res.stderr


def test_ensure_operator_makes_the_operator_an_admin(db, monkeypatch):
    monkeypatch.setenv("MM_ADMIN_USERNAME", "the-operator")
    monkeypatch.setenv("MM_ADMIN_PASSWORD", "operator-password-1")
    out, _ = _run("ensure_operator")
    assert out == "operator account: the-operator / operator-password-1  (from MM_ADMIN_PASSWORD)\n"
    user = get_user_model().objects.get(username="the-operator")
    assert role_of(user) is Role.ADMIN and user.is_staff and not user.is_superuser
    assert list(user.groups.values_list("name", flat=True)) == ["admin"]
    # idempotent, and it puts back a role someone took away
    assign_role(user, Role.VIEWER)
    _run("ensure_operator")
    assert role_of(get_user_model().objects.get(username="the-operator")) is Role.ADMIN


# --- production settings ------------------------------------------------------------------------------------------

_CLEAN = ("DEBUG", "MM_SECURE", "ALLOWED_HOSTS", "CSRF_TRUSTED_ORIGINS", "MM_BEHIND_PROXY", "SECRET_KEY")


def _settings(**env: str) -> list[str]:
    code = (
        "from django.conf import settings as s; "
        "print(s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE, s.SECURE_SSL_REDIRECT, s.SECURE_HSTS_SECONDS)"
    )
    full = {k: v for k, v in stack_env().items() if k not in _CLEAN}
    full.update(env)
    res = subprocess.run(
        [sys.executable, "-c", f"import django; django.setup(); {code}"],
        cwd=BASE_DIR,
        env=full,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr
    return res.stdout.split()


def test_cookies_are_secure_by_default_when_served_beyond_loopback_and_not_for_make_run():
    on = ["True", "True", "True", "31536000"]
    off = ["False", "False", "False", "0"]
    assert _settings() == off  # `make run`: DEBUG off, http://127.0.0.1
    assert _settings(ALLOWED_HOSTS="127.0.0.1,localhost,[::1]") == off
    assert _settings(ALLOWED_HOSTS="mm.example.com") == on  # DEBUG off, another host: https only
    assert _settings(ALLOWED_HOSTS="mm.example.com", DEBUG="1") == off
    assert _settings(ALLOWED_HOSTS="mm.example.com", MM_SECURE="0") == off  # explicit wins
    assert _settings(MM_SECURE="1") == on


PRODUCTION_ENV = {
    "DEBUG": "0",
    "SECRET_KEY": "p" * 10 + "".join(f"{i:x}" for i in range(60)),
    "ALLOWED_HOSTS": "mm.example.com",
    "CSRF_TRUSTED_ORIGINS": "https://mm.example.com",
}


def test_check_deploy_is_clean_with_the_documented_production_environment():
    """docs/console-roles.md lists exactly this environment; MM_SECURE is not needed (on by default off loopback)."""
    full = {k: v for k, v in stack_env().items() if k not in _CLEAN}
    full.update(PRODUCTION_ENV)
    res = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=BASE_DIR,
        env=full,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.strip() == "System check identified no issues (0 silenced)."
    assert "WARNING" not in res.stderr and "ERROR" not in res.stderr
