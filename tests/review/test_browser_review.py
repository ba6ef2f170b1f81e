"""In headless Chromium against the real stack (daphne + Celery worker + PostgreSQL + Redis): launch a small backtest
from /review/backtests/, watch its progress pushed over the WebSocket reach done, and follow the link to the
session's review page, where a click on the price chart shows the decision in force at that instant."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from apps.trading.models import BacktestRun
from tests.conftest import BASE_DIR
from tests.review.test_runs import OVERRIDES, VENUE, stored  # noqa: F401 - the fixture
from tests.test_browser import _wait_js, browser_page  # noqa: F401 - the fixture

pytestmark = [pytest.mark.browser, pytest.mark.stack, pytest.mark.django_db(transaction=True)]
ARTIFACTS = BASE_DIR / "test-artifacts"


def test_operator_launches_a_backtest_watches_progress_and_opens_its_review(live_stack, operator, stored, browser_page):  # noqa: F811
    page = browser_page
    page.goto(f"{live_stack.url}/review/backtests/")
    page.fill("#id_username", "op")
    page.fill("#id_password", "op-password-123")
    page.click("#login-submit")
    page.wait_for_url("**/review/backtests/")

    page.select_option("#id_bt-source", "stored")
    page.select_option("#id_bt-stored", f"{VENUE}:BTCUSDT")
    page.select_option("#id_bt-strategy", "glft")
    page.fill("#id_bt-overrides", json.dumps(OVERRIDES))
    page.fill("#id_bt-max_events", "600")
    page.click("#backtest-form-submit")
    page.wait_for_url("**/review/backtests/*/")
    run = BacktestRun.objects.get()
    assert page.url.endswith(f"/review/backtests/{run.pk}/")

    # progress pushed over /ws/backtests/<id>/ until done, then the link to the session's review page
    _wait_js(page, "document.querySelector('#run-status').innerText.trim() === 'done'", timeout=90_000)
    _wait_js(page, "document.querySelector('#run-progress').value === 1", timeout=5_000)
    assert page.locator("#run-processed").inner_text().strip() == "600"
    assert page.locator("#run-total").inner_text().strip() == "600"
    assert page.locator("#run-eta").inner_text().strip() == "0 s"
    link = page.locator("#review-link")
    link.wait_for(timeout=10_000)
    href = link.get_attribute("href")
    run.refresh_from_db()
    assert run.status == "done" and href == f"/review/sessions/{run.session_id}/"
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "review-backtest-done.png"), full_page=True)

    page.click("#review-link")
    page.wait_for_url(f"**/review/sessions/{run.session_id}/")
    # the review page: its charts draw; a click on the price chart shows the decision in force at that instant,
    # with its inputs and parameter version; the analytics and estimator panels load into the page too
    page.wait_for_selector("#review-price canvas", timeout=30_000)
    box = page.locator("#review-price canvas").first.bounding_box()
    assert box is not None
    page.mouse.click(box["x"] + box["width"] * 0.6, box["y"] + box["height"] * 0.5)
    page.wait_for_selector("#decision-panel .decision", timeout=15_000)
    text = page.locator("#decision-panel").inner_text()
    assert "Decision #" in text and "gamma" in text, text[:500]
    assert page.locator("#decision-version").inner_text().strip() == "1"
    page.wait_for_selector("#review-analytics canvas", timeout=30_000)
    page.wait_for_selector("#review-estimators canvas", timeout=30_000)
    shot: Path = ARTIFACTS / "review-backtest-session.png"
    page.screenshot(path=str(shot), full_page=True)
