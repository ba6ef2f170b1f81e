"""An alert in headless Chromium against the real stack (daphne + Celery worker + PostgreSQL + Redis): a real risk
rule trips in the worker's quoting loop, the sweep raises an alert, it shows on the page, an operator acknowledges
it, it disappears and the acknowledgement says who and when. Screenshot: test-artifacts/ops-alert-*.png."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from apps.control.services import Actor, create_paper_session, stop_session
from apps.ops.models import Alert
from apps.ops.services import evaluate_alerts
from apps.trading.models import RiskEventRecord
from tests.roles import PASSWORD, make_user
from tests.test_browser import browser_page  # noqa: F401 - the fixture

pytestmark = [pytest.mark.browser, pytest.mark.stack]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
FAST = {"sigma_bucket_s": 0.25, "sigma_min_buckets": 8, "kappa_min_volume": 0.05}
# trips as soon as the session sends its first order (a real rule in the real loop)
PARAMS = {"strategy": FAST, "risk": {"message_rate": {"max_messages": 1}}}


def test_an_operator_sees_a_real_alert_acknowledges_it_and_it_goes_away(live_stack, browser_page):  # noqa: F811
    page = browser_page
    console: list[str] = []
    page.on("console", lambda m: console.append(m.text))
    op = make_user("operator", "alice")
    evaluate_alerts()  # the cursor starts here
    session = create_paper_session(Actor(label="test"), name="alerting", params=PARAMS, seed=4)

    page.goto(f"{live_stack.url}/login/")
    page.fill("#id_username", "alice")
    page.fill("#id_password", PASSWORD)
    page.click("#login-submit")
    page.wait_for_url(f"{live_stack.url}/")
    assert page.locator(".alert").count() == 0

    deadline = time.monotonic() + 60
    raised: list[int] = []
    while time.monotonic() < deadline and not raised:
        time.sleep(0.5)
        raised = evaluate_alerts().raised
    assert raised, f"no alert; risk events: {list(RiskEventRecord.objects.filter(session=session).values())}"
    alert = Alert.objects.get(pk=raised[0])
    assert alert.rule == "risk_trip" and alert.subject == "message_rate"

    # the banner refreshes itself (htmx, every 5 s): no reload
    page.wait_for_selector(f"#alert-{alert.pk}", timeout=15_000)
    assert "message_rate" in page.locator(f"#alert-{alert.pk}").inner_text()
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "ops-alert-open.png"), full_page=True)
    # on every page: the session's page too
    page.goto(f"{live_stack.url}/sessions/{session.pk}/")
    page.wait_for_selector(f"#alert-{alert.pk}")

    page.click(f"#ack-{alert.pk}")
    page.wait_for_selector("#alert-acked")
    acked = page.locator("#alert-acked").inner_text()
    assert "acknowledged by alice at" in acked and "UTC" in acked
    assert page.locator(f"#alert-{alert.pk}").count() == 0
    alert.refresh_from_db()
    assert alert.acknowledged_by == op and alert.acknowledged_at is not None
    assert alert.acknowledged_at.strftime("%Y-%m-%d %H:%M:%S") in acked
    page.screenshot(path=str(ARTIFACTS / "ops-alert-acknowledged.png"), full_page=True)

    # gone on the next page too; the alerts page keeps who and when
    page.goto(f"{live_stack.url}/alerts/")
    assert page.locator(f"#alert-{alert.pk}").count() == 0
    assert "by alice at" in page.locator(f"#alert-row-{alert.pk} .ack-cell").inner_text()
    assert [m for m in console if "Content Security Policy" in m] == []
    stop_session(Actor(label="test"), session.pk, reason="test over")
