"""The compiled strategy core's per-event path and its pure-Python reference agree exactly, on every shared recording.

``apps/engine/_core.pyx`` (``StrategyCore``) against ``PyStrategyCore`` (:mod:`apps.engine.core`), everything else
the same: each in its own backtest (the engine fingerprint's venue, 5 ms each way), the two driven in lockstep
through every market event of the three Binance recordings with GLFT at its defaults and with the fill cost by
depth off. After **every** event: the actions the core returned (by ``repr``, exact for floats), whether the
decision changed, the decision key (touch, position, estimates' version, halt), the decision count and time, the
estimators' clock, counters and version, the position and cash. Every 64 events and at the end, the last decision
by ``repr``. At the end, the fingerprint tool's digests of every decision and fill.
"""

from __future__ import annotations

import pytest

from apps.engine.core import CORE_COMPILED, PyStrategyCore, StrategyCore, StrategyParams
from apps.engine.execution.paper import PaperVenue
from apps.engine.simulation.backtest import MARKET_TYPES, EngineLoop
from tests.engine.execution.test_fillmodel_equivalence import EVENTS, recording  # noqa: F401 - the fixture
from tools.engine_fingerprint import digest, venue

pytestmark = pytest.mark.skipif(not CORE_COMPILED, reason="the compiled strategy core is not selected")


class _Recorder:
    """Wraps a core's ``on_event`` to keep what it returned for the comparison."""

    def __init__(self, core) -> None:
        self.core = core
        self.returned: list[str] = []

    def __getattr__(self, name):
        return getattr(self.core, name)

    def on_event(self, event):
        actions = self.core.on_event(event)
        self.returned.append(repr(actions))
        return actions


def _state(core) -> tuple:
    m, t = core.market, core.tracker
    return (
        core._now_ns,
        core.decisions_changed,
        core._decision_key,
        core._decision_ns,
        core.decisions_computed,
        core.fills,
        core.halted,
        m.now_ns,
        m.events_seen,
        m.non_market_trades,
        m.version,
        repr(t.position),
        repr(t.cash),
    )


@pytest.mark.parametrize("params", [{}, {"fill_cost_by_depth": False}], ids=["defaults", "no-depth-cost"])
def test_the_strategy_core_is_identical_compiled_and_in_python(recording, params):  # noqa: F811
    name, events, tick, lot = recording
    p = StrategyParams.from_dict(params)
    ref_core, com_core = PyStrategyCore(p, tick_size=tick, lot_size=lot), StrategyCore(p, tick_size=tick, lot_size=lot)
    assert type(com_core).on_event is not PyStrategyCore.on_event
    ref_rec, com_rec = _Recorder(ref_core), _Recorder(com_core)
    cfg = venue(tick, lot).config
    ref = EngineLoop(ref_rec, PaperVenue(cfg, seed=1), name="ref")
    com = EngineLoop(com_rec, PaperVenue(cfg, seed=1), name="com")
    n = 0
    for ev in events:
        if not isinstance(ev, MARKET_TYPES):
            continue
        ref.on_market(ev)
        com.on_market(ev)
        n += 1
        assert com_rec.returned == ref_rec.returned, f"{name}: actions after event {n} ({type(ev).__name__})"
        assert _state(com_core) == _state(ref_core), f"{name}: core state after event {n} ({type(ev).__name__})"
        com_rec.returned.clear()
        ref_rec.returned.clear()
        if n % 64 == 0:
            assert repr(com_core.last_decision) == repr(ref_core.last_decision), f"{name}: decision at {n}"
    got, want = com.finish(), ref.finish()
    assert n == EVENTS[name]
    assert repr(com_core.last_decision) == repr(ref_core.last_decision)
    assert digest(got.decisions) == digest(want.decisions) and digest(got.fills) == digest(want.fills)
    assert len(got.fills) > 0 and com_core.decisions_computed > 100, f"{name}: the decision path was not compared"
