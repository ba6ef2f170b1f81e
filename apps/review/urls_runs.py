"""URL routes of the review app's runs part (see apps/review/urls.py): backtests and sweeps from the browser."""

from django.urls import path

from apps.review import runs_views

urlpatterns: list = [
    path("backtests/", runs_views.backtests, name="backtests"),
    path("backtests/launch/", runs_views.launch_backtest, name="launch_backtest"),
    path("backtests/<int:run_id>/", runs_views.backtest_run, name="backtest_run"),
    path("sweeps/launch/", runs_views.launch_sweep, name="launch_sweep"),
    path("sweeps/<int:sweep_id>/", runs_views.sweep, name="sweep"),
    path("sweeps/<int:sweep_id>/results/", runs_views.sweep_results, name="sweep_results"),
]
