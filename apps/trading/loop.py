"""The quoting loop: simulator feed → strategy core → order gateway → paper venue, recorded and published.

Written as small step methods so a test can drive it one step at a time. The loop runs only while it holds the
session's lease. On every step it re-reads the session's status and the global kill switch (one row each); the
most restrictive wins:

* RUNNING: quote normally.
* REDUCING: only orders that reduce |inventory| pass the gateway.
* PAUSED / HALTED: every open order is cancelled at once (the emergency path, no latency), nothing new is sent;
  the loop keeps reading the market, recording and publishing, so an operator can resume / re-arm.
* STOPPED / FAILED: cancel everything and exit.

If PostgreSQL cannot be reached the loop cannot see the kill switch, so it pulls its quotes, keeps buffering
market data in the writer (which retries and spills), and resumes when the database answers; if the buffer would
overflow, it halts the session.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import DatabaseError, connection
from django.db.models import Case, F, FloatField, Subquery, Sum, When
from django.utils import timezone

from apps.engine.core import StrategyCore, StrategyParams
from apps.engine.execution.paper import PaperVenue
from apps.engine.market.events import (
    Action,
    BestBidAsk,
    CancelAll,
    CancelOrder,
    Fill,
    ModifyOrder,
    OrderAck,
    OrderReject,
    PlaceOrder,
    Side,
    Trade,
)
from apps.engine.market.feeds import Backoff, FeedDisconnectedError, ReplayingFeed, SimulatedFeed
from apps.engine.simulation.simulator import MarketSimulator
from apps.marketdata.writer import BatchedWriter
from apps.trading import lease
from apps.trading.gateway import Mode, OrderGateway
from apps.trading.models import FillRecord, Order, TradingSession
from apps.trading.recording import Recorder, make_writer, recover_journals
from apps.trading.runtime import build_session_config

logger = logging.getLogger(__name__)
Status = TradingSession.Status
EXIT_STATUSES = (Status.STOPPED, Status.FAILED)


@dataclass
class LoopStats:
    steps: int = 0
    market_events: int = 0
    order_events: int = 0
    actions: int = 0
    decisions_recorded: int = 0
    publishes: int = 0
    emergency_cancels: int = 0
    db_outages: int = 0
    outcome: str = ""


class QuotingLoop:
    def __init__(
        self,
        session_id: int,
        *,
        owner: str | None = None,
        clock: Callable[[], int] = time.time_ns,
        publish: Callable[[int, dict[str, Any], str], None] | None = None,
        writer: BatchedWriter | None = None,
    ) -> None:
        self.session_id = session_id
        self.owner = owner or f"loop-{uuid.uuid4().hex[:12]}"
        self.clock = clock
        if publish is None:
            from apps.live.broadcast import publish_session_state

            publish = publish_session_state
        self.publish = publish
        self.interval_s = settings.MM_LOOP_INTERVAL_MS / 1000
        self.publish_interval_ns = settings.MM_PUBLISH_INTERVAL_MS * 1_000_000
        self.lease_ttl_s = float(settings.MM_LEASE_TTL_S)
        self.heartbeat_ns = int(min(1.0, self.lease_ttl_s / 4) * 1e9)
        # spill files and write-ahead journals are per session: a restarted loop for the same session replays
        # what a dead one left
        self.spill_dir = settings.MM_SPILL_DIR / f"session-{session_id}"
        self.journal_dir = settings.MM_JOURNAL_DIR / f"session-{session_id}"
        self.writer = writer or make_writer(
            settings.MM_WRITER_FLUSH_MS / 1000, self.spill_dir, self.journal_dir / f"{self.owner}.journal", self.owner
        )
        self.stats = LoopStats()
        self.status: str = Status.CREATED
        self.global_state: str = "armed"
        self.control_mode = Mode.HALTED  # from PostgreSQL: session status and the global switch
        self.risk_mode = Mode.RUNNING  # from the automatic rules that pull quotes without latching
        self.feed_mode = Mode.RUNNING  # PAUSED while the feed is down or not yet resynchronised
        self.db_ok = True
        self._next_publish_ns = 0
        self._next_heartbeat_ns = 0
        self._seen_fill_ids: set[str] = set()
        self._blocked_recorded_for: Mode | None = None

    # --- lifecycle ------------------------------------------------------------------------------

    def start(self) -> bool:
        """Take the lease and build the engine objects. False when another loop holds the session."""
        from apps.control.models import AuditEvent

        if not lease.acquire(self.session_id, self.owner, self.lease_ttl_s):
            self.stats.outcome = "lease_held_elsewhere"
            if TradingSession.objects.filter(pk=self.session_id).exists():
                AuditEvent.objects.create(
                    actor_label=self.owner,
                    action="loop.lease_held",
                    session_id=self.session_id,
                    reason="another loop holds this session's lease; not starting",
                )
            return False
        recovered = recover_journals(self.journal_dir, self.spill_dir, self.owner)
        if recovered:
            # a dead run's last order states came back with its journal; none of those orders exists any more
            Order.objects.filter(session_id=self.session_id, status__in=Order.OPEN_STATUSES).update(
                status=Order.Status.CANCELLED
            )
            AuditEvent.objects.create(
                actor_label=self.owner,
                action="loop.recovered",
                session_id=self.session_id,
                reason="replayed the write-ahead journal of a dead loop",
                detail=recovered,
            )
        session = TradingSession.objects.select_related("instrument").get(pk=self.session_id)
        self.session = session
        config = build_session_config(session.params, int(session.seed))
        now = self.clock()
        tick, lot, venue_cfg = config.sim.tick_size, config.sim.lot_size, config.venue
        if config.replay is not None:
            # a recorded feed through the live loop: the instrument's grid, events re-stamped to now
            import dataclasses

            tick, lot = session.instrument.tick_size, session.instrument.lot_size
            venue_cfg = dataclasses.replace(config.venue, tick_size=tick, lot_size=lot)
            self.feed = ReplayingFeed(_load_replay(config.replay, session.instrument_id), now)
        else:
            sim_params = config.sim.__class__(**{**_asdict(config.sim), "start_ts_ns": now})
            self.sim = MarketSimulator(sim_params, seed=config.seed)
            self.feed = SimulatedFeed(self.sim, now, config.outages)
        self.backoff = Backoff(config.backoff, seed=config.seed)
        self._next_connect_ns = 0
        self._open_at_disconnect = 0
        self.venue = PaperVenue(venue_cfg, seed=config.seed)
        self.gateway = OrderGateway(self.venue)
        run = self.owner.removeprefix("loop-")[:6]
        self.core = StrategyCore(
            config.strategy,
            tick_size=tick,
            lot_size=lot,
            id_prefix=f"s{session.pk}-{run}",
        )
        q, cash, fees, n = self._position_from_fills()
        self.core.tracker.position, self.core.tracker.cash, self.core.tracker.fees_paid = q, cash, fees
        self.core.fills = n
        from apps.engine.risk.session import SessionRisk, build_risk_engine

        engine, capital = build_risk_engine(config.risk, config.strategy.max_inventory)
        self.risk = SessionRisk(engine, capital, config.strategy.max_inventory)
        self.recorder = Recorder(self.writer, session.pk, session.instrument_id, trade_id_prefix=f"{run}-")
        self.writer.start()
        self._next_heartbeat_ns = now + self.heartbeat_ns
        AuditEvent.objects.create(
            actor_label=self.owner,
            action="loop.start",
            session_id=self.session_id,
            detail={
                "resumed_position": q,
                "resumed_cash": cash,
                "fills_before": n,
                "sim_start_ns": now,
                "trade_id_prefix": f"{run}-",
            },
        )
        logger.info(
            "session %s: loop %s started (position %s from %d earlier fills)", self.session_id, self.owner, q, n
        )
        return True

    def _position_from_fills(self) -> tuple[float, float, float, int]:
        """Position, cash and fees rebuilt from every recorded fill: a restarted loop continues, it does not reset."""
        signed = Case(When(side__gt=0, then=F("size")), default=-F("size"), output_field=FloatField())
        flow = Case(
            When(side__gt=0, then=-F("price") * F("size")), default=F("price") * F("size"), output_field=FloatField()
        )
        agg = FillRecord.objects.filter(session_id=self.session_id).aggregate(
            q=Sum(signed), cash=Sum(flow), fees=Sum("fee")
        )
        n = FillRecord.objects.filter(session_id=self.session_id).count()
        q = round(agg["q"] or 0.0, 12)
        fees = agg["fees"] or 0.0
        return q, (agg["cash"] or 0.0) - fees, fees, n

    def run(self, max_seconds: float | None = None) -> str:
        if not self.start():
            return self.stats.outcome
        deadline = time.monotonic() + max_seconds if max_seconds else None
        try:
            while self.step():
                if deadline is not None and time.monotonic() >= deadline:
                    self.stats.outcome = "time_limit"
                    break
                time.sleep(self.interval_s)
        except Exception:
            logger.exception("session %s: loop crashed; cancelling orders", self.session_id)
            self.stats.outcome = "crashed"
            self._emergency_cancel("loop crashed")
            TradingSession.objects.filter(pk=self.session_id, status__in=(Status.RUNNING, Status.REDUCING)).update(
                status=Status.FAILED, status_reason="quoting loop crashed; see worker log"
            )
            raise
        finally:
            try:
                self.finish()
            finally:
                connection.close()  # this thread's connection; a long-lived worker must not leak them
        return self.stats.outcome

    def finish(self) -> None:
        self._emergency_cancel(self.stats.outcome or "loop ended")
        if hasattr(self, "core"):
            self.core.halt(self.stats.outcome or "loop ended")
        self.writer.close()
        try:
            self._save_state()
            self._publish(force=True)
            lease.release(self.session_id, self.owner)
        except DatabaseError as exc:
            logger.warning("session %s: could not release the lease (%s); it will expire", self.session_id, exc)
        logger.info("session %s: loop %s finished (%s)", self.session_id, self.owner, self.stats.outcome)

    # --- one step -------------------------------------------------------------------------------

    def step(self) -> bool:
        """Advance to now. Returns False when the loop must end (stopped, failed, lease lost)."""
        now = self.clock()
        if not self._check_control(now):
            return False
        for event in self._poll_feed(now):
            self._on_market(event)
        self._deliver_venue_until(now, inclusive=True)
        self._handle_order_events(self.venue.advance(now))
        self._evaluate_risk(now)
        if isinstance(self.feed, ReplayingFeed) and self.feed.exhausted:
            self.stats.outcome = "replay_finished"
            TradingSession.objects.filter(pk=self.session_id).update(
                status=Status.STOPPED, status_reason="replay finished", ended_at=timezone.now()
            )
            return False
        if self.writer.overflowing:
            self._emergency_cancel("recorder buffer overflow")
            self._halt_self("recorder buffer overflow: database unavailable for too long")
            return self.db_ok
        self._publish()
        self.stats.steps += 1
        return True

    def _read_control(self) -> tuple[str, str]:
        """The session's status and the global switch's state in one query, so one snapshot: a global re-arm
        pauses the sessions it halted in the same transaction, and reading the two apart could see the switch
        open while the session still said running."""
        from apps.control.models import GlobalKillSwitch

        switch = GlobalKillSwitch.objects.filter(singleton=True).values("state")[:1]
        row = (
            TradingSession.objects.filter(pk=self.session_id)
            .annotate(global_state=Subquery(switch))
            .values_list("status", "global_state")
            .first()
        )
        if row is None:
            return Status.STOPPED, GlobalKillSwitch.State.ARMED
        return row[0], row[1] or GlobalKillSwitch.State.ARMED

    def _check_control(self, now: int) -> bool:
        try:
            status, global_state = self._read_control()
            if now >= self._next_heartbeat_ns:
                if not lease.renew(self.session_id, self.owner, self.lease_ttl_s):
                    self.stats.outcome = "lease_lost"
                    return False
                self._next_heartbeat_ns = now + self.heartbeat_ns
                self._save_state()
        except DatabaseError as exc:
            # Without the database we cannot see the kill switch: pull quotes, keep recording into the buffer.
            if self.db_ok:
                self.stats.db_outages += 1
                logger.warning("session %s: database unavailable (%s); quotes pulled", self.session_id, exc)
            self.db_ok = False
            connection.close()
            self._set_mode(Mode.PAUSED, "database unavailable")
            return True
        if not self.db_ok:
            logger.info("session %s: database back", self.session_id)
        self.db_ok = True
        self.status = status
        self.global_state = global_state
        if status in EXIT_STATUSES:
            self.stats.outcome = f"session_{status}"
            if status == Status.STOPPED:
                self._flatten_if_asked()
            return False
        self.control_mode = max(Mode.of(status if status != Status.CREATED else Status.RUNNING), Mode.of(global_state))
        self._set_mode(
            max(self.control_mode, self.risk_mode, self.feed_mode), f"session {status}, global {global_state}"
        )
        return True

    def _poll_feed(self, now: int) -> list[Any]:
        """Market events up to now. On a disconnect: pull quotes at once, then reconnect with exponential back-off
        and jitter; after a reconnect the feed's snapshot and top of book resynchronise the core before quoting."""
        if self.feed.connected:
            try:
                return self.feed.poll(now)
            except FeedDisconnectedError as exc:
                self.feed_mode = Mode.PAUSED
                self._open_at_disconnect = len(self.core.tracker.open_orders())
                self._emergency_cancel(f"feed disconnected: {exc}")
                self._next_connect_ns = now + int(self.backoff.next_delay_s() * 1e9)
                self._record_feed(now, "feed_disconnect", str(exc))
                return []
        if now < self._next_connect_ns:
            return []
        try:
            events = self.feed.connect(now)
        except FeedDisconnectedError as exc:
            delay = self.backoff.next_delay_s()
            self._next_connect_ns = now + int(delay * 1e9)
            logger.info("session %s: reconnect failed (%s); next try in %.2f s", self.session_id, exc, delay)
            return []
        self._record_feed(now, "feed_reconnect", f"reconnected after {self.backoff.attempts} attempt(s)")
        self.backoff.reset()
        # quoting re-opens at the end of this step, after the core has applied the resync snapshot and top of book
        self.feed_mode = Mode.RUNNING
        return events

    def _record_feed(self, now: int, rule: str, message: str) -> None:
        from apps.trading.models import RiskEventRecord
        from apps.trading.recording import ns_to_dt

        action = "pull_quotes" if rule == "feed_disconnect" else "cleared"
        try:
            RiskEventRecord.objects.create(
                session_id=self.session_id,
                ts=ns_to_dt(now),
                ts_ns=now,
                rule=rule,
                action=action,
                values={"attempts": self.backoff.attempts, "open_orders_at_disconnect": self._open_at_disconnect},
                message=message,
            )
        except DatabaseError as exc:
            logger.warning("session %s: could not record %s: %s", self.session_id, rule, exc)

    def _evaluate_risk(self, now: int) -> None:
        """Run the automatic rules. halt/reduce latch through the control services (audited, in PostgreSQL);
        pull_quotes holds quotes off only while the condition lasts; every episode is one risk-event row."""
        from apps.engine.risk.rules import RuleAction

        d = self.core.last_decision
        started, cleared, trips = self.risk.evaluate(now, self.core.state(), d.inputs if d else {})
        pulling = any(t.action is RuleAction.PULL_QUOTES for t in trips)
        self.risk_mode = Mode.PAUSED if pulling else Mode.RUNNING
        if started or cleared:
            self._record_risk(now, started, cleared)
        for t in started:
            if t.action in (RuleAction.HALT, RuleAction.REDUCE) and self.db_ok:
                from apps.control.services import Actor, ControlError, halt_session, reduce_session

                fn = halt_session if t.action is RuleAction.HALT else reduce_session
                try:
                    fn(Actor(label=f"risk:{t.rule}"), self.session_id, t.message)
                except ControlError as exc:
                    logger.info("session %s: rule %s: %s", self.session_id, t.rule, exc)
        self._set_mode(max(self.control_mode, self.risk_mode, self.feed_mode), "risk rules")

    def _record_risk(self, now: int, started: list[Any], cleared: list[str]) -> None:
        from apps.trading.models import RiskEventRecord
        from apps.trading.recording import ns_to_dt

        rows = [
            RiskEventRecord(
                session_id=self.session_id,
                ts=ns_to_dt(now),
                ts_ns=now,
                rule=t.rule,
                action=str(t.action),
                values=t.to_dict()["values"],
                message=t.message,
            )
            for t in started
        ]
        rows += [
            RiskEventRecord(
                session_id=self.session_id,
                ts=ns_to_dt(now),
                ts_ns=now,
                rule=name,
                action="cleared",
                values={},
                message=f"{name} no longer tripping",
            )
            for name in cleared
        ]
        try:
            RiskEventRecord.objects.bulk_create(rows)
        except DatabaseError as exc:
            logger.warning("session %s: could not record %d risk events: %s", self.session_id, len(rows), exc)

    def _set_mode(self, mode: Mode, why: str) -> None:
        previous = self.gateway.mode
        self.gateway.mode = mode
        if mode >= Mode.PAUSED and (previous < Mode.PAUSED or self.core.tracker.open_orders()):
            self._emergency_cancel(why)
        elif mode is Mode.REDUCING and previous is Mode.RUNNING:
            self._cancel_increasing()

    def _cancel_increasing(self) -> None:
        """Entering REDUCING: resting orders that would grow |inventory| are cancelled (the gateway blocks new ones)."""
        q = self.core.tracker.position
        growing = Side.BUY if q >= 0 else Side.SELL
        cancels: list[Action] = [CancelOrder(o.client_order_id) for o in self.core.tracker.open_orders_on(growing)]
        if cancels:
            self.core.tracker.on_actions(cancels)
            self._apply(cancels, max(self.clock(), self.core._now_ns))

    def _deliver_venue_until(self, t_ns: int, *, inclusive: bool) -> None:
        """Deliver every venue event due before ``t_ns`` at its own time, as the backtester does
        (apps.engine.simulation.backtest.EngineLoop), so results do not depend on when this loop wakes up."""
        while (n := self.venue.next_event_ns()) is not None and (n <= t_ns if inclusive else n < t_ns):
            self._handle_order_events(self.venue.advance(n))

    def _on_market(self, event: Any) -> None:
        self.stats.market_events += 1
        self._deliver_venue_until(event.ts_local_ns, inclusive=False)
        self.risk.on_market(event.ts_local_ns, event.ts_exch_ns)
        if isinstance(self.feed, ReplayingFeed):
            pass  # replayed market data is already stored (or in its files): record only what we did
        elif isinstance(event, Trade):
            self.recorder.trade(event)
        elif isinstance(event, BestBidAsk):
            self.recorder.quote(event)
        self._handle_order_events(self.venue.on_market(event))
        self._apply(self.core.on_event(event), event.ts_local_ns)

    def _handle_order_events(self, events: list[Any]) -> None:
        for ev in events:
            self.stats.order_events += 1
            if isinstance(ev, Fill):
                if ev.fill_id in self._seen_fill_ids:
                    continue
                self._seen_fill_ids.add(ev.fill_id)
                # one log line per fill: an independent record to check "no fill lost" against after a crash
                logger.info(
                    "session %s fill %s/%s side=%+d px=%s size=%s",
                    self.session_id,
                    ev.client_order_id,
                    ev.fill_id,
                    int(ev.side),
                    ev.price,
                    ev.size,
                )
                self.recorder.fill(ev)
                self.recorder.order_event(
                    ev.ts_local_ns,
                    ev.client_order_id,
                    "fill",
                    fill_id=ev.fill_id,
                    price=ev.price,
                    size=ev.size,
                    fee=ev.fee,
                )
            elif isinstance(ev, OrderAck):
                self.recorder.order_event(
                    ev.ts_local_ns, ev.client_order_id, f"ack_{ev.status}", price=ev.price, size=ev.size
                )
            elif isinstance(ev, OrderReject):
                self.recorder.order_event(ev.ts_local_ns, ev.client_order_id, "reject", reason=ev.reason)
                if not ev.reason.startswith("blocked by gateway"):
                    self.risk.on_reject(ev.ts_local_ns)
            actions = self.core.on_event(ev)
            self._record_order(ev.ts_local_ns, ev.client_order_id)
            self._apply(actions, ev.ts_local_ns)

    def _apply(self, actions: list[Action], ts_ns: int) -> None:
        if self.core.decisions_changed and self.core.last_decision is not None:
            self.recorder.decision(self.core.last_decision)
            self.stats.decisions_recorded += 1
            self.core.decisions_changed = False
        if not actions:
            return
        allowed, blocked = self.gateway.split(actions, self.core.tracker.position)
        self.stats.actions += len(allowed)
        self.risk.on_sent(
            ts_ns,
            sum(isinstance(a, PlaceOrder) for a in allowed),
            sum(isinstance(a, (CancelOrder, CancelAll)) for a in allowed),
        )
        for a in allowed:
            if isinstance(a, PlaceOrder):
                self.recorder.order_event(
                    ts_ns, a.client_order_id, "place", side=int(a.side), price=a.price, size=a.size, tif=a.tif
                )
                self._record_order(ts_ns, a.client_order_id)
            elif isinstance(a, (CancelOrder, ModifyOrder)):
                self.recorder.order_event(ts_ns, a.client_order_id, type(a).__name__.lower())
                self._record_order(ts_ns, a.client_order_id)
            elif isinstance(a, CancelAll):
                self.recorder.order_event(ts_ns, "*", "cancel_all", reason=a.reason)
        for a, reason in blocked:
            # the core re-proposes its quotes on every event while the switch is closed: record the first block
            # after each mode change, count the rest
            if self._blocked_recorded_for is not self.gateway.mode:
                self._blocked_recorded_for = self.gateway.mode
                cid = getattr(a, "client_order_id", "*")
                self.recorder.order_event(
                    ts_ns,
                    cid,
                    "blocked",
                    action=type(a).__name__,
                    reason=reason,
                    note="further blocked actions in this mode are counted, not recorded",
                )
        self._handle_order_events(self.gateway.send(allowed, blocked, ts_ns))

    def _record_order(self, ts_ns: int, client_order_id: str) -> None:
        order = self.core.tracker.get(client_order_id)
        if order is not None:
            self.recorder.order_state(ts_ns, order)

    # --- emergency paths ----------------------------------------------------------------------

    def _emergency_cancel(self, reason: str) -> None:
        """Cancel at the venue at once (no latency) and record the result; the writer flushes right away."""
        if not hasattr(self, "core"):
            return
        now = max(self.clock(), self.core._now_ns)
        events = self.venue.cancel_all_now(now)
        if not events and not self.core.tracker.open_orders():
            return
        self.stats.emergency_cancels += 1
        self.recorder.order_event(now, "*", "emergency_cancel_all", reason=reason)
        self._handle_order_events(events)
        for order in self.core.tracker.forget_live_orders():
            # the venue's book is empty now: whatever is still live on our side was in flight and is gone
            self.recorder.order_state(now, order)
        self.writer.flush_soon()

    def _flatten_if_asked(self) -> None:
        """On a stop with ``flatten``: close the position with IOC orders no worse than the slippage bound."""
        asked = (
            TradingSession.objects.filter(pk=self.session_id, flatten_requested=True)
            .values_list("flatten_max_slippage_bps", flat=True)
            .first()
        )
        if asked is None:
            return
        self._emergency_cancel("stop with flatten")
        self.core.halt("stop with flatten")  # the core proposes nothing more; only the flatten order goes out
        bbo, q = self.core.bbo, self.core.tracker.position
        lot = self.core.lot_size
        size = round(int(abs(q) / lot + 1e-9) * lot, 12)
        if bbo is None or size <= 0:
            return
        slip = float(asked) / 1e4
        side = Side.SELL if q > 0 else Side.BUY
        limit = bbo.bid_px * (1 - slip) if side is Side.SELL else bbo.ask_px * (1 + slip)
        from apps.engine.execution.orders import round_price

        limit = round_price(limit, self.core.tick_size, Side.BUY if side is Side.SELL else Side.SELL)
        order = PlaceOrder(f"{self.core.id_prefix}-flatten-{self.stats.steps}", side, limit, size, tif="IOC")
        self.gateway.mode = Mode.REDUCING
        self.core.tracker.on_actions([order])
        self._apply([order], max(self.clock(), self.core._now_ns))
        deadline = time.monotonic() + 3.0
        while time.monotonic() < deadline:
            tracked = self.core.tracker.get(order.client_order_id)
            if tracked is not None and tracked.status.is_terminal:
                break
            time.sleep(self.interval_s)
            now = self.clock()
            for event in self._poll_feed(now):
                self._on_market(event)
            self._handle_order_events(self.venue.advance(now))
        self.gateway.mode = Mode.HALTED
        self.recorder.order_event(
            self.clock(), order.client_order_id, "flatten_done", position_after=self.core.tracker.position, limit=limit
        )

    def _halt_self(self, reason: str) -> None:
        from apps.control.services import Actor, halt_session

        try:
            halt_session(Actor(label="quoting-loop"), self.session_id, reason)
            self.stats.outcome = "halted_by_loop"
        except DatabaseError:
            logger.error("session %s: %s, and the database is unavailable to record the halt", self.session_id, reason)

    def _save_state(self) -> None:
        if hasattr(self, "core"):
            TradingSession.objects.filter(pk=self.session_id).update(last_state=self.core.state())

    def _publish(self, force: bool = False) -> None:
        if not hasattr(self, "core"):
            return
        now = self.clock()
        if not force and now < self._next_publish_ns:
            return
        self._next_publish_ns = now + self.publish_interval_ns
        from apps.control.selectors import effective_status

        status = effective_status(self.status, self.global_state)  # what the gateway obeys, global switch included
        if not self.db_ok:
            status = f"{status} (database unavailable)"
        try:
            self.publish(self.session_id, self.core.state(), status)
            self.stats.publishes += 1
        except Exception as exc:  # noqa: BLE001 - a broken broadcast (Redis down) must not stop quoting or cancelling
            logger.warning("session %s: publish failed: %s", self.session_id, exc)


def _load_replay(replay: dict[str, Any], instrument_id: int) -> list[Any]:
    """The recorded market events a replay session plays: parsed files, or a stored time range."""
    from apps.engine.market.events import BestBidAsk, DepthSnapshot, DepthUpdate, Trade

    market = (Trade, BestBidAsk, DepthUpdate, DepthSnapshot)
    limit = int(replay.get("max_events", 10**7))
    out: list[Any] = []
    if "files" in replay:
        from apps.marketdata.parsers import parse_file

        for path in replay["files"]:
            out.extend(e for e in parse_file(replay["format"], path) if isinstance(e, market))
        out.sort(key=lambda e: e.ts_local_ns)
    else:
        from apps.marketdata.selectors import iter_events

        out = [e for e in iter_events(instrument_id, replay["start_ns"], replay["end_ns"]) if isinstance(e, market)]
    return out[:limit]


def _asdict(obj: Any) -> dict[str, Any]:
    import dataclasses

    return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}


__all__ = ["QuotingLoop", "StrategyParams"]
