"""Telling people about a new alert: e-mail through Django's mail settings, an optional JSON webhook, and a push to
the session's live page. A failing channel is logged and never breaks the sweep."""

from __future__ import annotations

import json
import logging
import urllib.request
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.mail import send_mail
from django.db.models import Q

from apps.ops.models import Alert

logger = logging.getLogger(__name__)


def alert_payload(alert: Alert) -> dict[str, Any]:
    return {
        "id": alert.pk,
        "rule": alert.rule,
        "subject": alert.subject,
        "severity": alert.severity,
        "message": alert.message,
        "values": alert.values,
        "session_id": alert.session_id,
        "first_seen": alert.first_seen.isoformat(),
        "last_seen": alert.last_seen.isoformat(),
        "count": alert.count,
    }


def recipients() -> list[str]:
    """``MM_ALERT_EMAILS``, or else every active admin's and operator's e-mail address."""
    if settings.MM_ALERT_EMAILS:
        return list(settings.MM_ALERT_EMAILS)
    users = (
        get_user_model()
        .objects.filter(is_active=True)
        .exclude(email="")
        .filter(Q(is_superuser=True) | Q(groups__name__in=("admin", "operator")))
    )
    return sorted(set(users.values_list("email", flat=True)))


def notify(alert: Alert) -> None:
    """Send a new alert everywhere it goes; each channel fails on its own."""
    payload = alert_payload(alert)
    log = {"extra": {"session_id": alert.session_id, "alert_id": alert.pk, "rule": alert.rule}}
    _email(alert, log)
    _webhook(payload, log)
    if alert.session_id is not None:
        try:
            from apps.live.broadcast import publish_session_event

            publish_session_event(
                alert.session_id, {"kind": "alert", "ts_ns": int(alert.last_seen.timestamp() * 1e9), **payload}
            )
        except Exception as exc:  # noqa: BLE001 - Redis down: the banner still shows it on the next refresh
            logger.warning("alert %s: live push failed: %s", alert.pk, exc, **log)


def _email(alert: Alert, log: dict[str, Any]) -> None:
    to = recipients()
    if not to:
        logger.warning("alert %s: no e-mail recipients (set MM_ALERT_EMAILS or users' e-mails)", alert.pk, **log)
        return
    where = f"session #{alert.session_id}" if alert.session_id else "platform"
    subject = f"[MM {alert.severity.upper()}] {alert.rule} ({where})"
    body = f"{alert.message}\n\nvalues: {json.dumps(alert.values, sort_keys=True)}\nfirst seen: {alert.first_seen}\n"
    try:
        send_mail(subject, body, settings.DEFAULT_FROM_EMAIL, to)
    except Exception as exc:  # noqa: BLE001 - SMTP down, bad address: log it, the alert stays on the page
        logger.error("alert %s: e-mail failed: %s", alert.pk, exc, **log)


def _webhook(payload: dict[str, Any], log: dict[str, Any]) -> None:
    url = settings.MM_ALERT_WEBHOOK_URL
    if not url:
        return
    if urlsplit(url).scheme not in ("http", "https"):
        logger.error("MM_ALERT_WEBHOOK_URL must be an http(s) URL; alert %s not posted", payload["id"], **log)
        return
    request = urllib.request.Request(  # noqa: S310 - scheme checked above
        url,
        data=json.dumps({"alert": payload}).encode(),
        headers={"Content-Type": "application/json", "User-Agent": "mm-alerts"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=settings.MM_ALERT_WEBHOOK_TIMEOUT_S) as resp:  # noqa: S310
            resp.read(1024)
    except Exception as exc:  # noqa: BLE001 - refused, timeout, 5xx: log it, never break the sweep
        logger.error("alert %s: webhook %s failed: %s", payload["id"], url, exc, **log)
