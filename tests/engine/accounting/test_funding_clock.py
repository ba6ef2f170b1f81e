"""Funding settlements from a mark-price stream, by hand."""

from __future__ import annotations

from apps.engine.accounting.funding import FundingClock, Settlement

S = 1_000_000_000
H8 = 8 * 3600 * S


def test_the_rate_announced_last_before_the_settlement_is_the_one_paid_once() -> None:
    c = FundingClock()
    assert c.on_mark(1 * S, 1 * S + 5, 0.0001, H8) is None
    assert c.on_mark(2 * S, 2 * S + 5, 0.00015, H8) is None  # the announced rate moves
    paid = c.on_mark(H8 + S, H8 + S + 5, -0.00002, 2 * H8)  # first update after 08:00
    assert paid == Settlement(H8, H8 + S + 5, 0.00015)
    assert c.on_mark(H8 + 2 * S, H8 + 2 * S, -0.00003, 2 * H8) is None  # not twice
    assert c.on_mark(2 * H8, 2 * H8, 0.0, 3 * H8) == Settlement(2 * H8, 2 * H8, -0.00003)  # at T exactly
    assert c.settlements == 2


def test_no_settlement_without_an_announced_time_or_before_the_first_announcement() -> None:
    c = FundingClock()
    assert c.on_mark(H8 + S, H8 + S, 0.0001, 0) is None  # delivery contract: no funding time
    assert c.on_mark(H8 + 2 * S, H8 + 2 * S, 0.0001, 0) is None
    assert c.settlements == 0
