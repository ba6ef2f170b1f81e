"""A decision's inputs are the typed record (apps/engine/market/inputs.py), made by the compiled quoter without a
dict, and the same record as the reference's (test_quote_equivalence holds every decision to it; these are the
record's own cases: shared layouts over a backtest, a key the core also writes, the long ladder past the stack)."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest

from apps.engine.core import StrategyCore, StrategyParams
from apps.engine.market.inputs import DecisionInputs
from apps.engine.quoting.quoter import MODEL_CODES, MarketState, QuoterParams, py_quote
from apps.engine.quoting.risk_aversion import RiskAversionParams
from apps.engine.simulation.backtest import EngineLoop
from tests.engine.quoting.test_quote_equivalence import bits
from tools.engine_fingerprint import venue

_quote = pytest.importorskip("apps.engine.quoting._quote", reason="the compiled quoter is not built")

BASE = MarketState(1, 99.99, 100.01, 5000.0, 1e-4, 1e-4, a_per_s=5.0, mean_trade_size=1.0)
GRID = {"tick_size": 0.01, "lot_size": 0.001}


def both(p, m, q=0.01):
    want = py_quote(p, RiskAversionParams(), m, q, **GRID)
    got = _quote.quote(p, RiskAversionParams(), m, q, **GRID)
    assert bits(got) == bits(want)
    return got


def test_a_backtests_decisions_hold_typed_records_on_a_few_shared_layouts():
    from apps.marketdata.recordings import BINANCE_RAW_RECORDINGS, load_binance_raw
    from tools.engine_fingerprint import DATA

    files, tick, lot = BINANCE_RAW_RECORDINGS["usdm-btcusdt"]
    if not all((DATA / f).exists() for f in files):
        pytest.skip("shared recording missing")
    events = load_binance_raw(DATA, files)[:30_000]
    core = StrategyCore(StrategyParams(), tick_size=tick, lot_size=lot)
    result = EngineLoop(core, venue(tick, lot), name="glft").run(events)
    records = [d.inputs for d in result.decisions]
    assert len(records) > 100 and all(type(r) is DecisionInputs for r in records)
    layouts = {id(r.layout): r.layout for r in records}
    assert len(layouts) <= 4, [len(x) for x in layouts.values()]  # quoted / not yet usable (+ taker, ladder)
    quoted = [r for r in records if "half_spread_frac" in r]
    assert quoted and len(quoted[0]) > 100
    assert all(r.vector.typecode == "d" and len(r.vector) == len(r.layout.names) for r in records)
    # what the dashboard and the risk rules read
    assert all(math.isfinite(r["mid"]) and math.isfinite(r.get("skew_model_frac", math.nan)) for r in quoted)


def test_a_core_input_with_a_quoter_name_ends_as_the_reference_leaves_it():
    # the core's extra inputs come before the quoter's own: a name both write keeps the first position and the last
    # value, and model_requested_code (written twice by the quoter) keeps the quoter's code
    extra = {"model_requested_code": 7.0, "gamma": 3.0, "kappa_std": 1.5}
    r = both(QuoterParams(), replace(BASE, extra_inputs=extra)).inputs
    assert r["model_requested_code"] == MODEL_CODES["glft"] and r["gamma"] != 3.0 and r["kappa_std"] == 1.5
    assert list(r).index("model_requested_code") == 12 and list(r).index("gamma") == 13
    # and when the quoter stops early (estimators not usable), the core's value is the last written
    early = both(QuoterParams(), replace(BASE, kappa_ok=False, extra_inputs=extra)).inputs
    assert early["model_requested_code"] == 7.0 and early["gamma"] == 3.0


def test_a_ladder_longer_than_the_stack_buffer_gives_the_same_record():
    p = replace(QuoterParams(), levels=60, order_size=0.001, max_inventory=10.0, level_spacing_bps=0.5)
    r = both(p, replace(BASE, ts_ns=5), 0.0)
    assert len(r.bids) > 30 and len(r.inputs) > 384 and r.inputs.get("bid_L59_px") is not None


def test_the_core_input_order_and_values_are_kept_whatever_the_mapping():
    class Ordered(dict):  # not exactly a dict: the generic path
        pass

    extra = Ordered(pnl=1.25, zz=-0.0, drift_ok=0.0)
    r = both(QuoterParams(), replace(BASE, extra_inputs=extra)).inputs
    assert list(r)[13:16] == ["pnl", "zz", "drift_ok"]
    assert math.copysign(1.0, r["zz"]) == -1.0


def test_core_input_names_that_are_new_string_objects_each_time_give_the_same_record():
    # names equal by value but not by identity (built at run time): the layout is found by value, not rebuilt
    def fresh(name: str) -> str:
        return "".join(list(name))

    layouts = set()
    for value in (1.0, 2.0, 3.0):
        extra = {fresh("pnl_fresh"): value, fresh("depth_near_fresh"): -value}
        r = both(QuoterParams(), replace(BASE, extra_inputs=extra)).inputs
        assert r["pnl_fresh"] == value and r["depth_near_fresh"] == -value
        layouts.add(id(r.layout))
    assert len(layouts) == 1
