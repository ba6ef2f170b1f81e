"""Celery tasks of the review app: take ids, call one service."""

from __future__ import annotations

from celery import shared_task


@shared_task(name="apps.review.tasks.run_calibration", ignore_result=True)
def run_calibration(run_id: int) -> None:
    from apps.review.calibration_services import execute

    execute(run_id)
