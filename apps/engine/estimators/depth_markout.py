"""The cost of a maker fill as a function of how deep the fill is: a depth-conditional adverse-selection curve.

A resting order ``δ`` from the mid is filled by the trades that reach it, and *how* the market reaches a level
says what it does next: a lone order at the touch, a sweep through three levels, a book that moved while our
quote was in flight. One number for "the adverse move after a fill" (:mod:`apps.engine.estimators.adverse`)
prices every depth the same; on the shared Binance recordings the move after a trade that reached 1.5 bps from
the mid is about twice the move after one at the touch, so a quote widened by the average cost still sits where
fills lose. This estimator measures the cost per depth from the public tape, walk-forward, online:

* every market trade is a maker fill at its price on the side it hit (``s = −aggressor``); the consecutive prints
  of one taker order are one **event** (one sweep fills a resting order once), reaching the deepest of their
  prices. The caller says which prints belong together (``order_ns``: the exchange time, which every print of an
  order carries; by default the local time, for a feed that delivers an order's prints in one message);
* its depth is measured from the mid **our quote would have been priced from**, the mid in force just
  ``reference_lag_s`` before the trade (an order rests on a price computed from a mid at least one entry
  latency old): ``d = −s·(price − m_ref)/m_ref`` (fraction of mid; > 0 means the maker's price was on the good
  side of that mid);
* its **adverse move** is ``a = −s·(m(t + h) − m_ref)/m_ref``: how far the mid went against the maker by the
  horizon ``h``, from the same reference. A maker order at depth ``δ`` that the event reaches earns
  ``δ − a`` (plus the rebate), so the cost at depth ``δ`` is the mean ``a`` over events with ``d ≥ δ``.

The curve, on a grid of depths ``e_k = k·step`` (``k = 0 … K``, ``K·step = max_depth_bps``), is

    c(e_k) = (Σ_{d_i ≥ e_k} a_i + n₀·ā) / (n_k + n₀),      ā = mean of a_i over every event with d_i ≥ 0,

a shrinkage of each depth's mean toward the pooled one with ``prior_events`` (n₀) pseudo-events, so the deep,
sparsely sampled depths fall back to the pooled cost rather than to noise. Events whose depth is negative (the
mid moved through the trade's price during the lag) reach no resting quote and are left out. The quoter uses the
curve to choose the half-spread (:mod:`apps.engine.quoting.quoter`, "Cost of a fill").

The mids come from the adverse-selection estimator's history (:meth:`AdverseSelectionEstimator.mid_before`, the
last 10 s; "the mid at t" is the one in force just before t, as there): an event is completed at the first trade
or read at or after ``t + h``; one whose horizon fell out of that history (a lull longer than it) is dropped and
counted.

:class:`DepthMarkoutCurve` is the compiled class (``apps/engine/estimators/_estimators.pyx``: the pending events,
the kept window and the cells' sums in C, the same doubles) unless ``MM_PURE_PYTHON=1`` is set or it did not build;
:class:`PyDepthMarkoutCurve` below is the reference it is held to (docs/compiled-core.md).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from apps.engine import compiled
from apps.engine.estimators.base import EstimatorSnapshot, EstimatorState
from apps.engine.validation import integer, non_negative, positive

__all__ = ["DepthCostCurve", "DepthMarkoutCurve", "DepthMarkoutParams", "PyDepthMarkoutCurve"]

_NS = 1_000_000_000
_BPS = 1e-4
# the snapshot's detail keys and depths for the cost at 0.5, 1 and 2 bps (k · 0.1 bps, k = 5, 10, 20), built once
_COST_POINTS = tuple((f"cost_{k * 0.1:g}bps_bps", k * 0.1 * _BPS) for k in (5, 10, 20))
MID_HISTORY_S = 10.0  # the mids the adverse-selection estimator keeps (its _HISTORY_NS)


@dataclass(frozen=True, slots=True)
class DepthMarkoutParams:
    """Parameters of :class:`DepthMarkoutCurve`.

    Attributes
    ----------
    horizon_s : float
        h, the markout horizon, seconds: the quoter's quote life, as the scalar estimator's. Default 1.
    reference_lag_s : float
        The depth and the move are measured from the mid this long before the trade, seconds: the age of the mid a
        resting quote was priced from when a trade meets it (at least the entry latency). Default 0.02.
    step_bps, max_depth_bps : float
        The curve's depth grid, bps of mid: ``0, step, 2·step, … ≤ max_depth``. Defaults 0.1 and 20.
    window : int
        Latest completed events kept. Default 5000.
    prior_events : float
        n₀, pseudo-events at the pooled cost each depth's mean is shrunk toward. Default 20.
    min_events : int
        WARMING until this many completed events with depth ≥ 0. Default 200.
    stale_after_s : float
        STALE when no event has completed for this long, seconds. Default 600.
    """

    horizon_s: float = 1.0
    reference_lag_s: float = 0.02
    step_bps: float = 0.1
    max_depth_bps: float = 20.0
    window: int = 5000
    prior_events: float = 20.0
    min_events: int = 200
    stale_after_s: float = 600.0

    def validate(self) -> DepthMarkoutParams:
        where = "DepthMarkoutParams"
        for name in ("horizon_s", "step_bps", "max_depth_bps", "stale_after_s"):
            positive(name, getattr(self, name), where)
        for name in ("reference_lag_s", "prior_events"):
            non_negative(name, getattr(self, name), where)
        integer("window", self.window, where, minimum=1)
        integer("min_events", self.min_events, where, minimum=1)
        if self.max_depth_bps < self.step_bps:
            raise ValueError(
                f"{where}.max_depth_bps must be >= step_bps ({self.step_bps!r}), got {self.max_depth_bps!r}"
            )
        if self.max_depth_bps / self.step_bps > 10_000:
            raise ValueError(f"{where}: max_depth_bps / step_bps must be <= 10000 grid points")
        if self.horizon_s + self.reference_lag_s >= MID_HISTORY_S:
            raise ValueError(
                f"{where}.horizon_s + reference_lag_s must be < {MID_HISTORY_S:g} s (the mid history kept), got "
                f"{self.horizon_s!r} + {self.reference_lag_s!r}"
            )
        return self


@dataclass(frozen=True, slots=True, eq=False)
class DepthCostCurve:
    """``c(δ)``, the expected adverse move after a maker fill at depth ``δ`` (fractions of mid), on a grid.

    ``cost_array[k]`` and ``counts[k]`` belong to depth ``k·step``; :meth:`cost_at` interpolates linearly between
    grid points (a quote between two is filled by fewer events than reach the shallower and more than reach the
    deeper), the first cost at or below 0 and the last beyond the grid. The costs are held once, as a read-only
    float64 array (any sequence given is copied into one), which the quoter reads; ``costs`` is a tuple view of it.
    Two curves are equal when their step, counts, pooled cost and every cost are (``==`` on floats).
    """

    step: float  # grid step, fraction of mid
    cost_array: np.ndarray  # c(k·step), float64, read-only
    counts: tuple[int, ...]
    pooled: float  # ā, fraction of mid

    def __post_init__(self) -> None:
        costs = np.array(self.cost_array, dtype=np.float64)  # the curve's own copy
        costs.flags.writeable = False
        object.__setattr__(self, "cost_array", costs)

    @property
    def costs(self) -> tuple[float, ...]:
        return tuple(self.cost_array.tolist())

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return (
            self.step == other.step
            and self.counts == other.counts
            and self.pooled == other.pooled
            and bool(np.array_equal(self.cost_array, other.cost_array))
        )

    def __hash__(self) -> int:
        return hash((self.step, self.counts, self.pooled))

    def cost_at(self, depth: float) -> float:
        costs = self.cost_array
        if not depth > 0:
            return float(costs[0])
        u = depth / self.step
        k = int(u)
        last = len(costs) - 1
        if k >= last:
            return float(costs[last])
        c0, c1 = float(costs[k]), float(costs[k + 1])
        return c0 + (c1 - c0) / self.step * (depth - k * self.step)


class PyDepthMarkoutCurve:
    """Depth-conditional markouts of public maker fills (module docstring). Feed every market trade, in arrival
    order, with the mid lookup of :class:`~apps.engine.estimators.adverse.AdverseSelectionEstimator`.

    The reference of the compiled :class:`DepthMarkoutCurve`, which runs this class's :meth:`snapshot` on its own
    state (``curve()``, ``dropped``, ``_cell_s2``, ``_last_done_ns``)."""

    def __init__(self, params: DepthMarkoutParams | None = None) -> None:
        p = self.params = (params or DepthMarkoutParams()).validate()
        self._h_ns = round(p.horizon_s * _NS)
        self._lag_ns = round(p.reference_lag_s * _NS)
        self._step = p.step_bps * _BPS
        self._last_cell = int(p.max_depth_bps / p.step_bps + 1e-9)
        self._pending: deque[list] = deque()  # [target local ns, trade local ns, side, m_ref, depth]
        # the kept events (depth, adverse move), and per grid cell their count, sum and sum of squares, kept as
        # events enter and leave the window, so a read costs one pass over the cells, not over the events
        self._depths: deque[float] = deque()
        self._adverse: deque[float] = deque()
        self._cell_n = [0] * (self._last_cell + 1)
        self._cell_s = [0.0] * (self._last_cell + 1)
        self._cell_s2 = [0.0] * (self._last_cell + 1)
        self.completed = 0  # events completed (depth ≥ 0 or not)
        self.dropped = 0  # events whose horizon fell out of the mid history
        self._last_done_ns = 0
        self._now_ns = 0
        self._curve: DepthCostCurve | None = None
        self._curve_at = -1  # self.completed when the curve was built

    def _cell(self, depth: float) -> int:
        """The grid cell of a depth ≥ 0 (the last cell holds everything deeper); −1 for a negative depth."""
        if depth < 0.0:
            return -1
        return min(int(depth / self._step), self._last_cell)

    # --- inputs -------------------------------------------------------------------------------------

    def on_trade(
        self, ts_ns: int, price: float, aggressor: int, mid_before: Callable[[int], float], order_ns: int | None = None
    ) -> None:
        """A market trade at local time ``ts_ns``; ``mid_before(t)`` is the mid in force just before local ``t``.
        A print with the same ``order_ns`` (default ``ts_ns``) and aggressor as the last event's is part of it."""
        if ts_ns > self._now_ns:
            self._now_ns = ts_ns
        pend = self._pending
        if pend and pend[0][0] <= ts_ns:
            self._complete(ts_ns, mid_before)
        side = -int(aggressor)
        key = ts_ns if order_ns is None else order_ns
        if pend and pend[-1][1] == key and pend[-1][2] == side:
            last = pend[-1]  # the same sweep: one event, as deep as its deepest print
            m_ref = last[3]
            last[4] = max(last[4], -side * (price - m_ref) / m_ref)
            return
        m_ref = mid_before(ts_ns - self._lag_ns)  # the mid in force just before ts − lag
        if not m_ref > 0:
            return
        pend.append([ts_ns + self._h_ns, key, side, m_ref, -side * (price - m_ref) / m_ref])

    def _complete(self, now_ns: int, mid_before: Callable[[int], float]) -> None:
        pend = self._pending
        depths, adverse = self._depths, self._adverse
        cn, cs, cs2 = self._cell_n, self._cell_s, self._cell_s2
        window = self.params.window
        while pend and pend[0][0] <= now_ns:  # every event before the horizon has been seen
            target, _, side, m_ref, depth = pend.popleft()
            m1 = mid_before(target)  # the mid in force just before the horizon
            if not m1 > 0:
                self.dropped += 1
                continue
            a = -side * (m1 - m_ref) / m_ref
            if len(depths) == window:  # the oldest event leaves the window
                k = self._cell(depths.popleft())
                x = adverse.popleft()
                if k >= 0:
                    cn[k] -= 1
                    cs[k] -= x
                    cs2[k] -= x * x
            depths.append(depth)
            adverse.append(a)
            k = self._cell(depth)
            if k >= 0:
                cn[k] += 1
                cs[k] += a
                cs2[k] += a * a
            self.completed += 1
            self._last_done_ns = now_ns

    def advance(self, now_ns: int, mid_before: Callable[[int], float]) -> None:
        """Complete the events whose horizon ended before ``now_ns`` (a read between trades)."""
        if now_ns > self._now_ns:
            self._now_ns = now_ns
        self._complete(now_ns, mid_before)

    # --- outputs ------------------------------------------------------------------------------------

    def curve(self) -> DepthCostCurve | None:
        """The cost curve over the kept events (None before any event with depth ≥ 0); rebuilt only when an
        event has completed since the last build, in one pass over the cells' running sums (which carry the
        rounding of their additions and removals: ~1e-16 of a cost per event kept, far below a cost's error)."""
        if self._curve_at == self.completed:
            return self._curve
        self._curve_at = self.completed
        cn, cs = self._cell_n, self._cell_s
        n = sum(cn)
        if n == 0:
            self._curve = None
            return None
        total = 0.0
        for x in cs:
            total += x
        pooled = total / n
        n0 = self.params.prior_events
        prior = n0 * pooled
        last = self._last_cell
        costs = [0.0] * (last + 1)
        counts = [0] * (last + 1)
        run_n, run_s = 0, 0.0
        for k in range(last, -1, -1):  # suffix sums: the events at depth ≥ k·step
            run_n += cn[k]
            run_s += cs[k]
            counts[k] = run_n
            if n0 > 0:
                costs[k] = (run_s + prior) / (run_n + n0)
            else:
                costs[k] = run_s / run_n if run_n else pooled
        self._curve = DepthCostCurve(self._step, costs, tuple(counts), pooled)
        return self._curve

    def _sum_of_squares(self) -> float:
        """Every cell's sum of squares added up, cell 0 upwards (the compiled class adds its C array the same way)."""
        s2 = 0.0
        for x in self._cell_s2:
            s2 += x
        return s2

    def snapshot(self, now_ns: int) -> EstimatorSnapshot:
        """The pooled cost (fraction of mid) with its standard error and state; the curve is :meth:`curve`."""
        p = self.params
        c = self.curve()
        n = c.counts[0] if c is not None else 0
        detail = {
            "events": float(n),
            "dropped": float(self.dropped),
            "horizon_s": p.horizon_s,
            "reference_lag_s": p.reference_lag_s,
        }
        if c is None:
            return EstimatorSnapshot(
                "depth_markout", math.nan, math.nan, EstimatorState.WARMING, 0, detail=detail,
                message="no completed trade event yet",
            )  # fmt: skip
        s2 = self._sum_of_squares()
        var = max(s2 / n - c.pooled * c.pooled, 0.0) * n / (n - 1) if n > 1 else math.inf
        se = math.sqrt(var / n) if n > 1 else math.inf
        for key, depth in _COST_POINTS:  # the cost at 0.5, 1 and 2 bps (grid permitting), for the decision record
            detail[key] = c.cost_at(depth) / _BPS
        if n < p.min_events:
            state, msg = EstimatorState.WARMING, f"{n} events (< {p.min_events})"
        elif now_ns - self._last_done_ns > p.stale_after_s * _NS:
            state, msg = EstimatorState.STALE, f"no event completed for {p.stale_after_s:g} s"
        else:
            state, msg = EstimatorState.OK, ""
        return EstimatorSnapshot(
            "depth_markout", c.pooled, se, state, self._last_done_ns, c.pooled - 1.96 * se, c.pooled + 1.96 * se,
            detail, msg,
        )  # fmt: skip


# The compiled class (apps/engine/estimators/_estimators.pyx, same API, same results) unless MM_PURE_PYTHON=1 is set
# or the module did not build (apps.engine.compiled); PyDepthMarkoutCurve stays the reference.
_compiled = compiled.load("apps.engine.estimators._estimators")
DepthMarkoutCurve: type[PyDepthMarkoutCurve] = (
    _compiled.DepthMarkoutCurve if _compiled is not None else PyDepthMarkoutCurve
)
ESTIMATORS_COMPILED: bool = _compiled is not None
