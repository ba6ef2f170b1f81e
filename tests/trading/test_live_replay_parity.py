"""The same recorded feed through the LIVE quoting loop (paper venue, real speed) and through the backtester gives
the same decisions, fills and risk events, with every risk rule of the session active: one driver, two clocks."""

from __future__ import annotations

import pytest

from apps.engine.core import StrategyCore, StrategyParams
from apps.engine.execution.paper import PaperVenue, PaperVenueConfig
from apps.engine.market.feeds import shift_event
from apps.engine.risk.session import SessionRisk, build_risk_engine
from apps.engine.simulation.backtest import EngineLoop
from apps.marketdata.models import Instrument
from apps.trading.loop import QuotingLoop
from apps.trading.models import FillRecord, QuoteDecisionRecord, RiskEventRecord, TradingSession
from apps.trading.runtime import load_replay as _load_replay
from tests.conftest import shared_data

# The skew cap (issue 16) is off: with it GLFT fills so rarely on these 50 s that some wall-clock shifts of the
# live run leave "halt" with no fill to compare (one clean-clone run); off, "halt" fills 9-10 times at every shift
# measured. The cap is the quoter's and has its own tests; this test is about the one driver under two clocks.
STRATEGY = {"sigma_bucket_s": 0.25, "sigma_min_buckets": 8, "kappa_min_volume": 0.05, "skew_cap_by_fill_cost": False}
VENUE = {"entry_latency_ns": 2_000_000, "response_latency_ns": 3_000_000}
# Every rule of the session is active. One bound is set from the data: the recorder's clock was 1.27 s behind the
# exchange (MANIFEST), which the default 1 s skew bound answers by never quoting at all. One more bound is set low
# so that a rule trips on these 50 s of data and the risk events compare something: a message rate that pulls
# quotes twice (cancel at once, resume when it clears), or a drawdown limit that halts for good.
SKEW = {"clock_skew": {"max_abs_skew_ms": 2000.0}}
CASES = {
    "pull_quotes": {**SKEW, "message_rate": {"max_messages": 20}},
    "halt": {**SKEW, "drawdown": {"max_drawdown_frac": 0.00002}},
}


@pytest.mark.parametrize("case", CASES)
@pytest.mark.django_db(transaction=True)
def test_the_live_loop_and_the_backtester_agree_on_a_recorded_feed(case: str):
    risk_params = CASES[case]
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
        params={"strategy": STRATEGY, "venue": VENUE, "risk": risk_params, "replay": replay},
    )
    loop = QuotingLoop(session.pk)
    outcome = loop.run(max_seconds=240)
    assert outcome == "replay_finished"

    events = [shift_event(e, loop.feed.feed.shift_ns) for e in _load_replay(replay, inst.pk)]
    core = StrategyCore(StrategyParams.from_dict(STRATEGY), tick_size=0.1, lot_size=0.001, id_prefix="bt")
    venue = PaperVenue(PaperVenueConfig(tick_size=0.1, lot_size=0.001, **VENUE), seed=3)
    q_max = core.params.max_inventory
    risk = SessionRisk(*build_risk_engine(risk_params, q_max), q_max)
    result = EngineLoop(core, venue, risk=risk).run(events)

    end = events[-1].ts_local_ns
    live_fills = [
        (f.ts_ns, f.side, round(f.price, 6), round(f.size, 9))
        for f in FillRecord.objects.filter(session=session, ts_ns__lte=end).order_by("ts_ns", "id")
    ]
    bt_fills = [
        (f.ts_local_ns, int(f.side), round(f.price, 6), round(f.size, 9)) for f in result.fills if f.ts_local_ns <= end
    ]
    if case == "halt":
        # The fills must compare something in at least one case. Not in "pull_quotes": its message-rate rule is
        # evaluated on the risk grid, aligned to whole intervals of the epoch, so how long quotes rest between
        # pulls depends on where the live run's wall-clock shift puts the feed on that grid: 0-8 fills over 14
        # shifts of this feed (0 in 4 of them), the same before and after any engine change. "halt" fills 9-10.
        assert bt_fills, "the backtest never filled: nothing to compare"

    assert live_fills == bt_fills
    live_dec = [
        (d.ts_ns, d.bid_px, d.ask_px)
        for d in QuoteDecisionRecord.objects.filter(session=session, ts_ns__lte=end).order_by("ts_ns", "id")
    ]
    bt_dec = [(d.ts_ns, d.bid_px, d.ask_px) for d in result.decisions if d.ts_ns <= end]
    assert len(bt_dec) > 10
    assert live_dec == bt_dec
    live_risk = sorted(
        (r.ts_ns, r.rule, r.action) for r in RiskEventRecord.objects.filter(session=session, ts_ns__lte=end)
    )
    bt_risk = sorted(
        [(t.ts_ns, t.rule, str(t.action)) for t in result.risk_events]
        + [(ts, rule, "cleared") for ts, rule in result.risk_cleared]
    )
    bt_risk = [r for r in bt_risk if r[0] <= end]
    assert bt_risk, "no rule tripped: the risk events compare nothing"
    assert {a for _, _, a in bt_risk} >= {case}
    assert live_risk == bt_risk
    session.refresh_from_db()
    assert session.status == TradingSession.Status.STOPPED and session.status_reason == "replay finished"
