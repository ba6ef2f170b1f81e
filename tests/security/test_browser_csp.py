"""The console in headless Chromium under its Content-Security-Policy, against a real daphne: htmx, its WebSocket
extension and the CSRF header still work, nothing is refused by the policy, the reflected-XSS link runs no
script, and a 500-character reason does not widen the page."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from apps.live.broadcast import publish_session_state
from apps.trading.models import TradingSession
from tests.roles import PASSWORD
from tests.test_browser import browser_page  # noqa: F401  (the fixture)

pytestmark = [pytest.mark.browser, pytest.mark.stack]


def _log_in(page, base: str, next_path: str) -> None:
    page.goto(f"{base}{next_path}")
    assert "/login/" in page.url
    page.fill("#id_username", "staff-op")
    page.fill("#id_password", PASSWORD)
    page.click("#login-submit")
    page.wait_for_url(f"**{next_path}")


def test_the_console_works_under_its_csp_and_the_xss_link_runs_nothing(
    bare_daphne,
    staff,
    session,
    browser_page,  # noqa: F811 - the fixture imported above
):
    page = browser_page
    console: list[str] = []
    dialogs: list[str] = []
    page.on("console", lambda m: console.append(m.text))
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    TradingSession.objects.filter(pk=session.pk).update(status="running")
    base = bare_daphne.url

    _log_in(page, base, f"/sessions/{session.pk}/")
    # htmx loaded the P&L panel (hx-trigger=load) and the WebSocket is open: a pushed state shows up
    page.wait_for_selector("#session-pnl", timeout=15_000)
    deadline = time.monotonic() + 15
    shown = False
    while time.monotonic() < deadline and not shown:
        # from another thread: Playwright's sync API runs an event loop in this one
        with ThreadPoolExecutor(1) as pool:
            pool.submit(publish_session_state, session.pk, {"mid": 61234.5, "kappa": 4242.0}, "running").result()
        time.sleep(0.3)
        shown = page.locator("#v-kappa").inner_text().strip() == "4242"
    assert shown, "no live update over the WebSocket under the CSP"

    # the kill switch through htmx: GET the confirm form, POST with the X-CSRFToken header (cookie is HttpOnly)
    assert page.evaluate("document.cookie").find("csrftoken") == -1
    page.click("#halt-button")
    page.wait_for_selector("#halt-confirm")
    reason = "R" * 500  # the longest reason allowed, in one unbroken word
    page.fill("#halt-reason", reason)
    page.click("#halt-confirm")
    page.wait_for_selector("text=HALTED", timeout=15_000)
    assert TradingSession.objects.get(pk=session.pk).status == "halted"
    page.reload()
    page.wait_for_selector("#controls")
    width = page.evaluate("document.documentElement.scrollWidth")
    viewport = page.evaluate("window.innerWidth")
    assert width <= viewport, f"the page is {width}px wide in a {viewport}px window"

    # the probe link from the issue: the value is not echoed, so nothing runs
    page.goto(f"{base}/sessions/{session.pk}/pnl/?width=<img src=x onerror=alert(1)>")
    assert page.locator("img").count() == 0
    page.wait_for_timeout(500)
    assert dialogs == []
    # the admin (its own scripts and styles) under the same policy: the admin role's alone
    from apps.control.permissions import Role, assign_role

    assign_role(staff, Role.ADMIN)
    for path in ("/admin/", "/admin/trading/tradingsession/", f"/admin/trading/tradingsession/{session.pk}/change/"):
        page.goto(f"{base}{path}")
        page.wait_for_load_state("load")
        assert page.locator("#content").count() == 1, path
    violations = [m for m in console if "Content Security Policy" in m]
    assert violations == [], violations


def test_a_viewer_reads_the_page_is_offered_no_action_and_a_forged_one_is_refused(
    bare_daphne,
    viewer,
    session,
    browser_page,  # noqa: F811 - the fixture imported above
):
    page = browser_page
    console: list[str] = []
    page.on("console", lambda m: console.append(m.text))
    TradingSession.objects.filter(pk=session.pk).update(status="running")
    page.goto(f"{bare_daphne.url}/sessions/{session.pk}/")
    page.fill("#id_username", "viewer")
    page.fill("#id_password", PASSWORD)
    page.click("#login-submit")
    page.wait_for_url(f"**/sessions/{session.pk}/")
    page.wait_for_selector("#kill-switch >> text=The kill switch needs the operator role")
    assert page.locator("#read-only-note").count() == 1
    for button in ("#halt-button", "#pause-button", "#stop-button", "#global-switch button"):
        assert page.locator(button).count() == 0, button
    # a hand-made request with the page's own CSRF token (what a script or a copied curl would send) is refused
    status = page.evaluate(
        """async (url) => {
            const token = JSON.parse(document.body.getAttribute("hx-headers"))["X-CSRFToken"];
            const body = new URLSearchParams({reason: "forged"});
            const r = await fetch(url, {method: "POST", body, headers: {"X-CSRFToken": token}});
            return r.status;
        }""",
        f"/sessions/{session.pk}/halt/",
    )
    assert status == 403
    assert TradingSession.objects.get(pk=session.pk).status == "running"
    assert [m for m in console if "Content Security Policy" in m] == []
