"""σ, the volatility of log mid per √second, from realised and bipower variation on a volume clock.

Model
-----
log mid follows ``d ln S = σ_t dW + dJ`` (a diffusion plus jumps). Over a window of bucket returns
``r_i = ln(S_close / S_open)`` with durations ``Δt_i`` (seconds):

* realised variance ``RV = Σ r_i²`` estimates the whole quadratic variation (diffusion **and** jumps);
* bipower variation ``BV = (π/2)·n/(n−1)·Σ_{i≥2} |r_i||r_{i−1}|`` (Barndorff-Nielsen & Shephard) estimates
  the diffusive part only — a single jump enters only multiplied by a neighbouring diffusive return.

Dividing by the elapsed time gives per-second variances, so ``sigma_total = √(RV/ΣΔt)`` and
``sigma_clean = √(BV/ΣΔt)`` are fractions of price per √second.

Clock
-----
Buckets close on a **volume clock**: a bucket ends once it holds ``target_bucket_s`` seconds' worth of the
volume traded over the last ``volume_lookback_s`` (so it lasts ``target_bucket_s`` on average, and shorter
when trading speeds up; returns per bucket are then closer to equal-variance than on a time clock). Until
``min_volume_history_s`` of volume history exists, or when no volume is reported at all, buckets close on a
**time clock** every ``target_bucket_s`` seconds (the cold start). A volume bucket also closes after
``max_bucket_s`` so a silent market cannot freeze σ.

Scales
------
Returns are also aggregated in non-overlapping blocks of ``k`` buckets for each ``k`` in ``scales``; the
per-scale σ are in ``detail`` (``sigma_total_k{k}``/``sigma_clean_k{k}``). Microstructure noise (bid–ask
bounce of the mid) inflates the finest scale: ``noise_ratio = RV_finest / RV_coarsest`` well above 1
says the finest scale is noise-dominated. The headline uses ``headline_scale``.

Which σ for what (the rule)
---------------------------
* **Spread** uses ``sigma_clean``: the GLFT/AS half-spread prices diffusive risk over a quote's life; a
  jump is not something a wider symmetric quote is paid for (it is adverse selection, priced elsewhere).
* **Inventory risk** uses ``max(sigma_total, sigma_clean)``: the P&L of held inventory is exposed to the full
  quadratic variation, jumps included, of which RV is the unbiased estimate; since IV ≤ QV in population,
  a sample with BV > RV is estimation noise, and the max keeps the inventory σ from falling below the
  diffusive estimate in that case. ``sigma_total`` also includes the still-open bucket so a jump raises the
  inventory σ at the next event, not when the bucket closes.

Calibration check
-----------------
At every bucket close the one-step-ahead predicted variance ``σ_inv² Δt`` (σ_inv as it stood when the
bucket closed, before adding it) is compared with the realised ``r²``; the correction factor
``c = EWMA(r²) / EWMA(σ_inv² Δt)`` (half-life ``correction_half_life_buckets``) should be near 1; outside
``[1/correction_tolerance, correction_tolerance]`` it is flagged in ``detail`` and ``message``.

Uncertainty: asymptotically ``Var(RV)/RV² ≈ 2/n`` and ``Var(BV)/BV² ≈ ϑ/n`` with ϑ = π²/4 + π − 3 ≈ 2.61,
so ``sd(σ) ≈ σ·√(ϑ/(4n))``; the interval is taken in log space.
Assumptions: returns within the window share one σ (per unit of volume on the volume clock); the mid is
the venue's mid, no microstructure-noise correction beyond the multi-scale diagnostic.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import special

from apps.engine import compiled
from apps.engine.estimators.base import EstimatorSnapshot, EstimatorState
from apps.engine.validation import non_negative, positive

_NS_PER_S = 1_000_000_000
_BV_SCALE = math.pi / 2.0  # 1/μ1², μ1 = E|Z| = √(2/π)
_THETA_BV = math.pi**2 / 4.0 + math.pi - 3.0  # asymptotic variance factor of BV
_THETA_RV = 2.0


@dataclass(frozen=True, slots=True)
class SigmaParams:
    """Parameters of :class:`SigmaEstimator`.

    Attributes
    ----------
    target_bucket_s : float
        Average bucket length in seconds: the time-clock bucket, and the volume clock's target duration.
    volume_lookback_s : float
        Seconds of volume history used to size volume buckets.
    min_volume_history_s : float
        Seconds of history (with some volume) before switching from the time clock to the volume clock.
    max_bucket_s : float
        A volume bucket closes after this many seconds even if its volume is not reached.
    window_buckets : int
        Bucket returns kept for the estimate.
    min_buckets : int
        Bucket returns needed before σ is reported (WARMING below).
    scales : tuple[int, ...]
        Aggregation levels, in buckets, reported in ``detail``.
    headline_scale : int
        The scale (one of ``scales``) whose σ is the headline.
    stale_after_s : float
        Seconds without input after which the estimate is STALE.
    sigma_min, sigma_max : float
        Plausible range of σ per √second (fraction of price); outside it the state is FAILED.
    correction_half_life_buckets : float
        Half-life, in buckets, of the EWMAs in the realised/predicted variance ratio.
    correction_tolerance : float
        The ratio is flagged when outside [1/tolerance, tolerance].
    ci_level : float
        Coverage of the reported interval.
    """

    target_bucket_s: float = 3.0
    volume_lookback_s: float = 300.0
    min_volume_history_s: float = 60.0
    max_bucket_s: float = 30.0
    window_buckets: int = 300
    min_buckets: int = 30
    scales: tuple[int, ...] = (1, 2, 4)
    headline_scale: int = 1
    stale_after_s: float = 30.0
    sigma_min: float = 1e-7
    sigma_max: float = 1e-2
    correction_half_life_buckets: float = 50.0
    correction_tolerance: float = 1.5
    ci_level: float = 0.95

    def validate(self) -> SigmaParams:
        for name in (
            "target_bucket_s",
            "volume_lookback_s",
            "max_bucket_s",
            "stale_after_s",
            "sigma_max",
            "correction_half_life_buckets",
        ):
            positive(name, getattr(self, name), "SigmaParams")
        for name in ("min_volume_history_s", "sigma_min"):
            non_negative(name, getattr(self, name), "SigmaParams")
        if self.sigma_min >= self.sigma_max:
            raise ValueError(f"sigma_min must be < sigma_max, got {self.sigma_min!r} >= {self.sigma_max!r}")
        if self.max_bucket_s < self.target_bucket_s:
            raise ValueError(f"max_bucket_s must be >= target_bucket_s, got {self.max_bucket_s!r}")
        if not self.scales or any((not isinstance(k, int)) or k < 1 for k in self.scales):
            raise ValueError(f"scales must be positive integers, got {self.scales!r}")
        if self.headline_scale not in self.scales:
            raise ValueError(f"headline_scale must be one of scales {self.scales!r}, got {self.headline_scale!r}")
        if self.min_buckets < 3 or self.window_buckets < self.min_buckets:
            raise ValueError(
                f"min_buckets must be >= 3 and <= window_buckets, got {self.min_buckets!r}/{self.window_buckets!r}"
            )
        if not self.window_buckets >= 3 * max(self.scales):
            raise ValueError(f"window_buckets must hold 3 blocks of the largest scale, got {self.window_buckets!r}")
        if not (self.correction_tolerance > 1.0 and math.isfinite(self.correction_tolerance)):
            raise ValueError(f"correction_tolerance must be > 1, got {self.correction_tolerance!r}")
        if not (0.0 < self.ci_level < 1.0):
            raise ValueError(f"ci_level must be in (0, 1), got {self.ci_level!r}")
        return self


# --------------------------------------------------------------------------------------------------
# Pure functions
# --------------------------------------------------------------------------------------------------


def aggregate_returns(returns: np.ndarray, durations_s: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Sum consecutive returns (and durations) in non-overlapping blocks of ``k``, newest blocks kept whole."""
    n = (returns.size // k) * k
    if n == 0:
        return np.empty(0), np.empty(0)
    r = returns[returns.size - n :].reshape(-1, k).sum(axis=1)
    dt = durations_s[durations_s.size - n :].reshape(-1, k).sum(axis=1)
    return r, dt


def realised_variance(returns: np.ndarray) -> float:
    """RV = Σ r² (squared log returns; includes jumps)."""
    return float(np.dot(returns, returns))


def bipower_variation(returns: np.ndarray) -> float:
    """BV = (π/2)·n/(n−1)·Σ_{i≥2}|r_i||r_{i−1}|, the jump-robust estimate of integrated variance."""
    n = returns.size
    if n < 2:
        return math.nan
    a = np.abs(returns)
    return _BV_SCALE * n / (n - 1) * float(np.dot(a[1:], a[:-1]))


def sigma_log_interval(sigma: float, n: int, theta: float, ci_level: float) -> tuple[float, float, float]:
    """(sd, low, high) of σ̂ from n returns when Var(σ̂²)/σ² ≈ θ/n; the interval is symmetric in log σ."""
    if not (n > 0 and math.isfinite(sigma) and sigma > 0):
        return math.nan, math.nan, math.nan
    rel = math.sqrt(theta / n)  # relative sd of σ̂²
    z = float(special.ndtri(0.5 + 0.5 * ci_level))
    return sigma * rel / 2.0, sigma * math.exp(-0.5 * z * rel), sigma * math.exp(0.5 * z * rel)


# --------------------------------------------------------------------------------------------------
# The online estimator
# --------------------------------------------------------------------------------------------------


_SCALE_KEYS: dict[tuple[type, int], tuple[str, str, str]] = {}


def _scale_keys(k: int) -> tuple[str, str, str]:
    """The snapshot's detail keys for aggregation scale ``k`` (formatted once per scale and kept)."""
    keys = _SCALE_KEYS.get((type(k), k))
    if keys is None:
        keys = _SCALE_KEYS[(type(k), k)] = (f"sigma_total_k{k}", f"sigma_clean_k{k}", f"n_blocks_k{k}")
    return keys


@dataclass(frozen=True, slots=True)
class _Closed:
    """Statistics of the closed buckets, recomputed when a bucket closes."""

    n: int
    elapsed_s: float
    rv: float
    bv: float
    per_scale: dict[int, tuple[float, float, int]]  # k -> (sigma_total, sigma_clean, n_blocks)


def closed_statistics(
    returns: Sequence[float], durations_s: Sequence[float], scales: Sequence[int], headline: int
) -> _Closed:
    """The closed buckets' statistics at every scale: for each ``k``, the returns and durations summed in
    non-overlapping blocks of ``k`` (the newest blocks kept whole, as :func:`aggregate_returns`), then the blocks'
    elapsed time, RV and BV (:func:`realised_variance`, :func:`bipower_variation`); the headline scale's sums are
    the headline's.

    Plain loops, every sum taken oldest first, so that the compiled estimator's twin (``_estimators.pyx``:
    ``_closed_sums``) gives the same bits in C on every CPU (numpy's pairwise sums and BLAS dot products are not
    written down, and differ between machines).
    """
    size = len(returns)
    per_scale: dict[int, tuple[float, float, int]] = {}
    n = 0
    elapsed = rv_h = 0.0
    bv_h = math.nan
    for k in scales:
        blocks = size // k
        i = size - blocks * k
        t = rv = cross = prev = 0.0
        for b in range(blocks):
            rb = returns[i]
            tb = durations_s[i]
            for j in range(i + 1, i + k):
                rb += returns[j]
                tb += durations_s[j]
            i += k
            t += tb
            rv += rb * rb
            a = abs(rb)
            if b:
                cross += a * prev
            prev = a
        bv = _BV_SCALE * blocks / (blocks - 1) * cross if blocks >= 2 else math.nan
        if blocks >= 2 and t > 0:
            per_scale[k] = (math.sqrt(rv / t), math.sqrt(bv / t), blocks)
        else:
            per_scale[k] = (math.nan, math.nan, blocks)
        if k == headline:
            n, elapsed, rv_h, bv_h = blocks, t, rv, bv
    return _Closed(n, elapsed, rv_h, bv_h, per_scale)


class PySigmaEstimator:
    """Online σ per √second (fraction of price) from mids, on a volume clock (see the module docstring).

    Examples
    --------
    >>> est = SigmaEstimator(SigmaParams(min_buckets=3, window_buckets=12, target_bucket_s=1.0))
    >>> for i, m in enumerate([100.0, 100.1, 100.0, 100.1, 100.0]):
    ...     est.update(i * 1_000_000_000, m)
    >>> est.snapshot(4_000_000_000).state.value
    'ok'
    """

    name = "sigma"

    def __init__(self, params: SigmaParams | None = None) -> None:
        self.params = (params or SigmaParams()).validate()
        p = self.params
        self._returns: deque[float] = deque(maxlen=p.window_buckets)
        self._durations: deque[float] = deque(maxlen=p.window_buckets)
        self._volume_hist: deque[tuple[int, float]] = deque()
        self._volume_hist_sum = 0.0
        self._lookback_ns = int(p.volume_lookback_s * _NS_PER_S)
        self._steady = False  # see update_trusted
        self._first_ns: int | None = None
        self._last_input_ns = 0
        self._open_ns = 0
        self._open_mid = math.nan
        self._open_volume = 0.0
        self._last_mid = math.nan
        self._on_volume_clock = False
        self._bucket_volume = math.nan
        self._closed = _Closed(0, 0.0, 0.0, math.nan, {})
        self._decay = 0.5 ** (1.0 / p.correction_half_life_buckets)
        self._ewma_realised = 0.0
        self._ewma_predicted = 0.0
        self._n_checked = 0
        # defer_closed: a bucket's close only appends its return; the window's statistics (numpy over the window,
        # the expensive step) wait for settle(). MarketEstimators sets it and settles in its refresh step, after
        # the event, so no quoting event pays for them; until then every read sees the statistics before that
        # bucket. Off (the default), they are recomputed at the close, as a standalone estimator expects.
        self.defer_closed = False
        self.closed_stale = False

    # -- mutation ---------------------------------------------------------------------------------

    def settle(self) -> None:
        """Recompute the closed buckets' statistics if a close deferred them (``defer_closed``)."""
        if self.closed_stale:
            self._closed = self._compute_closed()
            self.closed_stale = False

    def update(self, ts_ns: int, mid: float, volume: float = 0.0) -> None:
        """Feed one mid observation (quote currency) at ``ts_ns`` with the base volume traded since the last."""
        if not (isinstance(mid, (int, float)) and math.isfinite(mid) and mid > 0):
            raise ValueError(f"mid must be a finite positive number, got {mid!r}")
        if not (isinstance(volume, (int, float)) and math.isfinite(volume) and volume >= 0):
            raise ValueError(f"volume must be a finite non-negative number, got {volume!r}")
        self.update_trusted(ts_ns, mid, volume)

    def update_trusted(self, ts_ns: int, mid: float, volume: float = 0.0) -> None:
        """:meth:`update` without the input checks, for callers that feed validated top-of-book events
        (:class:`~apps.engine.estimators.market.MarketEstimators`); this runs once per top-of-book change."""
        if self._steady and volume == 0 and ts_ns >= self._last_input_ns:
            # Steady state: a full lookback of history, on the volume clock, no trade since the last call
            # and nothing due to expire. Then the bucket volume cannot have changed and the open bucket was
            # below it, so only the max_bucket_s deadline can close it (the full path below gives the same).
            hist = self._volume_hist
            if not (hist and hist[0][0] < ts_ns - self._lookback_ns):
                self._last_input_ns = ts_ns
                self._last_mid = mid
                elapsed_s = (ts_ns - self._open_ns) / _NS_PER_S
                if elapsed_s > 0 and elapsed_s >= self.params.max_bucket_s:
                    self._close_bucket(ts_ns, mid, elapsed_s)
                return
        if self._first_ns is None:
            self._first_ns = ts_ns
            self._open_ns, self._open_mid = ts_ns, mid
        if ts_ns > self._last_input_ns:
            self._last_input_ns = ts_ns
        self._last_mid = mid
        hist = self._volume_hist
        if volume > 0:
            hist.append((ts_ns, volume))
            self._volume_hist_sum += volume
            self._open_volume += volume
        if hist and hist[0][0] < ts_ns - self._lookback_ns:
            cutoff = ts_ns - self._lookback_ns
            while hist and hist[0][0] < cutoff:
                self._volume_hist_sum -= hist.popleft()[1]
            if not hist:
                self._volume_hist_sum = 0.0

        elapsed_ns = ts_ns - self._open_ns
        if elapsed_ns <= 0:
            self._steady = False
            return
        elapsed_s = elapsed_ns / _NS_PER_S
        p = self.params
        history_s = (ts_ns - self._first_ns) / _NS_PER_S
        if history_s > p.volume_lookback_s:
            history_s = p.volume_lookback_s
        vol_sum = self._volume_hist_sum
        self._on_volume_clock = history_s >= p.min_volume_history_s and vol_sum > 0
        if self._on_volume_clock:
            self._bucket_volume = vol_sum / history_s * p.target_bucket_s
            close = self._open_volume >= self._bucket_volume or elapsed_s >= p.max_bucket_s
        else:
            self._bucket_volume = math.nan
            close = elapsed_s >= p.target_bucket_s
        self._steady = self._on_volume_clock and history_s == p.volume_lookback_s
        if close:
            self._close_bucket(ts_ns, mid, elapsed_s)

    def _close_bucket(self, ts_ns: int, mid: float, elapsed_s: float) -> None:
        r = math.log(mid / self._open_mid)
        if self._closed.n >= self.params.min_buckets:
            predicted = self._sigma_inventory_closed() ** 2 * elapsed_s
            if math.isfinite(predicted):
                self._ewma_realised = self._decay * self._ewma_realised + (1 - self._decay) * r * r
                self._ewma_predicted = self._decay * self._ewma_predicted + (1 - self._decay) * predicted
                self._n_checked += 1
        self._returns.append(r)
        self._durations.append(elapsed_s)
        self._open_ns, self._open_mid, self._open_volume = ts_ns, mid, 0.0
        if self.defer_closed:
            self.closed_stale = True  # settle() recomputes the statistics (see __init__)
        else:
            self._closed = self._compute_closed()

    def _compute_closed(self) -> _Closed:
        return closed_statistics(
            list(self._returns), list(self._durations), self.params.scales, self.params.headline_scale
        )

    # -- reading ----------------------------------------------------------------------------------

    def _sigma_inventory_closed(self) -> float:
        c = self._closed
        if c.elapsed_s <= 0:
            return math.nan
        return math.sqrt(max(c.rv, c.bv) / c.elapsed_s)

    def _open_contribution(self) -> tuple[float, float]:
        """(r², Δt) of the still-open bucket (only at the headline scale of one bucket)."""
        if not math.isfinite(self._open_mid) or not math.isfinite(self._last_mid):
            return 0.0, 0.0
        r = math.log(self._last_mid / self._open_mid)
        return r * r, max((self._last_input_ns - self._open_ns) / _NS_PER_S, 0.0)

    @property
    def sigma_clean(self) -> float:
        """Jump-robust σ per √second from bipower variation of closed buckets (NaN before two returns)."""
        c = self._closed
        return math.sqrt(c.bv / c.elapsed_s) if c.elapsed_s > 0 and math.isfinite(c.bv) else math.nan

    @property
    def sigma_total(self) -> float:
        """σ per √second from realised variance, jumps included, counting the still-open bucket."""
        c = self._closed
        r2, dt = self._open_contribution()
        t = c.elapsed_s + dt
        return math.sqrt((c.rv + r2) / t) if t > 0 and c.n > 0 else math.nan

    @property
    def sigma_for_spread(self) -> float:
        """σ for the half-spread: ``sigma_clean`` (see the rule in the module docstring)."""
        return self.sigma_clean

    @property
    def sigma_for_inventory(self) -> float:
        """σ for inventory risk: ``max(sigma_total, sigma_clean)`` (see the rule in the module docstring)."""
        total, clean = self.sigma_total, self.sigma_clean
        if math.isnan(clean):
            return total
        if math.isnan(total):
            return clean
        return max(total, clean)

    @property
    def correction_factor(self) -> float:
        """EWMA realised / EWMA one-step-ahead predicted bucket variance; ≈ 1 when σ is calibrated."""
        return self._ewma_realised / self._ewma_predicted if self._ewma_predicted > 0 else math.nan

    @property
    def last_input_ns(self) -> int:
        return self._last_input_ns

    def snapshot(self, now_ns: int) -> EstimatorSnapshot:
        """Read σ at ``now_ns``: value = sigma_clean (per √s), std/CI of it; the rest in ``detail``."""
        p = self.params
        c = self._closed
        clean, total = self.sigma_clean, self.sigma_total
        std, lo, hi = sigma_log_interval(clean, c.n, _THETA_BV, p.ci_level)
        total_std, _, _ = sigma_log_interval(total, c.n, _THETA_RV, p.ci_level)
        cf = self.correction_factor
        cf_flag = math.isfinite(cf) and not (1.0 / p.correction_tolerance <= cf <= p.correction_tolerance)
        detail: dict[str, float] = {
            "sigma_clean": clean,
            "sigma_total": total,
            "sigma_total_std": total_std,
            "sigma_spread": self.sigma_for_spread,
            "sigma_inventory": self.sigma_for_inventory,
            "jump_share": 1.0 - c.bv / c.rv if c.rv > 0 and math.isfinite(c.bv) else math.nan,
            "n_buckets": float(c.n),
            "window_s": c.elapsed_s,
            "mean_bucket_s": c.elapsed_s / c.n if c.n else math.nan,
            "volume_clock": 1.0 if self._on_volume_clock else 0.0,
            "bucket_volume": self._bucket_volume,
            "correction_factor": cf,
            "correction_flag": 1.0 if cf_flag else 0.0,
            "correction_n": float(self._n_checked),
        }
        for k, (s_tot, s_cln, nb) in c.per_scale.items():
            key_tot, key_cln, key_nb = _scale_keys(k)
            detail[key_tot] = s_tot
            detail[key_cln] = s_cln
            detail[key_nb] = float(nb)
        fine, coarse = c.per_scale.get(min(p.scales)), c.per_scale.get(max(p.scales))
        if fine and coarse and coarse[0] > 0:
            detail["noise_ratio"] = (fine[0] / coarse[0]) ** 2

        state, message = self._state(now_ns, clean, total)
        if cf_flag:
            flag = (
                f"variance correction factor {cf:.2f} outside [{1 / p.correction_tolerance:.2f}, "
                f"{p.correction_tolerance:.2f}]: realised bucket variance "
                f"{'exceeds' if cf > 1 else 'falls short of'} the one-step prediction"
            )
            message = f"{message}; {flag}" if message else flag
        return EstimatorSnapshot(self.name, clean, std, state, self._last_input_ns, lo, hi, detail, message)

    def _state(self, now_ns: int, clean: float, total: float) -> tuple[EstimatorState, str]:
        p = self.params
        if self._first_ns is None:
            return EstimatorState.WARMING, "no input yet"
        idle_s = (now_ns - self._last_input_ns) / _NS_PER_S
        if idle_s > p.stale_after_s:
            return EstimatorState.STALE, f"no input for {idle_s:.1f} s (stale after {p.stale_after_s:g} s)"
        if self._closed.n < p.min_buckets:
            return EstimatorState.WARMING, f"{self._closed.n} of {p.min_buckets} buckets"
        for label, s in (("sigma_clean", clean), ("sigma_total", total)):
            if not (math.isfinite(s) and p.sigma_min <= s <= p.sigma_max):
                return EstimatorState.FAILED, (
                    f"{label} {s:.3g} per sqrt(s) outside the plausible range [{p.sigma_min:g}, {p.sigma_max:g}]"
                )
        return EstimatorState.OK, ""


# The compiled classes (apps/engine/estimators/_estimators.pyx, same API, same results) unless MM_PURE_PYTHON=1 is
# set or the module did not build (apps.engine.compiled, docs/compiled-core.md); the Py* classes stay the reference.
_compiled = compiled.load("apps.engine.estimators._estimators")
SigmaEstimator: type[PySigmaEstimator] = _compiled.SigmaEstimator if _compiled is not None else PySigmaEstimator
ESTIMATORS_COMPILED: bool = _compiled is not None
