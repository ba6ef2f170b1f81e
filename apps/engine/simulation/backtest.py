"""The one driver: ``for event in merge(feed, venue): risk; actions = core.on_event(event); gateway; venue``.

One step code for live, replay and backtests (architecture principle 1). :class:`EngineLoop` owns the order
market event → risk rules → strategy core → gateway (kill-switch gate) → venue → order events → ledger → sink,
and the merge of a market feed with the paper venue's own events: before a market event at local time ``t`` is
fed, every venue event (an action reaching the matching engine, an ack/fill becoming visible) due strictly
before ``t`` is processed at its own time, via :meth:`PaperVenue.next_event_ns`. The strategy therefore sees
the market only as of its local time, and the result does not depend on how often a driver wakes up: a
backtest calls :meth:`EngineLoop.on_market` for every event; the live quoting loop
(:class:`apps.trading.loop.QuotingLoop`, a wall-clock shell) calls :meth:`EngineLoop.step_until` with the
events its feed produced up to ``now`` and gets identical decisions, fills and risk events (tested in
``tests/trading/test_parity.py`` and ``test_live_replay_parity.py``).

The strategy is anything with the :class:`Strategy` shape (the GLFT :class:`~apps.engine.core.StrategyCore`
and the baselines in :mod:`apps.engine.simulation.baselines`). A :class:`Sink` receives everything for
recording (:class:`apps.trading.recording.RecorderSink` is the one mapping to database rows, live and
backtest); the P&L :class:`~apps.engine.accounting.pnl.PnlLedger` is fed from the venue's book mid and our fills.

Pure: no Django, no I/O.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from apps.engine import compiled
from apps.engine.accounting.funding import FundingClock
from apps.engine.accounting.pnl import COMPONENTS, PnlBreakdown, PnlLedger, max_drawdown, sharpe_ratio
from apps.engine.estimators.base import EstimatorSnapshot
from apps.engine.execution.orders import Order, OrderTracker, round_price
from apps.engine.execution.venue import Venue
from apps.engine.market.events import (
    Action,
    BestBidAsk,
    CancelAll,
    CancelOrder,
    DepthSnapshot,
    DepthUpdate,
    Fill,
    Funding,
    MarkPrice,
    OrderEvent,
    OrderReject,
    PlaceOrder,
    QuoteDecision,
    Side,
    Timer,
    Trade,
)
from apps.engine.risk.gateway import Mode, OrderGateway
from apps.engine.risk.rules import RuleAction, RuleTrip
from apps.engine.risk.session import SessionRisk
from apps.engine.simulation.snapshots import estimator_readings
from apps.engine.validation import positive

_NS = 1_000_000_000
_NEVER = 1 << 63  # beyond any int64 ns timestamp
MARKET_TYPES = (Trade, BestBidAsk, DepthUpdate, DepthSnapshot, Funding, MarkPrice, Timer)
SECONDS_PER_YEAR = 365.0 * 86400.0  # crypto trades every day of the year
# Annualising multiplies the per-interval Sharpe by √(intervals per year): from minutes of data that turns noise
# into a four-digit number. Below a day of data the summary states the per-interval ratio and its span only.
MIN_ANNUALISE_SPAN_S = 86400.0
BLOCKED = "blocked by gateway"  # the reason prefix of the gateway's own rejects (not the venue's)


class Strategy(Protocol):
    """What the driver needs from a quoter (StrategyCore and the baselines)."""

    tracker: OrderTracker
    last_decision: QuoteDecision | None
    decisions_changed: bool

    def on_event(self, event: Any) -> list[Action]: ...

    def halt(self, reason: str) -> list[Action]: ...

    def state(self) -> dict[str, Any]: ...


class Sink(Protocol):
    """Receives everything the driver sees and does, in order (a recorder). ``order`` arguments are the
    strategy's tracked order after the event or action (None when it tracks none, e.g. a cancel-all)."""

    def market(self, event: Any) -> None: ...

    def order_event(self, event: OrderEvent, order: Order | None) -> None:
        """Called after the strategy has processed ``event`` and before its reaction is sent."""

    def sent(self, ts_ns: int, action: Action, order: Order | None) -> None:
        """An action the gateway let through, as it goes to the venue."""

    def blocked(self, ts_ns: int, action: Action, reason: str) -> None:
        """The first action the gateway blocked after a mode change (later ones are counted)."""

    def decision(self, decision: QuoteDecision) -> None: ...

    def risk_event(self, ts_ns: int, rule: str, action: str, values: dict[str, Any], message: str) -> None:
        """A rule started tripping (action = what it does) or stopped (action = ``"cleared"``)."""

    def note(self, ts_ns: int, client_order_id: str, kind: str, **detail: Any) -> None:
        """A driver event about orders that is not a venue answer (emergency cancel, flatten done)."""

    def order_state(self, ts_ns: int, order: Order) -> None: ...

    def estimator_snapshot(self, ts_ns: int, snapshots: Sequence[EstimatorSnapshot]) -> None:
        """The strategy's estimators as they stood at ``ts_ns`` (a point of the ``snapshot_interval_s`` grid);
        see :mod:`apps.engine.simulation.snapshots` for the names and units."""

    def flush(self) -> None:
        """An emergency path ended: what was recorded should reach storage without waiting for the next batch."""


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
    risk_interval_s : float
        Spacing in seconds of the local-time grid on which the driver evaluates the risk rules (when it has
        any); the live loop's default step.
    cancel_at_end : bool
        At the end of the data, halt the strategy (cancel-all through the venue, with its latency) and wait
        for the answers, so no order is left "open" in a finished session.
    snapshot_interval_s : float
        Spacing in seconds of data (local) time of the estimator snapshots handed to the sink (1.0 = at most
        one per second of data, whatever the event rate). Taken on a grid aligned to whole intervals of the
        epoch, at most one per grid point reached (a gap in the data gives one, not one per missed point).
        Only with a sink; reading them never changes the run (see :mod:`apps.engine.simulation.snapshots`).
    """

    markout_s: float = 1.0
    sample_interval_s: float = 1.0
    keep_decisions: bool = True
    cancel_at_end: bool = True
    risk_interval_s: float = 0.1
    snapshot_interval_s: float = 1.0

    def validate(self) -> BacktestConfig:
        for name in ("markout_s", "sample_interval_s", "risk_interval_s", "snapshot_interval_s"):
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


@dataclass(slots=True)
class RunStats:
    # slotted: the compiled driver counts market events by slot offset (apps/engine/simulation/_backtest.pyx)
    market_events: int = 0
    order_events: int = 0
    actions: int = 0
    decisions: int = 0
    local_rejects: int = 0
    blocked: int = 0  # actions the gateway did not let through
    emergency_cancels: int = 0
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
    risk_events: list[RuleTrip] = field(default_factory=list)  # each trip as it started
    risk_cleared: list[tuple[int, str]] = field(default_factory=list)  # (ts_ns, rule) as each stopped
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
        if self.risk_events:  # only with risk rules that tripped: a run without any digests as before
            out["risk_events"] = [t.to_dict() for t in self.risk_events]
            out["blocked_actions"] = self.stats.blocked
        if timing:
            out["wall_s"] = self.stats.wall_s
            out["events_per_s"] = self.stats.market_events / self.stats.wall_s if self.stats.wall_s > 0 else None
        return out


def _or_none(x: float) -> float | None:
    return x if math.isfinite(x) else None


class PyEngineLoop:
    """The one driver: merge(feed, venue) → risk rules → strategy → gateway → venue → order events → ledger → sink.

    The pure-Python reference: use :data:`EngineLoop`, which is this class with its per-event path compiled
    (``apps/engine/simulation/_backtest.pyx``) when that is built (docs/compiled-core.md).

    Live trading, replay through the live loop and backtests all run this class; they differ only in what they
    hand it (architecture principle 1): the clock (a backtest calls :meth:`on_market` per event and
    :meth:`finish`; the live loop calls :meth:`step_until` with its feed's events up to the wall-clock ``now``),
    the feed, the venue and the sink.

    Risk rules (:class:`~apps.engine.risk.session.SessionRisk`, optional) are evaluated on a grid of local time
    every ``config.risk_interval_s``, each grid point before any event stamped at or after it, so the result
    does not depend on how often a live loop wakes up. ``pull_quotes`` closes the gateway (PAUSED) while it
    lasts; ``halt`` and ``reduce`` latch the gateway at once (HALTED / REDUCING) and are handed to ``report`` so
    the owner can record them where operators see them (a live session's status). The latch holds until the
    owner next sets the ``"control"`` mode (:meth:`set_mode`), i.e. until the operator's state has taken over;
    a backtest never does, so a trip holds to the end of its data.

    Parameters
    ----------
    strategy : Strategy
        The quoter (StrategyCore or a baseline).
    venue : Venue
        The paper venue or a live one (:class:`~apps.engine.execution.venue.Venue`); its book gives the mid
        used for P&L.
    config : BacktestConfig
        Measurement parameters (and the risk grid).
    sink : Sink, optional
        Receives everything, in order (:class:`apps.trading.recording.RecorderSink` writes it to the database).
    name : str
        Label of the strategy in the result.
    risk : SessionRisk, optional
        The risk rules; ``None`` runs none (the engine fingerprint and the benchmarks).
    report : callable, optional
        Called with each ``halt``/``reduce`` trip as it starts.
    mode : Mode
        The gateway's starting mode (the live loop starts HALTED until its first control read).
    """

    def __init__(
        self,
        strategy: Strategy,
        venue: Venue,
        config: BacktestConfig | None = None,
        *,
        sink: Sink | None = None,
        name: str = "",
        risk: SessionRisk | None = None,
        report: Callable[[RuleTrip], None] | None = None,
        mode: Mode = Mode.RUNNING,
    ) -> None:
        self.strategy = strategy
        # the strategy core's refresh step (its estimates due), run after each market event's actions went out
        self._strategy_refresh = getattr(strategy, "refresh", None)
        self.venue = venue
        self.config = (config or BacktestConfig()).validate()
        self.sink = sink
        self.risk = risk
        self.report = report
        self.gateway = OrderGateway(venue, mode)
        self._modes: dict[str, Mode] = {"control": mode}
        self._blocked_recorded_for: Mode | None = None
        self.ledger = PnlLedger(self.config.markout_s)
        # the clock of the venue's fill times: the paper venue's ``venue_clock``; a real venue's is the exchange's
        self._venue_exchange_clock = getattr(getattr(venue, "config", None), "venue_clock", "exchange") == "exchange"
        self._funding = FundingClock()  # settlements from mark-price updates
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
        self._risk_ns = round(self.config.risk_interval_s * _NS)
        self._next_risk_ns: int | None = None
        self._now_ns = 0
        self._book = venue.book
        self._snap_ns = round(self.config.snapshot_interval_s * _NS)
        # the next snapshot instant; 0 = set the grid at the first event; never without a sink
        self._next_snap_ns = 0 if sink is not None else _NEVER

    @property
    def now_ns(self) -> int:
        """The latest local time the driver has processed (event time, not the wall clock)."""
        return self._now_ns

    @property
    def mode(self) -> Mode:
        return self.gateway.mode

    # --- the merge ------------------------------------------------------------------------------
    def on_market(self, event: Any) -> None:
        """Feed one market event (local-time order): venue events due before it first, then the event."""
        t = event.ts_local_ns
        venue = self.venue
        self._deliver_venue(t, inclusive=False)
        self._reach(t)
        self._now_ns = max(self._now_ns, t)
        if self.result.first_ts_ns == 0:
            self.result.first_ts_ns = t
        self.result.stats.market_events += 1
        if self.risk is not None:
            self.risk.on_market(t, event.ts_exch_ns)
        if self.sink is not None:
            self.sink.market(event)
        out = venue.on_market(event)
        if isinstance(event, Funding):
            self.ledger.on_funding(t, event.rate)
        elif isinstance(event, MarkPrice):
            self._on_mark_price(t, event)
        elif not isinstance(event, Trade):
            self._update_mid(t, event.ts_exch_ns)
        if out:
            self._handle(out)
        actions = self.strategy.on_event(event)
        self._after_strategy(t, actions)
        if self._strategy_refresh is not None:
            self._strategy_refresh()  # off the quoting event: the next decision reads what it computes

    def on_account(self, event: Funding | MarkPrice) -> None:
        """Funding news from the venue's account side, not from the market feed: a :class:`MarkPrice` sets the
        reservation price's funding term (and settles as a feed's would), a :class:`Funding` is a payment the venue
        made (the P&L's funding part). Unlike :meth:`on_market` it does not count as market data, so the
        stale-feed rule still sees a silent feed as stale, and it is not recorded as a market event."""
        t = event.ts_local_ns
        self._deliver_venue(t, inclusive=False)
        self._reach(t)
        self._now_ns = max(self._now_ns, t)
        if isinstance(event, Funding):
            self.ledger.on_funding(t, event.rate)
        else:
            self._on_mark_price(t, event)
        self._after_strategy(t, self.strategy.on_event(event))

    def advance(self, now_ns: int) -> None:
        """Let time pass to ``now_ns`` with no market data: every venue event due by then is delivered."""
        self._deliver_venue(now_ns, inclusive=True)
        self._reach(now_ns)
        self._now_ns = max(self._now_ns, now_ns)

    def _deliver_venue(self, t: int, *, inclusive: bool) -> None:
        """Process every venue event due before ``t`` (at ``t`` too when ``inclusive``), each at its own time,
        with the driver's clocks brought up to it first."""
        venue = self.venue
        nxt = venue.next_event_ns()
        while nxt is not None and (nxt <= t if inclusive else nxt < t):
            self._now_ns = max(self._now_ns, nxt)
            self._reach(nxt)
            self._handle(venue.advance(nxt))
            nxt = venue.next_event_ns()

    def _reach(self, t: int) -> None:
        """The driver's own clocks up to ``t``: P&L samples, estimator snapshots, the risk rules' grid."""
        self._sample_until(t)
        if t >= self._next_snap_ns:
            self._snapshot(t)
        if self.risk is not None:
            self._risk_until(t)

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

    # --- modes: what the gateway lets through ----------------------------------------------------
    @property
    def modes(self) -> dict[str, Mode]:
        """Each source's mode (a copy): what holds quotes back and why; the gateway obeys the strictest."""
        return dict(self._modes)

    def set_mode(self, source: str, mode: Mode, now_ns: int, why: str) -> None:
        """Set one source's mode; the gateway obeys the most restrictive of all sources.

        Sources are the owner's (``"control"``: a session's status and the global switch; ``"feed"``, ``"db"``:
        a live loop's own holds) and the driver's (``"risk"``: pull_quotes while it lasts; ``"latched"``: a halt
        or reduce trip). Setting ``"control"`` clears the latch: the operator's state has taken it over.
        Entering PAUSED or HALTED cancels everything at the venue at once; entering REDUCING cancels the
        resting orders that would grow ``|q|``.
        """
        self._modes[source] = mode
        if source == "control":
            self._modes.pop("latched", None)
        self._apply_mode(now_ns, why)

    def _apply_mode(self, now_ns: int, why: str) -> None:
        mode = max(self._modes.values())
        previous = self.gateway.mode
        self.gateway.mode = mode
        if mode >= Mode.PAUSED and (previous < Mode.PAUSED or self.strategy.tracker.open_orders()):
            self.emergency_cancel(why, now_ns)
        elif mode is Mode.REDUCING and previous is Mode.RUNNING:
            self._cancel_increasing(now_ns)

    def emergency_cancel(self, reason: str, now_ns: int | None = None) -> None:
        """Cancel at the venue at once (no latency) and mark whatever was still in flight as gone."""
        t = self._now_ns if now_ns is None else max(now_ns, self._now_ns)
        events = self.venue.cancel_all_now(t)
        tracker = self.strategy.tracker
        if not events and not tracker.open_orders():
            return
        self.result.stats.emergency_cancels += 1
        sink = self.sink
        if sink is not None:
            sink.note(t, "*", "emergency_cancel_all", reason=reason)
        self._handle(events)
        for order in tracker.forget_live_orders():
            # the venue's book is empty now: whatever is still live on our side was in flight and is gone
            if sink is not None:
                sink.order_state(t, order)
        if sink is not None:
            sink.flush()  # the cancels are what an operator waits to see: every row of them, now

    def stop(self, reason: str, now_ns: int) -> None:
        """The owner ends the session: cancel everything at once and latch the strategy (it proposes nothing)."""
        self.emergency_cancel(reason, now_ns)
        self.strategy.halt(reason)  # its cancel-all is moot: the venue holds nothing of ours any more

    def flatten(self, max_slippage_bps: float, client_order_id: str, now_ns: int) -> PlaceOrder | None:
        """Stop with flatten: cancel everything, latch the strategy, and send one IOC order that closes the
        position no worse than ``max_slippage_bps`` beyond the touch. None when flat or with no book.
        Only that order passes the gateway (REDUCING) until :meth:`end_flatten`; risk rules no longer run."""
        self.stop("stop with flatten", now_ns)
        self.risk = None  # the session is ending: a pulled quote must not cancel the closing order
        bbo, q = getattr(self.strategy, "bbo", None), self.strategy.tracker.position
        lot, tick = self.venue.config.lot_size, self.venue.config.tick_size
        size = round(int(abs(q) / lot + 1e-9) * lot, 12)
        if bbo is None or size <= 0:
            return None
        slip = max_slippage_bps / 1e4
        side = Side.SELL if q > 0 else Side.BUY
        limit = bbo.bid_px * (1 - slip) if side is Side.SELL else bbo.ask_px * (1 + slip)
        limit = round_price(limit, tick, Side.BUY if side is Side.SELL else Side.SELL)  # rounded towards the touch
        order = PlaceOrder(client_order_id, side, limit, size, tif="IOC")
        self._modes = {"control": Mode.REDUCING}
        self.gateway.mode = Mode.REDUCING
        self.strategy.tracker.on_actions([order])
        self._after_strategy(max(now_ns, self._now_ns), [order])
        return order

    def end_flatten(self, order: PlaceOrder, now_ns: int) -> None:
        self._modes = {"control": Mode.HALTED}
        self.gateway.mode = Mode.HALTED
        if self.sink is not None:
            position = self.strategy.tracker.position
            self.sink.note(now_ns, order.client_order_id, "flatten_done", position_after=position, limit=order.price)

    def _cancel_increasing(self, now_ns: int) -> None:
        tracker = self.strategy.tracker
        growing = Side.BUY if tracker.position >= 0 else Side.SELL
        cancels: list[Action] = [CancelOrder(o.client_order_id) for o in tracker.open_orders_on(growing)]
        if cancels:
            tracker.on_actions(cancels)
            self._send(max(now_ns, self._now_ns), cancels, [])

    # --- risk -------------------------------------------------------------------------------------
    def _risk_until(self, t: int) -> None:
        """Evaluate the rules at every grid point up to ``t`` (called before any event stamped ``t``)."""
        nxt = self._next_risk_ns
        if nxt is None:
            self._next_risk_ns = (t // self._risk_ns + 1) * self._risk_ns
            return
        while nxt <= t:
            self._next_risk_ns = nxt + self._risk_ns
            self._evaluate_risk(nxt)
            if self.risk is None:
                return
            nxt = self._next_risk_ns

    def _evaluate_risk(self, now_ns: int) -> None:
        risk = self.risk
        assert risk is not None
        strategy = self.strategy
        d = strategy.last_decision
        # what the rules read of the core's state (the strategy core's risk_state; a baseline's whole state)
        view = strategy.risk_state() if hasattr(strategy, "risk_state") else strategy.state()
        started, cleared, trips = risk.evaluate(now_ns, view, d.inputs if d else {})
        self._risk_outcome(now_ns, started, cleared, trips)

    def _risk_outcome(self, now_ns: int, started: list[RuleTrip], cleared: list[str], trips: list[RuleTrip]) -> None:
        """Record what one evaluation started and cleared, latch halt/reduce, and set the ``"risk"`` mode."""
        sink = self.sink
        latched = self._modes.get("latched", Mode.RUNNING)
        for t in started:
            self.result.risk_events.append(t)
            if sink is not None:
                sink.risk_event(now_ns, t.rule, str(t.action), t.to_dict()["values"], t.message)
            if t.action is RuleAction.HALT or t.action is RuleAction.REDUCE:  # they latch; pull_quotes does not
                latched = max(latched, Mode.of_rule(t.action))
        for name in cleared:
            self.result.risk_cleared.append((now_ns, name))
            if sink is not None:
                sink.risk_event(now_ns, name, "cleared", {}, f"{name} no longer tripping")
        if latched is not Mode.RUNNING:
            self._modes["latched"] = latched
        pulling = bool(trips) and any(t.action is RuleAction.PULL_QUOTES for t in trips)
        self.set_mode("risk", Mode.of_rule(RuleAction.PULL_QUOTES) if pulling else Mode.RUNNING, now_ns, "risk rules")
        if self.report is not None:
            for t in started:
                if t.action is RuleAction.HALT or t.action is RuleAction.REDUCE:
                    self.report(t)

    # --- internals ------------------------------------------------------------------------------
    def _on_mark_price(self, t: int, event: MarkPrice) -> None:
        """A mark-price update: when it shows that the settlement the previous one announced has passed, the
        announced rate is paid on the position (the ledger's funding part; :mod:`apps.engine.accounting.funding`)."""
        paid = self._funding.on_mark(event.ts_exch_ns, t, event.funding_rate, event.next_funding_ns)
        if paid is not None:
            self.ledger.on_funding(t, paid.rate)

    def _update_mid(self, t: int, ts_exch_ns: int = 0) -> None:
        """Tell the ledger about a mid change at local time ``t``, with the venue's time of it: the ledger values
        each fill at the mid in force at the fill's venue time (the paper venue's default clock is local time;
        a venue on the exchange clock stamps fills with exchange times)."""
        book = self._book
        bb = book.best_tick(Side.BUY)
        ba = book.best_tick(Side.SELL)
        if bb is None or ba is None or bb >= ba:
            return
        mid = (bb + ba) * self._tick * 0.5
        if mid != self.ledger.mid:
            venue_t = ts_exch_ns if self._venue_exchange_clock and ts_exch_ns > 0 else t
            self.ledger.on_mid(t, mid, venue_t)

    def _handle(self, events: list[OrderEvent]) -> None:
        strategy, ledger, sink, result, risk = self.strategy, self.ledger, self.sink, self.result, self.risk
        for ev in events:
            result.stats.order_events += 1
            cls = type(ev)
            if cls is Fill:
                if not ledger.on_fill(ev):
                    continue  # a venue delivered this fill before: it must not count twice anywhere
                result.fills.append(ev)
                q = abs(ledger.position)
                if q > result.max_abs_inventory:
                    result.max_abs_inventory = q
            elif cls is OrderReject and risk is not None and not ev.reason.startswith(BLOCKED):
                risk.on_reject(ev.ts_local_ns)
            actions = strategy.on_event(ev)
            if sink is not None:
                # after the strategy saw it, so the recorded order state includes it
                sink.order_event(ev, strategy.tracker.get(ev.client_order_id))
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
        self._route(ts_ns, actions)

    def _route(self, ts_ns: int, actions: list[Action]) -> None:
        """Send actions through the gateway: all of them while it runs, else what its mode lets through (the rest
        is recorded as blocked)."""
        strategy = self.strategy
        gateway = self.gateway
        if gateway.mode is Mode.RUNNING:
            self._send(ts_ns, actions, [])
            return
        allowed, blocked = gateway.split(actions, strategy.tracker.position)
        if blocked and self.sink is not None and self._blocked_recorded_for is not gateway.mode:
            # the strategy re-proposes its quotes on every event while the gateway is closed: record the first
            # block after each mode change, count the rest
            self._blocked_recorded_for = gateway.mode
            a, reason = blocked[0]
            self.sink.blocked(ts_ns, a, reason)
        self._send(ts_ns, allowed, blocked)

    def _send(self, ts_ns: int, allowed: list[Action], blocked: list[tuple[Action, str]]) -> None:
        stats = self.result.stats
        out: list[OrderEvent] = []
        if allowed:
            stats.actions += len(allowed)
            if self.risk is not None:
                n_place = sum(isinstance(a, PlaceOrder) for a in allowed)
                self.risk.on_sent(ts_ns, n_place, sum(isinstance(a, (CancelOrder, CancelAll)) for a in allowed))
            sink = self.sink
            if sink is not None:
                get = self.strategy.tracker.get
                for a in allowed:
                    cid = getattr(a, "client_order_id", None)
                    sink.sent(ts_ns, a, get(cid) if cid is not None else None)
            out = self.venue.submit(allowed, ts_ns)
            stats.local_rejects += len(out)
        if blocked:
            stats.blocked += len(blocked)
            out = out + self.gateway.send([], blocked, ts_ns)
        if out:
            self._handle(out)

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

    def _snapshot(self, t: int) -> None:
        """Record the estimators at the latest grid point ≤ ``t`` (called before anything stamped ``t``, so what
        is recorded is what stood at that point); the first call only places the grid."""
        step = self._snap_ns
        point = t // step * step
        first = self._next_snap_ns == 0
        self._next_snap_ns = point + step
        sink = self.sink
        if first or sink is None:
            return
        readings = estimator_readings(self.strategy, point)
        if readings:
            sink.estimator_snapshot(point, readings)

    def _take_sample(self, ts_ns: int) -> None:
        ledger = self.ledger
        if not math.isfinite(ledger.mid):
            return
        pnl = self.result.pnl
        if pnl and pnl[-1].ts_ns == ts_ns:
            return
        pnl.append(ledger.snapshot(ts_ns))
        book = self._book
        bb, ba = book.best_tick(Side.BUY), book.best_tick(Side.SELL)
        if bb is None or ba is None or bb >= ba:
            return
        tick = self._tick
        mid = ledger.mid
        d = self.strategy.last_decision
        bid = d.bid_px if d is not None else None
        ask = d.ask_px if d is not None else None
        # round(x, 6) formats x in decimal (~1 µs); a whole number of ticks, the usual case, is its own rounding
        bid_ticks = ask_ticks = None
        if bid is not None:
            bid_ticks = bb - bid / tick
            if not bid_ticks.is_integer():
                bid_ticks = round(bid_ticks, 6)
        if ask is not None:
            ask_ticks = ask / tick - ba
            if not ask_ticks.is_integer():
                ask_ticks = round(ask_ticks, 6)
        self.result.samples.append(
            QuoteSample(  # positional, in field order: ts_ns, mid, market and quoted spreads, bid and ask distances
                ts_ns,
                mid,
                (ba - bb) * tick / mid * 1e4,
                (ask - bid) / mid * 1e4 if bid is not None and ask is not None else None,
                bid_ticks,
                ask_ticks,
            )
        )


_compiled_driver = compiled.load("apps.engine.simulation._backtest")

if _compiled_driver is not None:

    class EngineLoop(_compiled_driver.EngineLoopBase, PyEngineLoop):
        """The driver with its per-event path compiled (``_backtest.EngineLoopBase``: the replay loop, the market
        event, the merge with the venue, the driver's clocks, the ledger's mid); the rest is ``PyEngineLoop``'s."""

else:
    EngineLoop = PyEngineLoop  # type: ignore[misc]

# which one runs: the compiled driver when built and MM_PURE_PYTHON is not set
DRIVER_COMPILED: bool = _compiled_driver is not None


def merge_by_local_time(*streams: Iterable[Any]) -> Iterator[Any]:
    """Merge several event streams, each already in local-time order, into one (stable across streams)."""
    import heapq

    # ties go to the earlier stream; within a stream the order is kept
    yield from heapq.merge(*streams, key=_local_ts)


def _local_ts(event: Any) -> int:
    return event.ts_local_ns
