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
    return AuditEvent.objects.create(
        actor=actor_user, actor_label=actor_label, action=action, session=session, reason=reason, detail=detail
    )


def cancel_open_orders_in_db(session_id: int) -> int:
    """Close a session's open order records: called only when no loop holds it, so nothing rests anywhere."""
    return Order.objects.filter(session_id=session_id, status__in=Order.OPEN_STATUSES).update(
        status=Order.Status.CANCELLED, updated_ts=timezone.now()
    )


def broadcast_status(session: TradingSession) -> None:
    """After commit, push the session's effective status (the global switch counted) to its live page."""
    from apps.control.selectors import session_status
    from apps.live.broadcast import publish_session_state

    session_id, state, status = session.pk, dict(session.last_state), session_status(session).status

    def push() -> None:
        # The state change is committed in PostgreSQL; a Redis outage may delay the browser update, never undo
        # or fail the operator's action.
        try:
            publish_session_state(session_id, state, status)
        except Exception as exc:  # noqa: BLE001 - any broker error
            logger.warning(
                "session %s: live update not sent (%s); the page catches up on the next update", session_id, exc
            )

    transaction.on_commit(push)
