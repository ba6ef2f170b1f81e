"""URL routes of the review app's estimators part (see apps/review/urls.py)."""

from django.urls import path

from apps.review import estimator_views

urlpatterns = [
    path("sessions/<int:session_id>/estimators/", estimator_views.estimators, name="estimators"),
    path("sessions/<int:session_id>/estimators.json", estimator_views.estimators_json, name="estimators_json"),
]
