"""κ's goodness of fit on tick levels in C (docs/compiled-core.md, twenty-first stop) against the reference.

``_estimators._gof_ticks`` computes ``kappa.exponential_gof_ticks`` with its per-trade arithmetic in C (one value per
level, gathered per trade) around the same NumPy calls (the generator's draws, the sort, the pairwise sums, ``np.log``
and ``q ** exponents``), and the KS p-value through scipy's C ``smirnov`` where ``kstwo_sf`` takes ``2 · smirnov``.
Held to the reference bit for bit: every field of the result (floats by their bits, NaNs as the same kind of object:
``math.nan`` itself where the reference returns it), and the generator's state afterwards, on random windows of
every size and shape (all at the touch, a single level beyond it, one or two trades beyond the touch, levels at and
past the window's size, where the reference runs), and ``kstwo_sf`` on a grid of statistics and counts including
the bounds of each of its branches.
"""

from __future__ import annotations

import math
import struct

import numpy as np
import pytest

from apps.engine.estimators import kappa as km

_estimators = pytest.importorskip("apps.engine.estimators._estimators")

FIELDS = ("ks_stat", "ks_p", "powerlaw_alpha", "loglik_ratio", "loglik_ratio_p", "n", "n_tail")


def bits(x):
    if isinstance(x, float):
        return ("nan", x is math.nan) if math.isnan(x) else ("f", struct.pack("<d", x))
    return (type(x).__name__, x)


def same(got, ref):
    assert type(got) is type(ref)
    for f in FIELDS:
        a, b = getattr(got, f), getattr(ref, f)
        assert type(a) is type(b), f
        assert bits(a) == bits(b), (f, a, b)


def check(levels, seed):
    rng_c = np.random.default_rng(seed)
    rng_r = np.random.default_rng(seed)
    got = _estimators.gof_ticks(list(levels), rng_c)
    ref = km.exponential_gof_ticks(np.array(levels, dtype=float), rng_r)
    if got is None:
        # declined before any draw: the estimator then runs the reference on the same generator
        assert rng_c.bit_generator.state == np.random.default_rng(seed).bit_generator.state
        return False
    same(got, ref)
    assert rng_c.bit_generator.state == rng_r.bit_generator.state
    return True


def windows(seed):
    g = np.random.default_rng(seed)
    for _ in range(300):
        m = int(g.choice([3, 4, 5, 7, 8, 9, 16, 17, 31, 64, 127, 128, 129, 200, 513, 1000, 2047, 3000, 5000]))
        kind = g.integers(0, 7)
        if kind == 0:  # geometric levels, mostly at the touch
            q = float(g.uniform(0.05, 0.95))
            lv = g.geometric(1.0 - q, size=m) - 1
        elif kind == 1:  # a heavy tail (the recordings' shape: a few deep prints)
            lv = np.where(g.random(m) < 0.8, 0, np.floor(g.pareto(1.3, size=m) * 3).astype(np.int64))
        elif kind == 2:  # all at the touch but one or two
            lv = np.zeros(m, dtype=np.int64)
            lv[g.integers(0, m, size=int(g.integers(0, 3)))] = int(g.integers(1, max(2, m)))
        elif kind == 3:  # every trade beyond the touch at one level
            lv = np.full(m, int(g.integers(1, m)), dtype=np.int64)
        elif kind == 4:  # uniform levels up to the size (the largest allowed is m - 1)
            lv = g.integers(0, m, size=m)
        elif kind == 5:  # a level at or past the size somewhere: the reference runs
            lv = g.integers(0, 3, size=m)
            lv[g.integers(0, m)] = m + int(g.integers(0, 5))
        else:  # all at the touch
            lv = np.zeros(m, dtype=np.int64)
        lv = np.minimum(lv, 10 * m)
        yield [int(v) for v in lv], int(g.integers(0, 2**32))


@pytest.mark.skipif(not km.ESTIMATORS_COMPILED, reason="compiled estimators not built")
@pytest.mark.parametrize("seed", range(4))
def test_the_compiled_fit_is_the_references_bit_for_bit(seed):
    taken = 0
    for levels, rng_seed in windows(seed):
        taken += check(levels, rng_seed)
    assert taken > 200  # most windows take the C path


@pytest.mark.skipif(not km.ESTIMATORS_COMPILED, reason="compiled estimators not built")
def test_the_edges_of_the_fit():
    for levels in (
        [0, 0, 0],
        [1, 1, 1],
        [0, 1, 2],
        [2, 1, 0, 0],
        [0, 0, 1, 1, 1],  # tail of three at one level: excess sum 0, no power law (NaN triple)
        [0, 0, 1, 2, 2],
        [0, 0, 0, 0, 0, 0, 0, 3],
        [5, 5, 5, 4, 4, 4],
        [0] * 20 + [19],
        [0] * 20 + [20],  # a level equal to the size: declined
        [0] * 20 + [-1],  # a negative level (never from the estimator): declined
        [0, 1],  # too few
    ):
        check(levels, 7)


@pytest.mark.skipif(not km.ESTIMATORS_COMPILED, reason="compiled estimators not built")
def test_a_replaced_reference_function_is_called(monkeypatch):
    calls = []

    def fake(levels, rng):
        calls.append(len(levels))
        return km.ExpGoodnessOfFit(n=-1)

    monkeypatch.setattr(km, "exponential_gof_ticks", fake)
    assert _estimators.gof_ticks([0, 1, 2, 0, 1], np.random.default_rng(0)) is None


@pytest.mark.skipif(not km.ESTIMATORS_COMPILED, reason="compiled estimators not built")
def test_kstwo_sf_is_the_references():
    # the compiled kstwo_sf takes its C path once the fit has seen the reference's functions (any fit does)
    assert _estimators.gof_ticks([0, 1, 2, 0], np.random.default_rng(0)) is not None
    g = np.random.default_rng(3)
    cases = []
    for n in (1, 2, 3, 4, 5, 10, 50, 139, 140, 141, 200, 1000, 1783, 5000):
        for d in (
            0.0,
            0.5 / n,
            math.nextafter(0.5 / n, 1.0),
            1.0 / n,
            math.nextafter(1.0 / n, 1.0),
            0.25,
            0.499,
            math.nextafter(0.5, 0.0),
            0.5,
            math.nextafter(0.5, 1.0),
            0.57,
            0.7,
            0.9,
            (n - 1) / n,
            math.nextafter((n - 1) / n, 0.0),
            math.nextafter(1.0, 0.0),
            1.0,
        ):
            cases.append((d, n))
        cases += [(float(d), n) for d in g.uniform(0.0, 1.0, size=40)]
        cases += [(float(d), n) for d in g.uniform(0.5, 1.0, size=40)]
    cases += [(float(d), int(n)) for d, n in zip(g.uniform(0.45, 1.0, 2000), g.integers(1, 6000, 2000))]
    for d, n in cases:
        got = _estimators.kstwo_sf(d, n)
        ref = km.kstwo_sf(d, n)
        assert type(got) is float
        assert bits(got) == bits(float(ref)) or (math.isnan(got) and math.isnan(ref)), (d, n, got, ref)
    assert math.isnan(_estimators.kstwo_sf(math.nan, 10))


@pytest.mark.skipif(not km.ESTIMATORS_COMPILED, reason="compiled estimators not built")
def test_the_estimators_fit_is_the_references_over_a_tape():
    """The compiled estimator's goodness of fit (window rows gathered from its ring) against the reference
    estimator's, every gof_interval_s over a tape whose window fills, slides and empties."""
    params = km.KappaParams(tick_size=0.1, window_s=30.0, gof_interval_s=1.0, gof_max_trades=700)
    c = km.TradeKappaEstimator(params)
    r = km.PyTradeKappaEstimator(params)
    g = np.random.default_rng(5)
    t = 1_000_000_000
    fits = 0
    for i in range(6000):
        t += int(g.exponential(0.02 if i < 4000 else 0.5) * 1e9)
        mid = 100.0 + float(g.normal(0, 0.5))
        half = 0.05
        side = 1 if g.random() < 0.5 else -1
        ticks = int(g.geometric(0.6) - 1) if g.random() < 0.3 else 0
        price = mid + side * (half + ticks * 0.1)
        size = float(g.uniform(0.001, 1.0))
        c.update(t, price, size, mid, half)
        r.update(t, price, size, mid, half)
        if i % 37 == 0:
            same(c.goodness_of_fit(t), r.goodness_of_fit(t))
            fits += 1
    assert fits > 100


class _Deque(__import__("collections").deque):
    """A deque subclass: the compiled step then takes its generic path (len() and indexing)."""


@pytest.mark.parametrize("subclass", [False, True])
def test_the_momentum_window_of_mids_is_the_references(subclass, monkeypatch):
    """``MarketStep.c_on_bbo`` reads an exact deque of mids through its size and sq_item (a subclass as before):
    the window (every (time, mid) pair, in order) equal to the reference's after every book ticker, through repeated
    mids, gaps longer than the lookback and bursts at one time."""
    from apps.engine.market.events import BestBidAsk
    from tests.engine.estimators.test_estimators_equivalence import estimators

    ref = estimators(0.1, reference=True, monkeypatch=monkeypatch)
    cmp = estimators(0.1, reference=False, monkeypatch=monkeypatch)
    if subclass:
        cmp._mids = _Deque(cmp._mids)
    g = np.random.default_rng(9)
    t = 1_700_000_000_000_000_000
    mid = 100.0
    for i in range(4000):
        r = g.random()
        t += 0 if r < 0.1 else int(g.exponential(0.3 if r < 0.97 else 15.0) * 1e9)
        if g.random() < 0.4:
            mid += 0.1 * int(g.integers(-2, 3))
        bid, ask = round(mid - 0.05, 2), round(mid + 0.05, 2)
        ev = BestBidAsk(t, t, bid, float(g.uniform(0.1, 5)), ask, float(g.uniform(0.1, 5)))
        ref.on_event(ev)
        cmp.on_event(ev)
        assert type(cmp._mids) is (_Deque if subclass else type(ref._mids))
        assert [(a, struct.pack("<d", b)) for a, b in cmp._mids] == [(a, struct.pack("<d", b)) for a, b in ref._mids]
        assert (cmp._next_drift_ns, cmp._flow_value) == (ref._next_drift_ns, ref._flow_value)


@pytest.mark.skipif(not km.ESTIMATORS_COMPILED, reason="compiled estimators not built")
def test_kstwo_sf_takes_smirnov_in_c_only_on_its_branch(monkeypatch):
    assert _estimators.gof_ticks([0, 1, 2, 0], np.random.default_rng(0)) is not None
    calls = []
    real = km._kolmogn

    def spy(n, d, cdf=True):
        calls.append((n, d))
        return real(n, d, cdf=cdf)

    monkeypatch.setattr(km, "_kolmogn", spy)
    assert _estimators.kstwo_sf(0.7, 100) == km.kstwo_sf(0.7, 100)
    assert calls == [(100, 0.7)]  # only the reference's call: the compiled one took 2 * smirnov in C
    assert _estimators.kstwo_sf(0.3, 100) == km.kstwo_sf(0.3, 100)
    assert calls[1:] == [(100, 0.3), (100, 0.3)]  # below 1/2: the reference's kstwo_sf, both times
