"""The paper venue: a simulated exchange for our orders, driven by recorded or live market data.

Usage (the same loop in backtests and paper trading)::

    venue = PaperVenue(PaperVenueConfig(tick_size=0.1, lot_size=0.001), seed=7)
    for event in feed:
        for ev in venue.on_market(event):      # acks, rejects, fills now visible to us
            core.on_event(ev)
        actions = core.on_event(event)
        venue.submit(actions, now_local_ns=event.ts_local_ns)

Clocks
------
An action sent at local time ``t`` reaches the matching engine at ``t + entry_latency``. With the
default ``venue_clock="local"`` a market event happens at the matching engine at its ``ts_local_ns``:
time is measured on one clock (ours), which is robust to a skewed recorder clock, and the feed
latency is folded into ``entry_latency`` (set it to the round trip you want to simulate). With
``venue_clock="exchange"`` market events happen at their ``ts_exch_ns`` and our local times are
taken as exchange times: only use it when the two clocks are synchronised (local >= exchange).
Before applying a market event the venue processes every action that arrived no later than it.
Whatever the engine produces at time ``T`` (ack, reject, fill) becomes visible to us at
``T + response_latency`` and is returned by the first call whose ``now`` (``event.ts_local_ns`` or
``advance``'s argument) reaches that time.

Arrivals keep the order in which actions were sent, and responses the order in which they were
produced (one ordered connection), even when sampled latencies would reorder them.

Matching rules live in :mod:`apps.engine.execution.fillmodel` (queue position, trades, cancels). On arrival an
order that would cross the displayed book takes liquidity at the displayed levels (taker fee) unless
it is ``POST_ONLY`` (rejected); an ``IOC`` remainder is cancelled; a ``GTC`` remainder rests.
Self-trade prevention rejects an incoming order or modify that would cross one of our own resting
orders ("cancel newest"). A modify that changes price, or increases size, loses queue priority; a
pure size decrease keeps it; a modify that would cross the market is rejected.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np

from apps.engine import compiled
from apps.engine.execution.fillmodel import LevelBook, QueueModelParams, QueueState, queue_after_trade, whole_fill
from apps.engine.execution.latency import LatencyModel, as_latency_model
from apps.engine.execution.orders import (
    Order,
    OrderStatus,
    TimeInForce,
    price_to_ticks,
    round_size,
    ticks_to_price,
)
from apps.engine.execution.venue import fills_after
from apps.engine.market.events import (
    OPPOSITE,
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
    Trade,
)
from apps.engine.validation import boolean, positive

VENUE_CLOCKS = ("exchange", "local")


@dataclass(frozen=True)
class PaperVenueConfig:
    """Parameters of the simulated venue.

    Parameters
    ----------
    tick_size : float
        Price grid, quote currency (> 0). Bids round down, asks up.
    lot_size : float
        Size grid, base units (> 0). Sizes round down; a size that rounds to 0 is rejected.
    maker_fee : float
        Fee rate on passive fills, fraction of notional (negative = rebate, e.g. -0.0001 = 1 bp rebate).
    taker_fee : float
        Fee rate on aggressive fills, fraction of notional.
    entry_latency_ns : int or LatencyModel
        Delay from sending an action to its arrival at the matching engine, ns.
    response_latency_ns : int or LatencyModel
        Delay from an engine event (ack, fill) to its visibility to us, ns.
    queue_model : str
        ``"risk_averse"`` or ``"probabilistic"`` (see :mod:`apps.engine.execution.fillmodel`).
    queue_power : float
        Exponent ``p`` of the probabilistic cancel share (dimensionless, > 0).
    venue_clock : str
        ``"local"`` (default): market events happen at ``ts_local_ns``; fold the feed latency into
        ``entry_latency_ns``. ``"exchange"``: at ``ts_exch_ns`` (local when 0); needs synchronised clocks.
    partial_fills : bool
        ``True`` (default): an order fills in as many parts as the market gives it: a resting order
        ``min(remaining, trade size - queue ahead)`` per trade at its price, ``min(remaining, trade size)`` per
        trade through it, ``min(remaining, fresh opposite size)`` when the book crosses it; an arriving order that
        crosses takes the displayed levels one by one. ``False``: an order fills whole or not at all, the
        semantics of hftbacktest's ``NoPartialFillExchange`` (see below).

    Notes
    -----
    With ``partial_fills=False`` the rules that decide *whether* the market reached an order are the ones above;
    only the size changes (:func:`~apps.engine.execution.fillmodel.whole_fill`):

    * a trade at a resting order's price, once the queue ahead is through (the part of the trade past the queue
      ahead, rounded down to whole lots, is positive), fills the whole remaining size at the order's price, however
      small the trade; a trade that does not clear the queue ahead fills nothing and only moves the queue;
    * a trade through the order's price (of at least one lot) fills it whole at its price;
    * the book moving to or through the order's price (fresh opposite size of at least one lot) fills it whole at
      its price;
    * every one of our orders a trade reaches sees the trade's whole size: a whole fill does not use the trade up
      for our orders behind it (with partial fills, a trade's volume is shared among them in time priority);
    * an arriving order that crosses the displayed book (not ``POST_ONLY``) fills whole as a taker at the best
      opposite level's price, whatever the size displayed there; ``IOC`` then has no remainder to cancel.

    Fees are the maker or taker rate on the whole size at the fill price. Where this departs from hftbacktest's
    ``NoPartialFillExchange`` (2.4.4, with its risk-averse queue): (1) it fills at the queue when the trade's
    excess over the queue ahead is at least one lot rounded down (``round_size``), hftbacktest when it rounds to at
    least one lot (``round((s - A) / lot) >= 1``, i.e. half a lot); (2) a resting order whose level was never
    observed (``queue_ahead`` unknown, BBO-only data behind the best) claims no place until it is, where
    hftbacktest takes the level's size at entry, 0 when unknown; (3) a trade through or a book cross needs at least
    one lot (hftbacktest's trades and depths are whole lots, so this never binds on its data); (4) a book cross
    is any fresh opposite size at or through our price, as the partial mode sees it, where hftbacktest fills when
    the best opposite price moves to or through ours (the same moments on an L2 replay, where our order is filled
    the first time the book reaches it).
    """

    tick_size: float
    lot_size: float
    maker_fee: float = 0.0
    taker_fee: float = 0.0004
    entry_latency_ns: int | LatencyModel = 0
    response_latency_ns: int | LatencyModel = 0
    queue_model: str = "risk_averse"
    queue_power: float = 1.0
    venue_clock: str = "local"
    partial_fills: bool = True

    def validate(self) -> None:
        for name in ("tick_size", "lot_size"):
            positive(name, getattr(self, name), "PaperVenueConfig")
        for name in ("maker_fee", "taker_fee"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and abs(v) < 0.1):
                raise ValueError(f"{name} must be a finite fraction of notional with |fee| < 0.1, got {v!r}")
        for name in ("entry_latency_ns", "response_latency_ns"):
            try:
                as_latency_model(getattr(self, name))
            except ValueError as exc:
                raise ValueError(f"{name}: {exc}") from None
        QueueModelParams(self.queue_model, self.queue_power).validate()
        if self.venue_clock not in VENUE_CLOCKS:
            raise ValueError(f"venue_clock must be one of {VENUE_CLOCKS}, got {self.venue_clock!r}")
        boolean("partial_fills", self.partial_fills, "PaperVenueConfig")


@dataclass(frozen=True)
class OrderView:
    """Venue-side state of one live order. ``queue_ahead`` is ``None`` while unknown."""

    client_order_id: str
    side: Side
    price: float
    size: float
    remaining: float
    status: str
    queue_ahead: float | None


@dataclass
class _Resting:
    order: Order
    tick: int
    queue: QueueState
    # opposite-side size at/through our price already used for fills: a book that keeps crossing
    # our price across several updates must not fill us twice from the same displayed liquidity
    crossed: float = 0.0


class PyPaperVenue:
    """Simulated matching of our orders against recorded market data; see the module docstring.

    The pure-Python reference: use :data:`PaperVenue`, which is this class with its per-event path compiled
    (``apps/engine/execution/_paper.pyx``) when that is built (docs/compiled-core.md).
    """

    _resting_type: Callable[[Order, int, QueueState], _Resting] = _Resting  # the compiled venue's is typed

    def __init__(self, config: PaperVenueConfig, seed: int = 0) -> None:
        config.validate()
        self.config = config
        self._rng = np.random.default_rng(seed)
        self._entry = as_latency_model(config.entry_latency_ns)
        self._response = as_latency_model(config.response_latency_ns)
        self._queue_params = QueueModelParams(config.queue_model, config.queue_power)
        self._book = LevelBook(config.tick_size)
        self._live: dict[str, _Resting] = {}
        # every client id ever submitted (in flight, live or done): the duplicate check, and "order_not_open" vs
        # "unknown_order" for a cancel or modify that finds no live order (finished orders are not kept: a day of
        # BTCUSDT is ~241k of them)
        self._known_ids: set[str] = set()
        self._inbox: list[tuple[int, int, Action]] = []  # (arrival_ns, seq, action)
        self._outbox: list[tuple[int, int, OrderEvent]] = []  # (visible_local_ns, seq, event)
        self._seq = 0
        self._priority = 0
        self._fill_seq = 0
        self.non_market_trades = 0  # trades skipped by the fill model (``Trade.market`` False)
        self._last_arrival_ns = -(2**62)
        self._last_visible_ns = -(2**62)
        self._venue_now_ns = -(2**62)
        self._feed_delay_ns = 0
        self._fills: list[Fill] = []  # every fill delivered to us, in order (the account side)
        self._position = 0.0

    # --- public API ---------------------------------------------------------------------------
    def submit(self, actions: Sequence[Action], now_local_ns: int) -> list[OrderEvent]:
        """Send actions; they reach the engine after the entry latency. Returns local rejects."""
        local: list[OrderEvent] = []
        for action in actions:
            checked = self._check_locally(action)
            if isinstance(checked, str):
                cid = getattr(action, "client_order_id", "")
                local.append(OrderReject(now_local_ns, now_local_ns, cid, checked))
                continue
            if isinstance(checked, PlaceOrder):
                self._known_ids.add(checked.client_order_id)
            arrival = max(now_local_ns + self._entry.sample_ns(self._rng), self._last_arrival_ns)
            self._last_arrival_ns = arrival
            heapq.heappush(self._inbox, (arrival, self._next_seq(), checked))
        return local

    def on_market(self, event: MarketEvent) -> list[OrderEvent]:
        """Feed one market event in local-time order; returns our events visible by its local time."""
        t = self._event_venue_time(event)
        self._process_arrivals(t)
        self._venue_now_ns = max(self._venue_now_ns, t)
        if isinstance(event, Trade):
            if event.market:
                self._on_trade(event, t)
            else:
                self.non_market_trades += 1  # an insurance-fund / ADL print does not trade against the book
        elif isinstance(event, BestBidAsk):
            self._book.apply_bbo(event.bid_px, event.bid_size, event.ask_px, event.ask_size)
            self._after_book_change(t)
        elif isinstance(event, DepthSnapshot):
            self._book.apply_snapshot(event.bids, event.asks)
            self._after_book_change(t)
        elif isinstance(event, DepthUpdate):
            self._book.apply_diff(event.bids, event.asks)
            self._after_book_change(t)
        return self._drain(event.ts_local_ns)

    def advance(self, now_local_ns: int) -> list[OrderEvent]:
        """Let time pass without market data (a timer tick)."""
        t = now_local_ns - self._feed_delay_ns if self.config.venue_clock == "exchange" else now_local_ns
        self._process_arrivals(t)
        self._venue_now_ns = max(self._venue_now_ns, t)
        return self._drain(now_local_ns)

    def next_event_ns(self) -> int | None:
        """Local time of the next thing the venue does on its own, or ``None`` when nothing is in flight.

        That is the earliest of: an action reaching the matching engine, or one of our events (ack, reject,
        fill) becoming visible. A driver that calls :meth:`advance` at exactly these times, before feeding
        the next market event, delivers every venue event at its own local time (``merge(feed, venue)``),
        so results do not depend on how often the driver wakes up.
        """
        best: int | None = None
        if self._inbox:
            arrival = self._inbox[0][0]
            if self.config.venue_clock == "exchange":
                arrival += self._feed_delay_ns
            best = arrival
        if self._outbox and (best is None or self._outbox[0][0] < best):
            best = self._outbox[0][0]
        return best

    def open_orders(self) -> list[OrderView]:
        views = []
        for r in self._live.values():
            o = r.order
            views.append(
                OrderView(o.client_order_id, o.side, o.price, o.size, o.remaining, o.status.value, r.queue.ahead)
            )
        return views

    def cancel_all_now(self, now_local_ns: int) -> list[OrderEvent]:
        """Emergency: cancel every resting order and drop every action in flight, with no latency.

        Returns what is already visible plus a "cancelled" ack per resting order and per dropped
        new order; fills already produced but still in flight stay in flight (they happened).
        """
        out = self._drain(now_local_ns)
        t = now_local_ns - self._feed_delay_ns if self.config.venue_clock == "exchange" else now_local_ns
        t = max(t, self._venue_now_ns)
        for _, _, action in sorted(self._inbox):
            if isinstance(action, PlaceOrder):
                out.append(OrderAck(t, now_local_ns, action.client_order_id, "cancelled", action.price, action.size))
        self._inbox.clear()
        for cid in list(self._live):
            r = self._live.pop(cid)
            r.order.transition(OrderStatus.CANCELLED)
            out.append(OrderAck(t, now_local_ns, cid, "cancelled", r.order.price, r.order.remaining))
        return out

    @property
    def book(self) -> LevelBook:
        return self._book

    # --- the account side (:class:`apps.engine.execution.venue.Account`) ------------------------------------
    def position(self) -> float:
        """Signed position from the fills delivered so far (base units)."""
        return self._position

    def fills_since(self, fill_id: str | None) -> list[Fill]:
        """Fills delivered after the one with ``fill_id`` (all of them for ``None`` or an unknown id)."""
        return fills_after(self._fills, fill_id)

    def margin_report(self) -> None:
        """The paper venue keeps no margin account: the margin rule stays not applicable on it."""

    def funding_rate(self) -> None:
        """The paper venue has no funding of its own (a feed's funding events reach the ledger directly)."""

    def funding_since(self, start_ns: int) -> list[Funding]:
        """No payments of its own (see :meth:`funding_rate`)."""
        return []

    @property
    def funding_interval_s(self) -> float:
        return 8 * 3600.0

    # --- clocks and queues ----------------------------------------------------------------------
    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def _event_venue_time(self, event: MarketEvent) -> int:
        if self.config.venue_clock == "exchange" and event.ts_exch_ns > 0:
            self._feed_delay_ns = max(0, event.ts_local_ns - event.ts_exch_ns)
            return event.ts_exch_ns
        return event.ts_local_ns

    def _emit(self, t_venue_ns: int, make_event: Callable[[int], OrderEvent]) -> None:
        """Queue an event produced at venue time ``t_venue_ns``; ``make_event(visible_ns)`` builds it."""
        visible = max(t_venue_ns + self._response.sample_ns(self._rng), self._last_visible_ns)
        self._last_visible_ns = visible
        heapq.heappush(self._outbox, (visible, self._next_seq(), make_event(visible)))

    def _drain(self, now_local_ns: int) -> list[OrderEvent]:
        out: list[OrderEvent] = []
        while self._outbox and self._outbox[0][0] <= now_local_ns:
            ev = heapq.heappop(self._outbox)[2]
            if type(ev) is Fill:
                self._fills.append(ev)
                self._position += ev.size if ev.side is Side.BUY else -ev.size
            out.append(ev)
        return out

    def _process_arrivals(self, t_ns: int) -> None:
        while self._inbox and self._inbox[0][0] <= t_ns:
            arrival, _, action = heapq.heappop(self._inbox)
            at = max(arrival, self._venue_now_ns)
            if isinstance(action, PlaceOrder):
                self._arrive_place(action, at)
            elif isinstance(action, CancelOrder):
                self._arrive_cancel(action.client_order_id, at)
            elif isinstance(action, ModifyOrder):
                self._arrive_modify(action, at)
            elif isinstance(action, CancelAll):
                for cid in list(self._live):
                    self._arrive_cancel(cid, at)

    # --- local validation -----------------------------------------------------------------------
    def _check_locally(self, action: Action) -> Action | str:
        """Client-side checks and rounding: the rounded action, or the reason for a local reject."""
        if isinstance(action, PlaceOrder):
            if not action.client_order_id:
                return "missing_client_order_id"
            if action.client_order_id in self._known_ids:
                return "duplicate_client_order_id"
            try:
                TimeInForce.parse(action.tif)
            except ValueError:
                return "bad_tif"
            side = _side_or_none(action.side)
            if side is None:
                return "bad_side"
            return self._round_or_reason(action, side, action.price, action.size)
        if isinstance(action, ModifyOrder):
            if action.client_order_id not in self._known_ids:
                return "unknown_order"
            side = self._side_of(action.client_order_id)
            if side is None:
                return "order_not_open"
            return self._round_or_reason(action, side, action.price, action.size)
        if isinstance(action, CancelOrder):
            return action if action.client_order_id in self._known_ids else "unknown_order"
        if isinstance(action, CancelAll):
            return action
        return "unknown_action"

    def _round_or_reason(
        self, action: PlaceOrder | ModifyOrder, side: Side, price: float, size: float
    ) -> PlaceOrder | ModifyOrder | str:
        if not (isinstance(price, (int, float)) and math.isfinite(price) and price > 0):
            return "bad_price"
        if not (isinstance(size, (int, float)) and math.isfinite(size) and size > 0):
            return "bad_size"
        ticks = price_to_ticks(price, self.config.tick_size, side)
        if ticks <= 0:
            return "bad_price"
        rsize = round_size(size, self.config.lot_size)
        if rsize <= 0:
            return "size_below_lot"
        return replace(action, price=ticks_to_price(ticks, self.config.tick_size), size=rsize)

    def _side_of(self, cid: str) -> Side | None:
        if cid in self._live:
            return self._live[cid].order.side
        for _, _, a in self._inbox:
            if isinstance(a, PlaceOrder) and a.client_order_id == cid:
                return Side(a.side)
        return None

    # --- arrivals at the matching engine --------------------------------------------------------
    def _reject(self, cid: str, reason: str, t: int) -> None:
        self._emit(t, lambda vis: OrderReject(t, vis, cid, reason))

    def _ack(self, cid: str, status: str, price: float, size: float, t: int) -> None:
        self._emit(t, lambda vis: OrderAck(t, vis, cid, status, price, size))

    def _self_trade(self, side: Side, tick: int, exclude: str = "") -> bool:
        for cid, r in self._live.items():
            if cid == exclude or r.order.side is side:
                continue
            if (side is Side.BUY and tick >= r.tick) or (side is Side.SELL and tick <= r.tick):
                return True
        return False

    def _arrive_place(self, a: PlaceOrder, t: int) -> None:
        side = Side(a.side)
        tick = self._book.tick_of(a.price)
        tif = TimeInForce.parse(a.tif)
        order = Order(a.client_order_id, side, a.price, a.size, tif=tif)
        if self._self_trade(side, tick):
            order.transition(OrderStatus.REJECTED)
            self._reject(order.client_order_id, "self_trade_prevention", t)
            return
        crossing = self._book.crossing_levels(side, tick)
        if crossing and tif is TimeInForce.POST_ONLY:
            order.transition(OrderStatus.REJECTED)
            self._reject(order.client_order_id, "post_only_would_cross", t)
            return
        order.transition(OrderStatus.OPEN)
        self._ack(order.client_order_id, "open", order.price, order.size, t)
        if crossing and not self.config.partial_fills:
            # whole, at the best opposite level, whatever its displayed size (hftbacktest's no-partial taker)
            self._fill(order, ticks_to_price(crossing[0][0], self.config.tick_size), order.remaining, "taker", t)
        for level_tick, level_size in crossing:
            if order.remaining <= 0:
                break
            size = min(order.remaining, level_size)
            self._fill(order, ticks_to_price(level_tick, self.config.tick_size), size, "taker", t)
        if order.status is OrderStatus.FILLED:
            return
        if tif is TimeInForce.IOC:
            order.transition(OrderStatus.CANCELLED)
            self._ack(order.client_order_id, "cancelled", order.price, order.remaining, t)
            return
        resting = self._resting_type(order, tick, self._join_queue(side, tick))
        resting.crossed = self._book.crossing_size(side, tick)  # swept above (no market impact)
        self._live[order.client_order_id] = resting

    def _join_queue(self, side: Side, tick: int) -> QueueState:
        self._priority += 1
        displayed = self._book.level_size(side, tick)
        return QueueState(ahead=displayed, level_size=displayed, priority=self._priority)

    def _arrive_cancel(self, cid: str, t: int) -> None:
        r = self._live.pop(cid, None)
        if r is None:
            self._reject(cid, "order_not_open" if cid in self._known_ids else "unknown_order", t)
            return
        r.order.transition(OrderStatus.CANCELLED)
        self._ack(cid, "cancelled", r.order.price, r.order.remaining, t)

    def _arrive_modify(self, m: ModifyOrder, t: int) -> None:
        r = self._live.get(m.client_order_id)
        if r is None:
            self._reject(
                m.client_order_id, "order_not_open" if m.client_order_id in self._known_ids else "unknown_order", t
            )
            return
        order = r.order
        side = order.side
        # the local check rounded with the side known then; re-round in case it was in flight
        tick = price_to_ticks(m.price, self.config.tick_size, side)
        new_remaining = m.size
        if self._self_trade(side, tick, exclude=order.client_order_id):
            self._reject(order.client_order_id, "self_trade_prevention", t)
            return
        if self._book.crossing_size(side, tick) > 0:
            self._reject(order.client_order_id, "modify_would_cross", t)
            return
        if tick != r.tick or new_remaining > order.remaining:
            r.tick = tick
            r.crossed = 0.0
            r.queue = self._join_queue(side, tick)  # loses priority
        order.price = ticks_to_price(tick, self.config.tick_size)
        order.size = round(order.filled + new_remaining, 12)
        self._ack(order.client_order_id, "modified", order.price, new_remaining, t)

    # --- market events --------------------------------------------------------------------------
    def _fill(self, order: Order, price: float, size: float, liquidity: str, t: int) -> None:
        if size <= 0:
            return
        rate = self.config.maker_fee if liquidity == "maker" else self.config.taker_fee
        fee = rate * price * size
        self._fill_seq += 1
        fill_id = f"paper-{self._fill_seq}"
        order.apply_fill(fill_id, size, fee)
        remaining = order.remaining
        cid, side = order.client_order_id, order.side
        self._emit(t, lambda vis: Fill(t, vis, cid, fill_id, side, price, size, fee, liquidity, remaining))

    def _finish_if_filled(self, cid: str) -> None:
        r = self._live.get(cid)
        if r is not None and r.order.status is OrderStatus.FILLED:
            del self._live[cid]

    def _resting_on(self, side: Side) -> list[_Resting]:
        """Our live orders on one side, in matching order: best price first, then time priority."""
        rs = [r for r in self._live.values() if r.order.side is side]
        rs.sort(key=lambda r: (-r.tick * int(side), r.queue.priority))
        return rs

    def _on_trade(self, trade: Trade, t: int) -> None:
        resting_side = OPPOSITE[trade.aggressor]
        trade_tick = self._book.tick_of(trade.price)
        available = float(trade.size)
        for r in self._resting_on(resting_side):
            through = trade_tick < r.tick if resting_side is Side.BUY else trade_tick > r.tick
            at_price = trade_tick == r.tick
            if not (through or at_price):
                continue
            order, q = r.order, r.queue
            if through:
                size = min(order.remaining, available)
                q.ahead = 0.0
            else:
                q.trade_credit += trade.size
                if q.ahead is None:
                    continue  # never observed: we cannot claim a place in this queue yet
                size, q.ahead = queue_after_trade(q.ahead, order.remaining, available)
            size = round_size(size, self.config.lot_size)
            if size > 0:
                if self.config.partial_fills:
                    available -= size
                else:
                    size = whole_fill(size, order.remaining)  # and the trade stays whole for our next order
                self._fill(order, order.price, size, "maker", t)
                self._finish_if_filled(order.client_order_id)

    def _after_book_change(self, t: int) -> None:
        for cid in list(self._live):
            r = self._live[cid]
            order = r.order
            crossing = self._book.crossing_size(order.side, r.tick)
            fresh = crossing - r.crossed
            r.crossed = crossing
            if fresh > 0:
                size = round_size(min(order.remaining, fresh), self.config.lot_size)
                if not self.config.partial_fills:
                    size = whole_fill(size, order.remaining)
                r.queue.ahead = 0.0
                self._fill(order, order.price, size, "maker", t)
                self._finish_if_filled(cid)
                if cid not in self._live:
                    continue
            displayed = self._book.level_size(order.side, r.tick)
            if displayed is not None:
                r.queue.observe_level(displayed, self._queue_params)


def _side_or_none(value: object) -> Side | None:
    try:
        return Side(value)
    except ValueError:
        return None


_compiled_paper = compiled.load("apps.engine.execution._paper")

if _compiled_paper is not None:

    class PaperVenue(_compiled_paper.PaperVenueBase, PyPaperVenue):
        """The paper venue with its per-event path compiled (``_paper.PaperVenueBase``: market-event dispatch, the
        resting orders against each book change and trade, the in-flight heaps); the rest is ``PyPaperVenue``'s."""

        _resting_type = _compiled_paper.Resting

else:
    PaperVenue = PyPaperVenue  # type: ignore[misc]

# which one the engine runs: the compiled venue when built and MM_PURE_PYTHON is not set
PAPER_COMPILED: bool = _compiled_paper is not None
