"""The half-spread priced with a depth-dependent fill cost (quoter docstring, "Cost of a fill", "By depth")."""

from __future__ import annotations

import math
import random
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from apps.engine.estimators.depth_markout import DepthCostCurve
from apps.engine.quoting.quoter import MarketState, QuoterParams, depth_priced_half_spread, quote
from apps.engine.quoting.risk_aversion import FEATURE_NAMES, RiskAversionParams
from tests.engine.quoting.builders import SESSION_END, market_state

BPS = 1e-4
RISK = RiskAversionParams()
FAST = settings(max_examples=200, deadline=None)


def flat(cost: float, n: int = 50, step: float = 0.1 * BPS) -> DepthCostCurve:
    return DepthCostCurve(step, (cost,) * n, (100,) * n, cost)


def objective(x: float, delta_star: float, kappa: float, curve: DepthCostCurve, tox: float, fee: float) -> float:
    c = curve.cost_at(x) + tox * max(curve.pooled, 0.0) + fee
    return math.exp(-kappa * (x - delta_star)) * (x - delta_star + 1.0 / kappa - c)


curves = st.lists(st.floats(-2.0, 6.0), min_size=2, max_size=60).map(
    lambda cs: DepthCostCurve(0.25 * BPS, tuple(c * BPS for c in cs), (10,) * len(cs), sum(cs) / len(cs) * BPS)
)
deltas = st.floats(0.05, 12.0).map(lambda x: x * BPS)
kappas = st.floats(300.0, 50_000.0)
toxicities = st.floats(0.0, 3.0)
fees = st.floats(-1.0, 2.0).map(lambda x: x * BPS)


@pytest.mark.parametrize("cost_bps", [-0.7, 0.0, 0.3, 1.1, 4.0, 9.0])
@pytest.mark.parametrize("fee_bps", [-0.5, 0.0, 0.2])
def test_a_flat_curve_gives_the_scalar_rule_exactly(cost_bps, fee_bps):
    """A constant cost c: δ = δ* + max(c + fee, 0), whatever the grid (9 bps lies past the grid's 5 bps)."""
    d_star, kappa = 1.3 * BPS, 8000.0
    delta, c = depth_priced_half_spread(d_star, kappa, flat(cost_bps * BPS), 0.0, fee_bps * BPS)
    assert delta == pytest.approx(d_star + max((cost_bps + fee_bps) * BPS, 0.0), rel=1e-12, abs=1e-18)
    assert c == pytest.approx((cost_bps + fee_bps) * BPS)


@FAST
@given(curves, deltas, kappas, toxicities, fees)
def test_it_is_the_maximiser_over_every_depth_not_over_a_grid(curve, d_star, kappa, tox, fee):
    delta, _ = depth_priced_half_spread(d_star, kappa, curve, tox, fee)
    assert delta >= d_star
    best = objective(delta, d_star, kappa, curve, tox, fee)
    hi = len(curve.costs) * curve.step + 20 * BPS
    rng = random.Random(1)
    probes = [d_star + (hi - d_star) * i / 4000 for i in range(4001)] + [rng.uniform(d_star, hi) for _ in range(500)]
    for x in probes:
        assert objective(x, d_star, kappa, curve, tox, fee) <= best + 1e-12 * max(abs(best), 1e-8)


@FAST
@given(curves, deltas, deltas, kappas, toxicities, fees)
def test_a_larger_model_half_spread_never_narrows_the_quote(curve, d1, d2, kappa, tox, fee):
    lo, hi = sorted((d1, d2))
    wide = depth_priced_half_spread(hi, kappa, curve, tox, fee)[0]
    assert wide >= depth_priced_half_spread(lo, kappa, curve, tox, fee)[0]


@FAST
@given(curves, deltas, kappas, toxicities, toxicities, fees)
def test_more_toxic_flow_never_narrows_the_quote(curve, d_star, kappa, t1, t2, fee):
    lo, hi = sorted((t1, t2))
    a = depth_priced_half_spread(d_star, kappa, curve, lo, fee)[0]
    b = depth_priced_half_spread(d_star, kappa, curve, hi, fee)[0]
    assert b >= a * (1 - 1e-12)


def test_a_cost_that_rises_with_depth_moves_the_quote_past_the_expensive_depths():
    """Fills at 1–2 bps cost 3 bps (sweeps), fills beyond cost 0.5: quoting where fills lose is not optimal."""
    costs = tuple((3.0 if 10 <= k < 20 else 0.5) * BPS for k in range(60))
    curve = DepthCostCurve(0.1 * BPS, costs, (50,) * 60, 1.5 * BPS)
    kappa = 4000.0  # 1/κ = 2.5 bps
    flat_rule = 1.0 * BPS + 1.5 * BPS  # δ* + the pooled cost: inside the expensive band
    delta, c = depth_priced_half_spread(1.0 * BPS, kappa, curve, 0.0, 0.0)
    assert delta >= 2.0 * BPS and delta != pytest.approx(flat_rule)
    assert c == pytest.approx(0.5 * BPS)


@pytest.mark.parametrize("kappa", [0.0, -1.0, math.nan, math.inf])
def test_nonsense_kappa_is_an_error(kappa):
    with pytest.raises(ValueError, match="κ > 0"):
        depth_priced_half_spread(1e-4, kappa, flat(1e-4), 0.0, 0.0)


def _state(curve: DepthCostCurve | None, ok: bool = True, **kw) -> MarketState:
    """The property tests' market with a measured 0.4 bps adverse selection and ``curve`` (``ok``: its state)."""
    costs = {"adverse_selection": 0.4 * BPS, "adverse_selection_ok": True, "fill_cost_curve": curve}
    return market_state(**(costs | {"fill_cost_curve_ok": ok} | kw))


def _params(**kw) -> QuoterParams:
    return QuoterParams(gamma_base=1000.0, max_inventory=10.0, order_size=1.0, **kw)


STEEP = DepthCostCurve(0.1 * BPS, tuple((0.2 + 0.15 * k) * BPS for k in range(40)), (50,) * 40, 1.0 * BPS)


def test_the_quoter_uses_the_curve_only_while_it_is_ok_and_asked_to():
    by_depth = quote(_params(), RISK, _state(STEEP), 0.0, tick_size=1e-6, lot_size=1e-3).inputs
    warming = quote(_params(), RISK, _state(STEEP, ok=False), 0.0, tick_size=1e-6, lot_size=1e-3).inputs
    off = quote(_params(fill_cost_by_depth=False), RISK, _state(STEEP), 0.0, tick_size=1e-6, lot_size=1e-3).inputs
    d_star = by_depth["half_spread_model_frac"]
    assert by_depth["fill_cost_by_depth"] == 1.0 and warming["fill_cost_by_depth"] == off["fill_cost_by_depth"] == 0.0
    expected, cost = depth_priced_half_spread(d_star, 5000.0, STEEP, 0.0, 0.0)
    assert by_depth["half_spread_frac"] == expected and by_depth["fill_cost_at_quote_frac"] == cost
    assert by_depth["half_spread_fill_cost_frac"] == pytest.approx(expected - d_star)
    # without the curve: the one measured number (0.4 bps), as before
    for inputs in (warming, off):
        assert inputs["half_spread_frac"] == pytest.approx(d_star + 0.4 * BPS)
    assert by_depth["half_spread_frac"] != pytest.approx(warming["half_spread_frac"])


@settings(max_examples=150, deadline=None)
@given(
    st.sampled_from(["glft", "glft_finite"]),
    st.sampled_from(FEATURE_NAMES),
    st.floats(0.0, 3.0),
    st.floats(0.0, 3.0),
    st.floats(-8.0, 8.0),
    curves,
)
def test_no_risk_feature_narrows_the_quoted_spread_with_a_depth_curve(model, name, x1, x2, q, curve):
    lo, hi = sorted((x1, x2))
    p = QuoterParams(gamma_base=1000.0, max_inventory=10.0, order_size=1.0, model=model)
    a = quote(p, RISK, _state(curve, risk_features={name: lo}, **SESSION_END), q, tick_size=1e-6, lot_size=1e-3)
    b = quote(p, RISK, _state(curve, risk_features={name: hi}, **SESSION_END), q, tick_size=1e-6, lot_size=1e-3)
    assert b.inputs["half_spread_frac"] >= a.inputs["half_spread_frac"] * (1 - 1e-9)
    raw = [x.inputs["raw_ask"] - x.inputs["raw_bid"] for x in (a, b)]
    assert raw[1] >= raw[0] * (1 - 1e-12)
    if a.bids and a.asks and b.bids and b.asks:
        # each price is rounded outward to the 1e-6 tick: the quoted spread is the raw one plus less than two ticks
        # (the skew cap can put a raw price exactly on a tick, where the rounding adds nothing)
        assert b.asks[0].price - b.bids[0].price >= a.asks[0].price - a.bids[0].price - 2e-6


@settings(max_examples=400, deadline=None)
@given(curves, deltas, kappas, toxicities, fees)
def test_the_compiled_loop_returns_the_references_doubles(curve, d_star, kappa, tox, fee):
    """The quoter runs the compiled twin when it is built (tests/engine/test_compiled.py); it must give the same
    doubles as the Python reference, bit for bit, δ and its cost."""
    from apps.engine.quoting import quoter

    ref = quoter.py_depth_priced_half_spread(d_star, kappa, curve, tox, fee)
    got = quoter.depth_priced_half_spread(d_star, kappa, curve, tox, fee)
    assert [struct.pack("<d", v) for v in got] == [struct.pack("<d", v) for v in ref]


def test_the_compiled_loop_rejects_what_the_reference_rejects():
    from apps.engine.quoting import quoter

    for fn in (quoter.py_depth_priced_half_spread, quoter.depth_priced_half_spread):
        with pytest.raises(ValueError, match="κ > 0"):
            fn(1e-4, 0.0, flat(1e-4), 0.0, 0.0)


# --- the skew cap (quoter docstring, "Skew cap") ---------------------------------------------------------------------

# fills nearer the mid than 1 bps cost 2 bps; from 1 bps on they cost 0.3 bps (below the depth itself)
SHALLOW_TOXIC = DepthCostCurve(0.1 * BPS, (2.0 * BPS,) * 10 + (0.3 * BPS,) * 40, (50,) * 50, 0.6 * BPS)


def _quote_at(q: float, curve: DepthCostCurve = SHALLOW_TOXIC, **params):
    return quote(_params(**params), RISK, _state(curve), q, tick_size=1e-6, lot_size=1e-3)


def test_the_cap_keeps_the_reducing_quote_out_of_the_depths_where_a_fill_loses():
    """Long 8 of Q_max 10: the model's skew puts the ask through the mid; capped, it stops at 1 bps from the mid (the
    shallowest depth where a fill earns its cost), the bid moves with it, and the spread is the model's."""
    capped = _quote_at(8.0)
    free = _quote_at(8.0, skew_cap_by_fill_cost=False)
    i, j = capped.inputs, free.inputs
    mid = i["mid"]
    delta = i["half_spread_frac"]
    assert delta == j["half_spread_frac"] and delta > 1.0 * BPS  # the cap never changes δ
    assert j["raw_ask"] < mid * (1 + 1.0 * BPS)  # uncapped: the reducing ask is shallower than 1 bps
    assert i["skew_cap_frac"] == pytest.approx(delta - 1.0 * BPS, abs=1e-15)
    assert i["skew_frac"] == pytest.approx(i["skew_cap_frac"], abs=1e-15)
    assert i["skew_model_frac"] == j["skew_frac"] > i["skew_frac"] > 0
    assert i["raw_ask"] == pytest.approx(mid * (1 + 1.0 * BPS), rel=1e-12)
    assert i["raw_ask"] - i["raw_bid"] == pytest.approx(j["raw_ask"] - j["raw_bid"], rel=1e-12)
    assert "skew capped" in " ".join(capped.reasons) and "skew capped" not in " ".join(free.reasons)
    assert math.isnan(j["skew_cap_frac"])
    # the flag reads the model's skew: a deliberate cap is not reported as a mis-scaled model
    assert i["skew_too_small"] == j["skew_too_small"]


def test_no_cap_below_it_and_none_without_the_depth_curve():
    small = _quote_at(0.2)
    assert 0 < small.inputs["skew_frac"] < small.inputs["skew_cap_frac"]
    assert small.inputs["skew_frac"] == small.inputs["skew_model_frac"]
    assert not any(r.startswith("skew capped") for r in small.reasons)
    warming = quote(_params(), RISK, _state(SHALLOW_TOXIC, ok=False), 8.0, tick_size=1e-6, lot_size=1e-3)
    assert math.isnan(warming.inputs["skew_cap_frac"]) and warming.inputs["skew_frac"] > 0


def test_a_curve_where_no_shallower_depth_pays_leaves_no_skew():
    never = DepthCostCurve(0.1 * BPS, (9.0 * BPS,) * 50, (50,) * 50, 9.0 * BPS)
    r = _quote_at(8.0, curve=never)
    assert r.inputs["skew_cap_frac"] == 0.0 and r.inputs["skew_frac"] == 0.0 and r.inputs["skew_model_frac"] > 0


@settings(max_examples=150, deadline=None)
@given(curves, st.floats(0.0, 9.9), st.floats(0.0, 9.9), st.sampled_from([1.0, -1.0]), fees)
def test_with_the_cap_the_skew_still_grows_with_inventory_and_no_quote_sits_nearer_than_the_floor(
    curve, q1, q2, sign, fee
):
    lo, hi = sorted((q1, q2))
    a = _quote_at(sign * lo, curve=curve, maker_fee_bps=fee / BPS).inputs
    b = _quote_at(sign * hi, curve=curve, maker_fee_bps=fee / BPS).inputs
    assert sign * b["skew_frac"] >= sign * a["skew_frac"] - 1e-15  # weakly: it stops at the cap
    for i in (a, b):
        mid, delta = i["mid"], i["half_spread_frac"]
        floor = delta - i["skew_cap_frac"]  # d_min
        assert 0.0 <= i["skew_cap_frac"] <= delta
        assert abs(i["skew_frac"]) <= i["skew_cap_frac"] * (1 + 1e-12)
        assert i["raw_bid"] <= mid * (1 - floor) * (1 + 1e-12) and i["raw_ask"] >= mid * (1 + floor) * (1 - 1e-12)
        assert i["raw_ask"] - i["raw_bid"] == pytest.approx(2 * delta * mid, rel=1e-9)


def _shaped_curves(n: int, seed: int):
    """Curves shaped as the depth-markout estimator's (201 cells of 0.1 bps, costs of ~0.5–2 bps rising then flat,
    with noise, negative stretches, a flat tail, plateaus that make ties), each with a δ*, κ, toxicity and fee."""
    rng = random.Random(seed)
    for i in range(n):
        cells = rng.choice((201, 201, 120, 3, 2))
        step = rng.choice((1e-5, 0.5e-5, 2.5e-5))
        level = rng.uniform(-0.5, 2.5) * BPS
        rise = rng.uniform(0.0, 1.5) * BPS
        noise = rng.choice((0.0, 0.05, 0.3)) * BPS
        scale = rng.uniform(1.0, 8.0)
        costs = [level + rise * (1.0 - math.exp(-k / scale)) + rng.gauss(0.0, noise) for k in range(cells)]
        if i % 7 == 0:  # a plateau equal to the last cost: J ties across cells
            costs[cells // 2 :] = [costs[cells // 2]] * (cells - cells // 2)
        if i % 11 == 0:  # a cost rising faster than the depth somewhere
            costs[cells // 3 :] = [c + 2.0 * step * max(0, k - cells // 3) for k, c in enumerate(costs[cells // 3 :])]
        curve = DepthCostCurve(step, tuple(costs), (100,) * cells, rng.uniform(-0.5, 2.0) * BPS)
        d_star = rng.choice((rng.uniform(0.05, 3.0), rng.uniform(0.0, 40.0), 0.0)) * BPS
        kappa = math.exp(rng.uniform(math.log(300.0), math.log(200_000.0)))
        yield curve, d_star, kappa, rng.choice((0.0, rng.uniform(0.0, 3.0))), rng.uniform(-1.0, 2.0) * BPS


def test_the_compiled_loop_returns_the_references_doubles_on_curves_shaped_as_the_estimators():
    """The compiled loop skips the cells that cannot win (no exp where J's bound is below the best so far, and stops
    once no later cell can reach it); the result must still be the reference's, bit for bit, on full-size curves
    where that happens (large κ: J decays over a few cells) and where it does not (small κ, ties, δ* past the grid)."""
    from apps.engine.quoting import quoter

    for k, (curve, d_star, kappa, tox, fee) in enumerate(_shaped_curves(6000, seed=15)):
        ref = quoter.py_depth_priced_half_spread(d_star, kappa, curve, tox, fee)
        got = quoter.depth_priced_half_spread(d_star, kappa, curve, tox, fee)
        assert [struct.pack("<d", v) for v in got] == [struct.pack("<d", v) for v in ref], (k, d_star, kappa, tox, fee)


def test_the_compiled_loop_gives_the_references_doubles_as_the_curve_it_reads_changes_back_and_forth():
    """The compiled twin keeps the last curve's costs (their buffer and suffix minima) between calls: reading curve A,
    then B, then A again, many times over (a hit, then a miss, each time), with costs that tie (0.0 and -0.0, equal
    minima at several depths), must give what the reference gives at every call."""
    from apps.engine.quoting import quoter

    rng = random.Random(4)
    ties = DepthCostCurve(0.1 * BPS, (0.5 * BPS, 0.0, -0.0, 0.0, 1.0 * BPS) * 8, (10,) * 40, 0.2 * BPS)
    shaped = [c for c, *_ in _shaped_curves(6, seed=21)]
    curves_ = [ties, *shaped, flat(0.3 * BPS)]
    for k in range(3000):
        curve = curves_[k % 2] if k < 1000 else rng.choice(curves_)
        d_star = rng.uniform(0.0, 6.0) * BPS
        kappa = math.exp(rng.uniform(math.log(300.0), math.log(200_000.0)))
        tox, fee = rng.uniform(0.0, 2.0), rng.uniform(-1.0, 1.0) * BPS
        for _ in range(2):  # the second call reads the kept curve
            ref = quoter.py_depth_priced_half_spread(d_star, kappa, curve, tox, fee)
            got = quoter.depth_priced_half_spread(d_star, kappa, curve, tox, fee)
            assert [struct.pack("<d", v) for v in got] == [struct.pack("<d", v) for v in ref], (k, d_star, kappa)


def test_the_compiled_quoter_reads_a_strided_cost_array_as_the_reference_does():
    """The compiled depth pricing and skew cap read a curve's contiguous cost buffer directly; a cost array that is a
    strided view (not what DepthCostCurve builds, but what a caller could hand it) is read through a packed copy: the
    same quotes as the reference's, where the cap binds and where it does not (before, the compiled quoter raised)."""
    import numpy as np

    from apps.engine.quoting import quoter

    strided = DepthCostCurve(SHALLOW_TOXIC.step, SHALLOW_TOXIC.costs, SHALLOW_TOXIC.counts, SHALLOW_TOXIC.pooled)
    view = np.repeat(SHALLOW_TOXIC.cost_array, 2)[::2]
    assert not view.flags.c_contiguous and np.array_equal(view, SHALLOW_TOXIC.cost_array)
    object.__setattr__(strided, "cost_array", view)
    for curve in (SHALLOW_TOXIC, strided):
        for q in (-8.0, -2.0, 0.0, 3.0, 8.0):
            args = (_params(), RISK, _state(curve), q)
            got = quoter.quote(*args, tick_size=1e-6, lot_size=1e-3)
            want = quoter.py_quote(*args, tick_size=1e-6, lot_size=1e-3)
            assert got.inputs["skew_cap_frac"] == want.inputs["skew_cap_frac"], (q, curve is strided)
            assert [(lv.price, lv.size) for lv in got.bids + got.asks] == [
                (lv.price, lv.size) for lv in want.bids + want.asks
            ]
