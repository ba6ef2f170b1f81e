"""What a quoting loop counts for Prometheus, as plain numbers it saves with its state.

The loop runs in a Celery worker and ``/metrics`` is served by daphne, so the loop cannot own a Prometheus
registry that a scrape would see. Instead the recording sink feeds a :class:`LoopMetrics`, the loop saves
:meth:`LoopMetrics.snapshot` into ``TradingSession.last_state["metrics"]`` on every heartbeat, and
:mod:`apps.ops.collector` renders the saved numbers at scrape time. Counters start from zero with each loop run
(a restart is a counter reset, which Prometheus' ``rate()`` handles).

Pure Python: no Django, no prometheus_client (the trading app imports it).

Latencies, in seconds:

* ``event_to_decision``: wall-clock time when the recorder sees a changed quote decision minus the local
  timestamp of the market event that caused it (the event's arrival at our process). It includes the time an
  event waits for the loop's next step.
* ``decision_to_ack``: the venue's acknowledgement (its local timestamp) minus the time the order was sent, which
  is the time of the decision that placed it.
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Callable
from typing import Any

# Histogram upper bounds, seconds (Prometheus "le"); +Inf is implicit.
EVENT_TO_DECISION_BUCKETS_S = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
DECISION_TO_ACK_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
COUNTERS = ("quotes", "orders", "cancels", "fills", "rejects")
_MAX_PENDING = 10_000  # sent orders waiting for an ack; a venue that never answers must not grow this for ever


class Histogram:
    """Fixed buckets: per-bucket counts (not cumulative), their sum and count."""

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last one is +Inf
        self.sum = 0.0
        self.count = 0

    def observe(self, value_s: float) -> None:
        value_s = max(value_s, 0.0)
        self.counts[bisect.bisect_left(self.bounds, value_s)] += 1
        self.sum += value_s
        self.count += 1

    def snapshot(self) -> dict[str, Any]:
        return {"bounds": list(self.bounds), "counts": list(self.counts), "sum": self.sum, "count": self.count}


class LoopMetrics:
    """Counters and latency histograms of one loop run, fed by :class:`apps.trading.recording.RecorderSink`."""

    def __init__(self, clock: Callable[[], int] = time.time_ns) -> None:
        self.clock = clock
        self.counts = dict.fromkeys(COUNTERS, 0)
        self.event_to_decision = Histogram(EVENT_TO_DECISION_BUCKETS_S)
        self.decision_to_ack = Histogram(DECISION_TO_ACK_BUCKETS_S)
        self._sent_ns: dict[str, int] = {}

    def on_decision(self, event_ts_ns: int) -> None:
        self.counts["quotes"] += 1
        self.event_to_decision.observe((self.clock() - event_ts_ns) / 1e9)

    def on_place(self, client_order_id: str, ts_ns: int) -> None:
        self.counts["orders"] += 1
        if len(self._sent_ns) < _MAX_PENDING:
            self._sent_ns[client_order_id] = ts_ns

    def on_cancel(self) -> None:
        self.counts["cancels"] += 1

    def on_ack(self, client_order_id: str, ts_ns: int) -> None:
        sent = self._sent_ns.pop(client_order_id, None)
        if sent is not None:
            self.decision_to_ack.observe((ts_ns - sent) / 1e9)

    def on_fill(self) -> None:
        self.counts["fills"] += 1

    def on_reject(self, client_order_id: str) -> None:
        self.counts["rejects"] += 1
        self._sent_ns.pop(client_order_id, None)

    def snapshot(self) -> dict[str, Any]:
        """JSON-safe numbers for ``last_state["metrics"]``."""
        return {
            **self.counts,
            "event_to_decision_s": self.event_to_decision.snapshot(),
            "decision_to_ack_s": self.decision_to_ack.snapshot(),
        }
