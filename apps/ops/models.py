"""Alerts: a rule saw something an operator must look at; it stays on every page until acknowledged."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q


class Alert(models.Model):
    """One open alert per (session, rule, subject) until acknowledged; a repeat bumps ``count`` and ``last_seen``.

    ``subject`` tells apart alerts of one rule on one session: the risk rule's name for a risk trip, the
    estimator's name for a failed estimator, ``market``/``heartbeat`` for a stale feed.
    """

    class Rule(models.TextChoices):
        RISK_TRIP = "risk_trip"
        ESTIMATOR_FAILED = "estimator_failed"
        FEED_STALE = "feed_stale"
        SKEW_ALARM = "skew_alarm"
        DRAWDOWN = "drawdown"

    class Severity(models.TextChoices):
        WARNING = "warning"
        CRITICAL = "critical"

    session = models.ForeignKey(
        "trading.TradingSession", null=True, blank=True, on_delete=models.CASCADE, related_name="alerts"
    )
    rule = models.CharField(max_length=32, choices=Rule.choices)
    subject = models.CharField(max_length=60, blank=True, default="")
    severity = models.CharField(max_length=10, choices=Severity.choices)
    message = models.TextField()
    values = models.JSONField(default=dict, blank=True)
    first_seen = models.DateTimeField()
    last_seen = models.DateTimeField()
    count = models.PositiveIntegerField(default=1)
    acknowledged_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    acknowledged_by_label = models.CharField(max_length=150, blank=True)
    acknowledged_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-last_seen"]
        constraints = [
            models.UniqueConstraint(
                fields=["session", "rule", "subject"],
                condition=Q(acknowledged_at__isnull=True),
                nulls_distinct=False,
                name="alert_one_open_per_session_rule_subject",
            )
        ]
        indexes = [models.Index(fields=["acknowledged_at", "last_seen"], name="alert_open_last_seen")]

    def __str__(self) -> str:
        where = f"session #{self.session_id}" if self.session_id else "global"
        return f"{self.severity} {self.rule} ({where}): {self.message}"

    @property
    def is_open(self) -> bool:
        return self.acknowledged_at is None


class AlertCursor(models.Model):
    """Where the sweep stopped reading a table (one row per name): the last RiskEventRecord id it has seen."""

    name = models.CharField(max_length=40, unique=True)
    last_id = models.BigIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.name} @ {self.last_id}"
