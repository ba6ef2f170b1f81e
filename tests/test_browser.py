"""One operator's path in headless Chromium against the real stack: daphne + Celery worker + PostgreSQL + Redis.

Log in, open the live session, watch κ and our quotes change over the WebSocket, press the kill switch, confirm,
and see the session halted with no open order left.
"""

from __future__ import annotations

import os
import shutil
import time

import pytest

from apps.control.services import Actor, create_paper_session
from apps.trading.models import Order, TradingSession

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--no-first-run",
]

pytestmark = [pytest.mark.browser, pytest.mark.stack]


@pytest.fixture
def browser_page(tmp_path):
    if not os.path.exists(CHROMIUM):
        if os.environ.get("MM_REQUIRE_BROWSER"):
            pytest.fail(f"Chromium not found at {CHROMIUM}; .ci/run installs Debian's chromium")
        pytest.skip("Debian's chromium is not installed (apt-get install chromium); CI installs it")
    # Playwright's sync API runs an event loop in this thread; the test's own ORM calls are plain sync code.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        try:
            yield page
        finally:
            shot = os.environ.get("MM_SCREENSHOT") or str(tmp_path / "last.png")
            page.screenshot(path=shot, full_page=True)
            browser.close()
            from django.db import connections

            connections.close_all()  # the ORM calls made under Playwright's greenlet own a connection too
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)


def _text(page, sel: str) -> str:
    return page.locator(sel).inner_text().strip()


def _wait_js(page, expression: str, timeout: int) -> None:
    """Poll a JavaScript condition from Python. Playwright's wait_for_function evaluates its string inside the page,
    which the console's Content-Security-Policy (no eval) refuses; page.evaluate goes through the debugger."""
    deadline = time.monotonic() + timeout / 1000
    while not page.evaluate(expression):
        if time.monotonic() > deadline:
            raise AssertionError(f"not true after {timeout} ms: {expression}")
        time.sleep(0.1)


def test_operator_logs_in_watches_the_live_session_and_halts_it(live_stack, operator, browser_page):
    page = browser_page
    session = create_paper_session(
        Actor(label="test"),
        name="browser",
        seed=11,
        params={"strategy": {"sigma_bucket_s": 0.25, "sigma_min_buckets": 8, "kappa_min_volume": 0.05}},
    )
    page.goto(f"{live_stack.url}/sessions/{session.pk}/")
    assert "/login/" in page.url
    page.fill("#id_username", "op")
    page.fill("#id_password", "op-password-123")
    page.click("#login-submit")
    page.wait_for_url(f"**/sessions/{session.pk}/")

    # live: κ appears and then changes, and our quotes move, all pushed over the WebSocket
    _wait_js(page, "document.querySelector('#v-kappa').innerText.trim() !== '—'", timeout=60_000)
    _wait_js(page, "document.querySelector('#v-bid').innerText.trim() !== '—'", timeout=60_000)
    kappa_0, bid_0, ask_0 = _text(page, "#v-kappa"), _text(page, "#v-bid"), _text(page, "#v-ask")
    _wait_js(page, f"document.querySelector('#v-kappa').innerText.trim() !== {kappa_0!r}", timeout=60_000)
    _wait_js(
        page,
        f"document.querySelector('#v-bid').innerText.trim() !== {bid_0!r} || "
        f"document.querySelector('#v-ask').innerText.trim() !== {ask_0!r}",
        timeout=60_000,
    )
    assert _text(page, "#session-status") == "running"
    spread = float(_text(page, "#v-spread"))
    assert 0 < spread < 50
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not Order.objects.filter(session=session, status="open").exists():
        time.sleep(0.2)
    assert Order.objects.filter(session=session, status="open").exists(), "no resting order before the kill"

    if os.environ.get("MM_SCREENSHOT_RUNNING"):
        page.screenshot(path=os.environ["MM_SCREENSHOT_RUNNING"], full_page=True)

    # kill switch, behind a confirm step
    page.click("#halt-button")
    page.wait_for_selector("#halt-confirm")
    assert TradingSession.objects.get(pk=session.pk).status == "running"
    page.fill("#halt-reason", "browser test")
    page.click("#halt-confirm")
    page.wait_for_selector("text=HALTED")
    _wait_js(page, "document.querySelector('#session-status').innerText.trim() === 'halted'", timeout=15_000)
    deadline = time.monotonic() + 10
    while (
        time.monotonic() < deadline and Order.objects.filter(session=session, status__in=Order.OPEN_STATUSES).exists()
    ):
        time.sleep(0.1)
    assert not Order.objects.filter(session=session, status__in=Order.OPEN_STATUSES).exists()
    if os.environ.get("MM_SCREENSHOT_LIVE"):
        page.screenshot(path=os.environ["MM_SCREENSHOT_LIVE"], full_page=True)
    session.refresh_from_db()
    assert session.status == TradingSession.Status.HALTED and session.status_reason == "browser test"
    _wait_js(page, "document.querySelector('#v-open-orders').innerText.trim() === '0'", timeout=15_000)
    # the control card follows the pushed status: a halted session offers re-arm, not pause
    page.wait_for_selector("#rearm-button", timeout=15_000)
    assert page.locator("#pause-button").count() == 0
