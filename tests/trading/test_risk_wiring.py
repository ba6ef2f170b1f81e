"""Automatic risk rules inside the real quoting loop: a trip is recorded once, latches through the control
services (audited), and the gateway enforces it."""

from __future__ import annotations

import threading
import time

import pytest

from apps.control.models import AuditEvent
from apps.control.services import Actor, create_paper_session
from apps.engine.risk.session import build_risk_engine
from apps.trading.loop import QuotingLoop
from apps.trading.models import Order, OrderEventRecord, RiskEventRecord, TradingSession
from tests.conftest import wait_until as _wait

FAST = {"sigma_bucket_s": 0.25, "sigma_min_buckets": 8, "kappa_min_volume": 0.05}


@pytest.mark.django_db(transaction=True)
def test_a_position_limit_trip_puts_the_session_in_reducing_mode_and_records_why():
    params = {"strategy": {**FAST, "max_inventory": 0.05}, "risk": {"position_limit": {"max_position": 0.005}}}
    session = create_paper_session(Actor(label="t"), name="risk", params=params, seed=5, start=False)
    loop = QuotingLoop(session.pk)
    thread = threading.Thread(target=loop.run, kwargs={"max_seconds": 40})
    thread.start()
    try:
        assert _wait(lambda: TradingSession.objects.get(pk=session.pk).status == "reducing", 35), "never tripped"
        # risk events go through the batched writer with the other records: they land a flush later
        assert _wait(lambda: RiskEventRecord.objects.filter(session=session, rule="position_limit").exists(), 5)
        event = RiskEventRecord.objects.filter(session=session, rule="position_limit").first()
        assert event is not None and event.action == "reduce"
        assert event.values["max_position"] == 0.005 and abs(event.values["position"]) >= 0.005
        assert AuditEvent.objects.filter(
            session=session, action="session.reduce", actor_label="risk:position_limit"
        ).exists()
        q0 = loop.core.tracker.position
        t = time.time_ns()
        time.sleep(1.5)
        # in REDUCING only orders that shrink |q| go out. The position is read before the window: a reducing fill
        # inside it may take q to 0 (then nothing more goes out), and it never crosses 0, so an order on q0's own
        # side (either side when q0 = 0) would have grown |q| whenever it was placed
        growing = {1} if q0 > 0 else {-1} if q0 < 0 else {1, -1}
        late = OrderEventRecord.objects.filter(session=session, kind="place", ts_ns__gt=t)
        assert not [e.detail["side"] for e in late if e.detail["side"] in growing]
        assert (
            RiskEventRecord.objects.filter(session=session, rule="position_limit").exclude(action="cleared").count()
            == 1
        ), "one episode must be recorded once"
    finally:
        TradingSession.objects.filter(pk=session.pk).update(status="stopped")
        thread.join(15)
    assert not Order.objects.filter(session=session, status__in=Order.OPEN_STATUSES).exists()


def test_risk_config_errors_name_the_rule_and_field():
    with pytest.raises(ValueError, match="unknown rule"):
        build_risk_engine({"positon_limit": {}}, 0.1)
    with pytest.raises(ValueError, match=r"params.risk.drawdown: unknown field"):
        build_risk_engine({"drawdown": {"max_dd": 1}}, 0.1)
    with pytest.raises(ValueError, match="capital_quote"):
        build_risk_engine({"capital_quote": -5}, 0.1)
    with pytest.raises(ValueError, match=r"params\.risk\.position_limit"):
        build_risk_engine({"position_limit": {"max_position": -1.0}}, 0.1)


@pytest.mark.django_db(transaction=True)
def test_a_feed_disconnect_pulls_quotes_at_once_and_quoting_resumes_only_after_resync():
    params = {"strategy": FAST, "feed": {"outages": [[14.0, 2.0]], "backoff": {"base_s": 0.2, "cap_s": 1.0}}}
    session = create_paper_session(Actor(label="t"), name="feed", params=params, seed=9, start=False)
    loop = QuotingLoop(session.pk)
    thread = threading.Thread(target=loop.run, kwargs={"max_seconds": 22})
    thread.start()
    thread.join(60)
    down = RiskEventRecord.objects.get(session=session, rule="feed_disconnect")
    up = RiskEventRecord.objects.get(session=session, rule="feed_reconnect")
    assert 2.0 <= (up.ts_ns - down.ts_ns) / 1e9 < 4.0  # the outage, plus at most one back-off step
    assert down.values["open_orders_at_disconnect"] > 0, "nothing was resting when the feed dropped"
    pulled = OrderEventRecord.objects.filter(session=session, kind="emergency_cancel_all", ts_ns__gte=down.ts_ns)
    assert pulled.exists() and (pulled.order_by("ts_ns").first().ts_ns - down.ts_ns) < 200_000_000
    during = OrderEventRecord.objects.filter(session=session, kind="place", ts_ns__gt=down.ts_ns, ts_ns__lt=up.ts_ns)
    assert not during.exists(), "quoted while the feed was down"
    after = OrderEventRecord.objects.filter(session=session, kind="place", ts_ns__gt=up.ts_ns)
    assert after.exists(), "never quoted again after the reconnect"
    assert not Order.objects.filter(session=session, status__in=Order.OPEN_STATUSES).exists()
