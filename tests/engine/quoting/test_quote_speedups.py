"""The twentieth stop's compiled pieces of the quoter (docs/compiled-core.md) against what they stand for.

* ``fmt3``: ``f"{x:.3f}"`` (the γ bound reason) rebuilt in C, against the builtin on random and rounding-edge doubles;
* the depth pricing's cell bound (a later cell cannot beat the best: the loop stops) and its kept curve fields (read
  by slot, the last curve's step and pooled cost kept with the objects they came from): the reference's doubles, on
  curves where the bound stops the loop early, on curves whose fields are replaced in place, and as curves alternate;
* the decision record's last-layout lookup: decisions whose names change back and forth give the reference's record.
"""

from __future__ import annotations

import math
import random
import struct

import pytest

from apps.engine.estimators.depth_markout import DepthCostCurve
from apps.engine.quoting import quoter
from apps.engine.quoting.quoter import QuoterParams, py_quote
from apps.engine.quoting.risk_aversion import RiskAversionParams
from tests.engine.quoting.builders import market_state
from tests.engine.quoting.test_quote_equivalence import bits

_quote = pytest.importorskip("apps.engine.quoting._quote", reason="the compiled quoter is not built")
BPS = 1e-4


def _fmt3_cases():
    rng = random.Random(20)
    xs = [
        0.0,
        -0.0,
        0.0005,
        -0.0005,
        0.0015,
        0.0025,
        0.0625,
        -0.0625,
        0.125,
        1.0005,
        2.5e-4,
        999.9995,
        1e-200,
        1e-201,
        5e-324,
        1e11,
        1e12,
        -1e12,
        123456789.0125,
        math.nan,
        math.inf,
        -math.inf,
        0.49999999999999994,
        4.0035,
    ]
    for _ in range(20000):
        xs.append(rng.uniform(-10.0, 10.0))
        xs.append(math.copysign(10.0 ** rng.uniform(-12.0, 12.5), rng.random() - 0.5))
        k = rng.randrange(-(10**6), 10**6)
        xs.append((k + 0.5) / 1000.0)  # the nearest double to a decimal half-way case
        xs.append(math.nextafter((k + 0.5) / 1000.0, math.inf))
        xs.append(math.nextafter((k + 0.5) / 1000.0, -math.inf))
        xs.append(k / 1024.0)  # dyadic: exact half-way cases in binary
    return xs


def test_fmt3_is_the_builtin_format():
    for x in _fmt3_cases():
        assert _quote.fmt3(x) == f"{x:.3f}", x


def _pack(values):
    return [struct.pack("<d", v) for v in values]


def test_the_cell_bound_keeps_the_references_doubles_on_decaying_and_rising_curves():
    """Large κ (J decays within a few cells: the bound stops the loop early), costs that fall and rise, negative
    costs, plateaus that tie, a NaN and infinite cost somewhere (no stop past them), δ* before, on and past the grid."""
    rng = random.Random(2020)
    for k in range(6000):
        cells = rng.choice((201, 201, 60, 5, 2, 1))
        step = rng.choice((1e-5, 0.5e-5, 2.5e-5))
        base = rng.uniform(-1.0, 2.5) * BPS
        slope = rng.uniform(-0.6, 0.6) * BPS
        noise = rng.choice((0.0, 0.02, 0.4)) * BPS
        costs = [base + slope * math.sin(j / rng.uniform(2.0, 30.0)) + rng.gauss(0.0, noise) for j in range(cells)]
        if k % 5 == 0 and cells > 4:
            costs[cells // 2 :] = [costs[cells // 2]] * (cells - cells // 2)
        if k % 13 == 0:
            costs[rng.randrange(cells)] = rng.choice((math.nan, math.inf, -math.inf))
        if k % 17 == 0 and cells > 3:  # a cost rising faster than the depth
            costs[cells // 3 :] = [c + 3.0 * step * j for j, c in enumerate(costs[cells // 3 :])]
        curve = DepthCostCurve(step, tuple(costs), (7,) * cells, rng.uniform(-0.5, 2.0) * BPS)
        d_star = rng.choice((rng.uniform(0.0, 3.0), rng.uniform(0.0, 60.0), 0.0, -0.5)) * BPS
        kappa = math.exp(rng.uniform(math.log(100.0), math.log(1e6)))
        tox, fee = rng.choice((0.0, rng.uniform(0.0, 3.0))), rng.uniform(-1.0, 2.0) * BPS
        ref = quoter.py_depth_priced_half_spread(d_star, kappa, curve, tox, fee)
        got = quoter.depth_priced_half_spread(d_star, kappa, curve, tox, fee)
        assert _pack(got) == _pack(ref), (k, d_star, kappa, tox, fee)


def test_a_kept_curve_whose_fields_are_replaced_is_read_again():
    """The compiled twin keeps the last curve's step and pooled cost with the objects they came from: a curve whose
    step, pooled cost or cost array is replaced in place (object.__setattr__, as a test or a caller could) is read
    afresh, and a curve of another type (a duck-typed one, read by name) too."""
    from types import SimpleNamespace

    import numpy as np

    curve = DepthCostCurve(0.1 * BPS, tuple((0.5 + 0.01 * j) * BPS for j in range(50)), (3,) * 50, 0.4 * BPS)
    args = (0.8 * BPS, 20_000.0)

    def same():
        ref = quoter.py_depth_priced_half_spread(*args, curve, 1.5, 0.2 * BPS)
        got = quoter.depth_priced_half_spread(*args, curve, 1.5, 0.2 * BPS)
        assert _pack(got) == _pack(ref)
        return got

    first = same()
    object.__setattr__(curve, "step", 0.3 * BPS)
    assert same() != first
    object.__setattr__(curve, "pooled", 3.0 * BPS)
    same()
    costs = np.array(curve.cost_array[::-1], dtype=np.float64)
    costs.flags.writeable = False
    object.__setattr__(curve, "cost_array", costs)
    same()
    duck = SimpleNamespace(step=0.1 * BPS, pooled=0.4 * BPS, cost_array=curve.cost_array)
    for step in (0.1 * BPS, 0.2 * BPS):
        duck.step = step
        ref = quoter.py_depth_priced_half_spread(*args, duck, 1.5, 0.2 * BPS)
        got = quoter.depth_priced_half_spread(*args, duck, 1.5, 0.2 * BPS)
        assert _pack(got) == _pack(ref)


def test_decisions_whose_names_change_back_and_forth_give_the_references_record():
    """The record's layout is looked up as the last decision's first (one comparison of the names' addresses); a
    ladder of another depth, a taker, a dropped level change the names: every decision must still be the
    reference's, names and doubles."""
    rng = random.Random(7)
    risk = RiskAversionParams()
    params = [QuoterParams(levels=n, max_inventory=1.0) for n in (1, 3, 2)]
    for k in range(600):
        p = params[k % 3] if k < 300 else rng.choice(params)
        m = market_state(ts_ns=k + 1, best_bid=100.0 - rng.uniform(0.0, 0.05), best_ask=100.05 + rng.uniform(0.0, 0.05))
        q = rng.choice((0.0, 0.3, -0.9, 0.97))
        ref = py_quote(p, risk, m, q, tick_size=0.01, lot_size=0.001)
        got = _quote.quote(p, risk, m, q, tick_size=0.01, lot_size=0.001)
        assert bits(got) == bits(ref), k
