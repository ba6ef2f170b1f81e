"""Kalman filter for the price drift μ with Ornstein–Uhlenbeck dynamics and online-adapted θ and noise.

What it estimates
    The short-term drift μ of the log price: the expected fractional mid change per second, with its
    posterior variance. μ = 1e-5 means the mid is expected to rise by 0.1 bp per second.

Model
    State:        dμ = −θ μ dt + σ_μ dW  (Ornstein–Uhlenbeck), discretised exactly over each Δt:
                  μ(t+Δ) = a μ(t) + w,   a = e^{−θΔ},   w ~ N(0, Q),   Q = σ_μ² (1 − e^{−2θΔ}) / (2θ)
    Observations: z = μ + ε,  ε ~ N(0, R_source), one scalar per named source (``OBSERVATION_SOURCES``).
    Predict:      m⁻ = a m,   P⁻ = a² P + Q
    Update:       ν = z − m⁻,  S = P⁻ + R,  K = P⁻/S,  m = m⁻ + K ν,  P = (1 − K) P⁻

Symbols and units
    μ, m, z   fraction of price per second (1/s)
    P, R, S   variance of those: 1/s²
    θ         mean-reversion rate of μ, 1/s (1/θ is the drift's memory)
    σ_μ²      process-noise intensity, 1/s³ (so that σ_μ²/(2θ), the stationary variance of μ, is in 1/s²)

Each source turns its raw signal into an unbiased, noisy reading of μ in 1/s *before* calling ``update``
(e.g. a microprice offset δ_mp over a horizon h gives z = δ_mp / h). Its observation variance R is a
documented parameter (``DriftParams.obs_var_*``) until measured (e.g. from markouts), and may be overridden
per call.

Adaptation (innovation-based recursive maximum likelihood)
    After each update, ln θ and ln σ_μ² take one stochastic-gradient step up the one-step predictive
    log-likelihood ℓ = −½ ln S − ½ ν²/S (gradients truncated to the current step):
        ∂ℓ/∂ ln σ_μ² = ½ (ν²/S − 1) · Q / S        (normalised innovation squared NIS = ν²/S vs its mean 1)
        ∂ℓ/∂ ln θ    = θ [ (ν/S) ∂m⁻/∂θ + ½ (ν²/S − 1)/S · ∂P⁻/∂θ ],   ∂m⁻/∂θ = −Δ m⁻
    Persistent NIS > 1 therefore raises the process noise, NIS < 1 lowers it; innovations that keep the
    sign of m⁻ (the drift outlives its predicted decay) lower θ. Steps are scaled by a running RMS of the
    gradient (so ``adapt_rate`` is the typical log-step per observation). θ is kept inside
    [theta_min_per_s, theta_max_per_s]; a binding bound is reported in the snapshot's detail.

Assumptions
    Observation errors are Gaussian, independent across sources and time, and unbiased; R is known.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from apps.engine import compiled
from apps.engine.estimators.base import EstimatorSnapshot, EstimatorState
from apps.engine.validation import positive

NS_PER_S = 1_000_000_000

OBSERVATION_SOURCES: tuple[str, ...] = ("trade_flow", "momentum", "microprice")


@dataclass(frozen=True, slots=True)
class DriftParams:
    """Parameters of ``KalmanDrift``.

    Parameters
    ----------
    theta_per_s : float
        Prior mean-reversion rate θ of the drift, 1/s (1/30 ⇒ a drift forgets itself in about 30 s).
    drift_std_per_s : float
        Prior stationary standard deviation of μ, fraction of price per second. Sets the prior process
        noise σ_μ² = 2 θ drift_std² and the initial posterior variance.
    obs_var_trade_flow : float
        R for source 'trade_flow' (signed taker-flow imbalance mapped to a drift reading), 1/s².
    obs_var_momentum : float
        R for source 'momentum' (recent mid return divided by its window), 1/s².
    obs_var_microprice : float
        R for source 'microprice' (microprice offset from mid divided by its horizon), 1/s².
    adapt_rate : float
        Typical step of ln θ and ln σ_μ² per observation, dimensionless; 0 disables adaptation.
    warmup_obs : int
        Observations before adaptation starts and before the state can be OK.
    nis_halflife_obs : float
        Half-life, in observations, of the running means of NIS and of the squared gradients.
    theta_min_per_s, theta_max_per_s : float
        Range allowed for the adapted θ, 1/s.
    stale_after_s : float
        With no observation for this long the state is STALE, s.
    nis_fail_above : float
        After warm-up, a running mean NIS above this means the filter's uncertainty is not credible:
        state FAILED. (A consistent filter has mean NIS 1.)
    """

    theta_per_s: float = 1.0 / 30.0
    drift_std_per_s: float = 1e-5
    obs_var_trade_flow: float = 4e-10  # (2e-5 /s)²
    obs_var_momentum: float = 9e-10  # (3e-5 /s)²
    obs_var_microprice: float = 1e-10  # (1e-5 /s)²
    adapt_rate: float = 0.01
    warmup_obs: int = 50
    nis_halflife_obs: float = 200.0
    theta_min_per_s: float = 1.0 / 3600.0
    theta_max_per_s: float = 10.0
    stale_after_s: float = 30.0
    nis_fail_above: float = 4.0

    def validate(self) -> DriftParams:
        for name in (
            "theta_per_s",
            "drift_std_per_s",
            "obs_var_trade_flow",
            "obs_var_momentum",
            "obs_var_microprice",
            "nis_halflife_obs",
            "theta_min_per_s",
            "theta_max_per_s",
            "stale_after_s",
            "nis_fail_above",
        ):
            positive(name, getattr(self, name), "DriftParams")
        if not (math.isfinite(self.adapt_rate) and self.adapt_rate >= 0):
            raise ValueError(f"adapt_rate must be a finite number >= 0, got {self.adapt_rate!r}")
        if not (isinstance(self.warmup_obs, int) and self.warmup_obs >= 0):
            raise ValueError(f"warmup_obs must be an integer >= 0, got {self.warmup_obs!r}")
        if not self.theta_min_per_s <= self.theta_per_s <= self.theta_max_per_s:
            raise ValueError(
                f"theta_per_s must lie in [theta_min_per_s, theta_max_per_s] = "
                f"[{self.theta_min_per_s}, {self.theta_max_per_s}], got {self.theta_per_s!r}"
            )
        return self

    def obs_var(self, source: str) -> float:
        if source not in OBSERVATION_SOURCES:
            raise ValueError(f"unknown observation source {source!r}; expected one of {OBSERVATION_SOURCES}")
        return getattr(self, f"obs_var_{source}")


def ou_transition(theta_per_s: float, noise_var_per_s3: float, dt_s: float) -> tuple[float, float]:
    """Exact OU transition over ``dt_s``: (a, Q) = (e^{−θΔ}, σ_μ² (1 − e^{−2θΔ}) / (2θ))."""
    a = math.exp(-theta_per_s * dt_s)
    q = noise_var_per_s3 * -math.expm1(-2.0 * theta_per_s * dt_s) / (2.0 * theta_per_s)
    return a, q


class PyKalmanDrift:
    """Posterior of the price drift μ (fraction of price per second) from named noisy readings.

    See the module docstring for the model, symbols, units and the adaptation rule.

    Examples
    --------
    >>> f = PyKalmanDrift(DriftParams(adapt_rate=0.0))
    >>> f.update(0, "microprice", 2e-5)
    >>> 0 < f.mean_per_s < 2e-5
    True
    """

    def __init__(self, params: DriftParams | None = None, *, name: str = "drift") -> None:
        self.params = (params or DriftParams()).validate()
        self.name = name
        p = self.params
        self._theta = p.theta_per_s
        self._noise_var = 2.0 * p.theta_per_s * p.drift_std_per_s**2
        self._m = 0.0
        self._p = p.drift_std_per_s**2  # start from the stationary prior
        self._last_ns: int | None = None
        self._n_obs = 0
        self._nis_mean = 1.0
        self._g2_theta = 0.0
        self._g2_noise = 0.0
        self._theta_at_bound = False
        self._last_nis = math.nan

    # --- read ---------------------------------------------------------------------------------

    @property
    def mean_per_s(self) -> float:
        """Posterior mean of μ at the last update, 1/s."""
        return self._m

    @property
    def var_per_s2(self) -> float:
        """Posterior variance of μ at the last update, 1/s²."""
        return self._p

    @property
    def theta_per_s(self) -> float:
        return self._theta

    @property
    def process_noise_var(self) -> float:
        """σ_μ², 1/s³."""
        return self._noise_var

    @property
    def stationary_std_per_s(self) -> float:
        """√(σ_μ²/(2θ)), the prior std of μ far from any observation, 1/s."""
        return math.sqrt(self._noise_var / (2.0 * self._theta))

    @property
    def n_obs(self) -> int:
        return self._n_obs

    @property
    def nis_mean(self) -> float:
        """Running mean of the normalised innovation squared ν²/S (1 for a consistent filter)."""
        return self._nis_mean

    def _dt_s(self, ts_ns: int) -> float:
        if self._last_ns is None:
            return 0.0
        dt = (ts_ns - self._last_ns) / NS_PER_S
        if dt < 0:
            raise ValueError(f"{self.name}: time went backwards ({ts_ns} < last update {self._last_ns})")
        return dt

    def predict(self, now_ns: int) -> tuple[float, float]:
        """Predicted (mean 1/s, variance 1/s²) of μ at ``now_ns``, without changing the state."""
        a, q = ou_transition(self._theta, self._noise_var, self._dt_s(now_ns))
        return a * self._m, a * a * self._p + q

    def expected_return(self, horizon_s: float, now_ns: int) -> float:
        """E[∫₀ᵀ μ dt] = m (1 − e^{−θT}) / θ: expected fractional mid change over ``horizon_s`` seconds."""
        positive("horizon_s", horizon_s, "KalmanDrift")
        m, _ = self.predict(now_ns)
        return m * -math.expm1(-self._theta * horizon_s) / self._theta

    # --- write --------------------------------------------------------------------------------

    def advance(self, ts_ns: int) -> None:
        """Time update only (no observation): the mean decays toward 0 and the variance grows."""
        self._m, self._p = self.predict(ts_ns)
        self._last_ns = ts_ns if self._last_ns is None else max(self._last_ns, ts_ns)

    def update(self, ts_ns: int, source: str, drift_obs_per_s: float, *, obs_var: float | None = None) -> None:
        """Assimilate one reading z (1/s) of μ from ``source`` at ``ts_ns``.

        ``obs_var`` (1/s²) overrides the source's documented variance for this reading.
        """
        r = self.params.obs_var(source) if obs_var is None else obs_var
        positive("obs_var", r, "KalmanDrift")
        if not (isinstance(drift_obs_per_s, (int, float)) and math.isfinite(drift_obs_per_s)):
            raise ValueError(f"{self.name}: observation from {source!r} must be finite, got {drift_obs_per_s!r}")
        dt = self._dt_s(ts_ns)
        theta, noise = self._theta, self._noise_var
        a, q = ou_transition(theta, noise, dt)
        m_prior = a * self._m
        p_prior = a * a * self._p + q
        innov = drift_obs_per_s - m_prior
        s = p_prior + r
        gain = p_prior / s
        nis = innov * innov / s

        if self.params.adapt_rate > 0 and self._n_obs >= self.params.warmup_obs:
            # ∂P⁻/∂θ: from a² P and from Q(θ) at fixed σ_μ².
            dq_dtheta = noise * (dt * a * a / theta + math.expm1(-2 * theta * dt) / (2 * theta * theta))
            dp_dtheta = -2.0 * dt * a * a * self._p + dq_dtheta
            dm_dtheta = -dt * m_prior
            g_theta = theta * (innov / s * dm_dtheta + 0.5 * (nis - 1.0) / s * dp_dtheta)
            g_noise = 0.5 * (nis - 1.0) * q / s
            self._adapt(g_theta, g_noise)

        self._m = m_prior + gain * innov
        self._p = (1.0 - gain) * p_prior
        self._last_ns = ts_ns
        self._n_obs += 1
        w = 1.0 - 0.5 ** (1.0 / self.params.nis_halflife_obs)
        self._nis_mean += w * (nis - self._nis_mean)
        self._last_nis = nis

    def _adapt(self, g_theta: float, g_noise: float) -> None:
        p = self.params
        w = 1.0 - 0.5 ** (1.0 / p.nis_halflife_obs)
        self._g2_theta += w * (g_theta * g_theta - self._g2_theta)
        self._g2_noise += w * (g_noise * g_noise - self._g2_noise)
        if self._g2_theta > 0:
            log_theta = math.log(self._theta) + p.adapt_rate * g_theta / math.sqrt(self._g2_theta)
            lo, hi = math.log(p.theta_min_per_s), math.log(p.theta_max_per_s)
            self._theta_at_bound = not lo < log_theta < hi
            self._theta = math.exp(min(max(log_theta, lo), hi))
        if self._g2_noise > 0:
            self._noise_var *= math.exp(p.adapt_rate * g_noise / math.sqrt(self._g2_noise))

    # --- snapshot -----------------------------------------------------------------------------

    def snapshot(self, now_ns: int) -> EstimatorSnapshot:
        """Value: posterior mean of μ at ``now_ns`` (1/s); std: its posterior sd; 95 % credible interval."""
        p = self.params
        if self._last_ns is None:
            m, var = self._m, self._p
        else:
            m, var = self.predict(max(now_ns, self._last_ns))
        std = math.sqrt(var)
        if self._last_ns is None or self._n_obs < p.warmup_obs:
            state, message = EstimatorState.WARMING, f"{self._n_obs} observations < warmup_obs={p.warmup_obs}"
        elif (now_ns - self._last_ns) / NS_PER_S > p.stale_after_s:
            age = (now_ns - self._last_ns) / NS_PER_S
            state, message = EstimatorState.STALE, f"no observation for {age:.1f} s > stale_after_s={p.stale_after_s}"
        elif self._nis_mean > p.nis_fail_above:
            state = EstimatorState.FAILED
            message = f"innovations inconsistent with the posterior: mean NIS {self._nis_mean:.2f} > {p.nis_fail_above}"
        else:
            state, message = EstimatorState.OK, ""
        return EstimatorSnapshot(
            name=self.name,
            value=m,
            std=std,
            state=state,
            last_input_ns=self._last_ns or 0,
            ci_low=m - 1.96 * std,
            ci_high=m + 1.96 * std,
            detail={
                "theta_per_s": self._theta,
                "process_noise_var": self._noise_var,
                "stationary_std_per_s": self.stationary_std_per_s,
                "nis_mean": self._nis_mean,
                "last_nis": self._last_nis,
                "n_obs": float(self._n_obs),
                "theta_at_bound": 1.0 if self._theta_at_bound else 0.0,
            },
            message=message,
        )


# The compiled class (apps/engine/estimators/_estimators.pyx: update and snapshot in C, the same results) unless
# MM_PURE_PYTHON=1 is set or the module did not build (apps.engine.compiled); PyKalmanDrift stays the reference.
_compiled = compiled.load("apps.engine.estimators._estimators")
KalmanDrift: type[PyKalmanDrift] = _compiled.KalmanDrift if _compiled is not None else PyKalmanDrift
