"""Finite-horizon GLFT on a bounded inventory grid, against theory and the closed forms."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.linalg

from apps.engine.quoting.glft import (
    GLFTParams,
    GLFTRangeError,
    glft_matrix,
    glft_offsets_at,
    glft_stationary_offsets,
    solve_glft,
)
from apps.engine.quoting.pricing import avellaneda_stoikov_offsets, glft_coefficients, half_spread

SIGMA = 1e-4
KAPPA = 3333.0


def params(**kw) -> GLFTParams:
    base = {"gamma": 10.0, "sigma": SIGMA, "kappa": KAPPA, "A": 1.0, "order_size": 1.0, "max_inventory": 20.0}
    return GLFTParams(**(base | kw))


def test_it_quotes_the_plain_half_spread_at_the_horizon():
    p = params(order_size=0.5, max_inventory=5.0)
    sol = solve_glft(p, 60.0, 6)
    expected = math.log1p(p.gamma * 0.5 / KAPPA) / (p.gamma * 0.5)
    assert np.allclose(sol.bid_offset[0, :-1], expected, rtol=1e-14)
    assert np.allclose(sol.ask_offset[0, 1:], expected, rtol=1e-14)


def test_it_does_not_quote_the_side_that_would_break_the_inventory_bound():
    sol = solve_glft(params(), 300.0, 10)
    assert sol.inventory[0] == -20.0 and sol.inventory[-1] == 20.0
    assert not sol.bid_quoted[-1] and not sol.ask_quoted[0]
    assert sol.bid_quoted[:-1].all() and sol.ask_quoted[1:].all()
    assert np.isnan(sol.bid_offset[:, -1]).all() and np.isnan(sol.ask_offset[:, 0]).all()
    assert np.isfinite(sol.bid_offset[:, :-1]).all() and np.isfinite(sol.ask_offset[:, 1:]).all()


def test_it_mirrors_offsets_between_long_and_short():
    sol = solve_glft(params(gamma=50.0), 600.0, 20)
    # bid at q equals ask at −q: reverse the inventory axis.
    assert np.allclose(sol.bid_offset[:, :-1], sol.ask_offset[:, ::-1][:, :-1], rtol=1e-12, atol=0)


def test_it_widens_the_bid_and_tightens_the_ask_as_inventory_grows():
    sol = solve_glft(params(gamma=50.0), 600.0, 20)
    for k in range(1, sol.tau_s.size):
        assert np.all(np.diff(sol.bid_offset[k, :-1]) > 0)
        assert np.all(np.diff(sol.ask_offset[k, 1:]) < 0)


def test_it_skews_more_the_further_the_horizon():
    sol = solve_glft(params(gamma=50.0), 600.0, 20)
    i = sol.index_of(5.0)
    skew = 0.5 * (sol.bid_offset[:, i] - sol.ask_offset[:, i])
    # It rises from zero at the horizon and saturates (the stationary skew) to within rounding.
    assert skew[0] == 0.0
    assert np.all(np.diff(skew[:6]) > 0)
    assert np.all(np.diff(skew) > -1e-12 * skew.max())


def test_it_matches_avellaneda_stoikov_close_to_the_horizon():
    # To first order in τ both give q·γσ²τ skew plus γσ²τ/2 extra half-spread; the gap vanishes faster than τ².
    p = params(gamma=10.0)
    gaps = []
    for tau in (2.0, 1.0, 0.5):
        bid, ask = glft_offsets_at(p, tau)
        i = 20 + 3  # q = +3
        as_bid, as_ask = avellaneda_stoikov_offsets(3.0, p.gamma, SIGMA, KAPPA, tau)
        skew_term = 3.0 * p.gamma * SIGMA**2 * tau
        gaps.append(max(abs(bid[i] - as_bid), abs(ask[i] - as_ask)) / skew_term)
    assert gaps[0] < 1e-3
    assert gaps[1] < gaps[0] / 3.5 and gaps[2] < gaps[1] / 3.5


def test_it_approaches_the_asymptotic_formula_far_from_the_horizon():
    # Guéant's closed form is the large-grid, stationary approximation; for γΔ/κ = 0.003 and a 20-unit grid
    # it should hold to 0.1 % of the offset near flat and 0.5 % at half the bound.
    p = params(gamma=10.0)
    sol = solve_glft(p, 3600.0, 12)
    c1, c2 = glft_coefficients(p.gamma, p.gamma, 1.0, p.A, KAPPA)
    for q, tol in ((0.0, 1e-3), (2.0, 1e-3), (10.0, 5e-3)):
        i = sol.index_of(q)
        assert sol.bid_offset[-1, i] == pytest.approx(c1 + SIGMA * c2 * (q + 0.5), rel=tol)
        assert sol.ask_offset[-1, i] == pytest.approx(c1 - SIGMA * c2 * (q - 0.5), rel=tol)


def test_it_converges_to_the_stationary_solution():
    p = params(gamma=50.0, max_inventory=10.0)
    bid_inf, ask_inf = glft_stationary_offsets(p)
    far_bid, far_ask = glft_offsets_at(p, 1e6)
    assert np.allclose(far_bid[:-1], bid_inf[:-1], rtol=1e-9)
    assert np.allclose(far_ask[1:], ask_inf[1:], rtol=1e-9)


@pytest.mark.parametrize(("gamma", "q_max"), [(10.0, 20.0), (2000.0, 50.0)])
def test_its_stationary_quotes_satisfy_the_eigen_equation_edge_to_edge(gamma, q_max):
    # Independent check of entrywise accuracy: the ground state of M has (M v)_n / v_n = λ for every n, and
    # the ratios v_{n±1}/v_n can be read back from the offsets. γ = 2000 spans ~1e-300 across the grid,
    # where scipy's expm overflows; the non-negative scheme must still be exact at the edges.
    p = params(gamma=gamma, max_inventory=q_max)
    a, e, _ = glft_matrix(p)
    bid, ask = glft_stationary_offsets(p)
    base = p.base_half_spread
    n = np.arange(-p.n_lots, p.n_lots + 1, dtype=float)
    up = np.where(np.isnan(bid), 0.0, np.exp(-KAPPA * (np.nan_to_num(bid) - base)))  # v_{n+1}/v_n
    down = np.where(np.isnan(ask), 0.0, np.exp(-KAPPA * (np.nan_to_num(ask) - base)))  # v_{n-1}/v_n
    lam = a * n * n - e * (up + down)
    assert np.ptp(lam) < 1e-9 * (a * p.n_lots**2 + e)


def test_it_agrees_with_scipy_expm_where_that_is_well_conditioned():
    p = params(gamma=20.0)
    _, _, m = glft_matrix(p)
    for tau in (5.0, 30.0, 100.0):  # expm already overflows by τ ≈ 1000 s here
        v = scipy.linalg.expm(-m * tau) @ np.ones(m.shape[0])
        bid_ref = np.log(v[:-1] / v[1:]) / KAPPA + p.base_half_spread
        bid, _ = glft_offsets_at(p, tau)
        assert np.allclose(bid[:-1], bid_ref, rtol=1e-10, atol=0)


def test_it_tends_to_one_over_kappa_without_risk_aversion_away_from_the_bound():
    # γ → 0 removes the risk term, but not the bound: a risk-neutral maker at q = Q−Δ still leans, because a
    # bid fill would leave it unable to buy again. Far from the bound (and for short τ) quotes are 1/κ.
    p = params(gamma=1e-9, A=0.01)
    bid, ask = glft_offsets_at(p, 60.0)
    centre = slice(p.n_lots - 5, p.n_lots + 6)
    assert np.allclose(bid[centre], 1.0 / KAPPA, rtol=1e-6)
    assert np.allclose(ask[centre], 1.0 / KAPPA, rtol=1e-6)
    assert bid[-2] > 1.0 / KAPPA * (1 + 1e-4)
    assert half_spread(1e-9, KAPPA) == pytest.approx(1.0 / KAPPA, rel=1e-9)


def test_it_gives_the_same_offsets_whatever_the_size_unit():
    a = solve_glft(params(gamma=10.0, order_size=0.5, max_inventory=5.0), 600.0, 4)
    b = solve_glft(params(gamma=0.01, order_size=500.0, max_inventory=5000.0), 600.0, 4)
    assert np.allclose(a.bid_offset, b.bid_offset, rtol=1e-10, equal_nan=True)
    assert np.allclose(b.inventory, 1000.0 * a.inventory)


def test_it_refuses_a_grid_beyond_float_range_instead_of_quoting_garbage():
    with pytest.raises(GLFTRangeError, match="float64"):
        glft_offsets_at(params(gamma=200.0, max_inventory=200.0), 3600.0)


def test_it_finds_inventory_on_the_grid_and_rejects_off_grid_values():
    sol = solve_glft(params(order_size=0.5, max_inventory=2.0), 10.0, 1)
    assert sol.inventory[sol.index_of(-1.5)] == -1.5
    with pytest.raises(ValueError, match="grid"):
        sol.index_of(0.25)


@pytest.mark.parametrize(
    ("kw", "bad"),
    [
        ({"gamma": 0.0}, "gamma"),
        ({"kappa": -1.0}, "kappa"),
        ({"A": math.nan}, "A"),
        ({"sigma": -1e-4}, "sigma"),
        ({"order_size": 0.0}, "order_size"),
        ({"max_inventory": 2.5}, "max_inventory"),
        ({"max_inventory": 1e6}, "max_inventory"),
    ],
)
def test_it_rejects_bad_params_naming_them(kw, bad):
    with pytest.raises(ValueError, match=bad):
        params(**kw).validate()


def test_it_rejects_bad_time_grids():
    with pytest.raises(ValueError, match="horizon_s"):
        solve_glft(params(), 0.0, 3)
    with pytest.raises(ValueError, match="n_steps"):
        solve_glft(params(), 10.0, 0)
    with pytest.raises(ValueError, match="tau_s"):
        glft_offsets_at(params(), -1.0)
