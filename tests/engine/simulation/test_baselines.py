"""The baseline quoters: the formulas they claim, the core's interface, limits, validation."""

from __future__ import annotations

import pytest

from apps.engine.core import StrategyCore, StrategyParams
from apps.engine.execution.orders import round_price
from apps.engine.market.events import BestBidAsk, CancelAll, Fill, OrderAck, PlaceOrder, Side
from apps.engine.quoting.pricing import avellaneda_stoikov_quotes
from apps.engine.simulation.baselines import ASParams, AvellanedaStoikovQuoter, FixedSpreadParams, FixedSpreadQuoter

TICK, LOT = 0.1, 0.001


def bbo(t: int = 1, bid: float = 60000.0, ask: float = 60000.2) -> BestBidAsk:
    return BestBidAsk(t, t, bid, 1.0, ask, 1.0)


def test_fixed_spread_quotes_mid_plus_minus_its_half_spread_post_only() -> None:
    q = FixedSpreadQuoter(FixedSpreadParams(half_spread_bps=2.0, order_size=0.01), tick_size=TICK, lot_size=LOT)
    actions = q.on_event(bbo())
    mid = 60000.1
    places = {a.side: a for a in actions if isinstance(a, PlaceOrder)}
    assert places[Side.BUY].price == round_price(mid * (1 - 2e-4), TICK, Side.BUY)
    assert places[Side.SELL].price == round_price(mid * (1 + 2e-4), TICK, Side.SELL)
    assert all(a.tif == "POST_ONLY" and a.size == 0.01 for a in places.values())
    assert q.decisions_changed and q.last_decision is not None


def test_fixed_spread_stops_bidding_at_the_inventory_limit_and_says_so() -> None:
    q = FixedSpreadQuoter(FixedSpreadParams(order_size=0.01, max_inventory=0.01), tick_size=TICK, lot_size=LOT)
    bid = next(a for a in q.on_event(bbo()) if isinstance(a, PlaceOrder) and a.side is Side.BUY)
    q.on_event(OrderAck(2, 2, bid.client_order_id, "open", bid.price, 0.01))
    q.on_event(Fill(3, 3, bid.client_order_id, "x1", Side.BUY, bid.price, 0.01))
    q.on_event(bbo(4))
    assert q.last_decision.bid_px is None
    assert any("no bid" in r for r in q.last_decision.reasons)


def test_as_with_fixed_sigma_and_kappa_is_the_closed_form_around_the_reservation_price() -> None:
    p = ASParams(gamma=50.0, horizon_s=10.0, sigma=2e-4, kappa=8000.0, order_size=0.01)
    q = AvellanedaStoikovQuoter(p, tick_size=TICK, lot_size=LOT)
    q.on_event(bbo())
    raw_bid, raw_ask = avellaneda_stoikov_quotes(60000.1, 0.0, 50.0, 2e-4, 8000.0, 10.0)
    d = q.last_decision
    assert d.inputs["raw_bid"] == raw_bid and d.inputs["raw_ask"] == raw_ask
    assert d.bid_px == round_price(raw_bid, TICK, Side.BUY) and d.ask_px == round_price(raw_ask, TICK, Side.SELL)


def test_as_with_measured_inputs_waits_for_its_estimators_and_says_why() -> None:
    q = AvellanedaStoikovQuoter(ASParams(), tick_size=TICK, lot_size=LOT)
    assert q.on_event(bbo()) == []
    assert q.last_decision.bid_px is None and q.last_decision.reasons


def test_baselines_have_the_strategy_core_interface() -> None:
    core = StrategyCore(StrategyParams(), tick_size=TICK, lot_size=LOT)
    for quoter in (
        FixedSpreadQuoter(FixedSpreadParams(), tick_size=TICK, lot_size=LOT),
        AvellanedaStoikovQuoter(ASParams(), tick_size=TICK, lot_size=LOT),
    ):
        for name in ("on_event", "last_decision", "decisions_changed", "tracker", "halt", "state", "params"):
            assert hasattr(quoter, name) and hasattr(core, name), name
        quoter.on_event(bbo())
        assert isinstance(quoter.halt("test")[0], CancelAll)
        assert quoter.on_event(bbo(5)) == []  # halted is a latch
        assert quoter.state()["halted"] is True


@pytest.mark.parametrize(
    ("cls", "field", "value"),
    [
        (FixedSpreadParams, "half_spread_bps", 0.0),
        (FixedSpreadParams, "order_size", float("nan")),
        (FixedSpreadParams, "requote_ticks", 1.5),
        (ASParams, "gamma", -1.0),
        (ASParams, "kappa", 0.0),
        (ASParams, "sigma_min_buckets", 1),
    ],
)
def test_nonsense_parameters_are_rejected_by_name(cls, field, value) -> None:
    with pytest.raises(ValueError, match=field):
        cls(**{field: value}).validate()


def test_unknown_parameters_are_rejected_unless_asked_to_ignore_them() -> None:
    with pytest.raises(ValueError, match="unknown"):
        FixedSpreadParams.from_dict({"half_spread": 1})
    assert ASParams.from_dict({"gamma": 5.0, "something_glft_only": 1}, ignore_unknown=True).gamma == 5.0
