"""Per-event cost of the estimator + quoter pipeline on the shared Binance USD-M BTCUSDT recording.

The file is parsed first (parsing is not timed); then every event goes through

* ``estimators``: :class:`apps.engine.estimators.market.MarketEstimators` alone (book, κ, σ, λ, flow, Hawkes, drift,
  microprice updates, with the core's cached reads, ``snapshots()``, once per top-of-book event), and
* ``pipeline``: :class:`apps.engine.core.StrategyCore` (the above plus decisions, the quoter and order
  reconciliation; orders are not sent anywhere, so the tracker only sees our own actions), with
  ``core.refresh()`` after each event as the engine driver calls it: the estimates due (posterior grids, fits)
  are recomputed there, off the quoting event, and timed as their own rows; events/s includes them.

Two passes per stage, each on fresh objects: an untimed pass gives events/s (per-event timer calls would
otherwise be counted as engine time), and a pass timing every event with ``perf_counter_ns`` gives the
median, p99 and max per event, with the timer's own overhead (measured on an empty call) subtracted.
Rows are skipped with a note when the recording is absent.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

from benchmarks.common import USDM_BTCUSDT_RAW

BASE_DIR = Path(__file__).resolve().parent.parent
DATA = USDM_BTCUSDT_RAW
TICK = 0.1
LOT = 0.001


def _events() -> list:
    from apps.marketdata.parsers import parse_file

    return [e for e in parse_file("binance-raw", DATA) if hasattr(e, "ts_local_ns")]


def _reference_loop_s() -> float:
    """Seconds for 10M interpreted integer additions: the machine's Python speed at the moment of the run, so
    numbers from different runs on a shared, noisy machine can be compared (divide by this)."""
    t0 = time.perf_counter()
    s = 0
    for i in range(10_000_000):
        s += i
    return time.perf_counter() - t0


def _timer_overhead_ns() -> float:
    pc = time.perf_counter_ns
    samples = []
    for _ in range(20000):
        t0 = pc()
        samples.append(pc() - t0)
    return statistics.median(samples)


def _time_each(fn, after, events: list) -> list[int]:
    """Per-event ns of ``fn``; ``after`` runs untimed after each event."""
    pc = time.perf_counter_ns
    out = [0] * len(events)
    for i, ev in enumerate(events):
        t0 = pc()
        fn(ev)
        out[i] = pc() - t0
        after(ev)
    return out


def _wall(fn, events: list) -> float:
    t0 = time.perf_counter()
    for ev in events:
        fn(ev)
    return time.perf_counter() - t0


def _time_decisions(core, events: list) -> tuple[list[int], list[int], list[int]]:
    """Per-event ns of ``core.on_event``, split into the events that computed a decision and the rest, and the ns
    of each refresh step (``core.refresh()`` after an event, as the engine driver calls it) that found work."""
    pc = time.perf_counter_ns
    on_event = core.on_event
    refresh = core.refresh
    with_decision: list[int] = []
    without: list[int] = []
    refreshes: list[int] = []
    for ev in events:
        n0 = core.decisions_computed
        t0 = pc()
        on_event(ev)
        dt = pc() - t0
        (with_decision if core.decisions_computed != n0 else without).append(dt)
        t0 = pc()
        if refresh():
            refreshes.append(pc() - t0)
    return with_decision, without, refreshes


def _fastest_decisions(make_core, events: list, first: list[int], runs: int) -> list[int]:
    """Each decision's smallest time over ``first`` (one run's decision times, in order) and ``runs`` more runs on
    fresh cores (the same events give the same decisions in the same order: checked)."""
    best = list(first)
    for _ in range(runs):
        times, _, _ = _time_decisions(make_core(), events)
        if len(times) != len(best):
            raise RuntimeError(f"a rerun computed {len(times)} decisions, the first {len(best)}: not deterministic")
        best = [min(a, b) for a, b in zip(best, times, strict=True)]
    return best


def _pipeline_wall(core, events: list) -> float:
    """Seconds for the whole stream through the core as the driver runs it: each event, then the refresh step."""
    on_event = core.on_event
    refresh = core.refresh
    t0 = time.perf_counter()
    for ev in events:
        on_event(ev)
        refresh()
    return time.perf_counter() - t0


def _quantiles(costs_ns: list[int], overhead_ns: float) -> tuple[float, float, float]:
    """(median, p99, max) in µs, the timer's overhead subtracted."""
    c = sorted(max(x - overhead_ns, 0.0) for x in costs_ns)
    n = len(c)
    return c[n // 2] / 1e3, c[min(int(0.99 * n), n - 1)] / 1e3, c[-1] / 1e3


def _stats(
    name: str, costs_ns: list[int], overhead_ns: float, wall_s: float, note: str, targets: tuple[str, str]
) -> list[dict]:
    median_us, p99_us, max_us = _quantiles(costs_ns, overhead_ns)
    return [
        {"name": f"{name} median", "value": median_us, "unit": "µs/event", "note": note},
        {"name": f"{name} p99", "value": p99_us, "unit": "µs/event", "target": targets[0]},
        {"name": f"{name} max", "value": max_us, "unit": "µs/event"},
        {"name": f"{name} events/s", "value": len(costs_ns) / wall_s, "unit": "events/s", "target": targets[1]},
    ]


def run() -> list[dict]:
    if not DATA.exists():
        note = f"skipped: {DATA} not present"
        return [
            {"name": "estimators p99", "value": "", "unit": "µs/event", "target": "p99 < 20 µs", "note": note},
            {"name": "pipeline p99", "value": "", "unit": "µs/event", "target": "p99 < 20 µs", "note": note},
        ]
    from apps.engine.core import StrategyCore, StrategyParams
    from apps.engine.estimators.market import MarketEstimators
    from apps.engine.market.events import BestBidAsk

    events = _events()
    overhead = _timer_overhead_ns()
    n = len(events)
    span_s = (events[-1].ts_local_ns - events[0].ts_local_ns) / 1e9

    def make_est_step():
        est = MarketEstimators(tick_size=TICK)

        def est_step(ev) -> None:
            est.on_event(ev)
            if type(ev) is BestBidAsk:  # what the core reads per top-of-book event (the cache)
                est.cached_snapshots(ev.ts_local_ns)

        def refresh_step(ev) -> None:  # the refresh step the driver runs after the event (not timed per event)
            ts = ev.ts_local_ns
            if est.refresh_due(ts):
                est.refresh(ts)

        return est_step, refresh_step

    step, after = make_est_step()
    t0 = time.perf_counter()
    for ev in events:
        step(ev)
        after(ev)
    wall = time.perf_counter() - t0
    costs = _time_each(*make_est_step(), events)
    rows = _stats(
        "estimators",
        costs,
        overhead,
        wall,
        f"{n} events, {span_s:.0f} s of market, timer overhead {overhead:.0f} ns subtracted; the refresh step after "
        "each event is in events/s, not in the per-event times",
        ("p99 < 20 µs", ">= 1,000,000 events/s"),
    )

    def make_core() -> StrategyCore:
        return StrategyCore(StrategyParams.from_dict({"max_inventory": 0.05}), tick_size=TICK, lot_size=LOT)

    core = make_core()
    wall = _pipeline_wall(core, events)
    timed = make_core()
    with_decision, without, refreshes = _time_decisions(timed, events)
    targets = ("p99 < 20 µs (issue 15)", ">= 1,000,000 events/s (issue 15)")
    rows += _stats(
        "pipeline",
        with_decision + without,
        overhead,
        wall,
        f"{core.decisions_computed} decisions computed; events/s counts the refresh steps' time too",
        targets,
    )
    for label, part, target in (
        ("pipeline, events with a decision", with_decision, "p99 < 50 µs (a decision with all its inputs)"),
        ("pipeline, events without one", without, ""),
    ):
        median_us, p99_us, _ = _quantiles(part, overhead)
        rows.append(
            {"name": f"{label} median", "value": median_us, "unit": "µs/event", "note": f"{len(part):,} events"}
        )
        rows.append({"name": f"{label} p99", "value": p99_us, "unit": "µs/event", "target": target})
    # The slowest 1 % of decisions are different decisions from one run to the next (2 of 38 in common between two
    # identical runs on this machine): most of that tail is the machine (a shared VM; its memory monitor samples
    # page accesses), not a code path. Each decision's fastest of three runs keeps what is slow because of the
    # decision itself (its path, a cold cache after a refresh step) and drops those stalls.
    fastest = _fastest_decisions(make_core, events, with_decision, runs=2)
    median_us, p99_us, _ = _quantiles(fastest, overhead)
    rows.append(
        {
            "name": "pipeline, each decision's fastest of 3 runs, median",
            "value": median_us,
            "unit": "µs/event",
            "note": "the same decisions timed in three runs, each at its minimum (removes the machine's stalls)",
        }
    )
    rows.append(
        {
            "name": "pipeline, each decision's fastest of 3 runs, p99",
            "value": p99_us,
            "unit": "µs/event",
            "target": "p99 < 50 µs (a decision with all its inputs)",
        }
    )
    median_us, p99_us, max_us = _quantiles(refreshes, overhead)
    refresh_s = sum(refreshes) / 1e9
    rows += [
        {
            "name": "refresh steps, total",
            "value": refresh_s * 1e3,
            "unit": "ms/pass",
            "note": f"{refresh_s / wall:.0%} of the pipeline's wall time (the κ posterior grids, σ's window "
            "statistics, the depth curve, the Hawkes MLE and the κ goodness-of-fit tests)",
        },
        {
            # The issue lets the periodic heavy work (posterior refreshes, the Hawkes MLE) stay off the per-event
            # path; the driver runs it after an event's actions are sent. This row is the per-event path alone: the
            # untimed pass's wall minus the refresh steps' work as timed in the timed pass (the same steps: fresh
            # cores, the same events). The headline events/s above counts both.
            "name": "pipeline events/s, per-event path alone",
            "value": n / (wall - refresh_s),
            "unit": "events/s",
            "target": ">= 1,000,000 events/s (issue 15), counting the refresh steps too (row above)",
            "note": "events/s above without the refresh steps' work (each step's call that found nothing due stays)",
        },
        {
            "name": "refresh steps median",
            "value": median_us,
            "unit": "µs/step",
            "note": f"{len(refreshes):,} steps (core.refresh() after an event, off the quoting event)",
        },
        {"name": "refresh steps p99", "value": p99_us, "unit": "µs/step"},
        {"name": "refresh steps max", "value": max_us, "unit": "µs/step"},
    ]
    ref = _reference_loop_s()
    rows.append(
        {
            "name": "python speed reference",
            "value": ref,
            "unit": "s / 10M adds",
            "note": "measured in this run: compare runs on a shared machine in units of it",
        }
    )
    return rows


if __name__ == "__main__":
    for r in run():
        print(r)
