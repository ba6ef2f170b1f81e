"""A reconnecting feed reports a drop at once, then returns nothing until it is back with a resync snapshot."""

from __future__ import annotations

from apps.engine.market.events import BestBidAsk, DepthSnapshot
from apps.engine.market.feeds import Backoff, BackoffParams, ReconnectingFeed, SimulatedFeed
from apps.engine.simulation.simulator import MarketSimulator, SimulatorParams

S = 1_000_000_000


def test_a_drop_is_reported_once_and_the_resync_brings_a_snapshot_and_top_of_book():
    start = SimulatorParams().start_ts_ns
    feed = SimulatedFeed(MarketSimulator(SimulatorParams(), seed=1), start, outages=((2.0, 1.0),))
    reconnecting = ReconnectingFeed(feed, Backoff(BackoffParams(base_s=0.2, cap_s=0.4), seed=1))
    assert reconnecting.poll(start + S).events and not reconnecting.exhausted
    dropped = reconnecting.poll(start + 2 * S + S // 10)
    assert dropped.dropped and dropped.events == [] and dropped.attempts == 1
    during = [reconnecting.poll(start + 2 * S + k * S // 10) for k in range(2, 10)]
    assert all(p.events == [] and p.dropped is None and not p.resynced for p in during)
    back = reconnecting.poll(start + 4 * S)
    assert back.resynced and back.attempts >= 1
    assert isinstance(back.events[0], DepthSnapshot) and isinstance(back.events[1], BestBidAsk)
    assert reconnecting.poll(start + 5 * S).events
