"""Measured adverse selection: the mid's move against a maker fill over the quoter's horizon (issue 16).

What is measured
----------------
For a maker fill on side ``s`` (+1 bought, −1 sold) at venue time ``t``, with ``m₀`` the mid in force just before
``t`` (before the trade that filled it moved the book) and ``m_h`` the mid in force at ``t + h``:

    adverse = −s · (m_h − m₀) / m₀          (fraction of mid; positive = the mid moved against the fill)

i.e. minus the markout at horizon ``h``. Two sources feed it:

* **our own fills** (weight 1 each): exactly the quantity the E[P&L] filter needs, but few;
* **public trades at comparable distances** (weight ``public_weight`` each): the resting side of a public trade
  printed within ``public_max_distance_bps`` of the mid was a maker fill at a distance like ours (the aggressor
  bought ⇒ a maker sold). Many, but a maker at the touch is picked off differently from one a few ticks out, so
  they count for less. :class:`~apps.engine.estimators.market.MarketEstimators` passes one per taker order (its
  first print): the prints of one order share one mid and one future.

Times are our local clock's, on which every book update arrives (spot book tickers carry no exchange time). A
fill's reference instant is its venue time when that is earlier than its arrival (the paper venue stamps fills on
the local clock at the match; a real venue's exchange time lies a feed latency before the local time of the same
instant, so the reference errs toward *before* the trade, the side the attribution wants), else its arrival.

The estimate is the weighted mean over the latest ``window`` samples of each source, with a normal interval
``mean ± z·sd/√n_eff`` (``n_eff = (Σw)²/Σw²``).

State: WARMING until ``min_own_fills`` own markouts *or* ``min_public_trades`` public ones are in; STALE when no
markout has completed for ``stale_after_s``; OK otherwise. The quoter uses the measured value only while OK and
its prior (``QuoterParams.adverse_selection_bps``) otherwise, and records which.
"""

from __future__ import annotations

import bisect
import math
from collections import deque
from dataclasses import dataclass

from apps.engine import compiled
from apps.engine.estimators.base import EstimatorSnapshot, EstimatorState
from apps.engine.validation import integer, non_negative, positive

__all__ = ["AdverseSelectionEstimator", "AdverseSelectionParams", "PyAdverseSelectionEstimator"]

_NS = 1_000_000_000
_HISTORY_NS = 10 * _NS  # mids kept to look up the one before a fill (fills reach us well within this)


@dataclass(frozen=True, slots=True)
class AdverseSelectionParams:
    """Parameters of :class:`AdverseSelectionEstimator`.

    Attributes
    ----------
    horizon_s : float
        h, the markout horizon in seconds: the quoter's quote life (a fill's adverse move is what the mid does
        while we would still hold it). Default 1 s.
    public_max_distance_bps : float
        Public trades printed at most this far from the mid (bps) count as fills comparable to ours. Default 2.
    public_weight : float
        Weight of one public-trade markout relative to one of our fills (0 = own fills only). Default 0.2.
    window : int
        Latest markouts kept per source. Default 500.
    min_own_fills, min_public_trades : int
        WARMING until either count of completed markouts is reached. Defaults 20 and 200.
    stale_after_s : float
        STALE when no markout has completed for this long, seconds. Default 600.
    z : float
        Normal quantile of the reported interval (1.96 ⇒ 95 %).
    """

    horizon_s: float = 1.0
    public_max_distance_bps: float = 2.0
    public_weight: float = 0.2
    window: int = 500
    min_own_fills: int = 20
    min_public_trades: int = 200
    stale_after_s: float = 600.0
    z: float = 1.96

    def validate(self) -> AdverseSelectionParams:
        where = "AdverseSelectionParams"
        for name in ("horizon_s", "stale_after_s", "z"):
            positive(name, getattr(self, name), where)
        for name in ("public_max_distance_bps", "public_weight"):
            non_negative(name, getattr(self, name), where)
        integer("window", self.window, where, minimum=1)
        integer("min_own_fills", self.min_own_fills, where, minimum=1)
        integer("min_public_trades", self.min_public_trades, where, minimum=1)
        return self


class PyAdverseSelectionEstimator:
    """Markouts of maker fills (ours and public ones near the mid) at horizon ``h`` (module docstring).

    Feed it every top of book (:meth:`on_book`), every market trade (:meth:`on_public_trade`) and our maker fills
    (:meth:`on_own_fill`), in arrival order.
    """

    def __init__(self, params: AdverseSelectionParams | None = None) -> None:
        self.params = (params or AdverseSelectionParams()).validate()
        self._h_ns = int(self.params.horizon_s * _NS)
        self._mid = math.nan  # mid in force now (local time _mid_ts)
        self._mid_ts = 0
        self._hist_ts: deque[int] = deque()  # recent mids by local time, to find the mid before a fill
        self._hist_mid: deque[float] = deque()
        self._pending: deque[tuple[int, int, float, bool]] = deque()  # (target local ts, side, m0, own)
        self.own: deque[float] = deque(maxlen=self.params.window)
        self.public: deque[float] = deque(maxlen=self.params.window)
        self.own_total = 0
        self.public_total = 0
        self._last_done_ns = 0  # local time of the last completed markout
        self._now_local = 0

    # --- inputs -------------------------------------------------------------------------------

    def on_book(self, ts_local_ns: int, mid: float) -> None:
        """A new mid at local time ``ts_local_ns``: complete every markout whose horizon ended before it."""
        self._now_local = max(self._now_local, ts_local_ns)
        pend = self._pending
        while pend and pend[0][0] <= ts_local_ns:
            _, side, m0, own = pend.popleft()
            # the mid in force at the target time is the one before this update
            x = -side * (self._mid - m0) / m0
            (self.own if own else self.public).append(x)
            if own:
                self.own_total += 1
            else:
                self.public_total += 1
            self._last_done_ns = self._now_local
        self._mid = mid
        self._mid_ts = ts_local_ns
        if not self._hist_ts or ts_local_ns >= self._hist_ts[-1]:
            self._hist_ts.append(ts_local_ns)
            self._hist_mid.append(mid)
            cutoff = ts_local_ns - _HISTORY_NS
            while len(self._hist_ts) > 1 and self._hist_ts[1] <= cutoff:
                self._hist_ts.popleft()
                self._hist_mid.popleft()

    def mid_before(self, ts_ns: int) -> float:
        """The mid in force just before local time ``ts_ns`` (NaN when older than the kept history)."""
        i = bisect.bisect_left(self._hist_ts, ts_ns)
        return self._hist_mid[i - 1] if i > 0 else math.nan

    def on_public_trade(self, ts_local_ns: int, price: float, aggressor: int) -> None:
        """A market trade: its resting side (−aggressor) was a maker fill at ``|price − mid|`` from the mid."""
        m0 = self._mid
        if not m0 > 0 or self.params.public_weight == 0:
            return
        if abs(price - m0) / m0 * 1e4 > self.params.public_max_distance_bps:
            return
        self._push(ts_local_ns, -int(aggressor), m0, False)

    def on_own_fill(self, ts_ns: int, side: int, mid_before: float | None = None) -> None:
        """One of our maker fills (side +1 bought, −1 sold) at reference instant ``ts_ns`` (local clock; see the
        module docstring); ``mid_before`` defaults to the mid in force just before it (:meth:`mid_before`), not
        the later mid at which we learn of the fill."""
        m0 = self.mid_before(ts_ns) if mid_before is None else mid_before
        if not m0 > 0:
            return
        self._push(ts_ns, int(side), m0, True)

    def _push(self, ts_ns: int, side: int, m0: float, own: bool) -> None:
        item = (ts_ns + self._h_ns, side, m0, own)
        pend = self._pending
        if pend and pend[-1][0] > item[0]:  # out of order (rare): keep the queue sorted by target
            pend.append(item)
            self._pending = deque(sorted(pend, key=lambda t: t[0]))
        else:
            pend.append(item)

    # --- output -------------------------------------------------------------------------------

    def snapshot(self, now_local_ns: int) -> EstimatorSnapshot:
        """Weighted mean adverse move (fraction of mid) with its interval and state."""
        p = self.params
        w_pub = p.public_weight
        sw = sw2 = swx = swx2 = 0.0
        for xs, w in ((self.own, 1.0), (self.public, w_pub)):
            if w <= 0:
                continue
            n = len(xs)
            if n:
                s = math.fsum(xs)
                s2 = math.fsum(x * x for x in xs)
                sw += w * n
                sw2 += w * w * n
                swx += w * s
                swx2 += w * s2
        detail = {
            "own_markouts": float(len(self.own)),
            "public_markouts": float(len(self.public)),
            "own_mean_bps": (math.fsum(self.own) / len(self.own) * 1e4) if self.own else math.nan,
            "public_mean_bps": (math.fsum(self.public) / len(self.public) * 1e4) if self.public else math.nan,
            "horizon_s": p.horizon_s,
        }
        if sw <= 0:
            return EstimatorSnapshot(
                "adverse_selection", math.nan, math.nan, EstimatorState.WARMING, 0, detail=detail,
                message="no completed markouts yet",
            )  # fmt: skip
        mean = swx / sw
        var = max(swx2 / sw - mean * mean, 0.0)
        n_eff = sw * sw / sw2
        se = math.sqrt(var / n_eff) if n_eff > 1 else math.inf
        lo, hi = mean - p.z * se, mean + p.z * se
        detail.update(n_eff=n_eff, mean_bps=mean * 1e4)
        if len(self.own) < p.min_own_fills and len(self.public) < p.min_public_trades:
            state, msg = (
                EstimatorState.WARMING,
                f"{len(self.own)} own / {len(self.public)} public markouts "
                f"(< {p.min_own_fills} / {p.min_public_trades})",
            )
        elif now_local_ns - self._last_done_ns > p.stale_after_s * _NS:
            state, msg = EstimatorState.STALE, f"no markout completed for {p.stale_after_s:g} s"
        else:
            state, msg = EstimatorState.OK, ""
        return EstimatorSnapshot("adverse_selection", mean, se, state, self._last_done_ns, lo, hi, detail, msg)


# The compiled classes (apps/engine/estimators/_estimators.pyx, same API, same results) unless MM_PURE_PYTHON=1 is
# set or the module did not build (apps.engine.compiled, docs/compiled-core.md); the Py* classes stay the reference.
_compiled = compiled.load("apps.engine.estimators._estimators")
AdverseSelectionEstimator: type[PyAdverseSelectionEstimator] = (
    _compiled.AdverseSelectionEstimator if _compiled is not None else PyAdverseSelectionEstimator
)
ESTIMATORS_COMPILED: bool = _compiled is not None
