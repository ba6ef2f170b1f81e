"""The kill switch: transitions, latching, re-arm rules, the order gate in every state, global + session."""

from __future__ import annotations

import json
import math
import time

import pytest

from apps.engine.market.events import Side
from apps.engine.risk.killswitch import (
    Actor,
    ActorKind,
    CombinedSwitch,
    KillSwitch,
    RearmRefusedError,
    SwitchState,
    Transition,
    gate,
)
from apps.engine.risk.rules import PositionLimitParams, PositionLimitRule, RiskState

OP = Actor.operator("alice")
DEADMAN = Actor.system("deadman")
RULE = Actor.rule("drawdown")
T0 = 1_700_000_000_000_000_000

ARMED, REDUCING, HALTED = SwitchState.ARMED, SwitchState.REDUCING, SwitchState.HALTED


def switch_in(state: SwitchState, scope: str = "session:1") -> KillSwitch:
    ks = KillSwitch(scope)
    if state is REDUCING:
        ks.reduce(RULE, "position limit", T0)
    elif state is HALTED:
        ks.halt(RULE, "drawdown 5%", T0)
    assert ks.state is state
    return ks


# --- transitions ----------------------------------------------------------------------------------------


def test_a_new_switch_is_armed_and_allows_orders():
    ks = KillSwitch("global")
    assert ks.state is ARMED and ks.last_transition is None and ks.reason == ""
    assert ks.check_order(Side.BUY, 1.0, 0.0) is None


def test_it_goes_armed_to_reducing_to_halted_recording_actor_and_reason():
    ks = KillSwitch("session:7")
    t1 = ks.reduce(RULE, "position limit reached", T0)
    assert t1 == Transition("session:7", T0, ARMED, REDUCING, RULE, "position limit reached")
    t2 = ks.halt(DEADMAN, "lease expired", T0 + 5)
    assert (t2.from_state, t2.to_state, t2.actor, t2.reason) == (REDUCING, HALTED, DEADMAN, "lease expired")
    assert ks.state is HALTED and ks.since_ns == T0 + 5 and ks.last_transition is t2


@pytest.mark.parametrize("actor", [OP, DEADMAN, RULE])
def test_any_actor_can_halt_directly_from_armed(actor):
    ks = KillSwitch()
    t = ks.halt(actor, "stop", T0)
    assert t is not None and t.from_state is ARMED and t.to_state is HALTED and ks.state is HALTED


def test_halt_and_reduce_are_idempotent_and_never_loosen():
    ks = switch_in(HALTED)
    before = ks.last_transition
    assert ks.halt(OP, "again", T0 + 1) is None
    assert ks.reduce(RULE, "position", T0 + 2) is None
    assert ks.state is HALTED and ks.last_transition is before
    red = switch_in(REDUCING)
    assert red.reduce(RULE, "again", T0 + 1) is None and red.state is REDUCING


def test_halting_is_never_refused_for_want_of_a_reason():
    ks = KillSwitch()
    t = ks.halt(OP, "   ", T0)
    assert ks.state is HALTED and t.reason == "(no reason given)"


# --- latching and re-arm -----------------------------------------------------------------------------------


@pytest.mark.parametrize("state", [REDUCING, HALTED])
def test_reducing_and_halted_latch_against_rules_and_system_jobs(state):
    ks = switch_in(state)
    for actor in (RULE, DEADMAN):
        with pytest.raises(RearmRefusedError, match="only an operator"):
            ks.rearm(actor, "looks fine now", T0 + 1)
    assert ks.state is state


@pytest.mark.parametrize("reason", ["", "   ", None])
def test_rearm_needs_a_reason(reason):
    ks = switch_in(HALTED)
    with pytest.raises(RearmRefusedError, match="reason"):
        ks.rearm(OP, reason, T0 + 1)
    assert ks.state is HALTED


def test_an_operator_with_a_reason_rearms_and_the_transition_is_recorded():
    ks = switch_in(HALTED)
    t = ks.rearm(OP, "  feed fixed, position checked  ", T0 + 9)
    assert t == Transition("session:1", T0 + 9, HALTED, ARMED, OP, "feed fixed, position checked")
    assert ks.state is ARMED and ks.check_order(Side.BUY, 1.0, 0.0) is None


def test_an_operator_can_step_down_from_halted_to_reducing_to_flatten():
    ks = switch_in(HALTED)
    t = ks.rearm(OP, "flatten the position", T0 + 1, to_state=REDUCING)
    assert t.to_state is REDUCING and ks.check_order(Side.SELL, 0.5, 0.5) is None


def test_rearm_only_loosens():
    red = switch_in(REDUCING)
    with pytest.raises(ValueError, match="only loosens"):
        red.rearm(OP, "why not", T0, to_state=HALTED)
    armed = KillSwitch()
    with pytest.raises(ValueError, match="only loosens"):
        armed.rearm(OP, "tighten", T0, to_state=REDUCING)
    assert armed.rearm(OP, "already armed", T0) is None


def test_a_rule_trip_can_halt_or_reduce_but_warn_and_pull_quotes_leave_the_switch_alone():
    ks = KillSwitch()
    assert ks.on_rule_trip("skew_alarm", "warn", "skew small", T0) is None
    assert ks.on_rule_trip("stale_feed", "pull_quotes", "bbo stale", T0) is None
    assert ks.state is ARMED
    t = ks.on_rule_trip("position_limit", "reduce", "|q| at limit", T0)
    assert t.actor == Actor(ActorKind.RULE, "position_limit") and ks.state is REDUCING
    ks.on_rule_trip("drawdown", "halt", "dd 5%", T0 + 1)
    assert ks.state is HALTED
    # and a trip that clears does nothing: only an operator re-arms
    assert ks.on_rule_trip("drawdown", "warn", "cleared", T0 + 2) is None and ks.state is HALTED


def test_a_risk_rule_trip_feeds_the_switch_end_to_end():
    rule = PositionLimitRule(PositionLimitParams(max_position=1.0))
    trip = rule.evaluate(RiskState(ts_ns=T0, position=-1.0))
    ks = KillSwitch("session:3")
    ks.on_rule_trip(trip.rule, trip.action, trip.message, trip.ts_ns)
    assert ks.state is REDUCING
    assert ks.check_order(Side.SELL, 0.1, -1.0) is not None  # adds to the short
    assert ks.check_order(Side.BUY, 0.4, -1.0) is None


def test_actor_validation():
    with pytest.raises(ValueError, match="kind"):
        Actor("robot", "x")
    with pytest.raises(ValueError, match="name"):
        Actor.operator("")
    assert Actor("operator", "bob").kind is ActorKind.OPERATOR


# --- the gate -------------------------------------------------------------------------------------------


ORDERS = [(side, size, pos) for side in (Side.BUY, Side.SELL) for size in (0.1, 1.0, 5.0) for pos in (-2.0, 0.0, 2.0)]


@pytest.mark.parametrize(("side", "size", "pos"), ORDERS)
def test_halted_blocks_every_order_and_armed_allows_every_valid_one(side, size, pos):
    assert "halted" in switch_in(HALTED).check_order(side, size, pos)
    assert switch_in(ARMED).check_order(side, size, pos) is None


@pytest.mark.parametrize(
    ("side", "size", "pos", "allowed"),
    [
        (Side.SELL, 1.0, 2.0, True),  # reduces a long
        (Side.SELL, 2.0, 2.0, True),  # closes it exactly
        (Side.SELL, 2.0 + 1e-6, 2.0, False),  # would flip it short
        (Side.BUY, 0.1, 2.0, False),  # adds to a long
        (Side.BUY, 1.5, -1.5, True),  # closes a short
        (Side.BUY, 1.6, -1.5, False),  # flips a short
        (Side.SELL, 0.1, -1.5, False),  # adds to a short
        (Side.BUY, 0.1, 0.0, False),  # flat: nothing reduces
        (Side.SELL, 0.1, 0.0, False),
        (Side.BUY, 0.1, math.nan, False),  # unknown position: refuse
    ],
)
def test_reducing_allows_only_orders_that_reduce_abs_position_without_flipping(side, size, pos, allowed):
    why = switch_in(REDUCING).check_order(side, size, pos)
    assert (why is None) == allowed, why
    if not allowed:
        assert why.startswith("kill switch session:1 reducing by rule:drawdown") or "reduce-only" in why


def test_reducing_tolerates_float_noise_when_closing_a_position_built_from_fills():
    pos = 0.1 + 0.2  # 0.30000000000000004
    ks = switch_in(REDUCING)
    assert ks.check_order(Side.SELL, 0.3, pos) is None
    assert ks.check_order(Side.BUY, 0.30000000000000004, -0.3) is None


@pytest.mark.parametrize(("side", "size"), [(0, 1.0), (2, 1.0), ("buy", 1.0), (1, 0.0), (1, -1.0), (1, math.nan)])
@pytest.mark.parametrize("state", [ARMED, REDUCING])
def test_the_gate_refuses_malformed_orders_instead_of_raising(state, side, size):
    assert gate(state, side, size, 1.0) is not None
    assert gate(state, 1, "1", 1.0) is not None


def test_the_block_reason_names_scope_actor_and_reason():
    ks = KillSwitch("session:42")
    ks.halt(OP, "manual stop before maintenance", T0)
    why = ks.check_order(Side.BUY, 1.0, 0.0)
    assert "session:42" in why and "operator:alice" in why and "manual stop before maintenance" in why


@pytest.mark.parametrize(
    ("state", "pos", "sides"),
    [(ARMED, 0.0, (1, -1)), (REDUCING, 2.0, (-1,)), (REDUCING, -2.0, (1,)), (REDUCING, 0.0, ()), (HALTED, 2.0, ())],
)
def test_allowed_sides_tell_the_quoter_what_it_may_quote(state, pos, sides):
    assert switch_in(state).allowed_sides(pos) == sides


def test_the_gate_is_cheap():
    ks = switch_in(REDUCING)
    n = 50_000
    t = time.perf_counter()
    for _ in range(n):
        ks.check_order(Side.SELL, 0.5, 1.0)
    per_call_ns = (time.perf_counter() - t) / n * 1e9
    print(f"KillSwitch.check_order (REDUCING, allowed): {per_call_ns:.0f} ns/call")
    assert per_call_ns < 20_000  # measured well under 1 us; generous for a loaded box


# --- global + session -------------------------------------------------------------------------------------


@pytest.mark.parametrize("g", list(SwitchState))
@pytest.mark.parametrize("s", list(SwitchState))
def test_the_most_restrictive_of_global_and_session_wins(g, s):
    combined = CombinedSwitch(switch_in(g, "global"), switch_in(s, "session:1"))
    sev = {ARMED: 0, REDUCING: 1, HALTED: 2}
    expected = max(g, s, key=sev.__getitem__)
    assert combined.state is expected
    for side, size, pos in ORDERS:
        assert (combined.check_order(side, size, pos) is None) == (gate(expected, side, size, pos) is None)
    why = combined.check_order(Side.BUY, 1.0, 2.0)  # increases a long: blocked unless both are ARMED
    if expected is ARMED:
        assert why is None
    else:
        strictest = "global" if sev[g] >= sev[s] else "session:1"
        assert why.startswith(f"kill switch {strictest} {expected.value}")


def test_halting_the_global_switch_blocks_an_armed_session_until_the_global_is_rearmed():
    glob, sess = KillSwitch("global"), KillSwitch("session:1")
    combined = CombinedSwitch(glob, sess)
    glob.halt(OP, "exchange incident", T0)
    assert combined.check_order(Side.SELL, 0.1, 1.0) is not None
    assert combined.allowed_sides(1.0) == ()
    sess.rearm(OP, "session itself is fine", T0 + 1)  # no-op: the session was never halted
    assert combined.state is HALTED
    glob.rearm(OP, "incident over", T0 + 2)
    assert combined.check_order(Side.BUY, 0.1, 1.0) is None


# --- persistence ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("state", list(SwitchState))
def test_it_round_trips_through_a_json_dict_and_keeps_the_latch(state):
    ks = switch_in(state)
    data = json.loads(json.dumps(ks.to_dict()))
    back = KillSwitch.from_dict(data)
    assert back.state is ks.state and back.scope == ks.scope and back.since_ns == ks.since_ns
    assert back.last_transition == ks.last_transition
    assert back.check_order(Side.BUY, 1.0, 2.0) == ks.check_order(Side.BUY, 1.0, 2.0)
    if state is not ARMED:
        with pytest.raises(RearmRefusedError):
            back.rearm(RULE, "restart", T0 + 1)


@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        (lambda d: d.update(state="disarmed"), "state"),
        (lambda d: d.update(version=2), "version"),
        (lambda d: d.update(state="armed"), "disagrees"),
        (lambda d: d.update(since_ns="yesterday"), "since_ns"),
        (lambda d: d["last_transition"].update(to_state="paused"), "to_state"),
    ],
)
def test_from_dict_refuses_malformed_data(mutate, match):
    data = switch_in(HALTED).to_dict()
    mutate(data)
    with pytest.raises(ValueError, match=match):
        KillSwitch.from_dict(data)
