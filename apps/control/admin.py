import json

from django import forms
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html

from apps.control.models import AuditEvent
from apps.control.permissions import Role, can_admin, role_of
from apps.trading.admin import ReadOnlyAdmin
from apps.trading.models import TradingSession


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


class SessionAdminForm(forms.ModelForm):
    """The session's own fields, plus a parameter change that goes through ``apps.control.params.change`` (the same
    service as the console's parameters page: validated by the engine, versioned, audited, applied by the running
    loop). The stored ``params`` JSON itself is never edited here."""

    param_changes = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
        label="parameter changes",
        help_text='JSON of dotted fields, e.g. {"strategy.gamma": 6000, "risk.drawdown.max_drawdown_frac": 0.03}; '
        "null restores the engine default. Leave empty to change nothing.",
    )
    param_reason = forms.CharField(required=False, max_length=500, label="why (required with a change)")

    class Meta:
        model = TradingSession
        fields = ("name",)

    def clean(self) -> dict:
        from apps.control.audit import check_reason
        from apps.control.services import ControlError

        data = super().clean()
        raw = (data.get("param_changes") or "").strip()
        data["changes"] = None
        if not raw:
            return data
        try:
            changes = json.loads(raw)
        except json.JSONDecodeError as exc:
            self.add_error("param_changes", f"not JSON: {exc.msg} at character {exc.pos}")
            return data
        if not isinstance(changes, dict) or not changes:
            self.add_error("param_changes", 'must be a JSON object of dotted fields, e.g. {"strategy.gamma": 6000}')
            return data
        try:
            check_reason(data.get("param_reason", ""), required=True, what="a parameter change")
        except ControlError as exc:
            self.add_error("param_reason", str(exc))
            return data
        data["changes"] = changes
        return data


@admin.register(TradingSession)
class TradingSessionAdmin(admin.ModelAdmin):
    """Sessions are created on the console's overview (which validates them and queues their loop), not here.
    Parameters change through :mod:`apps.control.params`, from this form or the console's parameters page."""

    form = SessionAdminForm
    list_display = ("id", "name", "mode", "instrument", "status", "params_version", "started_at", "heartbeat_at")
    readonly_fields = (
        "mode",
        "feed",
        "instrument",
        "status",
        "status_reason",
        "seed",
        "params",
        "params_version",
        "parameters_page",
        "lease_owner",
        "lease_expires_at",
        "heartbeat_at",
        "last_state",
    )
    fieldsets = (
        (None, {"fields": ("name", "mode", "feed", "instrument", "status", "status_reason", "seed")}),
        ("Parameters", {"fields": ("params", "params_version", "parameters_page", "param_changes", "param_reason")}),
        ("Loop", {"fields": ("lease_owner", "lease_expires_at", "heartbeat_at", "last_state")}),
    )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # the overview's start form creates a session (validated, audited, loop queued)

    @admin.display(description="console page")
    def parameters_page(self, obj: TradingSession) -> str:
        url = reverse("dashboard:parameters", args=[obj.pk])
        return format_html('<a href="{}">the parameters page</a>: the form, every version, one-click revert', url)

    def save_model(self, request: HttpRequest, obj: TradingSession, form: SessionAdminForm, change: bool) -> None:
        changes = form.cleaned_data.get("changes")
        if changes:  # first: a refusal raises before anything is written (changeform_view rolls back, see below)
            from apps.control.params import change as change_params
            from apps.control.services import Actor

            version = change_params(Actor.of(request.user), obj.pk, changes, form.cleaned_data["param_reason"])
            self.message_user(request, f"parameters saved as version {version.version}")
        obj.save(update_fields=["name"])

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        from apps.control.services import ControlError

        try:
            return super().changeform_view(request, object_id, form_url, extra_context)
        except ControlError as exc:  # refused by the engine's rules; the view's transaction rolled back
            from django.contrib import messages
            from django.http import HttpResponseRedirect

            messages.error(request, f"nothing saved: {exc}")
            return HttpResponseRedirect(request.path)
