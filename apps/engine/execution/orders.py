"""Order lifecycle: statuses, legal transitions, tick/lot rounding, and the strategy-side tracker.

State machine (both the venue and the strategy side use it)::

    pending_new ──► open ──► partially_filled ──► filled
         │            │  ▲          │  ▲
         │            ▼  │          ▼  │
         │       pending_cancel / pending_modify ──► cancelled
         └──► rejected | cancelled | filled (IOC, cancel racing the ack)

``pending_cancel``/``pending_modify`` remember the status they came from and return to it when the
venue rejects the cancel or modify. ``filled``, ``cancelled`` and ``rejected`` are terminal. Any other
transition raises :class:`IllegalTransitionError`.

Sizes: ``Order.size`` is the total order size (filled + remaining). A :class:`~apps.engine.market.events.ModifyOrder`
carries the new *remaining* (open) size, which is what a quoter means by "show X at P"; the venue's
``OrderAck(status="modified")`` echoes the new price and new remaining size.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from enum import StrEnum

from apps.engine.market.events import (
    Action,
    CancelAll,
    CancelOrder,
    Fill,
    ModifyOrder,
    OrderAck,
    OrderEvent,
    OrderReject,
    PlaceOrder,
    Side,
)

# Relative tolerance, in ticks/lots, below which a float is considered already on the grid
# (100.07 / 0.01 = 10006.999999999998 must round to 10007, not down to 10006).
GRID_EPS = 1e-9


class OrderStatus(StrEnum):
    PENDING_NEW = "pending_new"
    OPEN = "open"
    PARTIALLY_FILLED = "partially_filled"
    FILLED = "filled"
    CANCELLED = "cancelled"
    REJECTED = "rejected"
    PENDING_CANCEL = "pending_cancel"
    PENDING_MODIFY = "pending_modify"

    @property
    def is_terminal(self) -> bool:
        return self in _TERMINAL

    @property
    def is_live(self) -> bool:
        return self not in _TERMINAL


class TimeInForce(StrEnum):
    GTC = "GTC"
    IOC = "IOC"
    POST_ONLY = "POST_ONLY"

    @classmethod
    def parse(cls, value: str) -> TimeInForce:
        try:
            return cls(str(value).upper())
        except ValueError:
            raise ValueError(f"tif must be one of GTC, IOC, POST_ONLY, got {value!r}") from None


class IllegalTransitionError(RuntimeError):
    """An order was asked to move between two statuses the lifecycle does not connect."""


_S = OrderStatus
_TERMINAL = frozenset({_S.FILLED, _S.CANCELLED, _S.REJECTED})
_ALLOWED: dict[OrderStatus, frozenset[OrderStatus]] = {
    _S.PENDING_NEW: frozenset({_S.OPEN, _S.PARTIALLY_FILLED, _S.FILLED, _S.REJECTED, _S.CANCELLED, _S.PENDING_CANCEL}),
    _S.OPEN: frozenset({_S.PARTIALLY_FILLED, _S.FILLED, _S.PENDING_CANCEL, _S.PENDING_MODIFY, _S.CANCELLED}),
    _S.PARTIALLY_FILLED: frozenset(
        {_S.PARTIALLY_FILLED, _S.FILLED, _S.PENDING_CANCEL, _S.PENDING_MODIFY, _S.CANCELLED}
    ),
    # A fill may land while a cancel/modify is in flight; the order stays pending until the venue answers.
    _S.PENDING_CANCEL: frozenset(
        {_S.PENDING_CANCEL, _S.CANCELLED, _S.FILLED, _S.OPEN, _S.PARTIALLY_FILLED, _S.REJECTED}
    ),
    _S.PENDING_MODIFY: frozenset(
        {_S.PENDING_MODIFY, _S.PENDING_CANCEL, _S.OPEN, _S.PARTIALLY_FILLED, _S.FILLED, _S.CANCELLED}
    ),
    _S.FILLED: frozenset(),
    _S.CANCELLED: frozenset(),
    _S.REJECTED: frozenset(),
}


def can_transition(old: OrderStatus, new: OrderStatus) -> bool:
    return new in _ALLOWED[old]


# --- tick and lot rounding -----------------------------------------------------------------------


def price_to_ticks(price: float, tick_size: float, side: Side) -> int:
    """Integer tick index of a limit price, rounded passively: bids down, asks up.

    Rounding towards the passive side never makes an order more aggressive than asked.
    """
    x = price / tick_size
    eps = GRID_EPS * max(1.0, abs(x))
    return math.floor(x + eps) if side is Side.BUY else math.ceil(x - eps)


def ticks_to_price(ticks: int, tick_size: float) -> float:
    """Price of a tick index, with the float noise of ``ticks * tick_size`` removed."""
    return round(ticks * tick_size, 10)


def round_price(price: float, tick_size: float, side: Side) -> float:
    """Round a limit price to the tick grid, bids down and asks up."""
    return ticks_to_price(price_to_ticks(price, tick_size, side), tick_size)


def round_size(size: float, lot_size: float) -> float:
    """Round a size down to a whole number of lots (never send more than asked)."""
    x = size / lot_size
    lots = math.floor(x + GRID_EPS * max(1.0, abs(x)))
    return round(lots * lot_size, 10)


# --- the order record ----------------------------------------------------------------------------


@dataclass(slots=True)
class Order:
    """One order's state. Mutable; only :meth:`transition` and :meth:`apply_fill` change its status.

    ``size`` is the total size (base units); ``filled`` what traded so far; ``remaining = size - filled``.
    """

    client_order_id: str
    side: Side
    price: float
    size: float
    tif: TimeInForce = TimeInForce.GTC
    status: OrderStatus = OrderStatus.PENDING_NEW
    filled: float = 0.0
    fee_paid: float = 0.0
    # status to return to when a pending cancel/modify is rejected
    resume_status: OrderStatus | None = None
    fill_ids: set[str] = field(default_factory=set)
    # remaining's last (size, filled) and its value: Python's round() with digits formats the number (~3k
    # instructions), and the venue and the core read remaining many times between two changes of size or filled
    _remaining_of: tuple[float, float] | None = field(default=None, init=False, repr=False, compare=False)
    _remaining: float = field(default=0.0, init=False, repr=False, compare=False)

    @property
    def remaining(self) -> float:
        size, filled = self.size, self.filled
        of = self._remaining_of
        # equal floats give the same value (±0 differ, and max(0.0, ±0.0) is 0.0 either way); NaN never matches
        if of is not None and of[0] == size and of[1] == filled:
            return self._remaining
        value = max(0.0, round(size - filled, 12))
        self._remaining_of = (size, filled)
        self._remaining = value
        return value

    @property
    def is_live(self) -> bool:
        return self.status.is_live

    def transition(self, new: OrderStatus) -> None:
        if not can_transition(self.status, new):
            msg = f"order {self.client_order_id}: {self.status.value} -> {new.value} is not allowed"
            raise IllegalTransitionError(msg)
        if new in (OrderStatus.PENDING_CANCEL, OrderStatus.PENDING_MODIFY):
            if self.status not in (OrderStatus.PENDING_CANCEL, OrderStatus.PENDING_MODIFY):
                self.resume_status = self.status
        else:
            self.resume_status = None
        self.status = new

    def apply_fill(self, fill_id: str, size: float, fee: float = 0.0) -> bool:
        """Add a fill; return False (and change nothing) when ``fill_id`` was already applied.

        A fill on a terminal order (a fill that raced a cancel ack) updates ``filled`` but not the status.
        A partial fill while a cancel/modify is pending keeps the order pending.
        """
        if fill_id in self.fill_ids:
            return False
        self.fill_ids.add(fill_id)
        self.filled = round(self.filled + size, 12)
        self.fee_paid += fee
        if self.status.is_terminal:
            return True
        if self.remaining <= 0.0:
            self.transition(OrderStatus.FILLED)
        elif self.status in (OrderStatus.PENDING_CANCEL, OrderStatus.PENDING_MODIFY):
            self.resume_status = OrderStatus.PARTIALLY_FILLED
        else:
            self.transition(OrderStatus.PARTIALLY_FILLED)
        return True

    def resume(self) -> None:
        """Return from pending cancel/modify after the venue rejected it."""
        if self.status not in (OrderStatus.PENDING_CANCEL, OrderStatus.PENDING_MODIFY):
            return
        back = self.resume_status or (OrderStatus.OPEN if self.filled <= 0 else OrderStatus.PARTIALLY_FILLED)
        if back is OrderStatus.OPEN and self.filled > 0:
            back = OrderStatus.PARTIALLY_FILLED
        self.transition(back)


# --- strategy-side tracker -----------------------------------------------------------------------


@dataclass
class TrackerStats:
    duplicate_fills: int = 0
    unknown_order_events: int = 0
    rejects: int = 0


class OrderTracker:
    """The strategy's own view of its orders and position, built from its actions and venue events.

    Call :meth:`on_action` for every action sent and :meth:`on_event` for every ``OrderAck``,
    ``OrderReject`` or ``Fill`` received. Duplicated fills (same ``fill_id``) are ignored; fills for
    orders the tracker never saw still move the position (money moved whether or not we remember why).

    Finished orders are kept for :meth:`get` only while they are among the last ``retain_terminal`` to finish;
    older ones are forgotten, so a session's memory does not grow with every order it ever placed (a day of
    BTCUSDT places ~241k orders, ~144 MB of them). A late venue event for a forgotten order is counted in
    ``stats.unknown_order_events`` and, if a fill, still moves the position. Client ids are never reused (the
    strategies number them), so forgetting one cannot let a new order take its place.

    Attributes
    ----------
    position : float
        Net base-asset position q (base units; + long).
    cash : float
        Quote-currency cash flow from fills, net of fees (buying spends cash).
    fees_paid : float
        Sum of fill fees in quote currency (negative when rebates dominate).
    """

    # slots: a fixed set of fields, which the compiled core reads by offset (apps/engine/_core.pyx)
    __slots__ = (
        "_fill_ids",
        "_finished",
        "_live",
        "_orders",
        "_pending_modify",
        "cash",
        "fees_paid",
        "position",
        "retain_terminal",
        "stats",
        "traded_volume",
    )

    def __init__(
        self,
        initial_position: float = 0.0,
        initial_cash: float = 0.0,
        initial_fees: float = 0.0,
        retain_terminal: int = 10_000,
    ) -> None:
        if not (isinstance(retain_terminal, int) and retain_terminal >= 1):
            raise ValueError(f"OrderTracker.retain_terminal must be an integer >= 1, got {retain_terminal!r}")
        self.retain_terminal = retain_terminal
        self.position = float(initial_position)
        self.cash = float(initial_cash)
        self.fees_paid = float(initial_fees)
        self.traded_volume = 0.0
        self.stats = TrackerStats()
        self._orders: dict[str, Order] = {}
        self._live: dict[str, Order] = {}  # the non-terminal subset of _orders, in placement order
        self._pending_modify: dict[str, tuple[float, float]] = {}
        self._fill_ids: set[str] = set()
        self._finished: deque[str] = deque()  # terminal orders' ids, oldest first, at most retain_terminal

    # -- actions ---------------------------------------------------------------------------------
    def on_action(self, action: Action) -> None:
        if isinstance(action, PlaceOrder):
            if action.client_order_id in self._orders:
                raise ValueError(f"client_order_id {action.client_order_id!r} was already used")
            order = Order(
                client_order_id=action.client_order_id,
                side=Side(action.side),
                price=float(action.price),
                size=float(action.size),
                tif=TimeInForce.parse(action.tif),
            )
            self._orders[order.client_order_id] = order
            self._live[order.client_order_id] = order
        elif isinstance(action, CancelOrder):
            order = self._orders.get(action.client_order_id)
            if order is not None and order.is_live and order.status is not OrderStatus.PENDING_CANCEL:
                order.transition(OrderStatus.PENDING_CANCEL)
        elif isinstance(action, ModifyOrder):
            order = self._orders.get(action.client_order_id)
            if order is not None and order.status in (OrderStatus.OPEN, OrderStatus.PARTIALLY_FILLED):
                order.transition(OrderStatus.PENDING_MODIFY)
                self._pending_modify[order.client_order_id] = (float(action.price), float(action.size))
        elif isinstance(action, CancelAll):
            for order in self._live.values():
                if order.is_live and order.status is not OrderStatus.PENDING_CANCEL:
                    order.transition(OrderStatus.PENDING_CANCEL)

    def on_actions(self, actions: list[Action] | tuple[Action, ...]) -> None:
        for action in actions:
            self.on_action(action)

    # -- venue events ----------------------------------------------------------------------------
    def on_event(self, event: OrderEvent) -> bool:
        """Apply one venue event; return False when it changed nothing (duplicate or stale)."""
        changed = self._apply(event)
        order = self._live.get(event.client_order_id)
        if order is not None and order.status.is_terminal:
            del self._live[event.client_order_id]
            self._retire(event.client_order_id)
        return changed

    def _retire(self, client_order_id: str) -> None:
        """Keep a finished order for :meth:`get` until ``retain_terminal`` newer ones have finished."""
        fin = self._finished
        fin.append(client_order_id)
        while len(fin) > self.retain_terminal:
            old = fin.popleft()
            order = self._orders.get(old)
            if order is not None and order.status.is_terminal and old not in self._live:
                del self._orders[old]

    def _apply(self, event: OrderEvent) -> bool:
        if isinstance(event, Fill):
            return self._on_fill(event)
        order = self._orders.get(event.client_order_id)
        if order is None:
            self.stats.unknown_order_events += 1
            return False
        if isinstance(event, OrderReject):
            self.stats.rejects += 1
            return self._on_reject(order)
        if isinstance(event, OrderAck):
            return self._on_ack(order, event)
        return False

    def on_events(self, events: list[OrderEvent]) -> None:
        for event in events:
            self.on_event(event)

    def _on_fill(self, fill: Fill) -> bool:
        if fill.fill_id in self._fill_ids:
            self.stats.duplicate_fills += 1
            return False
        self._fill_ids.add(fill.fill_id)
        sign = int(fill.side)
        self.position = round(self.position + sign * fill.size, 12)
        self.cash -= sign * fill.price * fill.size + fill.fee
        self.fees_paid += fill.fee
        self.traded_volume += fill.size
        order = self._orders.get(fill.client_order_id)
        if order is None:
            self.stats.unknown_order_events += 1
            return True
        order.apply_fill(fill.fill_id, fill.size, fill.fee)
        return True

    def _on_reject(self, order: Order) -> bool:
        if order.status.is_terminal:
            return False
        never_acked = order.status is OrderStatus.PENDING_NEW or order.resume_status is OrderStatus.PENDING_NEW
        if never_acked:
            order.transition(OrderStatus.REJECTED)
            self._pending_modify.pop(order.client_order_id, None)
            return True
        if order.status in (OrderStatus.PENDING_CANCEL, OrderStatus.PENDING_MODIFY):
            self._pending_modify.pop(order.client_order_id, None)
            order.resume()
            return True
        return False

    def _on_ack(self, order: Order, ack: OrderAck) -> bool:
        if order.status.is_terminal:
            return False
        if ack.status == "open":
            if ack.price > 0:
                order.price = ack.price
            if ack.size > 0:
                order.size = ack.size  # total accepted size, after lot rounding
            if order.status is OrderStatus.PENDING_NEW:
                order.transition(OrderStatus.OPEN)
            elif order.resume_status is OrderStatus.PENDING_NEW:
                order.resume_status = OrderStatus.OPEN
            return True
        if ack.status == "cancelled":
            order.transition(OrderStatus.CANCELLED)
            self._pending_modify.pop(order.client_order_id, None)
            return True
        if ack.status == "modified":
            price, remaining = self._pending_modify.pop(order.client_order_id, (ack.price, ack.size))
            order.price = ack.price if ack.price > 0 else price
            new_remaining = ack.size if ack.size > 0 else remaining
            order.size = round(order.filled + new_remaining, 12)
            if order.status is OrderStatus.PENDING_MODIFY:
                order.resume()
            return True
        return False

    # -- reads -----------------------------------------------------------------------------------
    def get(self, client_order_id: str) -> Order | None:
        return self._orders.get(client_order_id)

    def forget_live_orders(self) -> list[Order]:
        """Mark every live order CANCELLED without a venue event and return them.

        Only for when the venue is known to hold nothing of ours (its book was emptied by ``cancel_all_now``,
        or it died with the process): the orders must not stay "open" in our records forever.
        """
        gone = list(self._live.values())
        for order in gone:
            order.status = OrderStatus.CANCELLED
            order.resume_status = None
        self._live.clear()
        for order in gone:
            self._retire(order.client_order_id)
        return gone

    def open_orders(self) -> list[Order]:
        """Orders not in a terminal status (including ones whose place or cancel is in flight)."""
        return list(self._live.values())

    def open_orders_on(self, side: Side) -> list[Order]:
        return [o for o in self.open_orders() if o.side is side]
