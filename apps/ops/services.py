"""Writes of the alert state: the sweep that raises and bumps alerts, and an operator's acknowledgement."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from apps.control import audit
from apps.control.audit import ControlError
from apps.ops import notify, rules
from apps.ops.models import Alert, AlertCursor
from apps.ops.rules import Finding

logger = logging.getLogger(__name__)
RISK_CURSOR = "risk_events"


@dataclass
class SweepResult:
    raised: list[int] = field(default_factory=list)  # ids of new alerts
    bumped: int = 0  # repeats of open alerts


def evaluate_alerts(now: datetime | None = None) -> SweepResult:
    """Run every rule once: new findings open alerts (and notify after commit), repeats bump the open one.

    Concurrent sweeps serialise on the risk-event cursor row."""
    now = now or timezone.now()
    result = SweepResult()
    with transaction.atomic():
        cursor, _ = AlertCursor.objects.get_or_create(name=RISK_CURSOR, defaults={"last_id": -1})
        cursor = AlertCursor.objects.select_for_update().get(pk=cursor.pk)
        findings, last_id = rules.risk_event_findings(None if cursor.last_id < 0 else cursor.last_id, now)
        findings += rules.session_state_findings(now)
        for f in findings:
            _apply(f, now, result)
        if last_id is not None and last_id != cursor.last_id:
            cursor.last_id = last_id
            cursor.save(update_fields=["last_id", "updated_at"])
        elif cursor.last_id < 0:
            cursor.last_id = 0
            cursor.save(update_fields=["last_id", "updated_at"])
    return result


def _rearm_after(now: datetime) -> datetime:
    """A persistent condition seen since this instant is the same episode as before (not re-raised after an ack)."""
    return now - timedelta(seconds=3 * float(settings.CELERY_BEAT_SCHEDULE["alerts"]["schedule"]) + 5)


def _apply(f: Finding, now: datetime, result: SweepResult) -> None:
    key = {"session_id": f.session_id, "rule": f.rule, "subject": f.subject}
    open_alert = Alert.objects.select_for_update().filter(acknowledged_at__isnull=True, **key).first()
    if open_alert is not None:
        _bump(open_alert, f, now)
        result.bumped += 1
        return
    if f.persistent:
        acked = Alert.objects.filter(**key).order_by("-acknowledged_at").first()
        if acked is not None and acked.last_seen >= _rearm_after(now):
            # acknowledged and still going on: keep its last_seen current, do not raise it again
            Alert.objects.filter(pk=acked.pk).update(last_seen=now)
            return
    try:
        with transaction.atomic():
            alert = Alert.objects.create(
                **key, severity=f.severity, message=f.message, values=f.values, first_seen=now, last_seen=now
            )
    except IntegrityError:  # raised meanwhile by another sweep
        other = Alert.objects.select_for_update().get(acknowledged_at__isnull=True, **key)
        _bump(other, f, now)
        result.bumped += 1
        return
    result.raised.append(alert.pk)
    logger.warning("alert raised: %s", alert.message, extra={"session_id": f.session_id, "alert_id": alert.pk})
    transaction.on_commit(lambda: notify.notify(alert))


def _bump(alert: Alert, f: Finding, now: datetime) -> None:
    alert.count += 1
    alert.last_seen = now
    alert.message = f.message
    alert.values = f.values
    if f.severity == Alert.Severity.CRITICAL:
        alert.severity = f.severity  # a repeat may escalate, never downgrade, an open alert
    alert.save(update_fields=["count", "last_seen", "message", "values", "severity"])


def acknowledge(alert_id: int, user: Any) -> Alert:
    """An operator has seen the alert: record who and when, and an audit row. ControlError when already done."""
    with transaction.atomic():
        alert = Alert.objects.select_for_update(of=("self",)).select_related("session").filter(pk=alert_id).first()
        if alert is None:
            raise ControlError(f"no alert #{alert_id}")
        if alert.acknowledged_at is not None:
            raise ControlError(
                f"alert #{alert_id} was already acknowledged by {alert.acknowledged_by_label} "
                f"at {alert.acknowledged_at:%Y-%m-%d %H:%M:%S} UTC"
            )
        alert.acknowledged_by = user
        alert.acknowledged_by_label = user.get_username()
        alert.acknowledged_at = timezone.now()
        alert.save(update_fields=["acknowledged_by", "acknowledged_by_label", "acknowledged_at"])
        audit.record(
            alert.acknowledged_by_label,
            user,
            "alert.acknowledge",
            alert.session,
            "",
            alert_id=alert.pk,
            rule=alert.rule,
            subject=alert.subject,
            message=alert.message,
        )
    logger.info(
        "alert %s acknowledged by %s",
        alert.pk,
        alert.acknowledged_by_label,
        extra={"session_id": alert.session_id, "alert_id": alert.pk},
    )
    return alert
