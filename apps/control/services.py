"""The single writer for operator state: session start, stop and the kill switch.

Each service validates, changes state in one transaction, writes an audit row, and broadcasts after commit.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction

from apps.control import audit, lifecycle
from apps.control.audit import MAX_REASON_CHARS, ControlError, check_reason
from apps.control.lifecycle import ACTIVE
from apps.control.models import GlobalKillSwitch
from apps.marketdata.models import Instrument
from apps.trading import lease
from apps.trading.models import TradingSession

logger = logging.getLogger(__name__)

__all__ = [
    "MAX_REASON_CHARS",
    "Actor",
    "ControlError",
    "check_reason",
    "halt_all",
    "halt_session",
    "pause_session",
    "rearm_all",
    "rearm_session",
    "reduce_all",
    "reduce_session",
    "resume_session",
    "start_session",
    "stop_session",
]


@dataclass(frozen=True)
class Actor:
    label: str
    user: AbstractBaseUser | None = None

    @classmethod
    def of(cls, user: AbstractBaseUser) -> Actor:
        return cls(label=user.get_username(), user=user)


def _audit(actor: Actor, action: str, session: TradingSession | None, reason: str, **detail: Any) -> None:
    audit.record(actor.label, actor.user, action, session, reason, **detail)


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
        _audit(actor, "session.create", session, "", params=params or {}, seed=seed, start=start)
        from apps.control.params import record_initial

        record_initial(actor, session)  # parameter version 1
        if start:
            _queue_loop(session)
    return session


def _queue_loop(session: TradingSession) -> None:
    from apps.trading.tasks import run_quoting_session

    session_id = session.pk

    def enqueue() -> None:
        try:
            run_quoting_session.delay(session_id)
        except Exception as exc:  # noqa: BLE001 - broker down: the dead-man's sweep queues it again
            logger.warning("session %s: could not queue the quoting loop (%s); the sweep will retry", session_id, exc)

    transaction.on_commit(enqueue)


def _transition(actor: Actor, session_id: int, event: str, reason: str, **kwargs: Any) -> TradingSession:
    """An operator's event through the lifecycle table (status, audit row, database cancels, broadcast)."""
    try:
        return lifecycle.transition(
            session_id, event, reason=reason, actor_label=actor.label, actor_user=actor.user, **kwargs
        )
    except TradingSession.DoesNotExist:
        raise ControlError(f"no session #{session_id}") from None


def halt_session(actor: Actor, session_id: int, reason: str) -> TradingSession:
    """Kill switch: latch HALTED. The loop cancels every open order at its next step (within one loop interval)
    and sends nothing until an operator re-arms; with no live loop the orders are cancelled here."""
    return _transition(actor, session_id, "halt", reason)


def reduce_session(actor: Actor, session_id: int, reason: str) -> TradingSession:
    """REDUCING: only orders that reduce |inventory| may be sent; resting orders that would grow it are cancelled."""
    return _transition(actor, session_id, "reduce", reason)


def pause_session(actor: Actor, session_id: int, reason: str = "operator pause") -> TradingSession:
    """Cancel quotes, keep the position and keep watching the market."""
    return _transition(actor, session_id, "pause", reason)


def resume_session(actor: Actor, session_id: int, reason: str = "operator resume") -> TradingSession:
    session = _transition(actor, session_id, "resume", reason)
    _ensure_loop(session)
    return session


def rearm_session(actor: Actor, session_id: int, reason: str) -> TradingSession:
    """Only an operator (a logged-in user) can re-arm a HALTED session, with a reason. It comes back PAUSED:
    quoting starts again only on an explicit resume."""
    if actor.user is None:
        raise ControlError("only an operator can re-arm a halted session")
    session = _transition(actor, session_id, "rearm", reason)
    _ensure_loop(session)
    return session


def stop_session(
    actor: Actor,
    session_id: int,
    reason: str = "operator stop",
    *,
    flatten: bool = False,
    max_slippage_bps: float = 10.0,
) -> TradingSession:
    """Stop: the loop cancels all orders and exits. With ``flatten`` it first sends marketable IOC orders to close
    the position, priced no worse than ``max_slippage_bps`` from the touch."""
    if flatten and not (0 < max_slippage_bps <= 500):
        raise ControlError(f"max_slippage_bps must be in (0, 500], got {max_slippage_bps}")
    if flatten and TradingSession.objects.filter(pk=session_id, status=TradingSession.Status.HALTED).exists():
        raise ControlError("a HALTED session sends no order, flattening included; re-arm it first")
    if flatten and GlobalKillSwitch.current().state == GlobalKillSwitch.State.HALTED:
        raise ControlError("the global kill switch is HALTED: no order is sent, flattening included; re-arm it first")
    fields = {"flatten_requested": flatten, "flatten_max_slippage_bps": max_slippage_bps if flatten else None}
    return _transition(
        actor, session_id, "stop", reason, extra_fields=fields, flatten=flatten, max_slippage_bps=max_slippage_bps
    )


def start_session(actor: Actor, session_id: int) -> TradingSession:
    """Queue the quoting loop of a CREATED session (or one whose loop died while RUNNING)."""
    with transaction.atomic():
        session = TradingSession.objects.select_for_update().get(pk=session_id)
        if session.status not in (TradingSession.Status.CREATED, TradingSession.Status.RUNNING):
            raise ControlError(f"session #{session_id} is {session.status}; only created sessions can be started")
        _audit(actor, "session.start", session, "")
        _queue_loop(session)
    return session


def _ensure_loop(session: TradingSession) -> None:
    if not lease.is_live(session):
        _queue_loop(session)


def halt_all(actor: Actor, reason: str) -> GlobalKillSwitch:
    """Global kill switch: every session stops sending orders and cancels what it has, until an operator re-arms."""
    return _set_global(actor, GlobalKillSwitch.State.HALTED, reason)


def reduce_all(actor: Actor, reason: str) -> GlobalKillSwitch:
    return _set_global(actor, GlobalKillSwitch.State.REDUCING, reason)


def rearm_all(actor: Actor, reason: str) -> GlobalKillSwitch:
    if actor.user is None:
        raise ControlError("only an operator can re-arm the global kill switch")
    return _set_global(actor, GlobalKillSwitch.State.ARMED, reason)


def _set_global(actor: Actor, state: str, reason: str) -> GlobalKillSwitch:
    check_reason(reason, required=True, what="the global kill switch")
    with transaction.atomic():
        switch, _ = GlobalKillSwitch.objects.select_for_update().get_or_create(singleton=True)
        previous = switch.state
        switch.state, switch.reason, switch.changed_by = state, reason, actor.label
        switch.save()
        _audit(actor, f"global.{state}", None, reason, previous=previous)
        governed = TradingSession.objects.filter(status__in=ACTIVE).exclude(mode=TradingSession.Mode.BACKTEST)
        if state == GlobalKillSwitch.State.HALTED:
            for s in governed:
                if not lease.is_live(s):
                    audit.cancel_open_orders_in_db(s.pk)  # no loop holds it: nothing rests at any venue
        elif previous == GlobalKillSwitch.State.HALTED:
            _pause_after_global_halt(actor, reason)
        for s in governed:
            audit.broadcast_status(s)  # after commit, with the new effective status
    return switch


def _pause_after_global_halt(actor: Actor, reason: str) -> None:
    """Leaving a global halt is a re-arm of every session it halted, and a re-arm comes back PAUSED: each
    session that was running or reducing is paused (with its own audit row) in the same transaction as the switch,
    so no loop sees the switch open while its session still says running. The operator resumes each one."""
    was_quoting = (TradingSession.Status.RUNNING, TradingSession.Status.REDUCING)
    sessions = (
        TradingSession.objects.filter(status__in=was_quoting)
        .exclude(mode=TradingSession.Mode.BACKTEST)
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    why = f"global kill switch re-armed ({reason}); resume to quote again"
    for session_id in list(sessions):
        lifecycle.transition(
            session_id, "pause", reason=why, actor_label=actor.label, actor_user=actor.user, by="global.armed"
        )
