"""The dead-man's switch: sessions whose quoting loop died (its lease ran out) or never started.

Lives in the control layer because it changes a session's status and writes audit rows; its Celery task keeps
its old name (``apps.trading.tasks.sweep_dead_sessions``) so schedules and queues are unchanged.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from apps.control import lifecycle
from apps.control.models import AuditEvent
from apps.trading import lease
from apps.trading.models import Order, TradingSession

logger = logging.getLogger(__name__)
LIVE = (
    TradingSession.Status.RUNNING,
    TradingSession.Status.REDUCING,
    TradingSession.Status.PAUSED,
    TradingSession.Status.HALTED,
)


def sweep_dead_sessions() -> list[int]:
    """Dead-man's switch. A session whose loop lost its lease (the worker died) has its open orders cancelled at
    the venue — for the paper venue its book died with the process, so the records are closed here — and is
    marked; then its loop is queued again, and the new loop resumes from the database (position from fills).
    A session that keeps dying (more than MM_MAX_RESTARTS times in 10 minutes) is marked FAILED instead."""
    from apps.trading.tasks import run_quoting_session

    swept: list[int] = requeue_unstarted()
    for session_id in lease.expired_sessions(LIVE):
        with transaction.atomic():
            session = TradingSession.objects.select_for_update().get(pk=session_id)
            # a lease that was taken and has run out (a never-started session has none: requeue_unstarted)
            if session.status not in LIVE or session.lease_expires_at is None or lease.is_live(session):
                continue
            now = timezone.now()
            n = Order.objects.filter(session_id=session_id, status__in=Order.OPEN_STATUSES).update(
                status=Order.Status.CANCELLED, updated_ts=now
            )
            recent = AuditEvent.objects.filter(
                session_id=session_id, action="session.dead", ts__gte=now - timedelta(minutes=10)
            ).count()
            restart = recent < settings.MM_MAX_RESTARTS
            reason = f"quoting loop lost its lease (worker died?); {n} open order(s) cancelled; " + (
                "restarting the loop" if restart else f"died {recent + 1} times in 10 min, not restarting"
            )
            session.lease_owner = ""
            session.lease_expires_at = None
            session.status_reason = reason
            session.save(update_fields=["lease_owner", "lease_expires_at", "status_reason"])
            if not restart:
                lifecycle.transition(session_id, "fail", reason=reason, actor_label="dead-mans-switch", by_system=True)
            AuditEvent.objects.create(
                actor_label="dead-mans-switch",
                action="session.dead",
                session=session,
                reason=reason,
                detail={"orders_cancelled": n, "restart": restart},
            )
            if restart:
                transaction.on_commit(lambda sid=session_id: run_quoting_session.delay(sid))
        swept.append(session_id)
    return swept


def requeue_unstarted(grace_s: float = 10.0) -> list[int]:
    """Sessions asked to start whose loop never took the lease (the broker was down when they were queued):
    queue them again. A duplicate delivery is harmless (the lease decides)."""
    from apps.trading.tasks import run_quoting_session

    cutoff = timezone.now() - timedelta(seconds=grace_s)
    ids = list(
        TradingSession.objects.filter(status=TradingSession.Status.CREATED, lease_owner="", created_at__lt=cutoff)
        .filter(pk__in=AuditEvent.objects.filter(action="session.create", detail__start=True).values("session_id"))
        .exclude(pk__in=AuditEvent.objects.filter(action="loop.requeue", ts__gte=cutoff).values("session_id"))
        .values_list("pk", flat=True)
    )
    for session_id in ids:
        try:
            run_quoting_session.delay(session_id)
        except Exception as exc:  # noqa: BLE001 - still no broker; next sweep
            logger.warning("session %s: re-queue failed (%s)", session_id, exc)
            continue
        AuditEvent.objects.create(
            actor_label="dead-mans-switch",
            action="loop.requeue",
            session_id=session_id,
            reason="asked to start but no loop took it; queued again",
        )
    return ids
