"""The compiled snapshots (σ, microprice, flow, arrival rate, κ, the depth curve) against their references on
generated inputs that take the paths a recording seldom does: no input yet, warming, stale reads long after the
last input, implausible values (FAILED), the σ correction flag, NaN details, reads at a time that is not an int.

Each snapshot is compared whole and strictly: every field's float bits, the state, the message, the detail's keys
in their order, and for every NaN whether it is the ``math.nan`` object (a dict compares a NaN by identity first,
so a decision record holding the reference's ``math.nan`` equals one holding the compiled snapshot's only if it is
the same object). The recordings' equivalence test (test_estimators_equivalence.py) compares them on real data.
"""

from __future__ import annotations

import math
import struct

import numpy as np
import pytest

from apps.engine.estimators import _estimators

MS = 1_000_000
S = 1_000 * MS


def strict(snap):
    """The snapshot as comparable values: float bits, NaN identity, the detail's keys in order."""

    def f(x):
        if isinstance(x, float):
            return ("f", struct.pack("<d", x), x is math.nan, x is math.inf)
        return x

    return (
        snap.name,
        f(snap.value),
        f(snap.std),
        snap.state,
        snap.last_input_ns,
        f(snap.ci_low),
        f(snap.ci_high),
        list(snap.detail),
        [f(v) for v in snap.detail.values()],
        snap.message,
    )


def same(cmp, ref, now, where):
    a, b = cmp.snapshot(now), ref.snapshot(now)
    assert strict(a) == strict(b), where
    return b


def read_times(rng, t):
    """A read now, a little later, and long after the last input (stale for every estimator's default)."""
    return (t, t + int(rng.integers(0, 3_000)) * MS, t + 700 * S)


@pytest.mark.parametrize("seed", range(3))
def test_the_compiled_sigma_snapshot_matches_the_reference(seed):
    from apps.engine.estimators.sigma import PySigmaEstimator, SigmaParams

    # a narrow plausible range (FAILED on bursts), a tight correction tolerance (the flag both ways), small windows
    p = SigmaParams(
        min_buckets=3, window_buckets=24, target_bucket_s=0.5, scales=(1, 2, 4), headline_scale=2,
        sigma_max=2e-4, correction_tolerance=1.2, correction_half_life_buckets=3.0, stale_after_s=5.0,
    )  # fmt: skip
    ref, cmp = PySigmaEstimator(p), _estimators.SigmaEstimator(p)
    rng = np.random.default_rng(seed)
    t, mid = 1_000 * MS, 100.0
    states, flags = set(), set()
    b = same(cmp, ref, t, "no input")
    assert b.state.value == "warming" and b.message == "no input yet"
    for step in range(2_500):
        t += int(rng.exponential(80 * MS)) + (8 * S if rng.random() < 0.004 else 0)
        mid *= 1 + rng.normal(0, 4e-4 if step % 400 < 60 else 2e-5)
        volume = float(rng.exponential(0.2)) if rng.random() < 0.3 else 0.0
        for est in (ref, cmp):
            est.update(t, mid, volume)
        if step % 3 == 0:
            for now in read_times(rng, t):
                b = same(cmp, ref, now, step)
                states.add(b.state.value)
                flags.add(b.detail["correction_flag"])
    assert states == {"warming", "ok", "stale", "failed"}, states
    assert flags == {0.0, 1.0}
    # a time that is not an int runs the reference on the object: the same snapshot
    same(cmp, ref, float(t), "float time")


@pytest.mark.parametrize("seed", range(3))
def test_the_compiled_microprice_snapshot_matches_the_reference(seed):
    from apps.engine.estimators.microprice import MicropriceParams, PyMicropriceRegression

    p = MicropriceParams(horizon_s=0.5, sample_interval_s=0.1, min_labels=30, stale_after_s=3.0, half_life_s=20.0)
    ref, cmp = PyMicropriceRegression(p), _estimators.MicropriceRegression(p)
    rng = np.random.default_rng(10 + seed)
    t, mid = 1_000 * MS, 100.0
    states = set()
    b = same(cmp, ref, t, "no input")
    assert b.detail["last_label"] is math.nan and b.detail["r2_oos"] is math.nan
    for step in range(3_000):
        t += int(rng.exponential(50 * MS)) + (5 * S if rng.random() < 0.003 else 0)
        xb = float(rng.uniform(-1, 1))
        xf = float(rng.uniform(-1, 1)) if rng.random() < 0.5 else 0.0
        # the mid follows the imbalance in some stretches (OK) and ignores it in others (FAILED: R² <= r2_min)
        mid *= 1 + (2e-5 * xb if step % 600 < 300 else 0.0) + rng.normal(0, 1e-5)
        for est in (ref, cmp):
            est.observe(t, mid, xb, xf)
        if step % 4 == 0:
            for now in read_times(rng, t):
                states.add(same(cmp, ref, now, step).state.value)
    assert states == {"warming", "ok", "stale", "failed"}, states
    same(cmp, ref, float(t), "float time")


@pytest.mark.parametrize("seed", range(3))
def test_the_compiled_flow_and_arrival_snapshots_match_the_references(seed):
    from apps.engine.estimators.flow import ArrivalParams, FlowParams, PyFlowImbalance, PyTradeArrivalRate

    fp = FlowParams(half_life_s=2.0, min_volume=0.5, stale_after_s=4.0)
    ap = ArrivalParams(half_life_s=3.0, min_trades=20, stale_after_s=4.0, lambda_max=30.0)
    flows = PyFlowImbalance(fp), _estimators.FlowImbalance(fp)
    rates = PyTradeArrivalRate(ap), _estimators.TradeArrivalRate(ap)
    rng = np.random.default_rng(20 + seed)
    t = 1_000 * MS
    flow_states, rate_states = set(), set()
    for pair in (flows, rates):
        same(pair[1], pair[0], t, "no input")
    for step in range(3_000):
        burst = step % 700 < 100  # ~50 trades/s, above lambda_max (FAILED)
        t += int(rng.exponential(20 * MS if burst else 250 * MS)) + (6 * S if rng.random() < 0.003 else 0)
        size = float(rng.exponential(0.1)) + 1e-6
        side = 1 if rng.random() < (0.8 if step % 300 < 100 else 0.5) else -1
        for est in flows:
            est.update(t, size, side)
        for est in rates:
            est.update(t)
        if step % 4 == 0:
            for now in (*read_times(rng, t), t - 50 * MS):  # and a read before the last trade
                flow_states.add(same(flows[1], flows[0], now, step).state.value)
                rate_states.add(same(rates[1], rates[0], now, step).state.value)
    assert flow_states == {"warming", "ok", "stale"}, flow_states
    assert rate_states == {"warming", "ok", "stale", "failed"}, rate_states
    same(flows[1], flows[0], float(t), "float time")
    same(rates[1], rates[0], 2**70, "a time beyond int64")


@pytest.mark.parametrize("tick", [0.0, 0.1])
def test_the_compiled_kappa_snapshot_matches_the_reference_in_every_state(tick):
    from apps.engine.estimators.kappa import KappaParams, PyTradeKappaEstimator

    p = KappaParams(
        window_s=3.0, min_volume=0.5, tick_size=tick, gof_min_trades=15, gof_max_trades=60, gof_interval_s=0.3,
        tick_min_through=2.0, kappa_min=3_000.0, kappa_max=20_000.0, stale_after_s=4.0,
    )  # fmt: skip
    ref, cmp = PyTradeKappaEstimator(p), _estimators.TradeKappaEstimator(p)
    rng = np.random.default_rng(30)
    t, mid = 1_000 * MS, 30_000.0
    states = set()
    b = same(cmp, ref, t, "no trades")
    assert b.message == "no trades yet"
    for step in range(2_500):
        t += int(rng.exponential(20 * MS)) + (5 * S if rng.random() < 0.004 else 0)
        mid *= 1 + rng.normal(0, 2e-5)
        half = 0.05
        side = 1 if rng.random() < 0.5 else -1
        # deep and shallow stretches: κ below kappa_min, inside the range and above it
        scale = (0.4, 0.05, 0.004)[(step // 250) % 3]
        price = mid + side * (half + float(rng.exponential(scale * mid * 1e-3)))
        size = float(rng.exponential(0.05)) + 1e-6
        for est in (ref, cmp):
            est.update(t, price, size, mid, half)
        # the order's further prints (a sweep): as deep or deeper, or back at a shallower level, against its touch
        for j in range(int(rng.integers(0, 4)) if rng.random() < 0.4 else 0):
            t += int(rng.integers(0, 2 * MS))
            price2 = mid + side * (half + float(rng.exponential(scale * mid * 2e-3)))
            size2 = float(rng.exponential(0.05)) + 1e-6
            for est in (ref, cmp):
                est.extend(t, price2, size2)
        if step % 7 == 0:
            for now in read_times(rng, t):
                states.add(same(cmp, ref, now, step).state.value)
    assert states == {"warming", "ok", "stale", "failed"}, states


@pytest.mark.parametrize("tick", [0.0, 0.1])
def test_the_compiled_kappa_snapshot_matches_the_reference_with_the_fit_cache_fresh_and_stale(tick):
    """A sweep feed (orders of one to five prints, a level deeper each) read between trades, twice at the same time,
    and again after the goodness of fit's interval: the compiled snapshot reuses the cached fit's detail while the
    cache is fresh (by its update count or by its age) and rebuilds it when the fit is recomputed. A caller that
    mutates a snapshot's detail, or replaces the estimator's cache, changes nothing the next snapshot reports."""
    from apps.engine.estimators.kappa import KappaParams, PyTradeKappaEstimator, _GofCache

    p = KappaParams(
        window_s=4.0, min_volume=0.2, tick_size=tick, gof_min_trades=10, gof_max_trades=80, gof_interval_s=0.5,
        tick_min_through=3.0, kappa_min=100.0, kappa_max=1e6,
    )  # fmt: skip
    ref, cmp = PyTradeKappaEstimator(p), _estimators.TradeKappaEstimator(p)
    rng = np.random.default_rng(31 + int(tick * 10))
    t, mid = 1_000 * MS, 30_000.0
    fresh = stale = 0
    for step in range(3_000):
        t += int(rng.exponential(30 * MS))
        mid *= 1 + rng.normal(0, 2e-5)
        half = 0.05
        side = 1 if rng.random() < 0.5 else -1
        price = mid + side * (half + 0.1 * (int(rng.geometric(0.5)) - 1) + float(rng.normal(0, 0.01)))
        size = float(rng.exponential(0.05)) + 1e-6
        for est in (ref, cmp):
            est.update(t, price, size, mid, half)
        for j in range(int(rng.integers(0, 5))):  # the sweep: each further print one level deeper
            t += int(rng.integers(0, MS))
            price2 = price + side * 0.1 * (j + 1)
            size2 = float(rng.exponential(0.05)) + 1e-6
            for est in (ref, cmp):
                est.extend(t, price2, size2)
        if step % 3:
            continue
        for now in (t, t, t + int(rng.integers(0, 400)) * MS, t + int(rng.integers(500, 900)) * MS):
            before = ref._gof.computed_at_ns
            a = same(cmp, ref, now, step)
            if "ks_stat" in a.detail:
                if ref._gof.computed_at_ns == before:
                    fresh += 1
                else:
                    stale += 1
            a.detail["ks_stat"] = -1.0  # a caller's edit of its own snapshot
            a.detail["gof_n"] = -1.0
        if step % 250 == 0:  # the cache replaced from outside: both recompute at the next read
            ref._gof, cmp._gof = _GofCache(), _GofCache()
    assert fresh > 1_000 and stale > 100, (fresh, stale)


@pytest.mark.parametrize("seed", range(2))
def test_the_compiled_depth_snapshot_matches_the_reference_in_every_state(seed):
    from apps.engine.estimators.depth_markout import DepthMarkoutParams, PyDepthMarkoutCurve

    p = DepthMarkoutParams(
        horizon_s=0.5, step_bps=0.5, max_depth_bps=1.5, window=40, min_events=15, prior_events=0.0,
        stale_after_s=3.0,
    )  # fmt: skip
    ref, cmp = PyDepthMarkoutCurve(p), _estimators.DepthMarkoutCurve(p)
    rng = np.random.default_rng(40 + seed)
    hist_t: list[int] = []
    hist_m: list[float] = []

    def mid_before(t: int) -> float:
        i = int(np.searchsorted(hist_t, t, side="left"))
        return hist_m[i - 1] if i > 0 else math.nan

    t, mid = 1_000 * MS, 100.0
    states = set()
    b = same(cmp, ref, t, "no events")
    assert b.message == "no completed trade event yet"
    for step in range(1_500):
        t += int(rng.exponential(40 * MS)) + (4 * S if rng.random() < 0.005 else 0)
        mid *= 1 + rng.normal(0, 2e-5)
        hist_t.append(t)
        hist_m.append(mid)
        t += 1
        aggressor = 1 if rng.random() < 0.5 else -1
        price = mid * (1 + aggressor * rng.normal(1e-4, 2e-4))  # through the mid too (negative depth)
        for est in (ref, cmp):
            est.on_trade(t, price, aggressor, mid_before)
        if step % 5 == 0:
            for now in read_times(rng, t):
                for est in (ref, cmp):
                    est.advance(now, mid_before)
                states.add(same(cmp, ref, now, step).state.value)
    assert states == {"warming", "ok", "stale"}, states
    same(cmp, ref, float(t), "float time")


@pytest.mark.parametrize("sources", ["own", "public", "both"])
def test_the_compiled_adverse_snapshot_matches_the_reference_in_every_state(sources):
    from apps.engine.estimators.adverse import AdverseSelectionParams, PyAdverseSelectionEstimator

    # a small window, few markouts to leave WARMING, a short staleness bound; public trades count only when the
    # weight is positive ("own" feeds them with weight 0, so they are dropped)
    p = AdverseSelectionParams(
        horizon_s=0.5, public_max_distance_bps=2.0, public_weight=0.0 if sources == "own" else 0.3, window=60,
        min_own_fills=6, min_public_trades=40, stale_after_s=3.0,
    )  # fmt: skip
    ref, cmp = PyAdverseSelectionEstimator(p), _estimators.AdverseSelectionEstimator(p)
    rng = np.random.default_rng(50 + len(sources))
    t, mid = 1_000 * MS, 100.0
    states, seen = set(), set()
    b = same(cmp, ref, t, "no input")
    assert b.message == "no completed markouts yet" and b.value is math.nan and b.ci_low is math.nan
    assert b.detail["own_mean_bps"] is math.nan and b.detail["public_mean_bps"] is math.nan
    for step in range(2_000):
        t += int(rng.exponential(60 * MS)) + (5 * S if rng.random() < 0.004 else 0)
        mid *= 1 + rng.normal(0, 3e-5)
        for est in (ref, cmp):
            est.on_book(t, mid)
        if sources != "own" and rng.random() < 0.4:
            price = mid * (1 + rng.normal(0, 2e-4))  # some beyond public_max_distance_bps (dropped)
            aggressor = 1 if rng.random() < 0.5 else -1
            for est in (ref, cmp):
                est.on_public_trade(t + 1, price, aggressor)
        if sources != "public" and rng.random() < 0.05:
            side = 1 if rng.random() < 0.5 else -1
            fill_t = t - int(rng.integers(0, 200)) * MS  # the mid before it is looked up; sometimes out of order
            for est in (ref, cmp):
                est.on_own_fill(fill_t, side)
        if step % 3 == 0:
            for now in read_times(rng, t):
                b = same(cmp, ref, now, step)
                states.add(b.state.value if b.detail.get("n_eff") is not None else "no markouts")
                seen.add((b.detail["own_markouts"] > 0, b.detail["public_markouts"] > 0, b.std is math.inf))
    assert states == {"no markouts", "warming", "ok", "stale"}, states
    # (own markouts in the window, public ones): none yet, then one source, then (with both) the two
    expected = {"own": {(False, False), (True, False)}, "public": {(False, False), (False, True)}}
    assert {(o, q) for o, q, _ in seen} == expected.get(sources, {(False, False), (False, True), (True, True)}), seen
    if sources == "own":  # one own markout alone: n_eff = 1, the std is math.inf itself
        assert (True, False, True) in seen
    # reads the C code leaves to the reference: a time that is not an int, one beyond ±2**62, and far enough after
    # the last markout that the difference is no longer exact as a double (the int/float comparison in Python)
    for now in (float(t), 2**70, t + 2**60, t + 2**53 + 1):
        same(cmp, ref, now, now)


def test_the_adverse_snapshot_with_parameters_of_other_types_is_the_references():
    from apps.engine.estimators.adverse import AdverseSelectionParams, PyAdverseSelectionEstimator

    # an int z and integral floats for the counts (as JSON may give them): the reference's snapshot on the object
    p = AdverseSelectionParams(z=2, min_own_fills=2.0, min_public_trades=3.0, stale_after_s=1, public_weight=1)
    ref, cmp = PyAdverseSelectionEstimator(p), _estimators.AdverseSelectionEstimator(p)
    t, mid = 1_000 * MS, 100.0
    msgs = set()
    for step in range(40):
        t += 100 * MS
        mid += 0.01 * (-1) ** (step // 3)
        for est in (ref, cmp):
            est.on_book(t, mid)
            est.on_public_trade(t + 1, mid, 1)
            if step % 10 == 0:
                est.on_own_fill(t - MS, -1)
        msgs.add(same(cmp, ref, t, step).message)
        same(cmp, ref, t + 2 * S, step)
    assert "0 own / 2 public markouts (< 2.0 / 3.0)" in msgs and "" in msgs
