"""Checks shared by the live-feed loop tests of both venues (Binance live data, Hyperliquid live trading)."""

from __future__ import annotations

import pytest

from apps.trading.loop import QuotingLoop
from apps.trading.models import RiskEventRecord, TradingSession


def flush(loop: QuotingLoop) -> None:
    """Write what the loop buffered (a flush from this thread may need a second go: the writer's staging tables
    are per connection, and its own thread made them on another)."""
    assert any(loop.writer.flush() for _ in range(3))


def assert_skew_measured_and_tripped(loop: QuotingLoop, session: TradingSession, skew_ms: float) -> None:
    """The feed measured the venue clock's ``skew_ms`` (local - venue is about ``-skew_ms``) with a round trip,
    the loop handed that measurement to the clock-skew rule, and the rule tripped on it (a stored risk event)."""
    status = loop.feed_status()
    assert abs(status["clock_offset_ms"] + skew_ms) <= 50, status
    assert status["rtt_ms"] is not None and 0 < status["rtt_ms"] < 500, status
    # the rule holds the feed's measured offset as of the last step; the socket thread may have refined the
    # estimate since (by microseconds), so compare within a few ms
    assert loop.driver.risk.clock_measured
    assert abs(loop.driver.risk.clock_skew_ns - loop.feed.clock_offset_ns()) <= 5_000_000
    flush(loop)
    trips = RiskEventRecord.objects.filter(session=session, rule="clock_skew")
    assert trips.exists(), list(RiskEventRecord.objects.filter(session=session).values_list("rule", flat=True))
    assert trips.first().values["clock_skew_ms"] == pytest.approx(status["clock_offset_ms"], abs=60)
