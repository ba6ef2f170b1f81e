"""Backtest throughput on the shared Binance USD-M recording (full L2 depth, queue model), and peak memory.

Parse time is measured apart from the backtest. The backtest is the whole engine loop: merge(feed, venue),
the strategy, the paper venue with its L2 book and queue model, and the P&L ledger. It runs three times on
the same parsed events: GLFT (StrategyCore), the fixed-spread baseline (no estimators) and a null strategy
that never quotes (the floor set by the driver, the venue's book and the ledger). Memory is the process's
peak RSS (``resource.getrusage``), which includes the parsed events held in memory.
"""

from __future__ import annotations

import resource
import time
from typing import Any

from apps.engine.core import StrategyCore, StrategyParams
from apps.engine.execution.orders import OrderTracker
from apps.engine.execution.paper import PaperVenue, PaperVenueConfig
from apps.engine.simulation.backtest import EngineLoop
from apps.engine.simulation.baselines import FixedSpreadParams, FixedSpreadQuoter
from apps.marketdata.parsers import ParseStats, Quarantined, parse_file
from benchmarks.common import USDM_BTCUSDT_RAW

DATA = USDM_BTCUSDT_RAW
TARGET_EVENTS_PER_S = 250_000
TICK, LOT = 0.1, 0.001


class _Null:
    """Never quotes: measures everything but the strategy."""

    def __init__(self) -> None:
        self.tracker = OrderTracker()
        self.last_decision = None
        self.decisions_changed = False
        self.params = None

    def on_event(self, event: Any) -> list:
        return []

    def halt(self, reason: str) -> list:
        return []

    def state(self) -> dict:
        return {}


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux reports KiB


def run() -> list[dict[str, Any]]:
    if not DATA.exists():
        return [{"name": "skipped", "value": "", "unit": "", "note": f"no shared data at {DATA}"}]
    rss0 = _rss_mb()
    stats = ParseStats()
    t0 = time.perf_counter()
    events = [e for e in parse_file("binance-raw", DATA, stats=stats) if not isinstance(e, Quarantined)]
    parse_s = time.perf_counter() - t0
    levels = sum(len(e.bids) + len(e.asks) for e in events if hasattr(e, "bids"))
    rss_parsed = _rss_mb()
    venue_cfg = PaperVenueConfig(TICK, LOT, entry_latency_ns=5_000_000, response_latency_ns=5_000_000)
    rows: list[dict[str, Any]] = [
        {"name": "market events (msgs)", "value": len(events), "unit": "events", "note": f"{levels:,} L2 levels"},
        {
            "name": "parse",
            "value": len(events) / parse_s,
            "unit": "events/s",
            "note": f"{parse_s:.2f} s, not in the backtest",
        },
    ]
    strategies = {
        "glft": lambda: StrategyCore(StrategyParams(), tick_size=TICK, lot_size=LOT),
        "fixed": lambda: FixedSpreadQuoter(FixedSpreadParams(half_spread_bps=1.0), tick_size=TICK, lot_size=LOT),
        "null": _Null,
    }
    for name, make in strategies.items():
        loop = EngineLoop(make(), PaperVenue(venue_cfg, seed=1), name=name)
        t0 = time.perf_counter()
        result = loop.run(events)
        wall = time.perf_counter() - t0
        rate = len(events) / wall
        row = {
            "name": f"backtest {name}",
            "value": rate,
            "unit": "events/s",
            "note": f"{wall:.1f} s, {len(result.fills)} fills, {rate / TARGET_EVENTS_PER_S:.1%} of target",
        }
        if name == "glft":
            row["target"] = f">= {TARGET_EVENTS_PER_S:,}"
        rows.append(row)
    rows.append(
        {
            "name": "peak RSS",
            "value": _rss_mb(),
            "unit": "MB",
            "note": f"{rss0:.0f} MB before parsing, {rss_parsed:.0f} MB with the events parsed",
        }
    )
    return rows
