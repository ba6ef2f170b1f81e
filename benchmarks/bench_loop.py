"""Paper venue and driver: the pure-Python references against the compiled ones (issue 15, phase 2 items 2 and 5).

Two measures (docs/compiled-core.md), both with everything else identical (the compiled L2 book, fill model and
whatever the strategy core runs):

- **The backtest, reference against compiled venue and driver, in one run.** The GLFT backtest of
  ``bench_fillmodel`` (strategy core, paper venue with L2 level book and queue model, ledger; 5 ms latencies) over
  every event of the shared USD-M BTCUSDT recording, ``ROUNDS`` times with ``PyPaperVenue`` + ``PyEngineLoop`` and as
  many with ``PaperVenue`` + ``EngineLoop`` (the compiled classes), alternating, so both see the same machine load;
  the best round of each and their ratio. The fills of every round must be the same, or the benchmark fails.
- **Instructions per market event under callgrind** on ``bench_instructions``' fixed slice and its ``backtest``
  subject (``benchmarks.anchor.ours.make_loop``: the session's risk rules and 10 ms latencies), built with each
  venue/driver pair: events 14,001-18,000 of the recording (two replay lengths, the difference / 4,000), and the
  ``pipeline`` subject on the same slice, so "backtest minus pipeline" (venue, ledger, risk rules, driver: the part
  compiled here) is given for both.
- **The venue and the driver alone**, the same way on the same slice: a strategy that rests one bid and one ask 10 %
  away from the market at its first book ticker and then does nothing (:class:`_Watcher`), no risk rules, so every
  measured event is a market event that touches none of our orders and the count is what the venue, the driver and
  the ledger cost for it (two resting orders walked on each book change).
"""

from __future__ import annotations

import os
import pickle
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import USDM_BTCUSDT_RAW, callgrind_instructions

BASE_DIR = Path(__file__).resolve().parent.parent
DATA = USDM_BTCUSDT_RAW
TICK, LOT = 0.1, 0.001
ROUNDS = 3
VARIANTS = ("reference", "compiled")


def _classes(variant: str) -> tuple[type, type]:
    from apps.engine.execution import paper
    from apps.engine.simulation import backtest

    if variant == "reference":
        return paper.PyPaperVenue, backtest.PyEngineLoop
    if not (paper.PAPER_COMPILED and backtest.DRIVER_COMPILED):
        raise RuntimeError("the compiled paper venue / driver is not selected (MM_PURE_PYTHON set, or not built)")
    return paper.PaperVenue, backtest.EngineLoop


def _events() -> list:
    from apps.marketdata.parsers import Quarantined, parse_file

    return [e for e in parse_file("binance-raw", DATA) if not isinstance(e, Quarantined)]


def _backtest(variant: str, events: list) -> tuple[float, int]:
    from apps.engine.core import StrategyCore, StrategyParams
    from apps.engine.execution.paper import PaperVenueConfig

    venue_cls, loop_cls = _classes(variant)
    cfg = PaperVenueConfig(TICK, LOT, entry_latency_ns=5_000_000, response_latency_ns=5_000_000)
    loop = loop_cls(StrategyCore(StrategyParams(), tick_size=TICK, lot_size=LOT), venue_cls(cfg, seed=1), name="glft")
    t0 = time.perf_counter()
    result = loop.run(events)
    return time.perf_counter() - t0, len(result.fills)


class _Watcher:
    """A strategy that rests a far bid and a far ask once and then only watches (the Strategy shape); its own cost
    per event is a type check."""

    def __init__(self) -> None:
        from apps.engine.execution.orders import OrderTracker
        from apps.engine.market.events import BestBidAsk

        self.tracker = OrderTracker()
        self.last_decision = None
        self.decisions_changed = False
        self._first = BestBidAsk  # None once the orders are placed

    def on_event(self, event: Any) -> list:
        if self._first is None or type(event) is not self._first:
            return []
        from apps.engine.market.events import PlaceOrder, Side

        self._first = None
        bid, ask = round(event.bid_px * 0.9, 1), round(event.ask_px * 1.1, 1)
        actions = [PlaceOrder("far-bid", Side.BUY, bid, LOT), PlaceOrder("far-ask", Side.SELL, ask, LOT)]
        self.tracker.on_actions(actions)
        return actions

    def halt(self, reason: str) -> list:
        return []

    def state(self) -> dict:
        return {}


def _watcher_loop(variant: str) -> Any:
    from apps.engine.execution.paper import PaperVenueConfig
    from apps.engine.simulation.backtest import BacktestConfig

    venue_cls, loop_cls = _classes(variant)
    cfg = PaperVenueConfig(TICK, LOT, entry_latency_ns=5_000_000, response_latency_ns=5_000_000)
    return loop_cls(_Watcher(), venue_cls(cfg, seed=1), BacktestConfig(keep_decisions=False), name="watcher")


def _callgrind_child(variant: str, path: str, warm: int, n: int, subject: str = "backtest") -> None:
    """Runs under valgrind: ``bench_instructions``' backtest subject with ``variant``'s venue and driver."""
    from benchmarks.anchor import ours
    from benchmarks.bench_instructions import _instrumentation
    from benchmarks.daystream import require_compiled

    require_compiled()
    with open(path, "rb") as f:
        events = pickle.load(f)  # noqa: S301 - our own file, written a moment ago by the parent
    if subject == "watcher":
        loop = _watcher_loop(variant)
    else:
        ours.PaperVenue, ours.EngineLoop = _classes(variant)  # the names make_loop builds the loop from
        loop = ours.make_loop()
    step = loop.on_market
    for ev in events[:warm]:
        step(ev)
    _instrumentation(True)
    for ev in events[warm : warm + n]:
        step(ev)
    _instrumentation(False)
    if subject == "watcher":
        assert len(loop.venue.open_orders()) == 2, "the watcher's orders are not resting: nothing was walked"


def _instructions(variant: str, path: str, warm: int, n: int, subject: str = "backtest") -> int:
    return callgrind_instructions(
        "benchmarks.bench_loop",
        ["--callgrind-child", variant, path, str(warm), str(n), subject],
        instr_at_start=False,
    )


def instructions() -> dict[str, Any]:
    """Instructions per event: the backtest with each venue/driver pair and the pipeline alone, same slice."""
    from benchmarks import bench_instructions as bi
    from benchmarks.daystream import load

    warm, n = bi.WARM, bi.N
    events = load(DATA).events[: warm + 2 * n]
    out: dict[str, Any] = {"warm": warm, "n": n}
    with tempfile.NamedTemporaryFile(suffix=".pkl", delete=False) as f:
        pickle.dump(events, f)
    try:
        for variant in VARIANTS:
            out[variant] = (_instructions(variant, f.name, warm, 2 * n) - _instructions(variant, f.name, warm, n)) / n
            out[f"watcher {variant}"] = (
                _instructions(variant, f.name, warm, 2 * n, "watcher")
                - _instructions(variant, f.name, warm, n, "watcher")
            ) / n
        out["pipeline"] = (
            bi._instructions("pipeline", f.name, warm, 2 * n) - bi._instructions("pipeline", f.name, warm, n)
        ) / n
    finally:
        os.unlink(f.name)
    return out


def run() -> list[dict]:
    if not DATA.exists():
        return [{"name": "venue and driver", "value": "", "unit": "", "note": f"skipped: {DATA} not present"}]
    events = _events()
    best = dict.fromkeys(VARIANTS, float("inf"))
    fills: dict[str, set[int]] = {v: set() for v in VARIANTS}
    for _ in range(ROUNDS):
        for variant in VARIANTS:
            wall, n_fills = _backtest(variant, events)
            best[variant] = min(best[variant], wall)
            fills[variant].add(n_fills)
    if len(fills["reference"] | fills["compiled"]) != 1:
        raise RuntimeError(f"the two venue/driver pairs filled differently: {fills}")
    note = f"GLFT backtest, {len(events):,} events, best of {ROUNDS} alternating rounds"
    rows: list[dict] = [
        {"name": f"backtest with the {v} venue and driver", "value": len(events) / s, "unit": "events/s", "note": note}
        for v, s in best.items()
    ]
    rows.append(
        {
            "name": "backtest speed-up (compiled / reference venue and driver)",
            "value": best["reference"] / best["compiled"],
            "unit": "×",
            "note": f"same run, same events, {fills['compiled'].pop()} fills in every round",
        }
    )
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        rows.append({"name": "venue and driver instructions", "value": "", "unit": "", "note": "skipped: no valgrind"})
        return rows
    r = instructions()
    where = f"callgrind, events {r['warm'] + r['n'] + 1:,}-{r['warm'] + 2 * r['n']:,}, bench_instructions' backtest"
    for v in VARIANTS:
        rows.append(
            {
                "name": f"backtest instructions per event ({v} venue and driver)",
                "value": r[v],
                "unit": "instr",
                "note": where,
            }
        )
    for v in VARIANTS:
        rows.append(
            {
                "name": f"backtest minus pipeline ({v} venue and driver)",
                "value": r[v] - r["pipeline"],
                "unit": "instr",
                "note": f"pipeline alone {r['pipeline']:,.0f} instr/event on the same slice",
            }
        )
    rows.append(
        {
            "name": "backtest-minus-pipeline instruction ratio (reference / compiled)",
            "value": (r["reference"] - r["pipeline"]) / (r["compiled"] - r["pipeline"]),
            "unit": "×",
            "note": "load-independent",
        }
    )
    for v in VARIANTS:
        rows.append(
            {
                "name": f"venue + driver alone, instructions per event ({v})",
                "value": r[f"watcher {v}"],
                "unit": "instr",
                "note": "same slice; two far resting orders, a strategy that does nothing, no risk rules",
            }
        )
    rows.append(
        {
            "name": "venue + driver alone instruction ratio (reference / compiled)",
            "value": r["watcher reference"] / r["watcher compiled"],
            "unit": "×",
            "note": "load-independent",
        }
    )
    return rows


if __name__ == "__main__":
    sys.path.insert(0, str(BASE_DIR))
    if len(sys.argv) == 7 and sys.argv[1] == "--callgrind-child":
        _callgrind_child(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), sys.argv[6])
    elif sys.argv[1:] == ["--instructions"]:
        print(instructions())
    else:
        for row in run():
            print(row)
