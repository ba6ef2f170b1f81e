"""Instructions per market event under callgrind: the estimator + quoter pipeline and the whole backtest (issue 15).

Wall clock on these shared machines moves 2-3x within an hour; instruction counts do not. Each subject replays a
fixed slice of the shared Binance USD-M BTCUSDT recording in a child process under ``valgrind --tool=callgrind``:

* ``pipeline``: :class:`apps.engine.core.StrategyCore` ``on_event`` per event (estimators, decisions, quoter, order
  reconciliation), the object ``bench_engine`` times;
* ``backtest``: :meth:`EngineLoop.on_market` per event of the loop ``make bench-anchor`` and ``bench_day`` time
  (:func:`benchmarks.anchor.ours.make_loop`: the same core, the paper venue with its L2 book, queue model and 10 ms
  latency, the session's default risk rules, the P&L ledger; no sink).

``--callgrind-child backtest-run PICKLE 0 N`` (not in the table) counts :meth:`EngineLoop.run` over the first ``N``
events instead, as ``make bench-anchor`` calls it: the replay loop and ``finish`` (docs/compiled-core.md's
whole-run counts since the nineteenth stop give both).

The child starts with instrumentation off (``--instr-atstart=no``: imports, unpickling and set-up run ~6x faster and
are not counted), replays the first ``WARM`` events (36 s of market: the estimators are warm and the core has been
quoting since event ~4,700), switches instrumentation on with ``callgrind_control -i on``, replays ``n`` more events
and switches it off. It runs twice, with ``n = N`` and ``n = 2N``: the difference of the two totals, divided by
``N``, is the cost per event of events ``WARM+N+1 .. WARM+2N`` (whatever the toggling itself costs cancels). The
slice is the parsed events, pickled once by the parent, so parsing is never counted. Events in the window are of
all kinds, in the recording's mix (the row's note gives it); the per-kind split is not measured.

A third row counts one quoter call (the decision, its typed input record included): the ``quote()`` calls the
pipeline makes in the measured window are captured (uninstrumented) and replayed by two callgrind children, once and
three times after an uncounted warm pass, with instrumentation on only around the replay and the garbage collector
off; the difference over twice the calls. (Counting the whole child instead moves by millions of instructions
between runs with the interpreter's start-up, more than the calls themselves.)

A fourth row counts one whole decision the same way: the pipeline core is warmed to the end of the measured window
(each event followed by the refresh step) and its last decision (``_decide_now``: the estimates read, the ~124
inputs, the quoter call, ``_set``; not the reconciliation) is replayed 200 times once and three times.
"""

from __future__ import annotations

import shutil
import sys
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from benchmarks.common import callgrind_instructions, replay_window, unpickled, window_instructions

BASE_DIR = Path(__file__).resolve().parent.parent
WARM = 10_000  # events replayed uninstrumented first
N = 4_000  # the measured window: events WARM+N+1 .. WARM+2N
SUBJECTS = ("pipeline", "backtest")


def _make(subject: str) -> Any:
    """The per-event callable of ``subject``."""
    if subject == "pipeline":
        from apps.engine.core import StrategyCore, StrategyParams

        core = StrategyCore(StrategyParams.from_dict({"max_inventory": 0.05}), tick_size=0.1, lot_size=0.001)
        return core.on_event
    if subject == "backtest":
        from benchmarks.anchor.ours import make_loop

        return make_loop().on_market
    raise ValueError(f"unknown subject {subject!r}")


def _callgrind_child(subject: str, path: str, warm: int, n: int) -> None:
    from benchmarks.daystream import require_compiled

    require_compiled()
    if subject == "backtest-run":
        # the whole-run count of docs/compiled-core.md as ``make bench-anchor`` times it: EngineLoop.run over events
        # warm .. warm+n (its replay loop, and finish), the first ``warm`` through on_market uninstrumented
        from benchmarks.anchor.ours import make_loop
        from benchmarks.common import instrumentation

        loop = make_loop()
        events = unpickled(path)
        for ev in events[:warm]:
            loop.on_market(ev)
        instrumentation(True)
        loop.run(events[warm : warm + n])
        instrumentation(False)
        return
    replay_window(_make(subject), unpickled(path), warm, n)


def _instructions(subject: str, path: str, warm: int, n: int) -> int:
    return callgrind_instructions(
        "benchmarks.bench_instructions",
        ["--callgrind-child", subject, path, str(warm), str(n)],
        instr_at_start=False,
    )


def window_per_event(
    count: Callable[[str, str, int, int], int],
    subjects: Iterable[str],
    events: list | None = None,
    warm: int = WARM,
    n: int = N,
) -> dict[str, float]:
    """Instructions per event of each subject over events ``warm+n+1 .. warm+2n`` of the recording (``events``, its
    first ``warm+2n`` events, loaded when not given): ``count(subject, path, warm, m)`` is a callgrind child's total
    for ``m = n`` and ``m = 2n``; the difference over ``n``."""
    if events is None:
        from benchmarks.daystream import DATA, load

        events = load(DATA).events[: warm + 2 * n]
    return window_instructions(events, lambda s, path, m: count(s, path, warm, m), subjects, n, 2 * n, n)


def measure(warm: int = WARM, n: int = N, subjects: tuple[str, ...] = SUBJECTS) -> dict[str, Any]:
    from benchmarks.daystream import DATA, load

    events = load(DATA).events[: warm + 2 * n]
    window = events[warm + n : warm + 2 * n]
    mix = Counter(type(e).__name__ for e in window)
    levels = sum(len(e.bids) + len(e.asks) for e in window if hasattr(e, "bids"))
    span_s = (window[-1].ts_local_ns - window[0].ts_local_ns) / 1e9
    out: dict[str, Any] = {"warm": warm, "n": n, "mix": dict(mix), "levels": levels, "span_s": span_s}
    return out | window_per_event(_instructions, subjects, events, warm, n)


def _captured_quote_calls(events: list, warm: int, n: int) -> list[tuple]:
    """The quoter calls the pipeline subject makes during events ``warm+n+1 .. warm+2n``: (params, risk, market
    state, q, keyword arguments), captured as the core makes them."""
    from apps.engine import core as core_module

    step = _make("pipeline")
    calls: list[tuple] = []
    real = core_module.quote

    def capture(params, risk, market, q, **kw):
        calls.append((params, risk, market, q, kw))
        return real(params, risk, market, q, **kw)

    for e in events[: warm + n]:
        step(e)
    core_module.quote = capture
    try:
        for e in events[warm + n : warm + 2 * n]:
            step(e)
    finally:
        core_module.quote = real
    return calls


def quote_replay_result(call: tuple) -> Any:
    """One captured call replayed as the children replay it (the dispatcher's ``quote``: compiled when built)."""
    from apps.engine.quoting.quoter import quote

    params, risk, market, q, kw = call
    return quote(params, risk, market, q, **kw)


def _quote_child(path: str, passes: int) -> None:
    import gc

    from benchmarks.common import instrumentation
    from benchmarks.daystream import require_compiled

    require_compiled()
    from apps.engine.quoting.quoter import quote

    calls = unpickled(path)
    for params, risk, market, q, kw in calls:  # a warm pass, uncounted (first-use work: layouts, caches)
        quote(params, risk, market, q, **kw)
    gc.collect()
    gc.disable()  # a collection's traversal of every live object would land in whichever pass it falls
    instrumentation(True)
    for _ in range(passes):
        for params, risk, market, q, kw in calls:
            quote(params, risk, market, q, **kw)
    instrumentation(False)


def quote_call_instructions(events: list, warm: int = WARM, n: int = N) -> tuple[float, int]:
    """Instructions per call of the (compiled) quoter on the decisions of the measured window: callgrind children
    (instrumentation on only around the replay, after a warm pass, the garbage collector off) replaying the captured
    calls once and three times; the difference over twice the calls (the toggling cancels)."""
    import pickle
    import tempfile

    calls = _captured_quote_calls(events, warm, n)
    with tempfile.TemporaryDirectory() as tmp:
        path = f"{tmp}/calls.pickle"
        with open(path, "wb") as f:
            pickle.dump(calls, f)
        c1, c3 = (
            callgrind_instructions(
                "benchmarks.bench_instructions", ["--quote-child", path, str(k)], instr_at_start=False
            )
            for k in (1, 3)
        )
    return (c3 - c1) / (2 * len(calls)), len(calls)


def warm_decision(events: list, warm: int = WARM, n: int = N) -> tuple[Any, tuple]:
    """The pipeline core after events ``1 .. warm+n`` (each with the refresh step after it, as the driver runs it) and
    the arguments of the last decision it computed: ``core._decide_now(*args)`` computes a decision again at that
    time, touch and position, on the core's current estimates. It is the same work, not the same answer: the γ
    features' slow references and the estimates refreshed since move between calls."""
    core = _make("pipeline").__self__
    args = None
    for e in events[: warm + n]:
        before = core.decisions_computed
        core.on_event(e)
        if core.decisions_computed != before:
            args = (core._decision_ns, core._decision_key, core.market._all_snaps)
        core.refresh()
    if args is None:
        raise RuntimeError("no decision in the replayed events")
    return core, args


def _decision_child(path: str, warm: int, n: int, passes: int) -> None:
    import gc

    from benchmarks.common import instrumentation
    from benchmarks.daystream import require_compiled

    require_compiled()
    core, args = warm_decision(unpickled(path), warm, n)
    for _ in range(DECISION_CALLS):  # a warm pass, uncounted
        core._decide_now(*args)
    gc.collect()
    gc.disable()
    instrumentation(True)
    for _ in range(passes * DECISION_CALLS):
        core._decide_now(*args)
    instrumentation(False)


DECISION_CALLS = 200  # replays of the decision per pass


def decision_instructions(events: list, warm: int = WARM, n: int = N) -> float:
    """Instructions of one whole decision (``_decide_now``: the estimates read, the inputs, the quoter call, ``_set``;
    not the reconciliation) on the core warmed to the end of the measured window, its last decision replayed: callgrind
    children replaying it once and three times ``DECISION_CALLS`` times; the difference over twice that."""
    from benchmarks.common import pickled

    with pickled(events[: warm + n]) as path:
        c1, c3 = (
            callgrind_instructions(
                "benchmarks.bench_instructions",
                ["--decision-child", path, str(warm), str(n), str(k)],
                instr_at_start=False,
            )
            for k in (1, 3)
        )
    return (c3 - c1) / (2 * DECISION_CALLS)


def run() -> list[dict[str, Any]]:
    from benchmarks.daystream import DATA

    if not DATA.exists():
        return [{"name": "instructions per event", "value": "", "unit": "", "note": f"skipped: {DATA} not present"}]
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        return [{"name": "instructions per event", "value": "", "unit": "", "note": "skipped: valgrind not on PATH"}]
    r = measure()
    mix = ", ".join(f"{v:,} {k}" for k, v in sorted(r["mix"].items(), key=lambda kv: -kv[1]))
    where = f"events {r['warm'] + r['n'] + 1:,}-{r['warm'] + 2 * r['n']:,} of the USD-M recording"
    rows = [
        {
            "name": f"{subject} instructions per event",
            "value": r[subject],
            "unit": "instr/event",
            "note": f"callgrind, {where}" if subject == SUBJECTS[0] else f"{r['n']:,} events: {mix}",
        }
        for subject in SUBJECTS
    ]
    from benchmarks.daystream import load

    per_call, n_calls = quote_call_instructions(load(DATA).events[: r["warm"] + 2 * r["n"]], r["warm"], r["n"])
    rows.append(
        {
            "name": "one decision's quoter call",
            "value": per_call,
            "unit": "instr/call",
            "note": f"the {n_calls:,} quote() calls the pipeline makes in that window, replayed (3 passes - 1) / 2; "
            "the decision record is built in it",
        }
    )
    rows.append(
        {
            "name": "one decision",
            "value": decision_instructions(load(DATA).events[: r["warm"] + 2 * r["n"]], r["warm"], 2 * r["n"]),
            "unit": "instr/decision",
            "note": "the core's last decision in that window replayed (_decide_now: estimates read, inputs, quoter "
            "call, _set; not the reconciliation)",
        }
    )
    rows.append(
        {
            "name": "backtest minus pipeline",
            "value": r["backtest"] - r["pipeline"],
            "unit": "instr/event",
            "note": f"venue, ledger, risk rules, driver; {r['levels']:,} L2 levels in the window "
            f"({r['span_s']:.1f} s of market)",
        }
    )
    return rows


if __name__ == "__main__":
    if len(sys.argv) == 6 and sys.argv[1] == "--callgrind-child":
        sys.path.insert(0, str(BASE_DIR))
        _callgrind_child(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]))
    elif len(sys.argv) == 6 and sys.argv[1] == "--decision-child":
        sys.path.insert(0, str(BASE_DIR))
        _decision_child(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]))
    elif len(sys.argv) == 4 and sys.argv[1] == "--quote-child":
        sys.path.insert(0, str(BASE_DIR))
        _quote_child(sys.argv[2], int(sys.argv[3]))
    else:
        for row in run():
            print(row)
