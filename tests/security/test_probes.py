"""Issue 13's probe table, one test (or a few) per row, against the real stack: Django's test client through the
whole middleware chain, Channels' WebsocketCommunicator on ``mmweb.asgi.application``, and a real daphne process
started with the default settings where the row is about what a real server answers."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from datetime import timedelta
from html.parser import HTMLParser

import pytest
from asgiref.sync import async_to_sync
from channels.testing import WebsocketCommunicator
from django.test import Client, override_settings
from django.urls import reverse

from apps.control import services
from apps.control.models import AuditEvent, GlobalKillSwitch
from apps.control.services import MAX_REASON_CHARS, Actor, ControlError
from apps.trading.models import TradingSession
from mmweb.asgi import application
from tests.conftest import BASE_DIR, stack_env
from tests.roles import PASSWORD
from tests.security.conftest import cookie_for

XSS = "<img src=x onerror=alert(1)>"
JSON = {"HTTP_ACCEPT": "application/json"}


def _csp(resp) -> dict[str, list[str]]:
    header = resp["Content-Security-Policy"]
    return {d.split()[0]: d.split()[1:] for d in (p.strip() for p in header.split(";")) if d}


class _ScriptAudit(HTMLParser):
    """Collects inline scripts and inline event-handler attributes from a page. A JSON data block
    (``<script type="application/json">``, what ``json_script`` writes) is data the browser never runs; it is
    counted apart, in ``data_blocks``."""

    def __init__(self) -> None:
        super().__init__()
        self.inline_scripts: list[str] = []
        self.handlers: list[str] = []
        self.styles: list[str] = []
        self.data_blocks: list[str] = []
        self._in_inline_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        names = dict(attrs)
        if tag == "script" and "src" not in names and names.get("type") == "application/json":
            self.data_blocks.append(names.get("id") or "")
        elif tag == "script" and "src" not in names:
            self._in_inline_script = True
            self.inline_scripts.append("")
        self.handlers += [f"{tag}.{k}" for k, _ in attrs if k.startswith("on")]
        if "style" in names:
            self.styles.append(f"{tag}.style")
        if tag == "style":
            self.styles.append("<style>")

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_inline_script = False

    def handle_data(self, data: str) -> None:
        if self._in_inline_script:
            self.inline_scripts[-1] += data


# --- row 1: reflected input, CSP, CSRF cookie ------------------------------------------------------------------


def test_a_script_in_the_pnl_width_is_escaped_not_echoed(client, staff, session):
    client.force_login(staff)
    url = reverse("dashboard:session_pnl", args=[session.pk])
    resp = client.get(url, {"width": XSS})
    body = resp.content.decode()
    assert resp.status_code == 400
    assert resp["Content-Type"].startswith("text/html")
    assert "<img" not in body and "onerror" not in body  # not even escaped: the value is not repeated at all
    assert body.startswith('<p class="error">') and "width must be one of 1 second, 1 minute" in body
    api = client.get(url, {"width": XSS}, **JSON)
    assert api.status_code == 400 and api["Content-Type"] == "application/json"
    assert "<img" not in api.content.decode() and "width must be one of" in api.json()["error"]


def test_every_error_fragment_escapes_what_it_shows(client, staff, session):
    """Operator-supplied text shown back (reasons, errors) goes through the template engine's escaping."""
    client.force_login(staff)
    resp = client.post(reverse("dashboard:halt", args=[session.pk]), {"reason": XSS})
    assert resp.status_code == 200 and XSS not in resp.content.decode()
    assert "&lt;img src=x onerror=alert(1)&gt;" in resp.content.decode()
    page = client.get(reverse("dashboard:session", args=[session.pk])).content.decode()
    assert XSS not in page and "&lt;img src=x onerror=alert(1)&gt;" in page  # the audit trail and the status
    unknown = client.post(f"/sessions/{session.pk}/{'x' * 20}/")
    assert unknown.status_code == 404 and "xxxxxxxx" not in unknown.content.decode()


@pytest.mark.parametrize("name", ["home", "session", "session_pnl", "controls", "kill_switch", "login"])
def test_every_page_has_a_csp_without_inline_script_or_eval(client, staff, session, name):
    client.force_login(staff)
    url = (
        reverse("login")
        if name == "login"
        else (reverse("dashboard:home") if name == "home" else reverse(f"dashboard:{name}", args=[session.pk]))
    )
    resp = client.get(url)
    assert resp.status_code == 200
    csp = _csp(resp)
    assert csp["script-src"] == ["'self'"] and csp["default-src"] == ["'self'"]
    assert "'unsafe-inline'" not in resp["Content-Security-Policy"]
    assert "'unsafe-eval'" not in resp["Content-Security-Policy"]
    assert csp["object-src"] == ["'none'"] and csp["frame-ancestors"] == ["'none'"]
    # the live socket: same host over ws:/wss:
    assert "'self'" in csp["connect-src"] and "ws://testserver" in csp["connect-src"]
    audit = _ScriptAudit()
    audit.feed(resp.content.decode())
    assert audit.inline_scripts == [] and audit.handlers == [] and audit.styles == []


def test_error_responses_carry_the_csp_too(client, staff):
    client.force_login(staff)
    resp = client.get(reverse("dashboard:session", args=[999_999]))
    assert resp.status_code == 404 and "script-src 'self'" in resp["Content-Security-Policy"]


def test_templates_hold_no_inline_script_handler_or_style():
    for path in (BASE_DIR / "templates").rglob("*.html"):
        text = path.read_text()
        audit = _ScriptAudit()
        audit.feed(re.sub(r"{[%{#].*?[%}#]}", "", text))  # template tags are not HTML
        assert audit.inline_scripts == [], path
        assert audit.handlers == [], path
        assert audit.styles == [], path
        assert "hx-on" not in text and "js:" not in text, path


def test_the_csrf_cookie_is_http_only_and_htmx_sends_the_token_from_the_page(client, staff, session):
    resp = client.get(reverse("login"))
    assert client.cookies["csrftoken"]["httponly"] is True
    assert client.cookies["csrftoken"]["samesite"] == "Lax"
    client.force_login(staff)
    page = client.get(reverse("dashboard:session", args=[session.pk])).content.decode()
    token = re.search(r"hx-headers='\{\"X-CSRFToken\": \"([^\"]+)\"\}'", page).group(1)
    # a POST with only the header, as htmx sends it, passes the CSRF check; without it, it does not
    strict = Client(enforce_csrf_checks=True)
    strict.cookies = client.cookies
    ok = strict.post(reverse("dashboard:action", args=[session.pk, "pause"]), HTTP_X_CSRFTOKEN=token)
    assert ok.status_code == 400  # past CSRF and permissions: a created session cannot be paused
    refused = strict.post(reverse("dashboard:action", args=[session.pk, "pause"]))
    assert refused.status_code == 403 and resp.status_code == 200


def test_xss_and_csp_against_a_real_daphne(bare_daphne, staff, session):
    status, headers, body = bare_daphne.request(
        f"/sessions/{session.pk}/pnl/?width=%3Cimg%20src%3Dx%20onerror%3Dalert(1)%3E", cookie=cookie_for(staff)
    )
    assert status == 400 and headers["content-type"].startswith("text/html")
    assert b"<img" not in body and b"onerror" not in body
    assert "script-src 'self'" in headers["content-security-policy"]
    assert f"ws://127.0.0.1:{bare_daphne.port}" in headers["content-security-policy"]


# --- rows 2-4 (sockets): origin by scheme, host and port; malformed and unknown sessions; who may read ----------


def _ws(path: str, *, origin: str | None, cookie: str | None = None, host: str | None = None):
    async def go():
        headers = []
        if origin:
            headers.append((b"origin", origin.encode()))
        if cookie:
            headers.append((b"cookie", cookie.encode()))
        if host:
            headers.append((b"host", host.encode()))
        comm = WebsocketCommunicator(application, path, headers=headers)
        connected, code = await comm.connect(timeout=20)
        await comm.disconnect()
        return connected, code

    return async_to_sync(go)()


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("origin", "host", "accepted"),
    [
        ("http://127.0.0.1:8000", None, True),  # a CSRF_TRUSTED_ORIGINS entry
        ("http://localhost:8000", None, True),
        ("http://localhost:9999", None, False),  # the issue's probe: right host, wrong port
        ("http://localhost:9999", "localhost:8000", False),
        ("https://127.0.0.1:8000", None, False),  # wrong scheme
        ("http://127.0.0.1", None, False),  # port 80 is not 8000
        ("http://127.0.0.1:5555", "127.0.0.1:5555", True),  # same origin as the page (Host header)
        ("http://evil.example:80", "evil.example", False),  # same origin, but not an allowed host
        ("null", None, False),
        (None, "127.0.0.1:8000", False),  # no Origin at all
    ],
)
def test_websocket_origin_is_checked_by_scheme_host_and_port(staff, origin, host, accepted):
    from apps.control.services import create_paper_session

    sid = create_paper_session(Actor(label="t"), name="ws", seed=1, start=False).pk
    connected, _code = _ws(f"/ws/sessions/{sid}/", origin=origin, cookie=cookie_for(staff), host=host)
    assert connected is accepted


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("path", "user", "code"),
    [
        ("/ws/sessions/abc/", "staff", 4404),
        ("/ws/sessions/999999/", "staff", 4404),
        ("/ws/sessions/-1/", "staff", 4404),
        ("/ws/elsewhere/", "staff", 4404),
        ("/ws/sessions/{sid}/", None, 4401),
    ],
)
def test_malformed_unknown_and_anonymous_websockets_are_refused_cleanly(staff, path, user, code):
    from apps.control.services import create_paper_session

    sid = create_paper_session(Actor(label="t"), name="ws", seed=1, start=False).pk
    cookie = cookie_for(staff) if user else None
    connected, got = _ws(path.format(sid=sid), origin="http://127.0.0.1:8000", cookie=cookie)
    assert connected is False and got == code


def test_a_real_daphne_refuses_foreign_origins_and_bad_paths_without_a_traceback(bare_daphne, staff, session):
    cookie = cookie_for(staff)
    own = f"http://127.0.0.1:{bare_daphne.port}"
    assert bare_daphne.ws_handshake(f"/ws/sessions/{session.pk}/", origin=own, cookie=cookie) == 101
    assert bare_daphne.ws_handshake(f"/ws/sessions/{session.pk}/", origin="http://localhost:9999", cookie=cookie) == 403
    # a browser sends the Host it connects to, so a page on another port cannot make Host match its Origin; a
    # rebound DNS name is not in ALLOWED_HOSTS
    host = f"evil.example:{bare_daphne.port}"
    evil = f"http://{host}"
    assert bare_daphne.ws_handshake(f"/ws/sessions/{session.pk}/", origin=evil, cookie=cookie, host=host) == 403
    assert bare_daphne.ws_handshake("/ws/sessions/abc/", origin=own, cookie=cookie) == 403
    assert bare_daphne.ws_handshake("/ws/sessions/999999/", origin=own, cookie=cookie) == 403
    assert bare_daphne.ws_handshake(f"/ws/sessions/{session.pk}/", origin=own) == 403  # no cookie
    time.sleep(0.3)
    log = bare_daphne.log()
    # an access-log line ends in the status for HTTP ('"GET /x" 500 12'); a bare "500" would also match a port
    assert "Traceback" not in log and not re.search(r'" 5\d\d ', log), log


@pytest.mark.django_db(transaction=True)
def test_a_user_without_a_role_is_refused_on_the_live_socket_and_a_viewer_reads(norole, viewer):
    """Reading needs the viewer role, on the socket as on the pages (see apps.control.permissions)."""
    from apps.control.services import create_paper_session

    sid = create_paper_session(Actor(label="t"), name="ws", seed=1, start=False).pk
    path = f"/ws/sessions/{sid}/"
    assert _ws(path, origin="http://127.0.0.1:8000", cookie=cookie_for(norole)) == (False, 4403)
    connected, _ = _ws(path, origin="http://127.0.0.1:8000", cookie=cookie_for(viewer))
    assert connected is True


@pytest.mark.django_db(transaction=True)
def test_an_inactive_user_is_refused_on_the_socket(viewer):
    from apps.control.services import create_paper_session

    sid = create_paper_session(Actor(label="t"), name="ws", seed=1, start=False).pk
    cookie = cookie_for(viewer)
    type(viewer).objects.filter(pk=viewer.pk).update(is_active=False)
    connected, code = _ws(f"/ws/sessions/{sid}/", origin="http://127.0.0.1:8000", cookie=cookie)
    assert connected is False and code == 4401  # Django's backend no longer returns an inactive user


# --- row 4 (HTTP): a user with no role cannot act ------------------------------------------------------------------


ACTIONS = [
    ("halt", {"reason": "probe"}),
    ("pause", {"reason": "probe"}),
    ("resume", {"reason": "probe"}),
    ("reduce", {"reason": "probe"}),
    ("rearm", {"reason": "probe"}),
    ("stop", {"reason": "probe"}),
    ("stop", {"reason": "probe", "flatten": "1"}),
]


@pytest.mark.parametrize("api", [False, True])
@pytest.mark.parametrize("status", ["running", "paused", "halted"])
@pytest.mark.parametrize("who", ["norole", "viewer"])
def test_a_user_below_the_operator_role_cannot_act_on_a_session(client, request, who, session, status, api):
    TradingSession.objects.filter(pk=session.pk).update(status=status)
    client.force_login(request.getfixturevalue(who))
    headers = JSON if api else {}
    for action, data in ACTIONS:
        url = (
            reverse("dashboard:halt", args=[session.pk])
            if action == "halt"
            else reverse("dashboard:action", args=[session.pk, action])
        )
        resp = client.post(url, data, **headers)
        assert resp.status_code == 403, (action, resp.content)
        if api:
            assert resp.json() == {"error": "this needs the operator role"}
    for action in ("halt", "reduce", "rearm"):
        resp = client.post(reverse("dashboard:global_switch"), {"action": action, "reason": "probe"}, **headers)
        assert resp.status_code == 403
    assert TradingSession.objects.get(pk=session.pk).status == status
    assert GlobalKillSwitch.current().state == "armed"
    assert not AuditEvent.objects.exclude(action="session.create").exists()
    # reading: a viewer's right, not a role-less account's
    page = client.get(reverse("dashboard:session", args=[session.pk]))
    assert page.status_code == (200 if who == "viewer" else 403)


def test_an_operator_can_act_but_not_re_arm(client, staff, session):
    TradingSession.objects.filter(pk=session.pk).update(status="running")
    client.force_login(staff)
    assert client.post(reverse("dashboard:action", args=[session.pk, "pause"]), {"reason": "x"}).status_code == 200
    assert client.post(reverse("dashboard:halt", args=[session.pk]), {"reason": "x"}).status_code == 200
    rearm = client.post(reverse("dashboard:action", args=[session.pk, "rearm"]), {"reason": "x"}, **JSON)
    assert rearm.status_code == 403 and rearm.json() == {"error": "rearm needs the admin role"}
    assert TradingSession.objects.get(pk=session.pk).status == "halted"
    glob = reverse("dashboard:global_switch")
    assert client.post(glob, {"action": "halt", "reason": "x"}, **JSON).status_code == 200
    assert client.post(glob, {"action": "rearm", "reason": "x"}, **JSON).status_code == 403
    assert GlobalKillSwitch.current().state == "halted"
    assert not AuditEvent.objects.filter(action__in=["session.rearm", "global.armed"]).exists()


def test_an_admin_re_arms_a_session_and_the_global_switch(client, admin_user, session):
    TradingSession.objects.filter(pk=session.pk).update(status="running")
    client.force_login(admin_user)
    assert client.post(reverse("dashboard:halt", args=[session.pk]), {"reason": "x"}).status_code == 200
    assert client.post(reverse("dashboard:action", args=[session.pk, "rearm"]), {"reason": "x"}).status_code == 200
    assert TradingSession.objects.get(pk=session.pk).status == "paused"
    glob = reverse("dashboard:global_switch")
    assert client.post(glob, {"action": "halt", "reason": "x"}, **JSON).status_code == 200
    assert client.post(glob, {"action": "rearm", "reason": "x"}, **JSON).json()["state"] == "armed"


# --- row 5: login throttling -------------------------------------------------------------------------------------


@pytest.mark.parametrize("login_url", ["/login/", "/admin/login/"])
def test_wrong_passwords_lock_the_login_and_then_the_right_one_is_refused(client, staff, login_url):
    from django.conf import settings

    limit = settings.AXES_FAILURE_LIMIT
    assert limit == 5 and timedelta(minutes=15) == settings.AXES_COOLOFF_TIME
    statuses = [
        client.post(login_url, {"username": "staff-op", "password": f"wrong-{i}"}).status_code for i in range(20)
    ]
    assert statuses[: limit - 1] == [200] * (limit - 1)  # the form again, "wrong user name or password"
    assert set(statuses[limit:]) == {429}, statuses  # locked
    resp = client.post(login_url, {"username": "staff-op", "password": PASSWORD})
    assert resp.status_code == 429 and "_auth_user_id" not in client.session
    assert "too many login attempts" in resp.content.decode()
    # the lock is on the IP address and on the user name: another user from here is locked too, and this user
    # from another address as well
    assert client.post(login_url, {"username": "someone-else", "password": "x"}).status_code == 429
    other = Client(REMOTE_ADDR="10.1.2.3")
    resp = other.post(login_url, {"username": "staff-op", "password": PASSWORD})
    assert resp.status_code == 429


def test_a_lock_ends_after_the_cool_off(client, staff):
    with override_settings(AXES_COOLOFF_TIME=timedelta(seconds=2)):
        for i in range(6):
            client.post("/login/", {"username": "staff-op", "password": f"wrong-{i}"})
        assert client.post("/login/", {"username": "staff-op", "password": PASSWORD}).status_code == 429
        time.sleep(2.5)
        resp = client.post("/login/", {"username": "staff-op", "password": PASSWORD})
        assert resp.status_code == 302 and client.session["_auth_user_id"] == str(staff.pk)


def test_a_correct_login_still_works_and_resets_the_count(client, staff):
    for i in range(3):
        client.post("/login/", {"username": "staff-op", "password": f"wrong-{i}"})
    assert client.post("/login/", {"username": "staff-op", "password": PASSWORD}).status_code == 302
    client.post("/logout/")
    for i in range(3):  # would reach the limit of 5 had the success not reset the count
        client.post("/login/", {"username": "staff-op", "password": f"wrong-{i}"})
    assert client.post("/login/", {"username": "staff-op", "password": PASSWORD}).status_code == 302


# --- row 6: Host: testserver -------------------------------------------------------------------------------------


def test_testserver_is_not_an_allowed_host_by_default(bare_daphne, staff):
    status, _h, _b = bare_daphne.request("/login/", host="testserver")
    assert status == 400
    status, headers, _b = bare_daphne.request("/login/")
    assert status == 200 and "content-security-policy" in headers
    status, _h, _b = bare_daphne.request("/login/", host="evil.example")
    assert status == 400
    code = "from django.conf import settings; print(settings.ALLOWED_HOSTS)"
    env = {k: v for k, v in stack_env().items() if k != "ALLOWED_HOSTS"}
    out = subprocess.run(
        [sys.executable, "-c", f"import django; django.setup(); {code}"],
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out.strip() == "['127.0.0.1', 'localhost']"


# --- row 7: reasons required and bounded --------------------------------------------------------------------------


def _halt(session):
    services.halt_session(Actor(label="t"), session.pk, "setup")


@pytest.mark.parametrize("reason", ["", "   "])
def test_rearm_with_an_empty_reason_is_refused(client, admin_user, session, reason):
    _halt(session)
    client.force_login(admin_user)
    resp = client.post(reverse("dashboard:action", args=[session.pk, "rearm"]), {"reason": reason})
    assert resp.status_code == 400 and "needs a reason" in resp.content.decode()
    assert TradingSession.objects.get(pk=session.pk).status == "halted"
    assert not AuditEvent.objects.filter(action="session.rearm").exists()
    resp = client.post(reverse("dashboard:action", args=[session.pk, "rearm"]), {"reason": reason}, **JSON)
    assert resp.status_code == 400 and "needs a reason" in resp.json()["error"]


@pytest.mark.parametrize(
    ("kind", "needs_reason"),
    [("halt", True), ("reduce", True), ("rearm", True), ("pause", False), ("resume", False), ("stop", False)],
)
def test_reasons_are_required_where_the_readme_says(client, staff, admin_user, session, kind, needs_reason):
    start = {"halt": "running", "reduce": "running", "rearm": "halted", "pause": "running", "resume": "paused"}
    TradingSession.objects.filter(pk=session.pk).update(status=start.get(kind, "running"))
    client.force_login(admin_user if kind == "rearm" else staff)
    url = (
        reverse("dashboard:halt", args=[session.pk])
        if kind == "halt"
        else reverse("dashboard:action", args=[session.pk, kind])
    )
    resp = client.post(url, {"reason": ""}, **JSON)
    if needs_reason:
        assert resp.status_code == 400 and "needs a reason" in resp.json()["error"]
    else:
        assert resp.status_code == 200 and resp.json()["reason"] == f"operator {kind}"


def test_a_megabyte_reason_is_refused_with_a_clear_message(client, staff, session):
    client.force_login(staff)
    TradingSession.objects.filter(pk=session.pk).update(status="running")
    huge = "A" * 1_000_000
    resp = client.post(reverse("dashboard:halt", args=[session.pk]), {"reason": huge})
    assert resp.status_code == 400
    assert f"a reason is at most {MAX_REASON_CHARS} characters" in resp.content.decode()
    assert huge[:1000] not in resp.content.decode()
    for action in ("pause", "stop"):
        resp = client.post(reverse("dashboard:action", args=[session.pk, action]), {"reason": huge}, **JSON)
        assert resp.status_code == 400 and "at most 500 characters" in resp.json()["error"]
    resp = client.post(reverse("dashboard:global_switch"), {"action": "halt", "reason": huge}, **JSON)
    assert resp.status_code == 400 and "at most 500 characters" in resp.json()["error"]
    assert TradingSession.objects.get(pk=session.pk).status == "running"
    assert GlobalKillSwitch.current().state == "armed"
    ok = "B" * MAX_REASON_CHARS  # the limit itself is allowed
    assert client.post(reverse("dashboard:halt", args=[session.pk]), {"reason": ok}).status_code == 200
    assert TradingSession.objects.get(pk=session.pk).status_reason == ok


@pytest.mark.parametrize(
    "call",
    [
        lambda sid, r: services.halt_session(Actor(label="t"), sid, r),
        lambda sid, r: services.pause_session(Actor(label="t"), sid, r),
        lambda sid, r: services.stop_session(Actor(label="t"), sid, r),
        lambda sid, r: services.halt_all(Actor(label="t"), r),
        lambda sid, r: services.reduce_all(Actor(label="t"), r),
    ],
)
def test_the_service_layer_bounds_reasons_so_nothing_bypasses_it(session, call):
    TradingSession.objects.filter(pk=session.pk).update(status="running")
    with pytest.raises(ControlError, match="at most 500 characters"):
        call(session.pk, "x" * (MAX_REASON_CHARS + 1))
    assert TradingSession.objects.get(pk=session.pk).status == "running"
    assert not AuditEvent.objects.exclude(action="session.create").exists()


def test_reasons_wrap_in_the_stylesheet():
    css = (BASE_DIR / "static" / "css" / "app.css").read_text()
    assert re.search(r"td, p, \.muted, \.halted, \.error \{ overflow-wrap:anywhere; \}", css)


# --- row 8: the JSON API answers JSON for every outcome -----------------------------------------------------------


def test_the_json_api_answers_json_when_logged_out_unknown_forbidden_bad_or_wrong_method(
    client, viewer, staff, session
):
    halt = reverse("dashboard:halt", args=[session.pk])
    unknown = reverse("dashboard:halt", args=[999_999])

    def check(resp, status: int) -> dict:
        assert resp.status_code == status, resp.content
        assert resp["Content-Type"] == "application/json"
        return json.loads(resp.content)

    # logged out: 401, with or without a CSRF token (an API client that lost its session has none)
    assert check(client.post(halt, {"reason": "x"}, **JSON), 401) == {"error": "authentication required"}
    assert check(Client(enforce_csrf_checks=True).post(halt, {"reason": "x"}, **JSON), 401)["error"]
    check(client.post(reverse("dashboard:global_switch"), {"action": "halt", "reason": "x"}, **JSON), 401)
    check(client.post(reverse("dashboard:action", args=[session.pk, "pause"]), **JSON), 401)
    client.force_login(viewer)
    assert check(client.post(halt, {"reason": "x"}, **JSON), 403) == {"error": "this needs the operator role"}
    client.force_login(staff)
    assert check(client.post(unknown, {"reason": "x"}, **JSON), 404) == {"error": "no such session"}
    check(client.post(reverse("dashboard:action", args=[999_999, "pause"]), {"reason": "x"}, **JSON), 404)
    check(client.post(reverse("dashboard:action", args=[session.pk, "explode"]), **JSON), 404)
    assert "needs a reason" in check(client.post(halt, {"reason": ""}, **JSON), 400)["error"]
    resp = client.get(halt, **JSON)
    assert "use POST" in check(resp, 405)["error"] and resp["Allow"] == "POST"
    check(client.get(reverse("dashboard:global_switch"), **JSON), 405)
    check(client.post(reverse("dashboard:global_switch"), {"action": "nope", "reason": "x"}, **JSON), 400)
    # a CSRF failure of a logged-in API client is JSON as well
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(staff)
    assert "CSRF" in check(strict.post(halt, {"reason": "x"}, **JSON), 403)["error"]
    body = check(client.post(halt, {"reason": "api"}, **JSON), 200)
    assert body == {
        "session": session.pk,
        "status": "halted",
        "own_status": "halted",
        "global_state": "armed",
        "reason": "api",
    }
    body = check(client.post(reverse("dashboard:global_switch"), {"action": "halt", "reason": "g"}, **JSON), 200)
    assert body == {"state": "halted", "reason": "g"}


def test_htmx_requests_get_html_fragments_even_when_they_accept_json(client, viewer, session):
    client.force_login(viewer)
    resp = client.post(reverse("dashboard:halt", args=[session.pk]), {"reason": "x"}, HTTP_HX_REQUEST="true", **JSON)
    assert resp.status_code == 403 and resp.content.decode() == ('<p class="error">this needs the operator role</p>')
    assert resp["HX-Reswap"] == "beforeend"  # appended to the panel (base.html lets htmx swap a 403)


def test_an_htmx_request_with_an_expired_login_sends_the_page_to_the_login_form(client, session):
    page = f"/sessions/{session.pk}/"
    for resp in (
        client.post(reverse("dashboard:halt", args=[session.pk]), HTTP_HX_REQUEST="true", HTTP_HX_CURRENT_URL=page),
        client.get(reverse("dashboard:session_pnl", args=[session.pk]), HTTP_HX_REQUEST="true"),
    ):
        assert resp.status_code == 401 and resp.content == b""
        assert resp["HX-Redirect"].startswith("/login/?next=/sessions/")
    resp = client.post(reverse("dashboard:halt", args=[session.pk]), HTTP_HX_REQUEST="true", HTTP_HX_CURRENT_URL=page)
    assert resp["HX-Redirect"] == f"/login/?next=/sessions/{session.pk}/"


# --- row 9: check --deploy under the documented production settings ----------------------------------------------


PRODUCTION_ENV = {
    "DEBUG": "0",
    "MM_SECURE": "1",
    "SECRET_KEY": "k" * 10 + "".join(f"{i:x}" for i in range(60)),
    "ALLOWED_HOSTS": "mm.example.com",
    "CSRF_TRUSTED_ORIGINS": "https://mm.example.com",
}


def _check_deploy(**env: str) -> subprocess.CompletedProcess:
    full = {k: v for k, v in stack_env(**env).items() if k not in ("MM_BEHIND_PROXY",)}
    full.update(env)
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=BASE_DIR,
        env=full,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_check_deploy_is_clean_under_the_production_settings():
    res = _check_deploy(**PRODUCTION_ENV)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "System check identified no issues" in res.stdout
    behind_proxy = _check_deploy(**PRODUCTION_ENV, MM_BEHIND_PROXY="1")
    assert behind_proxy.returncode == 0, behind_proxy.stdout + behind_proxy.stderr


def test_check_deploy_warns_with_the_local_defaults():
    """The defaults are for plain http on 127.0.0.1; the check says so instead of passing silently."""
    res = _check_deploy(**{**PRODUCTION_ENV, "MM_SECURE": "0"})
    assert res.returncode != 0
    for warning in ("security.W004", "security.W008", "security.W012", "security.W016"):
        assert warning in res.stderr + res.stdout


def test_login_throttle_settings_come_from_the_environment():
    code = "from django.conf import settings as s; print(s.AXES_FAILURE_LIMIT, s.AXES_COOLOFF_TIME.total_seconds())"
    env = stack_env(MM_LOGIN_FAILURE_LIMIT="3", MM_LOGIN_COOLOFF_MIN="60")
    out = subprocess.run(
        [sys.executable, "-c", f"import django; django.setup(); {code}"],
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out.split() == ["3", "3600.0"]
