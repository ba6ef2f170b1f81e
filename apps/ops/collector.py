"""The Prometheus collector behind ``/metrics``: reads what the quoting loops saved, at scrape time.

Each quoting loop saves its counters and latency histograms (:mod:`apps.ops.counters`) with its state on every
heartbeat; this collector turns the saved numbers of every live session into metric families, with the gauges
read from the same state (inventory, P&L, estimator states, feed age) and the kill switches from the database.
All per-session metrics carry the label ``session_id``. See docs/console-ops.md for the list.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from apps.control.models import GlobalKillSwitch
from apps.ops.models import Alert
from apps.ops.rules import ESTIMATORS, LIVE_STATUSES
from apps.trading.models import TradingSession

ESTIMATOR_STATES = ("warming", "ok", "stale", "failed")
SWITCH_STATES = ("armed", "reducing", "halted")
SESSION_STATUSES = tuple(TradingSession.Status.values)
COUNTER_HELP = {
    "quotes": "Quote decisions that changed our quotes",
    "orders": "Orders sent to the venue",
    "cancels": "Cancel requests sent to the venue (cancel and cancel-all)",
    "fills": "Fills received",
    "rejects": "Orders or requests the venue rejected",
}
HISTOGRAMS = {
    "event_to_decision_s": ("mm_event_to_decision_seconds", "Market event arrival to the quote decision it caused"),
    "decision_to_ack_s": ("mm_decision_to_ack_seconds", "Order sent (its decision) to the venue's acknowledgement"),
}


def _histogram_buckets(h: dict[str, Any]) -> list[tuple[str, float]]:
    cumulative, out = 0, []
    for bound, count in zip([*h["bounds"], float("inf")], h["counts"], strict=True):
        cumulative += count
        out.append(("+Inf" if bound == float("inf") else repr(float(bound)), cumulative))
    return out


class ConsoleCollector(Collector):
    def collect(self) -> Iterator[Metric]:
        now_s = time.time()
        sessions = list(
            TradingSession.objects.filter(status__in=(*LIVE_STATUSES, TradingSession.Status.CREATED))
            .exclude(mode=TradingSession.Mode.BACKTEST)
            .only("id", "status", "heartbeat_at", "last_state")
        )
        switch = GlobalKillSwitch.current().state
        g = GaugeMetricFamily("mm_global_kill_switch", "Global kill switch: 1 for its current state", labels=["state"])
        for st in SWITCH_STATES:
            g.add_metric([st], 1.0 if switch == st else 0.0)
        yield g

        status = GaugeMetricFamily(
            "mm_session_status", "A live session's own status: 1 for its current one", labels=["session_id", "status"]
        )
        halted = GaugeMetricFamily(
            "mm_session_kill_switch", "1 when the session's own kill switch is latched (halted)", labels=["session_id"]
        )
        counters = {k: CounterMetricFamily(f"mm_{k}", h, labels=["session_id"]) for k, h in COUNTER_HELP.items()}
        hists = {k: HistogramMetricFamily(name, h, labels=["session_id"]) for k, (name, h) in HISTOGRAMS.items()}
        inventory = GaugeMetricFamily("mm_inventory", "Position, base-asset units (+ long)", labels=["session_id"])
        pnl = GaugeMetricFamily("mm_pnl", "Mark-to-mid P&L, quote currency", labels=["session_id"])
        open_orders = GaugeMetricFamily("mm_open_orders", "Our orders resting at the venue", labels=["session_id"])
        est = GaugeMetricFamily(
            "mm_estimator_state",
            "Estimator state: 1 for its current one",
            labels=["session_id", "estimator", "state"],
        )
        feed_age = GaugeMetricFamily(
            "mm_feed_age_seconds", "Seconds since the latest market event the loop saw", labels=["session_id"]
        )
        beat_age = GaugeMetricFamily(
            "mm_heartbeat_age_seconds", "Seconds since the quoting loop's last heartbeat", labels=["session_id"]
        )
        for s in sessions:
            sid = str(s.pk)
            state = s.last_state or {}
            for st in SESSION_STATUSES:
                status.add_metric([sid, st], 1.0 if s.status == st else 0.0)
            halted.add_metric([sid], 1.0 if s.status == TradingSession.Status.HALTED else 0.0)
            saved = state.get("metrics") or {}
            for k, fam in counters.items():
                fam.add_metric([sid], float(saved.get(k, 0)))
            for k, fam in hists.items():
                h = saved.get(k)
                if h:
                    fam.add_metric([sid], _histogram_buckets(h), sum_value=float(h["sum"]))
            for fam, key in ((inventory, "inventory"), (pnl, "pnl"), (open_orders, "open_orders")):
                if state.get(key) is not None:
                    fam.add_metric([sid], float(state[key]))
            for name, _symbol, key in ESTIMATORS:
                current = state.get(key)
                if current is not None:
                    for st in ESTIMATOR_STATES:
                        est.add_metric([sid, name, st], 1.0 if current == st else 0.0)
            if state.get("ts_ns"):
                feed_age.add_metric([sid], max(now_s - state["ts_ns"] / 1e9, 0.0))
            if s.heartbeat_at is not None:
                beat_age.add_metric([sid], max(now_s - s.heartbeat_at.timestamp(), 0.0))
        yield status
        yield halted
        yield from counters.values()
        yield from hists.values()
        yield from (inventory, pnl, open_orders, est, feed_age, beat_age)

        alerts = GaugeMetricFamily("mm_open_alerts", "Alerts not yet acknowledged", labels=["rule", "severity"])
        open_counts: dict[tuple[str, str], int] = {}
        for rule, severity in Alert.objects.filter(acknowledged_at__isnull=True).values_list("rule", "severity"):
            open_counts[(rule, severity)] = open_counts.get((rule, severity), 0) + 1
        for (rule, severity), n in sorted(open_counts.items()):
            alerts.add_metric([rule, severity], float(n))
        yield alerts
