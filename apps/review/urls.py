"""Review, analysis, backtests-from-the-browser and calibration (issue 18), under ``/review/``. Each part has its
own URL module so they can grow independently; every view is marked read_view / action_view / admin_view."""

from django.urls import include, path

app_name = "review"
urlpatterns = [
    path("", include("apps.review.urls_pages")),  # the review page, chart data, decisions, export, compare
    path("", include("apps.review.urls_analytics")),  # markouts, fill rate, spreads, κ diagnostics
    path("", include("apps.review.urls_estimators")),  # estimator histories
    path("", include("apps.review.urls_runs")),  # backtests and sweeps from the browser
    path("", include("apps.review.urls_calibration")),  # calibration proposals
]
