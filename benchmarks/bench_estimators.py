"""Market estimators: the pure-Python references against the compiled classes, on the shared USD-M BTCUSDT recording.

:class:`~apps.engine.estimators.market.MarketEstimators` is built once with the reference estimators (``Py*``:
adverse selection, σ, microprice, flow, arrival rate, Hawkes intensity, κ's trade window, the depth-markout curve)
and once with the compiled ones (``apps/engine/estimators/_estimators.pyx``); the book is the compiled one in both,
so the difference is the estimators'. The file is parsed once, before any timing.

* wall clock: every event of the file through a fresh ``MarketEstimators`` of each kind, alternating, ``ROUNDS``
  times each in one run, best round (events/s and the ratio). Three kinds: the references; the compiled estimators
  called from MarketEstimators' Python ``_on_bbo``/``_on_trade`` ("no step"); the compiled estimators with
  ``MarketStep`` (one compiled call per book ticker or trade: what the engine runs);
* callgrind, ``MarketEstimators.on_event`` of each kind, and the ``pipeline`` of :mod:`benchmarks.bench_instructions`
  (``StrategyCore.on_event``: estimators, decisions, quoter, order reconciliation) with the reference and the
  compiled estimators, measured as bench_instructions measures: a child replays ``WARM`` events uninstrumented,
  then ``N`` or ``2N`` instrumented; the difference of the two totals over ``N`` is the cost per event of events
  ``WARM+N+1 .. WARM+2N`` (start-up, imports, warm-up and the toggling cancel).

``python -m benchmarks.bench_estimators --backtest-callgrind`` (a few minutes; not in ``make bench``): the whole
backtest's instructions per event (``bench_instructions``' ``backtest`` subject) with each kind.
"""

from __future__ import annotations

import contextlib
import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from benchmarks import common

BASE_DIR = Path(__file__).resolve().parent.parent
DATA = common.USDM_BTCUSDT_RAW
ROUNDS = 3
IMPLS = ("reference", "compiled")
EST_IMPLS = ("reference", "compiled, no step", "compiled")
NAMES = [
    ("adverse", "AdverseSelectionEstimator"),
    ("sigma", "SigmaEstimator"),
    ("microprice", "MicropriceRegression"),
    ("flow", "FlowImbalance"),
    ("flow", "TradeArrivalRate"),
    ("hawkes", "HawkesIntensity"),
    ("kappa", "TradeKappaEstimator"),
    ("depth_markout", "DepthMarkoutCurve"),
]


@contextlib.contextmanager
def estimators(impl: str) -> Iterator[None]:
    """While open, a MarketEstimators (and so a StrategyCore) is built with the ``impl`` estimators."""
    import importlib

    from apps.engine.estimators import _estimators, market

    saved = []
    try:
        for module, name in NAMES:
            mod = importlib.import_module(f"apps.engine.estimators.{module}")
            cls = getattr(mod, "Py" + name) if impl == "reference" else getattr(_estimators, name)
            for target in (mod, market):
                saved.append((target, name, getattr(target, name)))
                setattr(target, name, cls)
        yield
    finally:
        for target, name, old in reversed(saved):
            setattr(target, name, old)


def _make_est(impl: str) -> Any:
    """``reference``: the Py* estimators; ``compiled``: the compiled ones with MarketStep (a book ticker or a trade is
    one compiled call); ``compiled, no step``: the compiled estimators called from MarketEstimators' Python bodies."""
    from apps.engine.estimators.market import MarketEstimators

    with estimators("reference" if impl == "reference" else "compiled"):
        est = MarketEstimators(tick_size=0.1)
    if impl == "compiled, no step":
        del est._on_bbo, est._on_trade  # back to the methods _on_bbo/_on_trade
        est.c_step = None  # and the core, if one drove it, would call them by name
    return est


def _replay(impl: str, events: list) -> float:
    est = _make_est(impl)
    step = est.on_event
    t0 = time.perf_counter()
    for ev in events:
        step(ev)
    return time.perf_counter() - t0


def _subject_child(subject: str, impl: str, path: str, warm: int, n: int) -> None:
    """Runs under valgrind: bench_instructions' ``subject`` built with the ``impl`` estimators, instrumented only
    for events warm+1 .. warm+n."""
    from benchmarks import bench_instructions as bi
    from benchmarks.daystream import require_compiled

    require_compiled()
    events = common.unpickled(path)
    if subject == "estimators":
        step = _make_est(impl).on_event
    else:
        with estimators(impl):
            step = bi._make(subject)
    common.replay_window(step, events, warm, n)


def subject_instructions(subject: str, impls: tuple[str, ...] = IMPLS) -> dict[str, float]:
    """Instructions per event of ``subject`` (``estimators``: MarketEstimators.on_event, or one of bench_instructions'
    subjects) with each kind of estimators in ``impls``."""
    from benchmarks.bench_instructions import window_per_event

    def count(impl: str, path: str, warm: int, n: int) -> int:
        return common.callgrind_instructions(
            "benchmarks.bench_estimators",
            ["--subject-child", subject, impl, path, str(warm), str(n)],
            instr_at_start=False,
        )

    return window_per_event(count, impls)


def run() -> list[dict]:
    if not DATA.exists():
        return [{"name": "estimators", "value": "", "unit": "", "note": f"skipped: {DATA} not present"}]
    events = common.parsed_events(DATA)
    best, _ = common.alternating_best(EST_IMPLS, lambda impl: (_replay(impl, events), None), ROUNDS)
    rows = common.comparison_rows(
        {impl: len(events) / s for impl, s in best.items()},
        "estimator events/s ({impl})",
        "events/s",
        f"MarketEstimators.on_event, {len(events):,} events, best of {ROUNDS} alternating rounds",
        "estimators speed-up (compiled / reference)",
        ratio=best["reference"] / best["compiled"],
        ratio_note="same run, same events",
    )
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        rows.append({"name": "estimator instructions", "value": "", "unit": "", "note": "skipped: no valgrind"})
        return rows
    from benchmarks import bench_instructions as bi

    where = f"events {bi.WARM + bi.N + 1:,}-{bi.WARM + 2 * bi.N:,}"
    rows += common.comparison_rows(
        subject_instructions("estimators", EST_IMPLS),
        "estimators instructions per event ({impl})",
        "instr/event",
        f"callgrind, MarketEstimators.on_event, {where}",
        "estimators instruction ratio (reference / compiled)",
    )
    rows += common.comparison_rows(
        subject_instructions("pipeline"),
        "pipeline instructions per event ({impl} estimators)",
        "instr/event",
        f"callgrind, StrategyCore.on_event, {where}",
        "pipeline instruction ratio (reference / compiled estimators)",
    )
    return rows


if __name__ == "__main__":
    sys.path.insert(0, str(BASE_DIR))
    if len(sys.argv) == 7 and sys.argv[1] == "--subject-child":
        _subject_child(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]), int(sys.argv[6]))
    elif sys.argv[1:] == ["--backtest-callgrind"]:
        common.print_per_event(
            subject_instructions("backtest"), "whole backtest instructions per event ({impl} estimators)"
        )
    else:
        for row in run():
            print(row)
