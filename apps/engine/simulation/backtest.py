"""The backtest driver: ``for event in merge(feed, venue): actions = core.on_event(event); venue.submit(actions)``.

One step code for replay and live (architecture principle 1). :class:`EngineLoop` owns the merge of a market
feed with the paper venue's own events: before a market event at local time ``t`` is fed, every venue event
(an action reaching the matching engine, an ack/fill becoming visible) due strictly before ``t`` is processed
at its own time, via :meth:`PaperVenue.next_event_ns`. The strategy therefore sees the market only as of its
local time, and the result does not depend on how often a driver wakes up: a backtest calls
:meth:`EngineLoop.on_market` for every event; a wall-clock loop calls :meth:`EngineLoop.step_until` with the
events its feed produced up to ``now`` and gets identical decisions and fills (tested in ``test_parity``).

The strategy is anything with the :class:`Strategy` shape (the GLFT :class:`~apps.engine.core.StrategyCore`
and the baselines in :mod:`apps.engine.simulation.baselines`). A :class:`Sink` receives everything for recording; the
P&L :class:`~apps.engine.accounting.pnl.PnlLedger` is fed from the venue's book mid and our fills.

Pure: no Django, no I/O.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from apps.engine.accounting.pnl import COMPONENTS, PnlBreakdown, PnlLedger, max_drawdown, sharpe_ratio
from apps.engine.execution.orders import OrderTracker
from apps.engine.execution.paper import PaperVenue
from apps.engine.market.events import (
    Action,
    BestBidAsk,
    DepthSnapshot,
    DepthUpdate,
    Fill,
    Funding,
    OrderEvent,
    QuoteDecision,
    Side,
    Timer,
    Trade,
)
from apps.engine.validation import positive

_NS = 1_000_000_000
MARKET_TYPES = (Trade, BestBidAsk, DepthUpdate, DepthSnapshot, Funding, Timer)
SECONDS_PER_YEAR = 365.0 * 86400.0  # crypto trades every day of the year
# Annualising multiplies the per-interval Sharpe by √(intervals per year): from minutes of data that turns noise
# into a four-digit number. Below a day of data the summary states the per-interval ratio and its span only.
MIN_ANNUALISE_SPAN_S = 86400.0


class Strategy(Protocol):
    """What the driver needs from a quoter (StrategyCore and the baselines)."""

    tracker: OrderTracker
    last_decision: QuoteDecision | None
    decisions_changed: bool

    def on_event(self, event: Any) -> list[Action]: ...

    def halt(self, reason: str) -> list[Action]: ...

    def state(self) -> dict[str, Any]: ...


class Sink(Protocol):
    """Receives everything the loop sees and does, in order (a recorder)."""

    def market(self, event: Any) -> None: ...

    def order_event(self, event: OrderEvent) -> None:
        """Called after the strategy has processed ``event`` and before its reaction is sent."""

    def actions(self, ts_ns: int, actions: Sequence[Action]) -> None: ...

    def decision(self, decision: QuoteDecision) -> None: ...


@dataclass(frozen=True)
class BacktestConfig:
    """Parameters of the measurement, not of the strategy or the venue.

    Parameters
    ----------
    markout_s : float
        Horizon h in seconds that separates adverse selection from inventory P&L, and of the reported markout.
    sample_interval_s : float
        Spacing in seconds of the P&L series and of the quote-statistics samples (also the Sharpe interval).
    keep_decisions : bool
        Keep every changed decision in memory (for tests and parity); the summary does not need them.
    cancel_at_end : bool
        At the end of the data, halt the strategy (cancel-all through the venue, with its latency) and wait
        for the answers, so no order is left "open" in a finished session.
    """

    markout_s: float = 1.0
    sample_interval_s: float = 1.0
    keep_decisions: bool = True
    cancel_at_end: bool = True

    def validate(self) -> BacktestConfig:
        for name in ("markout_s", "sample_interval_s"):
            positive(name, getattr(self, name), "BacktestConfig")
        return self


@dataclass
class QuoteSample:
    """Our quote against the market at one sampling instant (prices in quote currency)."""

    ts_ns: int
    mid: float
    market_spread_bps: float
    quoted_spread_bps: float | None
    bid_distance_ticks: float | None  # best bid − our bid, ticks (0 = at the touch, < 0 = inside)
    ask_distance_ticks: float | None  # our ask − best ask, ticks


@dataclass
class RunStats:
    market_events: int = 0
    order_events: int = 0
    actions: int = 0
    decisions: int = 0
    local_rejects: int = 0
    wall_s: float = 0.0


@dataclass
class BacktestResult:
    """Everything a run produced. :meth:`summary` is the printed/stored digest."""

    strategy: str
    config: BacktestConfig
    tick_size: float
    max_inventory: float | None
    fills: list[Fill] = field(default_factory=list)
    decisions: list[QuoteDecision] = field(default_factory=list)
    pnl: list[PnlBreakdown] = field(default_factory=list)
    samples: list[QuoteSample] = field(default_factory=list)
    ledger: PnlLedger | None = None
    stats: RunStats = field(default_factory=RunStats)
    max_abs_inventory: float = 0.0
    first_ts_ns: int = 0
    last_ts_ns: int = 0

    def summary(self, *, timing: bool = True) -> dict[str, Any]:
        """The digest: fills per side, volume, maker share, spreads, inventory, P&L by component, risk, speed.

        ``timing=False`` leaves out the wall-clock numbers, so two runs on the same input compare byte for byte.
        """
        buys = [f for f in self.fills if f.side is Side.BUY]
        sells = [f for f in self.fills if f.side is Side.SELL]
        volume = math.fsum(f.size for f in self.fills)
        maker_volume = math.fsum(f.size for f in self.fills if f.liquidity == "maker")
        notional = math.fsum(f.size * f.price for f in self.fills)
        final = self.pnl[-1] if self.pnl else None
        totals = [p.total for p in self.pnl]
        quoted = [s.quoted_spread_bps for s in self.samples if s.quoted_spread_bps is not None]
        market = [s.market_spread_bps for s in self.samples]
        bid_d = [s.bid_distance_ticks for s in self.samples if s.bid_distance_ticks is not None]
        ask_d = [s.ask_distance_ticks for s in self.samples if s.ask_distance_ticks is not None]
        marks = self.ledger.markouts if self.ledger else []
        done = [m for m in marks if m.complete and math.isfinite(m.bps)]
        sharpe = sharpe_ratio(totals)
        interval = self.config.sample_interval_s
        span_s = (self.last_ts_ns - self.first_ts_ns) / _NS
        annualise = span_s >= MIN_ANNUALISE_SPAN_S
        out: dict[str, Any] = {
            "strategy": self.strategy,
            "span_s": span_s,
            "events_processed": self.stats.market_events,
            "order_events": self.stats.order_events,
            "actions": self.stats.actions,
            "decisions": self.stats.decisions,
            "fills_buy": len(buys),
            "fills_sell": len(sells),
            "volume": volume,
            "notional": notional,
            "maker_share": maker_volume / volume if volume > 0 else None,
            "avg_quoted_spread_bps": statistics.fmean(quoted) if quoted else None,
            "median_quoted_spread_bps": statistics.median(quoted) if quoted else None,
            "median_market_spread_bps": statistics.median(market) if market else None,
            "median_bid_distance_ticks": statistics.median(bid_d) if bid_d else None,
            "median_ask_distance_ticks": statistics.median(ask_d) if ask_d else None,
            "quoted_share": len(quoted) / len(market) if market else None,
            "final_inventory": final.position if final else 0.0,
            "max_abs_inventory": self.max_abs_inventory,
            "max_inventory_limit": self.max_inventory,
            "pnl_total": final.total if final else 0.0,
            "pnl": {c: getattr(final, c) for c in COMPONENTS} if final else dict.fromkeys(COMPONENTS, 0.0),
            "markout_s": self.config.markout_s,
            "markout_fills": len(done),
            "markout_mean_bps": statistics.fmean(m.bps for m in done) if done else None,
            "sharpe_interval_s": interval,
            "sharpe_per_interval": _or_none(sharpe),
            "sharpe_n_intervals": max(len(totals) - 1, 0),
            # None below MIN_ANNUALISE_SPAN_S of data: an annualised ratio from minutes would be a made-up number
            "sharpe_annualised": _or_none(sharpe * math.sqrt(SECONDS_PER_YEAR / interval)) if annualise else None,
            "max_drawdown": max_drawdown(totals),
        }
        if timing:
            out["wall_s"] = self.stats.wall_s
            out["events_per_s"] = self.stats.market_events / self.stats.wall_s if self.stats.wall_s > 0 else None
        return out


def _or_none(x: float) -> float | None:
    return x if math.isfinite(x) else None


class EngineLoop:
    """merge(feed, venue) → strategy → venue, with P&L and quote statistics; see the module docstring.

    Parameters
    ----------
    strategy : Strategy
        The quoter (StrategyCore or a baseline).
    venue : PaperVenue
        The simulated venue; its book gives the mid used for P&L.
    config : BacktestConfig
        Measurement parameters.
    sink : Sink, optional
        Receives market events, order events, actions and changed decisions (a recorder).
    name : str
        Label of the strategy in the result.
    """

    def __init__(
        self,
        strategy: Strategy,
        venue: PaperVenue,
        config: BacktestConfig | None = None,
        *,
        sink: Sink | None = None,
        name: str = "",
    ) -> None:
        self.strategy = strategy
        self.venue = venue
        self.config = (config or BacktestConfig()).validate()
        self.sink = sink
        self.ledger = PnlLedger(self.config.markout_s)
        params = getattr(strategy, "params", None)
        self.result = BacktestResult(
            strategy=name or type(strategy).__name__,
            config=self.config,
            tick_size=venue.config.tick_size,
            max_inventory=getattr(params, "max_inventory", None),
            ledger=self.ledger,
        )
        self._tick = venue.config.tick_size
        self._interval_ns = round(self.config.sample_interval_s * _NS)
        self._next_sample_ns: int | None = None
        self._now_ns = 0
        self._book = venue.book

    # --- the merge ------------------------------------------------------------------------------
    def on_market(self, event: Any) -> None:
        """Feed one market event (local-time order): venue events due before it first, then the event."""
        t = event.ts_local_ns
        venue = self.venue
        nxt = venue.next_event_ns()
        while nxt is not None and nxt < t:
            self._now_ns = max(self._now_ns, nxt)
            self._sample_until(nxt)
            self._handle(venue.advance(nxt))
            nxt = venue.next_event_ns()
        self._sample_until(t)
        self._now_ns = max(self._now_ns, t)
        if self.result.first_ts_ns == 0:
            self.result.first_ts_ns = t
        self.result.stats.market_events += 1
        if self.sink is not None:
            self.sink.market(event)
        out = venue.on_market(event)
        if isinstance(event, Funding):
            self.ledger.on_funding(t, event.rate)
        elif not isinstance(event, Trade):
            self._update_mid(t)
        if out:
            self._handle(out)
        actions = self.strategy.on_event(event)
        self._after_strategy(t, actions)

    def advance(self, now_ns: int) -> None:
        """Let time pass to ``now_ns`` with no market data: every venue event due by then is delivered."""
        venue = self.venue
        nxt = venue.next_event_ns()
        while nxt is not None and nxt <= now_ns:
            self._now_ns = max(self._now_ns, nxt)
            self._sample_until(nxt)
            self._handle(venue.advance(nxt))
            nxt = venue.next_event_ns()
        self._sample_until(now_ns)
        self._now_ns = max(self._now_ns, now_ns)

    def step_until(self, events: Iterable[Any], now_ns: int) -> None:
        """One wall-clock step of a live loop: the feed's events up to ``now_ns``, then the venue up to it."""
        for event in events:
            self.on_market(event)
        self.advance(now_ns)

    def run(self, feed: Iterable[Any]) -> BacktestResult:
        """Replay a whole feed (market events in local-time order; anything else is skipped) and finish."""
        t0 = time.perf_counter()
        on_market = self.on_market
        for event in feed:
            if isinstance(event, MARKET_TYPES):
                on_market(event)
        self.result.stats.wall_s += time.perf_counter() - t0
        return self.finish()

    def finish(self) -> BacktestResult:
        """Cancel what is working (``cancel_at_end``), deliver what is in flight, take a final P&L sample."""
        if self.config.cancel_at_end and self.strategy.tracker.open_orders():
            self._after_strategy(self._now_ns, self.strategy.halt("end of data"))
        nxt = self.venue.next_event_ns()
        if nxt is not None:
            self.advance(nxt if nxt > self._now_ns else self._now_ns)
            while (nxt := self.venue.next_event_ns()) is not None:
                self.advance(nxt)
        self.ledger.finish()
        self._take_sample(self._now_ns)
        self.result.last_ts_ns = self._now_ns
        return self.result

    # --- internals ------------------------------------------------------------------------------
    def _update_mid(self, t: int) -> None:
        book = self._book
        bb = book.best_tick(Side.BUY)
        ba = book.best_tick(Side.SELL)
        if bb is None or ba is None or bb >= ba:
            return
        mid = (bb + ba) * self._tick * 0.5
        if mid != self.ledger.mid:
            self.ledger.on_mid(t, mid)

    def _handle(self, events: list[OrderEvent]) -> None:
        strategy, ledger, sink, result = self.strategy, self.ledger, self.sink, self.result
        for ev in events:
            result.stats.order_events += 1
            if isinstance(ev, Fill) and ledger.on_fill(ev):
                result.fills.append(ev)
                q = abs(ledger.position)
                if q > result.max_abs_inventory:
                    result.max_abs_inventory = q
            actions = strategy.on_event(ev)
            if sink is not None:
                sink.order_event(ev)  # after the strategy saw it, so a recorded order state includes it
            self._after_strategy(ev.ts_local_ns, actions)

    def _after_strategy(self, ts_ns: int, actions: list[Action]) -> None:
        strategy = self.strategy
        if strategy.decisions_changed and strategy.last_decision is not None:
            self.result.stats.decisions += 1
            if self.config.keep_decisions:
                self.result.decisions.append(strategy.last_decision)
            if self.sink is not None:
                self.sink.decision(strategy.last_decision)
        if not actions:
            return
        self.result.stats.actions += len(actions)
        if self.sink is not None:
            self.sink.actions(ts_ns, actions)
        local = self.venue.submit(actions, ts_ns)
        if local:
            self.result.stats.local_rejects += len(local)
            self._handle(local)

    def _sample_until(self, t: int) -> None:
        nxt = self._next_sample_ns
        if nxt is None:
            if math.isfinite(self.ledger.mid):
                # samples on a fixed grid aligned to whole intervals of the epoch: reproducible across runs
                self._next_sample_ns = (t // self._interval_ns + 1) * self._interval_ns
            return
        while nxt <= t:
            self._take_sample(nxt)
            nxt += self._interval_ns
        self._next_sample_ns = nxt

    def _take_sample(self, ts_ns: int) -> None:
        ledger = self.ledger
        if not math.isfinite(ledger.mid):
            return
        if self.result.pnl and self.result.pnl[-1].ts_ns == ts_ns:
            return
        self.result.pnl.append(ledger.snapshot(ts_ns))
        book = self._book
        bb, ba = book.best_tick(Side.BUY), book.best_tick(Side.SELL)
        if bb is None or ba is None or bb >= ba:
            return
        tick = self._tick
        mid = ledger.mid
        d = self.strategy.last_decision
        bid = d.bid_px if d is not None else None
        ask = d.ask_px if d is not None else None
        self.result.samples.append(
            QuoteSample(
                ts_ns=ts_ns,
                mid=mid,
                market_spread_bps=(ba - bb) * tick / mid * 1e4,
                quoted_spread_bps=(ask - bid) / mid * 1e4 if bid is not None and ask is not None else None,
                bid_distance_ticks=round(bb - bid / tick, 6) if bid is not None else None,
                ask_distance_ticks=round(ask / tick - ba, 6) if ask is not None else None,
            )
        )


def merge_by_local_time(*streams: Iterable[Any]) -> Iterator[Any]:
    """Merge several event streams, each already in local-time order, into one (stable across streams)."""
    import heapq

    # ties go to the earlier stream; within a stream the order is kept
    yield from heapq.merge(*streams, key=_local_ts)


def _local_ts(event: Any) -> int:
    return event.ts_local_ns
