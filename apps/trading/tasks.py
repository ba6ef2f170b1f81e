"""Celery entry points. Thin: take ids, call one service or loop, return a short outcome string."""

from __future__ import annotations

import logging

from celery import shared_task

logger = logging.getLogger(__name__)


@shared_task(name="apps.trading.tasks.run_quoting_session", acks_late=False, ignore_result=True)
def run_quoting_session(session_id: int) -> str:
    """Run one session's quoting loop for as long as it trades. A redelivery finds the lease held and exits."""
    from apps.trading.loop import QuotingLoop

    outcome = QuotingLoop(session_id).run()
    logger.info("run_quoting_session(%s): %s", session_id, outcome)
    return outcome


@shared_task(name="apps.trading.tasks.sweep_dead_sessions", ignore_result=True)
def sweep_dead_sessions() -> list[int]:
    """Dead-man's switch: a RUNNING session whose lease expired has no loop; cancel its orders and mark it."""
    from apps.trading.services import sweep_dead_sessions as sweep

    return sweep()
