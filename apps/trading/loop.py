"""The quoting loop: simulator (or replay) feed → strategy core → paper venue, recorded and published.

Written as small step methods so a test can drive it one step at a time. The loop runs only while it holds
the session's lease; it re-reads the session's status (the kill switch) on every step, so a HALTED or STOPPED
session has its orders cancelled within one loop interval.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db import connection

from apps.engine.core import StrategyCore
from apps.engine.events import (
    Action,
    BestBidAsk,
    CancelAll,
    CancelOrder,
    Fill,
    ModifyOrder,
    OrderAck,
    OrderReject,
    PlaceOrder,
    Trade,
)
from apps.engine.paper import PaperVenue
from apps.engine.simulator import MarketSimulator
from apps.marketdata.writer import BatchedWriter
from apps.trading import lease
from apps.trading.models import TradingSession
from apps.trading.recording import Recorder, make_writer
from apps.trading.runtime import build_session_config

logger = logging.getLogger(__name__)
Status = TradingSession.Status


@dataclass
class LoopStats:
    steps: int = 0
    market_events: int = 0
    order_events: int = 0
    actions: int = 0
    decisions_recorded: int = 0
    publishes: int = 0
    outcome: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


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
        self.writer = writer or make_writer(settings.MM_WRITER_FLUSH_MS / 1000, None)
        self.stats = LoopStats()
        self.status = Status.CREATED
        self._next_publish_ns = 0
        self._next_heartbeat_ns = 0
        self._seen_fill_ids: set[str] = set()

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
        AuditEvent.objects.create(actor_label=self.owner, action="loop.start", session_id=self.session_id)
        session = TradingSession.objects.get(pk=self.session_id)
        self.session = session
        config = build_session_config(session.params, int(session.seed))
        now = self.clock()
        sim_params = config.sim.__class__(**{**_asdict(config.sim), "start_ts_ns": now})
        self.sim = MarketSimulator(sim_params, seed=config.seed)
        self.venue = PaperVenue(config.venue, seed=config.seed)
        self.core = StrategyCore(
            config.strategy, tick_size=config.sim.tick_size, lot_size=config.sim.lot_size, id_prefix=f"s{session.pk}"
        )
        self.recorder = Recorder(self.writer, session.pk, session.instrument_id)
        self.writer.start()
        self.status = Status.RUNNING
        self._next_heartbeat_ns = now + self.heartbeat_ns
        logger.info("session %s: loop %s started", self.session_id, self.owner)
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
            self._cancel_everything("loop crashed")
            TradingSession.objects.filter(pk=self.session_id, status=Status.RUNNING).update(
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
        self._cancel_everything(self.stats.outcome or "loop ended")
        self.writer.close()
        self._save_state()
        self._publish(force=True)
        lease.release(self.session_id, self.owner)
        logger.info("session %s: loop %s finished (%s)", self.session_id, self.owner, self.stats.outcome)

    # --- one step -------------------------------------------------------------------------------

    def step(self) -> bool:
        """Advance to now. Returns False when the loop must end (halted, stopped, lease lost)."""
        now = self.clock()
        if not self._check_control(now):
            return False
        for event in self.sim.step_until(now):
            self._on_market(event)
        self._handle_order_events(self.venue.advance(now))
        if self.writer.overflowing:
            self._halt_self("recorder buffer overflow: database unavailable for too long")
            return False
        self._publish()
        self.stats.steps += 1
        return True

    def _check_control(self, now: int) -> bool:
        status = TradingSession.objects.filter(pk=self.session_id).values_list("status", flat=True).first()
        if status != Status.RUNNING:
            self.status = status or Status.STOPPED
            self.stats.outcome = f"session_{self.status}"
            return False
        if now >= self._next_heartbeat_ns:
            if not lease.renew(self.session_id, self.owner, self.lease_ttl_s):
                self.stats.outcome = "lease_lost"
                return False
            self._next_heartbeat_ns = now + self.heartbeat_ns
            self._save_state()
        return True

    def _on_market(self, event: Any) -> None:
        self.stats.market_events += 1
        if isinstance(event, Trade):
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
            actions = self.core.on_event(ev)
            self._record_order(ev.ts_local_ns, ev.client_order_id)
            self._apply(actions, ev.ts_local_ns)

    def _apply(self, actions: list[Action], ts_ns: int) -> None:
        if self.core.decisions_changed and self.core.last_decision is not None:
            self.recorder.decision(self.core.last_decision)
            self.stats.decisions_recorded += 1
        if not actions:
            return
        self.stats.actions += len(actions)
        for a in actions:
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
        self._handle_order_events(self.venue.submit(actions, ts_ns))

    def _record_order(self, ts_ns: int, client_order_id: str) -> None:
        order = self.core.tracker.get(client_order_id)
        if order is not None:
            self.recorder.order_state(ts_ns, order)

    # --- shutdown paths -----------------------------------------------------------------------

    def _cancel_everything(self, reason: str) -> None:
        """Cancel at the venue at once (no latency: this is the emergency path) and record the result."""
        if not hasattr(self, "core"):
            return
        now = max(self.clock(), self.core._now_ns)
        self.core.halt(reason)
        for ev in self.venue.cancel_all_now(now):
            self.core.tracker.on_event(ev)
            if isinstance(ev, OrderAck):
                self.recorder.order_event(now, ev.client_order_id, "ack_cancelled", reason=reason)
            self._record_order(now, ev.client_order_id)
        for order in self.core.tracker.forget_live_orders():
            # the venue's book is empty now: whatever is still live on our side was in flight and is gone
            self.recorder.order_state(now, order)

    def _halt_self(self, reason: str) -> None:
        from apps.control.services import Actor, halt_session

        self.stats.outcome = "halted_by_loop"
        halt_session(Actor(label="quoting-loop"), self.session_id, reason)

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
        status = TradingSession.objects.filter(pk=self.session_id).values_list("status", flat=True).first() or ""
        try:
            self.publish(self.session_id, self.core.state(), status)
            self.stats.publishes += 1
        except Exception as exc:  # noqa: BLE001 - a broken broadcast must not stop quoting or cancelling
            logger.warning("session %s: publish failed: %s", self.session_id, exc)


def _asdict(obj: Any) -> dict[str, Any]:
    import dataclasses

    return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}
