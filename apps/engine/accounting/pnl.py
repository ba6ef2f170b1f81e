"""P&L attribution for a market maker: spread capture, adverse selection, inventory, fees and funding.

Accounting identity (quote currency, marked to the mid ``m_T``)::

    total(T) = cash(T) + q(T)·m_T
    cash     = −Σ s·x·p  − Σ fee  + Σ funding            (s = +1 buy / −1 sell, x size, p fill price)

Decomposition, per fill ``i`` at time ``t_i`` with mid ``m_i`` and markout horizon ``h`` (``markout_s``)::

    spread capture   Σ s·x·(m_i − p)                     what the fill earned against the mid it hit
    adverse select.  Σ s·x·(m(min(t_i + h, T)) − m_i)     how the mid moved against us in the first h seconds
    inventory        Σ s·x·(m_T − m(min(t_i + h, T)))     the mid's move on what we still held after that
    fees             −Σ fee                               (a rebate is a negative fee: positive P&L)
    funding          Σ −q·m·rate at each funding event    (longs pay a positive rate)

``m(t)`` is the mid in force at time ``t`` (the last mid update at or before ``t``). The five parts sum to
``total`` *exactly*: every running sum is kept as a :class:`fractions.Fraction` of the float inputs (a float
converts to a Fraction without rounding), so the identity holds with ``==``, not within a tolerance. The
floats reported are those Fractions rounded once. A fill before any mid was seen uses its own price as the
mid (zero spread capture).

The markout of a fill, ``s·(m(t_i + h) − p)/p`` in bps, is recorded once ``t_i + h`` has passed (or at
:meth:`PnlLedger.finish`, marked ``complete=False``).
"""

from __future__ import annotations

import itertools
import math
from collections import deque
from dataclasses import dataclass
from fractions import Fraction

from apps.engine.market.events import Fill

_NS = 1_000_000_000
_ZERO = Fraction(0)
COMPONENTS = ("spread_capture", "adverse_selection", "inventory", "fees", "funding")


@dataclass(frozen=True, slots=True)
class PnlBreakdown:
    """P&L at one instant, quote currency. ``total`` equals the sum of the five components."""

    ts_ns: int
    mid: float
    position: float
    cash: float
    total: float
    spread_capture: float
    adverse_selection: float
    inventory: float
    fees: float
    funding: float

    def as_dict(self) -> dict[str, float | int]:
        return {
            "ts_ns": self.ts_ns,
            "mid": self.mid,
            "position": self.position,
            "cash": self.cash,
            "total": self.total,
            "spread_capture": self.spread_capture,
            "adverse_selection": self.adverse_selection,
            "inventory": self.inventory,
            "fees": self.fees,
            "funding": self.funding,
        }


@dataclass(frozen=True, slots=True)
class ExactPnl:
    """The same numbers as :class:`PnlBreakdown`, exact (Fractions); for conservation checks."""

    mid: Fraction
    position: Fraction
    cash: Fraction
    total: Fraction
    spread_capture: Fraction
    adverse_selection: Fraction
    inventory: Fraction
    fees: Fraction
    funding: Fraction

    @property
    def components_sum(self) -> Fraction:
        return self.spread_capture + self.adverse_selection + self.inventory + self.fees + self.funding


@dataclass(frozen=True, slots=True)
class Markout:
    """One fill's markout: ``bps = side·(mid_after − price)/price·1e4`` (positive = the fill made money)."""

    ts_ns: int
    side: int
    price: float
    size: float
    mid_at_fill: float
    mid_after: float
    bps: float
    complete: bool


@dataclass
class _Pending:
    deadline_ns: int
    ts_ns: int
    signed_size: Fraction
    side: int
    price: float
    size: float
    mid_at_fill: float


class PnlLedger:
    """Running P&L attribution of one strategy's fills against a mid series.

    Feed it, in time order, :meth:`on_mid` for every mid change, :meth:`on_fill` for each fill (duplicates by
    ``fill_id`` are ignored) and :meth:`on_funding` for funding payments; read :meth:`snapshot` or
    :meth:`exact` at any time.

    Parameters
    ----------
    markout_s : float
        Horizon ``h`` in seconds separating adverse selection (mid move within ``h`` of a fill) from
        inventory P&L (the move after). ``> 0``.
    """

    def __init__(self, markout_s: float = 1.0) -> None:
        if isinstance(markout_s, bool) or not isinstance(markout_s, (int, float)) or not math.isfinite(markout_s):
            raise ValueError(f"markout_s must be a finite number of seconds, got {markout_s!r}")
        if markout_s <= 0:
            raise ValueError(f"markout_s must be > 0, got {markout_s!r}")
        self.markout_s = float(markout_s)
        self._h_ns = round(markout_s * _NS)
        self.mid = math.nan
        self.mid_ts_ns = 0
        self._cash = _ZERO
        self._q = _ZERO
        self._entry = _ZERO  # Σ s·x·m_i
        self._spread = _ZERO
        self._fees = _ZERO
        self._funding = _ZERO
        self._as_done = _ZERO
        self._pending: deque[_Pending] = deque()
        self._pend_q = _ZERO  # Σ over pending fills of s·x
        self._pend_entry = _ZERO  # Σ over pending fills of s·x·m_i
        self._fill_ids: set[str] = set()
        self.markouts: list[Markout] = []
        self.fills = 0

    # --- inputs ---------------------------------------------------------------------------------
    def on_mid(self, ts_ns: int, mid: float) -> None:
        """The mid became ``mid`` at ``ts_ns``. Markouts whose horizon ended before ``ts_ns`` use the old mid."""
        pending = self._pending
        if pending and pending[0].deadline_ns < ts_ns:
            self._resolve(lambda p: p.deadline_ns < ts_ns)
        self.mid = float(mid)
        self.mid_ts_ns = ts_ns
        if pending and pending[0].deadline_ns <= ts_ns:
            self._resolve(lambda p: p.deadline_ns <= ts_ns)

    def on_fill(self, fill: Fill) -> bool:
        """Book one fill at its local (visible) time; returns False for a duplicate ``fill_id``."""
        if fill.fill_id in self._fill_ids:
            return False
        self._fill_ids.add(fill.fill_id)
        self.fills += 1
        s = int(fill.side)
        x = Fraction(fill.size)
        p = Fraction(fill.price)
        mid = self.mid if math.isfinite(self.mid) else float(fill.price)
        m = Fraction(mid)
        sx = s * x
        self._cash -= sx * p + Fraction(fill.fee)
        self._fees -= Fraction(fill.fee)
        self._q += sx
        self._entry += sx * m
        self._spread += sx * (m - p)
        self._pending.append(
            _Pending(fill.ts_local_ns + self._h_ns, fill.ts_local_ns, sx, s, fill.price, fill.size, mid)
        )
        self._pend_q += sx
        self._pend_entry += sx * m
        return True

    def on_funding(self, ts_ns: int, rate: float) -> Fraction:
        """A funding payment at ``rate`` (fraction of notional; longs pay when positive). Returns the amount."""
        if not math.isfinite(rate):
            raise ValueError(f"funding rate must be finite, got {rate!r}")
        if not math.isfinite(self.mid):
            return _ZERO
        amount = -self._q * Fraction(self.mid) * Fraction(rate)
        self._funding += amount
        self._cash += amount
        return amount

    def finish(self) -> None:
        """End of data: record the markouts still open, with the last mid (``complete=False``)."""
        for p in self._pending:
            self.markouts.append(self._markout(p, self.mid, complete=False))

    # --- reads ----------------------------------------------------------------------------------
    @property
    def position(self) -> float:
        return float(self._q)

    def exact(self) -> ExactPnl:
        m = Fraction(self.mid) if math.isfinite(self.mid) else _ZERO
        mtm = self._q * m - self._entry
        adverse = self._as_done + self._pend_q * m - self._pend_entry
        return ExactPnl(
            mid=m,
            position=self._q,
            cash=self._cash,
            total=self._cash + self._q * m,
            spread_capture=self._spread,
            adverse_selection=adverse,
            inventory=mtm - adverse,
            fees=self._fees,
            funding=self._funding,
        )

    def snapshot(self, ts_ns: int | None = None) -> PnlBreakdown:
        e = self.exact()
        return PnlBreakdown(
            ts_ns=self.mid_ts_ns if ts_ns is None else ts_ns,
            mid=self.mid,
            position=float(e.position),
            cash=float(e.cash),
            total=float(e.total),
            spread_capture=float(e.spread_capture),
            adverse_selection=float(e.adverse_selection),
            inventory=float(e.inventory),
            fees=float(e.fees),
            funding=float(e.funding),
        )

    # --- internals ------------------------------------------------------------------------------
    def _resolve(self, due) -> None:
        m_float = self.mid if math.isfinite(self.mid) else None
        while self._pending and due(self._pending[0]):
            p = self._pending.popleft()
            mid_after = m_float if m_float is not None else p.mid_at_fill
            m = Fraction(mid_after)
            self._as_done += p.signed_size * (m - Fraction(p.mid_at_fill))
            self._pend_q -= p.signed_size
            self._pend_entry -= p.signed_size * Fraction(p.mid_at_fill)
            self.markouts.append(self._markout(p, mid_after, complete=True))

    @staticmethod
    def _markout(p: _Pending, mid_after: float, *, complete: bool) -> Markout:
        bps = p.side * (mid_after - p.price) / p.price * 1e4 if math.isfinite(mid_after) else math.nan
        return Markout(p.ts_ns, p.side, p.price, p.size, p.mid_at_fill, mid_after, bps, complete)


def sharpe_ratio(values: list[float]) -> float:
    """Mean over standard deviation of the increments of a P&L series (per sampling interval); NaN if flat."""
    if len(values) < 3:
        return math.nan
    diffs = [b - a for a, b in itertools.pairwise(values)]
    n = len(diffs)
    mean = math.fsum(diffs) / n
    var = math.fsum((d - mean) ** 2 for d in diffs) / (n - 1)
    return mean / math.sqrt(var) if var > 0 else math.nan


def max_drawdown(values: list[float]) -> float:
    """Largest peak-to-trough fall of a P&L series, quote currency (>= 0)."""
    peak = -math.inf
    worst = 0.0
    for v in values:
        peak = max(peak, v)
        worst = max(worst, peak - v)
    return worst
