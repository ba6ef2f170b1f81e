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
import os
import pickle
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from benchmarks.common import USDM_BTCUSDT_RAW, callgrind_instructions

BASE_DIR = Path(__file__).resolve().parent.parent
DATA = USDM_BTCUSDT_RAW
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


def _events() -> list:
    from apps.marketdata.parsers import Quarantined, parse_file

    return [e for e in parse_file("binance-raw", DATA) if not isinstance(e, Quarantined)]


def _make_est(impl: str) -> Any:
    """``reference``: the Py* estimators; ``compiled``: the compiled ones with MarketStep (a book ticker or a trade is
    one compiled call); ``compiled, no step``: the compiled estimators called from MarketEstimators' Python bodies."""
    from apps.engine.estimators.market import MarketEstimators

    with estimators("reference" if impl == "reference" else "compiled"):
        est = MarketEstimators(tick_size=0.1)
    if impl == "compiled, no step":
        del est._on_bbo, est._on_trade  # back to the methods _on_bbo/_on_trade
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
    with open(path, "rb") as f:
        events = pickle.load(f)  # noqa: S301 - our own file, written a moment ago by the parent
    if subject == "estimators":
        step = _make_est(impl).on_event
    else:
        with estimators(impl):
            step = bi._make(subject)
    for ev in events[:warm]:
        step(ev)
    bi._instrumentation(True)
    for ev in events[warm : warm + n]:
        step(ev)
    bi._instrumentation(False)


def subject_instructions(subject: str, impls: tuple[str, ...] = IMPLS) -> dict[str, float]:
    """Instructions per event of ``subject`` (``estimators``: MarketEstimators.on_event, or one of bench_instructions'
    subjects) with each kind of estimators in ``impls``."""
    from benchmarks import bench_instructions as bi
    from benchmarks.daystream import load

    warm, n = bi.WARM, bi.N
    events = load(DATA).events[: warm + 2 * n]
    out: dict[str, float] = {}
    with tempfile.NamedTemporaryFile(suffix=".pkl", delete=False) as f:
        pickle.dump(events, f)
    try:
        for impl in impls:
            counts = [
                callgrind_instructions(
                    "benchmarks.bench_estimators",
                    ["--subject-child", subject, impl, f.name, str(warm), str(m)],
                    instr_at_start=False,
                )
                for m in (n, 2 * n)
            ]
            out[impl] = (counts[1] - counts[0]) / n
    finally:
        os.unlink(f.name)
    return out


def run() -> list[dict]:
    if not DATA.exists():
        return [{"name": "estimators", "value": "", "unit": "", "note": f"skipped: {DATA} not present"}]
    events = _events()
    best = {impl: float("inf") for impl in EST_IMPLS}
    for _ in range(ROUNDS):
        for impl in EST_IMPLS:
            best[impl] = min(best[impl], _replay(impl, events))
    note = f"MarketEstimators.on_event, {len(events):,} events, best of {ROUNDS} alternating rounds"
    rows = [
        {"name": f"estimator events/s ({impl})", "value": len(events) / s, "unit": "events/s", "note": note}
        for impl, s in best.items()
    ]
    rows.append(
        {
            "name": "estimators speed-up (compiled / reference)",
            "value": best["reference"] / best["compiled"],
            "unit": "×",
            "note": "same run, same events",
        }
    )
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        rows.append({"name": "estimator instructions", "value": "", "unit": "", "note": "skipped: no valgrind"})
        return rows
    from benchmarks import bench_instructions as bi

    where = f"events {bi.WARM + bi.N + 1:,}-{bi.WARM + 2 * bi.N:,}"
    est = subject_instructions("estimators", EST_IMPLS)
    rows += [
        {
            "name": f"estimators instructions per event ({impl})",
            "value": est[impl],
            "unit": "instr/event",
            "note": f"callgrind, MarketEstimators.on_event, {where}",
        }
        for impl in EST_IMPLS
    ]
    rows.append(
        {
            "name": "estimators instruction ratio (reference / compiled)",
            "value": est["reference"] / est["compiled"],
            "unit": "×",
            "note": "load-independent",
        }
    )
    pipe = subject_instructions("pipeline")
    rows += [
        {
            "name": f"pipeline instructions per event ({impl} estimators)",
            "value": pipe[impl],
            "unit": "instr/event",
            "note": f"callgrind, StrategyCore.on_event, {where}",
        }
        for impl in IMPLS
    ]
    rows.append(
        {
            "name": "pipeline instruction ratio (reference / compiled estimators)",
            "value": pipe["reference"] / pipe["compiled"],
            "unit": "×",
            "note": "load-independent",
        }
    )
    return rows


if __name__ == "__main__":
    sys.path.insert(0, str(BASE_DIR))
    if len(sys.argv) == 7 and sys.argv[1] == "--subject-child":
        _subject_child(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]), int(sys.argv[6]))
    elif sys.argv[1:] == ["--backtest-callgrind"]:
        per = subject_instructions("backtest")
        for impl, n in per.items():
            print(f"whole backtest instructions per event ({impl} estimators): {n:,.0f}")
        print(f"ratio (reference / compiled): {per['reference'] / per['compiled']:.2f}x")
    else:
        for row in run():
            print(row)
