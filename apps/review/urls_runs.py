"""URL routes of the review app's runs part (see apps/review/urls.py)."""

urlpatterns: list = []
