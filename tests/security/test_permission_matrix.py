"""The permission matrix, generated from the URL conf and the WebSocket routes, so that a view or route added later
is covered without anyone listing it here.

1. Every console view is marked by :mod:`apps.dashboard.access`: ``read_view`` (viewer), ``action_view``
   (operator, or a higher role for some actions: ``per_action``) or ``admin_view`` (admin). An unmarked view fails
   :func:`test_every_console_view_is_marked` by name, unless it is exempt below with its reason.
2. Each concrete URL (path converters filled with an existing session id and sample values) is requested by five
   users: anonymous, logged in with no role, viewer, operator and admin; pages and partials by GET, actions by
   POST (and each the other way), as a browser and as an API client (``Accept: application/json``):

   ============  =====================  ==========================================================
   user          read view              action view needing role R
   ============  =====================  ==========================================================
   anonymous     302 to /login/ or 401  302 to /login/ or 401
   below R/read  403                    GET 405 (POST only); POST 403, and nothing changes
   R or above    GET 200/400/404;       GET 405; POST 200/400/404 (never 401/403/405)
                 POST 405
   ============  =====================  ==========================================================

3. Every WebSocket route against the same users: anonymous 4401, no role 4403, every role reads a session that
   exists; anything that is not a live-session path 4404.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from asgiref.sync import async_to_sync
from channels.testing import WebsocketCommunicator
from django.urls import URLPattern, URLResolver, get_resolver, resolve

from apps.control.models import AuditEvent, GlobalKillSwitch
from apps.control.permissions import Role
from apps.dashboard.access import read_view, required_role
from apps.live.routing import websocket_urlpatterns
from apps.trading.models import TradingSession
from mmweb.asgi import application
from tests.roles import make_user
from tests.security.conftest import cookie_for

# Not console views, or guarded elsewhere, and why. Everything else must be marked and passes the matrix.
EXEMPT_PREFIXES = {
    "admin/": "Django's admin: its own login, and the site lets in the admin role only (tests/security/test_roles.py)",
}
EXEMPT_NAMES = {
    "login": "the login form is public (throttled by django-axes)",
    "logout": "logging out needs no role",
}
# Static files are served by ASGIStaticFilesHandler in front of the URL conf, so they are not in it.
# A view that is deliberately none of read/action/admin goes here as "namespace:name": "why", e.g. an endpoint
# guarded by a token rather than a login.
ALLOW_UNMARKED: dict[str, str] = {
    "metrics": "Prometheus scrape: a bearer token (MM_METRICS_TOKEN) or a logged-in admin; tests/ops/test_metrics.py",
}

# Sample values for path parameters, by name; an int parameter gets the session's id.
SAMPLES = {"action": ["pause", "resume", "reduce", "rearm", "stop", "halt", "no-such-action"]}
REASON = "matrix probe"
JSON = {"HTTP_ACCEPT": "application/json"}
USERS = ("anonymous", "none", "viewer", "operator", "admin")
ROLE_OF_USER = {"none": Role.NONE, "viewer": Role.VIEWER, "operator": Role.OPERATOR, "admin": Role.ADMIN}


@dataclass(frozen=True)
class Route:
    name: str  # the route's name, as in the URL conf
    path: str  # a concrete path
    view: object  # the view that path resolves to (a sample may resolve to an earlier route)
    kwargs: dict

    @property
    def access(self) -> str:
        return getattr(self.view, "access", "")

    def post_actions(self) -> list[str]:
        """POST ``action`` values to try: the ones that raise the role, and one that does not."""
        return ["halt", *sorted(getattr(self.view, "per_action_roles", {}))]


def _walk(patterns, prefix: str = "", namespace: str = "") -> Iterator[tuple[str, str, URLPattern]]:
    for p in patterns:
        if isinstance(p, URLResolver):
            ns = f"{namespace}{p.namespace}:" if p.namespace else namespace
            yield from _walk(p.url_patterns, prefix + str(p.pattern), ns)
        else:
            yield prefix + str(p.pattern), f"{namespace}{p.name or ''}", p


def _exempt(template: str, name: str) -> bool:
    return template.startswith(tuple(EXEMPT_PREFIXES)) or name in EXEMPT_NAMES or name in ALLOW_UNMARKED


def _console_patterns(patterns) -> Iterator[tuple[str, str, URLPattern]]:
    for template, name, p in _walk(patterns):
        if not _exempt(template, name):
            yield template, name, p


def unmarked(patterns) -> list[str]:
    """The console views in ``patterns`` that carry none of the access markers, as "name (path)"."""
    return [
        f"{name or p.lookup_str} (/{template})"
        for template, name, p in _console_patterns(patterns)
        if getattr(p.callback, "access", None) not in ("read", "action", "admin")
    ]


def _fill(template: str, session_id: int) -> list[str]:
    """Concrete paths for a route template (``sessions/<int:session_id>/<slug:action>/``)."""
    paths = [template]
    for conv, name in re.findall(r"<(?:(\w+):)?(\w+)>", template):
        token = f"<{conv}:{name}>" if conv else f"<{name}>"
        values = [str(session_id)] if conv == "int" else SAMPLES.get(name, ["x"])
        paths = [p.replace(token, v) for p in paths for v in values]
    return ["/" + p for p in paths]


def routes(session_id: int) -> list[Route]:
    out = []
    for template, name, _p in _console_patterns(get_resolver().url_patterns):
        assert "(?" not in template and "^" not in template, f"regex route {template}: give it samples here"
        for path in _fill(template, session_id):
            match = resolve(path)
            out.append(Route(name, path, match.func, match.kwargs))
    return out


def _snapshot() -> tuple:
    return (
        list(TradingSession.objects.order_by("pk").values_list("pk", "status", "status_reason")),
        AuditEvent.objects.count(),
        GlobalKillSwitch.current().state,
    )


@pytest.fixture
def running(session):
    TradingSession.objects.filter(pk=session.pk).update(status="running")
    return session


# --- 1. every view is marked --------------------------------------------------------------------------------------


def test_every_console_view_is_marked():
    missing = unmarked(get_resolver().url_patterns)
    assert missing == [], (
        "console views without read_view / action_view / admin_view (apps/dashboard/access.py); mark them, or add "
        f"them to ALLOW_UNMARKED in {__file__} with the reason: {missing}"
    )


def test_an_unmarked_view_is_named_by_the_check():
    from django.http import HttpResponse
    from django.urls import include, path

    def forgotten(request):
        return HttpResponse("open to all")

    patterns = [
        path("login/", forgotten, name="login"),  # exempt by name
        path("admin/x/", forgotten),  # exempt by prefix
        path("ok/", read_view(forgotten), name="ok"),
        path("", include(([path("open/<int:pk>/", forgotten, name="open")], "dash"))),
    ]
    assert unmarked(patterns) == ["dash:open (/open/<int:pk>/)"]


def test_the_walk_finds_every_dashboard_view(running):
    names = {r.name for r in routes(running.pk)}
    assert {
        "dashboard:home",
        "dashboard:session",
        "dashboard:halt",
        "dashboard:action",
        "dashboard:global_switch",
        "dashboard:session_pnl",
        "dashboard:controls",
        "dashboard:kill_switch",
    } <= names


def test_re_arm_is_the_admins_and_the_rest_of_the_lifecycle_the_operators(running):
    by_path = {r.path: r for r in routes(running.pk)}
    sid = running.pk
    assert required_role(by_path[f"/sessions/{sid}/rearm/"].view, "rearm") is Role.ADMIN
    for action in ("pause", "resume", "reduce", "stop", "halt"):
        assert required_role(by_path[f"/sessions/{sid}/{action}/"].view, action) is Role.OPERATOR, action
    glob = by_path["/global-switch/"].view
    assert [required_role(glob, a) for a in ("halt", "reduce", "rearm")] == [Role.OPERATOR, Role.OPERATOR, Role.ADMIN]
    assert required_role(by_path["/"].view) is Role.VIEWER


# --- 2. HTTP: every route against every user ---------------------------------------------------------------------


def _is_login_redirect(resp) -> bool:
    return resp.status_code == 302 and resp["Location"].startswith("/login/")


def _check_refused(resp, status: int, where: tuple) -> None:
    assert resp.status_code == status, (*where, resp.status_code, resp.content[:200])


def _probe_as(client, user: str, route: Route) -> None:
    """Every request this user may make on this route, with the answer the table in the docstring expects."""
    have = ROLE_OF_USER.get(user)
    for api in (False, True):
        headers = JSON if api else {}
        where = (user, route.path, "api" if api else "page")
        if have is None:  # anonymous
            for resp in (client.get(route.path, **headers), client.post(route.path, {"reason": REASON}, **headers)):
                assert _is_login_redirect(resp) or resp.status_code == 401, (*where, resp.status_code)
                assert not api or resp.status_code == 401, where
            continue
        if route.access == "read":
            resp = client.get(route.path, **headers)
            if have < Role.VIEWER:
                _check_refused(resp, 403, (*where, "GET"))
            else:
                assert resp.status_code in (200, 400, 404), (*where, "GET", resp.status_code, resp.content[:200])
            before = _snapshot()
            post = client.post(route.path, {"reason": REASON, "action": "halt"}, **headers)
            _check_refused(post, 403 if have < Role.VIEWER else 405, (*where, "POST"))
            assert _snapshot() == before, (*where, "POST changed something")
            continue
        # an action: POST only, and only from its role up
        _check_refused(client.get(route.path, **headers), 405, (*where, "GET"))
        for action in route.post_actions():
            needed = required_role(route.view, route.kwargs.get("action") or action)
            before = _snapshot()
            resp = client.post(route.path, {"reason": REASON, "action": action}, **headers)
            if have < needed:
                _check_refused(resp, 403, (*where, action))
                assert _snapshot() == before, (*where, action, "refused, yet something changed")
                if api:  # the answer names a role the user lacks
                    named = re.search(r"needs the (\w+) role", resp.json()["error"])
                    assert named and have < Role[named.group(1).upper()] <= needed, (*where, resp.json())
            else:
                assert resp.status_code in (200, 400, 404), (*where, action, resp.status_code, resp.content[:200])


@pytest.mark.parametrize("user", USERS)
def test_every_route_answers_each_user_as_its_role_allows(client, running, user):
    if user != "anonymous":
        client.force_login(make_user(user, f"matrix-{user}"))
    found = routes(running.pk)
    assert {r.access for r in found} >= {"read", "action"}
    for route in found:
        _probe_as(client, user, route)


def test_a_user_below_viewer_changes_nothing_whatever_the_method(client, norole, running):
    client.force_login(norole)
    before = _snapshot()
    for route in routes(running.pk):
        for method in ("get", "post", "put", "delete"):
            resp = getattr(client, method)(route.path, {"reason": REASON, "action": "halt"}, **JSON)
            assert resp.status_code in (403, 405), (method, route.path, resp.status_code)
    assert _snapshot() == before


# --- 3. the WebSocket routes --------------------------------------------------------------------------------------

ORIGIN = (b"origin", b"http://127.0.0.1:8000")


def _ws_paths(session_id: int) -> list[tuple[str, bool]]:
    """(path, is a live-session route of an existing session) for every route in apps/live/routing.py."""
    out = []
    for p in websocket_urlpatterns:
        template = str(p.pattern)
        if template in ("", "^"):  # the catch-all that refuses anything else
            out += [("/ws/sessions/abc/", False), ("/ws/unknown/", False)]
        else:
            out += [(path, True) for path in _fill(template, session_id)]
            out += [(path, False) for path in _fill(template, 999_999)]  # a session that does not exist
    return out


def _connect(path: str, cookie: str | None) -> tuple[bool, int | None]:
    async def go():
        headers = [ORIGIN] + ([(b"cookie", cookie.encode())] if cookie else [])
        comm = WebsocketCommunicator(application, path, headers=headers)
        connected, code = await comm.connect(timeout=20)
        await comm.disconnect()
        return connected, code

    return async_to_sync(go)()


@pytest.mark.django_db(transaction=True)
def test_websocket_routes_for_every_user(django_user_model):
    from apps.control.services import Actor, create_paper_session

    sid = create_paper_session(Actor(label="t"), name="ws-matrix", seed=2, start=False).pk
    cookies = {user: cookie_for(make_user(user, f"ws-{user}")) for user in ROLE_OF_USER}
    cookies["anonymous"] = None
    paths = _ws_paths(sid)
    assert any(live for _p, live in paths) and any(not live for _p, live in paths)
    for path, live in paths:
        routed = resolve_ws(path)
        for user in USERS:
            got = _connect(path, cookies[user])
            if not routed:
                expected = (False, 4404)  # the catch-all, before any login check
            elif user == "anonymous":
                expected = (False, 4401)
            elif user == "none":
                expected = (False, 4403)
            else:
                expected = (True, None) if live else (False, 4404)
            assert got == expected, (path, user, got)


def resolve_ws(path: str) -> bool:
    """Whether ``path`` reaches a live-session consumer (not the catch-all)."""
    return any(
        str(p.pattern) not in ("", "^") and p.pattern.match(path.lstrip("/")) is not None for p in websocket_urlpatterns
    )
