"""The compiled estimators' reads (κ's tick posterior and goodness of fit, σ's reads, the depth curve's snapshot)
against their references, bit for bit, on generated inputs.

- ``_estimators.tick_mode`` (the tick posterior's derivative, bracket and Brent root search in C) against
  :func:`apps.engine.estimators.kappa.tick_mode` (Python, ``scipy.optimize.brentq``) on thousands of generated
  posteriors spanning the recordings' range and far beyond it, and on inputs where the reference raises (the compiled
  function then runs the reference, so the same exception comes out);
- ``_estimators.tick_posterior`` against :func:`~apps.engine.estimators.kappa.tick_posterior`, and its grid
  (``_estimators.tick_posterior_at_mode``, C loops) against the reference's on every grid size and at the edges
  (a NaN or infinite curvature, an infinite rate, a grid of 2 points, a grid that is not an integer);
- the compiled ``TradeKappaEstimator``'s goodness of fit (read from its ring) and snapshot against
  ``PyTradeKappaEstimator``'s on generated tapes with a small window and a small ``gof_max_trades`` (so the window
  walk and the row limit both bite), in the tick and the continuous model.

- the compiled ``SigmaEstimator``'s ``sigma_clean``/``sigma_total``/``sigma_for_inventory``/``_open_contribution``
  (in C) and snapshot against ``PySigmaEstimator``'s on a generated mid path, including an open bucket at a zero
  mid (where the reference raises, and so must the compiled class);
- the compiled ``DepthMarkoutCurve``'s sum of squares (a C loop) and snapshot against the reference's.

On the shared recordings the whole κ snapshot (tick posterior and goodness of fit included) is compared by
tests/engine/estimators/test_estimators_equivalence.py.
"""

from __future__ import annotations

import math
import struct

import numpy as np
import pytest

from apps.engine.estimators import _estimators, kappa
from apps.engine.estimators.kappa import KappaParams, PyTradeKappaEstimator

MS = 1_000_000


def bits(x):
    """Floats as their exact bit patterns (NaN == NaN, -0.0 != 0.0), through tuples, lists, dicts, dataclasses."""
    if isinstance(x, float):
        return struct.pack("<d", x)
    if isinstance(x, (tuple, list)):
        return tuple(bits(v) for v in x)
    if isinstance(x, dict):
        return {k: bits(v) for k, v in x.items()}
    if hasattr(x, "__dataclass_fields__"):
        return (type(x).__name__, bits(tuple(getattr(x, f) for f in x.__dataclass_fields__)))
    return x


def generated_posteriors(seed: int, count: int):
    """(n_eff, S, τ, α0, β0) over wide ranges: n from 0.05 to 8000 trades, τ from 2e-9 to 0.05, the mean excess
    from 0 (every print one level through) to 50 ticks, prior κ from 20 to 60 000."""
    rng = np.random.default_rng(seed)
    for _ in range(count):
        n = float(np.exp(rng.uniform(-3.0, 9.0)))
        tau = float(np.exp(rng.uniform(-20.0, -3.0)))
        mean_excess = tau * float(np.exp(rng.uniform(-6.0, 4.0))) if rng.random() > 0.05 else 0.0
        a0 = float(np.exp(rng.uniform(-2.0, 3.0)))
        b0 = a0 / float(np.exp(rng.uniform(3.0, 11.0)))
        yield n, n * mean_excess, tau, a0, b0


def outcome(fn, *args):
    try:
        return ("ok", bits(fn(*args)))
    except (ArithmeticError, ValueError, RuntimeError) as e:  # the same exception type is part of the contract
        return ("raised", type(e).__name__)


@pytest.mark.parametrize("seed", range(4))
def test_the_compiled_tick_mode_matches_the_reference_bit_for_bit(seed):
    n_same = 0
    for args in generated_posteriors(seed, 2500):
        ref = kappa.tick_mode(*args)
        cmp = _estimators.tick_mode(*args)
        assert bits(cmp) == bits(ref), args
        n_same += 1
    assert n_same == 2500


@pytest.mark.parametrize(
    "args",
    [
        (10.0, 0.0, 0.0, 2.0, 0.001),  # τ = 0: the reference divides by expm1(0) = 0
        (10.0, 0.0, math.nan, 2.0, 0.001),
        (math.nan, 0.0, 1e-5, 2.0, 0.001),
        (10.0, math.inf, 1e-5, 2.0, 0.001),
        (10.0, 1e-4, 1e-5, 2.0, math.inf),
        (10.0, 1e-4, 1e-310, 2.0, 0.001),  # a subnormal τ (below the C path's 1e-300)
        (0.0, 0.0, 1e-5, 2.0, 0.001),  # no trades: the prior alone
        (1e6, 1e6 * 3e-5, 1e-5, 2.0, 0.001),
        (3.0, 3.0 * 1e-6, 1e-6, 0.01, 1e-8),
    ],
)
def test_the_compiled_tick_mode_matches_the_reference_at_the_edges(args):
    assert outcome(_estimators.tick_mode, *args) == outcome(kappa.tick_mode, *args)


def test_the_compiled_tick_posterior_matches_the_reference():
    for i, args in enumerate(generated_posteriors(11, 300)):
        ci = (0.95, 0.9, 0.5)[i % 3]
        assert bits(_estimators.tick_posterior(*args, ci)) == bits(kappa.tick_posterior(*args, ci)), args


def test_the_gammaincinv_entry_point_matches_the_ufunc_bit_for_bit():
    """The compiled κ snapshot takes the Gamma quantiles from scipy's C entry point (cython_special's capsule) instead
    of the ufunc: the same doubles over shapes from 1e-3 to 1e9, at the credible interval's tails and anywhere in
    (0, 1), and where the kernel rejects the input (NaN in both)."""
    from scipy import special

    assert _estimators.gammaincinv(2.0, 0.5) is not None  # found on this install: the C path is the one tested
    rng = np.random.default_rng(7)
    tails = (0.025, 0.975, 0.05, 0.95, 0.005, 0.995, 0.25, 0.75)
    for i in range(60_000):
        a = float(np.exp(rng.uniform(-7.0, 21.0)))
        if i % 4 == 0:
            a = float(rng.integers(1, 20_000)) + 2.0  # a count of orders plus the prior shape
        y = tails[i % len(tails)] if i % 3 else float(rng.uniform(0.0, 1.0))
        assert bits(_estimators.gammaincinv(a, y)) == bits(float(special.gammaincinv(a, y))), (a, y)
    for a, y in ((2.0, 0.0), (2.0, 1.0), (0.0, 0.5), (-1.0, 0.5), (math.nan, 0.5), (2.0, math.nan), (math.inf, 0.5),
                 (2.0, 1.5), (1e300, 0.025), (5e-324, 0.5)):  # fmt: skip
        assert bits(_estimators.gammaincinv(a, y)) == bits(float(special.gammaincinv(a, y))), (a, y)


def test_the_compiled_gamma_posterior_matches_the_reference_bit_for_bit():
    rng = np.random.default_rng(8)
    for i in range(20_000):
        n = float(rng.integers(1, 30_000)) if i % 2 else float(np.exp(rng.uniform(-3.0, 10.0)))
        mean_delta = float(np.exp(rng.uniform(-13.0, -2.0)))  # from 0.02 bps to 1,350 bps
        a0 = float(np.exp(rng.uniform(-2.0, 3.0)))
        b0 = a0 / float(np.exp(rng.uniform(3.0, 11.0)))
        ci = (0.95, 0.9, 0.5, 0.99, 0.999)[i % 5]
        args = (n, n * mean_delta, a0, b0, ci)
        assert bits(_estimators.gamma_posterior(*args)) == bits(kappa.gamma_posterior(*args)), args
    # where the reference raises (a zero rate, a negative shape) or is handed other types, it is what runs
    for args in ((3.0, 0.0, 2.0, 0.0, 0.95), (3.0, 0.1, -5.0, 1e-3, 0.95), (3, 0.1, 2, 1e-3, 0.95),
                 (3.0, 0.1, 2.0, 1e-3, 0.0), (math.nan, 0.1, 2.0, 1e-3, 0.95)):  # fmt: skip
        assert outcome(_estimators.gamma_posterior, *args) == outcome(kappa.gamma_posterior, *args), args


def test_the_refresh_steps_int_below_float_test_is_pythons():
    """MarketStep's fresh-until minimum compares an int64 time with a float in C (_lt_exact): exactly as Python
    compares an int with a float, beyond 2**53 (where neighbouring ints round to one double), at ties, and at the ends
    of int64 and of the doubles."""
    rng = np.random.default_rng(9)
    lim = 2**63
    cases = [(0, 0.0), (1, 0.5), (-1, -0.5), (0, -0.0), (5, math.nan), (5, math.inf), (5, -math.inf),
             (lim - 1, float(lim)), (-lim, -float(lim)), (-lim, float(-lim) - 4096.0), (lim - 1, 9.3e18)]  # fmt: skip
    for _ in range(20_000):
        a = int(rng.integers(-(2**62), 2**62))
        x = float(a) + float(rng.integers(-600, 600)) * (2.0 ** int(rng.integers(0, 12)))
        cases.append((a, x))
        cases.append((a + int(rng.integers(-300, 300)), float(a)))
        t = 1_700_000_000_000_000_000 + int(rng.integers(0, 10**15))  # times in ns now, a 1 s interval as a float
        cases.append((t + 1_000_000_000 * int(rng.integers(0, 2)), float(t) + 1e9))
    for a, x in cases:
        assert _estimators.lt_exact(a, x) == (a < x), (a, x)


@pytest.mark.parametrize("n_grid", [2, 3, 9, 101, 801, 2001])
def test_the_compiled_tick_grid_matches_the_reference_bit_for_bit(n_grid):
    for i, args in enumerate(generated_posteriors(20 + n_grid, 150)):
        ci = (0.95, 0.9, 0.5, 0.99)[i % 4]
        u_mode, curv = kappa.tick_mode(*args)
        full = (*args, u_mode, curv, ci, n_grid)
        assert bits(_estimators.tick_posterior_at_mode(*full)) == bits(kappa.tick_posterior_at_mode(*full)), full


@pytest.mark.parametrize(
    "u_mode, curv, ci, n_grid",
    [
        (8.0, math.nan, 0.95, 801),  # max(curv, 1e-12) keeps the NaN, as Python's max does
        (8.0, math.inf, 0.95, 801),  # a zero-width grid: z = 0
        (8.0, 0.0, 0.95, 801),  # the curvature floor: a grid ±12e6 wide in ln κ (κ overflows to inf)
        (8.0, -5.0, 0.95, 9),
        (math.nan, 100.0, 0.95, 801),
        (800.0, 100.0, 0.95, 801),  # κ past the largest double on the whole grid
        (8.0, 100.0, 1.0, 801),  # a zero-width interval: both ends at a cdf target of 0 and z
        (8.0, 100.0, 0.95, 2),
        (8.0, 100.0, 0.95, 801.0),  # not an integer: the reference's ValueError
        (8.0, 100.0, 0.95, 1),
    ],
)
def test_the_compiled_tick_grid_matches_the_reference_at_the_edges(u_mode, curv, ci, n_grid):
    for args in ((50.0, 50 * 3e-5, 1e-5, 2.0, 2.0 / 3000), (50.0, 50 * 3e-5, 1e-5, 2.0, math.inf)):
        full = (*args, u_mode, curv, ci, n_grid)
        assert outcome(_estimators.tick_posterior_at_mode, *full) == outcome(kappa.tick_posterior_at_mode, *full)


@pytest.mark.parametrize("tick", [0.0, 0.1])
@pytest.mark.parametrize("seed", range(3))
def test_the_compiled_kappa_estimator_matches_the_reference_on_generated_tapes(tick, seed):
    """Bursts and lulls on a 5 s window with at most 40 rows in the goodness of fit (from 25), re-fitted every
    0.2 s: the window walk, the row limit, the cache and the shared generator all bite; reads land between
    trades, after lulls longer than the window (an emptied window) and at the trade times."""
    p = KappaParams(
        window_s=5.0,
        min_volume=0.5,
        tick_size=tick,
        gof_min_trades=25,
        gof_max_trades=40,
        gof_interval_s=0.2,
        gof_seed=seed,
        tick_min_through=3.0,
    )
    ref, cmp = PyTradeKappaEstimator(p), _estimators.TradeKappaEstimator(p)
    rng = np.random.default_rng(100 + seed)
    t, mid = 1_000 * MS, 30_000.0
    n_gof = n_tick = 0
    for step in range(4_000):
        t += int(rng.exponential(15 * MS)) + (7_000 * MS if rng.random() < 0.003 else 0)
        mid *= 1 + rng.normal(0, 2e-5)
        half = 0.05 * int(rng.integers(1, 4))
        side = 1 if rng.random() < 0.5 else -1
        depth_ticks = int(rng.geometric(0.6)) - 1 if rng.random() < 0.5 else 0
        price = mid + side * (half + 0.1 * depth_ticks + rng.normal(0, 0.02))
        size = float(rng.exponential(0.05))
        if size <= 0:
            continue
        for est in (ref, cmp):
            est.update_trusted(t, price, size, mid, half)
        if rng.random() < 0.3:  # the order's further prints, one to three levels on
            for j in range(int(rng.integers(1, 4))):
                price2 = price + side * 0.1 * j
                for est in (ref, cmp):
                    est.extend_trusted(t + j, price2, size)
        if step % 9 == 0:
            now = t + int(rng.integers(0, 3_000)) * MS
            a, b = cmp.snapshot(now), ref.snapshot(now)
            assert bits((a.value, a.std, a.ci_low, a.ci_high, a.state, a.detail, a.message)) == bits(
                (b.value, b.std, b.ci_low, b.ci_high, b.state, b.detail, b.message)
            ), step
            assert bits(cmp.goodness_of_fit(now)) == bits(ref.goodness_of_fit(now)), step
            assert (cmp._gof.computed_at_ns, cmp._gof.n_updates) == (ref._gof.computed_at_ns, ref._gof.n_updates)
            n_gof += ref._gof.computed_at_ns == now and ref._gof.result.n >= 25
            n_tick += b.detail.get("kappa_model") == 1.0
    assert n_gof > 50  # the test statistics were recomputed, on full samples, many times
    if tick:
        assert n_tick > 50  # and the tick posterior ran


def test_the_compiled_sigma_reads_match_the_reference():
    from apps.engine.estimators.sigma import PySigmaEstimator, SigmaParams

    p = SigmaParams(min_buckets=3, window_buckets=30, target_bucket_s=0.5)
    ref, cmp = PySigmaEstimator(p), _estimators.SigmaEstimator(p)
    rng = np.random.default_rng(5)
    t, mid = 1_000 * MS, 100.0

    def reads(est, now):
        snap = est.snapshot(now)
        nan_objects = tuple(getattr(est, a) is math.nan for a in ("sigma_clean", "sigma_total", "sigma_for_inventory"))
        return (
            nan_objects
            + bits(
                (
                    est.sigma_clean,
                    est.sigma_total,
                    est.sigma_for_spread,
                    est.sigma_for_inventory,
                    est._open_contribution(),
                )
            )
            + bits((snap.value, snap.std, snap.ci_low, snap.ci_high, snap.state, snap.detail, snap.message))
        )

    for step in range(3_000):
        t += int(rng.exponential(60 * MS))
        mid *= 1 + rng.normal(0, 3e-4 if step % 500 < 50 else 3e-5)  # calm stretches and bursts
        volume = float(rng.exponential(0.2)) if rng.random() < 0.3 else 0.0
        for est in (ref, cmp):
            est.update_trusted(t, mid, volume)
        if step % 5 == 0:
            now = t + int(rng.integers(0, 2_000)) * MS
            assert reads(cmp, now) == reads(ref, now), step
    assert ref._closed.n >= 20
    for est in (ref, cmp):  # an open bucket at a zero mid: the reference divides by it
        est._open_mid = 0.0
    for name in ("sigma_total", "sigma_for_inventory", "_open_contribution"):
        outcomes = [
            outcome(lambda e: getattr(e, name)() if name.startswith("_") else getattr(e, name), e) for e in (cmp, ref)
        ]
        assert outcomes[0] == outcomes[1] == ("raised", "ZeroDivisionError"), name
    for est in (ref, cmp):  # a negative last mid: the log of a negative ratio
        est._open_mid, est._last_mid = 100.0, -1.0
    assert outcome(lambda e: e.sigma_total, cmp) == outcome(lambda e: e.sigma_total, ref) == ("raised", "ValueError")


@pytest.mark.parametrize("seed", range(3))
def test_the_compiled_depth_curve_snapshot_matches_the_reference(seed):
    from apps.engine.estimators.depth_markout import DepthMarkoutParams, PyDepthMarkoutCurve

    p = DepthMarkoutParams(horizon_s=0.5, step_bps=0.5, max_depth_bps=3.0, window=60, min_events=20)
    ref, cmp = PyDepthMarkoutCurve(p), _estimators.DepthMarkoutCurve(p)
    rng = np.random.default_rng(seed)
    hist_t: list[int] = []
    hist_m: list[float] = []

    def mid_before(t: int) -> float:
        i = int(np.searchsorted(hist_t, t, side="left"))
        return hist_m[i - 1] if i > 0 else math.nan

    t, mid = 1_000 * MS, 100.0
    for step in range(1_500):
        t += int(rng.exponential(40 * MS))
        mid *= 1 + rng.normal(0, 2e-5)
        hist_t.append(t)
        hist_m.append(mid)
        t += 1
        aggressor = 1 if rng.random() < 0.5 else -1
        price = mid * (1 + aggressor * rng.normal(1e-4, 2e-4))
        for est in (ref, cmp):
            est.on_trade(t, price, aggressor, mid_before)
        if step % 11 == 0:
            now = t + int(rng.integers(0, 1_000)) * MS
            for est in (ref, cmp):
                est.advance(now, mid_before)
            assert bits(cmp._sum_of_squares()) == bits(ref._sum_of_squares()), step
            a, b = cmp.snapshot(now), ref.snapshot(now)
            assert bits((a.value, a.std, a.ci_low, a.ci_high, a.state, a.detail, a.message, a.last_input_ns)) == bits(
                (b.value, b.std, b.ci_low, b.ci_high, b.state, b.detail, b.message, b.last_input_ns)
            ), step
    assert ref.completed > 500
