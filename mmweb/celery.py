"""The Celery app. Workers: ``celery -A mmweb worker -Q quoting`` and ``-Q periodic``; ``celery -A mmweb beat``."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mmweb.settings")

app = Celery("mmweb")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
