"""The same recorded feed through the LIVE quoting loop (paper venue, real speed) and through the backtester gives
the same decisions and fills: one engine, two clocks."""

from __future__ import annotations

import pytest

from apps.engine.core import StrategyCore, StrategyParams
from apps.engine.execution.paper import PaperVenue, PaperVenueConfig
from apps.engine.market.feeds import shift_event
from apps.engine.simulation.backtest import EngineLoop
from apps.marketdata.models import Instrument
from apps.trading.loop import QuotingLoop, _load_replay
from apps.trading.models import FillRecord, QuoteDecisionRecord, TradingSession
from tests.conftest import shared_data

STRATEGY = {"sigma_bucket_s": 0.25, "sigma_min_buckets": 8, "kappa_min_volume": 0.05}
VENUE = {"entry_latency_ns": 2_000_000, "response_latency_ns": 3_000_000}
# rules that would pull quotes on their own clock would make the live run differ from the backtest by design
RISK = {
    "estimator_state": {"action": "warn"},
    "message_rate": {"max_messages": 10**6},
    "cancel_rate": {"max_cancels": 10**6},
    "stale_feed": {"max_age_s": 600.0},
    # the recorder's clock was 1.27 s behind the exchange (MANIFEST): the live rule rightly pulls quotes on it
    "clock_skew": {"max_abs_skew_ms": 5000.0},
}


@pytest.mark.django_db(transaction=True)
def test_the_live_loop_and_the_backtester_agree_on_a_recorded_feed():
    path = shared_data("hftbacktest-binance-usdm-btcusdt-20240808", "raw", "usdm_btcusdt_20240808.gz")
    replay = {"files": [str(path)], "format": "binance-raw", "max_events": 14000}
    inst = Instrument.objects.create(
        venue="binance-usdm-test", symbol="BTCUSDT", kind="perp", tick_size=0.1, lot_size=0.001
    )
    session = TradingSession.objects.create(
        name="parity",
        instrument=inst,
        seed=3,
        feed="replay",
        params={"strategy": STRATEGY, "venue": VENUE, "risk": RISK, "replay": replay},
    )
    loop = QuotingLoop(session.pk)
    outcome = loop.run(max_seconds=240)
    assert outcome == "replay_finished"

    events = [shift_event(e, loop.feed.shift_ns) for e in _load_replay(replay, inst.pk)]
    core = StrategyCore(StrategyParams.from_dict(STRATEGY), tick_size=0.1, lot_size=0.001, id_prefix="bt")
    venue = PaperVenue(PaperVenueConfig(tick_size=0.1, lot_size=0.001, **VENUE), seed=3)
    result = EngineLoop(core, venue).run(events)

    end = events[-1].ts_local_ns
    live_fills = [
        (f.ts_ns, f.side, round(f.price, 6), round(f.size, 9))
        for f in FillRecord.objects.filter(session=session, ts_ns__lte=end).order_by("ts_ns", "id")
    ]
    bt_fills = [
        (f.ts_local_ns, int(f.side), round(f.price, 6), round(f.size, 9)) for f in result.fills if f.ts_local_ns <= end
    ]
    assert bt_fills, "the backtest never filled: nothing to compare"

    assert live_fills == bt_fills
    live_dec = [
        (d.ts_ns, d.bid_px, d.ask_px)
        for d in QuoteDecisionRecord.objects.filter(session=session, ts_ns__lte=end).order_by("ts_ns", "id")
    ]
    bt_dec = [(d.ts_ns, d.bid_px, d.ask_px) for d in result.decisions if d.ts_ns <= end]
    assert len(bt_dec) > 10
    assert live_dec == bt_dec
    session.refresh_from_db()
    assert session.status == TradingSession.Status.STOPPED and session.status_reason == "replay finished"
