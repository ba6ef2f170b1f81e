"""The compiled decision's not-quotable record and its per-snapshot keys (``apps/engine/_core.pyx``, twentieth stop).

A decision the quoter cannot make (κ or σ not usable: the stream's first seconds) carries the reference's dict of
eleven inputs and the extra inputs as a ``DecisionInputs`` record. The compiled core builds that record directly once
a reference-built one showed it the names (``_unquoted_record``); the ``*_state_ok`` and ``*_age_s`` keys are found
by their place when the name there is the one seen last (``_memo_key``). Here the reference ``PyStrategyCore`` and the
compiled ``StrategyCore`` take the same events from the USD-M recording's first book ticker, and after every event
the decisions must be the same, exactly: every input key in order with its type and bits, and the record's layout the
very interned object. The estimators' cache is also reordered and extended mid-way on both cores (the keys' places
change: the remembered keys must not be reused), and the not-quotable decisions are forced again later (the record
built directly for names seen before, and for new ones).
"""

from __future__ import annotations

import copy
import dataclasses

import pytest

from apps.engine.core import CORE_COMPILED, PyStrategyCore, StrategyCore, StrategyParams
from apps.engine.estimators.base import EstimatorState
from apps.engine.estimators.market import _Cached
from apps.engine.market.events import BestBidAsk
from apps.engine.market.inputs import DecisionInputs
from tests.engine.test_core_equivalence import _decision, _step_both
from tests.engine.test_core_reads import usdm  # noqa: F401 - the fixture: the USD-M recording's first 26,000 events

pytestmark = pytest.mark.skipif(not CORE_COMPILED, reason="the compiled strategy core is not selected")


def _same_decisions(i, ref, fast):
    if ref.last_decision is None:
        assert fast.last_decision is None, f"event {i}"
        return False
    assert _decision(fast) == _decision(ref), f"event {i}: the decision differs"
    a, b = ref.last_decision.inputs, fast.last_decision.inputs
    assert type(b) is DecisionInputs and type(a) is DecisionInputs
    assert b.layout is a.layout, f"event {i}: not the interned layout"
    assert b.vector.tobytes() == a.vector.tobytes()
    return bool(fast.last_decision.reasons)


def _reorder_cache(core):
    """The estimators' cache in reverse order with one more entry (never computed: its age is NaN)."""
    m = core.market
    items = list(m._cache.items())[::-1]
    m._cache.clear()
    m._cache.update(items)
    m._cache["extra_test_estimate"] = _Cached()


def _unusable_sigma(core):
    """σ's cached snapshot made unusable (state FAILED): the next decisions are not quotable."""
    c = core.market._cache["sigma"]
    c.snap = dataclasses.replace(c.snap, state=EstimatorState.FAILED, message="test")


def test_the_not_quotable_decisions_and_their_keys_are_the_references(usdm):  # noqa: F811
    events, tick, lot = usdm
    start = next(i for i, e in enumerate(events) if type(e) is BestBidAsk)
    stream = events[start : start + 6_000]
    params = StrategyParams.from_dict({"max_inventory": 0.05})
    ref = PyStrategyCore(params, tick_size=tick, lot_size=lot)
    fast = StrategyCore(params, tick_size=tick, lot_size=lot)
    assert type(fast) is not PyStrategyCore
    unquoted = quoted = 0
    changed_at = {2_500: _reorder_cache, 4_000: _unusable_sigma}
    for i, ev in enumerate(stream):
        if i in changed_at:
            for core in (ref, fast):
                changed_at[i](core)
        _step_both(ref, fast, ev, f"event {i}")
        if type(ev) is BestBidAsk and fast.decisions_changed:
            if _same_decisions(i, ref, fast):
                unquoted += 1
            else:
                quoted += 1
    # the recording's first 6,000 events are all warm-up: the record built directly from the second on (the quotable
    # decisions are compared in tests/engine/test_core_equivalence.py)
    assert unquoted >= 3, (unquoted, quoted)


def test_a_not_quotable_decision_with_an_input_that_is_not_a_number_raises_as_the_reference(usdm):  # noqa: F811
    """An input array('d') cannot hold: the reference's TypeError naming the key, on both cores."""
    events, tick, lot = usdm
    start = next(i for i, e in enumerate(events) if type(e) is BestBidAsk)
    params = StrategyParams.from_dict({"max_inventory": 0.05})
    cores = PyStrategyCore(params, tick_size=tick, lot_size=lot), StrategyCore(params, tick_size=tick, lot_size=lot)
    for core in cores:
        for ev in events[start : start + 300]:
            core.on_event(ev)
            core.refresh()
        assert core.last_decision is not None and core.last_decision.reasons  # still warming up
    errors = []
    for core in cores:
        now = core._now_ns + 1
        key = (None, None, core.tracker.position, -1, core.halted)  # a key no decision has: it decides
        snaps = core.market.cached_snapshots(now)
        qp = copy.copy(core.quoter_params)
        object.__setattr__(qp, "horizon_s", "60")  # past the frozen dataclass's validation
        core.quoter_params = qp
        with pytest.raises(TypeError) as exc:
            core._decide_now(now, key, snaps)
        errors.append(str(exc.value))
    assert errors[0] == errors[1] and "'horizon_s'" in errors[0]
