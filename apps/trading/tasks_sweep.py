"""Celery entry points for backtests and parameter sweeps. Thin: take an id, call one service.

Routing: queued explicitly on :data:`apps.trading.backtest.SWEEP_QUEUE` ("periodic"). A worker must import
this module (``celery worker -I apps.trading.tasks_sweep`` or the app's ``include``) because autodiscovery
only finds ``apps.trading.tasks``.
"""

from __future__ import annotations

import logging

from celery import shared_task

logger = logging.getLogger(__name__)


@shared_task(name="apps.trading.tasks_sweep.run_backtest_point", acks_late=False, ignore_result=True)
def run_backtest_point(run_id: int) -> str:
    """Run one stored backtest (a single run from the browser, or one sweep point) and store its results.

    Its progress and its end are pushed to the browsers that watch it (:mod:`apps.review.progress`)."""
    from apps.review.progress import ProgressPublisher, publish_end
    from apps.trading.backtest import execute_run_by_id
    from apps.trading.models import BacktestRun

    sweep_id = BacktestRun.objects.filter(pk=run_id).values_list("sweep_id", flat=True).first()
    status = execute_run_by_id(run_id, progress=ProgressPublisher(run_id, sweep_id))
    publish_end(run_id)
    logger.info("run_backtest_point(%s): %s", run_id, status)
    return status
