"""One quoting loop per session: a lease row renewed by heartbeat.

A loop may run a session only while it holds the lease. A redelivered Celery task finds the lease held and
exits; a crashed worker's lease expires after ``ttl_s`` and the dead-man's switch (``sweep_dead_sessions``)
takes over. All checks are single UPDATE statements, so two contenders cannot both win.
"""

from __future__ import annotations

from datetime import timedelta

from django.db.models import F, Q, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from apps.trading.models import TradingSession

S = TradingSession.Status
# A loop may (re)start for any session that is not finished; a HALTED or PAUSED one keeps its status.
RUNNABLE = (S.CREATED, S.RUNNING, S.REDUCING, S.PAUSED, S.HALTED)


def acquire(session_id: int, owner: str, ttl_s: float) -> bool:
    now = timezone.now()
    free = Q(lease_expires_at__isnull=True) | Q(lease_expires_at__lt=now) | Q(lease_owner=owner)
    updated = (
        TradingSession.objects.filter(pk=session_id, status__in=RUNNABLE)
        .filter(free)
        .update(
            lease_owner=owner,
            lease_expires_at=now + timedelta(seconds=ttl_s),
            heartbeat_at=now,
            started_at=Coalesce(F("started_at"), Value(now)),
        )
    )
    return updated == 1


def renew(session_id: int, owner: str, ttl_s: float) -> bool:
    """Extend our lease; False when it is no longer ours (expired and taken, or released)."""
    now = timezone.now()
    updated = TradingSession.objects.filter(pk=session_id, lease_owner=owner).update(
        lease_expires_at=now + timedelta(seconds=ttl_s), heartbeat_at=now
    )
    return updated == 1


def is_live(session: TradingSession) -> bool:
    """A loop holds the session's lease and it has not run out."""
    return (
        bool(session.lease_owner)
        and session.lease_expires_at is not None
        and (session.lease_expires_at > timezone.now())
    )


def release(session_id: int, owner: str) -> None:
    TradingSession.objects.filter(pk=session_id, lease_owner=owner).update(lease_owner="", lease_expires_at=None)


def expired_sessions(statuses: tuple[str, ...]) -> list[int]:
    """Sessions in ``statuses`` whose lease was taken and has run out (a loop held them and stopped renewing)."""
    return list(
        TradingSession.objects.filter(status__in=statuses, lease_expires_at__lt=timezone.now()).values_list(
            "pk", flat=True
        )
    )
