"""A backtest's progress, pushed to the browsers that watch it (producer side; the consumer only forwards).

Two Channels groups carry the same messages: ``backtest.<run_id>`` (the run's page, ``/ws/backtests/<run_id>/``)
and ``backtests`` (the list page, ``/ws/backtests/``). A message is ``{"type": "run.progress", "event": {...}}``
with the event one of

* ``{"kind": "progress", "run_id", "sweep_id", "status": "running", "processed", "total", "elapsed_s", "eta_s"}``:
  events replayed so far out of the run's total, wall seconds since the replay started, and the time left at the
  rate so far (None before the first events). At most :data:`MAX_PER_S` per run, plus the first and the last;
* ``{"kind": "status", "run_id", "sweep_id", "status": "done"|"failed", "session_id", "review_url", "error",
  "summary": {...}}``: the run's end, always sent (see :func:`run_state`).

A broken channel layer (Redis away) never fails the backtest: the page then shows the state it reads on load.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from apps.trading.models import BacktestRun

logger = logging.getLogger(__name__)

ALL_RUNS_GROUP = "backtests"
MAX_PER_S = 4.0
SUMMARY_KEYS = ("pnl_total", "fills_buy", "fills_sell", "max_abs_inventory", "sharpe_per_interval", "max_drawdown")


def run_group(run_id: int) -> str:
    return f"backtest.{run_id}"


def review_url(session_id: int | None) -> str | None:
    """The session review page (built by the review pages part; a plain path so this module needs no URL name)."""
    return None if session_id is None else f"/review/sessions/{session_id}/"


def _send(run_id: int, event: dict[str, Any]) -> None:
    try:
        layer = get_channel_layer()
        message = {"type": "run.progress", "event": event}
        async_to_sync(layer.group_send)(run_group(run_id), message)
        async_to_sync(layer.group_send)(ALL_RUNS_GROUP, message)
    except Exception as exc:  # noqa: BLE001 - a push that fails must not fail the backtest (see module doc)
        logger.warning("backtest %s: progress not pushed (%s: %s)", run_id, type(exc).__name__, exc)


class ProgressPublisher:
    """``publisher(processed, total)``: pushes a ``progress`` event at most :data:`MAX_PER_S` times a second (the
    first call and the one that reaches ``total`` always go out). Wall time comes from ``clock`` (seconds)."""

    def __init__(self, run_id: int, sweep_id: int | None = None, *, max_per_s: float = MAX_PER_S, clock=None) -> None:
        self.run_id = run_id
        self.sweep_id = sweep_id
        self.min_gap_s = 1.0 / max_per_s
        self.clock = clock or time.monotonic
        self.t0: float | None = None
        self.last_sent: float | None = None
        self.sent = 0

    def __call__(self, processed: int, total: int) -> None:
        now = self.clock()
        if self.t0 is None:
            self.t0 = now
        final = processed >= total
        if not final and self.last_sent is not None and now - self.last_sent < self.min_gap_s:
            return
        self.last_sent = now
        self.sent += 1
        _send(self.run_id, self.event(processed, total, now - self.t0))

    def event(self, processed: int, total: int, elapsed_s: float) -> dict[str, Any]:
        eta_s = elapsed_s * (total - processed) / processed if processed > 0 else None
        return {
            "kind": "progress",
            "run_id": self.run_id,
            "sweep_id": self.sweep_id,
            "status": "running",
            "processed": processed,
            "total": total,
            "elapsed_s": round(elapsed_s, 3),
            "eta_s": None if eta_s is None else round(eta_s, 3),
        }


def run_state(run: BacktestRun) -> dict[str, Any]:
    """What a page needs to show a run now (also the ``status`` event at its end)."""
    summary = run.summary or {}
    return {
        "kind": "status",
        "run_id": run.pk,
        "sweep_id": run.sweep_id,
        "status": run.status,
        "session_id": run.session_id,
        "review_url": review_url(run.session_id) if run.status == BacktestRun.Status.DONE else None,
        "error": run.error,
        "summary": {k: summary.get(k) for k in SUMMARY_KEYS},
    }


def publish_end(run_id: int) -> None:
    """Push the run's final state (read from the database after the run stored it)."""
    run = BacktestRun.objects.filter(pk=run_id).first()
    if run is not None:
        _send(run_id, run_state(run))
