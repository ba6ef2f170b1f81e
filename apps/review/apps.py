from django.apps import AppConfig


class ReviewConfig(AppConfig):
    name = "apps.review"
    default_auto_field = "django.db.models.BigAutoField"
