"""Estimator snapshots (issue 18): the one driver records κ, σ, λ, flow, drift, microprice and γ at a bounded rate
of data time, through the sink, in backtests and in the live loop, without changing a single decision.

Real recorded data (../shared/data, skipped without it) through ``manage.py backtest`` on real PostgreSQL, and a
simulated paper session through the real quoting loop.
"""

from __future__ import annotations

import io
import itertools
import json
import math
from collections import Counter
from typing import Any

import pytest
from django.core.management import call_command
from django.db.models import Count, Max, Min

from apps.engine.core import StrategyCore, StrategyParams
from apps.engine.execution.paper import PaperVenue, PaperVenueConfig
from apps.engine.simulation.backtest import BacktestConfig, EngineLoop
from apps.engine.simulation.snapshots import NAMES
from apps.marketdata.parsers import Quarantined, parse_file
from apps.trading.backtest import parse_params
from apps.trading.models import BacktestRun, EstimatorSnapshotRecord, QuoteDecisionRecord
from tests.conftest import shared_data
from tests.trading.test_backtest_review import USDM, USDM_PARAMS
from tests.trading.test_quoting_loop import _session

_NS = 1_000_000_000
STATES = {"warming", "ok", "stale", "failed"}


class ListSink:
    """A sink that keeps only the estimator snapshots (every other call is accepted and dropped)."""

    def __init__(self) -> None:
        self.snapshots: list[tuple[int, list[Any]]] = []

    def __getattr__(self, name: str) -> Any:
        return lambda *a, **k: None

    def estimator_snapshot(self, ts_ns: int, snapshots: Any) -> None:
        self.snapshots.append((ts_ns, list(snapshots)))


def _usdm_events(n: int | None = None) -> list[Any]:
    events = [e for e in parse_file("binance-raw", shared_data(*USDM)) if not isinstance(e, Quarantined)]
    return events[:n] if n else events


def _run(events: list[Any], sink: Any, interval_s: float = 1.0) -> Any:
    core = StrategyCore(StrategyParams(), tick_size=0.1, lot_size=0.001)
    venue = PaperVenue(PaperVenueConfig(tick_size=0.1, lot_size=0.001), seed=1)
    return EngineLoop(core, venue, BacktestConfig(snapshot_interval_s=interval_s), sink=sink).run(events)


def test_recording_snapshots_changes_no_decision_and_no_fill() -> None:
    """Reading the estimators must not refresh their caches (nor draw from κ's goodness-of-fit generator)."""
    events = _usdm_events(40_000)
    bare = _run(events, None)
    sink = ListSink()
    recorded = _run(events, sink, interval_s=0.5)
    assert sink.snapshots, "nothing recorded"
    assert recorded.decisions == bare.decisions and len(bare.decisions) > 100
    assert recorded.fills == bare.fills and bare.fills
    assert recorded.summary(timing=False) == bare.summary(timing=False)


def test_snapshots_sit_on_a_grid_of_the_interval_at_most_one_per_point() -> None:
    events = _usdm_events(40_000)
    sink = ListSink()
    result = _run(events, sink, interval_s=2.0)
    ts = [t for t, _ in sink.snapshots]
    assert all(t % (2 * _NS) == 0 for t in ts)
    assert all(b - a >= 2 * _NS for a, b in itertools.pairwise(ts))
    span_s = (result.last_ts_ns - result.first_ts_ns) / _NS
    assert span_s / 2.0 - 2 <= len(ts) <= span_s / 2.0 + 1
    names = Counter(s.name for _, snaps in sink.snapshots for s in snaps)
    assert set(names) == set(NAMES)


def test_the_snapshot_interval_is_validated_with_its_name() -> None:
    with pytest.raises(ValueError, match="snapshot_interval_s"):
        BacktestConfig(snapshot_interval_s=0).validate()
    with pytest.raises(ValueError, match=r"params\.backtest.*snapshot_interval_s"):
        parse_params({**USDM_PARAMS, "backtest": {"snapshot_interval_s": -1}})


@pytest.mark.django_db(transaction=True)
def test_a_backtest_on_a_shared_recording_stores_snapshots_at_the_bounded_rate() -> None:
    data = shared_data(*USDM)
    out = io.StringIO()
    call_command(
        "backtest", "--data", str(data), "--format", "binance-raw", "--params", json.dumps(USDM_PARAMS), stdout=out
    )
    run = BacktestRun.objects.latest("pk")
    assert run.status == BacktestRun.Status.DONE, run.error
    rows = EstimatorSnapshotRecord.objects.filter(session=run.session)
    span_s = run.summary["span_s"]  # 344.8 s of data
    per_name = dict(rows.values_list("name").annotate(n=Count("id")))
    assert set(per_name) == set(NAMES)
    # one per second of data, never more: the grid points the data reached
    assert per_name["kappa"] <= math.floor(span_s) + 1
    assert per_name["kappa"] >= span_s - 3
    kappa = rows.filter(name="kappa")
    bounds = kappa.aggregate(first=Min("ts_ns"), last=Max("ts_ns"))
    assert kappa.values("ts_ns").distinct().count() == per_name["kappa"]
    assert all(t % _NS == 0 for t in kappa.values_list("ts_ns", flat=True))
    assert (bounds["last"] - bounds["first"]) / _NS <= span_s
    assert set(rows.values_list("state", flat=True)) <= STATES
    # κ warms up then is OK with its interval and A; the interval brackets the value
    assert kappa.filter(state="warming").exists() or kappa.first().state == "ok"
    ok = kappa.filter(state="ok").last()
    assert ok.ci_low < ok.value < ok.ci_high and ok.std > 0
    assert ok.detail["a_per_s"] > 0 and "ks_stat" in ok.detail and ok.detail["age_s"] >= 0
    sc = rows.filter(name="sigma_clean", state="ok").last()
    st = rows.get(name="sigma_total", ts_ns=sc.ts_ns)
    assert sc.ci_low < sc.value < sc.ci_high and st.value >= sc.value * 0.5 and st.ci_low is None
    assert rows.filter(name="sigma_clean", state="warming").exists()  # σ needs its buckets first
    g = rows.filter(name="gamma").last()
    contributions = {k for k in g.detail if k.startswith("gamma_contrib_")}
    assert {"gamma_contrib_inventory_utilisation", "gamma_contrib_volatility_regime"} <= contributions
    # γ recorded is the γ of the decision in force then
    d = QuoteDecisionRecord.objects.get(session=run.session, ts_ns=g.detail["decision_ts_ns"])
    assert d.inputs["gamma"] == pytest.approx(g.value)
    # no NaN reaches the table: unknown numbers are NULL
    assert not rows.filter(value=float("nan")).exists()


@pytest.mark.django_db(transaction=True)
def test_the_live_loop_records_snapshots_at_the_bounded_rate(settings) -> None:
    from apps.trading.loop import QuotingLoop

    settings.MM_LOOP_INTERVAL_MS = 50
    session = _session()
    assert QuotingLoop(session.pk).run(max_seconds=6) == "time_limit"
    rows = EstimatorSnapshotRecord.objects.filter(session=session)
    assert rows.exists(), "the live loop recorded no estimator snapshot"
    instants = sorted(set(rows.values_list("ts_ns", flat=True)))
    assert len(instants) <= 7  # at most one per second of its 6 s
    assert all(b - a >= _NS for a, b in itertools.pairwise(instants))
    assert {"kappa", "sigma_clean", "lambda"} <= set(rows.values_list("name", flat=True))
