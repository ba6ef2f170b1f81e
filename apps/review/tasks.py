"""Celery tasks of the review app: take ids, call one service."""

from __future__ import annotations

from celery import shared_task


@shared_task(name="apps.review.tasks.run_calibration", ignore_result=True)
def run_calibration(run_id: int) -> None:
    from apps.review.calibration_services import execute

    execute(run_id)


@shared_task(name="apps.review.tasks.fold_decisions", ignore_result=True)
def fold_decisions() -> None:
    """Beat: keep the review analytics' decision aggregates built as sessions record (off the request path)."""
    from apps.review.decision_aggregates import fold_recent

    fold_recent()
