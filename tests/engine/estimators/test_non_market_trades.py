"""Non-market prints (insurance fund, ADL) stay out of κ, flow, arrival rate, Hawkes and the fill model; the
mark-price stream feeds the funding term of the reservation price and the ledger's funding part."""

from __future__ import annotations

from fractions import Fraction

import pytest

from apps.engine.estimators.kappa import KappaParams, TradeKappaEstimator
from apps.engine.estimators.market import MarketEstimators, estimate_events
from apps.engine.execution.paper import PaperVenue, PaperVenueConfig
from apps.engine.market.events import BestBidAsk, Fill, MarkPrice, PlaceOrder, Side, Trade
from apps.engine.simulation.backtest import EngineLoop
from apps.engine.simulation.baselines import FixedSpreadParams, FixedSpreadQuoter

S = 1_000_000_000
MS = 1_000_000


def tape(non_market: bool) -> list:
    """A quiet book with a market trade every 100 ms; with ``non_market`` a big insurance-fund print every 50 ms."""
    out: list = []
    for i in range(600):
        t = S + i * 50 * MS
        out.append(BestBidAsk(t, t, 100.0, 5.0, 100.1, 5.0))
        if i % 2 == 0:
            out.append(Trade(t + 1, t + 1, 100.1 if i % 4 else 100.0, 0.2, Side.BUY if i % 4 else Side.SELL, f"m{i}"))
        elif non_market:
            out.append(Trade(t + 1, t + 1, 99.0, 3.0, Side.SELL, f"x{i}", market=False, kind="INSURANCE_FUND"))
    end = S + 600 * 50 * MS
    out.append(BestBidAsk(end, end, 100.0, 5.0, 100.1, 5.0))  # both tapes span the same time
    return out


def test_the_estimators_read_the_same_market_with_or_without_non_market_prints() -> None:
    clean, dirty = estimate_events(tape(False), tick_size=0.1), estimate_events(tape(True), tick_size=0.1)
    assert clean["non_market_trades_excluded"] == 0
    assert dirty["non_market_trades_excluded"] == 300
    assert dirty["trades_seen"] == clean["trades_seen"] == 300
    for key in ("kappa", "lambda_per_s", "hawkes", "sigma"):
        assert dirty[key] == clean[key], key


def test_market_estimators_skip_the_print_in_every_trade_estimator() -> None:
    est = MarketEstimators(tick_size=0.1)
    est.on_event(BestBidAsk(S, S, 100.0, 5.0, 100.1, 5.0))
    est.on_event(Trade(S + 1, S + 1, 95.0, 50.0, Side.SELL, "x", market=False, kind="ADL"))
    assert est.trades_seen == 0 and est.non_market_trades == 1
    assert len(est._trade_times) == 0 and est._pending_volume == 0.0


def test_kappa_from_events_skips_a_non_market_print() -> None:
    k = TradeKappaEstimator(KappaParams(min_volume=0.0))
    bbo = BestBidAsk(S, S, 100.0, 5.0, 100.1, 5.0)
    k.update_from_events(Trade(S + 1, S + 1, 95.0, 50.0, Side.SELL, "x", market=False, kind="ADL"), bbo)
    assert len(k._trades) == 0


def test_the_fill_model_does_not_fill_us_on_a_non_market_print() -> None:
    v = PaperVenue(PaperVenueConfig(tick_size=0.1, lot_size=0.01), seed=0)
    v.on_market(BestBidAsk(1, 1, 100.0, 5.0, 100.2, 5.0))
    v.submit([PlaceOrder("b1", Side.BUY, 100.0, 1.0)], 1)
    v.on_market(BestBidAsk(2, 2, 100.0, 5.0, 100.2, 5.0))
    # an insurance-fund print through our bid: nothing
    got = v.on_market(Trade(3, 3, 99.5, 10.0, Side.SELL, "x", market=False, kind="INSURANCE_FUND"))
    assert not [e for e in got if isinstance(e, Fill)] and v.non_market_trades == 1
    # the same print as a market trade fills us
    got = v.on_market(Trade(4, 4, 99.5, 10.0, Side.SELL, "y"))
    assert [e.size for e in got if isinstance(e, Fill)] == [1.0]


def test_the_mark_price_rate_enters_the_reservation_price() -> None:
    from tests.engine.simulation.test_backtest import glft, sim_events

    events = sim_events(40)
    t_mark = events[len(events) // 2].ts_local_ns
    plain, fed = glft(), glft()
    for ev in events:
        plain.on_event(ev)
        if ev.ts_local_ns >= t_mark and fed.market.mark_price != fed.market.mark_price:  # NaN until the first
            fed.on_event(MarkPrice(ev.ts_exch_ns, ev.ts_local_ns, 100.0, 0.0003, ev.ts_exch_ns + 3600 * S))
        fed.on_event(ev)
    a, b = plain.last_decision, fed.last_decision
    assert a is not None and b is not None and "funding_rate" in b.inputs, b.reasons
    assert a.inputs["funding_rate"] == 0.0 and a.inputs["funding_term_frac"] == 0.0
    assert b.inputs["funding_rate"] == 0.0003
    assert b.inputs["funding_term_frac"] == pytest.approx(0.0003 * b.inputs["horizon_s"] / (8 * 3600.0))
    assert b.inputs["funding_term_frac"] > 0


def test_a_settlement_in_the_mark_price_stream_is_paid_by_the_ledger() -> None:
    quoter = FixedSpreadQuoter(
        FixedSpreadParams(half_spread_bps=1.0, order_size=1.0, max_inventory=5.0), tick_size=0.1, lot_size=0.01
    )
    loop = EngineLoop(quoter, PaperVenue(PaperVenueConfig(tick_size=0.1, lot_size=0.01), seed=0))
    settle = 10 * S
    loop.on_market(BestBidAsk(S, S, 100.0, 5.0, 100.2, 5.0))
    loop.on_market(BestBidAsk(2 * S, 2 * S, 100.0, 5.0, 100.2, 5.0))
    loop.on_market(Trade(3 * S, 3 * S, 99.9, 20.0, Side.SELL, "t1"))  # through our bid: we buy 1
    loop.on_market(BestBidAsk(4 * S, 4 * S, 100.0, 5.0, 100.2, 5.0))
    q = loop.ledger.position
    assert q > 0
    loop.on_market(MarkPrice(5 * S, 5 * S, 100.1, 0.0001, settle))
    loop.on_market(MarkPrice(9 * S, 9 * S, 100.1, 0.0002, settle))  # the rate moves before the settlement
    assert loop.ledger.exact().funding == 0
    mid = loop.ledger.mid
    q = loop.ledger.position
    loop.on_market(MarkPrice(settle + S, settle + S, 100.1, 0.00005, settle + 8 * 3600 * S))
    e = loop.ledger.exact()
    assert e.funding == -Fraction(q) * Fraction(mid) * Fraction(0.0002)  # longs pay the rate in force at T
    assert e.total == e.components_sum
