"""The compiled quoter (``apps/engine/quoting/_quote.pyx``) returns exactly the reference's :func:`py_quote` result.

Exactly: the same levels (every field, floats by their bit patterns), the same ``inputs`` (the same keys in the same
insertion order, the same value types, the same bits), the same reasons in the same order, the same taker fields; or,
where the reference raises, the same exception type and message. Compared

* on every decision input of whole backtests over the three Binance recordings (the strategy core's own calls to
  ``quote``, captured as they happen and given to both), with the defaults and with a ladder / taker / no depth cost
  parameter set, and with the finite-horizon and AS models;
* on generated market states and parameters covering every branch (AS / GLFT / GLFT finite, ladders of several
  levels, the taker, warming estimators, drift not usable, microprice usable, the depth curve on and off, clamps at
  the touch, dropped levels);
* and the two pieces the C code re-does itself, ``round(x, 12)`` and ``math.fsum``, against the builtins.
"""

from __future__ import annotations

import math
import struct
from dataclasses import replace

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from apps.engine import core as core_module
from apps.engine.core import StrategyCore, StrategyParams
from apps.engine.estimators.depth_markout import DepthCostCurve
from apps.engine.execution.paper import PaperVenue
from apps.engine.market.inputs import DecisionInputs
from apps.engine.quoting import quoter
from apps.engine.quoting.quoter import MarketState, QuoterParams, py_quote
from apps.engine.quoting.risk_aversion import FEATURE_NAMES, RiskAversionParams
from apps.engine.simulation.backtest import MARKET_TYPES, EngineLoop
from tests.engine.execution.test_fillmodel_equivalence import recording  # noqa: F401 - the fixture
from tools.engine_fingerprint import venue

_quote = pytest.importorskip("apps.engine.quoting._quote", reason="the compiled quoter is not built")
compiled_quote = _quote.quote
BPS = 1e-4


def bits(x):
    """A value with every float as (type, exact bits): -0.0 != 0.0, NaN == NaN of the same payload."""
    if isinstance(x, float):
        return (type(x).__name__, struct.pack("<d", x))
    if isinstance(x, (tuple, list)):
        return (type(x).__name__, tuple(bits(v) for v in x))
    if isinstance(x, DecisionInputs):  # the typed record: its names in order and its doubles' bytes
        return ("DecisionInputs", x.layout.names, x.vector.typecode, x.vector.tobytes())
    if isinstance(x, dict):  # insertion order included
        return ("dict", tuple((bits(k), bits(v)) for k, v in x.items()))
    if hasattr(x, "__dataclass_fields__"):
        return (type(x).__name__, tuple(bits(getattr(x, f)) for f in x.__dataclass_fields__))
    return (type(x).__name__, x)


def outcome(fn, *args, **kw):
    """``("ok", bits of the result)`` or ``("raised", type, message)``."""
    try:
        return ("ok", bits(fn(*args, **kw)))
    except Exception as exc:  # noqa: BLE001 - the error itself is compared
        return ("raised", type(exc).__name__, str(exc))


def assert_same(args, kw) -> None:
    want = outcome(py_quote, *args, **kw)
    got = outcome(compiled_quote, *args, **kw)
    assert got == want, f"compiled quote differs from py_quote on {args!r} {kw!r}"


def test_the_quoter_uses_the_compiled_quote_unless_told_otherwise():
    from apps.engine import compiled

    if compiled.pure_python():
        assert quoter.quote is quoter.py_quote and not quoter.QUOTE_COMPILED
    else:
        assert quoter.QUOTE_COMPILED and quoter.quote is compiled_quote and core_module.quote is compiled_quote


# --- (a) every decision of whole backtests on the recordings ------------------------------------------------------

RUNS = {
    "defaults": {},
    "ladder-taker-no-depth-cost": {
        "levels": 3,
        "size_growth": 1.5,
        "level_spacing_bps": 0.7,
        "fill_cost_by_depth": False,
        "taker_trigger_ratio": 0.4,
        "max_inventory": 0.02,
    },
    "glft-finite": {"model": "glft_finite", "session_end_ns": -1},  # -1: the recording's last event + 60 s
    "as": {"model": "as", "levels": 2},
}


@pytest.mark.parametrize("run", list(RUNS))
def test_every_decision_of_a_backtest_is_identical(recording, run, monkeypatch):  # noqa: F811
    name, events, tick, lot = recording
    settings_ = dict(RUNS[run])
    if settings_.get("session_end_ns") == -1:
        settings_["session_end_ns"] = events[-1].ts_local_ns + 60_000_000_000
    calls = {"n": 0, "quoted": 0, "levels>1": 0, "taker": 0, "reasons": set()}

    def both(params, risk, market, q, *, tick_size, lot_size):
        kw = {"tick_size": tick_size, "lot_size": lot_size}
        want = py_quote(params, risk, market, q, **kw)
        got = compiled_quote(params, risk, market, q, **kw)
        assert bits(got) == bits(want), f"{name}/{run}: decision {calls['n']} differs"
        calls["n"] += 1
        calls["quoted"] += bool(want.bids or want.asks)
        calls["levels>1"] += len(want.bids) > 1 or len(want.asks) > 1
        calls["taker"] += want.taker_side is not None
        calls["reasons"].update(r.split(":")[0] for r in want.reasons)
        return want

    monkeypatch.setattr(core_module, "quote", both)
    core = StrategyCore(StrategyParams.from_dict(settings_), tick_size=tick, lot_size=lot)
    loop = EngineLoop(core, PaperVenue(venue(tick, lot).config, seed=1), name=run)
    for ev in events:
        if isinstance(ev, MARKET_TYPES):
            loop.on_market(ev)
    result = loop.finish()
    # the decisions the core makes before its estimators are usable do not call the quoter
    assert 1000 < calls["n"] <= core.decisions_computed, f"{name}/{run}: {calls}"
    assert calls["quoted"] > 1000 and len(result.fills) > 0, f"{name}/{run}: the quoting path was not compared"
    if run == "ladder-taker-no-depth-cost":
        assert calls["levels>1"] > 100, f"{name}: ladders were not compared: {calls}"
    print(name, run, {k: (sorted(v) if isinstance(v, set) else v) for k, v in calls.items()})


# --- (b) generated market states ----------------------------------------------------------------------------------

TICK = 0.01
finite = st.floats(allow_nan=False, allow_infinity=False)
OFTEN = st.sampled_from([True, True, True, True, False])
maybe_nan = st.one_of(st.just(math.nan), st.floats(0.01, 50.0))
curves = st.lists(st.floats(-2.0, 6.0), min_size=2, max_size=30).map(
    lambda cs: DepthCostCurve(0.25 * BPS, tuple(c * BPS for c in cs), (10,) * len(cs), sum(cs) / len(cs) * BPS)
)


@st.composite
def params(draw):
    # (Q_max, Δ) with at most 20 lots: the finite-horizon solver's grid is 2·Q_max/Δ + 1 points
    inventory, size = draw(st.sampled_from([(0.05, 0.005), (1.0, 0.2), (0.013, 0.001), (10.0, 1.0), (0.01, 0.003)]))
    return QuoterParams(
        gamma_base=draw(st.sampled_from([5000.0, 1.0, 80.0, 2e5, 5000])),  # an int γ₀ goes the reference's way
        gamma_log_bound_nats=draw(st.sampled_from([2.3, 0.2, 5.0])),
        gamma_bound_report_nats=draw(st.sampled_from([0.05, 0.0, 1.0])),
        beta_direction_confidence=draw(st.floats(-2.0, 0.0)),
        horizon_s=draw(st.floats(1.0, 2000.0)),
        drift_horizon_s=draw(st.floats(1.0, 100.0)),
        max_inventory=inventory,
        order_size=size,
        levels=draw(st.integers(1, 5)),
        level_spacing_bps=draw(st.floats(0.0, 5.0)),
        size_growth=draw(st.floats(0.5, 2.0)),
        imbalance_coef_bps=draw(st.floats(-1.0, 1.0)),
        flow_coef_bps=draw(st.floats(-1.0, 1.0)),
        quote_life_s=draw(st.floats(0.1, 5.0)),
        adverse_selection_bps=draw(st.floats(0.0, 3.0)),
        maker_fee_bps=draw(st.floats(-1.0, 2.0)),
        taker_fee_bps=draw(st.floats(0.0, 5.0)),
        taker_trigger_ratio=draw(st.floats(0.05, 1.2)),
        fill_cost_in_spread=draw(OFTEN),
        fill_cost_by_depth=draw(OFTEN),
        skew_cap_by_fill_cost=draw(st.sampled_from([True, True, False])),
        skew_flag_ratio=draw(st.floats(0.0, 1.0)),
        skew_flag_bps=draw(st.floats(0.0, 20.0)),
        model=draw(st.sampled_from(["glft", "glft", "glft_finite", "as"])),
    )


@st.composite
def markets(draw):
    mid = draw(st.sampled_from([100.0, 3000.0, 65000.0, 0.35, 9999.99]))
    half_ticks = draw(st.integers(1, 20))
    bid = round(mid - half_ticks * TICK, 2)
    ask = round(mid + draw(st.integers(1, 20)) * TICK, 2)
    ts = 1_700_000_000_000_000_000 + draw(st.integers(0, 10**12))
    near = [round(bid - i * TICK, 2) for i in range(8)], [round(ask + i * TICK, 2) for i in range(8)]
    sizes = st.one_of(st.floats(0.0, 5.0), st.sampled_from([0.001, 0.0004, 1e-6, 0.0]))
    queues = [draw(st.dictionaries(st.sampled_from(side), sizes, max_size=8)) for side in near]
    features = draw(st.dictionaries(st.sampled_from(FEATURE_NAMES), st.floats(0.0, 3.0), max_size=len(FEATURE_NAMES)))
    return MarketState(
        ts_ns=ts,
        best_bid=bid,
        best_ask=ask,
        kappa=draw(st.floats(50.0, 1e5)),
        sigma_clean=draw(st.floats(1e-7, 1e-3)),
        sigma_inventory=draw(st.floats(1e-7, 2e-3)),
        kappa_ok=draw(OFTEN),
        sigma_ok=draw(OFTEN),
        a_per_s=draw(st.one_of(st.just(math.nan), st.just(0.0), st.floats(0.01, 100.0))),
        mean_trade_size=draw(st.one_of(maybe_nan, st.just(0.0))),
        drift_mean_per_s=draw(st.floats(-1e-4, 1e-4)),
        drift_std_per_s=draw(st.one_of(st.just(math.nan), st.just(0.0), st.floats(1e-7, 1e-4))),
        drift_expected_return=draw(st.floats(-1e-3, 1e-3)),
        drift_ok=draw(st.booleans()),
        book_imbalance=draw(st.floats(-1.0, 1.0)),
        flow_imbalance=draw(st.floats(-1.0, 1.0)),
        microprice_offset=draw(st.floats(-1e-4, 1e-4)),
        microprice_ok=draw(st.booleans()),
        funding_rate=draw(st.floats(-1e-3, 1e-3)),
        funding_interval_s=draw(st.sampled_from([8 * 3600.0, 3600.0])),
        flow_toxicity=draw(st.floats(-0.5, 3.0)),
        adverse_selection=draw(st.one_of(st.just(math.nan), st.floats(-5e-4, 5e-4))),
        adverse_selection_ok=draw(st.booleans()),
        fill_cost_curve=draw(st.one_of(st.none(), curves)),
        fill_cost_curve_ok=draw(OFTEN),
        bid_queue=queues[0],
        ask_queue=queues[1],
        risk_features=features,
        session_end_ns=draw(st.sampled_from([0, ts + 30_000_000_000, ts + 10**13, ts - 5, ts + 7_000_000_000_000])),
        extra_inputs=draw(
            st.dictionaries(
                st.sampled_from(["kappa_std", "pnl", "drift_ok", "gamma", "zz", "model_requested_code"]),
                finite,
                max_size=4,
            )
        ),
    )


inventories = st.one_of(st.just(0.0), st.floats(-12.0, 12.0), st.sampled_from([0.05, -0.05, 1.0, -0.013, 0]))
ticks = st.sampled_from([(0.01, 0.001), (0.1, 0.001), (0.01, 1.0), (0.05, 0.0001)])


@settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(params(), markets(), inventories, ticks)
@example(
    QuoterParams(model="as"),
    MarketState(1, 99.99, 100.01, 50.0, 1e-7, 0.001953125, a_per_s=math.nan),
    1.175494351e-38,  # (q/Q_max)**2 where C's x·x and libm's pow(x, 2) differ by an ulp
    (0.01, 0.001),
)
def test_generated_states_give_identical_decisions(p, m, q, grid):
    if m.fill_cost_curve is None and m.fill_cost_curve_ok:
        m = replace(m, fill_cost_curve_ok=False)
    tick, lot = grid
    assert_same((p, RiskAversionParams(), m, q), {"tick_size": tick, "lot_size": lot})


def test_generated_states_cover_every_branch():
    """The generator above reaches each branch the C code has (checked on a fixed sample, so it cannot rot)."""
    seen: set[str] = set()

    @settings(max_examples=1500, deadline=None, database=None, derandomize=True)
    @given(params(), markets(), inventories, ticks)
    def sample(p, m, q, grid):
        if m.fill_cost_curve is None and m.fill_cost_curve_ok:
            m = replace(m, fill_cost_curve_ok=False)
        try:
            r = py_quote(p, RiskAversionParams(), m, q, tick_size=grid[0], lot_size=grid[1])
        except Exception:  # noqa: BLE001
            seen.add("raises")
            return
        i = r.inputs
        seen.add(f"model {i.get('model_code')}")
        seen.update(x.split(":")[0].split(" (")[0][:24] for x in r.reasons)
        if len(r.bids) > 1 or len(r.asks) > 1:
            seen.add("ladder")
        if r.taker_side is not None:
            seen.add("taker")
        if i.get("fill_cost_by_depth") == 1.0:
            seen.add("by depth")
            cap = i.get("skew_cap_frac", math.nan)
            seen.add("by depth, cap off" if math.isnan(cap) else ("cap 0" if cap == 0.0 else "cap > 0"))
        if i.get("horizon_source") == 1.0:
            seen.add("session end")

    sample()
    for branch in (
        "model 0.0", "model 1.0", "model 2.0", "ladder", "taker", "by depth", "session end",
        "estimators not usable", "A not usable", "drift not usable", "microprice usable",
        "gamma_bound_binding", "skew_too_small", "emergency taker", "no bid at L0", "bid would cross the ask",
        "skew capped", "by depth, cap off", "cap 0", "cap > 0",
    ):  # fmt: skip
        assert branch in seen, f"the generator never reached {branch!r}: {sorted(seen)}"


@pytest.mark.parametrize(
    "change",
    [
        {"best_bid": math.nan},  # floor of a NaN price: the reference's ValueError
        {"kappa": -1.0},  # glft_coefficients' ValueError
        {"kappa": 1e308, "a_per_s": 1.0},  # math.exp overflow
    ],
)
def test_where_the_reference_raises_the_compiled_one_raises_the_same(change):
    base = MarketState(1, 99.99, 100.01, 5000.0, 1e-4, 1e-4, a_per_s=5.0, mean_trade_size=1.0)
    assert_same((QuoterParams(), RiskAversionParams(), replace(base, **change), 0.01),
                {"tick_size": 0.01, "lot_size": 0.001})  # fmt: skip
    assert outcome(py_quote, QuoterParams(), RiskAversionParams(), replace(base, **change), 0.01,
                   tick_size=0.01, lot_size=0.001)[0] == "raised"  # fmt: skip


def test_a_zero_tick_raises_as_the_reference():
    m = MarketState(1, 99.99, 100.01, 5000.0, 1e-4, 1e-4, a_per_s=5.0, mean_trade_size=1.0)
    assert_same((QuoterParams(), RiskAversionParams(), m, 0.0), {"tick_size": 0.0, "lot_size": 0.001})


# --- the pieces re-done in C ------------------------------------------------------------------------------------


@st.composite
def near_grid(draw):
    """Values of the tick and lot rounding: n·step, nudged by a few ulps, and exact decimal half-way cases."""
    kind = draw(st.integers(0, 3))
    if kind == 0:
        step = draw(st.sampled_from([0.1, 0.01, 0.001, 1e-4, 0.05, 0.25, 1e-6, 0.5, 5e-5]))
        x = draw(st.integers(-(10**8), 10**8)) * step
        for _ in range(draw(st.integers(0, 3))):
            x = math.nextafter(x, draw(st.sampled_from([math.inf, -math.inf])))
        return x
    if kind == 1:  # (2j+1)/2^k, k >= 13: x·10^12 is exactly half an integer for k = 13
        return (draw(st.integers(-(10**6), 10**6)) * 2 + 1) / 2.0 ** draw(st.integers(13, 30))
    if kind == 2:
        return draw(st.floats(-1e4, 1e4))
    return draw(st.floats(allow_nan=False))


@settings(max_examples=20000, deadline=None)
@given(near_grid())
@example(1 / 8192)
@example(-3 / 8192)
@example(5e-13)
@example(-5e-13)
@example(8191.999999999999)
@example(4503.599627370496)
@example(1e-201)
@example(math.inf)
def test_round12_is_the_builtin(x):
    assert struct.pack("<d", _quote.round12(x)) == struct.pack("<d", round(x, 12))


values = st.one_of(st.floats(-10.0, 10.0), st.sampled_from([0.0, -0.0, 1e16, -1e16, 1e-16, 1.0, 1e308, -1e308]))


@settings(max_examples=5000, deadline=None)
@given(st.lists(values, max_size=16))
@example([1e-16, 1.0, 1e16])
@example([-0.0, -0.0])
@example([1e308, 1e308])
@example([math.inf, -math.inf])
@example([math.nan, 1.0])
def test_fsum_is_the_builtin(xs):
    want = outcome(math.fsum, xs)
    got = outcome(_quote.fsum, xs)
    assert got == want


# --- the compiled core's extra inputs as InputPairs (apps/engine/quoting/_quote.pxd) --------------------------------

_WRITE_KEYS = ["kappa_std", "pnl", "drift_ok", "gamma", "zz", "model_requested_code", "mid", "depth_near"]


def _pairs(writes):
    from apps.engine.quoting._quote import InputPairs

    pairs, d = InputPairs(), {}
    for key, value in writes:
        pairs.add(key, value)
        d[key] = value
    return pairs, d


@pytest.mark.skipif(not quoter.QUOTE_COMPILED, reason="the compiled quoter is not built")
def test_input_pairs_stand_for_the_dict_of_the_same_writes():
    """Repeated keys end as in a dict (first place, last value); past the 64 pairs held inline they go to the heap;
    the pairs hold their keys and values and release them."""
    import sys

    value = float("1.5")  # a float object of its own, to count its references
    base = sys.getrefcount(value)
    writes = [(f"k{i % 150}", float(i)) for i in range(300)] + [("zz", value), ("k3", -1.0), ("zz", 2)]
    pairs, d = _pairs(writes)
    assert pairs.as_dict() == d and list(pairs.as_dict()) == list(d)
    assert len(pairs) == len(d) == 151 and list(pairs.items()) == list(d.items())
    assert sys.getrefcount(value) == base + 2  # the dict's reference and the pairs'
    assert pairs["zz"] == 2 and pairs["k3"] == -1.0 and pairs.get("k7") == 157.0 and "k149" in pairs
    assert list(pairs) == list(pairs.keys()) == list(d) and {**pairs} == d and dict(pairs) == d
    updated = {"first": 0.0}
    updated.update(pairs)  # the reference quoter's inputs.update(market.extra_inputs)
    assert list(updated.items()) == [("first", 0.0), *d.items()]
    with pytest.raises(KeyError):
        pairs["absent"]
    import pickle

    again = pickle.loads(pickle.dumps(pairs))  # its writes, repeats included
    assert type(again) is type(pairs) and again.as_dict() == d and list(again) == list(d)
    del pairs
    assert sys.getrefcount(value) == base + 1


@pytest.mark.skipif(not quoter.QUOTE_COMPILED, reason="the compiled quoter is not built")
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    params(),
    markets(),
    inventories,
    st.lists(
        st.tuples(st.sampled_from(_WRITE_KEYS), st.one_of(finite, st.booleans(), st.integers(-5, 5))), max_size=80
    ),
)
def test_the_quoter_reads_input_pairs_as_the_dict_of_the_same_writes(p, m, q, writes):
    """The compiled core hands the quoter InputPairs where the reference hands a dict: the compiled quote of the
    pairs is py_quote of the dict built by the same writes (repeated keys, more than 64 writes, ints and bools)."""
    if m.fill_cost_curve is None and m.fill_cost_curve_ok:
        m = replace(m, fill_cost_curve_ok=False)
    pairs, d = _pairs(writes)
    want = outcome(py_quote, p, RiskAversionParams(), replace(m, extra_inputs=d), q, tick_size=0.01, lot_size=0.001)
    got = outcome(
        compiled_quote, p, RiskAversionParams(), replace(m, extra_inputs=pairs), q, tick_size=0.01, lot_size=0.001
    )
    assert got == want
