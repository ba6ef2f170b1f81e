"""URL routes of the review app's calibration part (see apps/review/urls.py)."""

from django.urls import path

from apps.review import calibration_views as v

urlpatterns: list = [
    path("calibration/", v.calibration_list, name="calibration-list"),
    path("calibration/<int:run_id>/", v.calibration_detail, name="calibration-detail"),
    path("calibration/<int:run_id>/apply/", v.calibration_apply, name="calibration-apply"),
    path("calibration/<int:run_id>/reject/", v.calibration_reject, name="calibration-reject"),
]
