"""Feed plumbing shared by live connectors and the simulator: reconnect back-off and an outage-injecting feed.

A feed is anything with ``poll(now_ns) -> list[Event]`` that may raise :class:`FeedDisconnectedError`, and
``connect(now_ns) -> list[Event]`` that (re)opens it and returns the resynchronisation events (a fresh book
snapshot and top of book) that must be applied before quoting again.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from apps.engine.market.events import BestBidAsk, Event
from apps.engine.simulation.simulator import MarketSimulator

_NS = 1_000_000_000


class FeedDisconnectedError(ConnectionError):
    """The feed is down; call ``connect`` (after the back-off delay) to resume."""


@dataclass(frozen=True, slots=True)
class BackoffParams:
    """Exponential back-off with full jitter: delay_k = U(0, 1)·jitter·d + (1 − jitter)·d, d = min(cap, base·2^k).

    Attributes
    ----------
    base_s : float
        First delay, seconds.
    cap_s : float
        Largest delay, seconds.
    jitter : float
        In [0, 1]: the randomised share of each delay (1 = "full jitter"), so many clients do not reconnect in
        lockstep after a venue-wide outage.
    """

    base_s: float = 0.25
    cap_s: float = 30.0
    jitter: float = 0.5

    def validate(self) -> BackoffParams:
        if not (self.base_s > 0 and self.cap_s >= self.base_s):
            raise ValueError(f"BackoffParams: need 0 < base_s <= cap_s, got base_s={self.base_s}, cap_s={self.cap_s}")
        if not (0.0 <= self.jitter <= 1.0):
            raise ValueError(f"BackoffParams.jitter must be in [0, 1], got {self.jitter}")
        return self


class Backoff:
    def __init__(self, params: BackoffParams | None = None, seed: int = 0) -> None:
        self.params = (params or BackoffParams()).validate()
        self._rng = np.random.default_rng(seed)
        self.attempts = 0

    def next_delay_s(self) -> float:
        p = self.params
        d = min(p.cap_s, p.base_s * (2.0**self.attempts))
        self.attempts += 1
        return (1.0 - p.jitter) * d + p.jitter * d * float(self._rng.random())

    def reset(self) -> None:
        self.attempts = 0


class SimulatedFeed:
    """The market simulator as a feed, with scheduled outages ``[(start_s, duration_s), ...]`` measured from
    ``start_ns``. During an outage ``poll`` raises; the market goes on, and what happened meanwhile is never
    delivered (as with a dropped connection). ``connect`` succeeds only after the outage and returns a fresh
    snapshot plus top of book."""

    def __init__(self, sim: MarketSimulator, start_ns: int, outages: tuple[tuple[float, float], ...] = ()) -> None:
        for start, dur in outages:
            if not (start >= 0 and dur > 0):
                raise ValueError(f"outage ({start}, {dur}): need start_s >= 0 and duration_s > 0")
        self.sim = sim
        self.windows = [(start_ns + int(s * _NS), start_ns + int((s + d) * _NS)) for s, d in outages]
        self.connected = True
        self.disconnects = 0

    @property
    def exhausted(self) -> bool:
        """A simulated market never runs out (a recorded one does: :attr:`ReplayingFeed.exhausted`)."""
        return False

    def _down(self, now_ns: int) -> bool:
        return any(a <= now_ns < b for a, b in self.windows)

    def poll(self, now_ns: int) -> list[Event]:
        if not self.connected:
            raise FeedDisconnectedError("feed not connected")
        if self._down(now_ns):
            self.connected = False
            self.disconnects += 1
            self.sim.step_until(now_ns)  # the market moves on; these events are lost in transit
            raise FeedDisconnectedError("simulated disconnect")
        return self.sim.step_until(now_ns)

    def connect(self, now_ns: int) -> list[Event]:
        if self._down(now_ns):
            raise FeedDisconnectedError("venue still unreachable")
        self.sim.step_until(now_ns)
        self.connected = True
        snap = self.sim.book()
        (bid, bid_sz), (ask, ask_sz) = snap.bids[0], snap.asks[0]
        bbo = BestBidAsk(snap.ts_exch_ns, snap.ts_local_ns, bid, bid_sz, ask, ask_sz, snap.last_update_id)
        return [snap, bbo]


@dataclass(frozen=True, slots=True)
class FeedPoll:
    """What one poll of a :class:`ReconnectingFeed` brought.

    ``dropped`` is why the feed went down during this poll (quotes must be pulled at once); ``resynced`` says it
    came back and ``events`` begin with its resynchronisation snapshot and top of book; ``attempts`` counts the
    reconnect attempts (at a drop: the first delay drawn; at a resync: what it took).
    """

    events: list[Event]
    dropped: str | None = None
    resynced: bool = False
    attempts: int = 0


class ReconnectingFeed:
    """A feed that reconnects itself after a disconnect, with exponential back-off and jitter (:class:`Backoff`).

    ``poll(now)`` never raises :class:`FeedDisconnectedError`: it reports the drop and the resync in a
    :class:`FeedPoll`, and between them returns no events until the next attempt is due. Pure: the wall clock
    comes in as ``now_ns``.
    """

    def __init__(self, feed: SimulatedFeed | ReplayingFeed, backoff: Backoff) -> None:
        self.feed = feed
        self.backoff = backoff
        self._next_connect_ns = 0
        self.last_error = ""

    @property
    def exhausted(self) -> bool:
        return self.feed.exhausted

    def poll(self, now_ns: int) -> FeedPoll:
        if self.feed.connected:
            try:
                return FeedPoll(self.feed.poll(now_ns))
            except FeedDisconnectedError as exc:
                self._next_connect_ns = now_ns + int(self.backoff.next_delay_s() * 1e9)
                return FeedPoll([], dropped=str(exc), attempts=self.backoff.attempts)
        if now_ns < self._next_connect_ns:
            return FeedPoll([])
        try:
            events = self.feed.connect(now_ns)
        except FeedDisconnectedError as exc:
            self.last_error = str(exc)
            self._next_connect_ns = now_ns + int(self.backoff.next_delay_s() * 1e9)
            return FeedPoll([])
        attempts = self.backoff.attempts
        self.backoff.reset()
        return FeedPoll(events, resynced=True, attempts=attempts)


def shift_event(event: Event, shift_ns: int) -> Event:
    """The same event ``shift_ns`` later on both clocks (an exchange stamp of 0, "none", stays 0)."""
    from dataclasses import replace

    exch = event.ts_exch_ns + shift_ns if event.ts_exch_ns else 0
    return replace(event, ts_exch_ns=exch, ts_local_ns=event.ts_local_ns + shift_ns)


class ReplayingFeed:
    """Recorded market events played at real speed into the live loop, re-stamped so the first event happens at
    ``start_ns`` (the loop's wall clock): every clock-based part of the live stack (staleness, clock skew, the
    venue's latency) then sees recorded time as now. ``shift_ns`` is kept so results can be compared with a
    backtest of the same events (shift them by the same amount)."""

    def __init__(self, events: list[Event], start_ns: int) -> None:
        if not events:
            raise ValueError("replay feed: no events to replay")
        for i in range(1, len(events)):
            if events[i].ts_local_ns < events[i - 1].ts_local_ns:
                raise ValueError(f"replay feed: event {i} goes back in local time")
        self.shift_ns = start_ns - events[0].ts_local_ns
        self._events = events
        self._pos = 0
        self.connected = True
        self.disconnects = 0

    @property
    def exhausted(self) -> bool:
        return self._pos >= len(self._events)

    def poll(self, now_ns: int) -> list[Event]:
        out = []
        limit = now_ns - self.shift_ns
        while self._pos < len(self._events) and self._events[self._pos].ts_local_ns <= limit:
            out.append(shift_event(self._events[self._pos], self.shift_ns))
            self._pos += 1
        return out

    def connect(self, now_ns: int) -> list[Event]:
        self.connected = True
        return []
