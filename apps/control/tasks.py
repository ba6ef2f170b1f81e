"""Celery entry points of the control layer. Thin: call one service."""

from __future__ import annotations

from celery import shared_task


# The name is the one the beat schedule has always used (it lived in apps.trading before the lifecycle moved here).
@shared_task(name="apps.trading.tasks.sweep_dead_sessions", ignore_result=True)
def sweep_dead_sessions() -> list[int]:
    """Dead-man's switch: a session whose lease expired has no loop; cancel its orders and mark it."""
    from apps.control.deadman import sweep_dead_sessions as sweep

    return sweep()
