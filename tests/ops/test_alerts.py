"""Alert rules, the sweep, notifications and acknowledgement, against real PostgreSQL (and a real quoting loop)."""

from __future__ import annotations

import json
import logging
import threading
import time
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import ClassVar

import pytest
from django.utils import timezone

from apps.control.models import AuditEvent
from apps.control.services import Actor, create_paper_session
from apps.ops.models import Alert, AlertCursor
from apps.ops.services import evaluate_alerts
from apps.trading.loop import QuotingLoop
from apps.trading.models import RiskEventRecord, TradingSession
from tests.conftest import free_port, wait_until
from tests.roles import make_user

FAST = {"sigma_bucket_s": 0.25, "sigma_min_buckets": 8, "kappa_min_volume": 0.05}
# a real rule that trips as soon as the session quotes: one venue message reaches the message-rate limit
TRIP_AT_START = {"strategy": FAST, "risk": {"message_rate": {"max_messages": 1}}}


def _session(params=None, **kw) -> TradingSession:
    return create_paper_session(
        Actor(label="test"), name="ops", params=params or {"strategy": FAST}, seed=3, start=False, **kw
    )


def _risk_row(session, rule: str, action: str, message: str = "", **values) -> RiskEventRecord:
    now = timezone.now()
    return RiskEventRecord.objects.create(
        session=session, ts=now, ts_ns=time.time_ns(), rule=rule, action=action, values=values, message=message
    )


def _live(session, **state) -> None:
    now = timezone.now()
    TradingSession.objects.filter(pk=session.pk).update(
        status="running", started_at=now, heartbeat_at=now, last_state={"ts_ns": time.time_ns(), **state}
    )


@pytest.mark.django_db(transaction=True)
def test_a_risk_rule_tripping_in_the_real_loop_raises_one_alert_and_a_repeat_bumps_it(mailoutbox):
    op = make_user("operator")
    type(op).objects.filter(pk=op.pk).update(email="op@example.test")
    session = _session(TRIP_AT_START)
    evaluate_alerts()  # the first sweep sets the cursor
    loop = QuotingLoop(session.pk, publish=lambda *a: None)
    assert loop.start()
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not RiskEventRecord.objects.filter(session=session).exists():
            loop.step()
            time.sleep(0.05)
    finally:
        loop.finish()
    trip = RiskEventRecord.objects.filter(session=session, rule="message_rate").exclude(action="cleared").first()
    assert trip is not None and trip.action == "pull_quotes"

    result = evaluate_alerts()
    alert = Alert.objects.get(session=session, rule="risk_trip")
    assert result.raised == [alert.pk]
    assert alert.subject == "message_rate" and alert.severity == "warning" and alert.count == 1
    assert "message_rate" in alert.message and alert.values["action"] == "pull_quotes"
    assert len(mailoutbox) == 1 and mailoutbox[0].to == ["op@example.test"]
    assert "risk_trip" in mailoutbox[0].subject and alert.message in mailoutbox[0].body

    assert evaluate_alerts().raised == []  # nothing new: nothing changes
    _risk_row(session, "message_rate", "pull_quotes", "message rate over the limit")
    result = evaluate_alerts()
    assert result.raised == [] and result.bumped == 1
    alert.refresh_from_db()
    assert alert.count == 2 and alert.last_seen > alert.first_seen
    assert Alert.objects.filter(session=session).count() == 1 and len(mailoutbox) == 1


@pytest.mark.django_db(transaction=True)
def test_skew_alarm_drawdown_and_other_trips_map_to_their_rules_and_cleared_rows_raise_nothing(mailoutbox):
    session = _session()
    evaluate_alerts()
    _risk_row(session, "skew_alarm", "warn", "skew too small", position=0.02, skew_bps=0.1)
    _risk_row(session, "drawdown", "halt", "drawdown 6 % >= 5 %", drawdown_frac=0.06)
    _risk_row(session, "position_limit", "reduce", "|q| over the limit")
    _risk_row(session, "crossed_book", "cleared")
    _risk_row(session, "clock_skew", "warn")  # a warn-only rule other than the skew alarm is not an alert
    assert len(evaluate_alerts().raised) == 3
    got = {a.rule: (a.subject, a.severity) for a in Alert.objects.filter(session=session)}
    assert got == {
        "skew_alarm": ("skew_alarm", "warning"),
        "drawdown": ("drawdown", "critical"),
        "risk_trip": ("position_limit", "warning"),
    }
    assert Alert.objects.get(rule="drawdown").values["drawdown_frac"] == 0.06


@pytest.mark.django_db(transaction=True)
def test_the_first_sweep_reads_only_the_lookback_window(settings):
    session = _session()
    old = timezone.now() - timedelta(seconds=settings.MM_ALERT_LOOKBACK_S + 60)
    RiskEventRecord.objects.create(session=session, ts=old, ts_ns=0, rule="drawdown", action="halt", values={})
    assert evaluate_alerts().raised == []
    assert AlertCursor.objects.get(name="risk_events").last_id >= 0


@pytest.mark.django_db(transaction=True)
def test_a_failed_estimator_raises_once_stays_quiet_after_ack_while_it_persists_and_raises_again_later(settings):
    settings.MM_ALERT_FEED_STALE_S = settings.MM_ALERT_HEARTBEAT_STALE_S = 3600  # the clock jumps ahead below
    op = make_user("operator")
    session = _session()
    _live(session, kappa_state="failed", sigma_state="ok")
    now = timezone.now()
    first = evaluate_alerts(now)
    alert = Alert.objects.get(session=session, rule="estimator_failed")
    assert first.raised == [alert.pk] and alert.subject == "kappa" and "κ estimator is failed" in alert.message
    assert evaluate_alerts(now + timedelta(seconds=2)).bumped == 1
    from apps.ops.services import acknowledge

    acknowledge(alert.pk, op)
    # still failed: the acknowledged episode continues, no new alert
    for dt in (4, 6, 8):
        _live(session, kappa_state="failed")
        assert evaluate_alerts(now + timedelta(seconds=dt)).raised == []
    _live(session, kappa_state="ok")
    assert evaluate_alerts(now + timedelta(seconds=10)).raised == []
    _live(session, kappa_state="failed")
    assert len(evaluate_alerts(now + timedelta(seconds=60)).raised) == 1  # a new episode
    assert Alert.objects.filter(session=session, rule="estimator_failed", acknowledged_at=None).count() == 1


@pytest.mark.django_db(transaction=True)
def test_feed_stale_names_a_silent_loop_or_a_silent_market(settings):
    settings.MM_ALERT_FEED_STALE_S = 5
    settings.MM_ALERT_HEARTBEAT_STALE_S = 10
    quiet_loop, quiet_market, fine = _session(), _session(), _session()
    now = timezone.now()
    for s in (quiet_loop, quiet_market, fine):
        _live(s, kappa_state="ok", sigma_state="ok")
    TradingSession.objects.filter(pk=quiet_loop.pk).update(heartbeat_at=now - timedelta(seconds=30))
    TradingSession.objects.filter(pk=quiet_market.pk).update(last_state={"ts_ns": time.time_ns() - 20 * 10**9})
    evaluate_alerts(now)
    stale = {a.session_id: a for a in Alert.objects.filter(rule="feed_stale")}
    assert set(stale) == {quiet_loop.pk, quiet_market.pk}
    assert stale[quiet_loop.pk].subject == "heartbeat" and stale[quiet_loop.pk].severity == "critical"
    assert stale[quiet_loop.pk].values["threshold_s"] == 10 and stale[quiet_loop.pk].values["heartbeat_age_s"] > 29
    assert stale[quiet_market.pk].subject == "market" and 19 < stale[quiet_market.pk].values["feed_age_s"] < 30


class _Hook(BaseHTTPRequestHandler):
    received: ClassVar[list[dict]] = []

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        _Hook.received.append({"ctype": self.headers["Content-Type"], "body": json.loads(body)})
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.mark.django_db(transaction=True)
def test_a_new_alert_is_posted_to_the_webhook_and_mailed_to_the_configured_recipients(settings, mailoutbox):
    server = HTTPServer(("127.0.0.1", 0), _Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Hook.received = []
    settings.MM_ALERT_WEBHOOK_URL = f"http://127.0.0.1:{server.server_port}/hook"
    settings.MM_ALERT_EMAILS = ["desk@example.test", "risk@example.test"]
    try:
        session = _session()
        evaluate_alerts()
        _risk_row(session, "drawdown", "halt", "drawdown 6 % >= 5 %")
        raised = evaluate_alerts().raised
        assert wait_until(lambda: len(_Hook.received) == 1, 5)
    finally:
        server.shutdown()
    hook = _Hook.received[0]
    assert hook["ctype"] == "application/json"
    assert hook["body"]["alert"]["id"] == raised[0] and hook["body"]["alert"]["rule"] == "drawdown"
    assert hook["body"]["alert"]["session_id"] == session.pk and hook["body"]["alert"]["severity"] == "critical"
    assert len(mailoutbox) == 1 and mailoutbox[0].to == ["desk@example.test", "risk@example.test"]


@pytest.mark.django_db(transaction=True)
def test_a_failing_webhook_or_mail_server_is_logged_and_never_breaks_the_sweep(settings, caplog):
    settings.MM_ALERT_WEBHOOK_URL = f"http://127.0.0.1:{free_port()}/nobody-listens"
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_TIMEOUT = "127.0.0.1", free_port(), 2
    settings.MM_ALERT_EMAILS = ["desk@example.test"]
    session = _session()
    evaluate_alerts()
    _risk_row(session, "drawdown", "halt")
    _risk_row(session, "skew_alarm", "warn")
    with caplog.at_level(logging.ERROR, logger="apps.ops.notify"):
        raised = evaluate_alerts().raised
    assert len(raised) == 2 and Alert.objects.filter(pk__in=raised).count() == 2
    text = caplog.text
    assert "webhook" in text and "failed" in text and "e-mail failed" in text


@pytest.mark.django_db(transaction=True)
def test_acknowledge_needs_an_operator_records_who_and_when_and_an_audit_row(client):
    session = _session()
    evaluate_alerts()
    _risk_row(session, "drawdown", "halt", "drawdown 6 % >= 5 %")
    alert_id = evaluate_alerts().raised[0]
    url = f"/alerts/{alert_id}/acknowledge/"

    assert client.post(url).status_code == 302  # logged out: to the login page
    viewer = make_user("viewer")
    client.force_login(viewer)
    page = client.get("/").content.decode()
    assert f'id="alert-{alert_id}"' in page and "drawdown 6 % &gt;= 5 %" in page
    assert f'id="ack-{alert_id}"' not in page  # a viewer sees it but is offered no button
    assert client.post(url).status_code == 403
    assert client.get(url).status_code == 405

    op = make_user("operator")
    client.force_login(op)
    resp = client.post(url, HTTP_HX_REQUEST="true")
    assert resp.status_code == 200
    body = resp.content.decode()
    assert 'acknowledged by <strong class="ack-by">operator-user</strong>' in body
    assert f'id="alert-{alert_id}"' not in body
    alert = Alert.objects.get(pk=alert_id)
    assert alert.acknowledged_by == op and alert.acknowledged_by_label == "operator-user"
    assert (timezone.now() - alert.acknowledged_at).total_seconds() < 30
    audit = AuditEvent.objects.get(action="alert.acknowledge")
    assert audit.actor == op and audit.session_id == session.pk and audit.detail["alert_id"] == alert_id
    # gone from every page; the alerts page shows who and when
    assert f'id="alert-{alert_id}"' not in client.get("/").content.decode()
    listing = client.get("/alerts/").content.decode()
    assert "by operator-user at" in listing
    again = client.post(url, HTTP_ACCEPT="application/json")
    assert again.status_code == 409 and "already acknowledged by operator-user" in again.json()["error"]
    assert client.post("/alerts/999999/acknowledge/", HTTP_ACCEPT="application/json").status_code == 404


@pytest.mark.django_db
def test_the_banner_partial_refreshes_itself_and_is_not_offered_to_the_logged_out(client):
    assert client.get("/alerts/banner/").status_code == 302
    assert "alert-banner" not in client.get("/login/").content.decode()
    viewer = make_user("viewer")
    client.force_login(viewer)
    html = client.get("/alerts/banner/").content.decode()
    assert 'hx-trigger="every 5s"' in html and 'hx-get="/alerts/banner/"' in html


def test_the_sweep_is_on_the_beat_schedule_beside_the_dead_mans_switch():
    from django.conf import settings

    from mmweb.celery import app

    assert settings.CELERY_BEAT_SCHEDULE["alerts"]["task"] == "apps.ops.tasks.evaluate_alerts"
    assert "dead-mans-switch" in settings.CELERY_BEAT_SCHEDULE
    app.loader.import_default_modules()
    assert "apps.ops.tasks.evaluate_alerts" in app.tasks
