"""Paper trading on live Binance data, end to end in headless Chromium: the real stack (daphne + Celery worker +
PostgreSQL + Redis, as ``make run`` wires them) with the worker's MM_BINANCE_* settings pointing at the local replay
server of the shared USD-M (or spot) recording. The live page shows the feed live with its measured clock offset and
round trip, our quotes and paper fills; trades, top of book, L2 diffs and the sync snapshot are recorded; the kill
switch pressed in the browser gives HALTED with the session's orders cancelled and none open. Screenshots go to
test-artifacts/ (gitignored)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from apps.control.services import Actor, create_live_data_session
from apps.marketdata.models import DepthSnapshotRecord, DepthUpdateRecord, QuoteTick, TradeTick
from apps.trading.models import Order, TradingSession
from tests.conftest import shared_data
from tests.test_browser import _text, _wait_js, browser_page  # noqa: F401  (the fixture)
from tests.venues.binance_server import BinanceReplayServer, load_recording
from tests.venues.test_paper_live import PARAMS

pytestmark = [pytest.mark.browser, pytest.mark.stack]
ARTIFACTS = Path(__file__).resolve().parent.parent.parent / "test-artifacts"


@pytest.fixture(params=["usdm", "spot"])
def binance_for_stack(request, monkeypatch):
    """The replay server of one market ("usdm" or "spot"), and the environment the stack's worker is started with
    pointing at it (live_stack copies os.environ): request it before ``live_stack``."""
    market = request.param
    path = shared_data(f"hftbacktest-binance-{market}-btcusdt-20240808", "raw", f"{market}_btcusdt_20240808.gz")
    srv = BinanceReplayServer([load_recording(Path(path), 40_000)], speed=3.0, restamp=True).start()
    prefix = "MM_BINANCE_SPOT_" if market == "spot" else "MM_BINANCE_"
    monkeypatch.setenv(f"{prefix}WS_URL", srv.base_ws)
    monkeypatch.setenv(f"{prefix}REST_URL", srv.base_http)
    yield f"binance-{market}", srv
    srv.stop()


def test_a_paper_session_on_live_binance_data_quotes_fills_and_halts_in_the_browser(
    binance_for_stack,
    live_stack,
    operator,
    browser_page,  # noqa: F811 - the fixture imported above
):
    ARTIFACTS.mkdir(exist_ok=True)
    venue, srv = binance_for_stack
    page = browser_page
    session = create_live_data_session(
        Actor(label="test"), name="browser-binance", instrument=f"{venue}:BTCUSDT", params=PARAMS
    )
    page.goto(f"{live_stack.url}/sessions/{session.pk}/")
    page.fill("#id_username", "op")
    page.fill("#id_password", "op-password-123")
    page.click("#login-submit")
    page.wait_for_url(f"**/sessions/{session.pk}/")

    # the feed row of the market panel: the connector's state and the age of its last message, in seconds
    _wait_js(
        page,
        f"/feed binance {venue}:BTCUSDT\\s*live · last message [0-9.]+ s ago/.test("
        "document.querySelector('#book').innerText)",
        timeout=60_000,
    )
    # the connector's clock: offset (local - exchange) and round trip, measured, in ms
    _wait_js(
        page,
        "/feed clock offset[^\\n]*\\s+-?[0-9.]+ ms \\/ [0-9.]+ ms/.test(document.querySelector('#book').innerText)",
        timeout=30_000,
    )
    _wait_js(page, "document.querySelector('#v-bid').innerText.trim() !== '—'", timeout=60_000)
    _wait_js(page, "Number(document.querySelector('#v-fills').innerText) > 0", timeout=60_000)
    assert _text(page, "#session-status") == "running"
    assert page.locator("#recent-fills tbody tr").count() >= 1
    iid = session.instrument_id
    for model in (TradeTick, QuoteTick, DepthUpdateRecord, DepthSnapshotRecord):  # market data recorded, L2 too
        assert model.objects.filter(instrument_id=iid).exists(), model.__name__
    assert srv.stats.connections >= 1 and srv.stats.rest_requests >= 1  # the worker's connector, on this server
    page.screenshot(path=str(ARTIFACTS / f"paper-live-{venue}-running.png"), full_page=True)

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
    assert Order.objects.filter(session=session, status=Order.Status.CANCELLED).exists()  # it had orders: cancelled
    assert TradingSession.objects.get(pk=session.pk).status == TradingSession.Status.HALTED
    page.screenshot(path=str(ARTIFACTS / f"paper-live-{venue}-halted.png"), full_page=True)
