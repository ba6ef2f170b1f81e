"""The permission matrix, generated from the URL conf and the WebSocket routes, so that a new view or route
without a check fails here.

For every URL (path converters filled with an existing session id and sample values) and each kind of user:

- anonymous: GET and POST answer a redirect to the login page, or 401 (JSON for an API client);
- logged in, no role (not staff): POST answers 403 (a state-changing endpoint) or 405 (a read-only one), and
  nothing in the database changes, whatever the method;
- staff: never 403.

Only the explicit allow-list below is exempt.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from asgiref.sync import async_to_sync
from channels.testing import WebsocketCommunicator
from django.urls import URLPattern, URLResolver, get_resolver

from apps.control.models import AuditEvent, GlobalKillSwitch
from apps.live.routing import websocket_urlpatterns
from apps.trading.models import TradingSession
from mmweb.asgi import application
from tests.security.conftest import cookie_for

# Public or separately guarded, and why. Anything else must pass the matrix.
EXEMPT_PREFIXES = (
    "admin/",  # Django's admin: its own staff check and login (covered by its own tests and by axes)
)
EXEMPT_NAMES = {
    "login",  # the login form itself is public (throttled by axes)
    "logout",  # logging out needs no login
}
# Static files are served by ASGIStaticFilesHandler in front of the URL conf, so they are not in it.

# Sample values for path parameters, by name; an int parameter gets the session's id.
SAMPLES = {"action": ["pause", "resume", "reduce", "rearm", "stop", "halt", "no-such-action"]}
POST_DATA = {"reason": "matrix probe", "action": "halt"}


@dataclass(frozen=True)
class Route:
    name: str
    path: str


def _walk(patterns, prefix: str = "", namespace: str = "") -> Iterator[tuple[str, str, URLPattern]]:
    for p in patterns:
        if isinstance(p, URLResolver):
            ns = f"{namespace}{p.namespace}:" if p.namespace else namespace
            yield from _walk(p.url_patterns, prefix + str(p.pattern), ns)
        else:
            yield prefix + str(p.pattern), f"{namespace}{p.name or ''}", p


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
    for template, name, _p in _walk(get_resolver().url_patterns):
        if template.startswith(EXEMPT_PREFIXES) or name in EXEMPT_NAMES:
            continue
        assert "(?" not in template and "^" not in template, f"regex route {template}: give it samples here"
        out += [Route(name, path) for path in _fill(template, session_id)]
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


def _is_login_redirect(resp) -> bool:
    return resp.status_code == 302 and resp["Location"].startswith("/login/")


def test_anonymous_users_are_sent_to_log_in_everywhere(client, running):
    for route in routes(running.pk):
        for method in ("get", "post"):
            resp = getattr(client, method)(route.path, POST_DATA if method == "post" else None)
            assert _is_login_redirect(resp) or resp.status_code == 401, (method, route, resp.status_code)
            api = getattr(client, method)(
                route.path, POST_DATA if method == "post" else None, HTTP_ACCEPT="application/json"
            )
            assert _is_login_redirect(api) or api.status_code == 401, (method, route, api.status_code)


def test_users_without_a_role_cannot_change_anything(client, viewer, running):
    client.force_login(viewer)
    before = _snapshot()
    for route in routes(running.pk):
        resp = client.post(route.path, POST_DATA)
        assert resp.status_code in (403, 405), (route, resp.status_code, resp.content[:200])
        api = client.post(route.path, POST_DATA, HTTP_ACCEPT="application/json")
        assert api.status_code in (403, 405), (route, api.status_code)
        got = client.get(route.path)
        assert got.status_code in (200, 400, 404, 405), (route, got.status_code)
        assert got.status_code != 405 or resp.status_code == 403, f"{route}: neither GET nor POST answers"
    assert _snapshot() == before


def test_state_changing_endpoints_are_the_ones_marked_so(running):
    """Each view that answers POST carries the ``action_view`` guard (the marker it sets)."""
    for template, name, p in _walk(get_resolver().url_patterns):
        if template.startswith(EXEMPT_PREFIXES) or name in EXEMPT_NAMES:
            continue
        view = p.callback
        if getattr(view, "state_changing", False):
            continue
        # a read view: it must refuse POST outright (require_GET), checked by the matrix above as 405
        assert name in {
            "dashboard:home",
            "dashboard:sessions_table",
            "dashboard:session",
            "dashboard:session_pnl",
            "dashboard:controls",
            "dashboard:kill_switch",
        }, f"{name} is neither an action_view nor a known read view"


def test_staff_users_are_never_refused(client, staff, running):
    client.force_login(staff)
    for route in routes(running.pk):
        for method in ("get", "post"):
            resp = getattr(client, method)(route.path, POST_DATA if method == "post" else None)
            assert resp.status_code not in (401, 403) and not _is_login_redirect(resp), (method, route)


# --- the WebSocket routes ----------------------------------------------------------------------------------------

ORIGIN = (b"origin", b"http://127.0.0.1:8000")


def _ws_paths(session_id: int) -> list[tuple[str, bool]]:
    """(path, is a live-session route) for every route in apps/live/routing.py."""
    out = []
    for p in websocket_urlpatterns:
        template = str(p.pattern)
        if template in ("", "^"):  # the catch-all that refuses anything else
            out += [("/ws/sessions/abc/", False), ("/ws/unknown/", False)]
        else:
            out += [(path, True) for path in _fill(template, session_id)]
    return out


def _connect(path: str, cookie: str | None) -> tuple[bool, int | None]:
    async def go():
        headers = [ORIGIN] + ([(b"cookie", cookie.encode())] if cookie else [])
        comm = WebsocketCommunicator(application, path, headers=headers)
        connected, code = await comm.connect(timeout=5)
        await comm.disconnect()
        return connected, code

    return async_to_sync(go)()


@pytest.mark.django_db(transaction=True)
def test_websocket_routes_for_anonymous_no_role_and_staff_users(django_user_model):
    from apps.control.services import Actor, create_paper_session

    sid = create_paper_session(Actor(label="t"), name="ws-matrix", seed=2, start=False).pk
    from tests.roles import make_user

    viewer = make_user("viewer", "ws-viewer")
    staff = make_user("operator", "ws-staff")
    paths = _ws_paths(sid)
    assert any(live for _p, live in paths) and any(not live for _p, live in paths)
    for path, live in paths:
        assert _connect(path, None) == (False, 4401 if live else 4404), path
        # reading is open to every role (apps.control.permissions.can_read)
        assert _connect(path, cookie_for(viewer))[0] is live, path
        assert _connect(path, cookie_for(staff))[0] is live, path
