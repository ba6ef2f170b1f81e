"""Hyperliquid perps behind the paper venue's operations (:class:`~apps.engine.execution.paper.PaperVenue`).

``submit(actions, now) -> events``, ``advance(now) -> events``, ``on_market(event) -> events``, ``next_event_ns()``,
``open_orders()``, ``cancel_all_now(now)``, ``config.tick_size``/``config.lot_size`` and ``book``: the driver does
not know which venue it talks to. Differences it may notice: ``submit`` talks to the venue synchronously and
returns the acks and rejects at once (the venue answers each action); fills and cancels by the venue come later
through ``advance``, from the user stream.

Orders
------
* Client ids map to Hyperliquid ``cloid`` s (16 bytes: the BLAKE2b digest of the id), so orders are found again
  after a restart. ``POST_ONLY`` is ``Alo``, ``IOC`` is ``Ioc``, ``GTC`` is ``Gtc``.
* Prices and sizes are checked against the asset's rules (:mod:`.rules`) before sending: an invalid one is an
  :class:`OrderReject` whose reason names the field. A venue error is an :class:`OrderReject` with the venue's
  message.
* Fills are booked from the user stream (``userFills``) and from reconciliation only, each ``tid`` once.

Reconnects
----------
The socket reconnects by itself (:mod:`.ws`). On the first message of a new connection epoch the venue
reconciles: ``openOrders`` (sizes of orders still open), ``userFillsByTime`` since the last booked fill (every fill
missed while disconnected, booked once by ``tid``), and every order we thought live that is neither open nor
fully filled is reported cancelled. The subscription's ``isSnapshot`` replay is deduplicated the same way.

Dead-man's switch
-----------------
:meth:`arm_dead_man` sets the venue's ``scheduleCancel`` to now + window (>= 5 s) and ``advance`` pushes it
forward every window/3, so if this process dies the venue cancels every order within the window.
:meth:`disarm_dead_man` clears it.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass, field

from apps.engine.execution.fillmodel import LevelBook
from apps.engine.execution.paper import OrderView
from apps.engine.execution.venue import MarginReport, fills_after
from apps.engine.market.clock import ClockEstimator, ClockParams
from apps.engine.market.events import (
    Action,
    BestBidAsk,
    CancelAll,
    CancelOrder,
    DepthSnapshot,
    DepthUpdate,
    Fill,
    Funding,
    MarketEvent,
    ModifyOrder,
    OrderAck,
    OrderEvent,
    OrderReject,
    PlaceOrder,
    Side,
)
from apps.engine.market.feeds import Backoff, BackoffParams
from apps.marketdata.parsers.common import Quarantined
from apps.marketdata.parsers.hyperliquid import parse_lines

from .http import HyperliquidHttp, VenueError, VenueUnavailableError
from .rules import AssetRules, InvalidOrderError, rules_from_meta
from .secrets import Credentials
from .ws import ConnectionState, HyperliquidSocket

logger = logging.getLogger(__name__)

_TIF = {"POST_ONLY": "Alo", "IOC": "Ioc", "GTC": "Gtc"}
MAINNET_API_URL = "https://api.hyperliquid.xyz"
MAINNET_WS_URL = "wss://api.hyperliquid.xyz/ws"
TESTNET_API_URL = "https://api.hyperliquid-testnet.xyz"
TESTNET_WS_URL = "wss://api.hyperliquid-testnet.xyz/ws"


def cloid_of(client_order_id: str) -> str:
    """The 16-byte ``cloid`` (``0x`` + 32 hex digits) of a client order id: stable across restarts."""
    return "0x" + hashlib.blake2b(client_order_id.encode(), digest_size=16).hexdigest()


@dataclass(frozen=True)
class HyperliquidConfig:
    """Settings. ``api_url``/``ws_url`` default by ``network`` ("mainnet" | "testnet"); tests point them at
    127.0.0.1. ``dead_man_s`` is the scheduled-cancel window (>= 5 s, the venue's minimum).

    ``quoting_mode`` (off by default, on in a live session) makes the venue behave as the quoting loop needs:
    prices are rounded to the venue's price rule on the passive side (bids down, asks up) instead of rejected, the
    dead-man's switch is armed by the first order sent and disarmed once :meth:`HyperliquidVenue.cancel_all_now`
    has emptied the book (armed exactly while the session quotes).

    ``rtt_interval_s`` (default 5 s) is how often a ping is timed to its pong; ``clock`` the windows of the clock
    estimator fed by the stream's ``time`` stamps and by every round trip (:mod:`.ws`)."""

    coin: str
    network: str = "testnet"
    api_url: str = ""
    ws_url: str = ""
    heartbeat_s: float = 20.0
    backoff: BackoffParams = field(default_factory=BackoffParams)
    dead_man_s: float = 30.0
    http_timeout_s: float = 5.0
    quoting_mode: bool = False
    rtt_interval_s: float = 5.0
    clock: ClockParams = field(default_factory=ClockParams)

    def validate(self) -> HyperliquidConfig:
        if self.network not in ("mainnet", "testnet"):
            raise ValueError(f"network must be 'mainnet' or 'testnet', got {self.network!r}")
        if not self.coin:
            raise ValueError("coin is required (e.g. 'BTC')")
        if not self.heartbeat_s > 0:
            raise ValueError(f"heartbeat_s must be > 0, got {self.heartbeat_s}")
        if not (0 < self.rtt_interval_s < float("inf")):
            raise ValueError(f"rtt_interval_s must be a positive number of seconds, got {self.rtt_interval_s!r}")
        if not self.dead_man_s >= 5:
            raise ValueError(f"dead_man_s must be >= 5 (the venue's minimum), got {self.dead_man_s}")
        self.backoff.validate()
        return self

    @property
    def mainnet(self) -> bool:
        return self.network == "mainnet"

    @property
    def resolved_api_url(self) -> str:
        return self.api_url or (MAINNET_API_URL if self.mainnet else TESTNET_API_URL)

    @property
    def resolved_ws_url(self) -> str:
        return self.ws_url or (MAINNET_WS_URL if self.mainnet else TESTNET_WS_URL)


def config_from_settings(coin: str, **overrides) -> HyperliquidConfig:
    """A config from Django settings ``MM_HYPERLIQUID_NETWORK`` / ``_API_URL`` / ``_WS_URL``."""
    from django.conf import settings

    return HyperliquidConfig(
        coin=coin,
        network=getattr(settings, "MM_HYPERLIQUID_NETWORK", "testnet"),
        api_url=getattr(settings, "MM_HYPERLIQUID_API_URL", "") or "",
        ws_url=getattr(settings, "MM_HYPERLIQUID_WS_URL", "") or "",
        **overrides,
    ).validate()


@dataclass
class _Order:
    cid: str
    side: Side
    price: float
    size: float  # total size (filled + remaining)
    tif: str
    oid: int | None = None
    filled: float = 0.0
    status: str = "pending_new"  # pending_new | open | filled | cancelled | rejected
    ioc_total: float | None = None  # IOC: what the venue said it filled; the rest was cancelled

    @property
    def remaining(self) -> float:
        return max(0.0, round(self.size - self.filled, 12))

    @property
    def live(self) -> bool:
        return self.status in ("pending_new", "open")


@dataclass(frozen=True)
class VenueTick:
    """What the venue config looks like to the engine driver: the tick at the current price and the lot."""

    tick_size: float
    lot_size: float


class HyperliquidVenue:
    def __init__(self, config: HyperliquidConfig, credentials: Credentials, *, seed: int = 0) -> None:
        self.cfg = config.validate()
        self._creds = credentials
        self.http = HyperliquidHttp(
            config.resolved_api_url, credentials, mainnet=config.mainnet, timeout_s=config.http_timeout_s
        )
        user = credentials.account_address
        subs = [
            {"type": "l2Book", "coin": config.coin},
            {"type": "trades", "coin": config.coin},
            {"type": "bbo", "coin": config.coin},
            {"type": "orderUpdates", "user": user},
            {"type": "userFills", "user": user},
        ]
        self.socket = HyperliquidSocket(
            config.resolved_ws_url,
            subs,
            backoff=Backoff(config.backoff, seed=seed),
            heartbeat_s=config.heartbeat_s,
            rtt_interval_s=config.rtt_interval_s,
            clock=ClockEstimator(config.clock),
        )
        self.http.on_round_trip = self.socket.record_round_trip  # HTTP round trips count too
        self.rules: AssetRules | None = None
        self._orders: dict[str, _Order] = {}
        self._by_oid: dict[int, str] = {}
        self._by_cloid: dict[str, str] = {}
        self._seen_tids: set[str] = set()
        self._last_fill_ms = 0
        self._epoch_seen = 0
        self._pending: list[OrderEvent] = []
        self._market: list[MarketEvent] = []
        self._book: LevelBook | None = None
        self._dead_man_until_ms: int | None = None
        self._dead_man_sent_ms = 0
        self.reconciliations = 0
        self.unknown_open_orders: list[dict] = []
        self.quarantined = 0
        self._last_mid: float | None = None
        self._needs_reconcile = False
        self._fills: list[Fill] = []  # every fill booked, in booking order (fills_since)
        self.requests = 0  # exchange requests sent by submit (batching keeps this at one per kind and call)

    # --- lifecycle ---------------------------------------------------------------------------------------------
    def start(self, timeout_s: float = 5.0) -> None:
        """Load the asset rules, baseline the fill history (past fills are not ours to book), open the stream."""
        all_rules = rules_from_meta(self.http.info({"type": "meta"}))
        if self.cfg.coin not in all_rules:
            raise ValueError(f"coin: {self.cfg.coin!r} is not in the venue's perp universe")
        self.rules = all_rules[self.cfg.coin]
        for f in self._user_fills():
            self._seen_tids.add(str(f.get("tid")))
            self._last_fill_ms = max(self._last_fill_ms, int(f.get("time", 0)))
        self.socket.start()
        if not self.socket.wait_connected(1, timeout_s):
            raise VenueUnavailableError(f"websocket not connected after {timeout_s}s: {self.socket.last_error}")
        self._epoch_seen = self.socket.epoch

    def stop(self) -> None:
        if self._dead_man_until_ms is not None:
            try:
                self.disarm_dead_man()
            except (VenueError, VenueUnavailableError) as exc:
                logger.warning("hyperliquid: could not disarm the scheduled cancel: %s", exc)
        self.socket.stop()

    @property
    def connection_state(self) -> ConnectionState:
        return self.socket.state

    @property
    def config(self) -> VenueTick:
        rules = self._need_rules()
        mid = self._mid()
        return VenueTick(rules.tick_at(mid) if mid else 1.0, rules.lot_size)

    @property
    def book(self) -> LevelBook:
        if self._book is None:
            self._book = LevelBook(self.config.tick_size)
        return self._book

    # --- the paper venue's operations ---------------------------------------------------------------------------
    def submit(self, actions: list[Action], now_local_ns: int) -> list[OrderEvent]:
        """Send the actions, batched: each run of consecutive places is one ``order`` request and each run of
        consecutive cancels one ``cancelByCloid`` request (one round trip per run instead of per action);
        modifies and cancel-alls go one by one, in order. Returns the venue's answers (acks and rejects)."""
        out: list[OrderEvent] = []
        places = any(isinstance(a, PlaceOrder) for a in actions)
        if self.cfg.quoting_mode and self._dead_man_until_ms is None and places:
            try:
                self.arm_dead_man()  # before the first order rests: the venue cancels it if we die
            except (VenueError, VenueUnavailableError) as exc:
                logger.warning("hyperliquid: could not arm the scheduled cancel: %s", exc)
        i = 0
        while i < len(actions):
            a = actions[i]
            j = i + 1
            if isinstance(a, (PlaceOrder, CancelOrder)):
                while j < len(actions) and type(actions[j]) is type(a):
                    j += 1
            run, i = list(actions[i:j]), j
            try:
                if isinstance(a, PlaceOrder):
                    out.extend(self._place_batch(run, now_local_ns))  # type: ignore[arg-type]
                elif isinstance(a, CancelOrder):
                    out.extend(self._cancel([c.client_order_id for c in run], now_local_ns))  # type: ignore[union-attr]
                elif isinstance(a, ModifyOrder):
                    out.extend(self._modify(a, now_local_ns))
                elif isinstance(a, CancelAll):
                    out.extend(self._cancel([o.cid for o in self._orders.values() if o.live], now_local_ns))
                else:
                    out.append(OrderReject(now_local_ns, now_local_ns, "", f"unknown_action: {type(a).__name__}"))
            except VenueUnavailableError as exc:
                for b in run:
                    cid = getattr(b, "client_order_id", "")
                    if isinstance(b, PlaceOrder) and cid in self._orders:
                        # sent, answer lost: the order may rest at the venue. It stays pending_new until the
                        # reconciliation (next advance) finds it by cloid, or rejects it as never placed.
                        self._needs_reconcile = True
                        logger.warning("hyperliquid: no answer placing %s (%s); will reconcile", cid, exc)
                        continue
                    out.append(OrderReject(now_local_ns, now_local_ns, cid, f"venue_unreachable: {exc}"))
        return out

    def advance(self, now_local_ns: int) -> list[OrderEvent]:
        """Drain the stream (reconciling after a reconnect), refresh the dead-man's switch; our events so far."""
        self._drain(now_local_ns)
        if self._needs_reconcile:
            try:
                self.reconcile(now_local_ns)
            except (VenueError, VenueUnavailableError) as exc:
                logger.warning("hyperliquid: reconciliation failed, will retry: %s", exc)
        if self._dead_man_until_ms is not None:
            now_ms = int(time.time() * 1000)
            if now_ms - self._dead_man_sent_ms >= self.cfg.dead_man_s * 1000 / 3:
                self.arm_dead_man()
        out, self._pending = self._pending, []
        return out

    def poll_market(self, now_local_ns: int) -> list[MarketEvent]:
        """Market events received since the last call (``l2Book`` snapshots, ``trades``, ``bbo``)."""
        self._drain(now_local_ns)
        out, self._market = self._market, []
        return out

    def on_market(self, event: MarketEvent) -> list[OrderEvent]:
        book = self.book
        if isinstance(event, DepthSnapshot):
            book.apply_snapshot(event.bids, event.asks)
        elif isinstance(event, BestBidAsk):
            book.apply_bbo(event.bid_px, event.bid_size, event.ask_px, event.ask_size)
        elif isinstance(event, DepthUpdate):
            book.apply_diff(event.bids, event.asks)
        return self.advance(event.ts_local_ns)

    def next_event_ns(self) -> int | None:
        """The local receipt time of the oldest thing waiting for the driver: a booked event, or a stream message
        not read yet (its events are stamped with that time). The driver delivers them in time order with the
        market events, like the paper venue's."""
        times = [e.ts_local_ns for e in self._pending[:1]]
        with self.socket.inbox.mutex:  # a peek: the stream thread appends under the same lock
            if self.socket.inbox.queue:
                times.append(self.socket.inbox.queue[0][0])
        return min(times) if times else None

    def open_orders(self) -> list[OrderView]:
        return [
            OrderView(o.cid, o.side, o.price, o.size, o.remaining, o.status, None)
            for o in self._orders.values()
            if o.live
        ]

    def cancel_all_now(self, now_local_ns: int) -> list[OrderEvent]:
        """Cancel every order of ours on this coin the venue holds (asked from the venue, not from memory)."""
        out = self.advance(now_local_ns)
        venue_open = [o for o in self._info_user("openOrders") if o.get("coin") == self.cfg.coin]
        if venue_open:
            out.extend(self._cancel_oids([int(o["oid"]) for o in venue_open], now_local_ns))
        if any(o.live and o.status != "pending_new" for o in self._orders.values()):
            # we thought it live and the venue no longer holds it: it filled while we did not hear (a dropped
            # stream) or the venue cancelled it. Fills first, so a filled order is booked filled, not cancelled.
            try:
                self.reconcile(now_local_ns)
            except (VenueError, VenueUnavailableError) as exc:
                logger.warning("hyperliquid: reconciliation on cancel-all failed: %s", exc)
            out.extend(self._pending)
            self._pending = []
        for o in self._orders.values():  # still live in our books: gone from the venue all the same
            if o.live and o.status != "pending_new":
                o.status = "cancelled"
                out.append(OrderAck(now_local_ns, now_local_ns, o.cid, "cancelled", o.price, o.remaining))
        if self.cfg.quoting_mode and self._dead_man_until_ms is not None:
            try:
                self.disarm_dead_man()  # nothing of ours rests: nothing for the scheduled cancel to protect
            except (VenueError, VenueUnavailableError) as exc:
                logger.warning("hyperliquid: could not disarm the scheduled cancel: %s", exc)
        return out

    # --- account ----------------------------------------------------------------------------------------------
    def clearinghouse_state(self) -> dict:
        return self._info_user("clearinghouseState")

    def position(self) -> float:
        """Signed position in the coin (``szi``), base units."""
        for p in self.clearinghouse_state().get("assetPositions", []):
            pos = p.get("position", {})
            if pos.get("coin") == self.cfg.coin:
                return float(pos.get("szi", 0.0))
        return 0.0

    def margin(self) -> dict[str, float]:
        """``accountValue``, ``totalMarginUsed``, ``totalNtlPos``, ``withdrawable`` (USD)."""
        st = self.clearinghouse_state()
        ms = st.get("marginSummary", {})
        out = {k: float(ms.get(k, 0.0)) for k in ("accountValue", "totalMarginUsed", "totalNtlPos")}
        out["withdrawable"] = float(st.get("withdrawable", 0.0))
        return out

    def fills_since(self, fill_id: str | None) -> list[Fill]:
        """Fills booked after the one with ``fill_id`` (the venue's ``tid``); all of them for ``None``."""
        return fills_after(self._fills, fill_id)

    def margin_report(self) -> MarginReport:
        """The margin rule's inputs from ``clearinghouseState``: the position's leverage (the asset's
        ``maxLeverage`` while flat, when it does not matter), the maintenance rate (half the initial margin at
        ``maxLeverage``, the venue's rule), the wallet without the position's unrealised P&L, the entry price and
        the position itself."""
        st = self.clearinghouse_state()
        rules = self._need_rules()
        ms = st.get("marginSummary", {})
        account_value = float(ms.get("accountValue", 0.0))
        leverage, entry, upnl, szi = float(max(rules.max_leverage, 1)), 0.0, 0.0, 0.0
        for p in st.get("assetPositions", []):
            pos = p.get("position", {})
            if pos.get("coin") == self.cfg.coin:
                lev = pos.get("leverage")
                if isinstance(lev, dict) and lev.get("value"):
                    leverage = float(lev["value"])
                entry = float(pos.get("entryPx") or 0.0)
                upnl = float(pos.get("unrealizedPnl") or 0.0)
                szi = float(pos.get("szi") or 0.0)
        return MarginReport(
            leverage=leverage,
            maint_margin_rate=0.5 / max(rules.max_leverage, 1),
            wallet_balance=account_value - upnl,
            entry_price=entry,
            account_value=account_value,
            margin_used=float(ms.get("totalMarginUsed", 0.0)),
            position=szi,
        )

    def funding_rate(self) -> float:
        """The coin's current hourly funding rate (``metaAndAssetCtxs``), a fraction."""
        _meta, ctxs = self.http.info({"type": "metaAndAssetCtxs"})
        return float(ctxs[self._need_rules().asset]["funding"])

    def user_funding(self, start_ms: int) -> list[dict]:
        return self.http.info({"type": "userFunding", "user": self._creds.account_address, "startTime": start_ms})

    funding_interval_s = 3600.0  # Hyperliquid perps settle funding every hour

    def funding_since(self, start_ns: int) -> list[Funding]:
        """This coin's funding payments at or after ``start_ns`` (``userFunding``), oldest first, as
        :class:`Funding` events: ``rate`` the rate paid (longs pay when positive), stamped with the venue's time
        and received now."""
        now = time.time_ns()
        out = []
        for p in self.user_funding(start_ns // 1_000_000) or []:
            delta = p.get("delta", {}) if isinstance(p, dict) else {}
            if delta.get("type", "funding") != "funding" or delta.get("coin") != self.cfg.coin:
                continue
            t_ns = int(p.get("time", 0)) * 1_000_000
            if t_ns >= start_ns:
                out.append(Funding(t_ns, now, float(delta["fundingRate"]), self.funding_interval_s))
        return sorted(out, key=lambda f: f.ts_exch_ns)

    # --- dead-man's switch ------------------------------------------------------------------------------------
    def arm_dead_man(self) -> int:
        until = int(time.time() * 1000 + self.cfg.dead_man_s * 1000)
        self.http.exchange({"type": "scheduleCancel", "time": until})
        self._dead_man_until_ms = until
        self._dead_man_sent_ms = int(time.time() * 1000)
        return until

    def disarm_dead_man(self) -> None:
        self.http.exchange({"type": "scheduleCancel"})
        self._dead_man_until_ms = None

    # --- internals: actions -------------------------------------------------------------------------------------
    def _need_rules(self) -> AssetRules:
        if self.rules is None:
            raise RuntimeError("HyperliquidVenue.start() must be called first (it loads the asset rules)")
        return self.rules

    def _mid(self) -> float | None:
        return self._last_mid

    def _wire(self, rules: AssetRules, side: Side, price: float, size: float, tif: str, cid: str) -> dict:
        return {
            "a": rules.asset,
            "b": side is Side.BUY,
            "p": rules.check_price(price),
            "s": rules.check_size(size),
            "r": False,
            "t": {"limit": {"tif": _TIF[tif]}},
            "c": cloid_of(cid),
        }

    def _place_batch(self, places: list[PlaceOrder], now: int) -> list[OrderEvent]:
        """Check every order locally (a bad one is rejected alone), then send the good ones in one request."""
        rules = self._need_rules()
        out: list[OrderEvent] = []
        sent: list[tuple[_Order, dict]] = []
        for a in places:
            cid = a.client_order_id
            if not cid:
                out.append(OrderReject(now, now, cid, "client_order_id: missing"))
                continue
            if cid in self._orders:
                out.append(OrderReject(now, now, cid, "client_order_id: duplicate"))
                continue
            tif = str(a.tif).upper()
            if tif not in _TIF:
                out.append(OrderReject(now, now, cid, f"tif: must be one of {sorted(_TIF)}, got {a.tif!r}"))
                continue
            try:
                side = Side(a.side)
                price = rules.round_price(a.price, side is Side.BUY) if self.cfg.quoting_mode else a.price
                wire = self._wire(rules, side, price, a.size, tif, cid)
            except (InvalidOrderError, ValueError) as exc:
                out.append(OrderReject(now, now, cid, str(exc)))
                continue
            order = _Order(cid, side, float(wire["p"]), float(wire["s"]), tif)
            self._orders[cid] = order
            self._by_cloid[wire["c"]] = cid
            sent.append((order, wire))
        if not sent:
            return out
        self.requests += 1
        resp = self._exchange({"type": "order", "orders": [w for _, w in sent], "grouping": "na"}, "", now)
        for (order, _), status in zip(sent, self._statuses(resp, len(sent)), strict=True):
            out.extend(self._on_place_status(order, status, now))
        return out

    @classmethod
    def _statuses(cls, response: object, n: int) -> list[object]:
        """One status per order of a batch; a request-level error (or a short answer) applies to every order."""
        try:
            sts = response["data"]["statuses"]  # type: ignore[index]
        except (KeyError, IndexError, TypeError):
            sts = []
        if isinstance(sts, list) and len(sts) == n:
            return [f"error: {st['error']}" if isinstance(st, dict) and "error" in st else st for st in sts]
        return [cls._one_status(response)] * n

    def _on_place_status(self, order: _Order, status: object, now: int) -> list[OrderEvent]:
        cid = order.cid
        if isinstance(status, str) and status.startswith("error: "):
            order.status = "rejected"
            return [OrderReject(now, now, cid, status[len("error: ") :])]
        if isinstance(status, dict) and "resting" in status:
            self._set_oid(order, int(status["resting"]["oid"]))
            order.status = "open"
            return [OrderAck(now, now, cid, "open", order.price, order.size)]
        if isinstance(status, dict) and "filled" in status:
            f = status["filled"]
            self._set_oid(order, int(f["oid"]))
            order.status = "open"
            if order.tif == "IOC":
                order.ioc_total = float(f.get("totalSz", order.size))
            # the fills themselves come from the user stream (booked once, by tid)
            return [OrderAck(now, now, cid, "open", order.price, order.size)]
        order.status = "rejected"
        return [OrderReject(now, now, cid, f"unexpected venue status {status!r:.200}")]

    def _set_oid(self, order: _Order, oid: int) -> None:
        if order.oid is not None:
            self._by_oid.pop(order.oid, None)
        order.oid = oid
        self._by_oid[oid] = order.cid

    def _exchange(self, action: dict, cid: str, now: int) -> object:
        try:
            return self.http.exchange(action)
        except VenueError as exc:
            return {"type": "error", "data": {"statuses": [{"error": str(exc)}]}}

    @staticmethod
    def _one_status(response: object) -> object:
        try:
            st = response["data"]["statuses"][0]  # type: ignore[index]
        except (KeyError, IndexError, TypeError):
            return f"error: malformed venue answer {response!r:.200}"
        if isinstance(st, dict) and "error" in st:
            return f"error: {st['error']}"
        return st

    def _cancel(self, cids: list[str], now: int) -> list[OrderEvent]:
        rules = self._need_rules()
        out: list[OrderEvent] = []
        known = [c for c in cids if c in self._orders]
        out.extend(OrderReject(now, now, c, "unknown_order") for c in cids if c not in self._orders)
        if not known:
            return out
        action = {"type": "cancelByCloid", "cancels": [{"asset": rules.asset, "cloid": cloid_of(c)} for c in known]}
        self.requests += 1
        resp = self._exchange(action, known[0], now)
        statuses = resp.get("data", {}).get("statuses", []) if isinstance(resp, dict) else []
        for i, cid in enumerate(known):
            st = statuses[i] if i < len(statuses) else statuses[0] if statuses else {"error": "no status"}
            o = self._orders[cid]
            if st == "success":
                o.status = "cancelled"
                out.append(OrderAck(now, now, cid, "cancelled", o.price, o.remaining))
            else:
                msg = st.get("error", st) if isinstance(st, dict) else st
                out.append(OrderReject(now, now, cid, str(msg)))
        return out

    def _cancel_oids(self, oids: list[int], now: int) -> list[OrderEvent]:
        rules = self._need_rules()
        resp = self._exchange({"type": "cancel", "cancels": [{"a": rules.asset, "o": oid} for oid in oids]}, "", now)
        statuses = resp.get("data", {}).get("statuses", []) if isinstance(resp, dict) else []
        out: list[OrderEvent] = []
        for oid, st in zip(oids, statuses, strict=False):
            cid = self._by_oid.get(oid)
            if cid is None:
                continue
            o = self._orders[cid]
            if st == "success" and o.live:
                o.status = "cancelled"
                out.append(OrderAck(now, now, cid, "cancelled", o.price, o.remaining))
        return out

    def _modify(self, m: ModifyOrder, now: int) -> list[OrderEvent]:
        rules = self._need_rules()
        cid = m.client_order_id
        o = self._orders.get(cid)
        if o is None:
            return [OrderReject(now, now, cid, "unknown_order")]
        if not o.live or o.oid is None:
            return [OrderReject(now, now, cid, "order_not_open")]
        try:
            wire = self._wire(rules, o.side, m.price, m.size, o.tif, cid)
        except InvalidOrderError as exc:
            return [OrderReject(now, now, cid, str(exc))]
        resp = self._exchange({"type": "batchModify", "modifies": [{"oid": o.oid, "order": wire}]}, cid, now)
        status = self._one_status(resp)
        if isinstance(status, str):
            return [OrderReject(now, now, cid, status.removeprefix("error: "))]
        if isinstance(status, dict) and "resting" in status:
            self._set_oid(o, int(status["resting"]["oid"]))
        o.price = float(wire["p"])
        o.size = round(o.filled + float(wire["s"]), 12)
        return [OrderAck(now, now, cid, "modified", o.price, o.remaining)]

    # --- internals: stream and reconciliation -------------------------------------------------------------------
    def _drain(self, now: int) -> None:
        inbox = self.socket.inbox
        while not inbox.empty():
            local_ns, epoch, msg = inbox.get_nowait()
            if epoch != self._epoch_seen:
                self._epoch_seen = epoch
                self.reconcile(local_ns)
            self._on_message(local_ns, msg)

    def _on_message(self, local_ns: int, msg: dict) -> None:
        channel, data = msg.get("channel"), msg.get("data")
        if channel in ("l2Book", "trades", "bbo"):
            line = f"{local_ns} {_dumps(msg)}"
            for item in parse_lines([(0, line)], coin=self.cfg.coin):
                if isinstance(item, Quarantined):
                    self.quarantined += 1
                else:
                    self._market.append(item)
                    if isinstance(item, BestBidAsk):
                        self._last_mid = item.mid
                    elif isinstance(item, DepthSnapshot) and item.bids and item.asks:
                        self._last_mid = 0.5 * (item.bids[0][0] + item.asks[0][0])
        elif channel == "userFills" and isinstance(data, dict):
            for f in data.get("fills", []):
                self._book_fill(f, local_ns)
        elif channel == "orderUpdates" and isinstance(data, list):
            for u in data:
                self._on_order_update(u, local_ns)
        elif channel == "error":
            logger.warning("hyperliquid ws error: %s", data)

    def _cid_of(self, oid: object, cloid: object) -> str | None:
        if isinstance(cloid, str) and cloid in self._by_cloid:
            return self._by_cloid[cloid]
        try:
            return self._by_oid.get(int(oid))  # type: ignore[arg-type]
        except (TypeError, ValueError):
            return None

    def _book_fill(self, f: dict, local_ns: int) -> None:
        tid = str(f.get("tid"))
        if tid in self._seen_tids or f.get("coin") != self.cfg.coin:
            return
        cid = self._cid_of(f.get("oid"), f.get("cloid"))
        if cid is None:
            return  # not an order of this session
        self._seen_tids.add(tid)
        t_ms = int(f.get("time", 0))
        self._last_fill_ms = max(self._last_fill_ms, t_ms)
        o = self._orders[cid]
        size = float(f["sz"])
        o.filled = round(o.filled + size, 12)
        if o.remaining <= 0:
            o.status = "filled"
        liquidity = "taker" if f.get("crossed") else "maker"
        t_exch = t_ms * 1_000_000
        fill = Fill(
            t_exch,
            local_ns,
            cid,
            tid,
            o.side,
            float(f["px"]),
            size,
            float(f.get("fee", 0.0)),
            liquidity,
            o.remaining,
        )
        self._pending.append(fill)
        self._fills.append(fill)
        if o.ioc_total is not None and o.live and o.filled >= o.ioc_total - 1e-12:
            o.status = "cancelled"  # the IOC remainder the venue did not fill
            self._pending.append(OrderAck(t_exch, local_ns, cid, "cancelled", o.price, o.remaining))

    def _on_order_update(self, u: dict, local_ns: int) -> None:
        order = u.get("order", {}) if isinstance(u, dict) else {}
        cid = self._cid_of(order.get("oid"), order.get("cloid"))
        if cid is None:
            return
        o = self._orders[cid]
        try:
            superseded = o.oid is not None and int(order.get("oid")) != o.oid
        except (TypeError, ValueError):
            superseded = False
        if superseded:  # a modify replaced that oid (the venue cancels the old one): the order lives on
            return
        status = str(u.get("status", ""))
        t = int(u.get("statusTimestamp", 0)) * 1_000_000
        if "cancel" in status.lower() and o.live:  # canceled, marginCanceled, scheduledCancel, ...
            o.status = "cancelled"
            self._pending.append(OrderAck(t, local_ns, cid, "cancelled", o.price, o.remaining))
        elif status == "rejected" and o.live:
            o.status = "rejected"
            self._pending.append(OrderReject(t, local_ns, cid, "rejected by the venue"))

    def reconcile(self, now_local_ns: int) -> int:
        """After a (re)connect: book every fill missed since the last one, then close orders the venue no longer
        holds. Returns how many fills were booked. Idempotent (fills by ``tid``)."""
        self.reconciliations += 1
        self._needs_reconcile = False
        before = len(self._pending)
        start = max(0, self._last_fill_ms - 1000)
        fills = self.http.info({"type": "userFillsByTime", "user": self._creds.account_address, "startTime": start})
        for f in sorted(fills or [], key=lambda f: (int(f.get("time", 0)), str(f.get("tid")))):
            self._book_fill(f, now_local_ns)
        booked = sum(1 for e in self._pending[before:] if isinstance(e, Fill))
        venue_open = {int(o["oid"]): o for o in self._info_user("openOrders") if o.get("coin") == self.cfg.coin}
        by_cloid = {o.get("cloid"): o for o in venue_open.values() if o.get("cloid")}
        for o in self._orders.values():
            if o.status != "pending_new" or o.oid is not None:
                continue
            found = by_cloid.get(cloid_of(o.cid))
            if found is not None:  # placed although its answer was lost
                self._set_oid(o, int(found["oid"]))
                o.status = "open"
                self._pending.append(OrderAck(now_local_ns, now_local_ns, o.cid, "open", o.price, o.size))
            elif o.filled > 0:  # filled at once (an IOC, or a crossing GTC) and gone
                o.status = "filled" if o.remaining <= 0 else "cancelled"
                if o.status == "cancelled":
                    self._pending.append(OrderAck(now_local_ns, now_local_ns, o.cid, "cancelled", o.price, o.remaining))
            else:
                o.status = "rejected"
                self._pending.append(OrderReject(now_local_ns, now_local_ns, o.cid, "not_at_venue_after_lost_answer"))
        for o in self._orders.values():
            if o.status == "open" and o.oid not in venue_open:
                o.status = "cancelled"
                self._pending.append(OrderAck(now_local_ns, now_local_ns, o.cid, "cancelled", o.price, o.remaining))
        self.unknown_open_orders = [o for oid, o in venue_open.items() if oid not in self._by_oid]
        logger.info(
            "hyperliquid reconciled: %d fills booked, %d unknown open orders", booked, len(self.unknown_open_orders)
        )
        return booked

    def _info_user(self, kind: str):
        return self.http.info({"type": kind, "user": self._creds.account_address})

    def _user_fills(self) -> list[dict]:
        return list(self._info_user("userFills") or [])


def _dumps(msg: dict) -> str:
    import json

    return json.dumps(msg, separators=(",", ":"))
