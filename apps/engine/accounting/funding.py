"""Funding settlements of a perpetual from its mark-price updates.

A mark-price update (Binance USD-M ``@markPrice``) announces the funding rate ``r`` that the next settlement, at
``T``, will charge; ``r`` moves until then. A settlement is known to have happened when an update's exchange
time reaches the ``T`` the previous update announced, and the rate paid is the last rate announced before it.
:class:`FundingClock` turns the update stream into those settlements (a :class:`~apps.engine.market.events.Funding`
payment each), for the P&L ledger and for storage (one ``FundingRate`` row per settlement, which a stored-range
replay turns back into Funding payments).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Settlement:
    ts_exch_ns: int  # the settlement time (the ``T`` announced)
    ts_local_ns: int  # local time of the update that showed it had passed
    rate: float  # the rate paid: the last one announced before it


class FundingClock:
    """Feed :meth:`on_mark` every mark-price update in order; it returns a :class:`Settlement` when one passed."""

    def __init__(self) -> None:
        self.due_ns = 0
        self.rate = 0.0
        self.settlements = 0

    def on_mark(self, ts_exch_ns: int, ts_local_ns: int, rate: float, next_funding_ns: int) -> Settlement | None:
        out = None
        if self.due_ns and ts_exch_ns >= self.due_ns:
            out = Settlement(self.due_ns, ts_local_ns, self.rate)
            self.settlements += 1
            self.due_ns = 0
        if next_funding_ns and next_funding_ns > ts_exch_ns:
            self.due_ns, self.rate = next_funding_ns, rate
        return out
