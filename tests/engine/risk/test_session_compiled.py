"""The compiled risk evaluation (``apps/engine/risk/_session.pyx``) against its reference ``PySessionRisk.evaluate``.

Two sessions with the same rules get the same random sequence of inputs (market events, orders sent, rejects, margin
reports, measured clock offsets, evaluations with core states and decision records that trip every rule now and
then, at and around each bound, with unknown and oddly typed inputs); one evaluates through the reference, the other
through the compiled twin. Every evaluation must return the same started trips, cleared names and current trips
(rule, kind, action, time, values and message, floats compared by their bits) and leave the same session state.
"""

from __future__ import annotations

import importlib
import math
import random
import struct
from pathlib import Path

import pytest

from apps.engine import compiled
from apps.engine.market.inputs import DecisionInputs
from apps.engine.risk import session as session_module
from apps.engine.risk.rules import PositionLimitParams, PositionLimitRule, RiskEngine
from apps.engine.risk.session import PySessionRisk, build_risk_engine

ROOT = Path(__file__).resolve().parents[3]
MS = 1_000_000
S = 1_000_000_000

_session = importlib.import_module("apps.engine.risk._session")  # ImportError here: run `make build`


def test_the_compiled_evaluation_is_built_and_is_the_one_sessions_use():
    assert Path(_session.__file__).suffix == ".so"
    pyx = ROOT / "apps" / "engine" / "risk" / "_session.pyx"
    assert Path(_session.__file__).stat().st_mtime >= pyx.stat().st_mtime, "the built module is older than its .pyx"
    if compiled.pure_python():
        assert session_module.SessionRisk is PySessionRisk
    else:
        assert session_module.SESSION_COMPILED
        assert session_module.SessionRisk.evaluate is _session.evaluate


def _bits(v):
    if isinstance(v, float):
        return ("f", struct.pack("<d", v))
    if isinstance(v, dict):
        return {k: _bits(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return type(v)(_bits(x) for x in v)
    return (type(v).__name__, v)


def _trip(t):
    return (t.rule, t.kind, t.action, t.ts_ns, list(t.values), _bits(t.values), t.message, t.cause)


def _session_state(r):
    return _bits(
        (
            r._t,
            r.peak_equity,
            {w: (list(x._samples), list(x._max), x._seq) for w, x in r.losses.items()},
            {
                w: [(list(c._events), c._total, c._last_ns) for c in (f._sent, f._rejected, f._cancelled, f._messages)]
                for w, f in r.flows.items()
            },
            dict(r.edges._active),
            dict(r.feed_last_ns),
            r.clock_skew_ns,
            r.margin,
        )
    )


def _config(rng: random.Random) -> dict:
    pick = rng.choice
    risk: dict = {
        "capital_quote": pick([10_000.0, 1_000.0, 500.0]),
        "position_limit": {"max_position": pick([0.2, 1, 0.5])},  # an int bound too (JSON gives ints)
        "notional_limit": {"max_notional_quote": pick([50.0, 100.0, 20])},
        "drawdown": pick(
            [{}, {"max_drawdown_frac": 0.01}, {"max_drawdown_frac": math.inf, "max_drawdown_quote": 30.0}]
        ),
        "window_loss": {"window_s": pick([1.0, 5.0, 300.0]), "max_loss_quote": pick([10.0, 25, 500.0])},
        "stale_feed": {"max_age_s": pick([0.5, 2.0]), "feeds": pick([["market"], ["market"], [], ["market", "other"]])},
        "clock_skew": {"max_abs_skew_ms": pick([5.0, 50.0, 1000.0])},
        "estimator_state": pick(
            [{}, {"bad_states": ["failed"]}, {"estimators": ["kappa", "vol"]}, {"bad_states": ["warming", "stale"]}]
        ),
        "reject_rate": {"window_s": pick([1.0, 60.0]), "min_orders": pick([1, 3, 10]), "max_reject_ratio": 0.5},
        "cancel_rate": {"window_s": pick([1.0, 10.0]), "max_cancels": pick([2, 5, 250])},
        "message_rate": {"window_s": pick([1.0, 10.0]), "max_messages": pick([3, 8, 250])},
        "skew_alarm": {},
    }
    if rng.random() < 0.4:
        risk["margin"] = pick([{}, {"max_margin_use": 0.2}])
    return risk


def _value(rng: random.Random, typical: float, bound: float):
    """Around a bound, exactly at it, and now and then unknown or of another type."""
    u = rng.random()
    if u < 0.04:
        return None
    if u < 0.07:
        return math.nan
    if u < 0.09:
        return math.inf
    if u < 0.20:
        return bound
    if u < 0.25:
        return round(typical)
    if u < 0.28:
        return 0.0
    return typical * rng.uniform(0.5, 1.5)


def _scenario(seed: int, steps: int = 400):
    rng = random.Random(seed)
    config = _config(rng)
    max_inv = rng.choice([0.1, 0.5])
    ref = PySessionRisk(*build_risk_engine(config, max_inv), max_inv)
    twin = PySessionRisk(*build_risk_engine(config, max_inv), max_inv)
    t = 1_700_000_000_000_000_000
    pnl = 0.0
    quiet = tripped = 0
    kinds: set[str] = set()
    for _ in range(steps):
        t += rng.choice([0, 1, 50 * MS, 100 * MS, 100 * MS, 300 * MS, 3 * S]) - (5 * MS if rng.random() < 0.05 else 0)
        op = rng.random()
        calls = []
        if op < 0.60:
            skew = rng.choice([2 * MS] * 8 + [0, 5 * MS, 40 * MS, 2 * S])
            calls.append(("on_market", (t, 0 if skew == 0 else t - skew)))
        elif op < 0.72:
            calls.append(("on_sent", (t, rng.choice([0, 1, 2]), rng.choice([0, 1, 3]))))
        elif op < 0.77:
            calls.append(("on_reject", (t,)))
        elif op < 0.78:
            calls.append(("on_margin", (rng.choice([5.0, 20.0]), 0.004, rng.choice([100.0, 10_000.0]), 100.0)))
        elif op < 0.785:
            calls.append(("on_clock", (rng.choice([0, 3 * MS, -2 * S]),)))
        for name, args in calls:
            getattr(ref, name)(*args)
            getattr(twin, name)(*args)
        pnl += rng.choice([0.0, 0.5, -0.5, 1.0, -1.0]) if rng.random() < 0.97 else rng.choice([-20.0, 15.0])
        p = ref.engine.rules[0].params.max_position
        # a healthy state, then now and then one or two inputs at a bound, unknown or of another type
        core = {"pnl": pnl, "inventory": 0.3 * p * rng.uniform(-1, 1), "mid": 100.0 * rng.uniform(0.999, 1.001)}
        core |= {"kappa_state": "ok", "sigma_state": "ok"}
        inputs = {"best_bid": 99.9, "best_ask": 100.1, "skew_model_frac": 1e-3, "skew_frac": 0.0}
        for _ in range(rng.choice([0, 0, 1, 1, 2])):
            key = rng.choice([*core, *inputs, "drop", "int"])
            if key == "pnl":
                core[key] = rng.choice([None, float(int(pnl)), pnl - 30.0])
            elif key == "inventory":
                core[key] = _value(rng, 0.3 * p, rng.choice([p, -p, 0.1 * max_inv]))
            elif key == "mid":
                core[key] = _value(rng, 100.0, 100.0)
            elif key in ("kappa_state", "sigma_state"):
                core[key] = rng.choice(["warming", "stale", "failed", None, ""])
            elif key == "best_bid":
                inputs[key] = rng.choice([math.nan, 0.0, 100.1, 100.2, -1.0])
            elif key == "best_ask":
                inputs[key] = rng.choice([math.inf, 99.9, 100.1, 0.0])
            elif key in ("skew_model_frac", "skew_frac"):
                inputs[key] = rng.choice([0.0, 1e-5, 1e-4, math.nan, -2e-4])
            elif key == "drop":
                inputs = {k: v for k, v in inputs.items() if rng.random() < 0.6}
                core = {k: v for k, v in core.items() if rng.random() < 0.8}
            else:
                inputs["best_bid"] = 100  # an int in a plain dict
        record = DecisionInputs.from_mapping(inputs) if rng.random() < 0.6 else inputs
        now = t + rng.choice([0, 0, 30 * MS])
        a = ref.evaluate(now, dict(core), record)
        b = _session.evaluate(twin, now, dict(core), record)
        assert [_trip(x) for x in b[0]] == [_trip(x) for x in a[0]]
        assert b[1] == a[1]
        assert [_trip(x) for x in b[2]] == [_trip(x) for x in a[2]]
        assert _session_state(twin) == _session_state(ref)
        if a[2]:
            tripped += 1
            kinds.update(x.kind for x in a[2])
        else:
            quiet += 1
    return quiet, tripped, kinds


def test_the_compiled_evaluation_equals_the_reference_bit_for_bit():
    quiet = tripped = 0
    kinds: set[str] = set()
    for seed in range(40):
        q, tr, k = _scenario(seed)
        quiet, tripped, kinds = quiet + q, tripped + tr, kinds | k
    # both paths ran often, and every kind of rule tripped somewhere
    assert quiet > 1000 and tripped > 1000, (quiet, tripped)
    assert kinds == {
        "position_limit",
        "notional_limit",
        "drawdown",
        "window_loss",
        "stale_feed",
        "crossed_book",
        "clock_skew",
        "estimator_state",
        "reject_rate",
        "cancel_rate",
        "message_rate",
        "margin",
        "skew_alarm",
    }, kinds


class _Tighter(PositionLimitRule):
    """A rule of a type the compiled checks do not know: the reference decides."""

    kind = "tighter"

    def evaluate(self, state):
        return self._trip(state, {"position": state.position}, "always") if state.position else None


def test_a_rule_of_an_unknown_type_is_left_to_the_reference():
    ref = PySessionRisk(RiskEngine([_Tighter(PositionLimitParams(), "t")]), 1000.0, 1.0)
    twin = PySessionRisk(RiskEngine([_Tighter(PositionLimitParams(), "t")]), 1000.0, 1.0)
    core = {"pnl": 0.0, "inventory": 0.01, "mid": 100.0, "kappa_state": "ok", "sigma_state": "ok"}
    a = ref.evaluate(10, core, {})
    b = _session.evaluate(twin, 10, core, {})
    assert [_trip(x) for x in a[0]] == [_trip(x) for x in b[0]] and len(b[0]) == 1


@pytest.mark.skipif(compiled.pure_python(), reason="MM_PURE_PYTHON selects the reference on purpose")
def test_a_session_evaluates_through_the_compiled_twin():
    risk = session_module.SessionRisk(*build_risk_engine({}, 1.0), max_inventory=1.0)
    risk.on_market(10, 9)
    started, cleared, trips = risk.evaluate(10, {"pnl": 0.0, "inventory": 2.0, "mid": 100.0}, {})
    assert {x.kind for x in trips} >= {"position_limit", "crossed_book"} and cleared == []
    assert started == trips
