"""The compiled driver's ledger mid (``_backtest.pyx``'s ``_mid``, which reads the fill model's two best levels from
the book's sides in place) against the reference ``PyEngineLoop._update_mid``, on books set by hand: empty sides, one
side empty, crossed and touching books, a one-tick spread, ticks near and past the exact doubles (2**52), negative
ticks, and a best level that moves or is dropped between two calls.
"""

from __future__ import annotations

import pytest

from apps.engine.core import CORE_COMPILED, StrategyCore, StrategyParams
from apps.engine.execution.paper import PAPER_COMPILED, PaperVenue, PaperVenueConfig
from apps.engine.market.events import Side
from apps.engine.simulation.backtest import DRIVER_COMPILED, EngineLoop, PyEngineLoop

pytestmark = pytest.mark.skipif(
    not (CORE_COMPILED and PAPER_COMPILED and DRIVER_COMPILED), reason="the compiled core, venue and driver"
)


def _loop(cls):
    core = StrategyCore(StrategyParams.from_dict({}), tick_size=0.1, lot_size=0.001)
    venue = PaperVenue(PaperVenueConfig(tick_size=0.1, lot_size=0.001), seed=1)
    return cls(core, venue)


def _ledger_state(loop) -> tuple:
    ledger = loop.ledger
    return (repr(ledger.mid), repr(ledger.mid_ts_ns), repr(ledger._history), repr(ledger.snapshot()))


BOOKS = [
    ({}, {}),
    ({1000: 1.0}, {}),
    ({}, {1001: 1.0}),
    ({1000: 1.0}, {1001: 2.0}),
    ({1000: 1.0, 990: 3.0}, {1001: 2.0, 1005: 1.0}),
    ({1001: 1.0}, {1001: 2.0}),  # touching: no mid
    ({1003: 1.0}, {1001: 2.0}),  # crossed: no mid
    ({-5: 1.0}, {7: 1.0}),
    ({(1 << 52) - 2: 1.0}, {(1 << 52) - 1: 1.0}),
    ({(1 << 52) + 1: 1.0}, {(1 << 52) + 3: 1.0}),  # past the exact doubles: the reference's arithmetic
    ({600_000: 1.0}, {600_001: 1.0}),
    ({600_000: 1.0}, {600_003: 1.0}),
]


@pytest.mark.parametrize("exchange_clock", [False, True])
def test_the_mid_of_hand_set_books_matches_the_reference(exchange_clock):
    loops = [_loop(PyEngineLoop), _loop(EngineLoop)]
    assert type(loops[1]) is not PyEngineLoop
    t = 1_000
    for bids, asks in BOOKS * 2:
        t += 7
        states = []
        for loop in loops:
            loop._venue_exchange_clock = exchange_clock
            book = loop.venue._book
            book._reset()
            for tick, size in bids.items():
                book._set(Side.BUY, tick, size)
            for tick, size in asks.items():
                book._set(Side.SELL, tick, size)
            loop._update_mid(t, t - 3)
            states.append(_ledger_state(loop))
        assert states[0] == states[1], (bids, asks)


def test_a_best_level_dropped_between_two_calls_is_seen():
    loops = [_loop(PyEngineLoop), _loop(EngineLoop)]
    for loop in loops:
        book = loop.venue._book
        book._set(Side.BUY, 1000, 1.0)
        book._set(Side.BUY, 999, 1.0)
        book._set(Side.SELL, 1002, 1.0)
        loop._update_mid(10, 10)
        book._set(Side.BUY, 1000, 0.0)  # the best bid goes: the mid moves down half a tick
        loop._update_mid(20, 20)
        book._set(Side.SELL, 1002, 0.0)  # the ask side empties: no mid, the last one stays
        loop._update_mid(30, 30)
    assert _ledger_state(loops[0]) == _ledger_state(loops[1])
    assert loops[1].ledger.mid == (999 + 1002) * 0.1 * 0.5
