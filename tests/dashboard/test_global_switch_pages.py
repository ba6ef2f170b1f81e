"""The global kill switch on every session's page: effective status, the actions that make sense, the audit
trail, and a re-arm that brings sessions back paused (issue 13). Real views, real PostgreSQL."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

from apps.control.models import AuditEvent
from apps.control.services import Actor, create_paper_session, halt_session, rearm_all, reduce_all
from apps.trading.models import TradingSession

Status = TradingSession.Status


def _session(name: str, status: str = Status.RUNNING, mode: str = TradingSession.Mode.PAPER) -> TradingSession:
    session = create_paper_session(Actor(label="test"), name=name, seed=11, start=False)
    TradingSession.objects.filter(pk=session.pk).update(status=status, mode=mode)  # as if its loop had started
    session.refresh_from_db()
    return session


def _shown_status(html: str) -> str:
    m = re.search(r'id="session-status"[^>]*>([^<]*)<', html)
    assert m, "no status on the page"
    return m.group(1).strip()


@pytest.fixture
def logged_in(client, operator):
    client.force_login(operator)
    return client


def test_a_session_under_a_global_halt_renders_as_halted(logged_in, operator):
    session = _session("under-global-halt")
    page = reverse("dashboard:session", args=[session.pk])
    assert _shown_status(logged_in.get(page).content.decode()) == "running"

    resp = logged_in.post(reverse("dashboard:global_switch"), {"action": "halt", "reason": "venue incident"})
    assert resp.status_code == 200
    session.refresh_from_db()
    assert session.status == Status.RUNNING  # its own status is untouched; the switch above it decides

    html = logged_in.get(page).content.decode()
    assert _shown_status(html) == "halted"
    assert "HALTED by the global kill switch: venue incident" in html
    assert "not quoting: session halted" in html
    # no action that pretends the session quotes: no pause, reduce, resume, flatten, per-session kill switch
    for button in ("pause-button", "reduce-button", "resume-button", "flatten-button", "halt-button"):
        assert f'id="{button}"' not in html, button
    assert 'id="stop-button"' in html
    # the partial the page refreshes on a status change says the same
    controls = logged_in.get(reverse("dashboard:controls", args=[session.pk])).content.decode()
    assert 'id="controls-status">halted<' in controls and 'id="pause-button"' not in controls
    # the sessions list too
    home = logged_in.get(reverse("dashboard:home")).content.decode()
    assert re.search(rf"sessions/{session.pk}/.*?status-halted[^>]*>halted<", home, re.S)
    # and the global halt is in the session's audit trail
    audit = html.split("Audit trail", 1)[1]
    assert "global.halted" in audit and "venue incident" in audit


def test_a_global_reduce_shows_as_reducing_and_still_offers_pause(logged_in):
    session = _session("under-global-reduce")
    reduce_all(Actor(label="risk-desk"), "thin book")
    html = logged_in.get(reverse("dashboard:session", args=[session.pk])).content.decode()
    assert _shown_status(html) == "reducing"
    assert 'id="pause-button"' in html and 'id="reduce-button"' not in html and 'id="resume-button"' not in html


def test_a_global_rearm_brings_sessions_back_paused_and_audits_each(logged_in, operator):
    running = _session("was-running")
    reducing = _session("was-reducing", Status.REDUCING)
    paused = _session("was-paused", Status.PAUSED)
    own_halt = _session("halted-on-its-own")
    halt_session(Actor(label="test"), own_halt.pk, "its own kill switch")
    stopped = _session("stopped", Status.STOPPED)
    backtest = _session("a backtest", Status.RUNNING, TradingSession.Mode.BACKTEST)

    logged_in.post(reverse("dashboard:global_switch"), {"action": "halt", "reason": "venue incident"})
    resp = logged_in.post(reverse("dashboard:global_switch"), {"action": "rearm", "reason": "incident over"})
    assert resp.status_code == 200

    def status(s: TradingSession) -> str:
        s.refresh_from_db()
        return s.status

    assert status(running) == status(reducing) == status(paused) == Status.PAUSED
    assert status(own_halt) == Status.HALTED  # its own latch needs its own re-arm
    assert status(stopped) == Status.STOPPED
    assert status(backtest) == Status.RUNNING  # the switch does not govern a backtest
    for s, previous in ((running, "running"), (reducing, "reducing")):
        row = AuditEvent.objects.get(session=s, action="session.pause")
        assert row.actor == operator and row.detail == {"previous": previous, "by": "global.armed"}
        assert "incident over" in row.reason
    assert not AuditEvent.objects.filter(session=paused, action="session.pause").exists()

    html = logged_in.get(reverse("dashboard:session", args=[running.pk])).content.decode()
    assert _shown_status(html) == "paused" and 'id="resume-button"' in html
    audit = html.split("Audit trail", 1)[1]
    assert audit.index("session.pause") < audit.index("global.armed") < audit.index("global.halted")  # newest first


def test_a_global_rearm_after_a_reduce_only_does_not_pause(logged_in, operator):
    session = _session("reduce-then-rearm")
    reduce_all(Actor(label="risk-desk"), "thin book")
    rearm_all(Actor.of(operator), "book refilled")
    session.refresh_from_db()
    assert session.status == Status.RUNNING  # like a session's resume from reducing


def test_global_events_before_a_session_existed_are_not_in_its_trail(logged_in, operator):
    reduce_all(Actor(label="risk-desk"), "long ago")
    rearm_all(Actor.of(operator), "long ago over")
    session = _session("born-later")
    audit = logged_in.get(reverse("dashboard:session", args=[session.pk])).content.decode().split("Audit trail")[1]
    assert "long ago" not in audit and "session.create" in audit


def test_stop_and_flatten_is_refused_under_a_global_halt(logged_in):
    session = _session("flatten-under-global-halt")
    logged_in.post(reverse("dashboard:global_switch"), {"action": "halt", "reason": "venue incident"})
    resp = logged_in.post(reverse("dashboard:action", args=[session.pk, "stop"]), {"flatten": "1", "reason": "x"})
    assert resp.status_code == 400 and "global kill switch is HALTED" in resp.content.decode()
    session.refresh_from_db()
    assert session.status == Status.RUNNING


def test_the_json_api_reports_the_status_the_loop_obeys_under_a_global_halt(logged_in):
    session = _session("api-under-global-halt")
    logged_in.post(reverse("dashboard:global_switch"), {"action": "halt", "reason": "venue incident"})
    resp = logged_in.post(reverse("dashboard:action", args=[session.pk, "pause"]), {}, HTTP_ACCEPT="application/json")
    assert resp.status_code == 200 and resp["Content-Type"] == "application/json"
    body = resp.json()
    assert body["status"] == "halted" and body["own_status"] == "paused" and body["global_state"] == "halted"
    assert body["reason"] == "venue incident"
