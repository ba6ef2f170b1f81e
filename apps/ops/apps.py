from django.apps import AppConfig


class OpsConfig(AppConfig):
    name = "apps.ops"
    label = "ops"
    verbose_name = "Operations: alerts, metrics, logs"

    def ready(self) -> None:
        from celery.signals import setup_logging

        # A Celery worker or beat replaces the root logger's handlers with its own text format unless someone
        # answers this signal: keep Django's LOGGING (JSON lines with session ids) in the workers too.
        setup_logging.connect(_keep_django_logging, weak=False, dispatch_uid="apps.ops.keep_django_logging")


def _keep_django_logging(**_: object) -> None:
    import logging.config

    from django.conf import settings

    logging.config.dictConfig(settings.LOGGING)
