"""URL routes of the review app's pages part (see apps/review/urls.py)."""

urlpatterns: list = []
