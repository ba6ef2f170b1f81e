"""The single writer for operator state: session start, stop and the kill switch.

Each service validates, changes state in one transaction, writes an audit row, and broadcasts after commit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from apps.control.models import AuditEvent
from apps.marketdata.models import Instrument
from apps.trading.models import Order, TradingSession


class ControlError(ValueError):
    """An operator action that cannot be carried out; the message says why."""


@dataclass(frozen=True)
class Actor:
    label: str
    user: AbstractBaseUser | None = None

    @classmethod
    def of(cls, user: AbstractBaseUser) -> Actor:
        return cls(label=user.get_username(), user=user)


def _audit(actor: Actor, action: str, session: TradingSession | None, reason: str, **detail: Any) -> None:
    AuditEvent.objects.create(
        actor=actor.user, actor_label=actor.label, action=action, session=session, reason=reason, detail=detail
    )


def _broadcast_status(session: TradingSession) -> None:
    from apps.live.broadcast import publish_session_state

    session_id, state, status = session.pk, dict(session.last_state), session.status
    transaction.on_commit(lambda: publish_session_state(session_id, state, status))


def create_paper_session(
    actor: Actor, *, name: str, params: dict[str, Any] | None = None, seed: int = 0, start: bool = True
) -> TradingSession:
    """Create a paper session on the built-in simulator and (optionally) queue its quoting loop."""
    from apps.trading.runtime import build_session_config

    config = build_session_config(params or {}, seed)  # raises ValueError naming the bad parameter
    with transaction.atomic():
        instrument, _ = Instrument.objects.get_or_create(
            venue="sim",
            symbol=f"SIM-BTCUSDT-{seed}",
            defaults={"kind": Instrument.Kind.PERP, "tick_size": config.sim.tick_size, "lot_size": config.sim.lot_size},
        )
        session = TradingSession.objects.create(
            name=name, instrument=instrument, params=params or {}, seed=seed, mode=TradingSession.Mode.PAPER
        )
        _audit(actor, "session.create", session, "", params=params or {}, seed=seed)
        if start:
            _queue_loop(session)
    return session


def _queue_loop(session: TradingSession) -> None:
    from apps.trading.tasks import run_quoting_session

    session_id = session.pk
    transaction.on_commit(lambda: run_quoting_session.delay(session_id))


def halt_session(actor: Actor, session_id: int, reason: str) -> TradingSession:
    """Kill switch: latch HALTED. The running loop cancels every open order at its next step (≤ one loop
    interval); if no loop holds the lease, the orders are cancelled here, since a paper venue's book dies with
    its process."""
    if not reason.strip():
        raise ControlError("a kill-switch action needs a reason")
    with transaction.atomic():
        session = TradingSession.objects.select_for_update().get(pk=session_id)
        if session.status == TradingSession.Status.HALTED:
            return session
        if session.status in (TradingSession.Status.STOPPED, TradingSession.Status.FAILED):
            raise ControlError(f"session #{session_id} is {session.status}; nothing to halt")
        session.status = TradingSession.Status.HALTED
        session.status_reason = reason
        session.save(update_fields=["status", "status_reason"])
        if not _lease_is_live(session):
            cancel_open_orders_in_db(session.pk, reason="halted with no live loop")
        _audit(actor, "session.halt", session, reason)
        _broadcast_status(session)
    return session


def stop_session(actor: Actor, session_id: int, reason: str = "operator stop") -> TradingSession:
    """Stop: the loop cancels all orders and exits. Position is kept (flattening is a separate action)."""
    with transaction.atomic():
        session = TradingSession.objects.select_for_update().get(pk=session_id)
        if session.status in (TradingSession.Status.STOPPED, TradingSession.Status.FAILED):
            return session
        was = session.status
        session.status = TradingSession.Status.STOPPED
        session.status_reason = reason
        session.ended_at = timezone.now()
        session.save(update_fields=["status", "status_reason", "ended_at"])
        if not _lease_is_live(session):
            cancel_open_orders_in_db(session.pk, reason="stopped with no live loop")
        _audit(actor, "session.stop", session, reason, previous=was)
        _broadcast_status(session)
    return session


def _lease_is_live(session: TradingSession) -> bool:
    return (
        bool(session.lease_owner)
        and session.lease_expires_at is not None
        and (session.lease_expires_at > timezone.now())
    )


def cancel_open_orders_in_db(session_id: int, reason: str) -> int:
    now = timezone.now()
    return Order.objects.filter(session_id=session_id, status__in=Order.OPEN_STATUSES).update(
        status=Order.Status.CANCELLED, updated_ts=now
    )
