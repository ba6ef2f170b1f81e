from django.contrib import admin

from apps.trading.models import FillRecord, Order, TradingSession


@admin.register(TradingSession)
class TradingSessionAdmin(admin.ModelAdmin):
    list_display = ("id", "name", "mode", "instrument", "status", "started_at", "heartbeat_at")
    readonly_fields = ("status", "status_reason", "lease_owner", "lease_expires_at", "heartbeat_at", "last_state")


@admin.register(Order)
class OrderAdmin(admin.ModelAdmin):
    list_display = ("session", "client_order_id", "side", "price", "size", "filled", "status", "updated_ts")
    list_filter = ("status",)


@admin.register(FillRecord)
class FillAdmin(admin.ModelAdmin):
    list_display = ("session", "ts", "side", "price", "size", "fee", "liquidity")
