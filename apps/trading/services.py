from __future__ import annotations

from django.db import transaction

from apps.trading import lease
from apps.trading.models import Order, TradingSession


def sweep_dead_sessions() -> list[int]:
    """Sessions marked RUNNING whose lease expired: their loop died. Cancel their open orders (the paper venue's
    book died with the loop's process) and mark them FAILED with the reason; the audit row says the system acted."""
    from apps.control.models import AuditEvent

    swept: list[int] = []
    for session_id in lease.expired_running_sessions():
        with transaction.atomic():
            session = TradingSession.objects.select_for_update().get(pk=session_id)
            if session.status != TradingSession.Status.RUNNING or (
                session.lease_expires_at is not None and session.lease_owner and not _expired(session)
            ):
                continue
            n = Order.objects.filter(session_id=session_id, status__in=Order.OPEN_STATUSES).update(
                status=Order.Status.CANCELLED
            )
            session.status = TradingSession.Status.FAILED
            session.status_reason = "quoting loop lost its lease (worker died); open orders cancelled"
            session.lease_owner = ""
            session.save(update_fields=["status", "status_reason", "lease_owner"])
            AuditEvent.objects.create(
                actor_label="dead-mans-switch",
                action="session.dead",
                session=session,
                reason=session.status_reason,
                detail={"orders_cancelled": n},
            )
        swept.append(session_id)
    return swept


def _expired(session: TradingSession) -> bool:
    from django.utils import timezone

    return session.lease_expires_at is None or session.lease_expires_at < timezone.now()
