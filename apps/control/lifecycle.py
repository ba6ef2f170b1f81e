"""A session's lifecycle: the one table of which event moves a session from which status to which.

Every change of ``TradingSession.status`` goes through :func:`transition`, which validates the event against the
table, writes the status (and ``ended_at`` when the session ends), the audit row, cancels the open order records
when no loop holds the session (a paper venue's book died with its process), and broadcasts the new effective
status after commit. The services (operator actions), the dead-man's switch and the quoting loop's reports all
call it; nothing else writes a session's status.

::

    created ──run────▶ running ◀──resume── paused ◀──rearm── halted
       │                │  ▲                 ▲ │                ▲
       │                │  └─────resume──────┼─┘                │
       │                ├──reduce──▶ reducing┘(pause)           │
       │                └──pause──▶ paused                      │
       └── any active status ──halt────────────────────────────┘
       any active status or halted ──stop──▶ stopped      any not-ended status ──fail──▶ failed
       running / reducing / paused / halted ──finish──▶ stopped (a replay or backtest reached the end of its data)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.utils import timezone

from apps.control import audit
from apps.control.audit import ControlError, check_reason
from apps.trading import lease
from apps.trading.models import TradingSession

S = TradingSession.Status
ACTIVE = frozenset({S.CREATED, S.RUNNING, S.REDUCING, S.PAUSED})
ENDED = frozenset({S.STOPPED, S.FAILED})


@dataclass(frozen=True)
class Transition:
    """One row of the table: ``event`` takes a session in any of ``sources`` to ``target``."""

    event: str
    sources: frozenset[str]
    target: str
    reason_required: bool = False
    operator_only: bool = False  # only a logged-in user, never a system component, may do it
    system_only: bool = False  # done by the platform (a loop, the dead-man's switch), never from the console

    @property
    def audit_action(self) -> str:
        return f"session.{self.event}"


TABLE: dict[str, Transition] = {
    t.event: t
    for t in (
        Transition("run", frozenset({S.CREATED}), S.RUNNING, system_only=True),  # a loop took the session
        Transition("pause", frozenset({S.RUNNING, S.REDUCING}), S.PAUSED),
        Transition("resume", frozenset({S.PAUSED, S.REDUCING}), S.RUNNING),
        Transition("reduce", frozenset({S.RUNNING, S.PAUSED}), S.REDUCING, reason_required=True),
        Transition("halt", ACTIVE, S.HALTED, reason_required=True),
        Transition("rearm", frozenset({S.HALTED}), S.PAUSED, reason_required=True, operator_only=True),
        Transition("stop", ACTIVE | {S.HALTED}, S.STOPPED),
        Transition("finish", frozenset({S.RUNNING, S.REDUCING, S.PAUSED, S.HALTED}), S.STOPPED, system_only=True),
        Transition("fail", ACTIVE | {S.HALTED}, S.FAILED, system_only=True),
    )
}

# statuses in which a session with no live loop has its open order records closed (nothing can be resting)
_CANCEL_WITHOUT_LOOP = frozenset({S.HALTED, S.STOPPED, S.PAUSED, S.FAILED})


class TransitionError(ControlError):
    """An event the table does not allow from the session's status, or one missing what it needs."""


def allowed_events(status: str) -> list[str]:
    """The events the table allows from ``status`` (what a page may offer)."""
    return [t.event for t in TABLE.values() if status in t.sources]


def check(
    event: str, status: str, *, reason: str, by_operator: bool, by_system: bool, subject: str = "session"
) -> Transition:
    """The table's verdict, without touching the database: the transition, or a :class:`TransitionError`."""
    t = TABLE.get(event)
    if t is None:
        raise TransitionError(f"unknown session event {event!r}; known: {', '.join(TABLE)}")
    if t.operator_only and not by_operator:
        raise TransitionError(f"only an operator can {event} a session")
    if t.system_only and not by_system:
        raise TransitionError(f"{event} is done by the platform, not by an operator")
    try:
        check_reason(reason, required=t.reason_required, what=t.audit_action)
    except ControlError as exc:
        raise TransitionError(str(exc)) from None
    if status not in t.sources:
        raise TransitionError(f"{subject} is {status}; cannot {event} it")
    return t


def transition(
    session_id: int,
    event: str,
    *,
    reason: str,
    actor_label: str,
    actor_user: Any = None,
    by_system: bool = False,
    extra_fields: dict[str, Any] | None = None,
    **detail: Any,
) -> TradingSession:
    """Apply ``event`` to session ``session_id`` in one transaction; a repeat of the status it already has is a
    no-op (so a double click or a redelivered report is harmless). ``extra_fields`` are saved with the status
    (e.g. the flatten request of a stop). Raises :class:`TransitionError`, or ``TradingSession.DoesNotExist``."""
    with transaction.atomic():
        session = TradingSession.objects.select_for_update().get(pk=session_id)
        t = TABLE.get(event)
        if t is not None and session.status == t.target:
            return session
        t = check(
            event,
            session.status,
            reason=reason,
            by_operator=actor_user is not None,
            by_system=by_system,
            subject=f"session #{session_id}",
        )
        previous = session.status
        session.status, session.status_reason = t.target, reason
        fields = ["status", "status_reason"]
        if t.target in ENDED:
            session.ended_at = timezone.now()
            fields.append("ended_at")
        if t.target == S.RUNNING and session.started_at is None:
            session.started_at = timezone.now()
            fields.append("started_at")
        for name, value in (extra_fields or {}).items():
            setattr(session, name, value)
            fields.append(name)
        session.save(update_fields=fields)
        if (
            t.target in _CANCEL_WITHOUT_LOOP
            and session.mode != TradingSession.Mode.BACKTEST
            and not lease.is_live(session)
        ):
            audit.cancel_open_orders_in_db(session.pk)  # no loop holds it: nothing rests at any venue
        audit.record(actor_label, actor_user, t.audit_action, session, reason, previous=previous, **detail)
        if session.mode != TradingSession.Mode.BACKTEST:  # a backtest has no live page to push to
            audit.broadcast_status(session)
    return session
