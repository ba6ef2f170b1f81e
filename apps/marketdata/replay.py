"""Replay feed: a stored time range back out as the engine's event stream, at real speed or faster.

>>> for event in replay(instrument_id, start_ns, end_ns, speed=10.0):   # doctest: +SKIP
...     actions = core.on_event(event)

``speed=None`` yields as fast as the consumer takes them (backtests); ``speed=1.0`` paces the events by their
local-time gaps (live-like paper trading), ``speed=k`` k times faster. Events come merged by local receive time
(:func:`apps.marketdata.selectors.iter_events`), the order the quoting loop would have seen them.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator

from apps.engine.market.events import MarketEvent
from apps.marketdata.selectors import iter_events


def paced(
    events: Iterator[MarketEvent],
    speed: float | None,
    *,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> Iterator[MarketEvent]:
    """Yield ``events`` so that wall-clock gaps are local-time gaps divided by ``speed`` (None: no pacing)."""
    if speed is not None and not (isinstance(speed, (int, float)) and math.isfinite(speed) and speed > 0):
        raise ValueError(f"speed must be a finite number > 0 or None, got {speed!r}")
    t0_wall: float | None = None
    t0_ev = 0
    for ev in events:
        if speed is not None:
            if t0_wall is None:
                t0_wall, t0_ev = clock(), ev.ts_local_ns
            else:
                due = t0_wall + (ev.ts_local_ns - t0_ev) / 1e9 / speed
                wait = due - clock()
                if wait > 0:
                    sleep(wait)
        yield ev


def replay(
    instrument_id: int,
    start_ns: int,
    end_ns: int,
    *,
    speed: float | None = None,
    kinds: tuple[str, ...] = ("snap", "depth", "funding", "trade", "quote"),
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> Iterator[MarketEvent]:
    """Stored events of ``instrument_id`` with ``start_ns <= ts_local_ns < end_ns`` as a paced generator."""
    return paced(iter_events(instrument_id, start_ns, end_ns, kinds=kinds), speed, clock=clock, sleep=sleep)
