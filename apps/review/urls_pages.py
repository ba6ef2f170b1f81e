"""URL routes of the review app's pages part (see apps/review/urls.py)."""

from django.urls import path

from apps.review import views

urlpatterns = [
    path("sessions/<int:session_id>/", views.review_page, name="session"),
    path("sessions/<int:session_id>/series.json", views.series_json, name="series"),
    path("sessions/<int:session_id>/decision.json", views.decision_json, name="decision"),
    path("sessions/<int:session_id>/decision/", views.decision_partial, name="decision_partial"),
    path("sessions/<int:session_id>/export/<str:table>.<str:fmt>", views.export_view, name="export"),
    path("compare/", views.compare_view, name="compare"),
]
