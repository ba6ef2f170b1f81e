"""The compiled estimators and their pure-Python references agree exactly, on every shared Binance recording.

``apps/engine/estimators/_estimators.pyx`` (``AdverseSelectionEstimator``, ``SigmaEstimator``,
``MicropriceRegression``, ``FlowImbalance``, ``TradeArrivalRate``, ``HawkesIntensity``, ``TradeKappaEstimator``,
``DepthMarkoutCurve``) against the ``Py*`` classes of the estimator modules: every event of every shared Binance
recording (the engine fingerprint's list, :data:`apps.marketdata.recordings.BINANCE_RAW_RECORDINGS`) goes through a
:class:`MarketEstimators` built with the references and one built with the compiled classes, and

- after **every** event: κ's running window sums and counters, σ for the spread and for the inventory and its open
  bucket, the microprice coefficients, last imbalances and prediction, the flow's decayed volumes, the arrival
  count, the Hawkes state and the adverse snapshot (whose window sums the compiled class keeps incrementally) are
  compared with ``==`` on their exact bits (NaN equals NaN, ``-0.0`` is not ``0.0``), and so is the depth curve's
  state: its counters, both ends of its pending events (the sweep merge, the lag) and every grid cell's count, sum
  and sum of squares (which the window's contents and the eviction order feed);
- at every 50th book ticker (a decision-like point) and at the end: the six cached snapshots the quoter reads
  (``MarketEstimators.snapshots``) and every estimator's own snapshot (value, std, interval, state, detail dict,
  message), κ's window (its length and first index), the depth cost (its snapshot and its curve, every cost's
  bits), the depth curve's whole kept window (depths and moves, in order);
- own maker fills for the adverse estimator are synthesised at fixed book tickers (every 97th), alternating sides,
  stamped a little before the ticker (so the mid before them is looked up), some with an explicit mid and some
  out of order (earlier than a pending one), fed to both;
- after every event too: MarketEstimators' own per-event fields (the last book ticker, trade count, pending volume,
  mean trade size, the mids deque's ends, the last trade time and depth, event counters, ...), which the compiled
  ``MarketStep`` (``_on_bbo``/``_on_trade`` in one call each) writes when the estimators are compiled;
- at the end, the ``estimate`` command's report of each.

The depth curve is also held to its reference on generated tapes that take the paths a recording seldom does
(dropped events, a small window, depths past the grid), through its Python entry points with a plain callable.
"""

from __future__ import annotations

import bisect
import dataclasses
import math
import struct
from pathlib import Path

import numpy as np
import pytest

from apps.engine.estimators import _estimators, market
from apps.engine.estimators.base import EstimatorSnapshot
from apps.engine.estimators.depth_markout import DepthCostCurve
from apps.engine.estimators.market import MarketEstimators
from apps.engine.market.events import BestBidAsk
from apps.marketdata.recordings import BINANCE_RAW_RECORDINGS, load_binance_raw
from tests.engine.estimators.conftest import COMPILED  # the compiled classes and where each is selected

DATA = Path(__file__).resolve().parents[3] / ".." / "shared" / "data"
EVENTS = {"usdm-btcusdt": 93_954, "usdm-ethusdt": 74_655, "spot-btcusdt": 99_574}
MS = 1_000_000


def bits(x):
    """A value with its floats as their exact bit patterns (so -0.0 != 0.0 and NaN == NaN, sign included)."""
    if isinstance(x, float):
        return ("f", struct.pack("<d", x))
    if isinstance(x, (tuple, list)):
        return tuple(bits(v) for v in x)
    if isinstance(x, dict):
        return {k: bits(v) for k, v in x.items()}
    if isinstance(x, DepthCostCurve):
        return ("curve", bits(x.step), x.cost_array.tobytes(), x.counts, bits(x.pooled))
    if isinstance(x, EstimatorSnapshot):
        return (
            x.name,
            bits(x.value),
            bits(x.std),
            x.state,
            x.last_input_ns,
            bits(x.ci_low),
            bits(x.ci_high),
            bits(x.detail),
            x.message,
        )
    return x


def estimators(tick: float, *, reference: bool, monkeypatch) -> MarketEstimators:
    """A MarketEstimators whose estimators are the references or the compiled classes (chosen at construction;
    a Hawkes re-fit keeps the class of the intensity it replaces)."""
    with monkeypatch.context() as m:
        for mod, name in COMPILED:
            m.setattr(market, name, getattr(mod, "Py" + name) if reference else getattr(_estimators, name))
        est = MarketEstimators(tick_size=tick)
    kinds = {type(est.adverse), type(est.sigma), type(est.microprice), type(est.flow), type(est.arrival)}
    kinds |= {type(est.hawkes), type(est.kappa), type(est.depth_markout)}
    assert all((k.__module__ == _estimators.__name__) != reference for k in kinds), kinds
    # the compiled kind runs _on_bbo/_on_trade as MarketStep's methods (unless MM_PURE_PYTHON=1 turned MarketStep
    # off: then the compiled estimators run under MarketEstimators' Python methods), the reference kind as its own
    step = not reference and market._compiled is not None
    for method in (est._on_bbo, est._on_trade, est.refresh):
        assert isinstance(getattr(method, "__self__", None), _estimators.MarketStep) == step
    return est


def cheap_state(est: MarketEstimators, now: int):
    mp = est.microprice
    s = est.sigma
    h = est.hawkes
    return bits(
        (
            s.sigma_for_spread,
            s.sigma_for_inventory,
            s._last_input_ns,
            s._open_ns,
            s._open_mid,
            s._open_volume,
            s._volume_hist_sum,
            s._bucket_volume,
            mp.coefficients,
            mp._last_x,
            mp.n_labels,
            mp.predict(*mp._last_x),
            mp.residual_var,
            est.flow._buy,
            est.flow._sell,
            est.flow._w2,
            est.flow._t_ns,
            est.arrival._count,
            est.arrival._trades,
            h._s,
            h._d_s,
            h._last_ns,
            h.n_events,
            est.adverse.own_total,
            est.adverse.public_total,
            est.adverse.snapshot(now),
            dataclasses.astuple(est.kappa._sums),
            est.kappa._n_updates,
            est.kappa._pops_since_resum,
            est.kappa.last_input_ns,
            # MarketEstimators' own per-event fields (MarketStep writes them when the estimators are compiled)
            est.events_seen,
            est._first_ns,
            est._has_bbo_stream,
            est.book_errors,
            est.non_market_trades,
            est.bbo,
            est.trades_seen,
            est._pending_volume,
            est._mean_trade_size,
            est._flow_value,
            est._kappa_trades_since,
            est._next_drift_ns,
            est._next_hawkes_fit_ns,
            len(est._mids),
            est._mids[-1] if est._mids else None,
            est._mids[0] if est._mids else None,
            len(est._trade_times),
            est._trade_times[-1] if est._trade_times else None,
            len(est._order_local_ns),
            est._order_local_ns[-1] if est._order_local_ns else None,
            est._order_ts_exch_ns,
            est._order_side,
            est.taker_orders_seen,
            len(est._trade_depths),
            est._trade_depths[-1] if est._trade_depths else None,
            # the refresh step's schedule and caches (MarketStep.refresh runs it when the estimators are compiled)
            est._refresh_due_ns,
            est._kappa_min_due_ns,
            est._all_fresh_until_ns,
            type(est._all_fresh_until_ns),
            est.version,
            est.sigma.closed_stale,
            est._hawkes_fit_at,
            tuple(c.at_ns for c in (*est._cache.values(), est._c_depth)),
            tuple(c.snap is None for c in (*est._cache.values(), est._c_depth)),
            est._depth_curve,
        )
    ) + depth_state(est.depth_markout)


def depth_state(dm, *, window: bool = False):
    """The depth curve's state: counters, the ends of the pending events, every cell's count and sums (as their
    bytes: one comparison for the whole grid); with ``window``, the kept events themselves, in order."""
    pend = dm._pending
    n = len(dm._cell_n)
    cells = tuple(struct.pack(f"<{n}{c}", *xs) for c, xs in (("q", dm._cell_n), ("d", dm._cell_s), ("d", dm._cell_s2)))
    head = (dm.completed, dm.dropped, dm._last_done_ns, sum(dm._cell_n), len(pend))
    ends = (tuple(pend[0]), tuple(pend[-1])) if pend else None
    kept = ()
    if window:
        depths, adverse = list(dm._depths), list(dm._adverse)
        kept = (struct.pack(f"<{len(depths)}d", *depths), struct.pack(f"<{len(adverse)}d", *adverse))
    return bits((head, ends)) + cells + kept


def all_snapshots(est: MarketEstimators, now: int):
    return bits(
        (
            est.snapshots(now),
            est.sigma.snapshot(now),
            est.microprice.snapshot(now),
            est.flow.snapshot(now),
            est.arrival.snapshot(now),
            est.hawkes.snapshot(now),
            est.adverse.snapshot(now),
            est.hawkes.intensity(max(now, est.hawkes.last_event_ns)),
            est.kappa.snapshot(now),
            est.kappa._window_sums(now)[1],
            len(est.kappa._trades),
            est.depth_cost(now),
        )
    ) + depth_state(est.depth_markout, window=True)


@pytest.mark.parametrize("name", list(BINANCE_RAW_RECORDINGS))
def test_compiled_estimators_match_the_references_on_every_event(name, monkeypatch):
    files, tick, _lot = BINANCE_RAW_RECORDINGS[name]
    missing = [f for f in files if not (DATA / f).exists()]
    if missing:
        pytest.skip(f"shared recording missing: {missing}")
    events = load_binance_raw(DATA, files)
    ref = estimators(tick, reference=True, monkeypatch=monkeypatch)
    cmp = estimators(tick, reference=False, monkeypatch=monkeypatch)
    n_bbo = n_fills = 0
    for i, ev in enumerate(events):
        ref.on_event(ev)
        cmp.on_event(ev)
        now = ref.now_ns
        assert cmp.now_ns == now
        if type(ev) is BestBidAsk:
            n_bbo += 1
            if n_bbo % 97 == 0:  # an own maker fill, alternating sides
                side = 1 if (n_bbo // 97) % 2 else -1
                t = ev.ts_local_ns - 3 * MS
                if n_bbo % (97 * 5) == 0:
                    t -= 1500 * MS  # before the pending ones: the out-of-order insert
                for est in (ref, cmp):
                    if n_bbo % (97 * 3) == 0:
                        est.adverse.on_own_fill(t, side, mid_before=ev.mid)
                    else:
                        est.adverse.on_own_fill(t, side)
                n_fills += 1
            if n_bbo % 50 == 0:
                assert all_snapshots(cmp, now) == all_snapshots(ref, now), f"{name}: snapshots differ at event {i}"
        assert cheap_state(cmp, now) == cheap_state(ref, now), f"{name}: state differs at event {i} ({ev!r})"
    assert len(events) == EVENTS[name]
    assert n_fills > 100 and ref.adverse.own_total > 100 and ref.trades_seen > 1000
    now = ref.now_ns
    assert all_snapshots(cmp, now) == all_snapshots(ref, now)
    assert bits(cmp.report()) == bits(ref.report())


@pytest.mark.parametrize("seed", range(6))
def test_the_compiled_depth_curve_matches_the_reference_on_generated_tapes(seed):
    """Paths a recording seldom takes, on a random tape with a small window and grid: sweeps (several prints at one
    local time, both sides), trades through the reference mid (negative depth), depths past the grid, lulls longer
    than the mid history (dropped events), reads between trades (``advance``) and rebuilt curves."""
    from apps.engine.estimators.depth_markout import DepthMarkoutParams, PyDepthMarkoutCurve

    rng = np.random.default_rng(seed)
    p = DepthMarkoutParams(horizon_s=0.5, step_bps=0.5, max_depth_bps=3.0, window=40, prior_events=3.0 * (seed % 2))
    ref, cmp = PyDepthMarkoutCurve(p), _estimators.DepthMarkoutCurve(p)
    hist_t: list[int] = []
    hist_m: list[float] = []

    def mid_before(t: int) -> float:  # the mid in force just before t; NaN once t is 2 s older than the last mid
        i = bisect.bisect_left(hist_t, t)
        return hist_m[i - 1] if i > 0 and hist_t[-1] - t < 2_000 * MS else math.nan

    t, mid = 1_000 * MS, 100.0
    for step in range(3_000):
        t += int(rng.exponential(40 * MS)) + (3_000 * MS if rng.random() < 0.01 else 0)
        mid *= 1 + rng.normal(0, 2e-5)
        hist_t.append(t)
        hist_m.append(mid)
        t += int(rng.integers(0, 3)) * MS
        for _ in range(int(rng.integers(1, 4))):  # one to three prints at this local time
            aggressor = 1 if rng.random() < 0.5 else -1
            price = mid * (1 + aggressor * rng.normal(1e-4, 2e-4))
            for est in (ref, cmp):
                est.on_trade(t, price, aggressor, mid_before)
        if step % 7 == 0:
            read_at = t + int(rng.integers(0, 800)) * MS
            for est in (ref, cmp):
                est.advance(read_at, mid_before)
        assert depth_state(cmp) == depth_state(ref), f"seed {seed}: state differs at step {step}"
        if step % 25 == 0:
            assert bits(cmp.curve()) == bits(ref.curve()) and bits(cmp.snapshot(t)) == bits(ref.snapshot(t))
    assert depth_state(cmp, window=True) == depth_state(ref, window=True)
    assert ref.completed > 500 and ref.dropped > 0 and len(ref._depths) == p.window
    assert min(ref._depths) < 0 < ref._cell_n[-1]  # both ends of the grid were reached
