"""The quoter as a pure function: every term named, ladders, P&L filter, taker sizing, the skew flag."""

from __future__ import annotations

import math

import pytest

from apps.engine.market.events import Side
from apps.engine.quoting.quoter import (
    MarketState,
    QuoterParams,
    bounded_gamma,
    direction_confidence,
    fill_probability,
    quote,
    taker_reduction_size,
)
from apps.engine.quoting.risk_aversion import RiskAversionParams

TICK, LOT = 0.1, 0.001
RISK = RiskAversionParams()


def qp(**kw) -> QuoterParams:
    """QuoterParams with the γ₀ = 1000, T = 300 s and 1-tick requote these tests were written for (the product's
    defaults, 5000 / 400 s / 30 ticks, are QuoterParams' own)."""
    return QuoterParams(**{"gamma_base": 1000.0, "horizon_s": 300.0, "requote_ticks": 1, **kw})


def market(**kw) -> MarketState:
    base = {
        "ts_ns": 1,
        "best_bid": 59999.9,
        "best_ask": 60000.0,
        "kappa": 5000.0,
        "sigma_clean": 1e-4,
        "sigma_inventory": 1e-4,
        "a_per_s": 5.0,
        "mean_trade_size": 0.05,
    }
    base.update(kw)
    return MarketState(**base)


def run(q: float = 0.0, params: QuoterParams | None = None, **kw):
    return quote(params or qp(), RISK, market(**kw), q, tick_size=TICK, lot_size=LOT)


def test_seed000_golden_half_spreads_via_the_quoter():
    # seed 000's table: γ = 0.5 → κ 2000 ≈ 5 bps, 5000 ≈ 2 bps, 1000 ≈ 10 bps, 100 ≈ 99 bps, 50 ≈ 198 bps.
    # The seed's orders are one unit (Δ = 1): GLFT's c1 = (1/(ξΔ))·ln(1+ξΔ/κ); its volatility term
    # (Δ/2)·σ·c2 is < 0.02 bps here.
    for kappa, bps in ((5000, 2.0), (2000, 5.0), (1000, 10.0), (500, 20.0), (100, 99.0), (50, 198.0)):
        res = run(params=qp(gamma_base=0.5, order_size=1.0), kappa=float(kappa))
        assert res.inputs["half_spread_model_frac"] * 1e4 == pytest.approx(bps, rel=0.01)
        assert res.inputs["gamma"] == pytest.approx(0.5)
        # quoted: δ* plus the cost of a fill (the 0.5 bps adverse-selection prior, no maker fee)
        assert res.inputs["half_spread_bps"] == pytest.approx(bps + 0.5, rel=0.01)
        assert res.inputs["half_spread_fill_cost_frac"] == pytest.approx(0.5e-4, rel=1e-12)


def test_every_term_is_recorded_and_the_reservation_price_is_their_sum():
    res = run(
        q=0.02,
        drift_ok=True,
        drift_expected_return=3e-5,
        drift_mean_per_s=1e-6,
        drift_std_per_s=1e-6,
        funding_rate=1e-4,
        book_imbalance=0.4,
        flow_imbalance=-0.2,
    )
    i = res.inputs
    for name in (
        "drift_term_frac",
        "inventory_term_frac",
        "funding_term_frac",
        "imbalance_skew_frac",
        "flow_skew_frac",
        "microprice_term_frac",
        "half_spread_frac",
        "horizon_s",
        "gamma",
        "gamma_full_inventory",
    ):
        assert name in i and math.isfinite(i[name]), name
    # GLFT inventory term = q·σ_inv·c2, c2 = √(γ/(2·A·Δ·κ)·(1+ξΔ/κ)^(1+κ/(ξΔ))), ξ = γ₀, A moved from the touch
    # to the mid (A·e^{κh}, h the half market spread): no amplifier
    a_mid = 5.0 * math.exp(5000.0 * 0.05 / 59999.95)
    x = 1000.0 * 0.005 / 5000.0
    c2 = math.sqrt(i["gamma"] / (2 * a_mid * 0.005 * 5000.0) * (1 + x) ** (1 + 1 / x))
    assert i["glft_c2"] == pytest.approx(c2, rel=1e-9)
    assert i["inventory_term_frac"] == pytest.approx(0.02 * 1e-4 * c2, rel=1e-12)
    assert i["model_code"] == 1.0
    assert i["funding_term_frac"] == pytest.approx(1e-4 * 300 / 28800)
    shift = (
        i["drift_term_frac"]
        - i["inventory_term_frac"]
        - i["funding_term_frac"]
        + i["imbalance_skew_frac"]
        + i["flow_skew_frac"]
    )
    assert i["reservation_price"] == pytest.approx(i["mid"] * (1 + shift), rel=1e-12)


def test_the_as_baseline_keeps_the_avellaneda_stoikov_terms():
    res = run(q=0.02, params=qp(model="as"))
    i = res.inputs
    assert i["model_code"] == 0.0
    # inventory term = (q/Q_max)·(γ·Q_max)·σ²·T: no amplifier
    assert i["inventory_term_frac"] == pytest.approx(
        (0.02 / 0.05) * i["gamma_full_inventory"] * 1e-8 * i["horizon_s"], rel=1e-12
    )
    gd = i["gamma"] * 0.005
    assert i["half_spread_model_frac"] == pytest.approx(
        math.log1p(gd / 5000.0) / gd + 0.5 * gd * 1e-8 * 300.0, rel=1e-12
    )
    assert i["half_spread_frac"] == pytest.approx(i["half_spread_model_frac"] + 0.5e-4, rel=1e-12)


def test_glft_needs_a_and_says_so():
    res = run(a_per_s=math.nan)
    assert not res.bids and not res.asks
    assert any("A not usable" in r for r in res.reasons)
    assert run(a_per_s=math.nan, params=qp(model="as")).bids  # AS does not use A


def test_glft_finite_uses_the_time_to_the_session_end():
    near = run(q=0.02, params=qp(model="glft_finite"), ts_ns=0, session_end_ns=1 * 10**9).inputs
    far = run(q=0.02, params=qp(model="glft_finite"), ts_ns=0, session_end_ns=3600 * 10**9).inputs
    assert near["model_code"] == far["model_code"] == 2.0
    # inventory risk has less time to bite near the end: smaller skew and half-spread
    assert 0 < near["inventory_term_frac"] < far["inventory_term_frac"]
    assert near["half_spread_frac"] < far["half_spread_frac"]
    with pytest.raises(ValueError, match="model must be one of"):
        qp(model="glf").validate()


def test_session_end_shortens_the_horizon():
    res = run(q=0.02, ts_ns=0, session_end_ns=60 * 10**9)
    assert res.inputs["horizon_s"] == 60.0 and res.inputs["horizon_source"] == 1.0


def test_usable_microprice_replaces_the_prior_skews_and_says_so():
    res = run(book_imbalance=0.5, flow_imbalance=0.5, microprice_ok=True, microprice_offset=2e-5)
    assert res.inputs["imbalance_skew_frac"] == 0 and res.inputs["flow_skew_frac"] == 0
    assert res.inputs["microprice_term_frac"] == 2e-5
    assert any("microprice usable" in r for r in res.reasons)


def test_ladder_sizes_follow_the_rule_and_never_exceed_the_room_to_max_inventory():
    p = qp(levels=4, order_size=0.01, size_growth=2.0, max_inventory=0.05, level_spacing_bps=1.0)
    res = run(q=0.02, params=p)
    bid_sizes = [lv.size for lv in res.bids]
    assert sum(bid_sizes) <= 0.05 - 0.02 + 1e-12  # room on the bid: Q_max − q
    assert bid_sizes[:2] == [0.01, 0.02]
    assert any("no bid at L" in r and "max_inventory" in r for r in res.reasons)
    ask_sizes = [lv.size for lv in res.asks]
    assert sum(ask_sizes) <= 0.05 + 0.02 + 1e-12
    # prices strictly move away from the touch level by level, on the tick grid
    bids = [lv.price for lv in res.bids]
    asks = [lv.price for lv in res.asks]
    assert bids == sorted(bids, reverse=True) and len(set(bids)) == len(bids)
    assert asks == sorted(asks) and len(set(asks)) == len(asks)
    for px in bids + asks:
        assert abs(px / TICK - round(px / TICK)) < 1e-6


def test_post_only_quotes_never_cross_the_touch_and_the_clamp_is_reported():
    res = run(q=-0.05, params=qp(gamma_base=1e5))  # a huge short skew pushes the bid through the ask
    assert res.bids and res.bids[0].price < 60000.0
    assert any("bid would cross the ask" in r for r in res.reasons)


def test_levels_with_negative_expected_pnl_are_dropped_with_the_reason():
    res = run(params=qp(adverse_selection_bps=50.0, fill_cost_in_spread=False))
    assert not res.bids and not res.asks
    assert sum("dropped: expected P&L" in r for r in res.reasons) == 2


def test_the_cost_of_a_fill_moves_both_quotes_out_by_exactly_that_cost():
    base = run(params=qp(adverse_selection_bps=0.0))
    assert base.inputs["half_spread_fill_cost_frac"] == 0.0
    for adverse, fee, shift in ((50.0, 0.0, 50.0), (2.0, -0.5, 1.5), (0.2, -0.5, 0.0), (1.0, 1.0, 2.0)):
        res = run(params=qp(adverse_selection_bps=adverse, maker_fee_bps=fee))
        i = res.inputs
        assert i["half_spread_model_frac"] == pytest.approx(base.inputs["half_spread_frac"], rel=1e-12)
        assert i["half_spread_fill_cost_frac"] == pytest.approx(shift * 1e-4, abs=1e-15)  # a rebate never narrows δ*
        assert i["half_spread_frac"] == pytest.approx(i["half_spread_model_frac"] + shift * 1e-4, rel=1e-12)
        assert i["raw_ask"] - i["raw_bid"] == pytest.approx(2 * i["half_spread_frac"] * i["mid"], rel=1e-9)
        assert res.bids and res.asks and res.bids[0].expected_pnl > 0 and res.asks[0].expected_pnl > 0
    off = run(params=qp(adverse_selection_bps=50.0, fill_cost_in_spread=False)).inputs
    assert off["half_spread_fill_cost_frac"] == 0.0 and off["half_spread_frac"] == off["half_spread_model_frac"]


def test_fill_probability_falls_with_depth_and_queue():
    p0 = fill_probability(5.0, 5000.0, 0.0, 1.0, 0.0, 0.05)
    p_deep = fill_probability(5.0, 5000.0, 5e-4, 1.0, 0.0, 0.05)
    p_queue = fill_probability(5.0, 5000.0, 0.0, 1.0, 1.0, 0.05)
    assert 0 < p_deep < p0 < 1 and p_queue < p0
    assert p0 == pytest.approx(1 - math.exp(-5.0))


def test_emergency_taker_brings_the_reducing_quote_back_to_the_crossing_price():
    # k = 3e-3 per base unit, δ = 1e-4, c = 5.5e-4: the reducing quote sits k·|q| − δ beyond the mid
    x = taker_reduction_size(0.3, 3e-3, 1e-4, 5.5e-4)
    assert x == pytest.approx(0.3 - (1e-4 + 5.5e-4) / 3e-3)
    assert (0.3 - x) * 3e-3 - 1e-4 == pytest.approx(5.5e-4)  # after the take: exactly at the crossing cost
    assert taker_reduction_size(0.2, 3e-3, 1e-4, 5.5e-4) == 0.0  # 5 bps beyond the mid < 6.5 bps: keep quoting
    assert taker_reduction_size(0.3, 0.0, 1e-4, 5.5e-4) == 0.0
    assert taker_reduction_size(-0.3, 3e-3, 1e-4, 5.5e-4) == pytest.approx(x)  # sign-free size
    res = run(q=0.3, params=qp(max_inventory=0.2, gamma_base=1e8), sigma_inventory=3e-4)
    k, delta, cost = res.inputs["inventory_slope_frac"], res.inputs["half_spread_frac"], res.inputs["taker_cost_frac"]
    assert 0.3 * k - delta > cost  # the model's own ask would be past the crossing price
    assert res.taker_side is Side.SELL and 0 < res.taker_size <= 0.3
    assert (0.3 - res.taker_size - LOT) * k - delta <= cost  # within one lot of the crossing price (lot-rounded)
    assert res.taker_price == 59999.9
    assert any("emergency taker" in r for r in res.reasons)
    # the same inventory with a skew the crossing cost exceeds: no take (the old AS-penalty rule took here)
    calm = run(q=0.3, params=qp(max_inventory=0.2, gamma_base=1000.0), sigma_inventory=3e-4)
    assert 0.3 * calm.inputs["inventory_slope_frac"] - calm.inputs["half_spread_frac"] < calm.inputs["taker_cost_frac"]
    assert calm.taker_side is None
    assert run(q=0.01).taker_side is None


def test_the_small_skew_flag_fires_when_a_large_position_barely_moves_the_quotes():
    res = run(q=0.02, params=qp(gamma_base=1.0))  # 40 % of Q_max, tiny γ
    assert res.inputs["skew_too_small"] == 1.0
    assert any("skew_too_small" in r for r in res.reasons)
    res = run(q=0.02, params=qp(gamma_base=1e6))  # GLFT skew σ·c2·q ≈ 2.5 bps
    assert res.inputs["skew_too_small"] == 0.0


def test_gamma_bound_is_smooth_and_reported_when_it_binds():
    small = bounded_gamma(100.0, RISK, {"drawdown": 0.01}, -0.5, 0.0, 2.3)
    assert small.gamma == pytest.approx(100.0 * math.exp(0.01), rel=1e-4)
    big = bounded_gamma(100.0, RISK, {"drawdown": 50.0}, -0.5, 0.0, 2.3)
    assert big.gamma <= 100.0 * math.exp(2.3) * (1 + 1e-12) and big.shrink_nats > 40
    res = run(params=qp(), risk_features={"drawdown": 5.0})
    assert res.inputs["gamma_bound"] == 1.0
    assert any("gamma_bound_binding" in r for r in res.reasons)


def test_direction_confidence_lowers_gamma_when_the_drift_agrees_with_the_position():
    assert direction_confidence(0.0, 1e-5, 1e-6) == 0.0
    assert direction_confidence(-1.0, 1e-5, 1e-6) < -0.99
    agree = run(q=0.02, drift_ok=True, drift_mean_per_s=1e-5, drift_std_per_s=1e-5)
    disagree = run(q=0.02, drift_ok=True, drift_mean_per_s=-1e-5, drift_std_per_s=1e-5)
    assert agree.inputs["gamma"] < disagree.inputs["gamma"]


def test_no_quotes_while_kappa_or_sigma_unusable():
    res = run(kappa_ok=False)
    assert not res.bids and not res.asks and res.to_decision().bid_px is None


@pytest.mark.parametrize(
    ("field", "value"), [("levels", 0), ("order_size", 0.0), ("horizon_s", float("nan")), ("modify_orders", 1)]
)
def test_bad_quoter_params_are_rejected_by_name(field, value):
    with pytest.raises(ValueError, match=f"QuoterParams.{field}"):
        QuoterParams(**{field: value}).validate()
