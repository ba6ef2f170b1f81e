"""The pieces every operator-state change shares: its error, the reason check, the audit row, the database
cancels when no loop holds a session, and the broadcast of the new status after commit."""

from __future__ import annotations

import logging
from typing import Any

from django.db import transaction
from django.utils import timezone

from apps.control.models import AuditEvent
from apps.trading.models import Order, TradingSession

logger = logging.getLogger(__name__)

MAX_REASON_CHARS = 500  # an operator's reason is a sentence, not a document (it is shown on every page)


class ControlError(ValueError):
    """An operator action that cannot be carried out; the message says why."""


def check_reason(reason: str, *, required: bool, what: str) -> None:
    """Every operator-supplied reason passes here: at most ``MAX_REASON_CHARS``, and not blank when required."""
    if len(reason) > MAX_REASON_CHARS:
        raise ControlError(f"a reason is at most {MAX_REASON_CHARS} characters (this one has {len(reason)})")
    if required and not reason.strip():
        raise ControlError(f"{what} needs a reason")


def record(
    actor_label: str, actor_user: Any, action: str, session: TradingSession | None, reason: str, **detail: Any
) -> AuditEvent:
    row = AuditEvent.objects.create(
        actor=actor_user, actor_label=actor_label, action=action, session=session, reason=reason, detail=detail
    )
    if session is not None:
        _push_after_commit(session.pk, audit_event(row))
    return row


def audit_event(row: AuditEvent) -> dict[str, Any]:
    """An audit row as the live page's ``"audit"`` event (``params.*`` rows are also drawn as chart markers)."""
    return {
        "kind": "audit",
        "id": row.pk,
        "ts_ns": int(row.ts.timestamp() * 1e9),
        "action": row.action,
        "actor": row.actor_label,
        "reason": row.reason,
        "detail": row.detail,
    }


def _push_after_commit(session_id: int, event: dict[str, Any]) -> None:
    from apps.live.broadcast import publish_session_event

    def push() -> None:
        # committed in PostgreSQL already: a Redis outage delays the browser update, never fails the action
        try:
            publish_session_event(session_id, event)
        except Exception as exc:  # noqa: BLE001 - any broker error
            logger.warning("session %s: live %s event not sent (%s)", session_id, event.get("kind"), exc)

    transaction.on_commit(push)


def cancel_open_orders_in_db(session_id: int) -> int:
    """Close a session's open order records: called only when no loop holds it, so nothing rests anywhere."""
    return Order.objects.filter(session_id=session_id, status__in=Order.OPEN_STATUSES).update(
        status=Order.Status.CANCELLED, updated_ts=timezone.now()
    )


def broadcast_status(session: TradingSession) -> None:
    """After commit, push the session's effective status (the global switch counted) to its live page, as a
    ``"status"`` event (never coalesced away; the running loop's next snapshot carries the same status)."""
    import time

    from apps.control.selectors import session_status

    status = session_status(session).status
    _push_after_commit(
        session.pk, {"kind": "status", "ts_ns": time.time_ns(), "status": status, "reason": session.status_reason}
    )
