"""γ₀ implied by the inventory limit: the quoter run with it skews by ρ half-spreads at Q_max."""

from __future__ import annotations

import math

import pytest

from apps.engine.calibration.inventory_gamma import gamma_for_skew_ratio, implied_gamma_base
from apps.engine.quoting.quoter import MarketState, QuoterParams, quote
from apps.engine.quoting.risk_aversion import RiskAversionParams

QMAX, SIZE = 0.2, 0.01


def _market(**kw) -> MarketState:
    base = {
        "ts_ns": 1,
        "best_bid": 59999.9,
        "best_ask": 60000.0,
        "kappa": 20000.0,
        "sigma_clean": 8e-5,
        "sigma_inventory": 1e-4,
        "kappa_ok": True,
        "sigma_ok": True,
        "a_per_s": 30.0,
        "mean_trade_size": 0.05,
    }
    return MarketState(**(base | kw))


def _decision(gamma: float, **kw):
    p = QuoterParams(gamma_base=gamma, order_size=SIZE, max_inventory=QMAX, maker_fee_bps=-0.5)
    return quote(p, RiskAversionParams(), _market(**kw), 0.0, tick_size=0.1, lot_size=0.001)


@pytest.mark.parametrize("rho", [0.5, 1.0, 3.0])
@pytest.mark.parametrize("sigma", [5e-5, 2e-4])
def test_the_quoter_at_the_implied_gamma_skews_by_rho_half_spreads_at_qmax(rho, sigma):
    probe = _decision(5000.0, sigma_inventory=sigma, sigma_clean=sigma).inputs
    g0 = gamma_for_skew_ratio(probe, SIZE, QMAX, rho)
    assert math.isfinite(g0) and g0 > 0
    i = _decision(g0, sigma_inventory=sigma, sigma_clean=sigma).inputs  # flat: γ = γ₀, no feature moves it
    assert i["gamma"] == pytest.approx(g0, rel=1e-12)
    assert i["inventory_slope_frac"] * QMAX == pytest.approx(rho * i["half_spread_frac"], rel=1e-9)


def test_the_implied_gamma_rises_with_rho_and_falls_with_volatility():
    i = _decision(5000.0).inputs
    assert gamma_for_skew_ratio(i, SIZE, QMAX, 2.0) > gamma_for_skew_ratio(i, SIZE, QMAX, 1.0)
    wild = _decision(5000.0, sigma_inventory=4e-4, sigma_clean=4e-4).inputs
    assert gamma_for_skew_ratio(wild, SIZE, QMAX, 1.0) < gamma_for_skew_ratio(i, SIZE, QMAX, 1.0)


def test_the_median_skips_unusable_decisions_and_an_empty_range_is_an_error():
    good = [_decision(5000.0, sigma_inventory=s, sigma_clean=s).inputs for s in (5e-5, 1e-4, 2e-4)]
    bad = [{"kappa": math.nan}, {}, dict(good[0], glft_a_mid_per_s=0.0)]
    out = implied_gamma_base([*good, *bad], SIZE, QMAX, 1.0)
    assert out.decisions == 3
    assert out.gamma_base == pytest.approx(gamma_for_skew_ratio(good[1], SIZE, QMAX, 1.0))
    assert out.p10 <= out.gamma_base <= out.p90
    with pytest.raises(ValueError, match="no decision with usable kappa"):
        implied_gamma_base(bad, SIZE, QMAX, 1.0)
    with pytest.raises(ValueError, match="skew_ratio must be > 0"):
        implied_gamma_base(good, SIZE, QMAX, 0.0)
