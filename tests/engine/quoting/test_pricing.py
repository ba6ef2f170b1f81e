"""Closed-form quote math: Avellaneda–Stoikov and the GLFT asymptotic approximation."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from apps.engine.quoting.pricing import (
    avellaneda_stoikov_offsets,
    avellaneda_stoikov_quotes,
    glft_coefficients,
    glft_quotes,
    half_spread,
    inventory_skew,
    reservation_price,
)

SIGMA = 1e-4  # per √s: ~2.9 % daily, a calm crypto major
KAPPA = 3333.0  # fills concentrated ~3 bps from mid


# --- half-spread ---------------------------------------------------------------------------------


def test_it_reproduces_the_seed_liquid_market_example():
    # Seed 000, example A: γ = 0.5, κ = 3333 gives ~3 bps; example B: γ = 0.57, κ = 70 gives ~142 bps.
    assert half_spread(0.5, 3333.0) == pytest.approx(3.0e-4, rel=1e-3)
    assert half_spread(0.57, 70.0) == pytest.approx(142e-4, rel=2e-3)


@pytest.mark.parametrize("kappa", [70.0, 3333.0, 50_000.0])
def test_it_tends_to_one_over_kappa_as_gamma_vanishes(kappa):
    errors = [abs(half_spread(g, kappa) - 1.0 / kappa) for g in (1e-1, 1e-3, 1e-6, 1e-12)]
    assert all(b < a for a, b in itertools.pairwise(errors))
    assert errors[-1] * kappa < 1e-9


def test_it_stays_within_the_second_order_bracket_and_shrinks_with_gamma():
    # ln(1+u)/u is in (1 - u/2, 1) for u = γ/κ > 0, and decreasing in u.
    gammas = np.geomspace(1e-3, 1e4, 30)
    values = np.array([half_spread(g, KAPPA) for g in gammas])
    assert np.all(values < 1.0 / KAPPA)
    assert np.all(values > 1.0 / KAPPA - gammas / (2 * KAPPA**2))
    assert np.all(np.diff(values) < 0)


def test_it_tightens_as_fills_decay_faster():
    values = [half_spread(0.5, k) for k in (100.0, 1000.0, 5000.0)]
    assert values[0] > values[1] > values[2]


@pytest.mark.parametrize(
    ("gamma", "kappa", "bad"),
    [
        (0.0, 3333.0, "gamma"),
        (-1.0, 3333.0, "gamma"),
        (math.nan, 3333.0, "gamma"),
        (math.inf, 1.0, "gamma"),
        (0.5, 0.0, "kappa"),
        (0.5, -5.0, "kappa"),
        (0.5, math.nan, "kappa"),
        (True, 1.0, "gamma"),
    ],
)
def test_it_rejects_bad_half_spread_inputs_naming_the_argument(gamma, kappa, bad):
    with pytest.raises(ValueError, match=bad):
        half_spread(gamma, kappa)


# --- reservation price and AS quotes -----------------------------------------------------------


def test_it_leaves_the_reservation_price_at_mid_when_flat():
    assert reservation_price(100.0, 0.0, 5.0, SIGMA, 60.0) == 100.0


def test_it_moves_the_reservation_price_against_the_inventory_linearly():
    mid, gamma, t = 50_000.0, 300.0, 60.0
    r_long = reservation_price(mid, 2.0, gamma, SIGMA, t)
    r_short = reservation_price(mid, -2.0, gamma, SIGMA, t)
    assert r_long < mid < r_short
    assert mid - r_long == pytest.approx(r_short - mid, rel=1e-12)
    # The shift as a fraction of mid is q·γ·σ²·T: 2·300·1e-8·60 = 3.6e-4 (3.6 bps).
    assert (mid - r_long) / mid == pytest.approx(3.6e-4, rel=1e-12)
    assert inventory_skew(4.0, gamma, SIGMA, t) == pytest.approx(2 * inventory_skew(2.0, gamma, SIGMA, t))


def test_it_shows_that_a_small_gamma_gives_an_invisible_skew():
    # Seed 003's "skew = 0.00 bps" trap: γ = 0.5 per base unit is far too small to skew a 1-unit position.
    assert inventory_skew(1.0, 0.5, SIGMA, 60.0) < 1e-6  # < 0.01 bps


def test_it_centres_the_as_spread_on_the_reservation_price():
    mid, q, gamma, t = 30_000.0, 1.5, 200.0, 120.0
    bid, ask = avellaneda_stoikov_quotes(mid, q, gamma, SIGMA, KAPPA, t)
    r = reservation_price(mid, q, gamma, SIGMA, t)
    assert 0.5 * (bid + ask) == pytest.approx(r, rel=1e-14)
    total = gamma * SIGMA**2 * t + 2.0 * math.log1p(gamma / KAPPA) / gamma
    assert (ask - bid) / mid == pytest.approx(total, rel=1e-12)


def test_it_mirrors_as_offsets_between_long_and_short():
    for q in (0.3, 1.0, 7.0):
        b_long, a_long = avellaneda_stoikov_offsets(q, 50.0, SIGMA, KAPPA, 30.0)
        b_short, a_short = avellaneda_stoikov_offsets(-q, 50.0, SIGMA, KAPPA, 30.0)
        assert b_long == pytest.approx(a_short, rel=1e-14)
        assert a_long == pytest.approx(b_short, rel=1e-14)
        assert b_long > a_long  # long: bid further away, ask closer


def test_it_collapses_to_the_half_spread_at_the_horizon():
    b, a = avellaneda_stoikov_offsets(5.0, 50.0, SIGMA, KAPPA, 0.0)
    assert b == a == half_spread(50.0, KAPPA)


def test_it_does_not_clamp_a_quote_that_crosses_mid():
    # A huge position pushes the ask through the mid; the model says so and the quoter must decide.
    _, ask_off = avellaneda_stoikov_offsets(100.0, 1000.0, SIGMA, KAPPA, 600.0)
    assert ask_off < 0


@pytest.mark.parametrize(
    ("kwargs", "bad"),
    [
        ({"mid": 0.0}, "mid"),
        ({"mid": math.nan}, "mid"),
        ({"q": math.inf}, "q"),
        ({"sigma": -1e-4}, "sigma"),
        ({"horizon_s": -1.0}, "horizon_s"),
        ({"gamma": 0.0}, "gamma"),
        ({"kappa": math.nan}, "kappa"),
    ],
)
def test_it_rejects_bad_as_inputs_naming_the_argument(kwargs, bad):
    args = {"mid": 100.0, "q": 1.0, "gamma": 1.0, "sigma": SIGMA, "kappa": KAPPA, "horizon_s": 60.0} | kwargs
    with pytest.raises(ValueError, match=bad):
        avellaneda_stoikov_quotes(**args)


# --- GLFT asymptotic ----------------------------------------------------------------------------


def test_it_makes_c1_the_as_half_spread_for_unit_orders_and_xi_equal_gamma():
    c1, _ = glft_coefficients(gamma=40.0, xi=40.0, delta=1.0, A=2.0, kappa=KAPPA)
    assert c1 == pytest.approx(half_spread(40.0, KAPPA), rel=1e-14)


def test_it_splits_glft_quotes_into_half_spread_and_per_unit_skew():
    gamma, A, delta = 80.0, 1.5, 0.25
    c1, c2 = glft_coefficients(gamma, gamma, delta, A, KAPPA)
    qs = np.linspace(-3, 3, 13)
    offs = np.array([glft_quotes(100.0, q, gamma, SIGMA, KAPPA, A, delta=delta) for q in qs])
    half = 0.5 * (offs[:, 0] + offs[:, 1])
    centre_shift = 0.5 * (offs[:, 0] - offs[:, 1])  # how far the quote centre sits below mid
    assert np.allclose(half, c1 + 0.5 * delta * SIGMA * c2, rtol=1e-12)
    assert np.allclose(centre_shift, SIGMA * c2 * qs, rtol=1e-12, atol=1e-18)


def test_it_scales_the_glft_skew_like_the_square_root_of_risk_over_liquidity():
    _, c2 = glft_coefficients(10.0, 1e-9, 1.0, 1.0, KAPPA)
    _, c2_4g = glft_coefficients(40.0, 1e-9, 1.0, 1.0, KAPPA)
    _, c2_4a = glft_coefficients(10.0, 1e-9, 1.0, 4.0, KAPPA)
    assert c2_4g / c2 == pytest.approx(2.0, rel=1e-12)
    assert c2_4a / c2 == pytest.approx(0.5, rel=1e-12)
    # ξΔ/κ → 0: the power term tends to e, so c2 → sqrt(e·γ/(2AΔκ)).
    assert c2 == pytest.approx(math.sqrt(math.e * 10.0 / (2 * KAPPA)), rel=1e-9)


def test_it_defaults_xi_to_gamma():
    assert glft_quotes(100.0, 2.0, 30.0, SIGMA, KAPPA, 1.0) == glft_quotes(100.0, 2.0, 30.0, SIGMA, KAPPA, 1.0, xi=30.0)


def test_it_gives_the_same_glft_offsets_whatever_the_size_unit():
    # Dimensional consistency: measuring size in milli-units multiplies q and Δ by 1000 and divides γ, ξ
    # (per base unit) by 1000. Offsets are fractions of mid and must not change.
    base = glft_quotes(100.0, 2.0, 30.0, SIGMA, KAPPA, 1.0, delta=0.5)
    milli = glft_quotes(100.0, 2000.0, 0.03, SIGMA, KAPPA, 1.0, delta=500.0)
    assert milli == pytest.approx(base, rel=1e-12)


@pytest.mark.parametrize(
    ("kwargs", "bad"),
    [
        ({"gamma": 0.0}, "gamma"),
        ({"xi": -1.0}, "xi"),
        ({"delta": 0.0}, "delta"),
        ({"A": math.nan}, "A"),
        ({"kappa": math.inf}, "kappa"),
    ],
)
def test_it_rejects_bad_glft_coefficients_naming_the_argument(kwargs, bad):
    args = {"gamma": 1.0, "xi": 1.0, "delta": 1.0, "A": 1.0, "kappa": KAPPA} | kwargs
    with pytest.raises(ValueError, match=bad):
        glft_coefficients(**args)
