"""URL routes of the review app's calibration part (see apps/review/urls.py)."""

urlpatterns: list = []
