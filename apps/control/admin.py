from django.contrib import admin

from apps.control.models import AuditEvent
from apps.trading.admin import ReadOnlyAdmin


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    """The audit trail is append-only, written by the services; the admin shows it and changes nothing."""

    list_display = ("ts", "actor_label", "action", "session", "reason")
    list_filter = ("action",)
