from django.contrib import admin
from django.http import HttpRequest

from apps.trading.models import (
    BacktestRun,
    EstimatorSnapshotRecord,
    FillRecord,
    Order,
    OrderEventRecord,
    PnlPoint,
    QuoteDecisionRecord,
    RiskEventRecord,
    SweepRun,
)

# TradingSession's admin is in apps/control/admin.py: its parameters change only through apps.control.params.


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


@admin.register(Order)
class OrderAdmin(ReadOnlyAdmin):
    list_display = ("session", "client_order_id", "side", "price", "size", "filled", "status", "updated_ts")
    list_filter = ("status",)


@admin.register(FillRecord)
class FillAdmin(ReadOnlyAdmin):
    list_display = ("session", "ts", "side", "price", "size", "fee", "liquidity")


# The rest of the record: written by the loop, the writer and the backtest runner, read here, changed by nobody.


@admin.register(QuoteDecisionRecord)
class QuoteDecisionAdmin(ReadOnlyAdmin):
    list_display = ("session", "ts", "mid", "bid_px", "ask_px", "bid_size", "ask_size")
    list_select_related = ("session",)


@admin.register(OrderEventRecord)
class OrderEventAdmin(ReadOnlyAdmin):
    list_display = ("session", "ts", "client_order_id", "kind")
    list_filter = ("kind",)
    list_select_related = ("session",)


@admin.register(RiskEventRecord)
class RiskEventAdmin(ReadOnlyAdmin):
    list_display = ("session", "ts", "rule", "action")
    list_filter = ("action",)
    list_select_related = ("session",)


@admin.register(EstimatorSnapshotRecord)
class EstimatorSnapshotAdmin(ReadOnlyAdmin):
    list_display = ("session", "ts", "name", "value", "std", "state")
    list_filter = ("name", "state")
    list_select_related = ("session",)


@admin.register(PnlPoint)
class PnlPointAdmin(ReadOnlyAdmin):
    list_display = ("session", "ts", "total", "spread_capture", "adverse_selection", "inventory", "fees", "funding")
    list_select_related = ("session",)


@admin.register(BacktestRun)
class BacktestRunAdmin(ReadOnlyAdmin):
    list_display = ("id", "strategy", "data_format", "status", "created_at", "finished_at")
    list_filter = ("status", "strategy")


@admin.register(SweepRun)
class SweepRunAdmin(ReadOnlyAdmin):
    list_display = ("id", "name", "strategy", "status", "n_points", "created_at")
    list_filter = ("status",)
