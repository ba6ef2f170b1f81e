"""Celery entry points of the ops app. Thin: call one service."""

from __future__ import annotations

from celery import shared_task


@shared_task(name="apps.ops.tasks.evaluate_alerts", ignore_result=True)
def evaluate_alerts() -> list[int]:
    """The alert sweep (beat: every ``MM_ALERT_SWEEP_S``): ids of the alerts it raised."""
    from apps.ops.services import evaluate_alerts as sweep

    return sweep().raised
