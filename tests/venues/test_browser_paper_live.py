"""Paper trading on live Binance data, end to end in headless Chromium: the real stack (daphne + Celery worker +
PostgreSQL + Redis) with the worker's MM_BINANCE_* settings pointing at the local replay server of the shared USD-M
recording. The live page shows the feed live, our quotes and paper fills; the kill switch gives HALTED with zero
open orders. Screenshots go to test-artifacts/ (gitignored)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from apps.control.services import Actor, create_live_data_session
from apps.marketdata.models import DepthUpdateRecord
from apps.trading.models import Order, TradingSession
from tests.conftest import shared_data
from tests.test_browser import _text, _wait_js, browser_page  # noqa: F401  (the fixture)
from tests.venues.binance_server import BinanceReplayServer, load_recording
from tests.venues.test_paper_live import INSTRUMENT, PARAMS

pytestmark = [pytest.mark.browser, pytest.mark.stack]
ARTIFACTS = Path(__file__).resolve().parent.parent.parent / "test-artifacts"


@pytest.fixture
def binance_for_stack(monkeypatch):
    """The replay server, and the environment the stack's worker is started with pointing at it (live_stack copies
    os.environ): request it before ``live_stack``."""
    path = shared_data("hftbacktest-binance-usdm-btcusdt-20240808", "raw", "usdm_btcusdt_20240808.gz")
    srv = BinanceReplayServer([load_recording(Path(path), 40_000)], speed=3.0, restamp=True).start()
    monkeypatch.setenv("MM_BINANCE_WS_URL", srv.base_ws)
    monkeypatch.setenv("MM_BINANCE_REST_URL", srv.base_http)
    yield srv
    srv.stop()


def test_a_paper_session_on_live_binance_data_quotes_fills_and_halts_in_the_browser(
    binance_for_stack,
    live_stack,
    operator,
    browser_page,  # noqa: F811 - the fixture imported above
):
    ARTIFACTS.mkdir(exist_ok=True)
    page = browser_page
    session = create_live_data_session(
        Actor(label="test"), name="browser-binance", instrument=INSTRUMENT, params=PARAMS
    )
    page.goto(f"{live_stack.url}/sessions/{session.pk}/")
    page.fill("#id_username", "op")
    page.fill("#id_password", "op-password-123")
    page.click("#login-submit")
    page.wait_for_url(f"**/sessions/{session.pk}/")

    # the feed row of the market panel: the connector's state and the age of its last message, in seconds
    _wait_js(
        page,
        "/feed binance binance-usdm:BTCUSDT\\s*live · last message [0-9.]+ s ago/.test("
        "document.querySelector('#book').innerText)",
        timeout=60_000,
    )
    _wait_js(page, "document.querySelector('#v-bid').innerText.trim() !== '—'", timeout=60_000)
    _wait_js(page, "Number(document.querySelector('#v-fills').innerText) > 0", timeout=60_000)
    assert _text(page, "#session-status") == "running"
    assert page.locator("#recent-fills tbody tr").count() >= 1
    assert DepthUpdateRecord.objects.filter(instrument_id=session.instrument_id).exists()  # L2 recorded
    page.screenshot(path=str(ARTIFACTS / "paper-live-binance-running.png"), full_page=True)

    page.click("#halt-button")
    page.wait_for_selector("#halt-confirm")
    page.fill("#halt-reason", "browser paper-live test")
    page.click("#halt-confirm")
    _wait_js(page, "document.querySelector('#session-status').innerText.trim() === 'halted'", timeout=15_000)
    _wait_js(page, "document.querySelector('#v-open-orders').innerText.trim() === '0'", timeout=15_000)
    deadline = time.monotonic() + 10
    while (
        time.monotonic() < deadline and Order.objects.filter(session=session, status__in=Order.OPEN_STATUSES).exists()
    ):
        time.sleep(0.1)
    assert not Order.objects.filter(session=session, status__in=Order.OPEN_STATUSES).exists()
    assert TradingSession.objects.get(pk=session.pk).status == TradingSession.Status.HALTED
    page.screenshot(path=str(ARTIFACTS / "paper-live-binance-halted.png"), full_page=True)
