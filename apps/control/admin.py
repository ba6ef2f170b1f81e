from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin
from django.http import HttpRequest

from apps.control.models import AuditEvent
from apps.control.permissions import Role, can_admin, role_of
from apps.trading.admin import ReadOnlyAdmin


def _admin_role_only(request: HttpRequest) -> bool:
    """The Django admin lets in the admin role only (a staff flag left on a viewer or operator opens nothing)."""
    return request.user.is_active and can_admin(request.user)


admin.site.has_permission = _admin_role_only  # the default site; it checks is_staff alone


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    """The audit trail is append-only, written by the services; the admin shows it and changes nothing."""

    list_display = ("ts", "actor_label", "action", "session", "reason")
    list_filter = ("action",)


User = get_user_model()
admin.site.unregister(User)


@admin.register(User)
class ConsoleUserAdmin(UserAdmin):
    """Django's user admin with the console role shown, and ``is_staff`` kept equal to "is an admin" whatever groups
    an admin ticks (so the admin's own login form, which asks for staff, agrees with the role)."""

    list_display = ("username", "email", "console_role", "is_active", "is_superuser", "last_login")
    list_filter = ("groups", "is_active", "is_superuser")

    @admin.display(description="console role")
    def console_role(self, user) -> str:
        return role_of(user).label

    def save_related(self, request: HttpRequest, form, formsets, change: bool) -> None:
        super().save_related(request, form, formsets, change)
        user = form.instance
        user.__dict__.pop("_mm_role", None)
        staff = role_of(user) is Role.ADMIN
        if user.is_staff != staff:
            user.is_staff = staff
            user.save(update_fields=["is_staff"])
