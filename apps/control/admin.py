from django.contrib import admin

from apps.control.models import AuditEvent


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    list_display = ("ts", "actor_label", "action", "session", "reason")
    list_filter = ("action",)
    readonly_fields = ("ts", "actor", "actor_label", "action", "session", "reason", "detail")

    def has_add_permission(self, request) -> bool:  # the audit trail is append-only, written by services
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False
