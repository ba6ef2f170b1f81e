"""The strategy core on the simulator through the paper venue: the same loop a backtest runs."""

from __future__ import annotations

import math

import pytest

from apps.engine.core import StrategyCore, StrategyParams
from apps.engine.execution.paper import PaperVenue, PaperVenueConfig
from apps.engine.market.events import BestBidAsk, CancelAll, PlaceOrder, Side, Trade
from apps.engine.simulation.simulator import MarketSimulator, SimulatorParams

FAST = StrategyParams(sigma_bucket_s=0.25, sigma_min_buckets=8, kappa_min_volume=0.05)


def run(seconds: float, params: StrategyParams = FAST, seed: int = 3, sim: SimulatorParams | None = None):
    sp = sim or SimulatorParams()
    simulator = MarketSimulator(sp, seed=seed)
    venue = PaperVenue(PaperVenueConfig(tick_size=sp.tick_size, lot_size=sp.lot_size), seed=seed)
    core = StrategyCore(params, tick_size=sp.tick_size, lot_size=sp.lot_size)
    decisions = []

    def handle(events):
        for oe in events:
            acts = core.on_event(oe)
            if acts:
                handle(venue.submit(acts, oe.ts_local_ns))

    for ev in simulator.events(until_ns=sp.start_ts_ns + int(seconds * 1e9)):
        handle(venue.on_market(ev))
        acts = core.on_event(ev)
        if core.decisions_changed:
            decisions.append(core.last_decision)
        if acts:
            handle(venue.submit(acts, ev.ts_local_ns))
    return core, venue, decisions


def test_it_does_not_quote_until_kappa_and_sigma_are_measured():
    core, _, decisions = run(3, StrategyParams(kappa_min_volume=1e6))
    assert decisions and all(d.bid_px is None and d.ask_px is None for d in decisions)
    assert any("kappa warming" in r for r in decisions[-1].reasons)
    assert core.tracker.open_orders() == []


def test_it_quotes_both_sides_around_the_reservation_price_from_measured_kappa():
    core, _, decisions = run(40)
    quoted = [d for d in decisions if d.bid_px and d.ask_px]
    assert quoted, "never quoted"
    d = quoted[-1]
    mid, kappa = d.inputs["mid"], d.inputs["kappa"]
    assert 1000 < kappa < 20000  # simulator truth is 5000
    r = d.inputs["reservation_price"]
    # half-spread from (1/γ)ln(1+γ/κ) with the γ the risk model produced, rounded outward to the tick
    gamma = d.inputs["gamma"]
    assert d.inputs["gamma_base"] == FAST.gamma
    delta = math.log1p(gamma / kappa) / gamma
    assert r * 1 - delta * mid - 0.1 - 1e-9 <= d.bid_px <= r - delta * mid + 1e-9
    assert r + delta * mid - 1e-9 <= d.ask_px <= r + delta * mid + 0.1 + 1e-9
    assert core.fills > 0


def test_a_long_inventory_moves_both_quotes_down():
    _core, _, decisions = run(
        60,
        StrategyParams(sigma_bucket_s=0.25, sigma_min_buckets=8, kappa_min_volume=0.05, gamma=5000, max_inventory=0.2),
    )
    longs = [d for d in decisions if d.bid_px and d.inputs["q"] > 0]
    shorts = [d for d in decisions if d.ask_px and d.inputs["q"] < 0]
    assert longs or shorts
    # the inventory term has the sign of q; the reservation price is mid times (1 + the sum of the named terms)
    for d in longs + shorts:
        i = d.inputs
        assert math.copysign(1.0, i["inventory_term_frac"]) == math.copysign(1.0, i["q"])
        total = (
            i["drift_term_frac"]
            - i["inventory_term_frac"]
            - i["funding_term_frac"]
            + i["imbalance_skew_frac"]
            + i["flow_skew_frac"]
            + i["microprice_term_frac"]
        )
        assert i["reservation_price"] == pytest.approx(i["mid"] * (1 + total), rel=1e-12)
        assert i["skew_frac"] == pytest.approx(-total)


def test_it_stops_bidding_at_the_inventory_limit_and_says_so():
    core, _, decisions = run(
        90,
        StrategyParams(
            sigma_bucket_s=0.25, sigma_min_buckets=8, kappa_min_volume=0.05, max_inventory=0.005, order_size=0.005
        ),
    )
    capped = [d for d in decisions if any("max_inventory" in r for r in d.reasons)]
    assert capped, "inventory never reached the limit"
    for d in capped:
        if d.inputs["q"] >= 0.005 - 1e-12:
            assert d.bid_px is None
        if d.inputs["q"] <= -0.005 + 1e-12:
            assert d.ask_px is None
    assert abs(core.tracker.position) <= 0.005 + 1e-12


def test_halt_cancels_everything_and_no_order_follows():
    core, venue, _ = run(20)
    actions = core.halt("test")
    assert isinstance(actions[0], CancelAll)
    venue.submit(actions, core._now_ns)
    bbo = BestBidAsk(core._now_ns + 1, core._now_ns + 1, 59000.0, 1.0, 59000.1, 1.0)
    assert core.on_event(bbo) == []
    trade = Trade(core._now_ns + 2, core._now_ns + 2, 59000.1, 0.1, Side.BUY)
    assert core.on_event(trade) == []


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("gamma", 0.0),
        ("gamma", -1.0),
        ("gamma", float("nan")),
        ("order_size", 0.0),
        ("horizon_s", -5.0),
        ("sigma_min_buckets", 1),
        ("requote_ticks", -1),
    ],
)
def test_nonsense_parameters_are_rejected_by_name(field, value):
    with pytest.raises(ValueError, match=f"StrategyParams.{field}"):
        StrategyParams(**{field: value}).validate()


def test_unknown_parameters_are_rejected():
    with pytest.raises(ValueError, match="unknown parameter"):
        StrategyParams.from_dict({"gama": 1.0})


def test_every_order_is_post_only_and_never_crosses_the_touch():
    core, _venue, decisions = run(30)
    for d in decisions:
        if d.bid_px is not None:
            assert d.bid_px < d.inputs["best_ask"]
        if d.ask_px is not None:
            assert d.ask_px > d.inputs["best_bid"]
    placed = list(core.tracker._orders.values())
    assert placed and all(o.tif.value == "POST_ONLY" for o in placed)
    assert isinstance(PlaceOrder("x", Side.BUY, 1.0, 1.0).tif, str)
