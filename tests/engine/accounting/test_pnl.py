"""P&L attribution on hand-built fills and mids, where every component is known exactly."""

from __future__ import annotations

from fractions import Fraction

import pytest

from apps.engine.accounting.pnl import PnlLedger, max_drawdown, sharpe_ratio
from apps.engine.market.events import Fill, Side

S = 1_000_000_000


def fill(t: float, side: Side, px: float, size: float, fee: float = 0.0, fid: str = "") -> Fill:
    return Fill(int(t * S), int(t * S), "o1", fid or f"f{t}-{px}", side, px, size, fee)


def test_a_round_trip_splits_into_spread_adverse_selection_inventory_and_fees() -> None:
    led = PnlLedger(markout_s=1.0)
    led.on_mid(0, 100.0)
    led.on_fill(fill(0.0, Side.BUY, 99.5, 2.0, fee=-0.01))  # bought 2 at 0.5 below mid, 1 cent rebate
    led.on_mid(int(0.5 * S), 99.0)  # mid falls 1.0 within the markout horizon
    led.on_mid(int(3 * S), 101.0)  # then rises 2.0 while we still hold
    e = led.exact()
    assert e.spread_capture == Fraction(1)  # 2 × 0.5
    assert e.adverse_selection == Fraction(-2)  # 2 × (99 − 100), mid in force at t+1s
    assert e.inventory == Fraction(4)  # 2 × (101 − 99)
    assert e.fees == Fraction(0.01)
    assert e.funding == 0
    assert e.total == e.cash + e.position * e.mid == e.components_sum
    assert led.markouts[0].bps == pytest.approx((99.0 - 99.5) / 99.5 * 1e4)


def test_adverse_selection_so_far_is_counted_before_the_horizon_ends() -> None:
    led = PnlLedger(markout_s=10.0)
    led.on_mid(0, 100.0)
    led.on_fill(fill(0.0, Side.SELL, 100.5, 1.0))
    led.on_mid(2 * S, 101.0)
    e = led.exact()
    assert e.adverse_selection == Fraction(-1) and e.inventory == 0
    assert e.total == e.components_sum
    assert led.markouts == []  # not yet resolved
    led.finish()
    assert led.markouts[0].complete is False


def test_funding_is_paid_by_longs_on_a_positive_rate_and_enters_cash() -> None:
    led = PnlLedger()
    led.on_mid(0, 100.0)
    led.on_fill(fill(0.0, Side.BUY, 100.0, 3.0))
    paid = led.on_funding(S, 0.0001)
    e = led.exact()
    assert paid == -Fraction(3) * Fraction(100.0) * Fraction(0.0001)
    assert e.funding == paid and e.total == e.components_sum == e.cash + e.position * e.mid


def test_components_sum_exactly_over_many_random_fills() -> None:
    import numpy as np

    rng = np.random.default_rng(5)
    led = PnlLedger(markout_s=0.7)
    mid = 60000.0
    for i in range(2000):
        t = i * 100_000_000
        mid = round(mid + rng.choice([-0.1, 0.0, 0.1]) * rng.integers(0, 3), 1)
        led.on_mid(t, mid)
        if rng.random() < 0.2:
            side = Side.BUY if rng.random() < 0.5 else Side.SELL
            px = round(mid - int(side) * 0.1 * rng.integers(0, 4), 1)
            led.on_fill(Fill(t, t, "o", f"f{i}", side, px, 0.001 * rng.integers(1, 9), px * 1e-4))
        e = led.exact()
        assert e.total == e.components_sum == e.cash + e.position * e.mid


def test_a_duplicate_fill_id_is_booked_once() -> None:
    led = PnlLedger()
    led.on_mid(0, 100.0)
    f = fill(0.0, Side.BUY, 99.0, 1.0, fid="dup")
    assert led.on_fill(f) and not led.on_fill(f)
    assert led.position == 1.0


def test_bad_markout_horizon_is_rejected_by_name() -> None:
    with pytest.raises(ValueError, match="markout_s"):
        PnlLedger(markout_s=0)


def test_sharpe_and_drawdown_of_a_known_series() -> None:
    assert max_drawdown([0, 3, 1, 4, -2, 0]) == 6
    assert sharpe_ratio([0, 1, 2, 3]) != sharpe_ratio([0, 1, 2, 3])  # flat increments: NaN, not infinity
    assert sharpe_ratio([0, 1, 3, 4, 6]) == pytest.approx(1.5 / (1 / 3) ** 0.5)


def _snapshot_from_exact(led: PnlLedger, ts_ns: int) -> tuple:
    """snapshot() as floats of exact(), the definition the settled shortcut must match bit for bit."""
    e = led.exact()
    return (
        ts_ns,
        led.mid,
        float(e.position),
        float(e.cash),
        float(e.total),
        float(e.spread_capture),
        float(e.adverse_selection),
        float(e.inventory),
        float(e.fees),
        float(e.funding),
    )


def test_snapshots_with_no_markout_pending_are_the_exact_floats_bit_for_bit() -> None:
    import dataclasses
    import struct

    import numpy as np

    def bits(row: tuple) -> tuple:
        return tuple(struct.pack("<d", v) if isinstance(v, float) else v for v in row)

    rng = np.random.default_rng(7)
    led = PnlLedger(markout_s=1.0)
    mid, t, settled = 60_000.0, 0, 0
    led.on_mid(t, mid)
    for i in range(3_000):
        t += int(rng.integers(1, 400_000_000))
        mid = round(mid + float(rng.normal(0, 5.0)), 1)
        led.on_mid(t, mid)
        u = rng.random()
        if u < 0.05:
            side = Side.BUY if rng.random() < 0.5 else Side.SELL
            px = round(mid + (-1 if side is Side.BUY else 1) * float(rng.integers(0, 30)) * 0.1, 1)
            led.on_fill(Fill(t, t, "o", f"f{i}", side, px, round(float(rng.integers(1, 20)) * 0.001, 3), -1e-5 * px))
        elif u < 0.06:
            led.on_funding(t, float(rng.normal(0, 1e-4)))
        settled += not led._pending
        snap = led.snapshot(t)
        assert bits(dataclasses.astuple(snap)) == bits(_snapshot_from_exact(led, t)), i
    assert settled > 1_000 and led.fills > 100  # both paths ran, and the position moved many times
