"""Reads of operator state: what a session's status really is once the global kill switch is counted, and its
audit trail with the global switch's events in it.

A session's own status is what its operators set; the global kill switch sits above every session. The loop obeys
the more restrictive of the two (:class:`apps.engine.risk.gateway.Mode` orders them), so every page and live update
shows that one too: a running session under a global halt *is* halted, and says by whom.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db.models import Q, QuerySet

from apps.control.models import AuditEvent, GlobalKillSwitch
from apps.engine.risk.gateway import Mode
from apps.trading.models import TradingSession

# statuses in which the global switch governs a session's order flow (a stopped or failed session sends nothing)
_GOVERNED = ("created", "running", "reducing", "paused", "halted")


def effective_status(own: str, global_state: str) -> str:
    """The status a session trades under: its own, or the global switch's state when that is more restrictive.

    >>> [effective_status("running", "halted"), effective_status("paused", "reducing")]
    ['halted', 'paused']
    >>> [effective_status("running", "reducing"), effective_status("stopped", "halted")]
    ['reducing', 'stopped']
    """
    if own not in _GOVERNED or global_state == GlobalKillSwitch.State.ARMED:
        return own
    if own == TradingSession.Status.CREATED:
        # not started yet: only a halt matters (a reduce-only switch has nothing to reduce)
        return global_state if global_state == GlobalKillSwitch.State.HALTED else own
    return global_state if Mode.of(global_state) > Mode.of(own) else own


@dataclass(frozen=True)
class SessionStatus:
    """What a page shows for one session: ``status`` to act on, and whether the global switch decides it."""

    status: str  # effective: what the loop obeys
    own: str  # the session's own status
    global_state: str
    global_reason: str

    @property
    def by_global(self) -> bool:
        return self.status != self.own


def session_status(session: TradingSession, switch: GlobalKillSwitch | None = None) -> SessionStatus:
    """``switch`` saves a query per session when a page lists many. A backtest is not governed by the switch (it
    sends no order anywhere), so its status is its own."""
    switch = switch or GlobalKillSwitch.current()
    governed = session.mode != TradingSession.Mode.BACKTEST
    return SessionStatus(
        status=effective_status(session.status, switch.state) if governed else session.status,
        own=session.status,
        global_state=switch.state,
        global_reason=switch.reason,
    )


def session_audit(session: TradingSession, limit: int = 20) -> QuerySet[AuditEvent]:
    """The session's own audit rows and the global kill switch's events during its life, newest first.

    A global event is one row (it is one act), shown in the trail of every session it governed: those that
    existed when it happened and had not ended. A backtest's trail is its own (the switch does not govern it)."""
    rows = Q(session=session)
    if session.mode != TradingSession.Mode.BACKTEST:
        during: dict[str, Any] = {"ts__gte": session.created_at}
        if session.ended_at is not None:
            during["ts__lte"] = session.ended_at
        rows |= Q(session__isnull=True, action__startswith="global.", **during)
    return AuditEvent.objects.filter(rows).select_related("actor").order_by("-ts")[:limit]
