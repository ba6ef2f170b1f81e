"""P&L attribution for a market maker: spread capture, adverse selection, inventory, fees and funding.

Accounting identity (quote currency, marked to the mid ``m_T``)::

    total(T) = cash(T) + q(T)·m_T
    cash     = −Σ s·x·p  − Σ fee  + Σ funding            (s = +1 buy / −1 sell, x size, p fill price)

Decomposition, per fill ``i`` at venue time ``t_i`` (when the matching engine filled us, the fill's
``ts_exch_ns``) with markout horizon ``h`` (``markout_s``)::

    spread capture   Σ s·x·(m_i − p)                     what the fill earned against the mid it hit
    adverse select.  Σ s·x·(m(min(t_i + h, T)) − m_i)     how the mid moved against us in the first h seconds
    inventory        Σ s·x·(m_T − m(min(t_i + h, T)))     the mid's move on what we still held after that
    fees             −Σ fee                               (a rebate is a negative fee: positive P&L)
    funding          Σ −q·m·rate at each funding event    (longs pay a positive rate)

``m_i`` is the mid in force at the venue's time of the fill, *before* the market event that filled us: the
last mid change stamped strictly before ``t_i`` on the venue's clock (a change stamped at ``t_i`` itself may be
the trade's own consequence). The fill reaches us later (response latency); valuing it at the mid we see then
would book the first milliseconds of the adverse move as negative spread capture. The ledger keeps a short
history of mid changes (``history_s`` of local time, at least one entry) to look ``m_i`` up; a fill with no
venue time (``ts_exch_ns`` 0) or older than the history uses the mid in force when it is booked (counted in
:attr:`PyPnlLedger.stale_fills`). ``m(t)`` is the mid in force at time ``t`` (the last mid update at or before
``t``). The five parts sum to ``total`` *exactly*: the identity holds with ``==``, not within a
tolerance. Every input is a finite double, i.e. an integer times a power of two, and the ledger only adds, subtracts
and multiplies them, so every running sum is a dyadic rational ``N·2^E``: the ledger keeps each ``N`` as a Python int
at one shared exponent ``E`` (lowered, and every ``N`` shifted left, when a term needs more fraction bits), with no
gcd on the way. The floats reported are those sums rounded once (correctly, as ``float(Fraction)`` rounds: Python's
int true division); :meth:`PyPnlLedger.exact` builds :class:`fractions.Fraction` values from the integers when asked. A
fill before any mid was seen uses its own price as the mid (zero spread capture).

Clocks: :meth:`PyPnlLedger.on_mid` takes the local time of a mid change and, when the venue runs on another
clock (exchange time), its venue time; ``t_i + h`` is converted to local time with the offset of the mid
change ``m_i`` came from (0 when both clocks are the same, as in the paper venue's default).

The markout of a fill, ``s·(m(t_i + h) − p)/p`` in bps, is recorded once ``t_i + h`` has passed (or at
:meth:`PyPnlLedger.finish`, marked ``complete=False``).
"""

from __future__ import annotations

import itertools
import math
from collections import deque
from dataclasses import dataclass
from fractions import Fraction

from apps.engine import compiled
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


def _dyadic(x: float) -> tuple[int, int]:
    """``x`` as ``(n, e)`` with ``x = n·2^e`` exactly. A float (or an int) always is one; NaN and infinities raise as
    ``Fraction(x)`` does, and so does a rational whose denominator is not a power of two (not a float's value)."""
    n, d = x.as_integer_ratio()
    if d & (d - 1):
        raise ValueError(f"the ledger takes floats, i.e. dyadic rationals; got {x!r}")
    return n, 1 - d.bit_length()


def _to_float(n: int, e: int) -> float:
    """``n·2^e`` rounded once to the nearest float, ties to even: what ``float(Fraction(n·2^e))`` gives (int true
    division is correctly rounded, subnormals and all; ``math.ldexp`` of a rounded ``float(n)`` would round twice)."""
    return n / (1 << -e) if e < 0 else float(n << e)


def _fraction(n: int, e: int) -> Fraction:
    return Fraction(n, 1 << -e) if e < 0 else Fraction(n << e)


@dataclass
class _Pending:
    deadline_ns: int
    ts_ns: int
    sx: int  # the signed size s·x is sx·2^sx_exp
    sx_exp: int
    entry: int  # s·x·m_i is entry·2^entry_exp
    entry_exp: int
    side: int
    price: float
    size: float
    mid_at_fill: float


class PyPnlLedger:
    """Running P&L attribution of one strategy's fills against a mid series.

    Feed it, in time order, :meth:`on_mid` for every mid change, :meth:`on_fill` for each fill (duplicates by
    ``fill_id`` are ignored) and :meth:`on_funding` for funding payments; read :meth:`snapshot` or
    :meth:`exact` at any time.

    Every running sum is an int ``N`` standing for ``N·2^E`` with the one exponent ``E`` (``_exp``, never above 0)
    that all of them share; see the module doc. This is the readable reference; :data:`PnlLedger` is the one to use
    (its :meth:`on_mid` and :meth:`snapshot` compiled, ``_pnl.pyx``, unless ``MM_PURE_PYTHON`` is set).

    Parameters
    ----------
    markout_s : float
        Horizon ``h`` in seconds separating adverse selection (mid move within ``h`` of a fill) from
        inventory P&L (the move after). ``> 0``.
    """

    def __init__(self, markout_s: float = 1.0, history_s: float = 30.0) -> None:
        for name, v in (("markout_s", markout_s), ("history_s", history_s)):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise ValueError(f"{name} must be a finite number of seconds, got {v!r}")
            if v <= 0:
                raise ValueError(f"{name} must be > 0, got {v!r}")
        self.markout_s = float(markout_s)
        self._h_ns = round(markout_s * _NS)
        self._keep_ns = round(max(history_s, markout_s) * _NS)
        # mid changes (venue time, local time, mid), oldest first; pruned to ``_keep_ns`` of local time
        self._history: deque[tuple[int, int, float]] = deque()
        self.stale_fills = 0  # fills valued at the booking-time mid (no venue time, or older than the history)
        self.mid = math.nan
        self.mid_ts_ns = 0
        self._exp = 0  # the sums below are ints at this power of two
        self._cash = 0
        self._q = 0
        self._entry = 0  # Σ s·x·m_i
        self._spread = 0
        self._fees = 0
        self._funding = 0
        self._as_done = 0
        self._pending: deque[_Pending] = deque()
        self._pend_q = 0  # Σ over pending fills of s·x
        self._pend_entry = 0  # Σ over pending fills of s·x·m_i
        self._fill_ids: set[str] = set()
        self.markouts: list[Markout] = []
        self.fills = 0
        # snapshot()'s parts that do not move with the mid: (position, cash, spread capture, adverse selection
        # settled so far, fees, funding as floats). None: recompute. Every method that changes a sum clears it.
        self._fixed: tuple[float, float, float, float, float, float] | None = None

    def _fixed_floats(self) -> tuple[float, float, float, float, float, float]:
        """The snapshot's parts that do not move with the mid, as floats: position, cash, spread capture, adverse
        selection settled so far, fees, funding (kept in ``_fixed`` until a sum changes)."""
        exp = self._exp
        return (
            _to_float(self._q, exp),
            _to_float(self._cash, exp),
            _to_float(self._spread, exp),
            _to_float(self._as_done, exp),
            _to_float(self._fees, exp),
            _to_float(self._funding, exp),
        )

    def _lower_exp(self, e: int) -> int:
        """Make the sums' exponent at most ``e`` (shifting every sum left by what it falls); returns it."""
        k = self._exp - e
        if k > 0:
            self._exp = e
            self._cash <<= k
            self._q <<= k
            self._entry <<= k
            self._spread <<= k
            self._fees <<= k
            self._funding <<= k
            self._as_done <<= k
            self._pend_q <<= k
            self._pend_entry <<= k
            return e
        return self._exp

    # --- inputs ---------------------------------------------------------------------------------
    def on_mid(self, ts_ns: int, mid: float, venue_ts_ns: int | None = None) -> None:
        """The mid became ``mid`` at local time ``ts_ns`` (venue time ``venue_ts_ns``, default the same).

        Markouts whose horizon ended before ``ts_ns`` use the old mid.
        """
        pending = self._pending
        if pending and pending[0].deadline_ns < ts_ns:
            m_old = self.mid if math.isfinite(self.mid) else None
            while pending and pending[0].deadline_ns < ts_ns:
                self._resolve_one(m_old)
        self.mid = float(mid)
        self.mid_ts_ns = ts_ns
        hist = self._history
        hist.append((ts_ns if venue_ts_ns is None else venue_ts_ns, ts_ns, self.mid))
        cutoff = ts_ns - self._keep_ns
        while len(hist) > 1 and hist[1][1] <= cutoff:
            hist.popleft()  # hist[0] stays while it is still the mid in force at the cutoff
        if pending and pending[0].deadline_ns <= ts_ns:
            m_new = self.mid if math.isfinite(self.mid) else None
            while pending and pending[0].deadline_ns <= ts_ns:
                self._resolve_one(m_new)

    def mid_before(self, venue_ts_ns: int) -> tuple[float, int] | None:
        """The mid in force just before venue time ``venue_ts_ns`` and the local-minus-venue clock offset of
        the change it came from; ``None`` when the history does not reach back that far."""
        hist = self._history
        for i in range(len(hist) - 1, -1, -1):
            v, local, mid = hist[i]
            if v < venue_ts_ns:
                return mid, local - v
        return None

    def on_fill(self, fill: Fill) -> bool:
        """Book one fill, valued at the mid in force at the venue's time of the fill (see the module doc);
        returns False for a duplicate ``fill_id``."""
        if fill.fill_id in self._fill_ids:
            return False
        self._fill_ids.add(fill.fill_id)
        self.fills += 1
        s = int(fill.side)
        nx, ex = _dyadic(fill.size)
        np_, ep = _dyadic(fill.price)
        found = self.mid_before(fill.ts_exch_ns) if fill.ts_exch_ns > 0 else None
        if found is not None:
            mid, offset = found
            deadline = fill.ts_exch_ns + offset + self._h_ns
            t_fill = fill.ts_exch_ns + offset
        else:
            if math.isfinite(self.mid):
                self.stale_fills += 1
            mid = self.mid if math.isfinite(self.mid) else float(fill.price)
            deadline = fill.ts_local_ns + self._h_ns
            t_fill = fill.ts_local_ns
        nm, em = _dyadic(mid)
        nf, ef = _dyadic(fill.fee)
        sx = s * nx
        sxp, sxp_e = sx * np_, ex + ep  # s·x·p
        sxm, sxm_e = sx * nm, ex + em  # s·x·m_i
        e = self._lower_exp(min(sxp_e, sxm_e, ex, ef))
        sxp <<= sxp_e - e
        fee = nf << (ef - e)
        signed = sx << (ex - e)
        entry = sxm << (sxm_e - e)
        self._fixed = None
        self._cash -= sxp + fee
        self._fees -= fee
        self._q += signed
        self._entry += entry
        self._spread += entry - sxp
        self._pend_q += signed
        self._pend_entry += entry
        pend = _Pending(deadline, t_fill, sx, ex, sxm, sxm_e, s, fill.price, fill.size, mid)
        if deadline < self.mid_ts_ns:
            # the horizon ended before the fill reached us (h shorter than the response latency)
            self._pending.appendleft(pend)
            self._resolve_one(self._mid_at_local(deadline))
        else:
            self._pending.append(pend)
        return True

    def _mid_at_local(self, ts_ns: int) -> float:
        """The mid in force at local time ``ts_ns`` from the history (the oldest one kept if older)."""
        for _, local, mid in reversed(self._history):
            if local <= ts_ns:
                return mid
        return self._history[0][2] if self._history else self.mid

    def on_funding(self, ts_ns: int, rate: float) -> Fraction:
        """A funding payment at ``rate`` (fraction of notional; longs pay when positive). Returns the amount."""
        if not math.isfinite(rate):
            raise ValueError(f"funding rate must be finite, got {rate!r}")
        if not math.isfinite(self.mid):
            return _ZERO
        nm, em = _dyadic(self.mid)
        nr, er = _dyadic(rate)
        q, q_e = self._q, self._exp
        if q:  # Q's own exponent, not the sums' (else each payment would lower the exponent further)
            tz = (q & -q).bit_length() - 1
            q, q_e = q >> tz, q_e + tz
        amount, amount_e = -q * nm * nr, q_e + em + er
        e = self._lower_exp(amount_e)
        self._fixed = None
        self._funding += amount << (amount_e - e)
        self._cash += amount << (amount_e - e)
        return _fraction(amount, amount_e)

    def finish(self) -> None:
        """End of data: record the markouts still open, with the last mid (``complete=False``)."""
        for p in self._pending:
            self.markouts.append(self._markout(p, self.mid, complete=False))

    # --- reads ----------------------------------------------------------------------------------
    @property
    def position(self) -> float:
        return _to_float(self._q, self._exp)

    def _marked(self) -> tuple[int, int, int, int]:
        """The parts that move with the mid ``M`` (0 before the first one), as ints at one exponent ``e``:
        ``(e, total, adverse selection, inventory)``, with ``total = cash + Q·M``, adverse selection
        ``= settled + pending Q·M − pending entry`` and ``inventory = (Q·M − entry) − adverse selection``."""
        nm, em = _dyadic(self.mid) if math.isfinite(self.mid) else (0, 0)
        k = -em if em < 0 else 0  # the sums' shift onto the products' exponent
        if em > 0:
            nm <<= em
        qm = self._q * nm
        adverse = ((self._as_done - self._pend_entry) << k) + self._pend_q * nm
        return (
            self._exp - k,
            (self._cash << k) + qm,
            adverse,
            qm - (self._entry << k) - adverse,
        )

    def exact(self) -> ExactPnl:
        e, total, adverse, inventory = self._marked()
        exp = self._exp
        return ExactPnl(
            mid=Fraction(self.mid) if math.isfinite(self.mid) else _ZERO,
            position=_fraction(self._q, exp),
            cash=_fraction(self._cash, exp),
            total=_fraction(total, e),
            spread_capture=_fraction(self._spread, exp),
            adverse_selection=_fraction(adverse, e),
            inventory=_fraction(inventory, e),
            fees=_fraction(self._fees, exp),
            funding=_fraction(self._funding, exp),
        )

    def snapshot(self, ts_ns: int | None = None) -> PnlBreakdown:
        """P&L now, each float ``exact()``'s value rounded once. Position, cash, spread capture, fees, funding (and
        adverse selection while no markout is pending, when the pending sums are exactly 0) change only on a fill, a
        funding payment or a resolved markout, so their floats are kept until one of those."""
        fixed = self._fixed
        if fixed is None:
            fixed = self._fixed = self._fixed_floats()
        position, cash, spread, adverse, fees, funding = fixed
        e, total, adverse_n, inventory = self._marked()
        return PnlBreakdown(
            ts_ns=self.mid_ts_ns if ts_ns is None else ts_ns,
            mid=self.mid,
            position=position,
            cash=cash,
            total=_to_float(total, e),
            spread_capture=spread,
            adverse_selection=_to_float(adverse_n, e) if self._pending else adverse,
            inventory=_to_float(inventory, e),
            fees=fees,
            funding=funding,
        )

    # --- internals ------------------------------------------------------------------------------
    def _resolve_one(self, m_float: float | None) -> None:
        """Close the first pending fill's markout at mid ``m_float`` (its own mid when there is none)."""
        p = self._pending.popleft()
        mid_after = m_float if m_float is not None and math.isfinite(m_float) else p.mid_at_fill
        nm, em = _dyadic(mid_after)
        after, after_e = p.sx * nm, p.sx_exp + em  # s·x·m(t_i + h)
        e = self._lower_exp(min(after_e, p.entry_exp, p.sx_exp))
        entry = p.entry << (p.entry_exp - e)
        self._fixed = None
        self._as_done += (after << (after_e - e)) - entry
        self._pend_q -= p.sx << (p.sx_exp - e)
        self._pend_entry -= entry
        self.markouts.append(self._markout(p, mid_after, complete=True))

    @staticmethod
    def _markout(p: _Pending, mid_after: float, *, complete: bool) -> Markout:
        bps = p.side * (mid_after - p.price) / p.price * 1e4 if math.isfinite(mid_after) else math.nan
        return Markout(p.ts_ns, p.side, p.price, p.size, p.mid_at_fill, mid_after, bps, complete)


_compiled_pnl = compiled.load("apps.engine.accounting._pnl")

if _compiled_pnl is not None:

    class PnlLedger(_compiled_pnl.PnlLedgerBase, PyPnlLedger):
        """The ledger with :meth:`on_mid` and :meth:`snapshot` compiled (``_pnl.PnlLedgerBase``, which also holds the
        state, the mid as a C double the backtest driver reads in C); the rest is :class:`PyPnlLedger`'s."""

else:
    PnlLedger = PyPnlLedger  # type: ignore[misc]

# which one runs: the compiled base when built and MM_PURE_PYTHON is not set
PNL_COMPILED: bool = _compiled_pnl is not None


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
