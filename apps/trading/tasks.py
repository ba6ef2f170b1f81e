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
