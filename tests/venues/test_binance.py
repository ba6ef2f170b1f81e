"""The Binance connector against a local server replaying the shared USD-M and spot recordings
(tests/venues/binance_server.py; both are real hftbacktest recordings, served byte for byte).

What is compared: the book the engine sees (the feed's resync snapshot, then every in-sequence diff it passes on)
against the recorded ``@bookTicker`` — best bid and ask, price and size — at every update id ``u`` carried by both
a bookTicker message and a depth diff (the bookTicker's ``u`` is the book's update id, and a diff with the same
``u`` leaves the book in exactly that state). Other bookTicker messages fall between diffs (``@depth@0ms`` batches
several book updates into one message), so nothing exact can be said about them.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from django.core.management import call_command

from apps.engine.market.book import OrderBook
from apps.engine.market.events import BestBidAsk, DepthSnapshot, DepthUpdate, Trade
from apps.engine.market.feeds import BackoffParams
from apps.venues.binance.connector import BinanceConnector, BinanceFeed, ConnState
from tests.conftest import shared_data, wait_until
from tests.venues.binance_server import BinanceReplayServer, load_recording

FAST_BACKOFF = BackoffParams(base_s=0.05, cap_s=0.2, jitter=0.5)


def _recording(name: str = "btcusdt", n: int = 5000, market: str = "usdm"):
    path = shared_data(f"hftbacktest-binance-{market}-{name}-20240808", "raw", f"{market}_{name}_20240808.gz")
    return load_recording(Path(path), n)


MARKETS = {"usdm": "binance-usdm", "spot": "binance-spot"}


class Watcher:
    """Polls a feed like the quoting loop does and keeps the engine's view of the book."""

    def __init__(self, feed: BinanceFeed) -> None:
        self.feed = feed
        self.book = OrderBook()
        self.tops: dict[int, tuple] = {}  # u -> (bid, bid size, ask, ask size) after the diff with that u
        self.bbos: dict[int, tuple] = {}
        self.log: list[str] = []  # "dropped" / "resynced" in order
        self.whole = False
        self.events_while_down = 0
        self.trades = 0

    def poll(self) -> None:
        p = self.feed.poll(time.time_ns())
        if p.resynced:
            self.log.append("resynced")
            assert isinstance(p.events[0], DepthSnapshot), "a resync's events begin with the book"
            self.whole = True
        for ev in p.events:
            if isinstance(ev, DepthSnapshot):
                self.book.apply_snapshot(ev)
            elif isinstance(ev, DepthUpdate):
                assert self.whole
                if self.feed.connector.venue == "binance-spot":  # spot: U == previous u + 1 (no pu)
                    assert ev.first_update_id == self.book.last_update_id + 1, "the feed passes only chained diffs"
                else:
                    assert ev.prev_update_id == self.book.last_update_id, "the feed passes only chained diffs"
                self.book.apply_update(ev)
                (bp, bs), (ap, as_) = self.book.best_bid(), self.book.best_ask()
                self.tops[ev.last_update_id] = (bp, bs, ap, as_)
            elif isinstance(ev, BestBidAsk):
                if not self.whole:
                    self.events_while_down += 1
                self.bbos[ev.update_id] = (ev.bid_px, ev.bid_size, ev.ask_px, ev.ask_size)
            elif isinstance(ev, Trade):
                self.trades += 1
        if p.dropped is not None:  # the events of a dropped poll came before the drop
            self.log.append("dropped")
            self.whole = False

    def run_until(self, cond, seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.poll()
            if cond():
                return True
            time.sleep(0.002)
        self.poll()
        return cond()

    def compare(self) -> int:
        common = sorted(set(self.tops) & set(self.bbos))
        for u in common:
            assert self.tops[u] == self.bbos[u], f"book top at u={u}: {self.tops[u]} != bookTicker {self.bbos[u]}"
        return len(common)


@pytest.fixture
def server_factory():
    servers, connectors = [], []

    def make(recordings, speed=0.0, server_kwargs=None, **conn_kwargs):
        srv = BinanceReplayServer(recordings, speed=speed, **(server_kwargs or {})).start()
        servers.append(srv)
        syms = [r.symbol for r in recordings]
        venue = "binance-spot" if recordings[0].spot else "binance-usdm"
        conn = BinanceConnector(
            venue, syms, ws_url=srv.base_ws, rest_url=srv.base_http, backoff=FAST_BACKOFF, **conn_kwargs
        )
        connectors.append(conn)
        return srv, conn

    yield make
    for c in connectors:
        c.stop()
    for s in servers:
        s.stop()


@pytest.mark.parametrize("market", ["usdm", "spot"])
def test_book_equals_recorded_book_ticker(server_factory, market):
    rec = _recording(n=20_000, market=market)
    assert rec.spot is (market == "spot")
    srv, conn = server_factory([rec], speed=0.0)
    w = Watcher(BinanceFeed(conn.start()))
    assert w.run_until(lambda: srv.done.is_set() and conn.stats.messages >= len(rec.messages), 20)
    w.run_until(lambda: False, 0.2)
    assert w.log == ["resynced"]
    n = w.compare()
    assert n >= 100, f"only {n} update ids in common"
    counts = rec.counts()
    assert conn.stats.gaps == 0 and conn.stats.bad_messages == 0
    # every diff is either older than the snapshot (dropped) or applied in sequence
    sync = conn.syncs["BTCUSDT"]
    assert sync.n_applied + sync.n_dropped_stale == counts["depth"] == conn.stats.diffs_applied + sync.n_dropped_stale
    assert w.trades == counts["trade"]
    assert conn.state is ConnState.LIVE


@pytest.mark.parametrize("market", ["usdm", "spot"])
def test_a_snapshot_after_the_last_diff_is_in_sync_without_another_diff(server_factory, market):
    """The REST snapshot answered only after the last diff was sent (the race a fast replay, or a market gone quiet,
    makes): no later diff bridges it, yet the book is whole and the connector live, on spot's rule as on USD-M's."""
    rec = _recording(n=2000, market=market)
    srv, conn = server_factory([rec], speed=0.0, server_kwargs={"snapshot_after_replay": True})
    w = Watcher(BinanceFeed(conn.start()))
    assert w.run_until(lambda: w.log == ["resynced"], 20), (w.log, [s for _, s in conn.stats.states])
    assert srv.done.is_set() and conn.stats.snapshots == 1 and conn.stats.gaps == 0
    last_u = [m.diff for m in rec.messages if m.diff is not None][-1].last_update_id
    sync = conn.syncs["BTCUSDT"]
    assert sync.in_sync and sync.book.last_update_id == last_u
    assert w.book.last_update_id == last_u and w.book.best_bid() == srv.books["BTCUSDT"].best_bid()
    assert w.book.best_ask() == srv.books["BTCUSDT"].best_ask()
    assert conn.state is ConnState.LIVE


@pytest.mark.parametrize("market", ["usdm", "spot"])
def test_dropped_diff_is_detected_and_resynchronised(server_factory, market):
    rec = _recording(n=6000, market=market)
    diffs = [m.diff for m in rec.messages if m.diff is not None]
    i = 60 if market == "usdm" else 120
    victim = diffs[i].last_update_id
    # spot's diffs come every 100 ms (USD-M's several times as often): replay it faster to see the same stretch
    srv, conn = server_factory([rec], speed=15.0 if market == "usdm" else 40.0)
    srv.drop_diff(victim)
    w = Watcher(BinanceFeed(conn.start()))
    assert w.run_until(lambda: w.log == ["resynced", "dropped", "resynced"], 20), w.log
    assert srv.stats.dropped == [victim]
    assert conn.stats.gaps == 1 and conn.stats.snapshots == 2
    gap = conn.syncs["BTCUSDT"].gaps[0]
    if market == "usdm":  # the book stood at the diff before the victim; the next diff's pu names the victim
        assert (gap.kind, gap.expected, gap.got) == ("sequence", diffs[i - 1].last_update_id, victim)
    else:  # spot: the next diff should have started right after the diff before the victim; it starts after it
        assert (gap.kind, gap.expected, gap.got) == ("sequence", diffs[i - 1].last_update_id + 1, victim + 1)
    assert w.events_while_down == 0, "no book events reach the engine while the book is not whole"
    assert w.run_until(srv.done.is_set, 20)
    w.run_until(lambda: False, 0.3)
    assert w.compare() >= 5
    assert conn.state is ConnState.LIVE


def test_server_disconnect_is_survived_with_backoff(server_factory):
    rec = _recording(n=8000)
    srv, conn = server_factory([rec], speed=15.0)
    w = Watcher(BinanceFeed(conn.start()))
    assert w.run_until(lambda: len(w.tops) > 20, 20)
    srv.refuse(0.3)  # the first reconnects are refused: the connector backs off, more than once
    srv.disconnect()
    assert w.run_until(lambda: w.log == ["resynced", "dropped", "resynced"], 20), w.log
    assert srv.stats.refused >= 1
    assert conn.stats.connects >= 2 and conn.stats.disconnects >= 2  # the drop, then at least one refusal
    states = [s for _, s in conn.stats.states]
    assert states[:3] == ["connecting", "syncing", "live"]
    assert states[3:5] == ["backoff", "connecting"]
    assert states[-3:] == ["connecting", "syncing", "live"]
    assert states.count("backoff") >= 2
    assert srv.stats.connections == conn.stats.connects >= 2 and conn.stats.snapshots >= 2  # resubscribed, resynced
    n_before = len(w.tops)
    assert w.run_until(lambda: len(w.tops) > n_before + 20, 20)
    assert w.compare() >= 1


def test_abrupt_disconnect_and_unreachable_rest(server_factory):
    """A TCP reset (no close frame) is a drop too; the feed reports it with the reconnect attempts."""
    rec = _recording(n=6000)
    srv, conn = server_factory([rec], speed=15.0)
    w = Watcher(BinanceFeed(conn.start()))
    assert w.run_until(lambda: w.log == ["resynced"] and len(w.tops) > 5, 20)
    srv.disconnect(abort=True)
    assert w.run_until(lambda: w.log == ["resynced", "dropped", "resynced"], 20), w.log
    assert conn.state is ConnState.LIVE and conn.attempts == 0


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="venue"):
        BinanceConnector("binance-coinm", ["BTCUSD"], ws_url="ws://127.0.0.1:1", rest_url="http://127.0.0.1:1")
    with pytest.raises(ValueError, match="symbols"):
        BinanceConnector("binance-usdm", ["BTC-USDT"], ws_url="ws://127.0.0.1:1", rest_url="http://127.0.0.1:1")
    with pytest.raises(ValueError, match="depth_speed"):
        BinanceConnector(
            "binance-usdm", ["BTCUSDT"], ws_url="ws://127.0.0.1:1", rest_url="http://127.0.0.1:1", depth_speed="7ms"
        )
    conn = BinanceConnector("binance-usdm", ["btcusdt"], ws_url="ws://127.0.0.1:1/", rest_url="http://127.0.0.1:1")
    assert conn.stream_url == (
        "ws://127.0.0.1:1/stream?streams=btcusdt@trade/btcusdt@bookTicker/btcusdt@depth@100ms/btcusdt@markPrice@1s"
    )


@pytest.mark.django_db(transaction=True)
def test_record_command_stores_the_replayed_slice(settings, capsys):
    from apps.marketdata.models import DepthSnapshotRecord, DepthUpdateRecord, Instrument, QuoteTick, TradeTick

    recs = [_recording("btcusdt", 1500), _recording("ethusdt", 1500)]
    srv = BinanceReplayServer(recs, speed=0.0).start()
    try:
        settings.MM_BINANCE_WS_URL = srv.base_ws
        settings.MM_BINANCE_REST_URL = srv.base_http
        call_command("record", venue="binance-usdm", symbols="BTCUSDT,ETHUSDT", seconds=2.5)
        assert srv.done.is_set()
    finally:
        srv.stop()
    out = capsys.readouterr().out
    assert "recorded trades=" in out and " > live" in _states_line(out)
    for rec in recs:
        inst = Instrument.objects.get(venue="binance-usdm", symbol=rec.symbol)
        counts = rec.counts()
        assert TradeTick.objects.filter(instrument=inst).count() == counts["trade"]
        assert QuoteTick.objects.filter(instrument=inst).count() == counts["bookTicker"]
        assert DepthUpdateRecord.objects.filter(instrument=inst).count() == counts["depth"]
        assert DepthSnapshotRecord.objects.filter(instrument=inst).count() == 1


def _states_line(out: str) -> str:
    """The recorder's closing list of connection states (the per-second lines only sample the state)."""
    lines = [line for line in out.splitlines() if line.startswith("states ")]
    assert len(lines) == 1, out
    return lines[0]


@pytest.mark.django_db(transaction=True)
def test_record_command_stores_spot(settings, capsys):
    """``record --venue binance-spot``: spot's URLs and depth path, spot's sync rule, every message stored."""
    from apps.marketdata.models import DepthSnapshotRecord, DepthUpdateRecord, Instrument, QuoteTick, TradeTick

    rec = _recording("btcusdt", 2000, market="spot")
    srv = BinanceReplayServer([rec], speed=0.0).start()
    try:
        settings.MM_BINANCE_SPOT_WS_URL = srv.base_ws
        settings.MM_BINANCE_SPOT_REST_URL = srv.base_http
        settings.MM_BINANCE_WS_URL = settings.MM_BINANCE_REST_URL = "http://127.0.0.1:9"  # never the USD-M ones
        call_command("record", venue="binance-spot", symbols="BTCUSDT", seconds=2.5)
        assert srv.done.is_set() and srv.stats.rest_requests >= 1
    finally:
        srv.stop()
    out = capsys.readouterr().out
    assert " > live" in _states_line(out) and "gaps 0 " in out
    inst = Instrument.objects.get(venue="binance-spot", symbol="BTCUSDT")
    counts = rec.counts()
    assert TradeTick.objects.filter(instrument=inst).count() == counts["trade"]
    assert QuoteTick.objects.filter(instrument=inst).count() == counts["bookTicker"]
    assert DepthUpdateRecord.objects.filter(instrument=inst).count() == counts["depth"]
    assert DepthSnapshotRecord.objects.filter(instrument=inst).count() == 1


def test_record_command_names_bad_arguments(db):
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="symbols"):
        call_command("record", venue="binance-usdm", symbols="DOGEUSDT", seconds=1)
    with pytest.raises(CommandError, match="--seconds"):
        call_command("record", venue="binance-usdm", symbols="BTCUSDT", seconds=0)
    with pytest.raises(CommandError, match="--max-buffer-rows"):
        call_command("record", venue="binance-usdm", symbols="BTCUSDT", seconds=1, max_buffer_rows=0)
    assert wait_until(lambda: True, 0.1)
