from django.contrib import admin
from django.http import HttpRequest

from apps.trading.models import FillRecord, Order, TradingSession


class ReadOnlyAdmin(admin.ModelAdmin):
    """Viewable, never writable through the admin, superusers included: the quoting loop rebuilds a session's
    position from its fills, and orders and audit rows are the record of what happened. Only the services and
    the loop write them, with an audit trail."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(TradingSession)
class TradingSessionAdmin(admin.ModelAdmin):
    list_display = ("id", "name", "mode", "instrument", "status", "started_at", "heartbeat_at")
    readonly_fields = ("status", "status_reason", "lease_owner", "lease_expires_at", "heartbeat_at", "last_state")


@admin.register(Order)
class OrderAdmin(ReadOnlyAdmin):
    list_display = ("session", "client_order_id", "side", "price", "size", "filled", "status", "updated_ts")
    list_filter = ("status",)


@admin.register(FillRecord)
class FillAdmin(ReadOnlyAdmin):
    list_display = ("session", "ts", "side", "price", "size", "fee", "liquidity")
