"""URL routes of the review app's estimators part (see apps/review/urls.py)."""

urlpatterns: list = []
