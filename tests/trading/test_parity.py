"""Live/replay parity: one recorded feed through the backtester and through a wall-clock-stepped live loop shape.

Both run the same driver (apps.engine.simulation.backtest.EngineLoop) with the session's risk rules, and record
through the one sink (apps.trading.recording.RecorderSink); the stored decisions, order events, fills and risk
events must be identical (client order ids differ only by the session
prefix). The live loop's shape is ``for each step: feed.step_until(now); venue.advance(now)`` at the loop
interval; with the merge in EngineLoop the step size cannot change what happens.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.conf import settings

from apps.engine.execution.paper import PaperVenue
from apps.engine.market.feeds import ReplayingFeed
from apps.engine.simulation.backtest import EngineLoop
from apps.trading.backtest import build_strategy, create_run, execute_run, load_events, parse_params
from apps.trading.models import FillRecord, OrderEventRecord, QuoteDecisionRecord, RiskEventRecord
from apps.trading.recording import Recorder, RecorderSink, make_writer
from tests.trading.test_backtest_command import PARAMS, write_binance_raw

PARITY = {**PARAMS, "venue": {**PARAMS["venue"], "entry_latency_ns": 3_000_000, "response_latency_ns": 4_000_000}}


def _live_shaped_run(run, events: list) -> None:
    """What QuotingLoop.step does, with a replay feed and the loop interval as the wall-clock step."""
    session = run.session
    p = parse_params(run.params)
    writer = make_writer(0.2, None)
    strategy = build_strategy(run.strategy, p, f"bt{session.pk}")
    loop = EngineLoop(
        strategy,
        PaperVenue(p.venue, seed=int(session.seed)),
        p.backtest,
        sink=RecorderSink(Recorder(writer, session.pk, session.instrument_id)),
        risk=p.session_risk(run.strategy),
    )
    step_ns = settings.MM_LOOP_INTERVAL_MS * 1_000_000
    now = events[0].ts_local_ns
    feed = ReplayingFeed(events, start_ns=now)  # the live loop's replay feed, with no time shift
    writer.start()
    try:
        while not feed.exhausted:
            now += step_ns
            loop.step_until(feed.poll(now), now)
        loop.finish()
    finally:
        writer.close()


def _rows(session_id: int) -> dict[str, list]:
    strip = re.compile(r"^bt\d+-")
    decisions = [
        (d.ts_ns, d.mid, d.bid_px, d.ask_px, d.bid_size, d.ask_size, d.inputs, d.reasons)
        for d in QuoteDecisionRecord.objects.filter(session_id=session_id).order_by("id")
    ]
    fills = [
        (f.ts_ns, strip.sub("", f.client_order_id), f.side, f.price, f.size, f.fee, f.liquidity)
        for f in FillRecord.objects.filter(session_id=session_id).order_by("id")
    ]
    events = [
        (e.ts_ns, strip.sub("", e.client_order_id), e.kind)
        for e in OrderEventRecord.objects.filter(session_id=session_id).order_by("id")
    ]
    risk = [
        (r.ts_ns, r.rule, r.action, r.values, r.message)
        for r in RiskEventRecord.objects.filter(session_id=session_id).order_by("id")
    ]
    return {"decisions": decisions, "fills": fills, "order_events": events, "risk_events": risk}


@pytest.mark.django_db(transaction=True)
def test_the_same_feed_gives_the_same_decisions_and_fills_live_and_in_replay(tmp_path: Path) -> None:
    data = write_binance_raw(tmp_path / "feed.txt", 75, seed=11)
    events = load_events([data], "binance-raw").events
    replay = create_run([data], "binance-raw", PARITY, "glft", name="replay")
    execute_run(replay, events)
    live = create_run([data], "binance-raw", PARITY, "glft", name="live-shaped")
    _live_shaped_run(live, events)
    a, b = _rows(replay.session_id), _rows(live.session_id)
    assert len(a["fills"]) > 5 and len(a["decisions"]) > 20
    assert a["decisions"] == b["decisions"]
    assert a["fills"] == b["fills"]
    assert a["order_events"] == b["order_events"]
    assert a["risk_events"] == b["risk_events"]


@pytest.mark.django_db(transaction=True)
def test_replaying_twice_stores_identical_results(tmp_path: Path) -> None:
    data = write_binance_raw(tmp_path / "feed.txt", 45, seed=12)
    first = execute_run(create_run([data], "binance-raw", PARITY, "fixed"))
    second = execute_run(create_run([data], "binance-raw", PARITY, "fixed"))
    drop = ("wall_s", "events_per_s", "data")
    sa = {k: v for k, v in first.summary.items() if k not in drop}
    sb = {k: v for k, v in second.summary.items() if k not in drop}
    assert sa == sb
    assert _rows(first.session_id) == _rows(second.session_id)
