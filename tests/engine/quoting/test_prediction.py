"""Prediction-market mode: absolute σ, settlement horizon, the (0, 1) grid and no silent clamping."""

from __future__ import annotations

import math

import pytest

from apps.engine.quoting.prediction import PredictionParams, prediction_quote, time_to_settlement_s, token_sigma


def test_token_sigma_is_absolute_not_log():
    t = [0, 10**9, 2 * 10**9, 3 * 10**9]
    # the same 1-cent moves give the same σ at 0.05 and at 0.50 (a log σ would differ by 10×)
    low = token_sigma(t, [0.05, 0.06, 0.05, 0.06])
    high = token_sigma(t, [0.50, 0.51, 0.50, 0.51])
    assert low == pytest.approx(0.01) and high == pytest.approx(0.01)
    assert math.isnan(token_sigma([0], [0.5]))
    with pytest.raises(ValueError, match=r"prices\[1\]"):
        token_sigma([0, 1], [0.5, 1.2])


def test_settlement_is_the_horizon():
    assert time_to_settlement_s(0, 90 * 10**9) == 90.0
    assert time_to_settlement_s(100 * 10**9, 90 * 10**9) == 0.0
    far = prediction_quote(0.5, 100, 0.1, 0.001, 50.0, 600.0)
    near = prediction_quote(0.5, 100, 0.1, 0.001, 50.0, 6.0)
    assert abs(far.inputs["inventory_term"]) > abs(near.inputs["inventory_term"]) > 0


def test_quotes_are_on_the_cent_grid_inside_the_bounds_and_long_inventory_moves_them_down():
    flat = prediction_quote(0.42, 0, 0.5, 0.002, 100.0, 300.0)
    long = prediction_quote(0.42, 200, 0.5, 0.002, 100.0, 300.0)
    for qt in (flat, long):
        assert qt.bid is not None and qt.ask is not None
        assert 0.01 <= qt.bid < qt.ask <= 0.99
        assert abs(qt.bid * 100 - round(qt.bid * 100)) < 1e-9
        assert abs(qt.ask * 100 - round(qt.ask * 100)) < 1e-9
    assert long.inputs["reservation_price"] < flat.inputs["reservation_price"]
    assert long.bid <= flat.bid and long.ask <= flat.ask


def test_variance_is_capped_by_the_binary_payoff_and_the_cap_is_reported():
    qt = prediction_quote(0.9, 10, 0.1, 0.05, 100.0, 3600.0)  # σ²T = 9 ≫ p(1−p) = 0.09
    assert qt.inputs["variance_used"] == pytest.approx(0.09)
    assert any("variance bound binding" in r for r in qt.reasons)


def test_a_quote_outside_the_price_range_is_dropped_not_clamped():
    # a very long position near 0.02 pushes the bid below the grid's floor
    qt = prediction_quote(0.02, 5000, 1.0, 0.01, 100.0, 600.0)
    assert qt.bid is None
    assert any("no bid" in r for r in qt.reasons)
    qt = prediction_quote(0.985, 0, 1.0, 0.0, 100.0, 600.0)
    assert qt.ask is None and any("no ask" in r for r in qt.reasons)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"mid": 1.0}, "mid"),
        ({"mid": 0.0}, "mid"),
        ({"gamma": 0.0}, "gamma"),
        ({"kappa": float("nan")}, "kappa"),
        ({"sigma": -0.1}, "sigma"),
    ],
)
def test_bad_inputs_are_rejected_by_name(kwargs, match):
    args = {"mid": 0.5, "q": 0.0, "gamma": 0.1, "sigma": 0.001, "kappa": 50.0, "time_to_settlement": 60.0}
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        prediction_quote(**args)
    with pytest.raises(ValueError, match="min_price"):
        PredictionParams(min_price=0.5, max_price=0.4).validate()
