"""The compiled driver calls the compiled core's and venue's per-event entry points at C level (``_backtest.pyx``:
``c_on_event``, ``c_refresh``, ``c_on_market``, ``c_next_event_ns``) only when those are the methods a Python call
would run. A subclass or an instance that overrides one of them must be called through it, as the reference driver
calls it; and the run must be the same either way.
"""

from __future__ import annotations

import pytest

from apps.engine.core import CORE_COMPILED, StrategyCore, StrategyParams
from apps.engine.execution.paper import PAPER_COMPILED, PaperVenue, PaperVenueConfig
from apps.engine.simulation.backtest import DRIVER_COMPILED, EngineLoop
from apps.engine.simulation.simulator import MarketSimulator, SimulatorParams

pytestmark = pytest.mark.skipif(
    not (CORE_COMPILED and PAPER_COMPILED and DRIVER_COMPILED), reason="the compiled core, venue and driver"
)

SP = SimulatorParams()
FAST = {"sigma_bucket_s": 0.25, "sigma_min_buckets": 8, "kappa_min_volume": 0.05}


def _events(seconds: float = 40.0) -> list:
    return list(MarketSimulator(SP, seed=4).events(until_ns=SP.start_ts_ns + int(seconds * 1e9)))


def _core(cls=StrategyCore):
    return cls(StrategyParams.from_dict(FAST), tick_size=SP.tick_size, lot_size=SP.lot_size)


def _venue(cls=PaperVenue):
    cfg = PaperVenueConfig(
        tick_size=SP.tick_size,
        lot_size=SP.lot_size,
        maker_fee=-0.0001,
        taker_fee=0.0004,
        entry_latency_ns=2_000_000,
        response_latency_ns=3_000_000,
    )
    return cls(cfg, seed=1)


def _digest(result) -> tuple:
    s = result.stats
    summary = {k: v for k, v in result.summary(timing=False).items() if k != "strategy"}  # names the class
    return (s.market_events, s.order_events, s.actions, s.decisions, len(result.fills), summary)


def test_overrides_in_a_subclass_are_called_and_the_run_is_unchanged():
    calls = {"on_event": 0, "refresh": 0, "on_market": 0, "next_event_ns": 0}

    class CountingCore(StrategyCore):
        def on_event(self, event):
            calls["on_event"] += 1
            return super().on_event(event)

        def refresh(self):
            calls["refresh"] += 1
            return super().refresh()

    class CountingVenue(PaperVenue):
        def on_market(self, event):
            calls["on_market"] += 1
            return super().on_market(event)

        def next_event_ns(self):
            calls["next_event_ns"] += 1
            return super().next_event_ns()

    events = _events()
    plain = EngineLoop(_core(), _venue()).run(events)
    counted = EngineLoop(_core(CountingCore), _venue(CountingVenue)).run(events)
    n = plain.stats.market_events
    assert n > 1_000
    assert calls["on_market"] == n and calls["refresh"] == n
    assert calls["on_event"] == n + plain.stats.order_events  # market events, then our order events
    assert calls["next_event_ns"] >= n
    assert _digest(counted) == _digest(plain)


def test_overrides_on_the_instance_are_called():
    core, venue = _core(), _venue()
    seen = {"core": 0, "venue": 0}
    on_event, on_market = core.on_event, venue.on_market

    def core_on_event(event):
        seen["core"] += 1
        return on_event(event)

    def venue_on_market(event):
        seen["venue"] += 1
        return on_market(event)

    core.on_event = core_on_event
    venue.on_market = venue_on_market
    result = EngineLoop(core, venue).run(_events(10.0))
    assert seen["venue"] == result.stats.market_events > 100
    assert seen["core"] >= result.stats.market_events


def test_without_the_step_the_core_calls_the_estimators_by_name_with_the_same_run():
    """``MarketEstimators.c_step`` None: the core calls ``_on_bbo``/``_on_trade`` by name (here rebound to counting
    wrappers of the step's own), and the run is the one the C-level calls give."""
    events = _events()
    plain = EngineLoop(_core(), _venue()).run(events)
    core = _core()
    m = core.market
    step = m.c_step
    assert step is not None
    seen = {"bbo": 0, "trade": 0}

    def on_bbo(b):
        seen["bbo"] += 1
        step.on_bbo(b)

    def on_trade(t):
        seen["trade"] += 1
        step.on_trade(t)

    m._on_bbo, m._on_trade, m.c_step = on_bbo, on_trade, None
    named = EngineLoop(core, _venue()).run(events)
    assert seen["bbo"] > 100 and seen["trade"] > 100
    assert _digest(named) == _digest(plain)
