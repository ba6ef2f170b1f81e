"""The integer ledger against the Fraction ledger it replaced, on random streams: every float bit for bit.

:class:`PnlLedger` keeps its sums as ints at a power-of-two exponent; ``FractionLedger`` below is the ledger as it was
(every sum a :class:`~fractions.Fraction`, snapshots the floats of ``exact()``). Random streams of mids, fills and
funding payments go to both: price scales from 1e-8 to 1e200 and subnormal amounts, prices and sizes with all 53
mantissa bits, equal mids and times, duplicate fill ids, fills with no venue time or older than the history, markout
deadlines already past when a fill arrives, fills and funding before the first mid. Every snapshot must be equal bit
for bit (the sign of zero included), every ``exact()`` equal, the markouts equal. A conversion that rounds wrongly
(truncation, or ``math.ldexp`` rounding twice in the subnormal range) must be caught.
"""

from __future__ import annotations

import dataclasses
import math
import struct
from collections import deque
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
import pytest

from apps.engine.accounting import pnl
from apps.engine.accounting.pnl import ExactPnl, Markout, PnlBreakdown, PnlLedger, PyPnlLedger
from apps.engine.market.events import Fill, Side

_NS = 1_000_000_000
_ZERO = Fraction(0)


@dataclass
class _Pending:
    deadline_ns: int
    ts_ns: int
    signed_size: Fraction
    side: int
    price: float
    size: float
    mid_at_fill: float


class FractionLedger:
    """The ledger as it was before the integer form: every sum a Fraction (the reference)."""

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
    def on_mid(self, ts_ns: int, mid: float, venue_ts_ns: int | None = None) -> None:
        """The mid became ``mid`` at local time ``ts_ns`` (venue time ``venue_ts_ns``, default the same).

        Markouts whose horizon ended before ``ts_ns`` use the old mid.
        """
        pending = self._pending
        if pending and pending[0].deadline_ns < ts_ns:
            self._resolve(lambda p: p.deadline_ns < ts_ns)
        self.mid = float(mid)
        self.mid_ts_ns = ts_ns
        hist = self._history
        hist.append((ts_ns if venue_ts_ns is None else venue_ts_ns, ts_ns, self.mid))
        cutoff = ts_ns - self._keep_ns
        while len(hist) > 1 and hist[1][1] <= cutoff:
            hist.popleft()  # hist[0] stays while it is still the mid in force at the cutoff
        if pending and pending[0].deadline_ns <= ts_ns:
            self._resolve(lambda p: p.deadline_ns <= ts_ns)

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
        x = Fraction(fill.size)
        p = Fraction(fill.price)
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
        m = Fraction(mid)
        sx = s * x
        self._cash -= sx * p + Fraction(fill.fee)
        self._fees -= Fraction(fill.fee)
        self._q += sx
        self._entry += sx * m
        self._spread += sx * (m - p)
        self._pend_q += sx
        self._pend_entry += sx * m
        pend = _Pending(deadline, t_fill, sx, s, fill.price, fill.size, mid)
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
            self._resolve_one(m_float)

    def _resolve_one(self, m_float: float | None) -> None:
        """Close the first pending fill's markout at mid ``m_float`` (its own mid when there is none)."""
        p = self._pending.popleft()
        mid_after = m_float if m_float is not None and math.isfinite(m_float) else p.mid_at_fill
        m = Fraction(mid_after)
        self._as_done += p.signed_size * (m - Fraction(p.mid_at_fill))
        self._pend_q -= p.signed_size
        self._pend_entry -= p.signed_size * Fraction(p.mid_at_fill)
        self.markouts.append(self._markout(p, mid_after, complete=True))

    @staticmethod
    def _markout(p: _Pending, mid_after: float, *, complete: bool) -> Markout:
        bps = p.side * (mid_after - p.price) / p.price * 1e4 if math.isfinite(mid_after) else math.nan
        return Markout(p.ts_ns, p.side, p.price, p.size, p.mid_at_fill, mid_after, bps, complete)


# --- the random streams ---------------------------------------------------------------------------------------------
# (mid scale, size scale, tick): the tick rounds the mid (0: every mantissa bit random)
_SCALES = [
    (60_000.0, 0.01, 0.1),
    (60_000.0, 0.01, 0.0),
    (1e-8, 1e6, 1e-12),
    (1e-8, 1e6, 0.0),
    (1e9, 1e-3, 0.0),
    (1.0, 1.0, 2.0**-20),
    (1e200, 1e100, 0.0),  # amounts near 1e300: large exponents
    (1e-8, 1e-300, 0.0),  # amounts around 1e-308 and below: subnormal floats
]


def _bits(v: object) -> object:
    return struct.pack("<d", v) if isinstance(v, float) else v


def _row(obj: object) -> tuple:
    return tuple(_bits(v) for v in dataclasses.astuple(obj))


def _call(f, *args):
    """A result, or the exception's type: both ledgers must raise alike."""
    try:
        return f(*args)
    except (ValueError, OverflowError, ZeroDivisionError) as exc:
        return type(exc)


def _stream(seed: int):
    """Yield ("mid", t, mid, venue_t) / ("fill", Fill) / ("funding", t, rate) / ("snap", ts) steps."""
    rng = np.random.default_rng(seed)
    scale, size_scale, tick = _SCALES[seed % len(_SCALES)]
    mid = scale
    t = 10 * _NS
    ids: list[str] = []
    if rng.random() < 0.3:  # fills and funding before the first mid
        px = scale * (1 + float(rng.normal(0, 1e-3)))
        yield "fill", Fill(0, t, "o", "pre", Side.BUY, px, size_scale, 0.0)
        ids.append("pre")
        yield "funding", t, 1e-4
        yield "snap", t
    for i in range(400):
        u = rng.random()
        t += 0 if u < 0.05 else int(rng.integers(1, 2 * _NS))
        if rng.random() < 0.7:
            if rng.random() > 0.1:  # else an equal mid
                mid = mid * (1 + float(rng.normal(0, 2e-4)))
                if tick:
                    mid = round(mid / tick) * tick
            venue_t = None if rng.random() < 0.4 else t - int(rng.integers(0, 50_000_000))
            yield "mid", t, mid, venue_t
        v = rng.random()
        if v < 0.25:
            side = Side.BUY if rng.random() < 0.5 else Side.SELL
            px = mid * (1 + float(rng.normal(0, 1e-4)))
            if tick and rng.random() < 0.7:
                px = round(px / tick) * tick
            size = size_scale * float(rng.integers(1, 50)) if rng.random() < 0.5 else size_scale * float(rng.random())
            fee = [0.0, -1e-5 * px * size, 2e-4 * px * size * float(rng.random())][int(rng.integers(0, 3))]
            w = rng.random()
            if w < 0.1:
                ts_exch = 0  # no venue time
            elif w < 0.2:
                ts_exch = max(1, t - int(rng.integers(40, 120)) * _NS)  # older than the history
            elif w < 0.35:
                ts_exch = max(1, t - int(rng.integers(1, 5)) * _NS)  # the horizon may have passed already
            else:
                ts_exch = max(1, t - int(rng.integers(0, 30_000_000)))
            fid = ids[int(rng.integers(0, len(ids)))] if ids and rng.random() < 0.1 else f"f{seed}-{i}"
            ids.append(fid)
            yield "fill", Fill(ts_exch, t, "o", fid, side, px, size, fee)
        elif v < 0.3:
            rate = [0.0, 1e-4, float(rng.normal(0, 1e-4)), -3.7e-5][int(rng.integers(0, 4))]
            yield "funding", t, rate
        yield "snap", (None if rng.random() < 0.2 else t + int(rng.integers(0, 3)))


def _compare(seed: int, markout_s: float, cls: type = PyPnlLedger) -> list[str]:
    """Feed one stream to ``cls`` and to the Fraction ledger; the differences found, described."""
    new, ref = cls(markout_s=markout_s, history_s=30.0), FractionLedger(markout_s=markout_s, history_s=30.0)
    bad: list[str] = []
    for n, step in enumerate(_stream(seed)):
        kind = step[0]
        if kind == "mid":
            new.on_mid(*step[1:])
            ref.on_mid(*step[1:])
        elif kind == "fill":
            a, b = _call(new.on_fill, step[1]), _call(ref.on_fill, step[1])
            if a != b:
                bad.append(f"{n}: on_fill {a} != {b}")
        elif kind == "funding":
            a, b = _call(new.on_funding, *step[1:]), _call(ref.on_funding, *step[1:])
            if a != b:
                bad.append(f"{n}: on_funding {a} != {b}")
        else:
            a, b = _call(new.snapshot, step[1]), _call(ref.snapshot, step[1])
            if not isinstance(a, type) and not isinstance(b, type):
                a, b = _row(a), _row(b)
            if a != b:
                bad.append(f"{n}: snapshot {a} != {b}")
            if n % 5 == 0 and new.exact() != ref.exact():
                bad.append(f"{n}: exact {new.exact()} != {ref.exact()}")
            if _bits(new.position) != _bits(ref.position):
                bad.append(f"{n}: position")
    new.finish()
    ref.finish()
    if [_row(m) for m in new.markouts] != [_row(m) for m in ref.markouts]:
        bad.append("markouts")
    if (new.fills, new.stale_fills) != (ref.fills, ref.stale_fills):
        bad.append("counts")
    if new.exact() != ref.exact():
        bad.append("exact at the end")
    return bad


@pytest.mark.parametrize("cls", [PyPnlLedger, PnlLedger], ids=["reference", "used"])
@pytest.mark.parametrize("seed", range(48))
def test_the_integer_ledger_reports_what_the_fraction_ledger_did(seed: int, cls: type) -> None:
    """Both the reference and the ledger the engine uses (compiled on_mid and snapshot when built)."""
    markout_s = (1.0, 0.005, 0.3)[seed % 3]
    assert _compare(seed, markout_s, cls) == []


def test_the_streams_reach_every_path() -> None:
    late = stale = dup = pre = 0
    for seed in range(0, 48, 3):
        led = PyPnlLedger(markout_s=(1.0, 0.005, 0.3)[seed % 3])
        seen_mid = False
        for step in _stream(seed):
            if step[0] == "mid":
                seen_mid = True
                led.on_mid(*step[1:])
            elif step[0] == "fill":
                before = len(led.markouts)
                fresh = _call(led.on_fill, step[1])
                dup += fresh is False
                pre += not seen_mid
                late += len(led.markouts) > before
        stale += led.stale_fills
    assert late > 10 and stale > 10 and dup > 10 and pre > 0


def _ldexp_twice(n: int, e: int) -> float:
    k = max(0, abs(n).bit_length() - 1000)  # float(n) would overflow
    m = float(abs(n) >> k)  # rounds n to 53 bits, then ldexp rounds again into a subnormal
    return math.ldexp(m if n >= 0 else -m, e + k)


def _truncated(n: int, e: int) -> float:
    k = max(0, abs(n).bit_length() - 53)
    m = float(abs(n) >> k)  # the bits below 53 dropped: toward zero
    return math.ldexp(m if n >= 0 else -m, e + k)


@pytest.mark.parametrize("wrong", [_ldexp_twice, _truncated])
def test_a_wrong_rounding_is_caught(monkeypatch: pytest.MonkeyPatch, wrong) -> None:
    monkeypatch.setattr(pnl, "_to_float", wrong)
    assert any(_compare(seed, (1.0, 0.005, 0.3)[seed % 3]) for seed in range(len(_SCALES)))


def test_the_float_of_an_integer_times_a_power_of_two_is_rounded_as_fraction_rounds() -> None:
    rng = np.random.default_rng(11)
    cases = [(0, 0), (0, -5), (0, 7), (1, -1074), (1, -1075), (3, -1076), (-1, -1075), (1, 1023), (2**53 + 1, 0)]
    cases += [((2**53 + 1) << k, -k - 1074 + 60) for k in range(0, 80, 7)]  # ties near and in the subnormals
    cases += [(2**54 + 2 * j + 1, -1 - j) for j in range(40)]  # exact ties: to even
    for _ in range(3_000):
        bits = int(rng.integers(1, 400))
        n = int(rng.integers(0, 2**62)) << max(0, bits - 62) | int(rng.integers(0, 2**62))
        n = n % (1 << bits) * (1 if rng.random() < 0.5 else -1)
        cases.append((n, int(rng.integers(-1300, 900)) - bits // 2))
    for n, e in cases:
        want = _call(float, Fraction(n) * Fraction(2) ** e)
        got = _call(pnl._to_float, n, e)
        assert _bits(got) == _bits(want), (n, e)
        assert pnl._fraction(n, e) == Fraction(n) * Fraction(2) ** e


def test_a_rational_that_no_float_is_refused_and_a_float_splits_exactly() -> None:
    with pytest.raises(ValueError, match="dyadic"):
        pnl._dyadic(Fraction(1, 10))
    for x in (0.1, -0.0, 5e-324, 1.7976931348623157e308, 3, 2.0**60):
        n, e = pnl._dyadic(x)
        assert Fraction(n) * Fraction(2) ** e == Fraction(x)


@pytest.mark.parametrize("cls", [PyPnlLedger, PnlLedger], ids=["reference", "used"])
def test_the_exponent_stays_bounded_over_many_funding_payments(cls: type) -> None:
    led = cls()
    led.on_mid(1, 60_000.1)
    led.on_fill(Fill(1, 1, "o", "a", Side.BUY, 59_999.9, 0.003))
    for i in range(2_000):
        led.on_funding(2 + i, 1.3e-4 if i % 2 else -0.7e-4)
    assert led._exp > -300  # the inputs' exponents, not 2,000 payments' worth of them
    assert led.exact().funding == -sum(
        Fraction(0.003) * Fraction(60_000.1) * Fraction(1.3e-4 if i % 2 else -0.7e-4) for i in range(2_000)
    )


def test_the_engine_uses_the_compiled_ledger_unless_told_otherwise() -> None:
    from apps.engine import compiled

    if compiled.pure_python():
        pytest.skip("MM_PURE_PYTHON is set: the reference is selected on purpose")
    from apps.engine.accounting import _pnl

    assert pnl.PNL_COMPILED and pnl.PnlLedger.__mro__[1:3] == (_pnl.PnlLedgerBase, PyPnlLedger)
    assert pnl.PnlLedger.on_mid is _pnl.PnlLedgerBase.on_mid
    assert pnl.PnlLedger.snapshot is _pnl.PnlLedgerBase.snapshot
    assert PnlLedger().c_mid_field  # the driver may read the mid in C

    class MidProperty(PnlLedger):
        @property
        def mid(self) -> float:
            return 1.0

        @mid.setter
        def mid(self, value: float) -> None:
            pass

    assert not MidProperty().c_mid_field  # then the driver reads it by name


@pytest.mark.parametrize("cls", [PyPnlLedger, PnlLedger], ids=["reference", "used"])
def test_a_ledger_pickles_and_copies_with_its_state(cls: type) -> None:
    import copy
    import pickle

    led = cls(markout_s=0.5)
    led.on_mid(5, 100.25)
    led.on_fill(Fill(5, 5, "o", "f", Side.BUY, 100.0, 0.5, 0.01))
    led.on_funding(6, 1e-4)
    for twin in (pickle.loads(pickle.dumps(led)), copy.deepcopy(led)):
        assert type(twin) is cls and twin.exact() == led.exact()
        assert _row(twin.snapshot(7)) == _row(led.snapshot(7))
        twin.on_mid(10**9, 101.0)  # the copy goes on by itself: its markout resolves, the original's stays open
        assert twin.markouts and not led.markouts
