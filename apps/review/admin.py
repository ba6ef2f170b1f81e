from django.contrib import admin

from apps.review.models import CalibrationRun


@admin.register(CalibrationRun)
class CalibrationRunAdmin(admin.ModelAdmin):
    list_display = ("id", "instrument", "source", "status", "created_by", "created_at")
    list_filter = ("status",)
    readonly_fields = ("estimates", "scores", "plots", "summary")
