"""Learned microprice: online ridge regression of the future mid change on book and trade-flow imbalance.

What it estimates
    E[(mid(t + h) − mid(t)) / mid(t) | x(t)], the expected fractional mid change over the horizon h, and so
    the microprice  mid · (1 + that).  It is only trusted while it predicts better than the mid itself.

Model
    y = β_book · I_book + β_flow · I_flow + ε,  fitted by recursive least squares in information form:
        A ← f A + x xᵀ,   b ← f b + x y,   β = (A + λ I)⁻¹ b
    with a Gaussian (ridge, L2) prior β ~ N(0, σ²/λ) that never decays, and time-based forgetting
    f = 2^(−Δt / half_life_s) of the data between labels. No intercept: a steady trend in the mid is the
    drift filter's business, and the benchmark is the mid (a predicted change of 0).

Symbols and units
    y        fractional mid change over ``horizon_s`` (0.0001 = 1 bp), dimensionless
    I_book   book imbalance (bid_size − ask_size)/(bid_size + ask_size) at the touch, in [−1, 1]
    I_flow   taker-flow imbalance (buy_volume − sell_volume)/(buy_volume + sell_volume) over the caller's
             window, in [−1, 1]
    β        fraction of price per unit imbalance
    λ        ``ridge_prior``: prior precision in units of pseudo-samples with unit features
    R²_oos   out-of-sample R² = 1 − Σ f·(y − ŷ)² / Σ f·y², where ŷ is predicted *before* the label is learnt

Assumptions
    The relation is linear and changes slowly relative to ``half_life_s``; labels use the mid in effect at
    t + h (the last mid observed at or before t + h), so ``observe`` should be called on every mid change.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

from apps.engine import compiled
from apps.engine.estimators.base import EstimatorSnapshot, EstimatorState
from apps.engine.validation import finite, positive

NS_PER_S = 1_000_000_000


def book_imbalance(bid_size: float, ask_size: float) -> float:
    """(bid_size − ask_size)/(bid_size + ask_size) in [−1, 1]; raises ValueError when both are zero."""
    return _imbalance("bid_size", bid_size, "ask_size", ask_size)


def flow_imbalance(buy_volume: float, sell_volume: float) -> float:
    """(buy − sell)/(buy + sell) taker volume in [−1, 1]; raises ValueError when both are zero."""
    return _imbalance("buy_volume", buy_volume, "sell_volume", sell_volume)


def _imbalance(name_a: str, a: float, name_b: str, b: float) -> float:
    for name, v in ((name_a, a), (name_b, b)):
        if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
            raise ValueError(f"{name} must be a finite non-negative number, got {v!r}")
    if a + b <= 0:
        raise ValueError(f"imbalance undefined: {name_a} and {name_b} are both zero")
    return (a - b) / (a + b)


@dataclass(frozen=True, slots=True)
class MicropriceParams:
    """Parameters of ``MicropriceRegression``.

    Parameters
    ----------
    horizon_s : float
        Forecast horizon h of the mid change, s.
    sample_interval_s : float
        Minimum spacing between training samples, s (observations in between only update the mid), so
        overlapping labels do not swamp the fit with near-duplicates.
    ridge_prior : float
        λ, prior precision of β toward 0, in pseudo-samples of unit features. Stabilises the fit when the
        two imbalances are collinear.
    half_life_s : float
        Half-life of the forgetting of old samples and old out-of-sample errors, s.
    r2_min : float
        The estimate is usable (state OK) only while out-of-sample R² > r2_min (dimensionless).
    min_labels : int
        Labels scored out of sample before R² is judged (state WARMING until then).
    stale_after_s : float
        With no observation for this long the state is STALE, s.
    """

    horizon_s: float = 1.0
    sample_interval_s: float = 0.25
    ridge_prior: float = 10.0
    half_life_s: float = 1800.0
    r2_min: float = 0.01
    min_labels: int = 200
    stale_after_s: float = 30.0

    def validate(self) -> MicropriceParams:
        for name in ("horizon_s", "sample_interval_s", "ridge_prior", "half_life_s", "stale_after_s"):
            positive(name, getattr(self, name), "MicropriceParams")
        if not (isinstance(self.r2_min, (int, float)) and math.isfinite(self.r2_min) and self.r2_min < 1):
            raise ValueError(f"r2_min must be a finite number < 1, got {self.r2_min!r}")
        if not (isinstance(self.min_labels, int) and self.min_labels >= 1):
            raise ValueError(f"min_labels must be an integer >= 1, got {self.min_labels!r}")
        return self


class PyMicropriceRegression:
    """Online ridge/RLS microprice with out-of-sample R² gating.

    See the module docstring for the model, symbols, units and assumptions.

    ``observe`` feeds the stream; ``predict`` gives the expected fractional mid change for given
    imbalances (whatever the state: read ``snapshot().usable`` before trusting it).
    """

    def __init__(self, params: MicropriceParams | None = None, *, name: str = "microprice") -> None:
        self.params = (params or MicropriceParams()).validate()
        self.name = name
        self._horizon_ns = round(self.params.horizon_s * NS_PER_S)
        self._interval_ns = round(self.params.sample_interval_s * NS_PER_S)
        # The 2x2 normal equations as scalars: a numpy call per label cost more than the algebra.
        self._a11 = self._a12 = self._a22 = 0.0  # forgotten Σ x xᵀ
        self._b1 = self._b2 = 0.0  # forgotten Σ x y
        self._beta0 = self._beta1 = 0.0  # ridge solution (β_book, β_flow)
        self._sse = 0.0  # forgotten sum of squared out-of-sample errors
        self._ss0 = 0.0  # forgotten sum of squared labels (error of predicting "no change")
        self._weight = 0.0  # forgotten number of labels
        self._n_labels = 0
        self._pending: deque[tuple[int, float, float, float]] = deque()
        self._last_label_ns: int | None = None
        self._last_sample_ns: int | None = None
        self._last_ns = 0
        self._last_mid = math.nan
        self._last_x = (0.0, 0.0)
        self._last_label = math.nan

    # --- read ---------------------------------------------------------------------------------

    @property
    def coefficients(self) -> tuple[float, float]:
        """(β_book, β_flow), fraction of price per unit imbalance."""
        return self._beta0, self._beta1

    @property
    def n_labels(self) -> int:
        return self._n_labels

    @property
    def r2_oos(self) -> float:
        """Out-of-sample R² against predicting no change; NaN before any label."""
        if self._ss0 <= 0:
            return math.nan
        return 1.0 - self._sse / self._ss0

    @property
    def residual_var(self) -> float:
        """Forgotten mean squared out-of-sample error, (fraction of price)²; NaN before any label."""
        return self._sse / self._weight if self._weight > 0 else math.nan

    def predict(self, book_imbalance: float, flow_imbalance: float) -> float:
        """Expected fractional mid change over ``horizon_s`` for these imbalances."""
        finite("book_imbalance", book_imbalance, "MicropriceRegression")
        finite("flow_imbalance", flow_imbalance, "MicropriceRegression")
        return self._beta0 * book_imbalance + self._beta1 * flow_imbalance

    def microprice(self, mid: float, book_imbalance: float, flow_imbalance: float) -> float:
        """mid · (1 + predicted fractional change), quote currency."""
        positive("mid", mid, "MicropriceRegression")
        return mid * (1.0 + self.predict(book_imbalance, flow_imbalance))

    def _coef_cov(self) -> tuple[float, float, float]:
        """(var β_book, var β_flow, cov) = residual_var · (A + ρI)⁻¹, the 2x2 inverse in closed form."""
        var = self.residual_var
        if not math.isfinite(var):
            return math.nan, math.nan, math.nan
        r = self.params.ridge_prior
        m11, m22, m12 = self._a11 + r, self._a22 + r, self._a12
        scale = var / (m11 * m22 - m12 * m12)
        return scale * m22, scale * m11, -scale * m12

    # --- write --------------------------------------------------------------------------------

    def observe(self, ts_ns: int, mid: float, book_imbalance: float, flow_imbalance: float) -> None:
        """Feed the mid (quote currency) and the two imbalances at ``ts_ns``.

        Resolves the labels of earlier samples whose horizon has elapsed, then (if ``sample_interval_s``
        has passed since the last sample) keeps this one pending until its own horizon elapses.
        """
        positive("mid", mid, "MicropriceRegression")
        finite("book_imbalance", book_imbalance, "MicropriceRegression")
        finite("flow_imbalance", flow_imbalance, "MicropriceRegression")
        self.observe_trusted(ts_ns, mid, book_imbalance, flow_imbalance)

    def observe_trusted(self, ts_ns: int, mid: float, book_imbalance: float, flow_imbalance: float) -> None:
        """:meth:`observe` without the input checks, for callers whose inputs are already validated
        events (:class:`~apps.engine.estimators.market.MarketEstimators`); once per top of book. Time order is still
        checked: labels are defined by it."""
        if ts_ns < self._last_ns:
            raise ValueError(f"{self.name}: time went backwards ({ts_ns} < last input {self._last_ns})")
        pending = self._pending
        if pending:
            # A sample whose deadline passed before now was last priced by the previous mid; one whose
            # deadline is exactly now is priced by this one.
            horizon = self._horizon_ns
            while pending and pending[0][0] + horizon < ts_ns:
                self._learn(pending.popleft(), self._last_mid)
            while pending and pending[0][0] + horizon == ts_ns:
                self._learn(pending.popleft(), mid)
        last = self._last_sample_ns
        if last is None or ts_ns - last >= self._interval_ns:
            pending.append((ts_ns, mid, book_imbalance, flow_imbalance))
            self._last_sample_ns = ts_ns
        self._last_ns = ts_ns
        self._last_mid = mid
        self._last_x = (book_imbalance, flow_imbalance)

    def _learn(self, sample: tuple[int, float, float, float], mid_at_horizon: float) -> None:
        ts_ns, mid0, xb, xf = sample
        label_ts = ts_ns + self._horizon_ns
        y = (mid_at_horizon - mid0) / mid0
        if self._last_label_ns is not None:
            dt_s = (label_ts - self._last_label_ns) / NS_PER_S
            forget = 0.5 ** (dt_s / self.params.half_life_s)
            self._a11 *= forget
            self._a12 *= forget
            self._a22 *= forget
            self._b1 *= forget
            self._b2 *= forget
            self._sse *= forget
            self._ss0 *= forget
            self._weight *= forget
        # Score first (out of sample), then learn.
        err = y - (self._beta0 * xb + self._beta1 * xf)
        self._sse += err * err
        self._ss0 += y * y
        self._weight += 1.0
        self._a11 += xb * xb
        self._a12 += xb * xf
        self._a22 += xf * xf
        self._b1 += xb * y
        self._b2 += xf * y
        # β = (A + ρI)⁻¹ b by Cramer's rule; ρ > 0 keeps the determinant positive (A is PSD).
        r = self.params.ridge_prior
        m11, m22, m12 = self._a11 + r, self._a22 + r, self._a12
        det = m11 * m22 - m12 * m12
        self._beta0 = (m22 * self._b1 - m12 * self._b2) / det
        self._beta1 = (m11 * self._b2 - m12 * self._b1) / det
        self._n_labels += 1
        self._last_label_ns = label_ts
        self._last_label = y

    # --- snapshot -----------------------------------------------------------------------------

    def snapshot(self, now_ns: int) -> EstimatorSnapshot:
        """Value: predicted fractional mid change for the last observed imbalances (the microprice offset
        from mid); std: its standard error from the coefficient covariance. OK only while R²_oos > r2_min."""
        p = self.params
        xb, xf = self._last_x
        value = self._beta0 * xb + self._beta1 * xf
        v11, v22, v12 = self._coef_cov()
        var = xb * xb * v11 + 2.0 * xb * xf * v12 + xf * xf * v22
        std = math.sqrt(var) if var >= 0 else math.nan
        r2 = self.r2_oos
        if self._n_labels < p.min_labels:
            state, message = EstimatorState.WARMING, f"{self._n_labels} labels < min_labels={p.min_labels}"
        elif (now_ns - self._last_ns) / NS_PER_S > p.stale_after_s:
            age = (now_ns - self._last_ns) / NS_PER_S
            state, message = EstimatorState.STALE, f"no observation for {age:.1f} s > stale_after_s={p.stale_after_s}"
        elif not r2 > p.r2_min:
            state = EstimatorState.FAILED
            message = f"out-of-sample R² {r2:.4f} <= r2_min={p.r2_min}: no better than the mid"
        else:
            state, message = EstimatorState.OK, ""
        finite = math.isfinite(v11) and math.isfinite(v22) and math.isfinite(v12)
        se_book = math.sqrt(v11) if finite and v11 >= 0 else math.nan
        se_flow = math.sqrt(v22) if finite and v22 >= 0 else math.nan
        return EstimatorSnapshot(
            name=self.name,
            value=value,
            std=std,
            state=state,
            last_input_ns=self._last_ns,
            ci_low=value - 1.96 * std if math.isfinite(std) else math.nan,
            ci_high=value + 1.96 * std if math.isfinite(std) else math.nan,
            detail={
                "r2_oos": r2,
                "beta_book": self._beta0,
                "beta_flow": self._beta1,
                "se_beta_book": se_book,
                "se_beta_flow": se_flow,
                "residual_std": math.sqrt(self.residual_var) if self._weight > 0 else math.nan,
                "n_labels": float(self._n_labels),
                "effective_labels": self._weight,
                "pending": float(len(self._pending)),
                "last_label": self._last_label,
            },
            message=message,
        )


# The compiled classes (apps/engine/estimators/_estimators.pyx, same API, same results) unless MM_PURE_PYTHON=1 is
# set or the module did not build (apps.engine.compiled, docs/compiled-core.md); the Py* classes stay the reference.
_compiled = compiled.load("apps.engine.estimators._estimators")
MicropriceRegression: type[PyMicropriceRegression] = (
    _compiled.MicropriceRegression if _compiled is not None else PyMicropriceRegression
)
ESTIMATORS_COMPILED: bool = _compiled is not None
