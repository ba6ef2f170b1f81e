"""The strategy core on the simulator through the paper venue: the same loop a backtest runs."""

from __future__ import annotations

import math

import pytest

from apps.engine.core import StrategyCore, StrategyParams
from apps.engine.execution.paper import PaperVenue, PaperVenueConfig
from apps.engine.market.events import BestBidAsk, CancelAll, PlaceOrder, Side, Trade
from apps.engine.simulation.simulator import MarketSimulator, SimulatorParams

FAST = StrategyParams.from_dict({"sigma_bucket_s": 0.25, "sigma_min_buckets": 8, "kappa_min_volume": 0.05})


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
    core, _, decisions = run(3, StrategyParams.from_dict({"kappa_min_volume": 1e6}))
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
    # GLFT half-spread c1 + (Δ/2)·σ·c2 (ξ = γ₀ in c1, the risk model's γ in c2), rounded outward to the tick
    gamma, xi, size = d.inputs["gamma"], FAST.quoter.gamma_base, FAST.quoter.order_size
    assert d.inputs["gamma_base"] == xi
    a_mid = d.inputs["glft_a_mid_per_s"]
    c1 = math.log1p(xi * size / kappa) / (xi * size)
    c2 = math.sqrt(gamma / (2 * a_mid * size * kappa) * (1 + xi * size / kappa) ** (1 + kappa / (xi * size)))
    delta = c1 + 0.5 * size * d.inputs["sigma_spread"] * c2
    assert d.inputs["half_spread_model_frac"] == pytest.approx(delta, rel=1e-9)
    # the quoted δ adds the cost of a fill (never negative)
    cost = d.inputs["half_spread_fill_cost_frac"]
    assert cost >= 0 and d.inputs["half_spread_frac"] == pytest.approx(delta + cost, rel=1e-9)
    half = d.inputs["half_spread_frac"]
    assert r * 1 - half * mid - 0.1 - 1e-9 <= d.bid_px <= r - half * mid + 1e-9
    assert r + half * mid - 1e-9 <= d.ask_px <= r + half * mid + 0.1 + 1e-9
    assert core.fills > 0


def test_a_long_inventory_moves_both_quotes_down():
    _core, _, decisions = run(
        60,
        StrategyParams.from_dict(
            {
                "sigma_bucket_s": 0.25,
                "sigma_min_buckets": 8,
                "kappa_min_volume": 0.05,
                "gamma": 5000,
                "max_inventory": 0.2,
            }
        ),
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
        StrategyParams.from_dict(
            {
                "sigma_bucket_s": 0.25,
                "sigma_min_buckets": 8,
                "kappa_min_volume": 0.05,
                "max_inventory": 0.005,
                "order_size": 0.005,
            }
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
        ("depth_markout_reference_lag_s", -0.01),
        ("depth_markout_reference_lag_s", float("nan")),
        ("depth_markout_reference_lag_s", 9.5),  # + the 1 s quote life: beyond the 10 s of mid history kept
    ],
)
def test_nonsense_parameters_are_rejected_by_name(field, value):
    with pytest.raises(ValueError, match=f"StrategyParams.{field}"):
        StrategyParams.from_dict({field: value})


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


# the flat ``strategy`` dict sessions stored before StrategyParams nested QuoterParams, with its defaults
STORED_DEFAULTS = {
    "gamma": 5000.0,
    "horizon_s": 400.0,
    "order_size": 0.005,
    "max_inventory": 0.05,
    "requote_ticks": 30,
    "kappa_window_s": 60.0,
    "kappa_min_volume": 0.5,
    "sigma_bucket_s": 1.0,
    "sigma_min_buckets": 20,
    "levels": 1,
    "level_spacing_bps": 1.0,
    "size_growth": 1.0,
    "drift_horizon_s": 30.0,
    "imbalance_coef_bps": 0.2,
    "flow_coef_bps": 0.2,
    "quote_life_s": 1.0,
    "adverse_selection_bps": 0.5,
    "maker_fee_bps": 0.0,
    "taker_fee_bps": 5.0,
    "taker_trigger_ratio": 1.0,
    "modify_orders": False,
    "gamma_log_bound_nats": 2.3,
    "beta_direction_confidence": -0.5,
    "loss_budget": 100.0,
    "kappa_refresh_s": 1.0,
    "snapshot_refresh_s": 0.25,
    "drift_obs_interval_s": 1.0,
    "decision_interval_s": 0.5,
    "session_end_ns": 0,
}


def test_strategy_params_nest_the_quoters_instead_of_mirroring_them():
    from dataclasses import fields

    from apps.engine.quoting.quoter import QuoterParams

    own = {f.name for f in fields(StrategyParams)} - {"quoter"}
    assert not own & {f.name for f in fields(QuoterParams)}
    assert StrategyParams().quoter == QuoterParams()


def test_the_stored_flat_dict_reads_back_with_the_same_effective_defaults():
    flat = StrategyParams().as_dict()
    assert {k: flat[k] for k in STORED_DEFAULTS} == STORED_DEFAULTS
    assert StrategyParams.from_dict(STORED_DEFAULTS) == StrategyParams()
    p = StrategyParams.from_dict({"gamma": 800.0, "levels": 3.0, "requote_ticks": 2.0, "loss_budget": 50.0})
    assert (p.quoter.gamma_base, p.quoter.levels, p.quoter.requote_ticks, p.loss_budget) == (800.0, 3, 2, 50.0)
    assert type(p.quoter.levels) is int and p.max_inventory == 0.05
    assert StrategyParams.from_dict(p.as_dict()) == p


def test_a_bad_quoter_value_is_named_as_the_flat_dict_names_it():
    with pytest.raises(ValueError, match=r"^StrategyParams\.gamma must be > 0, got -1$"):
        StrategyParams.from_dict({"gamma": -1})
    with pytest.raises(ValueError, match=r"^StrategyParams\.levels must be an integer >= 1, got 0$"):
        StrategyParams.from_dict({"levels": 0})


def test_the_gamma_betas_are_the_sessions_and_apply_params_swaps_them_but_not_the_priors():
    import dataclasses

    from apps.engine.estimators.drift import DriftParams
    from apps.engine.estimators.kappa import KappaParams
    from apps.engine.quoting.risk_aversion import RiskAversionParams

    # defaults unchanged: the same βs and estimator priors as before they were settable
    assert StrategyParams().risk_aversion == RiskAversionParams()
    cfg = StrategyParams().estimator_config(0.1)
    assert cfg.kappa.prior_kappa == KappaParams().prior_kappa and cfg.drift == DriftParams()
    p = StrategyParams.from_dict({**FAST.as_dict(), "risk_aversion": {"beta_estimator_uncertainty": 3.0}})
    core, _, decisions = run(60, p)
    inputs = decisions[-1].inputs
    assert inputs["gamma_x_estimator_uncertainty"] > 0
    assert inputs["gamma_contrib_estimator_uncertainty"] == pytest.approx(3.0 * inputs["gamma_x_estimator_uncertainty"])
    off = dataclasses.replace(p, risk_aversion=RiskAversionParams(beta_estimator_uncertainty=0.0))
    core.apply_params(off)
    assert core.risk_params.beta_estimator_uncertainty == 0.0
    with pytest.raises(ValueError, match=r"StrategyParams\.kappa_prior cannot change on a running strategy core"):
        core.apply_params(dataclasses.replace(off, kappa_prior=3000.0))
    with pytest.raises(ValueError, match=r"^StrategyParams\.risk_aversion\.beta_drawdown must be a finite number"):
        StrategyParams.from_dict({"risk_aversion": {"beta_drawdown": math.nan}})


def test_the_depth_cost_curve_is_built_only_when_the_quoter_prices_with_it():
    on = StrategyParams.from_dict(FAST.as_dict() | {"fill_cost_by_depth": True})
    off = StrategyParams.from_dict(on.as_dict() | {"fill_cost_by_depth": False})
    core_on, _, _ = run(40, on)
    core_off, _, _ = run(40, off)
    inputs_on, inputs_off = core_on.last_decision.inputs, core_off.last_decision.inputs
    assert inputs_on["depth_markout_events"] > 0 and core_on.market._depth_curve is not None
    # off: the same decision inputs, marked unused, and the curve never computed ...
    depth_keys = {k for k in inputs_on if k.startswith("depth_markout_")}
    assert depth_keys <= set(inputs_off)
    assert inputs_off["depth_markout_state_ok"] == 0.0 and inputs_off["fill_cost_by_depth"] == 0.0
    assert all(math.isnan(inputs_off[k]) for k in depth_keys - {"depth_markout_state_ok"})
    assert core_off.market._depth_curve is None
    # ... while the estimator is still fed every trade: turning the option on mid-session finds it warm
    assert core_off.market.depth_markout.completed > 0
    core_off.apply_params(on)
    assert core_off.market.depth_cost(core_off._now_ns)[0].detail["events"] > 0


def test_the_depth_curves_reference_lag_reaches_its_estimator():
    params = StrategyParams.from_dict({"depth_markout_reference_lag_s": 0.25, "quote_life_s": 2.0})
    core = StrategyCore(params, tick_size=0.1, lot_size=0.001)
    assert core.market.depth_markout.params.reference_lag_s == 0.25
    assert core.market.depth_markout.params.horizon_s == 2.0
    with pytest.raises(ValueError, match=r"depth_markout_reference_lag_s must be < 5 s"):
        StrategyParams.from_dict({"depth_markout_reference_lag_s": 5.0, "quote_life_s": 30.0})  # horizon capped at 5
    with pytest.raises(ValueError, match="cannot change on a running strategy core"):
        core.apply_params(StrategyParams.from_dict({"depth_markout_reference_lag_s": 0.5, "quote_life_s": 2.0}))
