"""Operator actions: every change of a session's state or parameters leaves an audit row."""

from __future__ import annotations

from django.conf import settings
from django.db import models


class AuditEvent(models.Model):
    ts = models.DateTimeField(auto_now_add=True)
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    actor_label = models.CharField(max_length=100, help_text="user name, or the system component that acted")
    action = models.CharField(max_length=40)
    session = models.ForeignKey("trading.TradingSession", null=True, blank=True, on_delete=models.CASCADE)
    reason = models.TextField(blank=True)
    detail = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-ts"]

    def __str__(self) -> str:
        return f"{self.ts:%Y-%m-%d %H:%M:%S} {self.actor_label} {self.action}"


class GlobalKillSwitch(models.Model):
    """One row: the platform-wide switch. HALTED stops every session's order flow until an operator re-arms."""

    class State(models.TextChoices):
        ARMED = "armed"  # normal operation
        REDUCING = "reducing"
        HALTED = "halted"

    singleton = models.BooleanField(default=True, unique=True, editable=False)
    state = models.CharField(max_length=10, choices=State.choices, default=State.ARMED)
    reason = models.TextField(blank=True)
    changed_at = models.DateTimeField(auto_now=True)
    changed_by = models.CharField(max_length=100, blank=True)

    def __str__(self) -> str:
        return f"global kill switch: {self.state}"

    @classmethod
    def current(cls) -> GlobalKillSwitch:
        obj, _ = cls.objects.get_or_create(singleton=True)
        return obj


class ParameterVersion(models.Model):
    """One version of a session's parameter set: the full ``params`` JSON as it stood after a change.

    Version 1 is the session's parameters at creation; each change or revert through :mod:`apps.control.params`
    adds the next version, with who, when, why and the ``changes`` ``{dotted.field: [old, new]}`` (effective
    values, engine defaults counted). The session's current number is ``TradingSession.params_version``, which
    the quoting loop reads on every step with its status.
    """

    session = models.ForeignKey("trading.TradingSession", on_delete=models.CASCADE, related_name="param_versions")
    version = models.PositiveIntegerField()
    params = models.JSONField(default=dict)
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    actor_label = models.CharField(max_length=100, help_text="user name, or the system component that acted")
    ts = models.DateTimeField(auto_now_add=True)
    reason = models.TextField(blank=True)
    changes = models.JSONField(default=dict, blank=True, help_text="{dotted.field: [old, new]}")
    reverted_from = models.PositiveIntegerField(
        null=True, blank=True, help_text="the earlier version this one restores, when it is a revert"
    )

    class Meta:
        ordering = ["session", "-version"]
        constraints = [
            models.UniqueConstraint(fields=["session", "version"], name="param_version_unique_per_session"),
        ]

    def __str__(self) -> str:
        return f"session #{self.session_id} params v{self.version}"
