"""What the one engine driver needs from a venue and from a feed: two Protocols, so it never knows which it has.

:class:`~apps.engine.execution.paper.PaperVenue` (simulated matching) and
:class:`~apps.venues.hyperliquid.venue.HyperliquidVenue` (a real exchange) both satisfy :class:`Venue`;
:class:`~apps.engine.simulation.backtest.EngineLoop` and the live quoting loop type their venue as it and call
nothing else. Likewise every live feed (the simulator behind :class:`~apps.engine.market.feeds.ReconnectingFeed`,
a Binance connector, the Hyperliquid stream) satisfies :class:`Feed`.

Operations and why they are shaped so:

* Place, cancel, modify and cancel-all are *actions* handed to :meth:`Venue.submit` in one list, so a venue may
  batch them (one request per kind) and a simulated one may delay each by its latency. ``submit`` returns what
  is known at once (local rejects; a real venue's acks), and the rest comes later from :meth:`Venue.advance`.
* :meth:`Venue.next_event_ns` is the local time of the next event the venue has for us (``None`` when none): the
  driver delivers venue events in time order with market events (``merge(feed, venue)``).
* :meth:`Venue.cancel_all_now` is the emergency path (kill switch, stop): everything of ours, no latency.
* The account side (:class:`Account`): position, fills after a given fill id, margin, the funding rate and the
  funding payments made since a time (as :class:`~apps.engine.market.events.Funding` events, ``rate`` the rate
  paid, ``interval_s`` the venue's funding interval). A venue that does not know an answer (the paper venue has
  no margin account and no funding of its own) returns ``None`` or nothing; the driver then leaves the margin
  rule not applicable and the funding term to whatever the feed says.

Pure: no I/O here, only types.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from apps.engine.execution.fillmodel import LevelBook
from apps.engine.market.events import Action, Fill, Funding, MarketEvent, OrderEvent


@dataclass(frozen=True)
class MarginReport:
    """A venue's margin report for one instrument, in the units the margin rule reads.

    ``leverage`` is the position's leverage (>= 1); ``maint_margin_rate`` the maintenance margin as a fraction of
    notional; ``wallet_balance`` the account value without the position's unrealised P&L (quote currency);
    ``entry_price`` the position's average entry (0 when flat); ``account_value`` the account value with it;
    ``margin_used`` the margin the venue holds against positions (quote currency)."""

    leverage: float
    maint_margin_rate: float
    wallet_balance: float
    entry_price: float
    account_value: float
    margin_used: float
    position: float = 0.0  # the venue's signed position (base units): 0 means the report shows none


def fills_after(fills: Sequence[Fill], fill_id: str | None) -> list[Fill]:
    """The fills in ``fills`` (in booking order) after the one with ``fill_id``; all of them for ``None`` or an id
    not among them. What every :class:`Account`'s ``fills_since`` answers from its own booked list."""
    if fill_id is not None:
        for i in range(len(fills) - 1, -1, -1):
            if fills[i].fill_id == fill_id:
                return list(fills[i + 1 :])
    return list(fills)


class VenueGrid(Protocol):
    """The venue's price and size grid as the driver reads it (``venue.config``)."""

    @property
    def tick_size(self) -> float: ...

    @property
    def lot_size(self) -> float: ...


@runtime_checkable
class Venue(Protocol):
    """Order entry and order events: everything :class:`EngineLoop` calls on a venue."""

    @property
    def config(self) -> VenueGrid: ...

    @property
    def book(self) -> LevelBook: ...

    def submit(self, actions: Sequence[Action], now_local_ns: int) -> list[OrderEvent]: ...

    def on_market(self, event: MarketEvent) -> list[OrderEvent]: ...

    def advance(self, now_local_ns: int) -> list[OrderEvent]: ...

    def next_event_ns(self) -> int | None: ...

    def open_orders(self) -> list[Any]: ...

    def cancel_all_now(self, now_local_ns: int) -> list[OrderEvent]: ...


@runtime_checkable
class Account(Protocol):
    """The account side of a venue: position, fills since an id, margin and funding (``None``: not reported)."""

    def position(self) -> float: ...

    def fills_since(self, fill_id: str | None) -> list[Fill]: ...

    def margin_report(self) -> MarginReport | None: ...

    def funding_rate(self) -> float | None: ...

    def funding_since(self, start_ns: int) -> list[Funding]: ...

    @property
    def funding_interval_s(self) -> float: ...


@runtime_checkable
class Feed(Protocol):
    """A live loop's market data: ``poll(now)`` returns a :class:`~apps.engine.market.feeds.FeedPoll` (events up to
    now, and whether the feed dropped or resynchronised during the call); ``exhausted`` ends a replay."""

    @property
    def exhausted(self) -> bool: ...

    def poll(self, now_ns: int) -> Any: ...


VENUE_OPERATIONS = ("submit", "on_market", "advance", "next_event_ns", "open_orders", "cancel_all_now")
ACCOUNT_OPERATIONS = ("position", "fills_since", "margin_report", "funding_rate", "funding_since")

__all__ = [
    "ACCOUNT_OPERATIONS",
    "VENUE_OPERATIONS",
    "Account",
    "Feed",
    "MarginReport",
    "Venue",
    "VenueGrid",
]
