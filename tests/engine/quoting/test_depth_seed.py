"""The depth pricing's seed (``apps/engine/quoting/_depthprice.pyx``, twenty-first stop): each call first computes the
J of the cell the last call chose, a lower bound of the best J, and skips (without its exp) every cell whose J is
provably below it, from the first cell on. The winner and its doubles must be the reference's whatever the seed:

* decisions in a row on one curve with δ*, κ and the added cost drifting (the seed near the winner, as in a run);
* seeds before the first cell the loop scans, past the last one, on a cell the loop skips, on a tie;
* curves with plateaus (ties go to the wider δ), NaN and infinite costs, one cell, and the seed from a longer curve.
"""

from __future__ import annotations

import math
import random
import struct

import pytest

from apps.engine.estimators.depth_markout import DepthCostCurve
from apps.engine.quoting import quoter

_depthprice = pytest.importorskip("apps.engine.quoting._depthprice", reason="the compiled depth pricing is not built")
BPS = 1e-4


def _pack(values):
    return [struct.pack("<d", v) for v in values]


def _same(d_star, kappa, curve, tox, fee):
    ref = quoter.py_depth_priced_half_spread(d_star, kappa, curve, tox, fee)
    got = _depthprice.depth_priced_half_spread(d_star, kappa, curve, tox, fee)
    assert _pack(got) == _pack(ref), (d_star, kappa, tox, fee)
    return got


def _curve(rng, cells, step):
    base = rng.uniform(-1.0, 2.5) * BPS
    slope = rng.uniform(-0.6, 0.6) * BPS
    noise = rng.choice((0.0, 0.01, 0.3)) * BPS
    period = rng.uniform(2.0, 40.0)
    costs = [base + slope * math.sin(j / period) + rng.gauss(0.0, noise) for j in range(cells)]
    return costs


def test_decisions_in_a_row_on_one_curve_keep_the_references_doubles():
    rng = random.Random(2121)
    for _ in range(150):
        cells = rng.choice((201, 201, 80, 3))
        step = rng.choice((1e-5, 0.5e-5, 2.5e-5))
        costs = _curve(rng, cells, step)
        if rng.random() < 0.3 and cells > 4:
            costs[cells // 2 :] = [costs[cells // 2]] * (cells - cells // 2)  # a plateau: ties
        curve = DepthCostCurve(step, tuple(costs), (5,) * cells, rng.uniform(-0.5, 2.0) * BPS)
        d_star = rng.uniform(0.0, 20.0) * BPS
        kappa = math.exp(rng.uniform(math.log(300.0), math.log(3e5)))
        tox = rng.uniform(0.0, 1.0)
        fee = rng.uniform(-0.5, 1.0) * BPS
        for _ in range(40):  # small moves, as between two decisions; now and then a jump
            if rng.random() < 0.1:
                d_star = rng.uniform(0.0, 60.0) * BPS
            else:
                d_star = max(d_star * math.exp(rng.gauss(0.0, 0.05)), 0.0)
            kappa *= math.exp(rng.gauss(0.0, 0.03))
            tox = max(tox + rng.gauss(0.0, 0.05), 0.0)
            _same(d_star, kappa, curve, tox, fee)


def test_seeds_outside_the_scan_on_skipped_cells_and_on_ties():
    step = 1e-5
    flat = DepthCostCurve(step, (0.5 * BPS,) * 50, (3,) * 50, 0.2 * BPS)
    rising = DepthCostCurve(step, tuple((0.2 + 0.3 * j) * BPS for j in range(50)), (3,) * 50, 0.2 * BPS)
    steep = DepthCostCurve(step, tuple(3.0 * step * j for j in range(50)), (3,) * 50, 0.0)
    one = DepthCostCurve(step, (0.7 * BPS,), (3,), 0.1 * BPS)
    long_ = DepthCostCurve(step, tuple((1.0 + 0.01 * j) * BPS for j in range(201)), (3,) * 201, 0.1 * BPS)
    calls = [
        (45 * step, 2e4, long_),  # the seed far out on a long curve ...
        (0.1 * step, 2e4, flat),  # ... then past the end of a shorter one
        (40.5 * step, 5e3, flat),  # the seed before the first cell scanned (δ* moved out)
        (0.0, 5e3, flat),
        (3.0 * step, 1e5, rising),
        (3.0 * step, 1e5, steep),  # the cost rises faster than the depth: J falls across every cell
        (3.5 * step, 1e5, steep),
        (0.0, 1e3, one),  # one cell: the seed past it
        (0.0, 1e3, one),
        (49.0 * step, 1e3, flat),  # δ* on the last grid point
        (60.0 * step, 1e3, flat),  # δ* past the grid
        (2.0 * step, 1e3, flat),
        (2.0 * step, 1e3, flat),  # the same call again: the seed is the winner itself
    ]
    for d_star, kappa, curve in calls:
        for tox, fee in ((0.0, 0.0), (0.5, 0.3 * BPS), (0.0, -0.9 * BPS)):
            _same(d_star, kappa, curve, tox, fee)
            _same(d_star, kappa, curve, tox, fee)


def test_nan_and_infinite_costs_and_the_seed():
    rng = random.Random(77)
    for k in range(1500):
        cells = rng.choice((201, 30, 2))
        step = 1e-5
        costs = _curve(rng, cells, step)
        bad = rng.randrange(cells)
        costs[bad] = rng.choice((math.nan, math.inf, -math.inf))
        curve = DepthCostCurve(step, tuple(costs), (5,) * cells, rng.uniform(-0.5, 2.0) * BPS)
        d_star = rng.uniform(0.0, 30.0) * BPS
        kappa = math.exp(rng.uniform(math.log(300.0), math.log(3e5)))
        for _ in range(3):
            _same(d_star, kappa, curve, rng.uniform(0.0, 1.0), rng.uniform(-0.5, 1.0) * BPS)
            d_star *= math.exp(rng.gauss(0.0, 0.1))
