"""The Hyperliquid stream as the quoting loop's feed (:class:`~apps.engine.execution.venue.Feed`).

One WebSocket carries both the market data and our order events, so the feed and the venue are one
:class:`~apps.venues.hyperliquid.venue.HyperliquidVenue`: the feed hands the market events to the loop
(``poll(now) -> FeedPoll``) and the loop hands ``feed.venue`` to the engine driver as its venue.

The loop's stale-feed handling reads the connection as a :class:`FeedPoll`, the same as a Binance feed: ``dropped``
when the socket stops being connected (or came back on a new connection between two polls: a reconnect we did
not see still lost messages), ``resynced`` with the first whole ``l2Book`` snapshot after that (each ``l2Book``
message is the whole top of the book, so one snapshot is a resynchronisation). Between the two, trades pass and
book events do not. Order-state reconciliation after a reconnect is the venue's (it runs on the first message of
a new connection).

The clock: the socket's :class:`~apps.engine.market.clock.ClockEstimator` (venue ``time`` stamps against local
receipt, round trips of pings and HTTP requests) is shown in :meth:`HyperliquidFeed.status` (``clock_offset_ms``,
``rtt_ms``, as a Binance feed shows it) and handed to the clock-skew rule by the loop
(:meth:`HyperliquidFeed.clock_offset_ns`).
"""

from __future__ import annotations

import time
from typing import Any

from apps.engine.market.events import DepthSnapshot, Trade
from apps.engine.market.feeds import FeedPoll

from .venue import HyperliquidVenue
from .ws import ConnectionState


class HyperliquidFeed:
    def __init__(self, venue: HyperliquidVenue) -> None:
        self.venue = venue
        self.whole = False
        self._epoch = venue.socket.epoch
        self._carry: list[Any] = []  # a new connection's snapshot seen in the poll that reported the drop
        self._last_message_ns = 0

    @property
    def exhausted(self) -> bool:
        return False

    @property
    def connected(self) -> bool:
        return self.whole

    def close(self) -> None:
        """Disarm the dead-man's switch and close the socket (the quoting loop calls this when it finishes)."""
        self.venue.stop()

    def status(self) -> dict[str, Any]:
        """The connection as the dashboard shows it: ``state`` (connecting / connected / backoff / closed), whether
        the book is whole, the age of the last market message (s), disconnects and reconciliations so far, and the
        clock: ``clock_offset_ms`` (local − venue), ``rtt_ms``, ``rtt_max_ms``, ``clock_samples``."""
        v, sock = self.venue, self.venue.socket
        last = self._last_message_ns
        return {
            "source": "hyperliquid",
            "venue": "hyperliquid",
            "network": v.cfg.network,
            "symbol": v.cfg.coin,
            "state": str(v.connection_state.value),
            "whole": self.whole,
            "message_age_s": round((time.time_ns() - last) / 1e9, 3) if last else None,
            "attempts": sock.backoff.attempts,
            "disconnects": sock.disconnects,
            "reconciliations": v.reconciliations,
            "last_error": sock.last_error,
            **sock.clock.status(),
        }

    def clock_offset_ns(self) -> int | None:
        """The measured local-minus-venue offset (ns; ``None`` before the first stamped message): what the quoting
        loop gives the clock-skew rule instead of one event's raw difference."""
        return self.venue.socket.clock.offset_ns

    def poll(self, now_ns: int) -> FeedPoll:
        events = self._carry + self.venue.poll_market(now_ns)
        self._carry = []
        if events:
            self._last_message_ns = max(self._last_message_ns, events[-1].ts_local_ns)
        state, epoch = self.venue.connection_state, self.venue.socket.epoch
        attempts = self.venue.socket.backoff.attempts
        if self.whole and (state is not ConnectionState.CONNECTED or epoch != self._epoch):
            self.whole = False
            last = max((i for i, e in enumerate(events) if type(e) is DepthSnapshot), default=None)
            if last is not None and epoch != self._epoch:
                self._carry = events[last:]  # the new connection's book: it resyncs the next poll
                events = events[:last]
            self._epoch = epoch
            why = f"hyperliquid stream {state.value}: {self.venue.socket.last_error or 'connection replaced'}"
            return FeedPoll([e for e in events if type(e) is Trade], dropped=why, attempts=max(attempts, 1))
        if not self.whole:
            first = next((i for i, e in enumerate(events) if type(e) is DepthSnapshot), None)
            if first is None or state is not ConnectionState.CONNECTED:
                return FeedPoll([e for e in events if type(e) is Trade])
            self.whole = True
            self._epoch = epoch
            return FeedPoll(events[first:], resynced=True, attempts=attempts)
        return FeedPoll(events)
