"""The Hawkes fit's Newton ascent in C (docs/compiled-core.md, twenty-second stop) against the reference.

``_estimators.maximise`` runs ``hawkes.py_maximise`` (the damped, projected Newton ascent in (ln μ, ln α, ln β)) with
its likelihood passes, log-space gradient and Hessian, Cholesky solves and projected steps in C. Held to the reference
bit for bit: the optimum's coordinates, its likelihood, its natural-parameter Hessian (the fit's covariance), the
success flag, the message and the iteration count, on the real tape's sliding windows from the fit's own warm and cold
starts, on simulated Hawkes, Poisson and trending windows, and on edges (starts outside the box or at its corners, a
box of one point, a start where the likelihood is not finite, two events); and the whole ``fit_hawkes`` result with the
C ascent against the same fit with the reference ascent. The fallbacks run the reference itself: inputs that are not
what a fit passes, a changed constant of the module, a step whose β³ underflows.
"""

from __future__ import annotations

import math
import struct

import numpy as np
import pytest

from apps.engine.estimators import hawkes
from tests.engine.estimators.test_hawkes import _real_trade_times_s, simulate_hawkes

_estimators = pytest.importorskip("apps.engine.estimators._estimators")


def bits(x):
    if isinstance(x, float):
        return ("nan",) if math.isnan(x) else ("f", struct.pack("<d", x))
    return (type(x).__name__, x)


def same_optimum(got, ref):
    assert type(got) is type(ref)
    assert [bits(v) for v in got.x] == [bits(v) for v in ref.x]
    assert bits(got.loglik) == bits(ref.loglik)
    assert got.success is ref.success
    assert got.message == ref.message
    assert got.iterations == ref.iterations
    assert [bits(v) for v in got.hess] == [bits(v) for v in ref.hess]


def starts(rel_t):
    """fit_hawkes' own bounds, cold starts and (from a fit's parameters) warm starts for a window."""
    n_ev = rel_t.size
    length = float(rel_t[-1] - rel_t[0]) or 1.0
    rate = n_ev / length
    log_rate = math.log(rate)
    bounds = [
        (log_rate + math.log(1e-6), log_rate + math.log(10.0)),
        (log_rate + math.log(1e-8), log_rate + math.log(1e6)),
        (math.log(1e-3 / length), log_rate + math.log(1e6)),
    ]
    xs = [[math.log(0.5 * rate), math.log(0.5 * m * rate), math.log(m * rate)] for m in hawkes._COLD_STARTS]
    xs.append([math.log(0.5 * rate), math.log(0.5 * rate / n_ev), math.log(0.1 / length)])
    return length, bounds, xs


def check(rel_t, length, x0, bounds):
    gaps = np.diff(rel_t)
    ref = hawkes.py_maximise(rel_t, gaps, length, list(x0), list(bounds))
    got = _estimators.maximise(rel_t, gaps, length, list(x0), list(bounds))
    same_optimum(got, ref)
    return got


def windows():
    t = _real_trade_times_s()
    for lo in range(0, t.size - 1000, 2500):
        w = t[lo : lo + 1000]
        yield w - w[0]
    yield simulate_hawkes(0.5, 0.8, 1.6, 600.0, seed=4)
    rng = np.random.default_rng(8)
    yield np.cumsum(rng.exponential(0.5, 400))  # Poisson: α runs to its lower bound
    horizon, peak = 300.0, math.exp(1.5)
    cand = np.sort(rng.uniform(0.0, horizon, rng.poisson(peak * horizon)))
    yield cand[rng.uniform(0.0, peak, cand.size) < np.exp(cand / 200.0)]  # trending: β to its lower bound
    burst = np.sort(np.concatenate([np.repeat(np.arange(0.0, 50.0, 5.0), 20), rng.uniform(0.0, 50.0, 60)]))
    yield burst  # simultaneous events


def test_the_c_ascent_equals_the_reference_from_the_fits_starts():
    assert hawkes._maximise is _estimators.maximise
    n = 0
    for rel_t in windows():
        length, bounds, xs = starts(rel_t)
        for x0 in xs:
            res = check(rel_t, length, x0, bounds)
            n += 1
            if res.success:  # the warm starts of a re-fit from here
                for k in hawkes._WARM_JUMPS:
                    check(rel_t, length, [res.x[0], res.x[1] + k, res.x[2] + k], bounds)
                    n += 1
    assert n > 100


def test_the_c_ascent_equals_the_reference_on_edges():
    rel_t = simulate_hawkes(0.5, 0.8, 1.6, 300.0, seed=2)
    length, bounds, xs = starts(rel_t)
    corner_lo = [b[0] for b in bounds]
    corner_hi = [b[1] for b in bounds]
    cases = [
        (rel_t, length, corner_lo, bounds),  # every coordinate at its lower bound
        (rel_t, length, corner_hi, bounds),
        (rel_t, length, [v - 5.0 for v in corner_lo], bounds),  # outside the box: clipped
        (rel_t, length, [v + 5.0 for v in corner_hi], bounds),
        (rel_t, length, xs[1], [(v, v) for v in xs[1]]),  # a box of one point: no free coordinate
        (rel_t, length, xs[2], [bounds[0], (xs[2][1], xs[2][1]), bounds[2]]),  # α pinned
        (rel_t, length, [800.0, 0.0, 0.0], [(-1000.0, 1000.0)] * 3),  # μ = inf: not finite at the start
        (rel_t, length, [-700.0, -700.0, 0.0], [(-1000.0, 1000.0)] * 3),  # a start far down a flat slope
        (rel_t[:2], float(rel_t[1]) + 1.0, [0.0, 0.0, 0.0], [(-30.0, 30.0)] * 3),  # two events
        (np.zeros(5), 1.0, [0.0, 0.0, 0.0], [(-10.0, 10.0)] * 3),  # simultaneous at the start
        (rel_t, length, xs[0], [(b[0], b[1] + 50.0) for b in bounds]),  # a wide box
        (rel_t, length, [xs[0][0], xs[0][1], 10.0], [bounds[0], bounds[1], (-20.0, 20.0)]),
    ]
    for r, length_s, x0, b in cases:
        check(r, length_s, x0, b)


def test_the_fit_with_the_c_ascent_equals_the_fit_with_the_reference(monkeypatch):
    """fit_hawkes end to end (cold, then warm from the previous fit, as the estimators re-fit) on sliding windows."""
    t = _real_trade_times_s()
    fields = (
        "mu_per_s", "alpha_per_s", "beta_per_s", "loglik", "stderr_mu", "stderr_alpha", "stderr_beta", "n_events",
        "duration_s", "state", "message", "converged", "loglik_poisson", "ks_stat", "ks_pvalue",
    )  # fmt: skip
    prev_c = prev_r = None
    for lo in range(0, min(t.size - 1000, 40_000), 4000):
        w = t[lo : lo + 1000]
        warm_c = prev_c.params if prev_c is not None and prev_c.ok else None
        warm_r = prev_r.params if prev_r is not None and prev_r.ok else None
        got = hawkes.fit_hawkes(w - w[0], warm_start=warm_c)
        monkeypatch.setattr(hawkes, "_maximise", hawkes.py_maximise)
        ref = hawkes.fit_hawkes(w - w[0], warm_start=warm_r)
        monkeypatch.setattr(hawkes, "_maximise", _estimators.maximise)
        for f in fields:
            assert bits(getattr(got, f)) == bits(getattr(ref, f)), (lo, f)
        assert got.cov.tobytes() == ref.cov.tobytes()
        prev_c, prev_r = got, ref


def test_it_runs_the_reference_for_what_a_fit_does_not_pass(monkeypatch):
    rel_t = simulate_hawkes(0.5, 0.8, 1.6, 200.0, seed=5)
    length, bounds, xs = starts(rel_t)
    gaps = np.diff(rel_t)
    calls = []
    real = hawkes.py_maximise

    def spy(*args):
        calls.append(args)
        return real(*args)

    monkeypatch.setattr(hawkes, "py_maximise", spy)
    declined = [
        (list(rel_t), gaps, length, xs[0], bounds),  # a list of times
        (rel_t.astype(np.float32), gaps.astype(np.float32), length, xs[0], bounds),
        (rel_t, gaps, np.float64(length), xs[0], bounds),  # a NumPy scalar length
        (rel_t, gaps, length, tuple(xs[0]), bounds),
        (rel_t, gaps, length, [np.float64(v) for v in xs[0]], bounds),
        (rel_t, gaps, length, [1, 0, 0], bounds),  # ints
        (rel_t, gaps, length, [math.nan, 0.0, 0.0], bounds),
        (rel_t, gaps, length, xs[0], [list(b) for b in bounds]),
        (rel_t, gaps, length, xs[0], [bounds[0], bounds[1], (bounds[2][0], math.inf)]),
        (rel_t, gaps, length, xs[0], bounds[:2]),
        (rel_t[:1], gaps[:0], length, xs[0], bounds),  # one event
        # β³ underflows on the way: C's division would give inf where the reference's may raise
        (rel_t, gaps, length, [0.0, -300.0, -250.0], [(-10.0, 10.0), (-400.0, 10.0), (-400.0, 10.0)]),
    ]
    for args in declined:
        calls.clear()
        try:
            ref = real(*args)
        except Exception as exc:  # noqa: BLE001 - whatever the reference raises, the compiled call raises the same
            with pytest.raises(type(exc)):
                _estimators.maximise(*args)
        else:
            same_optimum(_estimators.maximise(*args), ref)
        assert len(calls) == 1, args
    calls.clear()
    _estimators.maximise(rel_t, gaps, length, xs[0], bounds)
    assert calls == []  # the fit's own input: no reference
    monkeypatch.setattr(hawkes, "_GTOL", 1e-6)  # a changed constant: the reference with it
    same_optimum(_estimators.maximise(rel_t, gaps, length, xs[0], bounds), real(rel_t, gaps, length, xs[0], bounds))
    assert len(calls) == 1
