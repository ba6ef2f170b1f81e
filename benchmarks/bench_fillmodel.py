"""Fill model: the pure-Python reference against the compiled classes, on the shared Binance USD-M BTCUSDT recording.

Two measures (docs/compiled-core.md):

- **The backtest, reference against compiled fill model, in one run.** The GLFT backtest of ``bench_backtest``
  (strategy core, paper venue with its level book and queue model, ledger; 5 ms latencies) over every event of the
  file, run ``ROUNDS`` times with the paper venue's ``LevelBook``/``QueueState`` set to the references and as many
  with the compiled classes, alternating, so both see the same machine load; the best round of each and their
  ratio. Everything else (the compiled L2 book of phase 1 included) is the same in both. The fills of every round
  must be the same, or the benchmark fails.
- **Instructions per book event** under ``valgrind --tool=callgrind`` (when on PATH): the venue's level book alone,
  fed what the paper venue feeds it (book tickers, the snapshot, diffs), starting at the depth snapshot; replayed for
  ``SLICE`` and ``SLICE/2`` events in child processes, the difference divided by ``SLICE/2``, so start-up, imports
  and warm-up cancel.
"""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

from benchmarks import common

BASE_DIR = Path(__file__).resolve().parent.parent
DATA = common.USDM_BTCUSDT_RAW
TICK, LOT = 0.1, 0.001
ROUNDS = 3
SLICE = 6000  # book events after the snapshot replayed under callgrind (~10% of them diffs)


def _classes() -> dict[str, tuple[type, type]]:
    from apps.engine.execution import _fillmodel
    from apps.engine.execution.fillmodel import PyLevelBook, PyQueueState

    return {"reference": (PyLevelBook, PyQueueState), "compiled": (_fillmodel.LevelBook, _fillmodel.QueueState)}


def _backtest(impl: tuple[type, type], events: list) -> tuple[float, int]:
    from apps.engine.core import StrategyCore, StrategyParams
    from apps.engine.execution import paper
    from apps.engine.simulation.backtest import EngineLoop

    saved = paper.LevelBook, paper.QueueState
    paper.LevelBook, paper.QueueState = impl  # the names the paper venue builds its book and queue states from
    try:
        cfg = paper.PaperVenueConfig(TICK, LOT, entry_latency_ns=5_000_000, response_latency_ns=5_000_000)
        venue = paper.PaperVenue(cfg, seed=1)
        assert type(venue.book) is impl[0]
        loop = EngineLoop(StrategyCore(StrategyParams(), tick_size=TICK, lot_size=LOT), venue, name="glft")
        t0 = time.perf_counter()
        result = loop.run(events)
        return time.perf_counter() - t0, len(result.fills)
    finally:
        paper.LevelBook, paper.QueueState = saved


def _book_events(events: list) -> list:
    from apps.engine.market.events import BestBidAsk, DepthSnapshot, DepthUpdate

    book = [e for e in events if type(e) in (BestBidAsk, DepthSnapshot, DepthUpdate)]
    i = next(i for i, e in enumerate(book) if type(e) is DepthSnapshot)
    return book[i : i + 1 + SLICE]


def _callgrind_child(impl: str, path: str, n: int) -> None:
    """Runs under valgrind: the level book fed the first ``n`` events of the slice, as the paper venue feeds it."""
    from apps.engine.market.events import BestBidAsk, DepthSnapshot

    book = _classes()[impl][0](TICK)
    for ev in common.unpickled(path)[:n]:
        cls = type(ev)
        if cls is BestBidAsk:
            book.apply_bbo(ev.bid_px, ev.bid_size, ev.ask_px, ev.ask_size)
        elif cls is DepthSnapshot:
            book.apply_snapshot(ev.bids, ev.asks)
        else:
            book.apply_diff(ev.bids, ev.asks)


def _backtest_child(impl: str, path: str, n: int) -> None:
    """Runs under valgrind: the GLFT backtest over the first ``n`` events of the pickled slice."""
    _backtest(_classes()[impl], common.unpickled(path)[:n])


def _instructions(impl: str, path: str, n: int, mode: str = "--callgrind-child") -> int:
    return common.callgrind_instructions("benchmarks.bench_fillmodel", [mode, impl, path, str(n)])


def run() -> list[dict]:
    if not DATA.exists():
        return [{"name": "fill model", "value": "", "unit": "", "note": f"skipped: {DATA} not present"}]
    events = common.parsed_events(DATA)
    classes = _classes()
    rows = common.backtest_speed_rows(
        classes, lambda name: _backtest(classes[name], events), len(events), ROUNDS, "fill model", "the two fill models"
    )
    if shutil.which("valgrind") is None:
        rows.append({"name": "level book instructions", "value": "", "unit": "", "note": "skipped: no valgrind"})
        return rows
    part = _book_events(events)
    half = SLICE // 2
    rows += common.reference_vs_compiled_rows(
        part,
        classes,
        _instructions,
        1 + half,
        1 + SLICE,
        SLICE - half,
        "level book instructions per book event",
        lambda _name, _n: f"callgrind, book events {half + 1}-{SLICE} after the snapshot (tickers and diffs)",
        "level book instruction ratio (reference / compiled)",
    )
    return rows


def backtest_instructions(first: int = 10_000, second: int = 20_000) -> dict[str, float]:
    """Instructions per event of the whole GLFT backtest with each fill model (callgrind, events first+1..second of
    the file: the difference of two replay lengths, so start-up and imports cancel). A few minutes; not in
    ``make bench``: ``python -m benchmarks.bench_fillmodel --backtest-callgrind``."""
    return common.window_instructions(
        common.parsed_events(DATA)[:second],
        lambda name, path, n: _instructions(name, path, n, "--backtest-child"),
        _classes(),
        first,
        second,
        second - first,
    )


if __name__ == "__main__":
    sys.path.insert(0, str(BASE_DIR))
    if len(sys.argv) == 5 and sys.argv[1] == "--callgrind-child":
        _callgrind_child(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    elif len(sys.argv) == 5 and sys.argv[1] == "--backtest-child":
        _backtest_child(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    elif sys.argv[1:] == ["--backtest-callgrind"]:
        common.print_per_event(
            backtest_instructions(), "GLFT backtest instructions per event, events 10,001-20,000 ({impl} fill model)"
        )
    else:
        for row in run():
            print(row)
