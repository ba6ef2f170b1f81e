"""The compiled driver calls the compiled core's and venue's per-event entry points at C level (``_backtest.pyx``:
``c_on_event``, ``c_refresh``, ``c_on_market``, ``c_next_event_ns``) only when those are the methods a Python call
would run. A subclass or an instance that overrides one of them must be called through it, as the reference driver
calls it; and the run must be the same either way.
"""

from __future__ import annotations

import pytest

from apps.engine.core import CORE_COMPILED, StrategyCore, StrategyParams
from apps.engine.execution.paper import PAPER_COMPILED, PaperVenue, PaperVenueConfig
from apps.engine.simulation.backtest import DRIVER_COMPILED, MARKET_TYPES, EngineLoop, PyEngineLoop
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


# --- the driver's clocks as C values and run()'s market-event count (_backtest.pyx) -------------------------------


def _reference(events, **kw):
    return PyEngineLoop(_core(), _venue(), **kw).run(events)


def test_the_clock_attributes_read_back_what_was_stored():
    loop = EngineLoop(_core(), _venue())
    assert loop._now_ns == 0 and loop._next_sample_ns is None  # as the reference's __init__ sets them
    never = 1 << 63
    for value in (0, 5, -(1 << 70), 1 << 62, (1 << 63) - 1, never, 1 << 90, None, 1.5e18, float("inf")):
        for name in ("_now_ns", "_next_sample_ns", "_next_snap_ns"):
            setattr(loop, name, value)
            assert getattr(loop, name) is value


def test_run_counts_every_market_event_even_when_the_feed_fails():
    events = _events(10.0)
    whole = EngineLoop(_core(), _venue()).run(events)
    assert (
        whole.stats.market_events
        == _reference(events).stats.market_events
        == len([e for e in events if isinstance(e, MARKET_TYPES)])
    )

    def failing(k):
        yield from events[:k]
        raise RuntimeError("feed lost")

    k = len(events) // 2
    loop = EngineLoop(_core(), _venue())
    with pytest.raises(RuntimeError, match="feed lost"):
        loop.run(failing(k))
    assert loop.result.stats.market_events == len([e for e in events[:k] if isinstance(e, MARKET_TYPES)]) > 50

    # a list feed is counted in C: an event that raises inside the engine still leaves the reference's count
    class FailingCore(StrategyCore):
        seen = 0

        def on_event(self, event):
            if isinstance(event, MARKET_TYPES):
                FailingCore.seen += 1
                if FailingCore.seen == k:
                    raise RuntimeError("strategy failed")
            return super().on_event(event)

    counts = []
    for cls in (EngineLoop, PyEngineLoop):
        FailingCore.seen = 0
        loop = cls(_core(FailingCore), _venue())
        with pytest.raises(RuntimeError, match="strategy failed"):
            loop.run(list(events))
        counts.append(loop.result.stats.market_events)
    assert counts[0] == counts[1] == k
    # a generator feed can read the stats between events: counted at once then
    seen = []
    loop = EngineLoop(_core(), _venue())

    def watching():
        for ev in events[:k]:
            yield ev
            seen.append(loop.result.stats.market_events)

    loop.run(watching())
    assert seen == [sum(isinstance(e, MARKET_TYPES) for e in events[: i + 1]) for i in range(k)]
    # on_market after a run counts at once, as the reference does
    before = loop.result.stats.market_events
    loop.on_market(next(e for e in events[k:] if isinstance(e, MARKET_TYPES)))
    assert loop.result.stats.market_events == before + 1


def test_clocks_moved_by_hand_are_kept_as_the_reference_keeps_them():
    """Sample and snapshot clocks past int64, below it, or a float: the compiled comparisons give the reference's
    samples and run."""
    events = _events(20.0)
    for name, value in (
        ("_next_sample_ns", 1 << 63),  # never reached: no sample
        ("_next_sample_ns", -(1 << 64)),  # reached at once, then on the grid from there
        ("_next_sample_ns", float(SP.start_ts_ns + 3_000_000_000)),
        ("_next_snap_ns", 1 << 63),
    ):
        runs = []
        for cls_name in ("compiled", "reference"):
            loop = (EngineLoop if cls_name == "compiled" else PyEngineLoop)(_core(), _venue())
            setattr(loop, name, value)
            if name == "_next_sample_ns" and isinstance(value, int) and value < 0:
                loop._interval_ns = 1 << 62  # one sample at the first event, the next beyond the run
            result = loop.run(events)
            runs.append((_digest(result), [repr(s) for s in result.pnl]))
        assert runs[0] == runs[1], name
