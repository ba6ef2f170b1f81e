"""The Celery app. Workers: ``celery -A mmweb worker -Q quoting`` and ``-Q periodic``; ``celery -A mmweb beat``."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mmweb.settings")


class MMCelery(Celery):
    """Celery whose every broker connection (publisher, worker, beat) first starts the embedded Redis when
    ``REDIS_URL`` is unset. ``_connection`` is the one place ``connection_for_read``/``_for_write`` meet."""

    def _connection(self, url, *args, **kwargs):  # type: ignore[no-untyped-def]
        from django.conf import settings

        if getattr(settings, "EMBEDDED_REDIS", False):
            from mmweb import embedded

            embedded.ensure_redis_once()
        return super()._connection(url, *args, **kwargs)


app = MMCelery("mmweb")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
