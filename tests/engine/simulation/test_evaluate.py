"""The walk-forward evaluation: the split, and that nothing of the evaluated part reaches the fit part or the table's
baseline (on a slice of the shared USD-M recording)."""

from __future__ import annotations

import dataclasses
import math

import pytest

from apps.engine.market.events import BestBidAsk
from apps.engine.simulation.evaluate import EvaluationConfig, evaluate_recording, walk_forward_split
from tests.engine.simulation.test_backtest import REAL, _real_events


@pytest.fixture(scope="module")
def events():
    fmt, files, _limit, *_ = REAL["binance-usdm"]
    return _real_events(fmt, files, 25_000)


def test_the_split_is_at_the_fit_fraction_of_the_span(events):
    index, split_ns = walk_forward_split(events, 0.3)
    t0, t1 = events[0].ts_local_ns, events[-1].ts_local_ns
    assert split_ns == t0 + int((t1 - t0) * 0.3)
    assert all(e.ts_local_ns < split_ns for e in events[:index])
    assert all(e.ts_local_ns >= split_ns for e in events[index:])
    with pytest.raises(ValueError, match="fit_fraction"):
        EvaluationConfig(fit_fraction=1.0).validate()


def test_the_table_counts_only_the_evaluated_part_and_ignores_its_future_at_the_split(events):
    cfg = EvaluationConfig(fit_fraction=0.4)
    split_ns, rows = evaluate_recording(events, 0.1, 0.001, cfg)
    assert [r.strategy for r in rows] == ["ours", "fixed", "as", "join_touch"]
    for r in rows:
        assert r.pnl_total == pytest.approx(math.fsum(r.pnl.values()), abs=1e-9)
        assert 0.0 <= r.both_sides_share <= 1.0 + 1e-9
    assert any(r.fills_buy + r.fills_sell > 0 for r in rows), "the slice must produce fills"

    # Walk-forward: whatever the evaluated part holds, the strategies reach the split in the same state. Shift every
    # top of book after the split by +1 % and the fit part's outcome (the P&L at the split, carried in as the
    # inventory) is unchanged, while the evaluated table changes.
    index, _ = walk_forward_split(events, cfg.fit_fraction)

    def shifted(e):
        if isinstance(e, BestBidAsk):
            return dataclasses.replace(e, bid_px=round(e.bid_px * 1.01, 1), ask_px=round(e.ask_px * 1.01, 1))
        return e

    moved = list(events[:index]) + [shifted(e) for e in events[index:]]
    split2, rows2 = evaluate_recording(moved, 0.1, 0.001, cfg)
    assert split2 == split_ns
    for a, b in zip(rows, rows2, strict=True):
        assert (b.pnl_at_split, b.inventory_at_split) == (a.pnl_at_split, a.inventory_at_split), a.strategy
    assert [r.pnl for r in rows2] != [r.pnl for r in rows]


def test_join_the_touch_quotes_at_the_touch(events):
    _split, rows = evaluate_recording(events, 0.1, 0.001, EvaluationConfig(fit_fraction=0.5))
    touch = next(r for r in rows if r.strategy == "join_touch")
    # the USD-M BTCUSDT book is one tick (0.1) wide: half a tick is ~0.008 bps at ~61,800
    assert touch.median_half_spread_bps < 0.05
