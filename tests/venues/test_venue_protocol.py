"""The paper venue and the Hyperliquid venue both satisfy the one venue interface (``apps.engine.execution.venue``).

Not ``isinstance`` alone (a runtime Protocol check only looks at names): every operation's parameters match the
Protocol's, and the same scenario runs on both with real calls — a book, a post-only bid placed, modified and
cancelled, another one cancelled by the emergency cancel-all, and the account side (position, fills since an id,
margin, funding). The Hyperliquid venue talks to the local protocol server on 127.0.0.1.
"""

from __future__ import annotations

import inspect
import time

import pytest

from apps.engine.execution.fillmodel import LevelBook
from apps.engine.execution.paper import PaperVenue, PaperVenueConfig
from apps.engine.execution.venue import ACCOUNT_OPERATIONS, VENUE_OPERATIONS, Account, MarginReport, Venue
from apps.engine.market.events import (
    CancelOrder,
    DepthSnapshot,
    Funding,
    ModifyOrder,
    OrderAck,
    OrderReject,
    PlaceOrder,
    Side,
)
from apps.marketdata.parsers.hyperliquid import parse_lines
from tests.venues.test_hyperliquid import creds, make_venue, sample_path, server  # noqa: F401 - fixtures


def _first_snapshot(now: int) -> DepthSnapshot:
    import gzip

    with gzip.open(sample_path(), "rt") as fh:
        line = fh.readline().partition(" ")[2]
    (snap,) = [e for e in parse_lines([(0, f"{now} {line}")], coin="BTC") if isinstance(e, DepthSnapshot)]
    return snap


def _params(fn) -> list[str]:
    return [p for p in inspect.signature(fn).parameters if p != "self"]


def _conforms(venue: object) -> None:
    assert isinstance(venue, Venue) and isinstance(venue, Account)
    for name in VENUE_OPERATIONS:
        assert _params(getattr(venue, name)) == _params(getattr(Venue, name)), name
    for name in ACCOUNT_OPERATIONS:
        assert _params(getattr(venue, name)) == _params(getattr(Account, name)), name


def _settle(venue, now: int, wait_ns: int) -> list:
    """Everything the venue has for us within ``wait_ns`` (a paper venue's latency; a real venue's answers)."""
    out = venue.advance(now + wait_ns)
    nxt = venue.next_event_ns()
    while nxt is not None and nxt <= now + wait_ns:
        out += venue.advance(nxt)
        nxt = venue.next_event_ns()
    return out


def _scenario(venue, wait_ns: int) -> None:
    """The same calls on either venue; what each returns must mean the same."""
    _conforms(venue)
    now = time.time_ns()
    snap = _first_snapshot(now)
    assert isinstance(venue.on_market(snap), list)
    assert venue.config.tick_size > 0 and venue.config.lot_size > 0 and isinstance(venue.book, LevelBook)
    best_bid = snap.bids[0][0]
    px = best_bid - 10.0

    events = venue.submit([PlaceOrder("p-1", Side.BUY, px, 0.001, tif="POST_ONLY")], now)
    events += _settle(venue, now, wait_ns)
    assert any(isinstance(e, OrderAck) and e.client_order_id == "p-1" and e.status == "open" for e in events)
    (view,) = venue.open_orders()
    assert view.client_order_id == "p-1" and view.price == px and view.remaining == pytest.approx(0.001)

    now = time.time_ns()
    events = venue.submit([ModifyOrder("p-1", px - 1.0, 0.002)], now) + _settle(venue, now, wait_ns)
    assert any(isinstance(e, OrderAck) and e.status == "modified" for e in events)
    time.sleep(0.2)  # a real venue cancels the replaced oid: that update must not cancel the modified order
    assert not [e for e in venue.advance(time.time_ns()) if isinstance(e, OrderAck) and e.status == "cancelled"]
    assert venue.open_orders()[0].price == px - 1.0

    now = time.time_ns()
    events = venue.submit([CancelOrder("p-1")], now) + _settle(venue, now, wait_ns)
    assert any(isinstance(e, OrderAck) and e.status == "cancelled" for e in events)
    assert venue.open_orders() == []

    now = time.time_ns()
    venue.submit([PlaceOrder("p-2", Side.SELL, snap.asks[0][0] + 10.0, 0.001, tif="POST_ONLY")], now)
    _settle(venue, now, wait_ns)
    assert len(venue.open_orders()) == 1
    events = venue.cancel_all_now(time.time_ns())
    assert any(isinstance(e, OrderAck) and e.client_order_id == "p-2" and e.status == "cancelled" for e in events)
    assert venue.open_orders() == []
    # an unknown order is refused the same way on both
    now = time.time_ns()
    events = venue.submit([CancelOrder("nope")], now) + _settle(venue, now, wait_ns)
    assert any(isinstance(e, OrderReject) and e.client_order_id == "nope" for e in events)

    assert venue.position() == 0.0 and venue.fills_since(None) == [] and venue.fills_since("x") == []
    report = venue.margin_report()
    assert report is None or isinstance(report, MarginReport)
    rate = venue.funding_rate()
    assert rate is None or isinstance(rate, float)
    assert all(isinstance(f, Funding) for f in venue.funding_since(0))
    assert venue.funding_interval_s > 0


def test_the_paper_venue_satisfies_the_venue_interface():
    venue = PaperVenue(PaperVenueConfig(tick_size=1.0, lot_size=0.00001, entry_latency_ns=1_000_000), seed=1)
    _scenario(venue, wait_ns=50_000_000)
    assert venue.margin_report() is None and venue.funding_rate() is None  # it keeps no margin account


def test_the_hyperliquid_venue_satisfies_the_venue_interface(server, creds):  # noqa: F811 - fixtures
    venue = make_venue(server, creds)
    try:
        _scenario(venue, wait_ns=0)
        report = venue.margin_report()
        assert report.account_value == 1_000_000.0 and report.position == 0.0 and report.leverage == 40
        assert venue.funding_rate() == pytest.approx(0.0000125)
        assert server.orders == {}
    finally:
        venue.stop()


def test_batched_submit_sends_one_request_per_run_of_places_and_of_cancels(server, creds):  # noqa: F811
    venue = make_venue(server, creds)
    try:
        now = time.time_ns()
        bid = server.best()[0]
        places = [PlaceOrder(f"b-{i}", Side.BUY, bid - 10.0 - i, 0.001, tif="POST_ONLY") for i in range(4)]
        bad = PlaceOrder("b-bad", Side.BUY, bid - 10.5, 0.001, tif="POST_ONLY")  # off the price rule: alone
        before = len(server.exchange_log)
        events = venue.submit([*places, bad], now)
        assert len(server.exchange_log) - before == 1 and venue.requests == 1
        assert sorted(e.client_order_id for e in events if isinstance(e, OrderAck)) == [f"b-{i}" for i in range(4)]
        (reject,) = [e for e in events if isinstance(e, OrderReject)]
        assert reject.client_order_id == "b-bad" and reject.reason.startswith("price:")
        assert len(server.orders) == 4
        events = venue.submit([CancelOrder(f"b-{i}") for i in range(4)], time.time_ns())
        assert len(server.exchange_log) - before == 2 and server.orders == {}
        assert [e.status for e in events] == ["cancelled"] * 4
    finally:
        venue.stop()
