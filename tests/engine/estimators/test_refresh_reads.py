"""The refresh step's compiled reads made cheaper (docs/compiled-core.md, twentieth stop) against their references.

- ``DepthMarkoutCurve.curve``: the costs computed into a C array and handed to NumPy as one bytes object, the counts'
  ints reused from the last curve (or the cell above) where a count is unchanged. Compared with
  ``PyDepthMarkoutCurve`` after every advance on tapes whose window fills and slides (counts past CPython's small-int
  cache): the step, every count (value and type), every cost's bits, the pooled cost, the array read-only float64;
  and the snapshot, which reads its costs from the C array while the curve still holds the array it was built with
  (else from the curve, as the reference does: a curve whose array was swapped by hand).
- ``SigmaEstimator``'s snapshot: the correction flag's message made from parts built once, both ways of the factor;
  the per-scale detail keys from the params' scales (also scales given out of order and as a subclass of int), and a
  ``_closed`` that is not the reference's class (read by name).
"""

from __future__ import annotations

import math
import struct
from collections import namedtuple

import numpy as np
import pytest

from apps.engine.estimators import _estimators
from apps.engine.estimators.depth_markout import DepthMarkoutParams, PyDepthMarkoutCurve
from apps.engine.estimators.sigma import PySigmaEstimator, SigmaParams
from tests.engine.estimators.test_snapshots_equivalence import strict

MS = 1_000_000
S = 1_000 * MS


def same_curve(a, b):
    if a is None or b is None:
        return a is b
    assert a.cost_array.dtype == np.float64 and not a.cost_array.flags.writeable
    assert a.cost_array.tobytes() == b.cost_array.tobytes()
    assert [type(x) for x in a.counts] == [type(x) for x in b.counts]
    return (struct.pack("<d", a.step), a.counts, struct.pack("<d", a.pooled)) == (
        struct.pack("<d", b.step),
        b.counts,
        struct.pack("<d", b.pooled),
    ) and a == b


def feed(seed, p, steps):
    """A generated tape into the reference and the compiled curve; yields (now, ref, cmp) after each advance."""
    ref, cmp = PyDepthMarkoutCurve(p), _estimators.DepthMarkoutCurve(p)
    rng = np.random.default_rng(seed)
    hist_t: list[int] = []
    hist_m: list[float] = []

    def mid_before(t: int) -> float:
        i = int(np.searchsorted(hist_t, t, side="left"))
        return hist_m[i - 1] if i > 0 else math.nan

    t, mid = 1_000 * MS, 100.0
    for step in range(steps):
        t += int(rng.exponential(20 * MS))
        mid *= 1 + rng.normal(0, 2e-5)
        hist_t.append(t)
        hist_m.append(mid)
        t += 1
        aggressor = 1 if rng.random() < 0.5 else -1
        # mostly at the touch, some deep, a few far beyond the grid
        depth = rng.exponential(1e-4) * (30.0 if rng.random() < 0.02 else 1.0) - 2e-5
        price = mid * (1 + aggressor * depth)
        for est in (ref, cmp):
            est.on_trade(t, price, aggressor, mid_before)
        if step % int(rng.integers(1, 12)) == 0:
            now = t + int(rng.integers(0, 1_000)) * MS
            for est in (ref, cmp):
                est.advance(now, mid_before)
            yield now, ref, cmp


@pytest.mark.parametrize("seed", range(3))
def test_the_depth_curve_built_from_c_arrays_is_the_references(seed):
    p = DepthMarkoutParams(horizon_s=0.2, step_bps=0.1, max_depth_bps=20.0, window=700, min_events=50)
    n_checked = 0
    for now, ref, cmp in feed(seed, p, 6_000):
        a, b = cmp.curve(), ref.curve()
        assert same_curve(a, b), now
        assert cmp.curve() is a  # cached until an event completes
        assert strict(cmp.snapshot(now)) == strict(ref.snapshot(now)), now
        n_checked += 1
    assert ref.completed > 3 * p.window and max(ref.curve().counts) > 256  # ints past the small-int cache
    assert n_checked > 500


def test_the_depth_curve_without_a_prior_and_with_a_swapped_array_is_the_references():
    p = DepthMarkoutParams(horizon_s=0.2, step_bps=0.5, max_depth_bps=5.0, window=300, min_events=5, prior_events=0.0)
    last = None
    for now, ref, cmp in feed(7, p, 2_000):
        assert same_curve(cmp.curve(), ref.curve()), now
        assert strict(cmp.snapshot(now)) == strict(ref.snapshot(now)), now
        last = now, ref, cmp
    now, ref, cmp = last
    # a curve whose array was replaced by hand (frozen, but object.__setattr__ can): the snapshot reads the curve's
    # array, as the reference's does
    swapped = np.linspace(-1e-4, 3e-4, len(ref.curve().cost_array))
    for est in (ref, cmp):
        object.__setattr__(est.curve(), "cost_array", swapped.copy())
    assert strict(cmp.snapshot(now)) == strict(ref.snapshot(now))


def test_a_rebuilt_depth_curve_starts_its_counts_afresh():
    p = DepthMarkoutParams(horizon_s=0.2, step_bps=0.5, max_depth_bps=5.0, window=300, min_events=5)
    for _now, _ref, cmp in feed(3, p, 800):
        pass
    assert cmp.curve() is not None
    cmp.__init__(p)  # the reference's __init__ on a used object: nothing kept
    assert cmp.curve() is None
    for now, ref, cmp2 in feed(4, p, 800):
        assert same_curve(cmp2.curve(), ref.curve()), now


def sigma_pair(params, seed, steps=3_000):
    ref, cmp = PySigmaEstimator(params), _estimators.SigmaEstimator(params)
    rng = np.random.default_rng(seed)
    t, mid = 1_000 * MS, 100.0
    for _ in range(steps):
        t += int(rng.exponential(50 * MS))
        mid *= 1 + rng.normal(0, 5e-5)
        for est in (ref, cmp):
            est.update_trusted(t, mid, 0.0)
    return ref, cmp, t


@pytest.mark.parametrize("factor", [3.0, 0.2, 1.0, 1.5, 1 / 1.5])
def test_the_sigma_correction_flag_message_is_the_references(factor):
    params = SigmaParams(target_bucket_s=1.0, window_buckets=60, min_buckets=10, correction_tolerance=1.5)
    ref, cmp, t = sigma_pair(params, 1)
    for est in (ref, cmp):
        est._ewma_realised, est._ewma_predicted = factor * 2e-8, 2e-8
    for now in (t, t + 800 * S):
        a, b = cmp.snapshot(now), ref.snapshot(now)
        assert strict(a) == strict(b), (factor, now)
    flagged = not (1 / 1.5 <= ref._ewma_realised / ref._ewma_predicted <= 1.5)
    assert ("variance correction factor" in ref.snapshot(t).message) == flagged


@pytest.mark.parametrize("scales", [(1, 2, 4), (4, 1, 2), (3,), (2, 1)])
def test_the_sigma_scale_keys_are_the_references(scales):
    params = SigmaParams(
        target_bucket_s=1.0, window_buckets=60, min_buckets=10, scales=scales, headline_scale=scales[0]
    )
    ref, cmp, t = sigma_pair(params, 2)
    assert strict(cmp.snapshot(t)) == strict(ref.snapshot(t))
    assert [k for k in ref.snapshot(t).detail if k.startswith("n_blocks_k")] == [f"n_blocks_k{k}" for k in scales]


def test_the_sigma_reads_of_a_closed_state_of_another_class_are_the_references():
    params = SigmaParams(target_bucket_s=1.0, window_buckets=60, min_buckets=10)
    ref, cmp, t = sigma_pair(params, 3)
    Closed = namedtuple("Closed", "n elapsed_s rv bv per_scale")
    c = ref._closed
    # per_scale with equal keys that are other objects (2.0 for 2: the detail names them as the reference does)
    per_scale = {float(k) if k == 2 else k: v for k, v in c.per_scale.items()}
    for est in (ref, cmp):
        est._closed = Closed(c.n, c.elapsed_s, c.rv, c.bv, per_scale)
    assert strict(cmp.snapshot(t)) == strict(ref.snapshot(t))
    assert "n_blocks_k2.0" in cmp.snapshot(t).detail
    assert (cmp.sigma_clean, cmp.sigma_total) == (ref.sigma_clean, ref.sigma_total)
    for est in (ref, cmp):
        est._closed = Closed(3, c.elapsed_s, c.rv, c.bv, per_scale)  # warming: fewer buckets than min_buckets
    assert strict(cmp.snapshot(t)) == strict(ref.snapshot(t))
