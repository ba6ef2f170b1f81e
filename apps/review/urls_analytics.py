"""URL routes of the review app's analytics part (see apps/review/urls.py)."""

from django.urls import path

from apps.review import analytics_views as views

urlpatterns = [
    path("sessions/<int:session_id>/analytics/", views.analytics, name="analytics"),
    path("sessions/<int:session_id>/analytics/markouts.json", views.markouts, name="markouts"),
    path("sessions/<int:session_id>/analytics/fill-rate.json", views.fill_rate, name="fill_rate"),
    path("sessions/<int:session_id>/analytics/spreads.json", views.spreads, name="spreads"),
    path("sessions/<int:session_id>/analytics/kappa.json", views.kappa_diagnostics, name="kappa_diagnostics"),
]
