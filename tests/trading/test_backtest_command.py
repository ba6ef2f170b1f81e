"""``manage.py backtest`` end to end on real PostgreSQL: stored session, summary, comparison, bad input."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from apps.engine.market.events import BestBidAsk, DepthSnapshot, DepthUpdate, Trade
from apps.engine.simulation.simulator import MarketSimulator, SimulatorParams
from apps.review.models import DecisionAggregateState
from apps.trading.models import (
    BacktestRun,
    FillRecord,
    Order,
    OrderEventRecord,
    PnlPoint,
    QuoteDecisionRecord,
    TradingSession,
)

SP = SimulatorParams()
PARAMS = {
    "strategy": {"sigma_bucket_s": 0.25, "sigma_min_buckets": 8, "kappa_min_volume": 0.05},
    "fixed": {"half_spread_bps": 1.0},
    "as": {"horizon_s": 5.0},
    "venue": {"tick_size": SP.tick_size, "lot_size": SP.lot_size, "entry_latency_ns": 2_000_000},
    "instrument": {"venue": "sim-file", "symbol": "BTCUSDT", "kind": "perp"},
}


def _levels(levels) -> list[list[str]]:
    return [[f"{p:.1f}", f"{s:.3f}"] for p, s in levels]


def write_binance_raw(path: Path, seconds: float, seed: int = 3) -> Path:
    """Simulated market written in the binance-raw recording format (``<local_ns> <json>`` per line)."""
    lines = []
    uid = 1000
    for ev in MarketSimulator(SP, seed=seed).events(until_ns=SP.start_ts_ns + int(seconds * 1e9)):
        ms = ev.ts_exch_ns // 1_000_000
        uid += 1
        if isinstance(ev, Trade):
            data = {
                "e": "trade",
                "E": ms,
                "T": ms,
                "t": uid,
                "p": f"{ev.price:.1f}",
                "q": f"{ev.size:.3f}",
                "m": ev.aggressor < 0,
            }
            msg = {"stream": "btcusdt@trade", "data": data}
        elif isinstance(ev, BestBidAsk):
            data = {
                "e": "bookTicker",
                "u": uid,
                "b": f"{ev.bid_px:.1f}",
                "B": f"{ev.bid_size:.3f}",
                "a": f"{ev.ask_px:.1f}",
                "A": f"{ev.ask_size:.3f}",
                "T": ms,
                "E": ms,
            }
            msg = {"stream": "btcusdt@bookTicker", "data": data}
        elif isinstance(ev, DepthSnapshot):
            msg = {"lastUpdateId": uid, "E": ms, "T": ms, "bids": _levels(ev.bids), "asks": _levels(ev.asks)}
        elif isinstance(ev, DepthUpdate):
            data = {
                "e": "depthUpdate",
                "E": ms,
                "T": ms,
                "U": uid,
                "u": uid,
                "pu": uid - 1,
                "b": _levels(ev.bids),
                "a": _levels(ev.asks),
            }
            msg = {"stream": "btcusdt@depth@0ms", "data": data}
        else:
            continue
        lines.append(f"{ev.ts_local_ns} {json.dumps(msg)}")
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def data_file(tmp_path_factory) -> Path:
    return write_binance_raw(tmp_path_factory.mktemp("bt") / "sim.txt", 90)


def run_command(*args: str) -> str:
    out = io.StringIO()
    call_command("backtest", *args, stdout=out)
    return out.getvalue()


@pytest.mark.django_db(transaction=True)
def test_compare_stores_three_sessions_and_prints_their_summaries_side_by_side(data_file: Path) -> None:
    out = run_command(
        "--data", str(data_file), "--format", "binance-raw", "--params", json.dumps(PARAMS), "--compare", "--json"
    )
    summaries = json.loads(out)
    assert [s["strategy"] for s in summaries] == ["glft", "fixed", "as"]
    for s in summaries:
        for key in (
            "fills_buy",
            "fills_sell",
            "volume",
            "maker_share",
            "avg_quoted_spread_bps",
            "final_inventory",
            "max_abs_inventory",
            "pnl_total",
            "pnl",
            "sharpe_per_interval",
            "sharpe_interval_s",
            "max_drawdown",
            "events_processed",
            "events_per_s",
        ):
            assert key in s, key
        assert s["events_processed"] == s["data"]["events"] > 500
        session = TradingSession.objects.get(pk=s["session_id"])
        assert session.mode == TradingSession.Mode.BACKTEST and session.status == TradingSession.Status.STOPPED
        run = BacktestRun.objects.get(pk=s["run_id"])
        assert run.status == BacktestRun.Status.DONE and run.summary["pnl_total"] == s["pnl_total"]
        fills = FillRecord.objects.filter(session=session)
        assert fills.filter(side=1).count() == s["fills_buy"] and fills.filter(side=-1).count() == s["fills_sell"]
        assert QuoteDecisionRecord.objects.filter(session=session).count() == s["decisions"]
        # the review analytics' aggregates are built by the command, up to its last decision
        folded = DecisionAggregateState.objects.get(session=session)
        assert folded.last_id == QuoteDecisionRecord.objects.filter(session=session).order_by("-ts", "-id")[0].id
        assert OrderEventRecord.objects.filter(session=session, kind="place").exists()
        assert not Order.objects.filter(session=session, status__in=Order.OPEN_STATUSES).exists()
        points = PnlPoint.objects.filter(session=session).order_by("ts_ns")
        assert points.count() > 60
        last = points.last()
        assert last.total == pytest.approx(s["pnl_total"])
        parts = last.spread_capture + last.adverse_selection + last.inventory + last.fees + last.funding
        assert parts == pytest.approx(last.total, abs=1e-9)
    glft = summaries[0]
    assert glft["fills_buy"] > 0 and glft["fills_sell"] > 0


@pytest.mark.django_db(transaction=True)
def test_the_table_output_names_every_measure(data_file: Path, tmp_path: Path) -> None:
    params = tmp_path / "p.json"
    params.write_text(json.dumps({**PARAMS, "strategy": PARAMS["strategy"]}))
    out = run_command(
        "--data", str(data_file), "--format", "binance-raw", "--params", str(params), "--strategy", "fixed"
    )
    for label in (
        "fills buy",
        "maker share",
        "avg quoted spread (bps)",
        "adverse selection",
        "Sharpe per interval",
        "max drawdown",
        "events per second",
    ):
        assert label in out
    assert "Sharpe from" in out and "P&L increments of 1 s" in out
    assert "Sharpe annualised (needs >= 1 day of data)" in out and "n/a (< 1 day)" in out


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("params", "message"),
    [
        # an instrument the registry does not know (the file's records say binance-usdm:BTCUSDT, a known one)
        ({"venue": {"tick_size": 0.1}, "instrument": PARAMS["instrument"]}, "params.venue.lot_size is required"),
        ({**PARAMS, "strategy": {"gamma": -1}}, "params.strategy: StrategyParams.gamma must be > 0"),
        ({**PARAMS, "venue": {**PARAMS["venue"], "queue_model": "magic"}}, "queue_model"),
        ({**PARAMS, "backtest": {"markout_s": 0}}, "markout_s"),
        ({**PARAMS, "extra": {}}, "unknown section"),
    ],
)
def test_bad_parameters_fail_with_a_message_naming_the_field_and_store_nothing(data_file, params, message) -> None:
    with pytest.raises(CommandError, match=message):
        run_command("--data", str(data_file), "--format", "binance-raw", "--params", json.dumps(params))
    assert not TradingSession.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_a_missing_file_is_reported_not_a_traceback(tmp_path: Path) -> None:
    with pytest.raises(CommandError, match="data file not found"):
        run_command("--data", str(tmp_path / "nope.gz"), "--format", "binance-raw", "--params", json.dumps(PARAMS))
