"""The compiled ``on_sent`` (apps/engine/risk/_session.pyx) against the reference ``PySessionRisk.on_sent``.

Two sessions built alike take the same batches of sent orders, one through the reference and one through
``_session.on_sent``; after every call (or the same error) their clocks and every counter of every order flow window
(events, running total, last time) must be equal, value and type. The fallbacks (a spy on the session, a counter
subclass, a patched ``add``, flows that are not a dict) must run the reference's code.
"""

from __future__ import annotations

import importlib
import random
from collections import OrderedDict

import pytest

from apps.engine import compiled
from apps.engine.risk import rules as rules_module
from apps.engine.risk import session as session_module
from apps.engine.risk.rules import OrderFlowWindow, RollingCounter
from apps.engine.risk.session import PySessionRisk, build_risk_engine

_session = importlib.import_module("apps.engine.risk._session")  # ImportError here: run `make build`

MS = 1_000_000
S = 1_000_000_000


def _pair():
    engine, capital = build_risk_engine({}, 1.0)
    ref = PySessionRisk(engine, capital, 1.0)
    engine, capital = build_risk_engine({}, 1.0)
    twin = PySessionRisk(engine, capital, 1.0)
    assert ref.flows, "the default rules keep order flow windows"
    return ref, twin


def _state(risk):
    out = [("t", type(risk._t), risk._t)]
    for w, f in risk.flows.items():
        for name in ("_sent", "_rejected", "_cancelled", "_messages"):
            c = getattr(f, name)
            out.append((w, name, [list(e) for e in c._events], [tuple(map(type, e)) for e in c._events]))
            out.append((w, name, c._total, type(c._total), c._last_ns, type(c._last_ns)))
    return out


def _both(ref, twin, *args):
    err_ref = err_twin = None
    try:
        PySessionRisk.on_sent(ref, *args)
    except Exception as e:  # noqa: BLE001 - the same error is the check
        err_ref = (type(e), str(e))
    try:
        _session.on_sent(twin, *args)
    except Exception as e:  # noqa: BLE001
        err_twin = (type(e), str(e))
    assert err_ref == err_twin
    assert _state(ref) == _state(twin)
    return err_ref


def test_the_compiled_on_sent_is_the_one_sessions_use():
    if compiled.pure_python():
        assert session_module.SessionRisk is PySessionRisk
    else:
        assert session_module.SessionRisk.on_sent is _session.on_sent


@pytest.mark.parametrize("seed", range(6))
def test_on_sent_matches_the_reference_over_random_batches(seed):
    rng = random.Random(seed)
    ref, twin = _pair()
    t = 1_700_000_000_000_000_000
    errors = 0
    for _ in range(600):
        # equal stamps merge into one entry, steps past a window expire entries, and a step back is the session
        # clock's business (max) but a counter's error only when its own last time is later
        t += rng.choice([0, 0, 1, 10 * MS, 100 * MS, 900 * MS, 3 * S, 11 * S, 70 * S]) - (
            7 * MS if rng.random() < 0.05 else 0
        )
        n_place = rng.choice([0, 0, 1, 1, 2, 3])
        n_cancel = rng.choice([0, 0, 1, 2])
        if rng.random() < 0.03:
            n_place = rng.choice([True, -1, 1.0])  # the reference's ValueError (or a float's), the same in both
        if _both(ref, twin, t, n_place, n_cancel) is not None:
            errors += 1
    assert errors > 0


def test_on_sent_with_the_session_clock_ahead_and_odd_stamps():
    ref, twin = _pair()
    for args in [(5 * S, 1, 0), (4 * S, 1, 1), (5 * S, 0, 2), (5.5e9, 1, 0), (6 * S, 0, 0), (2**70, 1, 1)]:
        _both(ref, twin, *args)
    ref._t = twin._t = 2**80  # the clock far ahead: every add is at the session's time
    _both(ref, twin, 7 * S, 2, 1)


def test_a_counter_going_backwards_raises_the_same_after_the_same_updates():
    ref, twin = _pair()
    _both(ref, twin, 10 * S, 1, 1)
    for f in (*ref.flows.values(), *twin.flows.values()):
        f._cancelled._last_ns = 20 * S  # only this counter is ahead: sent is added first, then this one raises
    assert _both(ref, twin, 11 * S, 1, 1)[0] is ValueError


def test_a_spy_on_the_session_runs_the_reference(monkeypatch):
    ref, twin = _pair()
    seen = []
    twin._now = lambda ts: seen.append(ts) or PySessionRisk._now(twin, ts)
    ref._now = lambda ts: PySessionRisk._now(ref, ts)
    _both(ref, twin, 3 * S, 1, 0)
    assert seen == [3 * S]


def test_a_patched_add_and_a_counter_subclass_run_the_reference(monkeypatch):
    ref, twin = _pair()
    calls = []
    original = RollingCounter.add

    def spy(self, ts, n=1):
        calls.append((ts, n))
        original(self, ts, n)

    monkeypatch.setattr(rules_module.RollingCounter, "add", spy)
    _both(ref, twin, 3 * S, 1, 1)
    assert len(calls) == 2 * 3 * len(ref.flows)  # three counters a window, in both sessions
    monkeypatch.undo()

    class Counter(RollingCounter):
        __slots__ = ()

        def add(self, ts, n=1):
            calls.append(("sub", ts, n))
            super().add(ts, n)

    calls.clear()
    for risk in (ref, twin):
        f = next(iter(risk.flows.values()))
        sub = Counter(f._messages.window_ns)
        sub._events, sub._total, sub._last_ns = f._messages._events, f._messages._total, f._messages._last_ns
        f._messages = sub
    _both(ref, twin, 4 * S, 2, 0)
    assert calls == [("sub", 4 * S, 2)] * 2


def test_flows_that_are_not_a_plain_dict_or_window_run_the_reference():
    ref, twin = _pair()
    ref.flows = OrderedDict(ref.flows)
    twin.flows = OrderedDict(twin.flows)
    _both(ref, twin, 3 * S, 1, 1)

    class Window(OrderFlowWindow):
        __slots__ = ()

    ref2, twin2 = _pair()
    for risk in (ref2, twin2):
        w = next(iter(risk.flows))
        risk.flows[w] = Window(risk.flows[w].window_s)
    _both(ref2, twin2, 3 * S, 1, 1)
    ref2.flows = twin2.flows = {}
    _both(ref2, twin2, 4 * S, 1, 1)
