"""The quoting loop: a wall-clock shell around the engine's one driver (lease, heartbeat, control poll, publish).

Everything between a market event and a recorded row (risk rules → strategy core → gateway → venue → order
events → ledger → sink) is :class:`apps.engine.simulation.backtest.EngineLoop`, the same driver a backtest runs;
this shell hands it a clock (``step_until(events, now)`` once per step), a feed (the simulator or a recording
re-stamped to now), the paper venue and the recording sink, and tells it the operator's mode.

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

import dataclasses
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import DatabaseError, connection

from apps.engine.core import StrategyCore, StrategyParams
from apps.engine.execution.venue import Account, Feed, Venue
from apps.engine.market.events import MarkPrice
from apps.engine.risk.gateway import Mode
from apps.engine.risk.rules import RuleAction, RuleTrip
from apps.engine.risk.session import SessionRisk, build_risk_engine, margin_inventory_cap
from apps.engine.simulation.backtest import BacktestConfig, EngineLoop
from apps.marketdata.writer import BatchedWriter
from apps.ops.counters import LoopMetrics
from apps.ops.logs import bind_log_context, unbind_log_context
from apps.trading import lease
from apps.trading.models import Order, TradingSession
from apps.trading.ports import ControlSnapshot, SessionControl, session_control
from apps.trading.recording import Recorder, RecorderSink, make_writer, recover_journals
from apps.trading.runtime import build_feed, build_session_config, build_venue
from apps.trading.selectors import position_from_fills

logger = logging.getLogger(__name__)
Status = TradingSession.Status
EXIT_STATUSES = (Status.STOPPED, Status.FAILED)
# the driver's measurement settings in a live session: no decision list kept in memory, no end-of-data cancel
# (the shell cancels on exit); the risk grid is the backtest's, so a replay and a backtest evaluate alike
LIVE = BacktestConfig(keep_decisions=False, cancel_at_end=False)


@dataclass
class LoopStats:
    steps: int = 0  # what the engine did is in ``loop.driver.result.stats``
    publishes: int = 0
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
        control: SessionControl | None = None,
    ) -> None:
        self.session_id = session_id
        self.owner = owner or f"loop-{uuid.uuid4().hex[:12]}"
        # the session's status and audit trail are the control layer's: the loop reads and reports through a port
        self.control = control or session_control(session_id, actor_label=self.owner)
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
        self.db_ok = True
        self._feed_resynced = False
        self._open_at_disconnect = 0
        self._next_publish_ns = 0
        self._next_heartbeat_ns = 0
        self._params_tried = 0  # the last parameter-set version this loop loaded (applied or refused)
        self.account_interval_ns = settings.MM_ACCOUNT_POLL_MS * 1_000_000
        self._next_account_ns = 0
        self._last_account_ns = 0
        self._reported_position: float | None = None
        self._funding_seen_ns = 0
        self.account_errors = 0
        self.margin_cap: float | None = None  # the leverage-aware bound on max_inventory the venue's margin allows

    # --- lifecycle ------------------------------------------------------------------------------

    def start(self) -> bool:
        """Take the lease and build the engine objects. False when another loop holds the session."""
        bind_log_context(session_id=self.session_id, loop=self.owner)  # on every log line of this thread
        if not lease.acquire(self.session_id, self.owner, self.lease_ttl_s):
            self.stats.outcome = "lease_held_elsewhere"
            self.control.note("loop.lease_held", "another loop holds this session's lease; not starting")
            unbind_log_context("session_id", "loop")
            return False
        if self.control.read().status == Status.CREATED:
            self.control.report("run", "quoting loop started")
        recovered = recover_dead_run(self.session_id, self.journal_dir, self.spill_dir, self.owner)
        if recovered:
            self.control.note("loop.recovered", "replayed the write-ahead journal of a dead loop", **recovered)
        self.session = TradingSession.objects.select_related("instrument").get(pk=self.session_id)
        now = self.clock()
        live = build_live_engine(self.session, self.writer, self.owner, now, self._report_trip)
        self.feed, self.core, self.sink, self.driver = live.feed, live.core, live.sink, live.driver
        self.sink_start_ns = now
        self.session_max_inventory = self.core.params.max_inventory  # the operator's bound; margin may lower it
        self.sink.metrics = LoopMetrics(self.clock)  # saved with the state, read by /metrics
        self.writer.start()
        if not getattr(self.feed, "connected", True):  # a live connector: no quote before its book is whole
            self.driver.set_mode("feed", Mode.PAUSED, now, "feed connecting: book not synchronised yet")
        self._next_heartbeat_ns = now + self.heartbeat_ns
        self.control.note("loop.start", "", **live.resumed)
        logger.info("session %s: loop %s started (%s)", self.session_id, self.owner, live.resumed)
        return True

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
            self.driver.emergency_cancel("loop crashed", self.clock())
            self._report_crash()
            raise
        finally:
            try:
                self.finish()
            finally:
                connection.close()  # this thread's connection; a long-lived worker must not leak them
        return self.stats.outcome

    def finish(self) -> None:
        if hasattr(self, "driver"):
            self.driver.stop(self.stats.outcome or "loop ended", self.clock())
        close = getattr(getattr(self, "feed", None), "close", None)
        if close is not None:  # a live connector's network thread ends with the loop
            close()
        self.writer.close()
        try:
            self._save_state()
            self._publish(force=True)
            lease.release(self.session_id, self.owner)
        except DatabaseError as exc:
            logger.warning("session %s: could not release the lease (%s); it will expire", self.session_id, exc)
        logger.info("session %s: loop %s finished (%s)", self.session_id, self.owner, self.stats.outcome)
        unbind_log_context("session_id", "loop")

    # --- one step -------------------------------------------------------------------------------

    def step(self) -> bool:
        """Advance to now. Returns False when the loop must end (stopped, failed, lease lost)."""
        now = self.clock()
        if not self._check_control(now):
            return False
        self._poll_account(now)
        events = self._poll_feed(now)
        self._feed_clock()
        self.driver.step_until(events, now)
        if self._feed_resynced:  # quoting re-opens after the core has applied the resync snapshot and top of book
            self._feed_resynced = False
            self.driver.set_mode("feed", Mode.RUNNING, now, "feed resynchronised")
        if self.feed.exhausted:
            self._finish_replay()
            return False
        if self.writer.overflowing:
            self.driver.emergency_cancel("recorder buffer overflow", self.clock())
            self._halt_self("recorder buffer overflow: database unavailable for too long")
            return self.db_ok
        self._publish()
        self.stats.steps += 1
        return True

    def _check_control(self, now: int) -> bool:
        try:
            snapshot = self.control.read()  # the session's status and the global switch, one snapshot
            status, global_state = snapshot.status, snapshot.global_state
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
            self.driver.set_mode("db", Mode.PAUSED, now, "database unavailable")
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
        control = max(Mode.of(status), Mode.of(global_state))
        self.driver.set_mode("control", control, now, f"session {status}, global {global_state}")
        self.driver.set_mode("db", Mode.RUNNING, now, "database available")
        if snapshot.params_version and snapshot.params_version not in (self.sink.params_version, self._params_tried):
            self._apply_params(now)
        return True

    def _apply_params(self, now: int) -> None:
        """An operator changed the parameters while we run: load the current version and hand it to the engine
        (strategy core and risk rules) before this step's events; the next recorded decision names the version.
        Every version was validated when written, so a refusal here (an estimator field, which only a restart
        applies) is noted once and the loop keeps quoting with the version it runs."""
        try:
            version, params = self.control.current_params()
            self._params_tried = version
            running = self.sink.params_version
            try:
                config = build_session_config(params, int(self.session.seed))
                engine, capital = build_risk_engine(config.risk, config.strategy.max_inventory)
                self.core.apply_params(config.strategy)
                self.session_max_inventory = config.strategy.max_inventory
            except ValueError as exc:
                logger.warning("session %s: parameters v%s not applied: %s", self.session_id, version, exc)
                self.control.note("params.not_applied", str(exc)[:500], version=version, running=running)
                return
            if self.driver.risk is not None:  # None only while flattening on a stop
                self.driver.risk.replace_rules(engine, capital, config.strategy.max_inventory)
            self.sink.params_version = version
            self.control.note("params.applied", "", version=version, previous=running, ts_ns=now)
        except DatabaseError as exc:  # tried again at the next step that reads the database
            logger.warning("session %s: parameters not loaded (%s)", self.session_id, exc)
            self._params_tried = 0

    def _poll_feed(self, now: int) -> list[Any]:
        """Market events up to now. A drop pulls quotes at once; the feed reconnects itself with back-off, and
        quoting re-opens at the end of the step that brought its resync snapshot and top of book to the core."""
        polled = self.feed.poll(now)
        if polled.dropped is not None:
            self._open_at_disconnect = len(self.core.tracker.open_orders())
            self.driver.set_mode("feed", Mode.PAUSED, now, f"feed disconnected: {polled.dropped}")
            self._record_feed(now, "feed_disconnect", "pull_quotes", polled.attempts, polled.dropped)
        elif polled.resynced:
            message = f"reconnected after {polled.attempts} attempt(s)"
            self._record_feed(now, "feed_reconnect", "cleared", polled.attempts, message)
            self._feed_resynced = True
        return polled.events

    def _feed_clock(self) -> None:
        """A live feed's measured clock offset goes to the clock-skew rule before this step's events."""
        measured = getattr(self.feed, "clock_offset_ns", None)
        risk = self.driver.risk
        if measured is None or risk is None:
            return
        offset = measured()
        if offset is not None:
            risk.on_clock(offset)

    def _poll_account(self, now: int) -> None:
        """Every ``MM_ACCOUNT_POLL_MS`` (default 5 s), on a venue that reports an account (:class:`Account`): its
        margin report to the margin rule, its funding rate to the reservation price's funding term, and each
        funding payment it made since the last poll to the P&L's funding part. The paper venue reports none of
        these, so nothing happens on it. A failed poll is logged and retried at the next interval.

        The margin rule runs only on a position the venue reports: while the venue says flat (or its report does
        not show a fresh fill yet) the rule is not applicable, and the poll comes early after the position moved,
        so that window is one tenth of the interval."""
        venue = self.driver.venue
        if not isinstance(venue, Account):
            return
        moved = self._reported_position is not None and self.core.tracker.position != self._reported_position
        if now < self._next_account_ns and not (
            moved and now >= self._last_account_ns + self.account_interval_ns // 10
        ):
            return  # due every interval, and soon (a tenth of it) after our position changed
        self._last_account_ns = now
        self._next_account_ns = now + self.account_interval_ns
        try:
            report = venue.margin_report()
            rate = venue.funding_rate()
            payments = venue.funding_since(self._funding_seen_ns or self.sink_start_ns)
        except Exception as exc:  # noqa: BLE001 - the venue's HTTP side may be down; quoting goes on
            self.account_errors += 1
            logger.warning("session %s: account poll failed: %s", self.session_id, exc)
            return
        self._reported_position = report.position if report is not None else None
        risk = self.driver.risk
        if report is not None and risk is not None:
            if report.position == 0:
                # flat at the venue (or a fill its report does not show yet): no position, no leverage to check
                risk.margin = None
            else:
                risk.on_margin(report.leverage, report.maint_margin_rate, report.wallet_balance, report.entry_price)
        mid = self.driver.ledger.mid
        if report is not None:
            self._size_for_margin(report, mid)
        if rate is not None and mid == mid:  # the term needs no settlement time: next_funding_ns 0 pays nothing
            self.driver.on_account(MarkPrice(now, now, mid, rate, 0, interval_s=venue.funding_interval_s))
        for payment in payments:
            self._funding_seen_ns = max(self._funding_seen_ns, payment.ts_exch_ns + 1)
            self.driver.on_account(payment)

    def _size_for_margin(self, report: Any, mid: float) -> None:
        """Leverage-aware sizing: the quoter's ``max_inventory`` is the session's, capped by what the account's
        margin carries (:func:`~apps.engine.risk.session.margin_inventory_cap` at the margin rule's
        ``max_margin_use``, its default when the rule is not configured). The core gets new parameters only when
        the bound moves by more than 5 % (or one lot), so a drifting mid does not re-decide on every poll."""
        from apps.engine.risk.rules import MarginParams

        rule = (
            next((r for r in self.driver.risk.engine.rules if r.kind == "margin"), None) if self.driver.risk else None
        )
        max_use = rule.params.max_margin_use if rule is not None else MarginParams().max_margin_use
        lot = self.core.lot_size
        cap = margin_inventory_cap(report.account_value, report.leverage, mid, max_use, lot)
        if cap is None:
            return
        self.margin_cap = cap
        configured = self.session_max_inventory
        target = max(min(configured, cap), lot)  # one lot at least: the quoter needs a positive bound
        current = self.core.params.max_inventory
        if abs(target - current) < max(0.05 * current, lot):
            return  # within 5 % (or a lot): the margin rule still guards the difference
        params = self.core.params
        try:
            self.core.apply_params(
                dataclasses.replace(params, quoter=dataclasses.replace(params.quoter, max_inventory=target))
            )
        except ValueError as exc:
            logger.warning("session %s: margin sizing not applied: %s", self.session_id, exc)
            return
        self.control.note("margin.sizing", "", max_inventory=target, configured=configured, margin_cap=cap)

    def feed_status(self) -> dict[str, Any] | None:
        """A live connector's connection state and message age (None for the simulator and replays)."""
        status = getattr(getattr(self, "feed", None), "status", None)
        return status() if status is not None else None

    def _record_feed(self, now: int, rule: str, action: str, attempts: int, message: str) -> None:
        values = {"attempts": attempts, "open_orders_at_disconnect": self._open_at_disconnect}
        self.sink.risk_event(now, rule, action, values, message)

    def _report_trip(self, trip: RuleTrip) -> None:
        """A halt/reduce rule tripped in the driver (which latched it already): make it the session's status."""
        if not self.db_ok:
            return
        event = "halt" if trip.action is RuleAction.HALT else "reduce"
        try:
            self.control.report(event, trip.message, actor_label=f"risk:{trip.rule}")
        except ValueError as exc:  # the table refuses it from the current status (e.g. already halted)
            logger.info("session %s: rule %s: %s", self.session_id, trip.rule, exc)

    # --- emergency paths ----------------------------------------------------------------------

    def _flatten_if_asked(self) -> None:
        """On a stop with ``flatten``: close the position with IOC orders no worse than the slippage bound."""
        asked = self.control.flatten_request()
        if asked is None:
            return
        order = self.driver.flatten(float(asked), f"{self.core.id_prefix}-flatten-{self.stats.steps}", self.clock())
        if order is None:
            return
        deadline = time.monotonic() + 3.0
        while time.monotonic() < deadline:
            tracked = self.core.tracker.get(order.client_order_id)
            if tracked is not None and tracked.status.is_terminal:
                break
            time.sleep(self.interval_s)
            now = self.clock()
            self.driver.step_until(self._poll_feed(now), now)
        self.driver.end_flatten(order, self.clock())

    def _halt_self(self, reason: str) -> None:
        try:
            self.control.report("halt", reason)
            self.stats.outcome = "halted_by_loop"
        except DatabaseError:
            logger.error("session %s: %s, and the database is unavailable to record the halt", self.session_id, reason)
        except ValueError as exc:  # already halted or stopped
            logger.info("session %s: halt not recorded: %s", self.session_id, exc)

    def _finish_replay(self) -> None:
        self.stats.outcome = "replay_finished"
        try:
            self.control.report("finish", "replay finished")
        except ValueError as exc:  # stopped meanwhile
            logger.info("session %s: replay finished: %s", self.session_id, exc)

    def _report_crash(self) -> None:
        """A crash fails a session that was quoting; a paused or halted one keeps its status for the operator."""
        try:
            if self.control.read().status in (Status.RUNNING, Status.REDUCING):
                self.control.report("fail", "quoting loop crashed; see worker log")
        except (DatabaseError, ValueError) as exc:
            logger.error("session %s: crash not recorded: %s", self.session_id, exc)

    def _save_state(self) -> None:
        if hasattr(self, "core"):
            state = self.core.state()
            if self.sink.metrics is not None:
                state["metrics"] = self.sink.metrics.snapshot()
            feed = self.feed_status()
            if feed is not None:
                state["feed"] = feed
            TradingSession.objects.filter(pk=self.session_id).update(last_state=state)

    def _publish(self, force: bool = False) -> None:
        if not hasattr(self, "core"):
            return
        now = self.clock()
        if not force and now < self._next_publish_ns:
            return
        self._next_publish_ns = now + self.publish_interval_ns
        # what the gateway obeys, global switch included
        status = self.control.shown_status(ControlSnapshot(self.status, self.global_state))
        if not self.db_ok:
            status = f"{status} (database unavailable)"
        try:
            # one complete JSON snapshot (latest wins); handing it over never waits on Redis or a browser
            from apps.live.snapshot import attach_tape, build_snapshot

            tape = attach_tape(self.driver)  # wraps the driver's sink once: recent trades, fills, risk events
            snapshot = build_snapshot(
                self.core, self.driver, tape, session_id=self.session_id, status=status, feed=self.feed_status()
            )
            self.publish(self.session_id, snapshot, status)
            self.stats.publishes += 1
        except Exception as exc:  # noqa: BLE001 - a broken broadcast (Redis down) must not stop quoting or cancelling
            logger.warning("session %s: publish failed: %s", self.session_id, exc)


def recover_dead_run(session_id: int, journal_dir: Any, spill_dir: Any, owner: str) -> dict[str, Any] | None:
    """Replay a dead loop's write-ahead journal; its last order states came back with it, and none of those orders
    exists any more (the paper venue's book died with its process), so they are closed. What was replayed, or None."""
    recovered = recover_journals(journal_dir, spill_dir, owner)
    if recovered:
        Order.objects.filter(session_id=session_id, status__in=Order.OPEN_STATUSES).update(
            status=Order.Status.CANCELLED
        )
    return recovered


@dataclass
class LiveEngine:
    """What one run of a live session drives: its feed, strategy core, recording sink and the one driver."""

    feed: Feed
    core: StrategyCore
    sink: RecorderSink
    driver: EngineLoop
    resumed: dict[str, Any]  # where a restarted loop continues from (position rebuilt from fills), for the audit


def build_live_engine(
    session: TradingSession, writer: BatchedWriter, owner: str, now_ns: int, report: Callable[[RuleTrip], None]
) -> LiveEngine:
    """The engine objects of one loop run, from the session's stored parameters; the driver starts HALTED (nothing
    is sent before the shell's first control read)."""
    config = build_session_config(session.params, int(session.seed))
    feed, venue_cfg, tick, lot = build_feed(config, session.instrument, now_ns)
    try:
        venue = build_venue(config, feed, venue_cfg)
        return _assemble(session, writer, owner, now_ns, report, config, feed, venue, tick, lot)
    except BaseException:
        if hasattr(feed, "close"):  # a live connector's thread must not outlive a run that never started
            feed.close()
        raise


def _assemble(
    session: TradingSession,
    writer: BatchedWriter,
    owner: str,
    now_ns: int,
    report: Callable[[RuleTrip], None],
    config: Any,
    feed: Feed,
    venue: Venue,
    tick: float,
    lot: float,
) -> LiveEngine:
    run = owner.removeprefix("loop-")[:6]
    q, cash, fees, n = position_from_fills(session.pk)
    core = StrategyCore(
        config.strategy,
        tick_size=tick,
        lot_size=lot,
        id_prefix=f"s{session.pk}-{run}",
        initial_position=q,
        initial_cash=cash,
        initial_fees=fees,
        initial_fills=n,
    )
    engine, capital = build_risk_engine(config.risk, config.strategy.max_inventory)
    recorder = Recorder(writer, session.pk, session.instrument_id, trade_id_prefix=f"{run}-")
    # a replay's market data is already stored (or in its files): record only what we did
    sink = RecorderSink(
        recorder, record_market=config.replay is None, log_fills=True, params_version=int(session.params_version)
    )
    driver = EngineLoop(
        core,
        venue,
        LIVE,
        sink=sink,
        risk=SessionRisk(engine, capital, config.strategy.max_inventory),
        report=report,
        mode=Mode.HALTED,
    )
    resumed = {
        "resumed_position": q,
        "resumed_cash": cash,
        "fills_before": n,
        "sim_start_ns": now_ns,
        "trade_id_prefix": f"{run}-",
    }
    return LiveEngine(feed, core, sink, driver, resumed)


__all__ = ["LiveEngine", "QuotingLoop", "StrategyParams", "build_live_engine", "recover_dead_run"]
