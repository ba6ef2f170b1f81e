"""The calibration's Hawkes fit reads taker orders, as the online estimator counts them: the prints of one order (one
exchange time, one aggressor) are one event, on the exchange clock moved onto the local one; non-market prints are
not order flow."""

from __future__ import annotations

import numpy as np
import pytest

from apps.engine.calibration.fit import _order_times_s, collect
from apps.engine.market.events import BestBidAsk, Side, Trade

S = 1_000_000_000
MS = 1_000_000


def _tape() -> list:
    out: list = [BestBidAsk(S, S, 100.0, 5.0, 100.1, 5.0)]
    lag = 1_270 * MS  # the recorder's clock runs behind the exchange's (local = exchange − 1.27 s)
    for k, exch in enumerate((3 * S, 3 * S + 40 * MS, 5 * S)):
        for i in range(3):  # three makers each, delivered 5 µs apart with jitter on the local clock
            out.append(Trade(exch, exch - lag + k * MS + 5_000 * i, 100.1, 0.01, Side.BUY, f"{k}-{i}"))
    out.append(Trade(5 * S, 5 * S - lag + 9 * MS, 100.0, 0.01, Side.SELL, "other"))  # another order, same time
    out.append(Trade(6 * S, 6 * S - lag, 90.0, 5.0, Side.SELL, "x", market=False, kind="INSURANCE_FUND"))
    out.append(BestBidAsk(9 * S, 9 * S, 100.0, 5.0, 100.1, 5.0))
    return out


def test_orders_are_counted_once_on_the_exchange_clock():
    s = collect(_tape(), 0, 10 * S, tick_size=0.1)
    assert s.t_ts.size == 10  # the insurance-fund print is left out
    t = _order_times_s(s)
    assert t.size == 4
    # the exchange times 3, 3.04, 5, 5 s, moved by the median local − exchange offset of the orders' first prints
    offsets = np.array([0, 1, 2, 9]) * MS - 1_270 * MS
    shift = int(np.median(offsets))
    assert t == pytest.approx((np.array([3 * S, 3 * S + 40 * MS, 5 * S, 5 * S]) + shift) / S)
    assert np.all(np.diff(t) >= 0)


def test_kappa_and_a_are_fitted_on_orders_at_their_deepest_print_against_their_own_touch():
    """_through_touch: one row per taker order that went through the touch, its level the deepest of its prints
    against the touch before its first print (not the book its earlier prints moved); A counts orders."""
    from apps.engine.calibration.fit import _order_starts, _through_touch

    book = BestBidAsk(S, S, 100.0, 5.0, 100.1, 5.0)
    sweep = [Trade(2 * S, 2 * S + i * MS, px, 0.01, Side.BUY, f"a{i}") for i, px in enumerate((100.1, 100.2, 100.4))]
    moved = BestBidAsk(2 * S + 5 * MS, 2 * S + 5 * MS, 100.3, 1.0, 100.4, 1.0)  # the book the sweep left
    late = Trade(2 * S, 2 * S + 6 * MS, 100.4, 0.01, Side.BUY, "a3")  # same order, at the moved ask: still level 3
    at_touch = Trade(3 * S, 3 * S, 100.3, 0.01, Side.SELL, "b")  # another order, at its touch
    end = BestBidAsk(9 * S, 9 * S, 100.3, 1.0, 100.4, 1.0)
    s = collect([book, *sweep, moved, late, at_touch, end], 0, 10 * S, tick_size=0.1)
    assert int(np.count_nonzero(_order_starts(s))) == 2
    excess, tau = _through_touch(s)
    assert excess.tolist() == [2.0]  # level 3 beyond the 100.1 ask, 2 past the first level; the sell is at its touch
    assert tau == pytest.approx([0.1 / 100.05])
