"""The compiled driver's risk-grid clock (``_next_risk_ns`` as a C value beside the object, twentieth stop).

``apps/engine/simulation/_backtest.pyx`` compares every event's time with the next risk-grid point in C when both are
int64 (``_Clock``), and in Python otherwise (None: the grid not placed yet; a float; an int past int64). Here the
compiled ``EngineLoop`` and the reference ``PyEngineLoop`` (the session's risk rules on both) take the same events from
the USD-M recording after the same value was written to ``_next_risk_ns``: the grid's next point (its object and type),
the session's clock and what the rules recorded must be the same after every event.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from apps.engine.execution.paper import PAPER_COMPILED, PaperVenue, PyPaperVenue
from apps.engine.simulation.backtest import DRIVER_COMPILED, MARKET_TYPES, EngineLoop, PyEngineLoop
from tests.engine.simulation.test_loop_equivalence import _risk_state, _session_risk, _state
from tests.engine.test_core_reads import usdm  # noqa: F401 - the fixture: the USD-M recording's first 26,000 events
from tools.engine_fingerprint import strategies, venue

pytestmark = pytest.mark.skipif(
    not (PAPER_COMPILED and DRIVER_COMPILED), reason="the compiled venue/driver is not selected (MM_PURE_PYTHON?)"
)

_N = 4_000


def _loops(tick, lot):
    cfg = replace(venue(tick, lot).config, partial_fills=True)
    q_max = strategies(tick, lot)["glft"].params.max_inventory
    ref = PyEngineLoop(strategies(tick, lot)["glft"], PyPaperVenue(cfg, seed=1), name="glft", risk=_session_risk(q_max))
    com = EngineLoop(strategies(tick, lot)["glft"], PaperVenue(cfg, seed=1), name="glft", risk=_session_risk(q_max))
    return ref, com


def _next_points(first_ns: int) -> dict:
    return {
        "unset": None,
        "an int behind the first event": first_ns - 350_000_000,
        "an int ahead": first_ns + 2_345_678_901,
        "a float ahead": float(first_ns + 1_000_000_000),
        "an int past int64": 2**63 + 7,
    }


@pytest.mark.parametrize("kind", list(_next_points(0)))
def test_the_risk_grid_clock_is_the_references_whatever_its_value(usdm, kind):  # noqa: F811
    events, tick, lot = usdm
    stream = [e for e in events[:_N] if isinstance(e, MARKET_TYPES)]
    ref, com = _loops(tick, lot)
    value = _next_points(stream[0].ts_local_ns)[kind]
    for loop in (ref, com):
        loop._next_risk_ns = value
    assert com._next_risk_ns is value
    for i, ev in enumerate(stream):
        ref.on_market(ev)
        com.on_market(ev)
        got, want = com._next_risk_ns, ref._next_risk_ns
        assert type(got) is type(want) and got == want, f"{kind}: event {i}: the grid's next point differs"
        assert com.risk._t == ref.risk._t, f"{kind}: event {i}: the session clock differs"
        assert _state(com) == _state(ref), f"{kind}: event {i}"
        assert _risk_state(com) == _risk_state(ref), f"{kind}: event {i}: the risk rules' inputs differ"
    if kind == "unset":
        assert com._next_risk_ns is not None  # the grid was placed and ran
