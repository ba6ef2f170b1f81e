from __future__ import annotations

from django.contrib import admin

from apps.marketdata.models import ImportFile, ImportRun, Instrument, Quarantine


@admin.register(Instrument)
class InstrumentAdmin(admin.ModelAdmin):
    list_display = ("venue", "symbol", "kind", "tick_size", "lot_size", "contract_multiplier")
    search_fields = ("venue", "symbol")


class ImportFileInline(admin.TabularInline):
    model = ImportFile
    extra = 0
    fields = ("path", "sha256", "lines", "inserted", "duplicates", "quarantined", "clock_offset_ms", "rows_per_s")
    readonly_fields = fields
    can_delete = False


@admin.register(ImportRun)
class ImportRunAdmin(admin.ModelAdmin):
    list_display = ("id", "started_at", "fmt", "instrument", "db_mode", "status")
    list_filter = ("status", "fmt", "db_mode")
    inlines = (ImportFileInline,)


@admin.register(Quarantine)
class QuarantineAdmin(admin.ModelAdmin):
    list_display = ("path", "line_no", "reason", "detail", "created_at")
    list_filter = ("reason",)
    search_fields = ("path", "raw", "detail")
    readonly_fields = ("import_file", "file_sha256", "path", "line_no", "reason", "detail", "raw", "created_at")
