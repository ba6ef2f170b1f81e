"""Property tests (hypothesis) for the quoting math: monotonicity, symmetry, and the signs of every skew."""

from __future__ import annotations

import math

from hypothesis import example, given, settings
from hypothesis import strategies as st

from apps.engine.quoting.pricing import avellaneda_stoikov_offsets, glft_coefficients, half_spread, inventory_skew
from apps.engine.quoting.quoter import MODEL_CODES, QuoterParams, quote
from apps.engine.quoting.risk_aversion import FEATURE_NAMES, RiskAversionParams
from tests.engine.quoting.builders import SESSION_END, market_state

gammas = st.floats(min_value=1e-3, max_value=1e4)
kappas = st.floats(min_value=10.0, max_value=1e5)
sigmas = st.floats(min_value=1e-6, max_value=1e-3)
horizons = st.floats(min_value=1.0, max_value=3600.0)
imbalances = st.floats(min_value=-1.0, max_value=1.0)
RISK = RiskAversionParams()
FAST = settings(max_examples=150, deadline=None)


TICK = 1e-6


def _raw_spread(r) -> float:
    return r.inputs["raw_ask"] - r.inputs["raw_bid"]


def _no_narrower(a, b) -> None:
    """``b``'s spread is no narrower than ``a``'s: exactly before rounding; after it, within the two ticks the outward
    rounding of each price may add to ``a`` and not to ``b`` (a risk feature also moves the skew, so the two raw prices
    fall differently between ticks)."""
    assert _raw_spread(b) >= _raw_spread(a) * (1 - 1e-12)
    assert _spread(b) >= _spread(a) - 2 * TICK - 1e-12


def _quote(q: float, gamma: float = 1000.0, model: str = "glft", **kw):
    p = QuoterParams(gamma_base=gamma, max_inventory=10.0, order_size=1.0, adverse_selection_bps=0.0, model=model)
    return quote(p, RISK, market_state(**kw), q, tick_size=TICK, lot_size=1e-3)


# The old test here asserted that the half-spread *falls* as γ rises ((1/γ)·ln(1+γ/κ) alone, issue 16's bug).
# What the quoter quotes is GLFT's c1(ξ) + (Δ/2)·σ·c2(γ, ξ) with ξ fixed: it must not fall in γ or in σ.
GLFT_MODELS = st.sampled_from(["glft", "glft_finite"])
sizes = st.floats(min_value=1e-3, max_value=10.0)
a_rates = st.floats(min_value=0.01, max_value=100.0)


def _glft_half_spread(gamma: float, xi: float, sigma: float, kappa: float, a: float, delta: float) -> float:
    c1, c2 = glft_coefficients(gamma, xi, delta, a, kappa)
    return c1 + 0.5 * delta * sigma * c2


@FAST
@given(gammas, gammas, gammas, sigmas, kappas, a_rates, sizes)
def test_glft_half_spread_non_decreasing_in_gamma(g1, g2, xi, s, k, a, d):
    lo, hi = sorted((g1, g2))
    assert _glft_half_spread(hi, xi, s, k, a, d) >= _glft_half_spread(lo, xi, s, k, a, d) * (1 - 1e-12)


@FAST
@given(sigmas, sigmas, gammas, kappas, a_rates, sizes)
def test_glft_half_spread_non_decreasing_in_sigma(s1, s2, g, k, a, d):
    lo, hi = sorted((s1, s2))
    assert _glft_half_spread(g, g, hi, k, a, d) >= _glft_half_spread(g, g, lo, k, a, d) * (1 - 1e-12)


def _spread(res) -> float:
    """The quoted spread, ask − bid after rounding and every filter; inf when a side is missing."""
    if not res.bids or not res.asks:
        return math.inf
    return res.asks[0].price - res.bids[0].price


@FAST
@given(GLFT_MODELS, sigmas, sigmas, st.floats(min_value=-8.0, max_value=8.0))
def test_quoted_spread_non_decreasing_in_sigma(model, s1, s2, q):
    lo, hi = sorted((s1, s2))
    a = _quote(q, model=model, sigma_clean=lo, sigma_inventory=lo, **SESSION_END)
    b = _quote(q, model=model, sigma_clean=hi, sigma_inventory=hi, **SESSION_END)
    assert b.inputs["half_spread_frac"] >= a.inputs["half_spread_frac"] * (1 - 1e-9)
    _no_narrower(a, b)


@FAST
@given(GLFT_MODELS, st.sampled_from(FEATURE_NAMES), st.floats(0.0, 3.0), st.floats(0.0, 3.0), st.floats(-8.0, 8.0))
@example("glft", "volatility_regime", 0.0, 6.1e-5, 7.75)  # the rounded spread one tick narrower, the raw one wider
def test_no_risk_feature_narrows_the_quoted_spread(model, name, x1, x2, q):
    """Raising any risk feature raises γ (β ≥ 0); γ must widen (never narrow) δ* and the quoted spread."""
    lo, hi = sorted((x1, x2))
    a = _quote(q, model=model, risk_features={name: lo}, **SESSION_END)
    b = _quote(q, model=model, risk_features={name: hi}, **SESSION_END)
    assert b.inputs["gamma"] >= a.inputs["gamma"]
    assert b.inputs["half_spread_frac"] >= a.inputs["half_spread_frac"] * (1 - 1e-9)
    _no_narrower(a, b)


@FAST
@given(GLFT_MODELS, st.floats(0.0, 9.0), st.floats(0.0, 9.0), st.sampled_from([1.0, -1.0]))
def test_skew_grows_with_abs_inventory(model, q1, q2, sign):
    lo, hi = sorted((q1, q2))
    a = _quote(sign * lo, model=model, **SESSION_END).inputs["inventory_term_frac"]
    b = _quote(sign * hi, model=model, **SESSION_END).inputs["inventory_term_frac"]
    assert abs(b) >= abs(a) * (1 - 1e-9)
    if hi > 1e-6:
        assert b * sign > 0  # long → quotes move down, short → up


def test_every_decision_records_its_model():
    for model in MODEL_CODES:
        res = _quote(1.0, model=model, **SESSION_END)
        assert res.inputs["model_code"] == MODEL_CODES[model]
    no_end = _quote(1.0, model="glft_finite")
    assert no_end.inputs["model_code"] == MODEL_CODES["glft"]  # asymptotic without a session end, and says so
    assert any("no session end" in r for r in no_end.reasons)


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
