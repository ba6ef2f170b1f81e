"""cProfile of the GLFT backtest on the shared Binance USD-M recording: where a backtest event's time goes.

    python -m benchmarks.profile_backtest [N]             # the compiled modules, as the engine selects them
    MM_PURE_PYTHON=1 python -m benchmarks.profile_backtest  # every pure-Python reference

The same run as ``bench_backtest``'s GLFT row (strategy core, paper venue, ledger; 5 ms latencies), once without
the profiler (events/s) and once under it; prints the top ``N`` functions (default 30) by own time and by
cumulative time. cProfile does not see calls into Cython classes: their time is counted in their callers' own time
(docs/compiled-core.md, "Where a backtest event's time went").
"""

from __future__ import annotations

import cProfile
import io
import pstats
import sys
import time

from benchmarks.bench_backtest import DATA, LOT, TICK


def main(top: int = 30) -> None:
    from apps.engine.core import StrategyCore, StrategyParams
    from apps.engine.execution import fillmodel
    from apps.engine.execution.paper import PaperVenue, PaperVenueConfig
    from apps.engine.market import book
    from apps.engine.simulation.backtest import EngineLoop
    from apps.marketdata.parsers import Quarantined, parse_file

    events = [e for e in parse_file("binance-raw", DATA) if not isinstance(e, Quarantined)]
    cfg = PaperVenueConfig(TICK, LOT, entry_latency_ns=5_000_000, response_latency_ns=5_000_000)

    def run() -> None:
        core = StrategyCore(StrategyParams(), tick_size=TICK, lot_size=LOT)
        EngineLoop(core, PaperVenue(cfg, seed=1), name="glft").run(events)

    print(f"compiled: L2 book {book.BOOK_COMPILED}, fill model {fillmodel.FILLMODEL_COMPILED}")
    t0 = time.perf_counter()
    run()
    wall = time.perf_counter() - t0
    print(f"without the profiler: {len(events):,} events in {wall:.2f} s, {len(events) / wall:,.0f} events/s")
    prof = cProfile.Profile()
    prof.enable()
    run()
    prof.disable()
    for key in ("tottime", "cumulative"):
        out = io.StringIO()
        pstats.Stats(prof, stream=out).sort_stats(key).print_stats(top)
        print(out.getvalue())


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 30)
