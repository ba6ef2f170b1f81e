"""A LIVE Hyperliquid session through the real quoting loop, against the local Hyperliquid-protocol server.

The session is created by the control services, its loop (:class:`~apps.trading.loop.QuotingLoop`) is driven one
step at a time on the wall clock with the real database and writer; its feed and venue are one
:class:`~apps.venues.hyperliquid.venue.HyperliquidVenue` over real HTTP and WebSocket on 127.0.0.1 with signed
actions (the server checks each signature). The served market is the recorded BTC sample's book, moved a dollar at
a time with a trade at the touch on each step, so the strategy's estimators warm up and it quotes.

Covered: the session quotes (its orders rest on the server, the scheduled cancel is armed), a partial fill is
booked, an order that fills while the stream is down is found and booked exactly once, the kill switch cancels
everything on the server and disarms the scheduled cancel, the venue's margin report trips the margin rule, the
venue's funding rate reaches the reservation price and its funding payment the P&L, and the key never appears
in any captured log line, in stdout/stderr or in the database.
"""

from __future__ import annotations

import json
import logging
import random
import time

import pytest

from apps.control.models import AuditEvent
from apps.control.services import (
    Actor,
    create_live_session,
    halt_all,
    halt_session,
    rearm_all,
    rearm_session,
    resume_session,
)
from apps.engine.market.events import Side
from apps.engine.risk.gateway import Mode
from apps.trading.loop import QuotingLoop
from apps.trading.models import FillRecord, Order, RiskEventRecord, TradingSession
from apps.venues.hyperliquid.venue import cloid_of
from tests.venues.hyperliquid_server import HyperliquidServer
from tests.venues.live_checks import assert_skew_measured_and_tripped, flush
from tests.venues.test_hyperliquid import ACCOUNT, FAKE_KEY, sample_path

PARAMS = {
    # quick estimators, no fee and no adverse-selection prior, so the GLFT quotes of this 1-dollar-wide book pass
    # the quoter's E[P&L] filter (as in the Binance live-data test)
    "strategy": {
        "sigma_bucket_s": 0.1,
        "sigma_min_buckets": 4,
        "kappa_min_volume": 0.0,
        "adverse_selection_bps": 0.0,
        "maker_fee_bps": 0.0,
    },
    "feed": {"backoff": {"base_s": 0.05, "cap_s": 0.2, "jitter": 0.5}},
    # the local server pushes a book only when the test moves it: a stale feed would be this test's pace
    "risk": {"stale_feed": {"max_age_s": 30.0}, "margin": {}},
}


@pytest.fixture
def server(settings, monkeypatch):
    from apps.venues.hyperliquid.secrets import Credentials

    signer = Credentials(FAKE_KEY, ACCOUNT).signer_address
    srv = HyperliquidServer(sample_path(), signer=signer, user=ACCOUNT, account_value=1_000_000.0)
    srv.start()
    settings.MM_HYPERLIQUID_NETWORK = "testnet"
    settings.MM_HYPERLIQUID_API_URL = srv.api_url
    settings.MM_HYPERLIQUID_WS_URL = srv.ws_url
    settings.MM_ACCOUNT_POLL_MS = 200
    monkeypatch.setenv("MM_HYPERLIQUID_SECRET_KEY", FAKE_KEY)
    monkeypatch.setenv("MM_HYPERLIQUID_ACCOUNT_ADDRESS", ACCOUNT)
    yield srv
    srv.stop()


class Market:
    """Moves the served book by a dollar (seeded random walk) and prints a trade at the touch, once per call."""

    def __init__(self, server: HyperliquidServer, seed: int = 3) -> None:
        self.server, self.rng = server, random.Random(seed)

    def __call__(self) -> None:
        self.server.move_book(self.rng.choice((-1.0, 1.0)))
        self.server.publish_book()
        self.server.publish_trade(self.rng.choice("BA"), 0.01, self.rng.choice((0.0, 1.0, 3.0, 8.0)))


def _loop(session: TradingSession) -> QuotingLoop:
    loop = QuotingLoop(session.pk, publish=lambda *_: None)
    assert loop.start()
    return loop


def _run_until(loop: QuotingLoop, cond, seconds: float, what: str, market: Market | None = None) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if market is not None:
            market()
        time.sleep(0.03)
        loop.step()
        if cond():
            return
    d = loop.core.last_decision
    why = (d.reasons, d.bid_px, d.ask_px) if d else None
    risk = list(RiskEventRecord.objects.filter(session_id=loop.session_id).values_list("rule", "message")[:6])
    pytest.fail(
        f"not within {seconds} s: {what} (modes {loop.driver.modes}; feed {loop.feed_status()}; "
        f"decision {why}; risk {risk})"
    )


def _two_sided(loop: QuotingLoop) -> bool:
    sides = {o.side for o in loop.core.tracker.open_orders()}
    return Side.BUY in sides and Side.SELL in sides


def _on_server(server: HyperliquidServer, loop: QuotingLoop) -> dict[str, int]:
    """Our open orders as the server holds them: client id -> oid (matched by cloid)."""
    ours = {cloid_of(o.client_order_id): o.client_order_id for o in loop.core.tracker.open_orders()}
    with server.lock:
        return {ours[o["cloid"]]: oid for oid, o in server.orders.items() if o.get("cloid") in ours}


def _start_quoting(server: HyperliquidServer, name: str, params: dict | None = None) -> tuple[QuotingLoop, Market]:
    session = create_live_session(
        Actor(label="t"), name=name, instrument="hyperliquid:BTC", params=params or PARAMS, start=False
    )
    loop = _loop(session)
    market = Market(server)
    _run_until(loop, lambda: _two_sided(loop) and len(_on_server(server, loop)) >= 2, 30, "quoting both sides", market)
    return loop, market


@pytest.mark.django_db(transaction=True)
def test_a_live_session_quotes_books_a_partial_fill_and_a_fill_missed_while_disconnected_once(server, caplog, capfd):
    caplog.set_level(logging.DEBUG)  # every record of every library, for the secret check at the end
    loop, market = _start_quoting(server, "hl-live")
    session = TradingSession.objects.get(pk=loop.session_id)
    try:
        assert (session.mode, session.feed, session.params["feed"]["source"]) == ("live", "hyperliquid", "hyperliquid")
        create = AuditEvent.objects.get(session=session, action="session.create")
        assert create.detail["mode"] == "live" and create.detail["instrument"] == "hyperliquid:BTC"
        assert loop.feed_status()["state"] == "connected" and loop.feed_status()["whole"]
        assert server.scheduled_cancel_ms is not None  # the dead-man's switch is armed while we quote
        for o in loop.core.tracker.open_orders():  # prices on the venue's rules (5 significant figures here: 1 USD)
            assert o.price == round(o.price)

        # a partial fill of our bid, from the user stream
        bid = next(o for o in loop.core.tracker.open_orders() if o.side is Side.BUY)
        oid = _on_server(server, loop)[bid.client_order_id]
        half = round(bid.size / 2, 5)
        server.fill(oid, half)
        _run_until(loop, lambda: loop.core.fills >= 1, 10, "the partial fill booked")
        assert loop.core.tracker.position == pytest.approx(half)
        assert loop.driver.ledger.position == pytest.approx(half)

        # the stream drops; while it is down the rest of an order fills (no stream message can carry it)
        fills_before = loop.core.fills
        server.drop_connections(refuse=True)
        target = next(o for o in loop.core.tracker.open_orders() if o.side is Side.SELL)
        t_oid = _on_server(server, loop)[target.client_order_id]
        server.fill(t_oid, target.remaining)
        _run_until(loop, lambda: loop.driver.modes.get("feed") is Mode.PAUSED, 10, "the drop pulling the quotes")
        assert server.orders == {}  # pulled at the venue
        # the pull asked the venue: the order it no longer held had filled, and is booked so (not cancelled)
        assert loop.core.tracker.get(target.client_order_id).status.value == "filled"
        assert loop.core.fills == fills_before + 1
        server.accept()
        _run_until(loop, lambda: loop.driver.modes.get("feed") is Mode.RUNNING, 15, "the reconnect", market)
        _run_until(loop, lambda: _two_sided(loop), 20, "quoting again", market)
        assert loop.core.fills == fills_before + 1  # the missed fill, booked once (reconciliation + snapshot)
        assert loop.core.tracker.position == pytest.approx(server.position)
        assert loop.driver.venue.reconciliations >= 1
        flush(loop)
        assert FillRecord.objects.filter(session=session).count() == loop.core.fills
        rules = set(RiskEventRecord.objects.filter(session=session).values_list("rule", flat=True))
        assert {"feed_disconnect", "feed_reconnect"} <= rules
    finally:
        TradingSession.objects.filter(pk=session.pk).update(status="stopped")
        loop.finish()
    assert server.orders == {} and server.scheduled_cancel_ms is None  # stop: nothing left, switch disarmed
    assert loop.driver.venue.connection_state.value == "closed"

    # the key never appears: not in any log record, not on stdout/stderr, not in the database
    out, err = capfd.readouterr()
    session.refresh_from_db()
    stored = json.dumps([session.params, session.last_state, list(AuditEvent.objects.values_list("detail"))])
    for text in (caplog.text, out, err, stored):
        for form in (FAKE_KEY, FAKE_KEY.upper(), FAKE_KEY[:16], FAKE_KEY[24:40], FAKE_KEY[-16:]):
            assert form not in text
    assert len(caplog.records) > 10  # the capture did see the run's logging


@pytest.mark.django_db(transaction=True)
def test_the_kill_switch_cancels_everything_on_the_venue_and_disarms_the_scheduled_cancel(server):
    from tests.roles import make_user

    admin = Actor.of(make_user("admin", "hl-admin"))
    loop, market = _start_quoting(server, "hl-kill")
    try:
        assert len(server.orders) >= 2 and server.scheduled_cancel_ms is not None
        halt_session(Actor(label="t"), loop.session_id, "kill switch test")
        assert loop.step()
        assert server.orders == {} and loop.core.tracker.open_orders() == []
        assert server.scheduled_cancel_ms is None and server.schedule_calls[-1] == {"type": "scheduleCancel"}
        market()
        assert loop.step() and server.orders == {}  # halted: nothing new is sent
        flush(loop)
        assert not Order.objects.filter(session_id=loop.session_id, status__in=Order.OPEN_STATUSES).exists()

        # the global switch does the same for a session quoting again (an operator re-arms and resumes it)
        rearm_session(admin, loop.session_id, "re-arm")
        resume_session(admin, loop.session_id, "resume")
        _run_until(loop, lambda: len(server.orders) >= 2, 20, "quoting after the re-arm", market)
        assert server.scheduled_cancel_ms is not None
        halt_all(Actor(label="t"), "global kill switch test")
        assert loop.step()
        assert server.orders == {} and server.scheduled_cancel_ms is None
    finally:
        rearm_all(admin, "test done")
        TradingSession.objects.filter(pk=loop.session_id).update(status="stopped")
        loop.finish()


@pytest.mark.django_db(transaction=True)
def test_venue_margin_trips_the_margin_rule_and_venue_funding_reaches_the_quote_and_the_pnl(server):
    loop, _market = _start_quoting(server, "hl-margin")
    try:
        # the venue's funding rate (metaAndAssetCtxs: 0.0000125 per hour for BTC) is the funding term's input
        _run_until(loop, lambda: loop.core.market.funding_rate == pytest.approx(0.0000125), 5, "funding rate")
        assert loop.core.market.funding_interval_s == 3600.0

        bid = next(o for o in loop.core.tracker.open_orders() if o.side is Side.BUY)
        server.fill(_on_server(server, loop)[bid.client_order_id], bid.remaining)
        _run_until(loop, lambda: loop.core.tracker.position > 0, 10, "the fill booked")
        q = loop.core.tracker.position

        # a funding settlement on the long: the P&L's funding part is what the venue charged
        funding_before = loop.driver.ledger.snapshot(time.time_ns()).funding
        rate = 0.0001
        server.pay_funding(rate)
        _run_until(loop, lambda: loop.driver.ledger.snapshot(time.time_ns()).funding != funding_before, 5, "funding")
        paid = loop.driver.ledger.snapshot(time.time_ns()).funding - funding_before
        assert paid == pytest.approx(-q * loop.driver.ledger.mid * rate, rel=1e-3)

        # the account shrinks until the position's margin is most of it: the margin rule trips
        report = loop.driver.venue.margin_report()
        assert report.leverage == 10 and report.entry_price == pytest.approx(bid.price)
        # leverage-aware sizing: a million-dollar account at 10x carries far more than the session's 0.05 BTC
        assert loop.margin_cap > 40 and loop.core.params.max_inventory == 0.05
        server.account_value = q * report.entry_price / 10 / 0.6  # margin use 60 % > the rule's 50 %
        tripped = lambda: [t for t in loop.driver.result.risk_events if t.rule == "margin"]  # noqa: E731
        _run_until(loop, lambda: bool(tripped()), 5, "the margin rule")
        assert "margin use" in tripped()[0].message
        flush(loop)
        assert RiskEventRecord.objects.filter(session_id=loop.session_id, rule="margin").exists()
        # and the quoter's bound follows the account down to what half of it carries at 10x (whole lots)
        _run_until(loop, lambda: loop.core.params.max_inventory < 0.05, 5, "the margin-sized bound")
        value = server.account_value + q * (loop.driver.ledger.mid - report.entry_price)  # the venue's accountValue
        expected = int(0.5 * value * 10 / loop.driver.ledger.mid / 0.00001 + 1e-9) * 0.00001
        assert loop.core.params.max_inventory == pytest.approx(expected, abs=0.00002)
        assert AuditEvent.objects.filter(session_id=loop.session_id, action="margin.sizing").exists()
        assert loop.driver.mode >= Mode.REDUCING
    finally:
        TradingSession.objects.filter(pk=loop.session_id).update(status="stopped")
        loop.finish()


@pytest.mark.django_db(transaction=True)
def test_bad_live_session_inputs_name_their_field(server):
    actor = Actor(label="t")
    cases = [
        ({"instrument": "binance-usdm:BTCUSDT"}, "instrument"),
        ({"params": {"replay": {"stored": True}}}, "params.replay"),
        ({"params": {"feed": {"source": "binance"}}}, "params.feed.source"),
        ({"params": {"strategy": {"nonsense": 1}}}, "params.strategy"),
    ]
    for kwargs, field in cases:
        args = {"name": "bad", "instrument": "hyperliquid:BTC", "start": False, **kwargs}
        with pytest.raises(ValueError, match=field.replace(".", r"\.")):
            create_live_session(actor, **args)
    assert not TradingSession.objects.exists()


@pytest.fixture
def skewed_server(server, request):
    """The local server with the venue's clock ``request.param`` ms ahead of ours (every ``time`` it stamps)."""
    server.clock_skew_ms = request.param
    return server


def _feed_clock_settled(loop: QuotingLoop) -> bool:
    status = loop.feed_status()
    return (status.get("clock_samples") or 0) >= 5 and status.get("rtt_ms") is not None


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("skewed_server", [1500.0, -1500.0], indirect=True)
def test_a_venue_clock_skew_over_the_bound_trips_the_clock_skew_rule_and_nothing_is_quoted(skewed_server):
    """The venue's clock 1.5 s ahead (or behind): the stream's ``time`` stamps make the feed measure about -1.5 s
    (+1.5 s) local - venue, the feed status shows it with the round trip, the loop hands it to the clock-skew rule
    (1 s by default), which trips: the book is whole and the market moves, yet nothing is quoted on the venue."""
    session = create_live_session(
        Actor(label="t"), name="hl-skew", instrument="hyperliquid:BTC", params=PARAMS, start=False
    )
    loop = _loop(session)
    market = Market(skewed_server)
    try:
        _run_until(loop, lambda: loop.feed_status()["whole"] and _feed_clock_settled(loop), 15, "the clock", market)
        deadline = time.monotonic() + 4.0
        while time.monotonic() < deadline:  # long enough for the estimators to warm up and quote, were it allowed
            market()
            time.sleep(0.03)
            assert loop.step()
            assert loop.core.tracker.open_orders() == [] and skewed_server.orders == {}
        assert_skew_measured_and_tripped(loop, session, skewed_server.clock_skew_ms)
    finally:
        TradingSession.objects.filter(pk=session.pk).update(status="stopped")
        loop.finish()


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("skewed_server", [300.0], indirect=True)
def test_a_venue_clock_skew_under_the_bound_is_measured_and_the_session_quotes(skewed_server):
    """The venue's clock 0.3 s ahead: measured (about -300 ms), shown, under the 1 s bound: it quotes, nothing trips."""
    loop, _market = _start_quoting(skewed_server, "hl-skew-ok")
    try:
        _run_until(loop, lambda: _feed_clock_settled(loop), 10, "the clock measured", _market)
        status = loop.feed_status()
        assert -350 <= status["clock_offset_ms"] <= -250, status
        assert status["rtt_ms"] is not None and 0 < status["rtt_ms"] < 500, status
        assert abs(loop.driver.risk.clock_skew_ns - loop.feed.clock_offset_ns()) <= 5_000_000
        flush(loop)
        assert not RiskEventRecord.objects.filter(session_id=loop.session_id, rule="clock_skew").exists()
    finally:
        TradingSession.objects.filter(pk=loop.session_id).update(status="stopped")
        loop.finish()
