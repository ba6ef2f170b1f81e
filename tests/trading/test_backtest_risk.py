"""A stored backtest runs the live session's risk rules in the same driver: a drawdown limit set low halts it."""

from __future__ import annotations

from pathlib import Path

import pytest

from apps.trading.backtest import create_run, execute_run
from apps.trading.models import OrderEventRecord, RiskEventRecord
from tests.trading.test_backtest_command import PARAMS, write_binance_raw


@pytest.mark.django_db(transaction=True)
def test_a_low_drawdown_limit_halts_a_backtest_and_nothing_is_placed_after_the_trip(tmp_path: Path) -> None:
    data = write_binance_raw(tmp_path / "feed.txt", 60, seed=11)
    params = {**PARAMS, "risk": {"drawdown": {"max_drawdown_frac": 0.000001}}}
    stored = execute_run(create_run([data], "binance-raw", params, "glft", name="drawdown"))
    trips = [t for t in stored.summary["risk_events"] if t["rule"] == "drawdown"]
    assert trips and trips[0]["action"] == "halt"
    t_halt = trips[0]["ts_ns"]
    # one row per episode: the drawdown leaves and re-enters its bound as the marked P&L moves; the halt holds
    rows = RiskEventRecord.objects.filter(session_id=stored.session_id, rule="drawdown").order_by("ts_ns", "id")
    assert [(r.ts_ns, r.action) for r in rows if r.action != "cleared"] == [(t["ts_ns"], "halt") for t in trips]
    places = OrderEventRecord.objects.filter(session_id=stored.session_id, kind="place")
    assert places.filter(ts_ns__lt=t_halt).exists()
    assert not places.filter(ts_ns__gt=t_halt).exists(), "an order went out after the halt"
    assert OrderEventRecord.objects.filter(session_id=stored.session_id, kind="blocked").exists()
    assert stored.summary["blocked_actions"] > 0
