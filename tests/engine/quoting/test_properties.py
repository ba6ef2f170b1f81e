"""Property tests (hypothesis) for the quoting math: monotonicity, symmetry, and the signs of every skew."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from apps.engine.quoting.pricing import avellaneda_stoikov_offsets, half_spread, inventory_skew
from apps.engine.quoting.quoter import MarketState, QuoterParams, quote
from apps.engine.quoting.risk_aversion import RiskAversionParams

gammas = st.floats(min_value=1e-3, max_value=1e4)
kappas = st.floats(min_value=10.0, max_value=1e5)
sigmas = st.floats(min_value=1e-6, max_value=1e-3)
horizons = st.floats(min_value=1.0, max_value=3600.0)
imbalances = st.floats(min_value=-1.0, max_value=1.0)
RISK = RiskAversionParams()
FAST = settings(max_examples=150, deadline=None)


def _quote(q: float, gamma: float = 1000.0, **kw):
    m = {
        "ts_ns": 1,
        "best_bid": 99.99,
        "best_ask": 100.01,
        "kappa": 5000.0,
        "sigma_clean": 1e-4,
        "sigma_inventory": 1e-4,
        "a_per_s": 5.0,
        "mean_trade_size": 1.0,
    }
    m.update(kw)
    p = QuoterParams(gamma_base=gamma, max_inventory=10.0, order_size=1.0, adverse_selection_bps=0.0)
    return quote(p, RISK, MarketState(**m), q, tick_size=1e-6, lot_size=1e-3)


@FAST
@given(gammas, gammas, kappas)
def test_half_spread_decreases_in_gamma(g1, g2, k):
    lo, hi = sorted((g1, g2))
    assert half_spread(hi, k) <= half_spread(lo, k) * (1 + 1e-12)
    assert half_spread(lo, k) <= 1.0 / k * (1 + 1e-12)  # bounded by the γ → 0 limit 1/κ


@FAST
@given(gammas, kappas, kappas)
def test_half_spread_decreases_in_kappa(g, k1, k2):
    lo, hi = sorted((k1, k2))
    assert half_spread(g, hi) <= half_spread(g, lo) * (1 + 1e-12)


@FAST
@given(gammas, sigmas, kappas, horizons)
def test_flat_inventory_quotes_are_symmetric(g, s, k, t):
    b, a = avellaneda_stoikov_offsets(0.0, g, s, k, t)
    assert math.isclose(b, a, rel_tol=1e-12)
    assert inventory_skew(0.0, g, s, t) == 0.0


@FAST
@given(st.floats(min_value=0.01, max_value=10.0), gammas, sigmas, horizons)
def test_inventory_skew_sign_follows_q_and_grows_with_gamma(q, g, s, t):
    assert inventory_skew(q, g, s, t) > 0 > inventory_skew(-q, g, s, t)
    assert inventory_skew(q, 2 * g, s, t) >= inventory_skew(q, g, s, t)


@FAST
@given(st.floats(min_value=0.1, max_value=9.0))
def test_quoter_inventory_term_moves_quotes_against_the_position(q):
    flat, long, short = _quote(0.0), _quote(q), _quote(-q)
    assert long.inputs["reservation_price"] < flat.inputs["reservation_price"] < short.inputs["reservation_price"]
    assert long.inputs["inventory_term_frac"] > 0 > short.inputs["inventory_term_frac"]
    # symmetric in q: equal and opposite inventory terms (γ is even in q)
    assert math.isclose(long.inputs["inventory_term_frac"], -short.inputs["inventory_term_frac"], rel_tol=1e-9)


@FAST
@given(imbalances)
def test_book_imbalance_skews_toward_the_heavy_side(x):
    r0 = _quote(0.0, book_imbalance=0.0).inputs["reservation_price"]
    r = _quote(0.0, book_imbalance=x).inputs["reservation_price"]
    assert (r - r0) * x >= 0  # more bids (x > 0) → reservation up
    if abs(x) > 1e-6:
        assert r != r0


@FAST
@given(imbalances)
def test_trade_flow_skews_with_the_aggressors(x):
    r0 = _quote(0.0, flow_imbalance=0.0).inputs["reservation_price"]
    r = _quote(0.0, flow_imbalance=x).inputs["reservation_price"]
    assert (r - r0) * x >= 0  # buy-aggressor flow (x > 0) → reservation up


@FAST
@given(st.floats(min_value=10.0, max_value=1e4), st.floats(min_value=1.5, max_value=10.0))
def test_quoter_spread_narrows_as_kappa_rises(k, factor):
    wide = _quote(0.0, kappa=k).inputs["half_spread_frac"]
    narrow = _quote(0.0, kappa=k * factor).inputs["half_spread_frac"]
    assert narrow < wide


@FAST
@given(st.floats(min_value=0.1, max_value=9.0), st.floats(min_value=1.0, max_value=1e4))
def test_quoter_skew_grows_with_gamma(q, g):
    a = _quote(q, gamma=g).inputs["inventory_term_frac"]
    b = _quote(q, gamma=2 * g).inputs["inventory_term_frac"]
    assert b > a > 0
