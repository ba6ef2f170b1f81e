"""What the compiled risk evaluation keeps between two evaluations, and the driver's C-level calls, against the
reference (``apps/engine/risk/_session.pyx``, ``apps/engine/simulation/_backtest.pyx``'s ``_risk_at``).

The compiled evaluation plans each rule's check once per rule tuple (the params' bounds in C, held by identity) and
looks the decision record's four inputs up once per layout index (checked by the index's version tag). Every case
where such a memo would go stale is taken here: a rule's params or derived slot replaced, the rules replaced, two
sessions alternating, a layout index changed in place, window keys and core-state keys equal but not identical. Each
is fed to a reference session and a twin alike; every evaluation must give the same started trips, cleared names and
trips (floats by their bits), and the session the same state.
"""

from __future__ import annotations

import dataclasses
import importlib
from array import array

import pytest

from apps.engine.core import StrategyCore, StrategyParams
from apps.engine.market.inputs import DecisionInputs, InputLayout
from apps.engine.risk import session as session_module
from apps.engine.risk.rules import OrderFlowWindow, RollingLoss
from apps.engine.risk.session import PySessionRisk, build_risk_engine
from apps.engine.simulation.backtest import EngineLoop
from tests.engine.risk.test_session_compiled import MAX_INV, MS, T0, _healthy, _pair, _session_state, _trip
from tools.engine_fingerprint import venue

_session = importlib.import_module("apps.engine.risk._session")  # ImportError here: run `make build`


def _same(ref, twin, t, core, inputs):
    """Both sessions evaluated on the same inputs: the same outcome and state; the outcome."""
    a = ref.evaluate(t, dict(core), inputs)
    b = _session.evaluate(twin, t, dict(core), inputs)
    assert [_trip(x) for x in b[0]] == [_trip(x) for x in a[0]]
    assert b[1] == a[1]
    assert [_trip(x) for x in b[2]] == [_trip(x) for x in a[2]]
    assert _session_state(twin) == _session_state(ref)
    return b


def _rule(session, kind):
    return next(r for r in session.engine.rules if r.kind == kind)


def _kinds(outcome):
    return {x.kind for x in outcome[2]}


def _both(ref, twin, change):
    for r in (ref, twin):
        change(r)


# (rule kind, what to change on each session's rule, the core state and inputs after it): each change turns a quiet
# rule into a tripping one while the inputs stay as they were
_TIGHTER = [
    ("position_limit", lambda r: setattr(r, "params", dataclasses.replace(r.params, max_position=0.1)), 0.2),
    ("notional_limit", lambda r: setattr(r, "params", dataclasses.replace(r.params, max_notional_quote=10.0)), 0.2),
    ("drawdown", lambda r: setattr(r, "params", dataclasses.replace(r.params, max_drawdown_quote=1.0)), 0.0),
    ("window_loss", lambda r: setattr(r, "params", dataclasses.replace(r.params, max_loss_quote=1.0)), 0.0),
    ("stale_feed", lambda r: setattr(r, "max_age_ns", 0), 0.0),
    ("clock_skew", lambda r: setattr(r, "max_abs_skew_ns", 1 * MS), 0.0),
    ("estimator_state", lambda r: setattr(r, "_bad", frozenset({"ok"})), 0.0),
    ("estimator_state", lambda r: setattr(r, "params", dataclasses.replace(r.params, estimators=("kappa", "x"))), 0.0),
    ("message_rate", lambda r: setattr(r, "params", dataclasses.replace(r.params, max_messages=2)), 0.0),
    ("cancel_rate", lambda r: setattr(r, "params", dataclasses.replace(r.params, max_cancels=2)), 0.0),
    ("reject_rate", lambda r: setattr(r, "params", dataclasses.replace(r.params, min_orders=1)), 0.0),
    ("skew_alarm", lambda r: setattr(r, "params", dataclasses.replace(r.params, min_skew_bps=50.0)), 0.2),
]


@pytest.mark.parametrize(("kind", "change", "q"), _TIGHTER, ids=[f"{k}-{i}" for i, (k, _, _) in enumerate(_TIGHTER)])
def test_a_rule_whose_params_change_is_checked_on_its_new_params(kind, change, q):
    ref, twin = _pair({"reject_rate": {"min_orders": 50, "max_reject_ratio": 0.5}})
    t = T0
    for r in (ref, twin):
        r.on_market(t, t - 2 * MS)
        r.on_sent(t, 2, 2)  # 2 orders, 2 cancels, 4 messages in the windows
        r.on_reject(t)
    pnl = 0.0
    for step in range(4):  # quiet, with the windows and the plan filled
        t += 100 * MS
        pnl = 5.0 if step == 1 else 0.0  # a peak, then a loss of 5 in the window, a drawdown of 5
        for r in (ref, twin):
            r.on_market(t, t - 2 * MS)
        out = _same(ref, twin, t, *_healthy(q, skew=1e-3, pnl=pnl))
    assert kind not in _kinds(out)
    _both(ref, twin, lambda r: change(_rule(r, kind)))
    t += 100 * MS
    for r in (ref, twin):
        r.on_market(t, t - 2 * MS)
    out = _same(ref, twin, t, *_healthy(q, skew=1e-3, pnl=pnl))
    assert kind in _kinds(out)
    # and back: the old params object again
    engine, _ = build_risk_engine({"reject_rate": {"min_orders": 50, "max_reject_ratio": 0.5}}, MAX_INV)
    fresh = next(r for r in engine.rules if r.kind == kind)
    _both(ref, twin, lambda r: [setattr(_rule(r, kind), a, getattr(fresh, a)) for a in _slots(fresh)])
    t += 100 * MS
    for r in (ref, twin):
        r.on_market(t, t - 2 * MS)
    out = _same(ref, twin, t, *_healthy(q, skew=1e-3, pnl=pnl))
    assert kind not in _kinds(out)


def _slots(rule):
    return [a for cls in type(rule).__mro__ for a in getattr(cls, "__slots__", ())]


def test_replaced_rules_and_two_sessions_alternating_are_each_their_own():
    pairs = [_pair({"position_limit": {"max_position": bound}}) for bound in (1.0, 0.1)]
    t = T0
    for step in range(12):
        t += 100 * MS
        for i, (ref, twin) in enumerate(pairs):
            for r in (ref, twin):
                r.on_market(t, t - 2 * MS)
            out = _same(ref, twin, t, *_healthy(0.2))
            assert ("position_limit" in _kinds(out)) == (i == 1 or step >= 6)
        if step == 5:  # the first pair's rules replaced by tighter ones, as a live parameter change does
            engine, capital = build_risk_engine({"position_limit": {"max_position": 0.1}}, MAX_INV)
            for r in pairs[0]:
                r.replace_rules(engine, capital, MAX_INV)


def test_a_window_expiring_clears_the_rate_rules_as_in_the_reference():
    ref, twin = _pair({"message_rate": {"window_s": 1.0, "max_messages": 3}, "cancel_rate": {"max_cancels": 3}})
    t = T0
    for r in (ref, twin):
        r.on_market(t, t - 2 * MS)
        r.on_sent(t, 1, 3)
    seen = []
    for _ in range(120):  # 12 s: the message window (1 s) and the cancel window (10 s) expire in turn
        t += 100 * MS
        for r in (ref, twin):
            r.on_market(t, t - 2 * MS)
        out = _same(ref, twin, t, *_healthy(0.0))
        seen.append((frozenset(_kinds(out)), tuple(out[1])))
    assert seen[0][0] >= {"message_rate", "cancel_rate"}
    assert ("message_rate",) in [c for _, c in seen] and ("cancel_rate",) in [c for _, c in seen]
    assert not seen[-1][0]


def test_window_keys_equal_to_the_rules_windows_but_not_the_same_objects_take_the_reference():
    ref, twin = _pair({"window_loss": {"max_loss_quote": 3.0}, "message_rate": {"max_messages": 3}})
    for r in (ref, twin):
        r.losses = {float(repr(w)): x for w, x in r.losses.items()}  # equal keys, other objects
        r.flows = {float(repr(w)): x for w, x in r.flows.items()}
    t = T0
    kinds = set()
    for step in range(30):
        t += 100 * MS
        for r in (ref, twin):
            r.on_market(t, t - 2 * MS)
            if step % 10 == 3:
                r.on_sent(t, 2, 2)
        kinds |= _kinds(_same(ref, twin, t, *_healthy(0.0, pnl=10.0 if step == 2 else 0.0)))
    assert {"window_loss", "message_rate"} <= kinds


def test_a_decision_record_whose_layout_index_changes_in_place_is_read_again():
    names = ("best_bid", "best_ask", "skew_model_frac", "skew_frac")
    layout = InputLayout(names)  # not the interned one: changed below
    record = DecisionInputs(layout, array("d", [99.9, 100.1, 1e-3, 0.0]))
    other = DecisionInputs.from_mapping({"skew_frac": 0.0, "best_ask": 100.1, "best_bid": 99.9})
    ref, twin = _pair()
    t = T0
    core, _ = _healthy(0.0)
    outcomes = []
    for step in range(8):
        t += 100 * MS
        for r in (ref, twin):
            r.on_market(t, t - 2 * MS)
        if step == 4:  # bid and ask swap places: the book reads crossed
            layout.index["best_bid"], layout.index["best_ask"] = 1, 0
        outcomes.append(_kinds(_same(ref, twin, t, core, record if step % 2 == 0 else other)))
        outcomes.append(_kinds(_same(ref, twin, t, core, record)))
    assert "crossed_book" not in outcomes[0] and "crossed_book" in outcomes[-1]


def test_core_state_keys_equal_but_not_the_same_strings_are_looked_up():
    ref, twin = _pair()
    core, inputs = _healthy(0.3, skew=1e-5)  # a position the alarm is on for: the inventory is read
    odd = {"".join(k): v for k, v in core.items()}  # equal keys, built at run time: not the interned strings
    assert all(a is not b for a, b in zip(odd, core, strict=True))
    odd["pnl"] = -50.0
    t = T0
    for _ in range(3):
        t += 100 * MS
        for r in (ref, twin):
            r.on_market(t, t - 2 * MS)
        out = _same(ref, twin, t, odd, inputs)
    assert "position_limit" not in _kinds(out) and "skew_alarm" in _kinds(out)


# --- the driver's C-level calls ---------------------------------------------------------------------------------


def _loop(risk_config=None):
    core = StrategyCore(StrategyParams(), tick_size=0.1, lot_size=0.001)
    max_inv = core.params.max_inventory
    risk = session_module.SessionRisk(*build_risk_engine(dict(risk_config or {}), max_inv), max_inv)
    return EngineLoop(core, venue(0.1, 0.001), risk=risk), core, risk


def test_the_driver_calls_what_the_core_and_the_session_themselves_hold(monkeypatch):
    loop, core, risk = _loop()
    calls = []
    own_state = core.risk_state
    core.risk_state = lambda: calls.append("risk_state") or own_state()  # on the object: the driver calls it
    loop._evaluate_risk(T0)
    assert calls == ["risk_state"]
    evaluate = type(risk).evaluate
    monkeypatch.setattr(type(risk), "evaluate", lambda *a: calls.append("evaluate") or evaluate(*a))
    loop._evaluate_risk(T0 + 100 * MS)
    assert calls == ["risk_state", "risk_state", "evaluate"]


def test_the_driver_records_the_same_risk_events_with_and_without_its_c_level_calls():
    runs = []
    for direct in (True, False):
        loop, core, risk = _loop({"position_limit": {"max_position": 0.5}})
        if not direct:  # the reference's evaluation and risk_state through Python calls
            risk.evaluate = PySessionRisk.evaluate.__get__(risk)
            core.risk_state = type(core).risk_state.__get__(core)
        t = T0
        for step in range(20):
            t += 100 * MS
            if step == 5:
                risk.on_market(t, t - 2 * MS)  # the feed seen once: the stale rule clears, then trips again
            loop._evaluate_risk(t)
        runs.append(
            (
                [_trip(x) for x in loop.result.risk_events],
                list(loop.result.risk_cleared),
                dict(loop._modes),
                loop.gateway.mode,
            )
        )
    assert runs[0] == runs[1]
    assert runs[0][0] and runs[0][1]  # something started and something cleared


class _OwnLoss(RollingLoss):
    """A window of another class: its session's windows take the reference's own methods."""


def test_a_window_dict_changed_in_place_is_walked_again():
    ref, twin = _pair({"window_loss": {"max_loss_quote": 3.0}, "message_rate": {"max_messages": 3}})
    t = T0
    kinds = set()
    for step in range(40):
        t += 100 * MS
        for r in (ref, twin):
            r.on_market(t, t - 2 * MS)
            if step % 7 == 3:
                r.on_sent(t, 2, 2)
            if step == 10:  # a helper replaced in the same dict: an empty window
                w = next(iter(r.losses))
                r.losses[w] = RollingLoss(w)
            if step == 15:  # a window added, and one of another class
                r.losses[5.0] = RollingLoss(5.0)
            if step == 20:
                r.losses[7.0] = _OwnLoss(7.0)
            if step == 25:  # back to exact helpers only
                del r.losses[7.0]
            if step == 30:  # an order-flow window replaced by an empty one
                w = next(iter(r.flows))
                r.flows[w] = OrderFlowWindow(w)
        kinds |= _kinds(_same(ref, twin, t, *_healthy(0.0, pnl=10.0 if step in (2, 12, 22) else 0.0)))
    assert {"window_loss", "message_rate"} <= kinds


def test_an_attribute_set_on_the_object_after_some_evaluations_is_called():
    loop, core, risk = _loop()
    calls = []
    t = T0
    for _ in range(3):
        t += 100 * MS
        loop._evaluate_risk(t)
    own_state = core.risk_state
    core.risk_state = lambda: calls.append("risk_state") or own_state()
    risk.evaluate = lambda *a: calls.append("evaluate") or _session.evaluate(risk, *a)
    t += 100 * MS
    loop._evaluate_risk(t)
    assert calls == ["risk_state", "evaluate"]
    del core.risk_state, risk.evaluate
    t += 100 * MS
    loop._evaluate_risk(t)
    assert calls == ["risk_state", "evaluate"]
