"""Reads of alerts for pages."""

from __future__ import annotations

from django.db.models import QuerySet

from apps.ops.models import Alert

BANNER_LIMIT = 20


def open_alerts() -> QuerySet[Alert]:
    return Alert.objects.filter(acknowledged_at__isnull=True).select_related("session").order_by("-last_seen")


def recent_alerts(limit: int = 200) -> QuerySet[Alert]:
    return Alert.objects.select_related("session").order_by("-last_seen")[:limit]
