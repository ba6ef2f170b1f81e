"""Every record (orders, fills, decisions, order events, risk events, estimator snapshots, P&L points, audit rows,
backtest and sweep runs) is read-only in the Django admin, for every user, superusers and the admin role included.

The quoting loop rebuilds a session's position from its fills, so a fill edited in the admin would move the
session's position and P&L with no audit row. Driven through the admin's real views with a superuser client and
with an admin-role client (not a superuser: its model permissions come from the role).
"""

from __future__ import annotations

import pytest
from django.urls import reverse
from django.utils import timezone

from apps.control.models import AuditEvent
from apps.control.services import Actor, create_paper_session
from apps.trading.models import (
    BacktestRun,
    EstimatorSnapshotRecord,
    FillRecord,
    Order,
    OrderEventRecord,
    PnlPoint,
    QuoteDecisionRecord,
    RiskEventRecord,
    SweepRun,
)

RECORDS = ["fill", "order", "audit", "decision", "order_event", "risk_event", "estimator", "pnl", "backtest", "sweep"]


@pytest.fixture
def rows(db):
    session = create_paper_session(Actor(label="test"), name="admin-readonly", seed=5, start=False)
    now = timezone.now()
    fill = FillRecord.objects.create(
        session=session, ts=now, ts_ns=1, client_order_id="c1", fill_id="c1/1", side=1, price=61000.0, size=0.005
    )
    order = Order.objects.create(
        session=session,
        client_order_id="c1",
        side=1,
        price=61000.0,
        size=0.005,
        status="open",
        created_ts=now,
        updated_ts=now,
    )
    audit = AuditEvent.objects.get(session=session, action="session.create")
    at = {"session": session, "ts": now, "ts_ns": 1}
    sweep = SweepRun.objects.create(name="s", data_format="binance_trades")
    return {
        "fill": fill,
        "order": order,
        "audit": audit,
        "decision": QuoteDecisionRecord.objects.create(**at, mid=61000.0, bid_size=0.01, ask_size=0.01),
        "order_event": OrderEventRecord.objects.create(**at, client_order_id="c1", kind="place"),
        "risk_event": RiskEventRecord.objects.create(**at, rule="max_position", action="halt"),
        "estimator": EstimatorSnapshotRecord.objects.create(**at, name="kappa", value=3000.0, state="ok"),
        "pnl": PnlPoint.objects.create(
            **at,
            mid=61000.0,
            position=0.0,
            cash=0.0,
            total=0.0,
            spread_capture=0.0,
            adverse_selection=0.0,
            inventory=0.0,
            fees=0.0,
            funding=0.0,
        ),
        "backtest": BacktestRun.objects.create(strategy="glft", data_format="binance_trades", sweep=sweep),
        "sweep": sweep,
    }


@pytest.fixture(params=["superuser", "admin-role"])
def superuser_client(request, client, django_user_model):
    """A superuser, or an admin by its role only: both see the records and neither may change them."""
    if request.param == "superuser":
        user = django_user_model.objects.create_superuser("root", "root@example.invalid", "root-password-123")
    else:
        from tests.roles import make_user

        user = make_user("admin", "role-admin")
    client.force_login(user)
    return client


def _url(obj, view: str, *args) -> str:
    meta = obj._meta
    return reverse(f"admin:{meta.app_label}_{meta.model_name}_{view}", args=args)


@pytest.mark.parametrize("name", RECORDS)
def test_a_superuser_can_view_but_not_add_change_or_delete(superuser_client, rows, name) -> None:
    obj = rows[name]
    before = {f.attname: getattr(obj, f.attname) for f in obj._meta.concrete_fields}

    assert superuser_client.get(_url(obj, "changelist")).status_code == 200
    page = superuser_client.get(_url(obj, "change", obj.pk))
    assert page.status_code == 200
    html = page.content.decode()
    assert 'name="_save"' not in html and "Delete" not in html.split('id="content-main"')[-1]

    assert superuser_client.get(_url(obj, "add")).status_code == 403
    assert superuser_client.post(_url(obj, "add"), {"size": "5", "reason": "x"}).status_code == 403

    edit = {"size": "5", "price": "1", "reason": "edited", "status": "filled", "action": "edited"}
    assert superuser_client.post(_url(obj, "change", obj.pk), edit).status_code == 403
    assert superuser_client.post(_url(obj, "delete", obj.pk), {"post": "yes"}).status_code == 403
    bulk = {"action": "delete_selected", "_selected_action": [obj.pk], "post": "yes"}
    superuser_client.post(_url(obj, "changelist"), bulk)

    obj.refresh_from_db()
    assert {f.attname: getattr(obj, f.attname) for f in obj._meta.concrete_fields} == before
