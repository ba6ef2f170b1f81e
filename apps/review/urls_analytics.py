"""URL routes of the review app's analytics part (see apps/review/urls.py)."""

urlpatterns: list = []
