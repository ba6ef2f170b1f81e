"""Event timestamps are integers of ns in [0, 2**63): a float, a bool or None is refused when the event is built.

The compiled paths hold times as int64; before this check a float timestamp was truncated there and compared as a
float by the reference, so the two disagreed silently. The last test shows the compiled core and the reference now
see the same integer when a NumPy integer is given."""

from __future__ import annotations

import numpy as np
import pytest

from apps.engine.market.events import (
    BestBidAsk,
    DepthSnapshot,
    DepthUpdate,
    EventError,
    Fill,
    Funding,
    MarkPrice,
    OrderAck,
    OrderReject,
    Side,
    Timer,
    Trade,
)

T = 1_723_075_200_000_000_000  # 2024-08-08 00:00 UTC in ns


def _builders():
    """Each event class, built from its two timestamps with valid other fields."""
    return {
        "Trade": lambda e, t: Trade(e, t, 61_000.0, 0.01, 1),
        "BestBidAsk": lambda e, t: BestBidAsk(e, t, 61_000.0, 1.0, 61_000.1, 1.0),
        "DepthUpdate": lambda e, t: DepthUpdate(e, t, ((61_000.0, 1.0),), ()),
        "DepthSnapshot": lambda e, t: DepthSnapshot(e, t, ((61_000.0, 1.0),), ((61_000.1, 1.0),)),
        "Funding": lambda e, t: Funding(e, t, 0.0001),
        "MarkPrice": lambda e, t: MarkPrice(e, t, 61_000.0, 0.0001),
        "Timer": lambda e, t: Timer(e, t),
        "OrderAck": lambda e, t: OrderAck(e, t, "b1", "open"),
        "OrderReject": lambda e, t: OrderReject(e, t, "b1", "post only would cross"),
        "Fill": lambda e, t: Fill(e, t, "b1", "f1", Side.BUY, 61_000.0, 0.01),
    }


@pytest.mark.parametrize("name", sorted(_builders()))
@pytest.mark.parametrize(
    "bad, what",
    [(float(T), "float"), (True, "bool"), (None, "NoneType"), (str(T), "str"), (-1, "-1"), (2**63, str(2**63))],
)
@pytest.mark.parametrize("field", ["ts_exch_ns", "ts_local_ns"])
def test_a_timestamp_that_is_not_an_int64_of_ns_is_refused_by_name(name, bad, what, field):
    build = _builders()[name]
    args = (bad, T) if field == "ts_exch_ns" else (T, bad)
    with pytest.raises(EventError) as err:
        build(*args)
    msg = str(err.value)
    assert msg.startswith(f"{name}: {field} ")
    assert what in msg


@pytest.mark.parametrize("name", sorted(_builders()))
def test_integers_pass_and_numpy_integers_become_python_ints(name):
    build = _builders()[name]
    ev = build(T, T + 5)
    assert (ev.ts_exch_ns, ev.ts_local_ns) == (T, T + 5)
    ev = build(np.int64(T), np.uint64(T + 5))
    assert type(ev.ts_exch_ns) is int and type(ev.ts_local_ns) is int
    assert (ev.ts_exch_ns, ev.ts_local_ns) == (T, T + 5)
    assert build(0, 2**63 - 1).ts_local_ns == 2**63 - 1  # the bounds themselves are times


def test_the_compiled_core_and_the_reference_agree_on_a_numpy_timestamp():
    from apps.engine.core import PyStrategyCore, StrategyCore, StrategyParams

    params = StrategyParams.from_dict({"max_inventory": 0.05})
    cores = [cls(params, tick_size=0.1, lot_size=0.001) for cls in (StrategyCore, PyStrategyCore)]
    events = [
        BestBidAsk(np.int64(T), np.int64(T + 1_000_000), 61_000.0, 1.0, 61_000.1, 1.0),
        Trade(np.int64(T + 2_000_000), np.int64(T + 3_000_000), 61_000.1, 0.01, 1),
    ]
    for core in cores:
        for ev in events:
            core.on_event(ev)
    assert [c._now_ns for c in cores] == [T + 3_000_000, T + 3_000_000]
    assert [type(c._now_ns) for c in cores] == [int, int]
