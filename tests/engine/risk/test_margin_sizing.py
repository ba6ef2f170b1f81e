"""margin_inventory_cap: the margin rule's bound (margin use <= max_margin_use) turned into a position size."""

from __future__ import annotations

import math

import pytest

from apps.engine.risk.rules import MarginParams, MarginRule, RiskState
from apps.engine.risk.session import margin_inventory_cap


def test_the_cap_is_the_largest_whole_lot_position_the_margin_rule_accepts():
    cap = margin_inventory_cap(10_000.0, 10.0, 100_000.0, 0.5, 0.001)
    assert cap == 0.5  # 0.5 * 10 000 * 10 / 100 000
    rule = MarginRule(MarginParams(max_margin_use=0.5, min_liq_distance_frac=0.01))
    for q, trips in ((cap - 0.001, False), (cap, True)):  # the rule trips at margin_use >= 0.5
        state = RiskState(ts_ns=1, position=q, mid=100_000.0)
        state.leverage, state.maint_margin_rate, state.wallet_balance, state.entry_price = 10.0, 0.005, 10_000.0, 1e5
        assert (rule.evaluate(state) is not None) is trips
    assert margin_inventory_cap(10_000.0, 10.0, 100_000.0, 0.5, 0.003) == pytest.approx(0.498)  # whole lots


@pytest.mark.parametrize("bad", [0.0, -1.0, math.nan, math.inf])
def test_an_unknown_input_gives_no_cap(bad):
    assert margin_inventory_cap(bad, 10.0, 100_000.0, 0.5, 0.001) is None
    assert margin_inventory_cap(10_000.0, 10.0, bad, 0.5, 0.001) is None
    assert margin_inventory_cap(10_000.0, bad, 100_000.0, 0.5, 0.001) is None


def test_an_account_too_small_for_one_lot_caps_at_zero():
    assert margin_inventory_cap(1.0, 1.0, 100_000.0, 0.5, 0.001) == 0.0
