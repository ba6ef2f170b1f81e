"""Paper trading on live Binance market data: a session whose feed is the Binance connector (pointed at the local
replay server of the shared USD-M recording) and whose venue is the paper venue, driven one quoting-loop step at a
time on the wall clock (the connector stamps its events with it), against the real database and writer.

It quotes and gets paper fills; trades, top of book, L2 diffs and the resync snapshots are recorded; a diff the
server withholds pulls the quotes until the book is whole again, then quoting resumes; a connection that never
syncs never quotes; the kill switch leaves no open order; the connector stops with the loop.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from apps.control.models import AuditEvent, ParameterVersion
from apps.control.services import Actor, create_live_data_session, halt_session
from apps.engine.market.book import OrderBook
from apps.engine.market.events import DepthSnapshot, DepthUpdate
from apps.engine.risk.gateway import Mode
from apps.engine.risk.rules import CancelRateParams, MessageRateParams
from apps.marketdata.models import DepthSnapshotRecord, DepthUpdateRecord, QuoteTick, TradeTick
from apps.marketdata.selectors import iter_events, stored_range_ns
from apps.trading.loop import QuotingLoop
from apps.trading.models import FillRecord, Order, RiskEventRecord, TradingSession
from tests.conftest import shared_data
from tests.venues.binance_server import BinanceReplayServer, load_recording
from tests.venues.live_checks import assert_skew_measured_and_tripped, flush

INSTRUMENT = "binance-usdm:BTCUSDT"
# quick estimators; no fee and no adverse-selection prior so that the quoter's E[P&L] filter lets the tight GLFT
# quotes of this liquid market through (with the real 2 bps maker fee it rightly quotes nothing at this κ)
SPEED = 4.0  # the replay servers below run the recordings at 4× real time
PARAMS = {
    # the message- and cancel-rate limits count wall-clock seconds: at 4× the market's pace the same quoting sends
    # 4× the messages and cancels per 10 s, so the limits are scaled with it (the spot session tripped the
    # unscaled 250 of each under load)
    "risk": {
        "message_rate": {"max_messages": int(MessageRateParams().max_messages * SPEED)},
        "cancel_rate": {"max_cancels": int(CancelRateParams().max_cancels * SPEED)},
    },
    "strategy": {
        "sigma_bucket_s": 0.25,
        "sigma_min_buckets": 8,
        "kappa_min_volume": 0.05,
        "adverse_selection_bps": 0.0,
        "maker_fee_bps": 0.0,
        # nor the depth-priced fill cost: on spot, once its curve is measured, it rightly quotes ~2 bps out, where
        # a fill can take longer than these tests wait (what it does is tests/engine/quoting/test_depth_pricing.py)
        "fill_cost_by_depth": False,
    },
    "venue": {"maker_fee": 0.0},
    "feed": {"backoff": {"base_s": 0.05, "cap_s": 0.2, "jitter": 0.5}},
}


@pytest.fixture(scope="module")
def recording():
    path = shared_data("hftbacktest-binance-usdm-btcusdt-20240808", "raw", "usdm_btcusdt_20240808.gz")
    return load_recording(Path(path), 30_000)


@pytest.fixture
def server(recording, settings):
    srv = BinanceReplayServer([recording], speed=SPEED, restamp=True).start()
    settings.MM_BINANCE_WS_URL = srv.base_ws
    settings.MM_BINANCE_REST_URL = srv.base_http
    yield srv
    srv.stop()


def _loop(session: TradingSession, published: list | None = None) -> QuotingLoop:
    def publish(_sid, snapshot, _status):
        if published is not None:
            published.append(snapshot)

    loop = QuotingLoop(session.pk, publish=publish)
    assert loop.start()
    return loop


def _run_until(loop: QuotingLoop, cond, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert loop.step()
        if cond():
            return
        time.sleep(0.02)
    d = loop.core.last_decision
    why = (
        (d.reasons, d.bid_px, d.ask_px, loop.driver._modes, loop.core.tracker.open_orders(), loop.core.fills)
        if d
        else None
    )
    flush(loop)
    events = list(RiskEventRecord.objects.filter(session_id=loop.session_id).values_list("rule", "message")[:5])
    pytest.fail(f"not within {seconds} s: {what} (risk {events}; feed {loop.feed_status()}; last decision {why})")


def _assert_the_stored_book_replays(iid: int) -> None:
    """What the loop stored reads back as the engine saw it: every stored diff chains onto the book rebuilt from
    the last stored snapshot (the first sync, the resync after the gap), so the session replays exactly."""
    lo, hi = stored_range_ns(iid)
    book, whole, snapshots, diffs = OrderBook(), False, 0, 0
    for ev in iter_events(iid, lo, hi):
        if isinstance(ev, DepthSnapshot):
            book.apply_snapshot(ev)
            whole, snapshots = True, snapshots + 1
        elif isinstance(ev, DepthUpdate):
            assert whole, "no diff before the first snapshot"
            assert ev.prev_update_id == book.last_update_id, "stored diffs chain between snapshots"
            book.apply_update(ev)
            diffs += 1
    assert snapshots >= 2 and diffs > 10
    (bid, _), (ask, _) = book.best_bid(), book.best_ask()
    assert bid < ask


def _two_sided(loop: QuotingLoop) -> bool:
    bids = [o for o in loop.core.tracker.open_orders() if int(o.side) > 0]
    asks = [o for o in loop.core.tracker.open_orders() if int(o.side) < 0]
    return bool(bids) and bool(asks)


def _feed_mode(loop: QuotingLoop) -> Mode:
    return loop.driver._modes.get("feed", Mode.RUNNING)


@pytest.mark.django_db(transaction=True)
def test_a_live_data_session_quotes_fills_records_depth_and_pauses_through_a_resync(server):
    session = create_live_data_session(
        Actor(label="t"), name="live-paper", instrument=INSTRUMENT, params=PARAMS, start=False
    )
    assert session.feed == "binance" and session.mode == "paper" and session.params["feed"]["source"] == "binance"
    assert session.params["venue"]["taker_fee"] == 0.0005  # the instrument's fees where the params give none
    assert ParameterVersion.objects.filter(session=session, version=1).exists()
    assert AuditEvent.objects.filter(session=session, action="session.create").exists()
    published: list[dict] = []
    loop = _loop(session, published)
    connector = loop.feed.connector
    try:
        assert _feed_mode(loop) is Mode.PAUSED  # nothing before the book is whole
        assert loop.core.tick_size == 0.1 and loop.core.lot_size == 0.001  # the instrument's grid

        _run_until(loop, lambda: _two_sided(loop), 20, "quoting both sides")
        assert loop.feed_status()["state"] == "live" and loop.feed_status()["whole"]
        _run_until(loop, lambda: loop.core.fills > 0, 20, "a paper fill")

        # the server withholds one diff: the gap pulls the quotes at once, the resync brings them back
        loop._publish(force=True)
        u = next(m.diff.last_update_id for m in server.messages[server.cursor + 50 :] if m.diff is not None)
        server.drop_diff(u)
        _run_until(loop, lambda: _feed_mode(loop) is Mode.PAUSED, 15, "the gap pulling the quotes")
        assert loop.core.tracker.open_orders() == []
        _run_until(loop, lambda: _feed_mode(loop) is Mode.RUNNING, 15, "the resync")
        _run_until(loop, lambda: _two_sided(loop), 15, "quoting again after the resync")
        assert connector.stats.gaps >= 1

        flush(loop)
        rules = list(RiskEventRecord.objects.filter(session=session).values_list("rule", flat=True))
        assert "feed_disconnect" in rules and "feed_reconnect" in rules
        iid = session.instrument_id
        assert TradeTick.objects.filter(instrument_id=iid).count() > 0
        assert QuoteTick.objects.filter(instrument_id=iid).count() > 0
        assert DepthUpdateRecord.objects.filter(instrument_id=iid).count() > 10
        assert DepthSnapshotRecord.objects.filter(instrument_id=iid).count() >= 2  # the first sync and the resync
        assert FillRecord.objects.filter(session=session).count() == loop.core.fills
        _assert_the_stored_book_replays(iid)

        feed = published[-1]["feed"]
        assert feed["source"] == "binance" and feed["symbol"] == "BTCUSDT" and feed["state"] == "live"
        assert feed["message_age_s"] is not None and feed["message_age_s"] < 5

        halt_session(Actor(label="t"), session.pk, "kill switch test")
        assert loop.step()
        assert loop.core.tracker.open_orders() == []
        flush(loop)
        assert not Order.objects.filter(session=session, status__in=Order.OPEN_STATUSES).exists()
    finally:
        TradingSession.objects.filter(pk=session.pk).update(status="stopped")
        loop.finish()
    assert connector.state.value == "stopped"  # the loop stopped its connector
    session.refresh_from_db()
    assert session.last_state["feed"]["source"] == "binance"


@pytest.mark.django_db(transaction=True)
def test_a_feed_that_never_syncs_never_quotes(server):
    server.refuse(30)  # every WebSocket upgrade answered 503: the connector stays in connecting/backoff
    session = create_live_data_session(
        Actor(label="t"), name="no-sync", instrument=INSTRUMENT, params=PARAMS, start=False
    )
    loop = _loop(session)
    try:
        deadline = time.monotonic() + 1.5
        while time.monotonic() < deadline:
            assert loop.step()
            assert loop.core.tracker.open_orders() == []
            time.sleep(0.02)
        assert loop.feed_status()["state"] in ("connecting", "backoff")
        assert _feed_mode(loop) is Mode.PAUSED
        assert loop.feed.connector.stats.disconnects >= 1
    finally:
        TradingSession.objects.filter(pk=session.pk).update(status="stopped")
        loop.finish()


@pytest.mark.django_db(transaction=True)
def test_bad_inputs_name_their_field():
    actor = Actor(label="t")
    cases = [
        ({"instrument": "hyperliquid:BTC"}, "instrument"),
        ({"instrument": "nowhere:XYZ"}, "unknown instrument"),
        ({"params": {"replay": {"stored": True}}}, "params.replay"),
        ({"params": {"feed": {"source": "simulator"}}}, "params.feed.source"),
        ({"params": {"feed": {"backoff": {"base_s": -1}}}}, "params.feed.backoff"),
        ({"params": {"strategy": {"nonsense": 1}}}, "params.strategy"),
    ]
    for kwargs, field in cases:
        args = {"name": "bad", "instrument": INSTRUMENT, "start": False, **kwargs}
        with pytest.raises(ValueError, match=field.replace(".", r"\.")):
            create_live_data_session(actor, **args)
    assert not TradingSession.objects.exists()


# --- the overview's start form and row ------------------------------------------------------------


def _form(**over) -> dict:
    return {"name": "live", "instrument": INSTRUMENT, "source": "binance", "preset": "default", "seed": "3"} | over


@pytest.mark.django_db
def test_an_operator_starts_a_live_data_session_from_the_overview_and_its_row_shows_the_feed_state(client):
    from tests.dashboard.test_overview import _cells
    from tests.roles import make_user

    client.force_login(make_user("viewer", "live-viewer"))
    assert client.post("/sessions/start/", _form()).status_code == 403
    client.force_login(make_user("operator", "live-op"))
    assert "Binance live data (paper)" in client.get("/").content.decode()
    resp = client.post("/sessions/start/", _form(), HTTP_ACCEPT="application/json")
    assert resp.status_code == 201, resp.content
    session = TradingSession.objects.get(pk=resp.json()["session"])
    assert (session.feed, session.mode, session.instrument.venue, session.instrument.symbol) == (
        "binance",
        "paper",
        "binance-usdm",
        "BTCUSDT",
    )
    assert session.params["feed"] == {"source": "binance"} and session.params["venue"]["maker_fee"] == 0.0002
    audit = AuditEvent.objects.get(session=session, action="session.create")
    assert audit.actor_label == "live-op" and audit.detail["instrument"] == INSTRUMENT

    # what a running loop saves with its state: the row shows the connector's state beside the feed
    TradingSession.objects.filter(pk=session.pk).update(
        status="running", last_state={"ts_ns": time.time_ns(), "feed": {"state": "backoff"}}
    )
    cells = _cells(client.get("/sessions/table/").content.decode(), session.pk)
    assert cells["feed"].split() == ["binance", "backoff"]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("over", "field", "message"),
    [
        ({"instrument": "hyperliquid:BTC"}, "instrument", "Binance live data are for Binance instruments"),
        ({"instrument": "simulator"}, "instrument", "live data need a known Binance instrument"),
        ({"recording": "shared/data/x.gz"}, "recording", "Select a valid choice"),
    ],
)
def test_bad_start_form_inputs_name_their_field(client, over, field, message):
    from tests.roles import make_user

    client.force_login(make_user("operator", "live-op"))
    api = client.post("/sessions/start/", _form(**over), HTTP_ACCEPT="application/json")
    assert api.status_code == 400 and field in api.json()["fields"], api.content
    assert message in " ".join(api.json()["fields"][field])
    assert not TradingSession.objects.exists()


@pytest.fixture
def skewed_server(recording, settings, request):
    """The replay server with its clock ``request.param`` ms ahead of ours (restamped, so otherwise live-like)."""
    srv = BinanceReplayServer([recording], speed=SPEED, restamp=True, skew_ms=request.param).start()
    settings.MM_BINANCE_WS_URL = srv.base_ws
    settings.MM_BINANCE_REST_URL = srv.base_http
    yield srv
    srv.stop()


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("skewed_server", [1500.0, -1500.0], indirect=True)
def test_a_venue_clock_skew_over_the_bound_trips_the_clock_skew_rule(skewed_server):
    """The venue's clock 1.5 s ahead (or behind: as if every message came 1.5 s late): the connector measures about
    -1.5 s (+1.5 s) local - exchange, the feed shows it, and the clock-skew rule (1 s by default) pulls the quotes:
    the book is whole, yet nothing is quoted."""
    session = create_live_data_session(Actor(label="t"), name="skew", instrument=INSTRUMENT, params=PARAMS, start=False)
    loop = _loop(session)
    try:
        _run_until(loop, lambda: loop.feed_status()["state"] == "live", 20, "the book whole")
        deadline = time.monotonic() + 4.0
        while time.monotonic() < deadline:
            assert loop.step()
            assert loop.core.tracker.open_orders() == []
            time.sleep(0.02)
        assert_skew_measured_and_tripped(loop, session, skewed_server.skew_ms)
    finally:
        TradingSession.objects.filter(pk=session.pk).update(status="stopped")
        loop.finish()


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("skewed_server", [300.0], indirect=True)
def test_a_venue_clock_skew_under_the_bound_lets_it_quote(skewed_server):
    """The venue's clock 0.3 s ahead: measured, shown, under the 1 s bound: the session quotes and nothing trips."""
    session = create_live_data_session(Actor(label="t"), name="skew", instrument=INSTRUMENT, params=PARAMS, start=False)
    loop = _loop(session)
    try:
        _run_until(loop, lambda: _two_sided(loop), 20, "quoting both sides")
        status = loop.feed_status()
        assert -350 <= status["clock_offset_ms"] <= -250, status
        assert abs(loop.driver.risk.clock_skew_ns - loop.feed.clock_offset_ns()) <= 5_000_000
        flush(loop)
        assert not RiskEventRecord.objects.filter(session=session, rule="clock_skew").exists()
    finally:
        TradingSession.objects.filter(pk=session.pk).update(status="stopped")
        loop.finish()


@pytest.mark.django_db(transaction=True)
def test_a_live_data_session_on_binance_spot_quotes_fills_and_records_spot_depth(settings):
    """binance-spot:BTCUSDT: the connector opens spot's stream and ``/api/v3/depth`` (the MM_BINANCE_SPOT_* settings),
    syncs by spot's rule, and the session quotes on spot's grid, gets paper fills and stores diffs that chain by
    ``U == previous u + 1`` from the stored snapshot."""
    path = shared_data("hftbacktest-binance-spot-btcusdt-20240808", "raw", "spot_btcusdt_20240808.gz")
    srv = BinanceReplayServer([load_recording(Path(path), 30_000)], speed=SPEED, restamp=True).start()
    settings.MM_BINANCE_SPOT_WS_URL = srv.base_ws
    settings.MM_BINANCE_SPOT_REST_URL = srv.base_http
    settings.MM_BINANCE_WS_URL = settings.MM_BINANCE_REST_URL = "http://127.0.0.1:9"  # never the USD-M ones
    session = create_live_data_session(
        Actor(label="t"), name="spot", instrument="binance-spot:BTCUSDT", params=PARAMS, start=False
    )
    loop = _loop(session)
    try:
        assert loop.feed.connector.venue == "binance-spot" and loop.core.tick_size == 0.01
        _run_until(loop, lambda: _two_sided(loop), 25, "quoting both sides")
        _run_until(loop, lambda: loop.core.fills > 0, 25, "a paper fill")
        assert loop.feed_status()["venue"] == "binance-spot" and srv.stats.rest_requests >= 1
        flush(loop)
        iid = session.instrument_id
        assert (
            TradeTick.objects.filter(instrument_id=iid).exists()
            and QuoteTick.objects.filter(instrument_id=iid).exists()
        )
        lo, hi = stored_range_ns(iid)
        book, diffs = OrderBook(), 0
        for ev in iter_events(iid, lo, hi):
            if isinstance(ev, DepthSnapshot):
                book.apply_snapshot(ev)
            elif isinstance(ev, DepthUpdate):
                assert ev.first_update_id == book.last_update_id + 1, "stored spot diffs chain from the snapshot"
                book.apply_update(ev)
                diffs += 1
        assert diffs > 10 and book.best_bid()[0] < book.best_ask()[0]
    finally:
        TradingSession.objects.filter(pk=session.pk).update(status="stopped")
        loop.finish()
        srv.stop()
