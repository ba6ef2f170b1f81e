"""The log-additive risk-aversion model: γ₀ at reference, traceable contributions, reported bounds."""

from __future__ import annotations

import math

import numpy as np
import pytest

from apps.engine.quoting.risk_aversion import (
    FEATURE_NAMES,
    RiskAversionParams,
    RiskFeatures,
    cascade_intensity_feature,
    drawdown_feature,
    estimator_uncertainty_feature,
    inventory_utilisation_feature,
    risk_aversion,
    thin_book_feature,
    volatility_regime_feature,
)


def random_features(rng: np.random.Generator) -> RiskFeatures:
    return RiskFeatures(
        volatility_regime=float(rng.uniform(-1, 2)),
        thin_book=float(rng.uniform(-1, 3)),
        flow_toxicity=float(rng.uniform(0, 1)),
        cascade_intensity=float(rng.uniform(0, 3)),
        inventory_utilisation=float(rng.uniform(0, 1)),
        drawdown=float(rng.uniform(0, 1)),
        estimator_uncertainty=float(rng.uniform(0, 1)),
    )


def test_it_returns_gamma_base_when_every_feature_is_at_reference():
    params = RiskAversionParams(gamma_base=37.5)
    result = risk_aversion(params, RiskFeatures())
    assert result.gamma == 37.5 and result.gamma_unbounded == 37.5
    assert all(c == 0.0 for c in result.contributions.values())
    assert result.bound == "none" and not result.bound_binding and result.reasons() == ()


def test_its_contributions_are_beta_times_feature_and_sum_to_log_gamma():
    rng = np.random.default_rng(7)
    params = RiskAversionParams(gamma_base=5.0, beta_thin_book=0.7, beta_drawdown=2.0, gamma_max=1e6)
    for _ in range(50):
        feats = random_features(rng)
        r = risk_aversion(params, feats)
        assert set(r.contributions) == set(FEATURE_NAMES)
        for name in FEATURE_NAMES:
            assert r.contributions[name] == params.beta(name) * getattr(feats, name)
        assert math.log(r.gamma_unbounded) == pytest.approx(math.log(5.0) + sum(r.contributions.values()), abs=1e-12)
        assert r.log_gamma_unbounded == pytest.approx(math.log(r.gamma_unbounded), abs=1e-12)


def test_it_scales_gamma_by_exp_beta_x_for_each_feature_independently():
    params = RiskAversionParams(gamma_base=2.0, gamma_max=1e6)
    for name in FEATURE_NAMES:
        r = risk_aversion(params, RiskFeatures(**{name: 0.5}))
        assert r.gamma == pytest.approx(2.0 * math.exp(0.5 * params.beta(name)), rel=1e-14)


def test_it_switches_a_feature_off_with_a_zero_beta():
    params = RiskAversionParams(gamma_base=2.0, beta_flow_toxicity=0.0)
    assert risk_aversion(params, RiskFeatures(flow_toxicity=0.9)).gamma == 2.0


def test_it_reports_the_upper_bound_when_it_binds():
    params = RiskAversionParams(gamma_base=10.0, gamma_max=20.0)
    r = risk_aversion(params, RiskFeatures(drawdown=1.0, flow_toxicity=1.0))  # model says 10·e² ≈ 73.9
    assert r.gamma == 20.0 and r.bound == "max" and r.bound_binding
    assert r.gamma_unbounded == pytest.approx(10.0 * math.exp(2.0))
    assert r.as_inputs()["gamma_bound"] == 1.0
    assert r.reasons() and "max" in r.reasons()[0]


def test_it_reports_the_lower_bound_when_it_binds():
    params = RiskAversionParams(gamma_base=1.0, gamma_min=0.5)
    r = risk_aversion(params, RiskFeatures(volatility_regime=-1.0, thin_book=-1.0))  # e^−1.5 ≈ 0.22
    assert r.gamma == 0.5 and r.bound == "min" and r.gamma_unbounded < 0.5
    assert r.as_inputs()["gamma_bound"] == -1.0


def test_it_stays_finite_for_absurd_feature_values_and_reports_the_bound():
    r = risk_aversion(RiskAversionParams(beta_cascade_intensity=100.0), RiskFeatures(cascade_intensity=50.0))
    assert r.bound == "max" and math.isfinite(r.gamma_unbounded)
    assert r.log_gamma_unbounded == pytest.approx(5000.0)


def test_it_exposes_every_factor_for_the_decision_record():
    r = risk_aversion(RiskAversionParams(), random_features(np.random.default_rng(3)))
    inputs = r.as_inputs()
    for name in FEATURE_NAMES:
        assert inputs[f"gamma_contrib_{name}"] == r.contributions[name]
        assert inputs[f"gamma_x_{name}"] == r.features[name]
    assert inputs["gamma"] == r.gamma


@pytest.mark.parametrize(
    ("kw", "bad"),
    [
        ({"gamma_base": 0.0}, "gamma_base"),
        ({"gamma_base": -1.0}, "gamma_base"),
        ({"beta_drawdown": math.nan}, "beta_drawdown"),
        ({"beta_thin_book": math.inf}, "beta_thin_book"),
        ({"gamma_min": 0.0}, "gamma_min"),
        ({"gamma_min": 5.0, "gamma_max": 2.0}, "gamma_min"),
        ({"gamma_base": 5000.0}, "gamma_base"),
        ({"beta_flow_toxicity": True}, "beta_flow_toxicity"),
    ],
)
def test_it_rejects_bad_params_naming_them(kw, bad):
    with pytest.raises(ValueError, match=bad):
        risk_aversion(RiskAversionParams(**kw), RiskFeatures())


@pytest.mark.parametrize(
    ("kw", "bad"),
    [
        ({"volatility_regime": math.nan}, "volatility_regime"),
        ({"flow_toxicity": 1.5}, "flow_toxicity"),
        ({"flow_toxicity": -0.1}, "flow_toxicity"),
        ({"inventory_utilisation": -0.1}, "inventory_utilisation"),
        ({"drawdown": -1.0}, "drawdown"),
        ({"estimator_uncertainty": math.inf}, "estimator_uncertainty"),
    ],
)
def test_it_rejects_bad_features_naming_them(kw, bad):
    with pytest.raises(ValueError, match=bad):
        risk_aversion(RiskAversionParams(), RiskFeatures(**kw))


def test_its_feature_builders_are_zero_at_reference_and_signed_sensibly():
    assert volatility_regime_feature(1e-4, 1e-4) == 0.0
    assert volatility_regime_feature(2e-4, 1e-4) == pytest.approx(math.log(2))
    assert thin_book_feature(depth_near=5.0, depth_ref=20.0) == pytest.approx(math.log(4))
    assert thin_book_feature(depth_near=40.0, depth_ref=20.0) < 0
    assert cascade_intensity_feature(4.0, 1.0) == pytest.approx(math.log(4))
    assert inventory_utilisation_feature(-3.0, 10.0) == inventory_utilisation_feature(3.0, 10.0) == pytest.approx(0.09)
    assert drawdown_feature(250.0, 1000.0) == 0.25
    assert estimator_uncertainty_feature({"sigma": 0.3, "kappa": 0.4}) == pytest.approx(0.5)
    assert estimator_uncertainty_feature({}) == 0.0


def test_a_square_root_thin_book_prior_doubles_gamma_when_depth_falls_four_fold():
    r = risk_aversion(RiskAversionParams(gamma_base=3.0), RiskFeatures(thin_book=thin_book_feature(5.0, 20.0)))
    assert r.gamma == pytest.approx(6.0, rel=1e-12)


@pytest.mark.parametrize(
    ("call", "bad"),
    [
        (lambda: volatility_regime_feature(0.0, 1e-4), "sigma"),
        (lambda: thin_book_feature(1.0, -1.0), "depth_ref"),
        (lambda: cascade_intensity_feature(math.nan, 1.0), "intensity"),
        (lambda: inventory_utilisation_feature(1.0, 0.0), "q_max"),
        (lambda: drawdown_feature(-1.0, 10.0), "drawdown"),
        (lambda: estimator_uncertainty_feature({"kappa": -0.1}), "kappa"),
    ],
)
def test_its_feature_builders_reject_bad_inputs(call, bad):
    with pytest.raises(ValueError, match=bad):
        call()
