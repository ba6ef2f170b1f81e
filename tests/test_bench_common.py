"""The helpers the reference-against-compiled benchmarks share (benchmarks/common.py): the window difference, the
alternating rounds and the rows they print."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from benchmarks.common import (
    alternating_best,
    backtest_speed_rows,
    comparison_rows,
    unpickled,
    window_instructions,
)


def test_window_instructions_is_the_difference_of_two_lengths_over_the_window_and_leaves_no_file():
    seen: list[tuple[str, int, list]] = []
    paths: set[str] = set()

    def count(subject: str, path: str, n: int) -> int:
        seen.append((subject, n, unpickled(path)))
        paths.add(path)
        # a fixed start-up cost that must cancel, plus a per-event cost that differs by subject
        return 1_000_000 + n * {"reference": 70, "compiled": 30}[subject]

    got = window_instructions(["e1", "e2"], count, ("reference", "compiled"), 100, 300, 200)
    assert got == {"reference": 70.0, "compiled": 30.0}
    assert sorted((s, n) for s, n, _ in seen) == [
        ("compiled", 100),
        ("compiled", 300),
        ("reference", 100),
        ("reference", 300),
    ]
    assert all(events == ["e1", "e2"] for _, _, events in seen)
    assert len(paths) == 1 and not Path(paths.pop()).exists()


def test_alternating_best_keeps_each_ones_fastest_round_and_interleaves_them():
    order: list[str] = []
    times = {"reference": iter([3.0, 2.0, 2.5]), "compiled": iter([1.0, 1.5, 0.5])}

    def once(impl: str) -> tuple[float, int]:
        order.append(impl)
        return next(times[impl]), 7

    best, outcomes = alternating_best(("reference", "compiled"), once, 3)
    assert best == {"reference": 2.0, "compiled": 0.5}
    assert outcomes == {"reference": {7}, "compiled": {7}}
    assert order == ["reference", "compiled"] * 3


def test_comparison_rows_name_each_implementation_and_end_with_the_ratio():
    rows = comparison_rows(
        {"reference": 90.0, "compiled": 30.0},
        "thing per event ({impl})",
        "instr",
        lambda impl, v: f"{impl}: {v:.0f}",
        "thing ratio (reference / compiled)",
    )
    assert rows == [
        {"name": "thing per event (reference)", "value": 90.0, "unit": "instr", "note": "reference: 90"},
        {"name": "thing per event (compiled)", "value": 30.0, "unit": "instr", "note": "compiled: 30"},
        {"name": "thing ratio (reference / compiled)", "value": 3.0, "unit": "×", "note": "load-independent"},
    ]
    no_ratio = comparison_rows({"reference": 1.0, "compiled": 2.0}, "x ({impl})", "s", "same note")
    assert [r["note"] for r in no_ratio] == ["same note", "same note"] and len(no_ratio) == 2


def test_backtest_speed_rows_report_the_speed_up_and_refuse_different_fills():
    wall = {"reference": 4.0, "compiled": 1.0}
    rows = backtest_speed_rows(("reference", "compiled"), lambda impl: (wall[impl], 12), 1000, 2, "fill model", "x")
    assert [r["name"] for r in rows] == [
        "backtest with the reference fill model",
        "backtest with the compiled fill model",
        "backtest speed-up (compiled / reference fill model)",
    ]
    assert [r["value"] for r in rows] == [250.0, 1000.0, 4.0]
    assert rows[0]["note"] == "GLFT backtest, 1,000 events, best of 2 alternating rounds"
    assert rows[2]["note"] == "same run, same events, 12 fills in every round"
    fills = {"reference": 12, "compiled": 13}
    with pytest.raises(RuntimeError, match="the two fill models filled differently"):
        backtest_speed_rows(
            ("reference", "compiled"), lambda impl: (1.0, fills[impl]), 10, 1, "fill model", "the two fill models"
        )


def test_no_pickle_is_left_in_the_temp_dir_after_a_failing_count():
    paths: list[str] = []

    def count(subject: str, path: str, n: int) -> int:
        paths.append(path)
        raise RuntimeError("callgrind failed")

    with pytest.raises(RuntimeError, match="callgrind failed"):
        window_instructions([1], count, ("reference",), 1, 2, 1)
    assert len(paths) == 1 and not os.path.exists(paths[0])


def test_print_per_event_prints_each_count_and_the_ratio(capsys):
    from benchmarks.common import print_per_event

    print_per_event({"reference": 125_000.4, "compiled": 50_000.0}, "backtest per event ({impl} fill model)")
    assert capsys.readouterr().out.splitlines() == [
        "backtest per event (reference fill model): 125,000",
        "backtest per event (compiled fill model): 50,000",
        "ratio (reference / compiled): 2.50x",
    ]


def test_the_quoter_call_row_replays_exactly_the_calls_the_pipeline_made_in_the_window():
    from apps.engine.core import StrategyCore
    from apps.engine.quoting.quoter import py_quote
    from benchmarks import bench_instructions as bi
    from benchmarks.daystream import DATA, load
    from tests.engine.quoting.test_quote_equivalence import bits

    if not DATA.exists():
        pytest.skip(f"{DATA} not present")
    warm, n = 6_000, 1_500
    events = load(DATA).events[: warm + 2 * n]
    calls = bi._captured_quote_calls(events, warm, n)
    # as many calls as decisions the same pipeline computes over those events
    core = bi._make("pipeline").__self__
    assert isinstance(core, StrategyCore)
    for e in events[: warm + n]:
        core.on_event(e)
    before = core.decisions_computed
    for e in events[warm + n : warm + 2 * n]:
        core.on_event(e)
    assert len(calls) == core.decisions_computed - before > 0
    # each captured call, replayed, gives what the reference gives on it (the states were captured, not shared)
    p, risk, market, q, kw = calls[-1]
    assert bits(bi.quote_replay_result(calls[-1])) == bits(py_quote(p, risk, market, q, **kw))


def test_the_decision_row_replays_a_whole_decision_at_the_last_ones_time_and_touch():
    from benchmarks import bench_instructions as bi
    from benchmarks.daystream import DATA, load

    if not DATA.exists():
        pytest.skip(f"{DATA} not present")
    events = load(DATA).events[:9_000]
    core, args = bi.warm_decision(events, 6_000, 3_000)
    last = core.last_decision
    computed = core.decisions_computed
    for _ in range(3):
        core._decide_now(*args)
        d = core.last_decision
        assert d is not last and d.ts_ns == last.ts_ns  # a new decision, at the same time
        assert list(d.inputs) == list(last.inputs)  # with the same inputs named (a whole decision: quoted, not refused)
        assert d.inputs["best_bid"] == last.inputs["best_bid"] and d.inputs["q"] == last.inputs["q"]
        assert d.bid_px is not None and d.ask_px is not None and d.bid_px < d.ask_px  # both sides quoted
    assert core.decisions_computed == computed + 3
