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

import shutil
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks import common

BASE_DIR = Path(__file__).resolve().parent.parent
DATA = common.USDM_BTCUSDT_RAW
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
    from benchmarks.daystream import require_compiled

    require_compiled()
    events = common.unpickled(path)
    if subject == "watcher":
        loop = _watcher_loop(variant)
    else:
        ours.PaperVenue, ours.EngineLoop = _classes(variant)  # the names make_loop builds the loop from
        loop = ours.make_loop()
    common.replay_window(loop.on_market, events, warm, n)
    if subject == "watcher":
        assert len(loop.venue.open_orders()) == 2, "the watcher's orders are not resting: nothing was walked"


def _instructions(key: str, path: str, warm: int, n: int) -> int:
    """A callgrind child's total for ``key``: a variant (its backtest), ``watcher <variant>``, or ``pipeline``."""
    from benchmarks import bench_instructions as bi

    if key == "pipeline":
        return bi._instructions("pipeline", path, warm, n)
    subject, _, variant = key.rpartition(" ")
    return common.callgrind_instructions(
        "benchmarks.bench_loop",
        ["--callgrind-child", variant, path, str(warm), str(n), subject or "backtest"],
        instr_at_start=False,
    )


def instructions() -> dict[str, Any]:
    """Instructions per event: the backtest with each venue/driver pair and the pipeline alone, same slice."""
    from benchmarks import bench_instructions as bi

    keys = [key for v in VARIANTS for key in (v, f"watcher {v}")] + ["pipeline"]
    return {"warm": bi.WARM, "n": bi.N} | bi.window_per_event(_instructions, keys)


def run() -> list[dict]:
    if not DATA.exists():
        return [{"name": "venue and driver", "value": "", "unit": "", "note": f"skipped: {DATA} not present"}]
    events = common.parsed_events(DATA)
    rows = common.backtest_speed_rows(
        VARIANTS, lambda v: _backtest(v, events), len(events), ROUNDS, "venue and driver", "the two venue/driver pairs"
    )
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        rows.append({"name": "venue and driver instructions", "value": "", "unit": "", "note": "skipped: no valgrind"})
        return rows
    r = instructions()
    where = f"callgrind, events {r['warm'] + r['n'] + 1:,}-{r['warm'] + 2 * r['n']:,}, bench_instructions' backtest"
    pipe = r["pipeline"]
    rows += common.comparison_rows(
        {v: r[v] for v in VARIANTS}, "backtest instructions per event ({impl} venue and driver)", "instr", where
    )
    rows += common.comparison_rows(
        {v: r[v] - pipe for v in VARIANTS},
        "backtest minus pipeline ({impl} venue and driver)",
        "instr",
        f"pipeline alone {pipe:,.0f} instr/event on the same slice",
        "backtest-minus-pipeline instruction ratio (reference / compiled)",
    )
    rows += common.comparison_rows(
        {v: r[f"watcher {v}"] for v in VARIANTS},
        "venue + driver alone, instructions per event ({impl})",
        "instr",
        "same slice; two far resting orders, a strategy that does nothing, no risk rules",
        "venue + driver alone instruction ratio (reference / compiled)",
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
