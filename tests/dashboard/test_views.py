from __future__ import annotations

import pytest
from django.urls import reverse

from apps.control.models import AuditEvent
from apps.control.services import Actor, create_paper_session
from apps.trading.models import Order, TradingSession


@pytest.fixture
def session(db):
    return create_paper_session(Actor(label="test"), name="view-test", seed=3, start=False)


def test_pages_need_a_login(client, session):
    for url in (reverse("dashboard:home"), reverse("dashboard:session", args=[session.pk])):
        resp = client.get(url)
        assert resp.status_code == 302 and resp["Location"].startswith(reverse("login"))


def test_the_session_page_shows_the_live_tiles_and_the_websocket_address(client, operator, session):
    client.force_login(operator)
    resp = client.get(reverse("dashboard:session", args=[session.pk]))
    html = resp.content.decode()
    assert resp.status_code == 200
    assert f'data-ws-path="/ws/sessions/{session.pk}/"' in html  # static/js/session.js opens it
    assert "vendor/uplot/uPlot.iife.min.js" in html and 'id="price-chart"' in html and 'id="pnl-parts-chart"' in html
    assert 'id="live-bootstrap"' in html and 'type="application/json"' in html  # data for the JS, not a script
    for tile in ("v-mid", "v-bid", "v-ask", "v-spread", "v-kappa", "v-sigma", "v-inventory", "v-pnl"):
        assert f'id="{tile}"' in html
    assert "htmx-2.0.8.min.js" in html and 'id="halt-button"' in html


def test_the_kill_switch_asks_for_confirmation_before_halting(client, operator, session):
    client.force_login(operator)
    resp = client.get(reverse("dashboard:kill_switch", args=[session.pk]), {"confirm": "1"})
    assert 'id="halt-confirm"' in resp.content.decode()
    session.refresh_from_db()
    assert session.status == TradingSession.Status.CREATED  # asking is not acting


def test_halting_latches_the_session_cancels_orders_and_audits_who_and_why(client, operator, session):
    from django.utils import timezone

    now = timezone.now()
    Order.objects.create(
        session=session,
        client_order_id="x-1",
        side=1,
        price=1.0,
        size=1.0,
        status="open",
        created_ts=now,
        updated_ts=now,
    )
    client.force_login(operator)
    resp = client.post(reverse("dashboard:halt", args=[session.pk]), {"reason": "fat finger"})
    assert resp.status_code == 200 and "HALTED" in resp.content.decode()
    session.refresh_from_db()
    assert session.status == TradingSession.Status.HALTED
    assert not Order.objects.filter(session=session, status__in=Order.OPEN_STATUSES).exists()
    audit = AuditEvent.objects.get(session=session, action="session.halt")
    assert audit.actor == operator and audit.reason == "fat finger"


def test_halting_without_a_reason_is_refused_and_changes_nothing(client, operator, session):
    client.force_login(operator)
    resp = client.post(reverse("dashboard:halt", args=[session.pk]), {"reason": "  "})
    assert resp.status_code == 400 and "needs a reason" in resp.content.decode()
    session.refresh_from_db()
    assert session.status == TradingSession.Status.CREATED


def test_halt_is_post_only(client, operator, session):
    client.force_login(operator)
    assert client.get(reverse("dashboard:halt", args=[session.pk])).status_code == 405


def test_an_unknown_session_is_a_404(client, operator):
    client.force_login(operator)
    assert client.get(reverse("dashboard:session", args=[999999])).status_code == 404


def test_lifecycle_buttons_pause_resume_and_a_halted_session_needs_an_operator_rearm(client, operator, session):
    from django.urls import reverse

    TradingSession.objects.filter(pk=session.pk).update(status="running")
    client.force_login(operator)
    url = lambda a: reverse("dashboard:action", args=[session.pk, a])  # noqa: E731
    assert client.post(url("pause"), {"reason": "lunch"}).status_code == 200
    assert TradingSession.objects.get(pk=session.pk).status == "paused"
    assert client.post(url("resume"), {}).status_code == 200
    assert TradingSession.objects.get(pk=session.pk).status == "running"
    client.post(reverse("dashboard:halt", args=[session.pk]), {"reason": "x"})
    resp = client.post(url("resume"), {})
    assert resp.status_code == 400 and "cannot resume" in resp.content.decode()
    resp = client.post(url("rearm"), {"reason": "checked"})
    assert resp.status_code == 200 and TradingSession.objects.get(pk=session.pk).status == "paused"
    actions = list(AuditEvent.objects.filter(session=session).values_list("action", flat=True))
    for a in ("session.pause", "session.resume", "session.halt", "session.rearm"):
        assert a in actions
    assert client.post(url("explode"), {}).status_code == 404


def test_the_global_switch_halts_with_a_reason_and_rearms(client, operator, session):
    from apps.control.models import GlobalKillSwitch

    client.force_login(operator)
    resp = client.post(reverse("dashboard:global_switch"), {"action": "halt", "reason": ""})
    assert resp.status_code == 400 and GlobalKillSwitch.current().state == "armed"
    resp = client.post(reverse("dashboard:global_switch"), {"action": "halt", "reason": "exchange incident"})
    assert resp.status_code == 200 and GlobalKillSwitch.current().state == "halted"
    assert 'id="global-state"' in client.get(reverse("dashboard:home")).content.decode()
    client.post(reverse("dashboard:global_switch"), {"action": "rearm", "reason": "resolved"})
    assert GlobalKillSwitch.current().state == "armed"
    assert AuditEvent.objects.filter(action="global.halted", reason="exchange incident").exists()


def test_stop_with_flatten_rejects_a_silly_slippage_bound(client, operator, session):
    client.force_login(operator)
    resp = client.post(
        reverse("dashboard:action", args=[session.pk, "stop"]), {"flatten": "1", "max_slippage_bps": "5000"}
    )
    assert resp.status_code == 400 and "max_slippage_bps" in resp.content.decode()
    assert TradingSession.objects.get(pk=session.pk).status == "created"


def test_the_kill_switch_answers_an_api_client_in_json(client, operator, session):
    client.force_login(operator)
    resp = client.post(reverse("dashboard:halt", args=[session.pk]), {"reason": "api"}, HTTP_ACCEPT="application/json")
    assert resp.status_code == 200
    assert resp.json() == {
        "session": session.pk,
        "status": "halted",
        "own_status": "halted",
        "global_state": "armed",
        "reason": "api",
    }
    resp = client.post(
        reverse("dashboard:halt", args=[session.pk + 999]), {"reason": "x"}, HTTP_ACCEPT="application/json"
    )
    assert resp.status_code in (400, 404)


def test_the_session_pnl_panel_shows_inventory_and_pnl_by_bucket(client, operator):
    from django.db import connection

    from tests.trading.pnl_fixture import T0_NS, load, make_record, oracle

    rec = make_record(seed=5)
    with connection.cursor() as cur:
        _iid, sid = load(cur, rec)
    TradingSession.objects.filter(pk=sid).update(ended_at=None, status=TradingSession.Status.STOPPED)
    client.force_login(operator)
    page = client.get(reverse("dashboard:session", args=[sid])).content.decode()
    assert reverse("dashboard:session_pnl", args=[sid]) in page  # the panel loads from the page

    url = reverse("dashboard:session_pnl", args=[sid])
    resp = client.get(url, {"width": "1 minute"})
    html = resp.content.decode()
    assert resp.status_code == 200 and 'id="pnl-chart"' in html and 'id="inventory-chart"' in html
    want = oracle(rec, T0_NS, T0_NS + 301 * 10**9, 60)
    final_inventory, final_pnl = want[-1][2], want[-1][5]
    assert f'<span id="pnl-inventory">{final_inventory:.6f}</span>' in html
    assert f'<span id="pnl-total">{final_pnl:.4f}</span>' in html
    assert html.count("<tr><td>") == len(want)  # one row per minute with fills or quotes
    inventories = [r[2] for r in want]
    assert f"{min(inventories):.6f} … {max(inventories):.6f}" in html  # the inventory line's range, in the legend

    bad = client.get(url, {"width": "1 hour"})
    assert bad.status_code == 400 and "width must be one of" in bad.content.decode()
    assert client.get(reverse("dashboard:session_pnl", args=[sid + 999])).status_code == 404


def test_the_home_page_reports_the_storage_mode(client, operator):
    from apps.marketdata.timescale import db_mode

    client.force_login(operator)
    html = client.get(reverse("dashboard:home")).content.decode()
    mode = db_mode()
    label = "TimescaleDB (hypertables" if mode == "timescaledb" else "plain PostgreSQL (BRIN time indexes"
    assert f"mode <code>{mode}</code>" in html and label in html
