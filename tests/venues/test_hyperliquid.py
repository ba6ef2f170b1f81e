"""The Hyperliquid connector against the local Hyperliquid-protocol server (tests/venues/hyperliquid_server.py).

Real HTTP and WebSocket on 127.0.0.1, real EIP-712 signatures checked by the server, the recorded BTC sample as
the served book. Each test takes well under a few seconds.
"""

from __future__ import annotations

import logging
import time

import pytest

from apps.engine.market.events import (
    CancelAll,
    CancelOrder,
    DepthSnapshot,
    Fill,
    ModifyOrder,
    OrderAck,
    OrderReject,
    PlaceOrder,
    Side,
    Trade,
)
from apps.engine.market.feeds import BackoffParams
from apps.venues.hyperliquid.rules import AssetRules, InvalidOrderError, rules_from_meta
from apps.venues.hyperliquid.secrets import Credentials, CredentialsError, credentials_from_env
from apps.venues.hyperliquid.venue import HyperliquidConfig, HyperliquidVenue, cloid_of
from apps.venues.hyperliquid.ws import ConnectionState
from tests.conftest import shared_data, wait_until
from tests.venues.hyperliquid_server import HyperliquidServer

FAKE_KEY = "4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318"
ACCOUNT = "0x00000000000000000000000000000000000000a1"


def sample_path():
    return shared_data("hftbacktest-hyperliquid-btc-20250126-tiny", "raw", "hyperliquid_btc_20250126.gz")


@pytest.fixture
def creds() -> Credentials:
    return Credentials(FAKE_KEY, ACCOUNT)


@pytest.fixture
def server(creds):
    srv = HyperliquidServer(sample_path(), signer=creds.signer_address, user=ACCOUNT, account_value=1_000_000.0)
    srv.start()
    yield srv
    srv.stop()


def make_venue(server, creds, **kw) -> HyperliquidVenue:
    cfg = HyperliquidConfig(
        coin="BTC",
        network="testnet",
        api_url=server.api_url,
        ws_url=server.ws_url,
        heartbeat_s=kw.pop("heartbeat_s", 1.0),
        backoff=BackoffParams(base_s=0.05, cap_s=0.2, jitter=0.5),
        dead_man_s=kw.pop("dead_man_s", 10.0),
    )
    v = HyperliquidVenue(cfg, creds)
    v.start()
    return v


@pytest.fixture
def venue(server, creds):
    v = make_venue(server, creds)
    yield v
    v.stop()


def now() -> int:
    return time.time_ns()


def collect(venue: HyperliquidVenue, cond, seconds: float = 3.0) -> list:
    """Advance the venue until ``cond(events)`` holds; every event seen."""
    events: list = []

    def step():
        events.extend(venue.advance(now()))
        return cond(events)

    assert wait_until(step, seconds, poll_s=0.02), f"condition not met; events: {events}"
    return events


def server_order(server, cid):
    return next(o for o in server.orders.values() if o.get("cloid") == cloid_of(cid))


# --- rules -------------------------------------------------------------------------------------------------------
def test_tick_and_lot_rules_from_meta():
    rules = rules_from_meta({"universe": [{"name": "BTC", "szDecimals": 5}, {"name": "ETH", "szDecimals": 4}]})
    btc, eth = rules["BTC"], rules["ETH"]
    assert (btc.asset, eth.asset) == (0, 1)
    assert btc.check_price(105055.0) == "105055" and btc.tick_at(105055.0) == 1.0
    assert eth.check_price(3301.5) == "3301.5" and eth.tick_at(3301.5) == pytest.approx(0.1)
    assert eth.round_price(3301.57, is_buy=True) == 3301.5 and eth.round_price(3301.51, is_buy=False) == 3301.6
    assert btc.check_size(0.00012) == "0.00012" and btc.lot_size == pytest.approx(1e-5)
    with pytest.raises(InvalidOrderError, match=r"price: .*significant figures"):
        eth.check_price(3301.55)
    with pytest.raises(InvalidOrderError, match=r"price: .*at most 2"):
        AssetRules("X", 2, 4).check_price(1.234)
    with pytest.raises(InvalidOrderError, match=r"size: .*szDecimals is 5"):
        btc.check_size(0.000001)
    with pytest.raises(ValueError, match=r"universe\[0\]"):
        rules_from_meta({"universe": [{"name": "BTC"}]})


def test_invalid_price_or_size_rejected_before_sending(venue, server):
    bad_px = venue.submit([PlaceOrder("p1", Side.BUY, 105000.5, 0.001, "POST_ONLY")], now())
    bad_sz = venue.submit([PlaceOrder("p2", Side.BUY, 105000.0, 0.0000001, "POST_ONLY")], now())
    assert isinstance(bad_px[0], OrderReject) and bad_px[0].reason.startswith("price:")
    assert isinstance(bad_sz[0], OrderReject) and bad_sz[0].reason.startswith("size:")
    assert server.exchange_log == []  # nothing was sent


# --- placement, cancel, modify --------------------------------------------------------------------------------
def test_alo_rests_then_cancel(venue, server):
    out = venue.submit([PlaceOrder("b1", Side.BUY, 105000.0, 0.01, "POST_ONLY")], now())
    assert out == [OrderAck(out[0].ts_exch_ns, out[0].ts_local_ns, "b1", "open", 105000.0, 0.01)]
    o = server_order(server, "b1")
    assert server.exchange_log[0]["orders"][0]["t"] == {"limit": {"tif": "Alo"}}
    assert (o["side"], o["px"], o["remaining"]) == ("B", 105000.0, 0.01)
    assert [v.client_order_id for v in venue.open_orders()] == ["b1"]
    out = venue.submit([CancelOrder("b1")], now())
    assert [(e.client_order_id, e.status) for e in out] == [("b1", "cancelled")]
    assert server.orders == {} and venue.open_orders() == []
    # the stream's "open" and "canceled" updates do not repeat what the answers already said
    time.sleep(0.2)
    assert venue.advance(now()) == []


def test_rejects_surface_the_venue_message(server, creds):
    v = make_venue(server, creds)
    try:
        cross = v.submit([PlaceOrder("x1", Side.BUY, 105056.0, 0.01, "POST_ONLY")], now())
        assert isinstance(cross[0], OrderReject)
        assert cross[0].reason == "Post only order would have immediately matched, bbo was 105055@105056. asset=0"
        ioc = v.submit([PlaceOrder("x2", Side.SELL, 105100.0, 0.01, "IOC")], now())
        assert "could not immediately match" in ioc[0].reason
        server.account_value = 1_000.0
        margin = v.submit([PlaceOrder("x3", Side.BUY, 100000.0, 2.0, "POST_ONLY")], now())
        assert margin[0].reason == "Insufficient margin to place order. asset=0"
        unknown = v.submit([CancelOrder("nope")], now())
        assert unknown[0].reason == "unknown_order"
        assert server.orders == {}
    finally:
        v.stop()


def test_ioc_partial_fill_and_remainder_cancelled(venue, server):
    # best ask is 6.34472 BTC at 105056: an IOC for 7 takes it and the rest is cancelled
    out = venue.submit([PlaceOrder("t1", Side.BUY, 105056.0, 7.0, "IOC")], now())
    assert [(type(e).__name__, e.client_order_id) for e in out] == [("OrderAck", "t1")]
    events = collect(venue, lambda ev: any(isinstance(e, OrderAck) and e.status == "cancelled" for e in ev))
    fills = [e for e in events if isinstance(e, Fill)]
    assert len(fills) == 1
    f = fills[0]
    assert (f.size, f.price, f.liquidity, f.side) == (6.34472, 105056.0, "taker", Side.BUY)
    assert f.remaining == pytest.approx(7.0 - 6.34472)
    assert venue.open_orders() == []
    assert venue.position() == pytest.approx(6.34472)


def test_modify_moves_the_order_and_fills_follow_it(venue, server):
    venue.submit([PlaceOrder("m1", Side.SELL, 105100.0, 0.02, "POST_ONLY")], now())
    old_oid = server_order(server, "m1")["oid"]
    out = venue.submit([ModifyOrder("m1", 105090.0, 0.03)], now())
    assert [(e.status, e.price, e.size) for e in out] == [("modified", 105090.0, 0.03)]
    o = server_order(server, "m1")
    assert o["oid"] != old_oid and (o["px"], o["remaining"]) == (105090.0, 0.03)
    bad = venue.submit([ModifyOrder("m1", 105090.5, 0.03)], now())
    assert bad[0].reason.startswith("price:")
    server.fill(o["oid"], 0.03)
    events = collect(venue, lambda ev: any(isinstance(e, Fill) for e in ev))
    assert [(e.client_order_id, e.size, e.remaining) for e in events if isinstance(e, Fill)] == [("m1", 0.03, 0)]


def test_partial_fills_of_a_resting_order(venue, server):
    venue.submit([PlaceOrder("q1", Side.BUY, 105000.0, 0.05, "POST_ONLY")], now())
    oid = server_order(server, "q1")["oid"]
    server.fill(oid, 0.02)
    server.fill(oid, 0.01)
    ev = collect(venue, lambda ev: sum(isinstance(e, Fill) for e in ev) == 2)
    fills = [e for e in ev if isinstance(e, Fill)]
    assert [(f.size, f.remaining, f.liquidity) for f in fills] == [(0.02, 0.03, "maker"), (0.01, 0.02, "maker")]
    assert len({f.fill_id for f in fills}) == 2
    assert [v.remaining for v in venue.open_orders()] == [pytest.approx(0.02)]
    server.fill(oid, 0.02)
    ev = collect(venue, lambda ev: any(isinstance(e, Fill) for e in ev))
    assert ev[-1].remaining == 0 and venue.open_orders() == []


def test_cancel_all(venue, server):
    venue.submit(
        [
            PlaceOrder("c1", Side.BUY, 105000.0, 0.01, "POST_ONLY"),
            PlaceOrder("c2", Side.SELL, 105100.0, 0.01, "POST_ONLY"),
        ],
        now(),
    )
    assert len(server.orders) == 2
    out = venue.submit([CancelAll("test")], now())
    assert sorted((e.client_order_id, e.status) for e in out) == [("c1", "cancelled"), ("c2", "cancelled")]
    assert server.orders == {}
    venue.submit([PlaceOrder("c3", Side.BUY, 104000.0, 0.01, "GTC")], now())
    out = venue.cancel_all_now(now())  # asks the venue what is open, not our memory
    assert [(e.client_order_id, e.status) for e in out if isinstance(e, OrderAck)] == [("c3", "cancelled")]
    assert server.orders == {}


# --- reconnect and reconciliation -----------------------------------------------------------------------------
def test_fill_while_disconnected_is_found_and_booked_once(venue, server):
    venue.submit([PlaceOrder("d1", Side.BUY, 105000.0, 0.04, "POST_ONLY")], now())
    venue.submit([PlaceOrder("d2", Side.SELL, 105200.0, 0.01, "POST_ONLY")], now())
    oid1, oid2 = server_order(server, "d1")["oid"], server_order(server, "d2")["oid"]
    server.drop_connections(refuse=True)
    assert wait_until(lambda: venue.connection_state is ConnectionState.BACKOFF, 2)
    server.fill(oid1, 0.04)  # filled while we cannot hear it
    server.fill(oid2, 0.004)  # partially filled
    assert venue.advance(now()) == []
    server.accept()
    assert venue.socket.wait_connected(epoch=2, timeout_s=3)
    events = collect(venue, lambda ev: sum(isinstance(e, Fill) for e in ev) >= 2)
    time.sleep(0.3)  # the userFills snapshot replayed on resubscribe must not book them again
    events += venue.advance(now())
    fills = [e for e in events if isinstance(e, Fill)]
    assert sorted((f.client_order_id, f.size) for f in fills) == [("d1", 0.04), ("d2", 0.004)]
    assert venue.reconciliations == 1 and venue.socket.disconnects >= 1
    assert [(v.client_order_id, v.remaining) for v in venue.open_orders()] == [("d2", pytest.approx(0.006))]
    assert venue.reconcile(now()) == 0  # idempotent


def test_order_cancelled_while_disconnected_is_closed_by_reconciliation(venue, server):
    venue.submit([PlaceOrder("k1", Side.BUY, 105000.0, 0.01, "POST_ONLY")], now())
    server.drop_connections(refuse=True)
    assert wait_until(lambda: venue.connection_state is ConnectionState.BACKOFF, 2)
    with server.lock:
        server.orders.clear()  # cancelled by the venue while we were away (e.g. margin)
    server.accept()
    events = collect(venue, lambda ev: any(isinstance(e, OrderAck) and e.status == "cancelled" for e in ev))
    assert [(e.client_order_id, e.status) for e in events] == [("k1", "cancelled")]


def test_lost_answer_resolved_by_reconciliation(venue, server):
    server.lose_next_answer = True  # the order is placed but its answer never arrives
    assert venue.submit([PlaceOrder("l1", Side.BUY, 105000.0, 0.01, "POST_ONLY")], now()) == []
    assert [v.status for v in venue.open_orders()] == ["pending_new"]
    events = collect(venue, lambda ev: len(ev) >= 1)
    assert [(e.client_order_id, e.status) for e in events] == [("l1", "open")]
    assert venue.submit([CancelOrder("l1")], now())[0].status == "cancelled"  # its oid is known again
    server.lose_next_answer = True  # this one the venue rejected (it would cross), and the answer is lost
    assert venue.submit([PlaceOrder("l2", Side.BUY, 105056.0, 0.01, "POST_ONLY")], now()) == []
    events = collect(venue, lambda ev: len(ev) >= 1)
    assert [(e.client_order_id, e.reason) for e in events] == [("l2", "not_at_venue_after_lost_answer")]
    assert venue.open_orders() == []


def test_config_from_settings(settings):
    from apps.venues.hyperliquid.venue import MAINNET_WS_URL, TESTNET_API_URL, config_from_settings

    settings.MM_HYPERLIQUID_NETWORK = "testnet"
    settings.MM_HYPERLIQUID_API_URL = ""
    cfg = config_from_settings("BTC")
    assert (cfg.resolved_api_url, cfg.mainnet) == (TESTNET_API_URL, False)
    settings.MM_HYPERLIQUID_NETWORK = "mainnet"
    settings.MM_HYPERLIQUID_WS_URL = ""
    settings.MM_HYPERLIQUID_API_URL = "http://127.0.0.1:9"
    cfg = config_from_settings("BTC")
    assert (cfg.resolved_api_url, cfg.resolved_ws_url) == ("http://127.0.0.1:9", MAINNET_WS_URL)
    settings.MM_HYPERLIQUID_NETWORK = "prod"
    with pytest.raises(ValueError, match="network must be"):
        config_from_settings("BTC")
    with pytest.raises(ValueError, match="dead_man_s"):
        HyperliquidConfig(coin="BTC", dead_man_s=2).validate()


def test_heartbeat_ping_pong(server, creds):
    v = make_venue(server, creds, heartbeat_s=0.1)
    try:
        assert wait_until(lambda: v.socket.last_pong_ns > 0, 2)
        assert v.connection_state is ConnectionState.CONNECTED
    finally:
        v.stop()


# --- dead-man's switch ----------------------------------------------------------------------------------------
def test_scheduled_cancel_armed_refreshed_and_fired(server, creds):
    v = make_venue(server, creds, dead_man_s=6.0)
    try:
        t0 = int(time.time() * 1000)
        until = v.arm_dead_man()
        assert server.scheduled_cancel_ms == until and 5900 <= until - t0 <= 6200
        v._dead_man_sent_ms -= 2500  # as if 2.5 s (> window/3) had passed: advance pushes it forward
        v.advance(now())
        assert server.scheduled_cancel_ms > until
        v.submit([PlaceOrder("s1", Side.BUY, 105000.0, 0.01, "POST_ONLY")], now())
        assert server.fire_scheduled_cancel() == 1
        events = collect(v, lambda ev: any(isinstance(e, OrderAck) and e.status == "cancelled" for e in ev))
        assert [(e.client_order_id, e.status) for e in events] == [("s1", "cancelled")]
    finally:
        v.stop()
    assert server.schedule_calls[-1] == {"type": "scheduleCancel"}  # disarmed on stop
    assert server.scheduled_cancel_ms is None


# --- market data and account ----------------------------------------------------------------------------------
def test_market_data_from_the_recorded_sample(venue, server):
    got: list = []
    assert wait_until(lambda: got.extend(venue.poll_market(now())) or got, 2)  # the snapshot sent on subscribe
    n = server.publish_sample()
    assert n == 55
    assert wait_until(lambda: got.extend(venue.poll_market(now())) or len(got) >= 1 + 46 + 64, 3)
    snaps = [e for e in got if isinstance(e, DepthSnapshot)]
    trades = [e for e in got if isinstance(e, Trade)]
    assert (len(snaps), len(trades)) == (47, 64)
    assert snaps[0].bids[0] == (105055.0, 3.03622) and snaps[0].asks[0] == (105056.0, 6.34472)
    for s in snaps:
        venue.on_market(s)
    assert venue.config.tick_size == 1.0 and venue.config.lot_size == pytest.approx(1e-5)


def test_margin_position_and_funding(venue, server):
    m = venue.margin()
    assert m["accountValue"] == 1_000_000.0 and m["totalMarginUsed"] == 0.0
    assert venue.position() == 0.0
    assert venue.funding_rate() == pytest.approx(0.0000125)


# --- secrets --------------------------------------------------------------------------------------------------
def test_credentials_from_env(tmp_path):
    f = tmp_path / "key"
    f.write_text(FAKE_KEY + "\n")
    c = credentials_from_env({"MM_HYPERLIQUID_SECRET_KEY_FILE": str(f), "MM_HYPERLIQUID_ACCOUNT_ADDRESS": ACCOUNT})
    assert c.account_address == ACCOUNT and FAKE_KEY not in repr(c) and FAKE_KEY not in str(c)
    assert credentials_from_env({"MM_HYPERLIQUID_SECRET_KEY": "0x" + FAKE_KEY}).account_address == c.signer_address
    with pytest.raises(CredentialsError, match="MM_HYPERLIQUID_SECRET_KEY or MM_HYPERLIQUID_SECRET_KEY_FILE"):
        credentials_from_env({})
    with pytest.raises(CredentialsError, match="only one"):
        credentials_from_env({"MM_HYPERLIQUID_SECRET_KEY": FAKE_KEY, "MM_HYPERLIQUID_SECRET_KEY_FILE": str(f)})
    with pytest.raises(CredentialsError, match="64 hex digits") as exc:
        credentials_from_env({"MM_HYPERLIQUID_SECRET_KEY": FAKE_KEY[:-2]})
    assert FAKE_KEY[:-2] not in str(exc.value)
    with pytest.raises(CredentialsError, match="cannot read"):
        credentials_from_env({"MM_HYPERLIQUID_SECRET_KEY_FILE": str(tmp_path / "missing")})
    with pytest.raises(TypeError):
        import pickle

        pickle.dumps(c)


def test_secret_key_never_in_logs(server, creds, caplog, capfd):
    caplog.set_level(logging.DEBUG)  # everything, every library (websockets, urllib3, ...)
    v = make_venue(server, creds)
    try:
        v.arm_dead_man()
        v.submit([PlaceOrder("z1", Side.BUY, 105000.0, 0.01, "POST_ONLY")], now())
        v.submit([PlaceOrder("z2", Side.BUY, 105056.0, 0.01, "POST_ONLY")], now())  # a reject
        logging.getLogger("test").info("venue %r creds %s", v, creds)
        server.drop_connections(refuse=False)
        assert v.socket.wait_connected(epoch=2, timeout_s=3)
        collect(v, lambda ev: v.reconciliations >= 1)
    finally:
        v.stop()
    out, err = capfd.readouterr()
    text = "\n".join([caplog.text, out, err, *(repr(r.args) for r in caplog.records)])
    assert "hyperliquid ws down" in text  # the capture did see the connector's logs
    key_bytes = bytes.fromhex(FAKE_KEY)
    for needle in (FAKE_KEY, FAKE_KEY.upper(), FAKE_KEY[:16], FAKE_KEY[-16:], str(key_bytes), str(list(key_bytes))):
        assert needle not in text


def test_clock_offset_and_round_trip_from_the_stream_and_http(server, creds):
    """The venue's clock 800 ms behind ours: books and trades are stamped on it, so the socket's
    estimator measures local - venue of about +800 ms; pings and HTTP requests give the round trip. The
    ``isSnapshot`` fill replay on subscribing is history (an old ``time``) and is not an offset sample."""
    server.clock_skew_ms = -800.0
    old = {"coin": "BTC", "px": "100000", "sz": "0.001", "side": "B", "time": server._ms() - 3_600_000}
    server.fills.append(dict(old, oid=1, tid=1, crossed=False, fee="0", hash="0x0"))
    v = make_venue(server, creds)
    try:
        clock = v.socket.clock
        assert clock.rtt_ns is not None and clock.n_rtt >= 2  # meta + userFills over HTTP, before the socket
        replayed = lambda: any(m[2].get("channel") == "userFills" for m in list(v.socket.inbox.queue))  # noqa: E731
        assert wait_until(replayed, 3.0)
        # one sample (the l2Book snapshot); the replay's hour-old fill, were it one, would be the last, near +1 h
        assert clock.n_samples == 1 and 790 <= clock.last_sample_ns / 1e6 <= 850
        assert 790 <= clock.offset_ns / 1e6 <= 850
        before = clock.n_samples
        for _ in range(3):
            server.publish_book()
            server.publish_trade("B", 0.01)
        assert wait_until(lambda: clock.n_samples >= before + 6, 3.0)
        assert 790 <= clock.offset_ns / 1e6 <= 850 and 0 < clock.rtt_ns < 0.5e9
        assert wait_until(lambda: v.socket.last_pong_ns > 0, 3.0)  # the first ping goes out on connect
    finally:
        v.stop()
