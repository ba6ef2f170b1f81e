"""Binance public market data (USD-M futures and spot): combined-stream WebSocket, REST depth snapshot, local book.

One :class:`BinanceConnector` owns one combined-stream connection for several symbols
(``<sym>@trade``, ``<sym>@bookTicker``, ``<sym>@depth@100ms`` and, on USD-M, ``<sym>@markPrice``). It runs an
asyncio loop in a daemon thread: messages are parsed there (the recorded-format parser's
:func:`~apps.marketdata.parsers.binance_raw.decode_message`), depth diffs go through
:class:`~apps.engine.market.book.BinanceBookSync` (Binance's "how to manage a local order book correctly"
procedure; USD-M checks the ``pu`` chain, spot ``U == previous u + 1``), and what the consumers need is put on a
thread-safe queue as :class:`Item` tuples. Nothing blocks the consumer: :class:`BinanceFeed.poll` only drains the
queue.

Items (``kind``, ``symbol``, ``payload``, ``whole``):

* ``"event"``: every parsed market message (Trade, BestBidAsk, DepthUpdate, MarkPrice from markPrice) and every REST
  snapshot fetched (DepthSnapshot). ``whole`` says whether the symbol's book was whole after it (for a diff: it was
  applied in sequence). The recorder stores all of them; the engine feed passes book events only when whole.
* ``"lost"``: the symbol's book is no longer whole (sequence gap, snapshot failure or disconnect); payload = reason.
* ``"synced"``: the book is whole again; payload = (DepthSnapshot of the whole book, BestBidAsk or None).

Connection life: ``connecting`` -> ``syncing`` (socket open, snapshots being fetched and bridged) -> ``live``
(every symbol's book whole) -> on a drop ``backoff`` (exponential, jittered, capped: :class:`Backoff`) ->
``connecting`` ... ; ``stopped`` at the end. Heartbeats: the websockets library answers the server's pings and
sends its own every ``ping_interval_s``; no pong within ``ping_timeout_s`` closes the connection (then back-off and
reconnect, which resubscribes every stream and resynchronises every book).

Clock: every message with an exchange stamp feeds a :class:`~apps.engine.market.clock.ClockEstimator` (local minus
exchange offset, min-filtered per second, median over 30 s), and so does every round trip: a WebSocket ping every
``rtt_interval_s`` to its pong, each REST snapshot request to its answer. :class:`BinanceFeed` shows both in its
status and hands the offset to the quoting loop's clock-skew rule (:meth:`BinanceFeed.clock_offset_ns`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
import time
import urllib.parse
import urllib.request
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, NamedTuple

import orjson
import websockets
from websockets.asyncio.client import connect as ws_connect

from apps.engine.market.book import BinanceBookSync, BookSyncParams, SyncRule
from apps.engine.market.clock import ClockEstimator, ClockParams
from apps.engine.market.events import BestBidAsk, DepthSnapshot, DepthUpdate, EventError, Funding, MarkPrice, Trade
from apps.engine.market.feeds import Backoff, BackoffParams, FeedPoll
from apps.marketdata.parsers.binance_raw import decode_message
from apps.marketdata.parsers.common import BadRecordError, RecentIds

logger = logging.getLogger(__name__)

VENUES = ("binance-usdm", "binance-spot")


class ConnState(StrEnum):
    IDLE = "idle"
    CONNECTING = "connecting"
    SYNCING = "syncing"
    LIVE = "live"
    BACKOFF = "backoff"
    STOPPED = "stopped"


class Item(NamedTuple):
    kind: str  # "event" | "lost" | "synced"
    symbol: str
    payload: Any
    whole: bool


@dataclass(frozen=True)
class Endpoints:
    ws_url: str  # base, e.g. wss://fstream.binance.com (the connector appends /stream?streams=...)
    rest_url: str  # base, e.g. https://fapi.binance.com
    depth_path: str  # /fapi/v1/depth or /api/v3/depth
    rule: SyncRule
    mark_price: bool  # subscribe <sym>@markPrice (USD-M only)


def endpoints(venue: str, ws_url: str | None = None, rest_url: str | None = None) -> Endpoints:
    """The venue's URLs: the arguments, else the MM_BINANCE_* settings (public defaults, see mmweb/settings.py)."""
    from django.conf import settings

    if venue == "binance-usdm":
        ws = ws_url or settings.MM_BINANCE_WS_URL
        rest = rest_url or settings.MM_BINANCE_REST_URL
        return Endpoints(ws.rstrip("/"), rest.rstrip("/"), "/fapi/v1/depth", SyncRule.FUTURES, True)
    if venue == "binance-spot":
        ws = ws_url or settings.MM_BINANCE_SPOT_WS_URL
        rest = rest_url or settings.MM_BINANCE_SPOT_REST_URL
        return Endpoints(ws.rstrip("/"), rest.rstrip("/"), "/api/v3/depth", SyncRule.SPOT, False)
    raise ValueError(f"venue must be one of {list(VENUES)}, got {venue!r}")


@dataclass
class ConnectorStats:
    messages: int = 0  # stream messages received
    bad_messages: int = 0
    diffs_applied: int = 0
    gaps: int = 0
    snapshots: int = 0
    snapshot_failures: int = 0
    connects: int = 0
    disconnects: int = 0
    last_message_ns: int = 0  # wall clock of the last stream message (the stale-feed rule reads it)
    states: list[tuple[int, str]] = field(default_factory=list)  # (wall ns, state), the last 200


class BinanceConnector:
    """Market data of ``symbols`` on ``venue`` ("binance-usdm" | "binance-spot"), handed over on :attr:`queue`."""

    def __init__(
        self,
        venue: str,
        symbols: Sequence[str],
        *,
        ws_url: str | None = None,
        rest_url: str | None = None,
        depth_speed: str = "100ms",
        snapshot_limit: int = 1000,
        backoff: BackoffParams | None = None,
        seed: int = 0,
        ping_interval_s: float = 20.0,
        ping_timeout_s: float = 20.0,
        rest_timeout_s: float = 10.0,
        rtt_interval_s: float = 5.0,
        clock_params: ClockParams | None = None,
        clock: Callable[[], int] = time.time_ns,
    ) -> None:
        self.ep = endpoints(venue, ws_url, rest_url)
        self.venue = venue
        syms = [s.strip().upper() for s in symbols]
        if not syms or any(not s.isalnum() for s in syms):
            raise ValueError(f"symbols must be non-empty alphanumeric names, got {list(symbols)!r}")
        if depth_speed not in ("", "100ms", "250ms", "500ms", "0ms", "1000ms"):
            raise ValueError(f"depth_speed must be one of 0ms/100ms/250ms/500ms/1000ms or '', got {depth_speed!r}")
        if not (5 <= snapshot_limit <= 5000):
            raise ValueError(f"snapshot_limit must be in [5, 5000], got {snapshot_limit}")
        self.symbols = syms
        self.depth_speed = depth_speed
        self.snapshot_limit = snapshot_limit
        self.backoff = Backoff(backoff, seed=seed)
        self.ping_interval_s = ping_interval_s
        self.ping_timeout_s = ping_timeout_s
        self.rest_timeout_s = rest_timeout_s
        if not (0 < rtt_interval_s < float("inf")):
            raise ValueError(f"rtt_interval_s must be a positive number of seconds, got {rtt_interval_s!r}")
        self.rtt_interval_s = rtt_interval_s
        self.clock_est = ClockEstimator(clock_params)
        self.clock = clock
        self.queue: queue.SimpleQueue[Item] = queue.SimpleQueue()
        self.stats = ConnectorStats()
        self.state = ConnState.IDLE
        self.last_error = ""
        self.syncs: dict[str, BinanceBookSync] = {}
        self._by_stream_sym = {s.lower(): s for s in syms}
        self._recent = RecentIds(100_000)
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping = False
        self._stop_event: asyncio.Event | None = None
        self._ws: Any = None
        self._closing: asyncio.Future | None = None
        self._resyncing: dict[str, asyncio.Task] = {}
        self._whole: dict[str, bool] = dict.fromkeys(syms, False)
        self.attempts = 0  # reconnect attempts since the books were last whole

    # --- public ---------------------------------------------------------------------------------

    @property
    def streams(self) -> list[str]:
        out = []
        for s in self.symbols:
            low = s.lower()
            out += [f"{low}@trade", f"{low}@bookTicker"]
            out.append(f"{low}@depth@{self.depth_speed}" if self.depth_speed else f"{low}@depth")
            if self.ep.mark_price:
                out.append(f"{low}@markPrice@1s")
        return out

    @property
    def stream_url(self) -> str:
        return f"{self.ep.ws_url}/stream?streams={'/'.join(self.streams)}"

    def start(self) -> BinanceConnector:
        if self._thread is not None:
            raise RuntimeError("connector already started")
        self._thread = threading.Thread(target=self._run, name=f"binance-{self.venue}", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stopping = True
        loop = self._loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(self._wake_stop)
        if self._thread is not None:
            self._thread.join(timeout_s)

    def is_whole(self, symbol: str) -> bool:
        return self._whole.get(symbol.upper(), False)

    # --- the network thread ----------------------------------------------------------------------

    def _set_state(self, state: ConnState) -> None:
        if state is not self.state:
            self.state = state
            self.stats.states.append((self.clock(), state.value))
            del self.stats.states[:-200]

    def _put(self, kind: str, symbol: str, payload: Any, whole: bool) -> None:
        self.queue.put(Item(kind, symbol, payload, whole))

    def _wake_stop(self) -> None:
        if self._stop_event is not None:
            self._stop_event.set()
        if self._ws is not None:
            self._closing = asyncio.ensure_future(self._ws.close())

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except Exception:
            logger.exception("binance connector crashed")
            self.last_error = "connector crashed (see log)"
        finally:
            self._set_state(ConnState.STOPPED)

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop_event = asyncio.Event()
        if self._stopping:
            return
        while not self._stopping:
            self._set_state(ConnState.CONNECTING)
            reason = "closed by the server"
            try:
                async with ws_connect(
                    self.stream_url,
                    ping_interval=self.ping_interval_s,
                    ping_timeout=self.ping_timeout_s,
                    open_timeout=10,
                    max_size=2**24,
                    compression=None,
                ) as ws:
                    self._ws = ws
                    self.stats.connects += 1
                    await self._session(ws)
            except (OSError, TimeoutError, websockets.exceptions.WebSocketException) as exc:
                reason = f"{type(exc).__name__}: {exc}"[:300]
            finally:
                self._ws = None
                for task in self._resyncing.values():
                    task.cancel()
                self._resyncing.clear()
            if self._stopping:
                break
            self.stats.disconnects += 1
            self.last_error = reason
            delay = self.backoff.next_delay_s()
            self.attempts = self.backoff.attempts
            self._set_state(ConnState.BACKOFF)
            for sym in self.symbols:
                self._lose(sym, f"disconnected: {reason}")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop_event.wait(), timeout=delay)

    async def _session(self, ws: Any) -> None:
        rule = BookSyncParams(rule=self.ep.rule)
        self.syncs = {s: BinanceBookSync(rule) for s in self.symbols}
        self._set_state(ConnState.SYNCING)
        for sym in self.symbols:
            self._start_resync(sym)
        pinger = asyncio.ensure_future(self._ping(ws))
        try:
            async for raw in ws:
                self._handle(raw, self.clock())
            # the async for ends on a normal close (ours on stop, or the server's)
        finally:
            pinger.cancel()

    async def _ping(self, ws: Any) -> None:
        """Round trips for the clock estimator: a ping every ``rtt_interval_s``, timed to its pong. (The websockets
        library's own keepalive pings, every ``ping_interval_s``, watch the connection; these measure it.)"""
        while True:
            t0 = time.perf_counter_ns()
            try:
                pong = await ws.ping()
                await asyncio.wait_for(pong, timeout=self.ping_timeout_s)
            except (TimeoutError, websockets.exceptions.ConnectionClosed):
                return  # the keepalive closes a dead connection; a closed one ends the session
            self.clock_est.on_round_trip(time.perf_counter_ns() - t0)
            await asyncio.sleep(self.rtt_interval_s)

    def _lose(self, sym: str, reason: str) -> None:
        if self._whole[sym]:
            self._whole[sym] = False
            self._put("lost", sym, reason, False)
        if self.state is ConnState.LIVE:
            self._set_state(ConnState.SYNCING)

    def _synced(self, sym: str) -> None:
        book = self.syncs[sym].book
        snap = DepthSnapshot(
            book.ts_exch_ns, book.ts_local_ns, tuple(book.bids()), tuple(book.asks()), book.last_update_id
        )
        bbo = None
        bid, ask = book.best_bid(), book.best_ask()
        if bid is not None and ask is not None and bid[0] < ask[0]:
            bbo = BestBidAsk(book.ts_exch_ns, book.ts_local_ns, bid[0], bid[1], ask[0], ask[1], book.last_update_id)
        self._whole[sym] = True
        self._put("synced", sym, (snap, bbo), True)
        if all(self._whole.values()):
            self._set_state(ConnState.LIVE)
            self.backoff.reset()
            self.attempts = 0

    def _start_resync(self, sym: str) -> None:
        task = self._resyncing.get(sym)
        if task is None or task.done():
            self._resyncing[sym] = asyncio.ensure_future(self._resync(sym))

    async def _resync(self, sym: str) -> None:
        """Fetch REST snapshots until one bridges the buffered diffs (or the next diff will bridge it)."""
        failures = 0
        sync = self.syncs[sym]
        while not self._stopping:
            try:
                snap, rtt_ns = await asyncio.to_thread(self._fetch_snapshot, sym)
            except (OSError, ValueError, BadRecordError, EventError) as exc:
                self.stats.snapshot_failures += 1
                self.last_error = f"{sym} depth snapshot: {exc}"[:300]
                failures += 1
                await asyncio.sleep(min(5.0, 0.1 * 2**failures))
                continue
            self.clock_est.on_round_trip(rtt_ns)
            if snap.ts_exch_ns:  # USD-M's snapshot carries E/T (spot's none)
                self.clock_est.on_stamp(snap.ts_local_ns, snap.ts_exch_ns)
            if self.syncs.get(sym) is not sync:  # a new connection started meanwhile
                return
            self.stats.snapshots += 1
            self._put("event", sym, snap, False)
            gaps = sync.on_snapshot(snap)
            self.stats.diffs_applied = sum(s.n_applied for s in self.syncs.values())
            if sync.in_sync:
                self._synced(sym)
                return
            if not sync.needs_snapshot:
                return  # waiting for the bridging diff: _handle finishes the job
            self.stats.gaps += len(gaps)  # the snapshot was older than every buffered diff: fetch a newer one
            await asyncio.sleep(0.05)

    def _fetch_snapshot(self, sym: str) -> tuple[DepthSnapshot, int]:
        """The REST snapshot and the request's round trip (ns; the estimator is fed on the loop's thread)."""
        query = urllib.parse.urlencode({"symbol": sym, "limit": self.snapshot_limit})
        url = f"{self.ep.rest_url}{self.ep.depth_path}?{query}"
        t0 = time.perf_counter_ns()
        with urllib.request.urlopen(url, timeout=self.rest_timeout_s) as resp:  # noqa: S310 - URL from settings
            body = resp.read()
        local = self.clock()
        rtt_ns = time.perf_counter_ns() - t0
        data = orjson.loads(body)
        if not isinstance(data, dict) or "lastUpdateId" not in data:
            raise ValueError(f"not a depth snapshot: {body[:200]!r}")
        snap = decode_message(data, local, self._recent)
        if not isinstance(snap, DepthSnapshot):
            raise ValueError("not a depth snapshot")
        return snap, rtt_ns

    def _handle(self, raw: str | bytes, local: int) -> None:
        stats = self.stats
        stats.messages += 1
        stats.last_message_ns = local
        try:
            msg = orjson.loads(raw)
            stream = msg.get("stream") if isinstance(msg, dict) else None
            if stream is None:
                return  # a reply to a control message ({"result": null, "id": 1})
            sym = self._by_stream_sym.get(stream.partition("@")[0])
            if sym is None:
                raise BadRecordError("unknown_message", f"stream {stream!r} not subscribed")
            # markPriceUpdate decodes to a MarkPrice (mark price and the announced rate), never to a payment: the
            # driver's FundingClock books a settlement when the announced funding time passes
            ev: Any = decode_message(msg, local, self._recent)
        except (BadRecordError, EventError, ValueError, KeyError, TypeError, AttributeError) as exc:
            stats.bad_messages += 1
            self.last_error = f"bad message: {exc}"[:300]
            return
        if ev is None:
            return
        if ev.ts_exch_ns > 0:
            self.clock_est.on_stamp(local, ev.ts_exch_ns)
        if type(ev) is DepthUpdate:
            sync = self.syncs[sym]
            was = sync.in_sync
            gap = sync.on_diff(ev)
            if gap is not None:
                stats.gaps += 1
                self._put("event", sym, ev, False)
                self._lose(sym, f"{gap.kind}: expected {gap.expected}, got {gap.got}")
                self._start_resync(sym)
                return
            now = sync.in_sync
            if now:
                stats.diffs_applied += 1
            self._put("event", sym, ev, now and was)
            if now and not was:
                self._synced(sym)
            return
        if type(ev) is BestBidAsk:
            self._put("event", sym, ev, self._whole[sym])
            return
        self._put("event", sym, ev, True)


class BinanceFeed:
    """One symbol of a :class:`BinanceConnector` as the quoting loop's feed: ``poll(now) -> FeedPoll`` like
    :class:`~apps.engine.market.feeds.ReconnectingFeed`. A drop (``dropped``) is reported when the book stops being
    whole (gap or disconnect): book events stop until ``resynced``, whose events begin with the whole book and its
    top. Trades and funding pass through meanwhile. Never blocks."""

    def __init__(self, connector: BinanceConnector, symbol: str | None = None) -> None:
        self.connector = connector
        self.symbol = (symbol or connector.symbols[0]).upper()
        if self.symbol not in connector.symbols:
            raise ValueError(f"symbol {self.symbol!r} is not among the connector's {connector.symbols}")
        self._pending: deque[Item] = deque()
        self.whole = False

    @property
    def exhausted(self) -> bool:
        return False

    @property
    def connected(self) -> bool:
        return self.whole

    def close(self) -> None:
        """Stop the connector (the quoting loop calls this when it finishes)."""
        self.connector.stop()

    def status(self) -> dict[str, Any]:
        """The connection as the dashboard and the stale-feed check see it: ``state`` (connecting / syncing /
        live / backoff / stopped), whether this symbol's book is whole, and the age of the last stream message in
        seconds (None before the first)."""
        c = self.connector
        last = c.stats.last_message_ns
        return {
            "source": "binance",
            "venue": c.venue,
            "symbol": self.symbol,
            "state": c.state.value,
            "whole": self.whole,
            "message_age_s": round((c.clock() - last) / 1e9, 3) if last else None,
            "attempts": c.attempts,
            "disconnects": c.stats.disconnects,
            "gaps": c.stats.gaps,
            "last_error": c.last_error,
            **c.clock_est.status(),
        }

    def clock_offset_ns(self) -> int | None:
        """The measured local-minus-exchange offset (ns; None before the first stamped message): what the quoting
        loop gives the clock-skew rule instead of one event's raw difference."""
        return self.connector.clock_est.offset_ns

    def _next(self) -> Item | None:
        if self._pending:
            return self._pending.popleft()
        try:
            return self.connector.queue.get_nowait()
        except queue.Empty:
            return None

    def poll(self, now_ns: int) -> FeedPoll:
        events: list[Any] = []
        while (item := self._next()) is not None:
            kind, sym, payload, whole = item
            if sym != self.symbol:
                continue
            if kind == "event":
                t = type(payload)
                if t is Trade or t is MarkPrice or t is Funding or (whole and self.whole and t is not DepthSnapshot):
                    events.append(payload)
            elif kind == "lost":
                if self.whole:
                    self.whole = False
                    return FeedPoll(events, dropped=str(payload), attempts=self.connector.attempts)
            elif kind == "synced" and not self.whole:
                if events:  # the resync poll's events must begin with the book: hand it over next time
                    self._pending.appendleft(item)
                    return FeedPoll(events)
                self.whole = True
                snap, bbo = payload
                events = [snap] if bbo is None else [snap, bbo]
                rest = self._drain_until_lost()
                return FeedPoll(events + rest, resynced=True, attempts=self.connector.attempts)
        return FeedPoll(events)

    def _drain_until_lost(self) -> list[Any]:
        out: list[Any] = []
        while (item := self._next()) is not None:
            if item.symbol != self.symbol:
                continue
            if item.kind != "event":
                self._pending.appendleft(item)
                break
            t = type(item.payload)
            if t is Trade or t is MarkPrice or t is Funding or (item.whole and t is not DepthSnapshot):
                out.append(item.payload)
        return out
