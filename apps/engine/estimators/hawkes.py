"""Self-exciting (Hawkes) arrival intensity with an exponential kernel.

What it estimates
    The conditional arrival rate λ(t) of a stream of events (market trades, or our own fills on one side),
    and, by maximum likelihood, the parameters of the process that generates them.

Model
    λ(t) = μ + Σ_{tᵢ < t} α · exp(−β (t − tᵢ))

Symbols and units
    μ  baseline intensity, events per second (``mu_per_s``)
    α  jump of the intensity caused by one event, events per second (``alpha_per_s``)
    β  decay rate of that jump, per second (``beta_per_s``); 1/β is the excitation's time constant
    n = α/β  branching ratio, dimensionless: the expected number of events directly triggered by one event.
       The process is stationary only for n < 1; its mean rate is then μ / (1 − n).

Assumptions
    Events are points in time (simultaneous events are allowed, but carry no marks: sizes are ignored);
    the kernel is a single exponential; parameters are constant over the calibration window.

Contents
    ``HawkesParams``      the three parameters, validated.
    ``HawkesIntensity``   online O(1) intensity: ``update(ts_ns)`` per event, ``intensity(now_ns)``.
    ``hawkes_loglik``     the exact log-likelihood on a window, O(N) by recursion.
    ``fit_hawkes``        maximum-likelihood calibration with standard errors and goodness-of-fit checks.
    ``FillCascade``       per-side cascade flag for our own fills, held for the fitted decay time.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import stats

from apps.engine import compiled
from apps.engine.cfloat import c_exp as _exp
from apps.engine.estimators.base import EstimatorSnapshot, EstimatorState
from apps.engine.market.events import Fill, Side
from apps.engine.validation import non_negative, positive

NS_PER_S = 1_000_000_000


# --- parameters ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HawkesParams:
    """Parameters of an exponential-kernel Hawkes process.

    Parameters
    ----------
    mu_per_s : float
        Baseline intensity μ, events per second. Must be > 0.
    alpha_per_s : float
        Excitation jump α per event, events per second. Must be >= 0 (0 is a Poisson process).
    beta_per_s : float
        Excitation decay rate β, per second. Must be > 0.

    The stationarity condition α/β < 1 is enforced: a non-stationary parameter set cannot describe a
    steady market and is rejected rather than used.
    """

    mu_per_s: float = 1.0
    alpha_per_s: float = 0.5
    beta_per_s: float = 1.0

    def validate(self) -> HawkesParams:
        positive("mu_per_s", self.mu_per_s, "HawkesParams")
        non_negative("alpha_per_s", self.alpha_per_s, "HawkesParams")
        positive("beta_per_s", self.beta_per_s, "HawkesParams")
        if self.alpha_per_s >= self.beta_per_s:
            raise ValueError(
                f"branching ratio alpha_per_s/beta_per_s must be < 1, got "
                f"{self.alpha_per_s!r}/{self.beta_per_s!r} = {self.branching_ratio:.4g}"
            )
        return self

    @property
    def branching_ratio(self) -> float:
        """n = α/β, dimensionless."""
        return self.alpha_per_s / self.beta_per_s

    @property
    def stationary_rate_per_s(self) -> float:
        """Mean event rate μ/(1 − n), events per second."""
        return self.mu_per_s / (1.0 - self.branching_ratio)


# --- online intensity ---------------------------------------------------------------------------


class PyHawkesIntensity:
    """Online intensity λ(t) of a Hawkes process with known parameters, O(1) per event.

    State kept: S = Σ exp(−β (t_last − tᵢ)) (the decayed event count at the last event, dimensionless)
    and D = Σ (t_last − tᵢ) exp(−β (t_last − tᵢ)) (seconds), which gives ∂λ/∂β for the delta-method
    standard error. Both decay exactly between events:
    S(t + Δ) = e^{−βΔ} S(t),  D(t + Δ) = e^{−βΔ} (D(t) + Δ S(t)).

    Parameters
    ----------
    params : HawkesParams
        μ, α, β. Validated on construction.
    cov : array (3, 3), optional
        Covariance of (μ, α, β) from a fit (``HawkesFit.cov``); gives ``snapshot().std`` by the delta
        method. Without it the std is NaN and the state is WARMING (parameters are a prior, not a fit).
    name : str
        Name in the snapshot.

    Examples
    --------
    >>> h = HawkesIntensity(HawkesParams(mu_per_s=1.0, alpha_per_s=0.5, beta_per_s=1.0))
    >>> h.update(0)
    >>> round(h.intensity(NS_PER_S), 6)  # 1 + 0.5·e^{-1}
    1.18394
    """

    def __init__(self, params: HawkesParams, *, cov: np.ndarray | None = None, name: str = "hawkes_intensity") -> None:
        self.params = params.validate()
        self.cov = None if cov is None else np.asarray(cov, dtype=float).reshape(3, 3)
        self.name = name
        self._s = 0.0
        self._d_s = 0.0
        self._last_ns = 0
        self._n_events = 0

    @classmethod
    def from_fit(cls, fit: HawkesFit, *, name: str = "hawkes_intensity") -> PyHawkesIntensity:
        """Intensity with fitted parameters; raises ValueError when the fit is not usable."""
        if fit.state is not EstimatorState.OK:
            raise ValueError(f"cannot use a Hawkes fit in state {fit.state.value}: {fit.message}")
        return cls(fit.params, cov=fit.cov, name=name)

    @property
    def n_events(self) -> int:
        return self._n_events

    @property
    def last_event_ns(self) -> int:
        return self._last_ns

    def _decayed(self, now_ns: int) -> tuple[float, float]:
        if self._n_events == 0:
            return 0.0, 0.0
        dt_s = (now_ns - self._last_ns) / NS_PER_S
        if dt_s < 0:
            raise ValueError(f"{self.name}: time went backwards ({now_ns} < last event {self._last_ns})")
        decay = math.exp(-self.params.beta_per_s * dt_s)
        return decay * self._s, decay * (self._d_s + dt_s * self._s)

    def update(self, ts_ns: int) -> None:
        """Register one event at ``ts_ns`` (ns). Events must come in non-decreasing time."""
        s, d_s = self._decayed(ts_ns)
        self._s = s + 1.0
        self._d_s = d_s
        self._last_ns = ts_ns
        self._n_events += 1

    def decayed_count(self, now_ns: int) -> float:
        """S(t) = Σ exp(−β (t − tᵢ)), dimensionless: recent events weighted by their remaining excitation."""
        return self._decayed(now_ns)[0]

    def excess_intensity(self, now_ns: int) -> float:
        """λ(t) − μ = α S(t), events per second."""
        return self.params.alpha_per_s * self.decayed_count(now_ns)

    def intensity(self, now_ns: int) -> float:
        """λ(t) = μ + α S(t), events per second (the intensity just after any event at ``now_ns``)."""
        return self.params.mu_per_s + self.excess_intensity(now_ns)

    def intensity_std(self, now_ns: int) -> float:
        """Delta-method standard error of λ(t) from the fit covariance; NaN without one."""
        if self.cov is None:
            return math.nan
        s, d_s = self._decayed(now_ns)
        var = _quadratic_form((1.0, s, -self.params.alpha_per_s * d_s), self.cov)
        return math.sqrt(var) if var >= 0 else math.nan

    def snapshot(self, now_ns: int) -> EstimatorSnapshot:
        lam = self.intensity(now_ns)
        std = self.intensity_std(now_ns)
        if self.cov is None:
            state, message = EstimatorState.WARMING, "parameters are a prior, not a fit"
        else:
            state, message = EstimatorState.OK, ""
        ci_low = lam - 1.96 * std if math.isfinite(std) else math.nan
        ci_high = lam + 1.96 * std if math.isfinite(std) else math.nan
        p = self.params
        return EstimatorSnapshot(
            name=self.name,
            value=lam,
            std=std,
            state=state,
            last_input_ns=self._last_ns,
            ci_low=ci_low,
            ci_high=ci_high,
            detail={
                "mu_per_s": p.mu_per_s,
                "alpha_per_s": p.alpha_per_s,
                "beta_per_s": p.beta_per_s,
                "branching_ratio": p.branching_ratio,
                "excess_per_s": lam - p.mu_per_s,
                "n_events": float(self._n_events),
            },
            message=message,
        )


# --- likelihood ---------------------------------------------------------------------------------


def py_kernel_sums(gaps_s: np.ndarray, beta: float) -> tuple[np.ndarray, np.ndarray]:
    """A_i = Σ_{j<i} e^{−β(t_i − t_j)} and B_i = ∂A_i/∂β for sorted events with gaps t_i − t_{i−1}.

    Recursions: A_i = e^{−βΔ_i} (1 + A_{i−1}),  B_i = e^{−βΔ_i} (B_{i−1} − Δ_i (1 + A_{i−1})), A_0 = B_0 = 0.
    The reference; ``_kernel_sums`` is the compiled twin (``_estimators.kernel_sums``, the loop in C) when built.
    """
    n = gaps_s.size + 1
    decay = np.exp(-beta * gaps_s).tolist()
    gaps = gaps_s.tolist()
    a_list = [0.0] * n
    b_list = [0.0] * n
    a = b = 0.0
    for i in range(1, n):
        e = decay[i - 1]
        one_plus_a = 1.0 + a
        b = e * (b - gaps[i - 1] * one_plus_a)
        a = e * one_plus_a
        a_list[i] = a
        b_list[i] = b
    return np.asarray(a_list), np.asarray(b_list)


def _prepare(times_s: Sequence[float] | np.ndarray, start_s: float | None, end_s: float | None):
    t = np.asarray(times_s, dtype=float)
    if t.ndim != 1:
        raise ValueError(f"times_s must be one-dimensional, got shape {t.shape}")
    if t.size and not np.all(np.isfinite(t)):
        raise ValueError("times_s contains NaN or infinite values")
    if t.size > 1 and np.any(np.diff(t) < 0):
        raise ValueError("times_s must be sorted in non-decreasing order")
    start = float(t[0]) if start_s is None and t.size else float(start_s if start_s is not None else 0.0)
    end = float(t[-1]) if end_s is None and t.size else float(end_s if end_s is not None else start)
    if t.size and (t[0] < start or t[-1] > end):
        raise ValueError(f"events must lie in [start_s, end_s] = [{start}, {end}]")
    if not end > start:
        raise ValueError(f"the window must have positive length, got start_s={start}, end_s={end}")
    # Shift to the window start: keeps full float precision when times are epoch seconds.
    return t - start, end - start


def py_loglik_derivs(
    rel_t: np.ndarray, gaps: np.ndarray, length_s: float, mu: float, alpha: float, beta: float
) -> tuple[float, tuple[float, float, float], tuple[float, float, float, float, float, float]]:
    """The log-likelihood, its gradient and its Hessian in the natural parameters (μ, α, β), in one pass.

    With the kernel sums A_i, B_i = ∂A_i/∂β (:func:`py_kernel_sums`) and C_i = ∂²A_i/∂β²
    (C_i = −Δ_i B_i + e^{−βΔ_i}(C_{i−1} − Δ_i B_{i−1})), λ_i = μ + αA_i, τ_i = T − t_i, S = Σ(1 − e^{−βτ_i}),
    S' = Σ τ_i e^{−βτ_i} and S'' = Σ τ_i² e^{−βτ_i}:

    * ℓ = Σ ln λ_i − μT − (α/β)S
    * ℓ_μ = Σ 1/λ_i − T,  ℓ_α = Σ A_i/λ_i − S/β,  ℓ_β = αΣ B_i/λ_i + αS/β² − αS'/β
    * ℓ_μμ = −Σ 1/λ_i²,  ℓ_μα = −Σ A_i/λ_i²,  ℓ_μβ = −αΣ B_i/λ_i²,  ℓ_αα = −Σ A_i²/λ_i²,
      ℓ_αβ = Σ B_i/λ_i − αΣ A_iB_i/λ_i² + S/β² − S'/β,
      ℓ_ββ = αΣ C_i/λ_i − α²Σ B_i²/λ_i² − 2αS/β³ + 2αS'/β² + αS''/β

    Returns ``(ℓ, (ℓ_μ, ℓ_α, ℓ_β), (ℓ_μμ, ℓ_μα, ℓ_μβ, ℓ_αα, ℓ_αβ, ℓ_ββ))``; ℓ = −∞ and NaN derivatives when some
    λ_i ≤ 0. The reference: plain floats, the C library's ``exp``/``log`` (``math``), every sum in event order, so that
    the compiled twin (``_estimators.loglik_derivs``) gives the same bits with the same operations in C on every CPU
    (NumPy's vector kernels and pairwise sums differ in the last bits between AVX2 and AVX-512 machines).
    """
    t = np.asarray(rel_t, dtype=float).tolist()
    g = np.asarray(gaps, dtype=float).tolist()
    if len(g) != max(len(t) - 1, 0):
        raise ValueError(f"loglik_derivs: {len(g)} gaps for {len(t)} events")
    nan = math.nan
    neg_beta = -beta
    a = b = c = 0.0
    s_log = s_inv = s_a = s_b = s_c = 0.0
    s_ii = s_ai = s_bi = s_aa = s_ab = s_bb = 0.0
    s1 = s1p = s1pp = 0.0
    for i in range(len(t)):
        if i:
            gi = g[i - 1]
            e = _exp(neg_beta * gi)
            one_plus_a = 1.0 + a
            b_new = e * (b - gi * one_plus_a)
            c = -gi * b_new + e * (c - gi * b)
            b = b_new
            a = e * one_plus_a
        lam = mu + alpha * a
        if lam <= 0.0:
            return -math.inf, (nan, nan, nan), (nan, nan, nan, nan, nan, nan)
        tail = length_s - t[i]
        et = _exp(neg_beta * tail)
        s1 += 1.0 - et
        s1p += tail * et
        s1pp += tail * tail * et
        s_log += math.log(lam)  # lam > 0 or NaN here: no error
        inv = 1.0 / lam
        inv2 = inv * inv
        s_inv += inv
        s_a += a * inv
        s_b += b * inv
        s_c += c * inv
        s_ii += inv2
        s_ai += a * inv2
        s_bi += b * inv2
        s_aa += a * a * inv2
        s_ab += a * b * inv2
        s_bb += b * b * inv2
    beta2 = beta * beta
    ll = s_log - mu * length_s - alpha / beta * s1
    grad = (s_inv - length_s, s_a - s1 / beta, alpha * s_b + alpha / beta2 * s1 - alpha / beta * s1p)
    hess = (
        -s_ii,
        -s_ai,
        -alpha * s_bi,
        -s_aa,
        s_b - alpha * s_ab + s1 / beta2 - s1p / beta,
        alpha * s_c
        - alpha * alpha * s_bb
        - 2.0 * alpha * s1 / (beta2 * beta)
        + 2.0 * alpha * s1p / beta2
        + alpha * s1pp / beta,
    )
    return ll, grad, hess


def hawkes_loglik(
    times_s: Sequence[float] | np.ndarray,
    params: HawkesParams,
    *,
    start_s: float | None = None,
    end_s: float | None = None,
) -> float:
    """Exact log-likelihood of event times on the window [start_s, end_s] (seconds).

    ℓ = Σᵢ ln λ(tᵢ) − μ (T − t₀) − (α/β) Σᵢ (1 − e^{−β(T − tᵢ)}), computed in O(N) by recursion.
    The window defaults to [first event, last event]. ``params`` is not required to be stationary here.
    """
    rel_t, length = _prepare(times_s, start_s, end_s)
    return _loglik_derivs(rel_t, np.diff(rel_t), length, params.mu_per_s, params.alpha_per_s, params.beta_per_s)[0]


# --- calibration --------------------------------------------------------------------------------

# The fit maximises the likelihood over (ln μ, ln α, ln β) in a box by Newton's method with the analytic Hessian,
# damped (Levenberg–Marquardt) where the Hessian is not negative definite or a step does not raise the likelihood, the
# coordinates pinned at a bound by the gradient held there. It replaced scipy's SLSQP (2026-12-06): three parameters
# need a handful of Newton steps, where SLSQP spent ~45 evaluations and most of a fit in its Python wrapper, and
# SLSQP's BLAS calls (OpenBLAS kernels chosen by CPU) made the fitted parameters differ in the last bits between
# machines. Converged: the projected gradient in log parameters within _GTOL·(1 + |ℓ|) (the parameters then sit within
# ~1e-9 relative of the optimum), or a step that moved nothing. A step changes no log parameter by more than
# _MAX_STEP: where the likelihood is nearly flat (no self-excitation: α → 0 leaves β undetermined) a full Newton step
# would jump to a bound and stop at a worse stationary point there.
_GTOL = 1e-9
_MAX_ITER = 200
# cold starts: β as a multiple of the mean event rate, with α = β/2 and μ half the rate; then a "trend" start, a decay
# time ten windows long and α·N half the rate (the rate grows by half over the window), from which a trending window
# reaches its non-stationary optimum (β at its lower bound, α small; the fit then says FAILED, not "no excitation").
_COLD_STARTS = (0.05, 0.5, 5.0, 50.0, 500.0)
# A warm re-fit also starts from the previous fit's branching ratio with β (and α) 10x smaller and larger: clustered
# timestamps give the likelihood a maximum per time scale. On the 75 warm re-fits of the LOBSTER AMZN run, the best
# optimum inside the bounds (over these starts, ±100x, and the six cold starts) was missed by the warm start alone in 4,
# with these two more starts in 1 (±100x as well: 1; the cold starts alone: 2). SLSQP ended at a bound in 3 of them
# (β at 1e6 x the rate: same-timestamp executions read as an instant excitation) and below that optimum in 2.
_WARM_JUMPS = (0.0, -math.log(10.0), math.log(10.0))
_MAX_STEP = 1.0  # the largest change of a log parameter in one step (a factor e)


@dataclass(frozen=True, slots=True)
class _Optimum:
    x: tuple[float, float, float]  # (ln μ, ln α, ln β)
    loglik: float
    success: bool
    message: str
    iterations: int
    hess: tuple[float, ...]  # ℓ's Hessian in the natural parameters at x (py_loglik_derivs' six entries)


def _cholesky_solve(m: list[list[float]], v: list[float]) -> list[float] | None:
    """x with M x = v for a symmetric positive-definite M (Cholesky), None when M is not positive definite."""
    n = len(v)
    low = [[0.0] * n for _ in range(n)]
    for i in range(n):
        for j in range(i + 1):
            acc = m[i][j]
            for k in range(j):
                acc -= low[i][k] * low[j][k]
            if i == j:
                if not acc > 0.0:  # also NaN
                    return None
                low[i][i] = math.sqrt(acc)
            else:
                low[i][j] = acc / low[j][j]
    y = [0.0] * n
    for i in range(n):
        acc = v[i]
        for k in range(i):
            acc -= low[i][k] * y[k]
        y[i] = acc / low[i][i]
    x = [0.0] * n
    for i in range(n - 1, -1, -1):
        acc = y[i]
        for k in range(i + 1, n):
            acc -= low[k][i] * x[k]
        x[i] = acc / low[i][i]
    return x


def _log_space(rel_t, gaps, length_s: float, x: list[float]):
    """ℓ, its gradient and Hessian in u = (ln μ, ln α, ln β): g_u = p·ℓ_p, H_u = p_k p_l ℓ_kl + δ_kl p_k ℓ_k; and the
    natural parameters' Hessian it came from."""
    p = [_exp(v) for v in x]
    ll, g, h = _loglik_derivs(rel_t, gaps, length_s, p[0], p[1], p[2])
    full = ((h[0], h[1], h[2]), (h[1], h[3], h[4]), (h[2], h[4], h[5]))
    gu = [p[k] * g[k] for k in range(3)]
    hu = [[p[k] * p[j] * full[k][j] + (gu[k] if k == j else 0.0) for j in range(3)] for k in range(3)]
    return ll, gu, hu, h


def py_maximise(rel_t, gaps, length_s: float, x0, bounds) -> _Optimum:
    """The damped, projected Newton ascent described above, from ``x0`` within ``bounds`` (log parameters). The
    reference; ``_maximise`` is the compiled twin (``_estimators.maximise``, the whole loop in C) when built."""
    lo = [b[0] for b in bounds]
    hi = [b[1] for b in bounds]
    x = [min(max(float(v), lo[k]), hi[k]) for k, v in enumerate(x0)]
    f, g, h, hn = _log_space(rel_t, gaps, length_s, x)
    if not math.isfinite(f):
        return _Optimum(tuple(x), f, False, "the likelihood is not finite at the start", 0, hn)
    damp = 0.0
    for it in range(1, _MAX_ITER + 1):
        free = [k for k in range(3) if not ((x[k] <= lo[k] and g[k] <= 0.0) or (x[k] >= hi[k] and g[k] >= 0.0))]
        tol = _GTOL * (1.0 + abs(f))
        if not free or max(abs(g[k]) for k in free) <= tol:
            return _Optimum(tuple(x), f, True, "converged: projected gradient within tolerance", it - 1, hn)
        gf = [g[k] for k in free]
        while True:
            m = [[-h[k][j] + (damp * max(abs(h[k][k]), 1e-300) if k == j else 0.0) for j in free] for k in free]
            d = _cholesky_solve(m, gf)
            if d is not None:
                big = max(abs(dk) for dk in d)
                if big > _MAX_STEP:  # a trust region: flat directions would send a full step to a bound
                    d = [dk * (_MAX_STEP / big) for dk in d]
                x_new = list(x)
                for k, dk in zip(free, d, strict=True):
                    x_new[k] = min(max(x[k] + dk, lo[k]), hi[k])
                if x_new == x:
                    if all(x[k] + dk == x[k] for k, dk in zip(free, d, strict=True)):  # below rounding: done
                        return _Optimum(tuple(x), f, True, "converged: the step moves nothing", it - 1, hn)
                    # else the bounds clipped it all away: damping turns the step toward the gradient, which points
                    # into the box on every free coordinate
                else:
                    f_new, g_new, h_new, hn_new = _log_space(rel_t, gaps, length_s, x_new)
                    if f_new >= f:  # NaN and −∞ are not
                        x, f, g, h, hn = x_new, f_new, g_new, h_new, hn_new
                        damp = 0.0 if damp <= 1e-6 else damp / 10.0
                        break
            damp = 1e-6 if damp == 0.0 else damp * 10.0
            if damp > 1e12:
                return _Optimum(tuple(x), f, False, "no step raises the likelihood", it, hn)
    return _Optimum(tuple(x), f, False, f"no convergence in {_MAX_ITER} iterations", _MAX_ITER, hn)


@dataclass(frozen=True, slots=True)
class HawkesFit:
    """Result of ``fit_hawkes``.

    ``state`` is OK only for a converged fit with branching ratio n < 1; otherwise FAILED (or WARMING for
    too few events) and ``message`` says why. Rates in events per second, β per second.
    ``cov`` is the inverse observed information of (μ, α, β) (NaN when singular).
    ``loglik_poisson`` is the log-likelihood of the best constant-rate model on the same window, so
    ``lr_stat = 2 (loglik − loglik_poisson)`` tests for self-excitation. ``ks_stat``/``ks_pvalue`` test the
    time-rescaled inter-event compensators against Exp(1) (a correct model makes them i.i.d. Exp(1)).
    """

    mu_per_s: float
    alpha_per_s: float
    beta_per_s: float
    loglik: float
    stderr_mu: float
    stderr_alpha: float
    stderr_beta: float
    n_events: int
    duration_s: float
    state: EstimatorState
    message: str = ""
    converged: bool = False
    loglik_poisson: float = math.nan
    ks_stat: float = math.nan
    ks_pvalue: float = math.nan
    cov: np.ndarray = field(default_factory=lambda: np.full((3, 3), math.nan), repr=False)

    @property
    def branching_ratio(self) -> float:
        return self.alpha_per_s / self.beta_per_s if self.beta_per_s > 0 else math.nan

    @property
    def decay_time_s(self) -> float:
        """1/β, seconds: the time for the excitation to fall by a factor e."""
        return 1.0 / self.beta_per_s if self.beta_per_s > 0 else math.nan

    @property
    def lr_stat(self) -> float:
        return 2.0 * (self.loglik - self.loglik_poisson)

    @property
    def ok(self) -> bool:
        return self.state is EstimatorState.OK

    @property
    def params(self) -> HawkesParams:
        """The fitted parameters; raises ValueError if they are not stationary."""
        return HawkesParams(self.mu_per_s, self.alpha_per_s, self.beta_per_s).validate()


def stationarity_check(alpha_per_s: float, beta_per_s: float) -> tuple[EstimatorState, str]:
    """OK when the branching ratio n = α/β is < 1, else FAILED with the reason."""
    n = alpha_per_s / beta_per_s
    if not math.isfinite(n):
        return EstimatorState.FAILED, f"branching ratio is not finite (alpha={alpha_per_s}, beta={beta_per_s})"
    if n >= 1.0:
        return EstimatorState.FAILED, f"non-stationary fit: branching ratio n = alpha/beta = {n:.4f} >= 1"
    return EstimatorState.OK, ""


def _compensator_increments(gaps: np.ndarray, a: np.ndarray, mu: float, alpha: float, beta: float) -> np.ndarray:
    """Λ(t_{i−1}, t_i] = μΔ_i + (α/β)(1 + A_{i−1})(1 − e^{−βΔ_i}) for i ≥ 1."""
    return mu * gaps + alpha / beta * (1.0 + a[:-1]) * (-np.expm1(-beta * gaps))


def _inverse(m: np.ndarray) -> np.ndarray:
    """The inverse of a small square matrix by Gauss–Jordan elimination with partial pivoting, in plain floats: the
    same operations on every machine (``np.linalg.inv`` runs LAPACK through OpenBLAS, whose kernels, chosen by
    CPU, round differently; the fit's covariance reaches every snapshot through the intensity's standard error).
    Raises ``np.linalg.LinAlgError`` for a singular matrix (a zero pivot), as ``np.linalg.inv`` does."""
    n = len(m)
    a = [[float(m[i][j]) for j in range(n)] + [1.0 if i == j else 0.0 for j in range(n)] for i in range(n)]
    for col in range(n):
        piv = max(range(col, n), key=lambda r: abs(a[r][col]))  # the first of equal magnitudes
        if a[piv][col] == 0.0 or a[piv][col] != a[piv][col]:
            raise np.linalg.LinAlgError("Singular matrix")
        a[col], a[piv] = a[piv], a[col]
        p = a[col][col]
        row = [v / p for v in a[col]]
        a[col] = row
        for r in range(n):
            if r != col:
                f = a[r][col]
                if f != 0.0:
                    a[r] = [v - f * w for v, w in zip(a[r], row, strict=True)]
    return np.array([r[n:] for r in a])


def _quadratic_form(g: Sequence[float], c: np.ndarray) -> float:
    """gᵀ C g, summed row by row in index order (``g @ C @ g`` runs OpenBLAS kernels chosen by CPU)."""
    total = 0.0
    for i, gi in enumerate(g):
        row = 0.0
        for j, gj in enumerate(g):
            row += float(c[i][j]) * gj
        total += gi * row
    return total


def fit_hawkes(
    times_s: Sequence[float] | np.ndarray,
    *,
    start_s: float | None = None,
    end_s: float | None = None,
    min_events: int = 50,
    warm_start: HawkesParams | None = None,
) -> HawkesFit:
    """Maximum-likelihood fit of an exponential-kernel Hawkes process.

    Parameters
    ----------
    times_s : array of float
        Sorted event times in seconds (any origin; epoch seconds are fine).
    start_s, end_s : float, optional
        Observation window; defaults to [first event, last event].
    min_events : int
        Below this many events the result is WARMING and no fit is attempted.
    warm_start : HawkesParams, optional
        A previous fit's parameters: the optimiser starts there and from the same branching ratio with decays
        10x slower and faster (the best converged run inside the bounds is kept), and falls back to the cold
        starts only if none converges inside them.

    Returns
    -------
    HawkesFit
        OK when the optimiser converged and n = α/β < 1; FAILED otherwise (never clamped to n < 1).

    Notes
    -----
    The log-likelihood is maximised over (ln μ, ln α, ln β) in a box by a damped, projected Newton method with the
    analytic gradient and Hessian (:func:`py_loglik_derivs`), from five starting decay rates (0.05 to 500 times the
    mean event rate, α = β/2) and a trend start (``_COLD_STARTS``); the best converged run is kept. Standard errors
    come from the observed information (the analytic Hessian) in natural parameters.
    """
    if min_events < 2:
        raise ValueError(f"min_events must be >= 2, got {min_events!r}")
    rel_t, length = _prepare(times_s, start_s, end_s)
    n_ev = int(rel_t.size)
    nan3 = np.full((3, 3), math.nan)
    if n_ev < min_events:
        return HawkesFit(
            math.nan,
            math.nan,
            math.nan,
            math.nan,
            math.nan,
            math.nan,
            math.nan,
            n_ev,
            length,
            EstimatorState.WARMING,
            f"{n_ev} events < min_events={min_events}",
            cov=nan3,
        )
    gaps = np.diff(rel_t)
    rate = n_ev / length
    ll_poisson = n_ev * math.log(rate) - n_ev

    # Bounds keep the optimiser out of regions where the likelihood is flat to double precision.
    log_rate = math.log(rate)
    bounds = [
        (log_rate + math.log(1e-6), log_rate + math.log(10.0)),
        (log_rate + math.log(1e-8), log_rate + math.log(1e6)),
        (math.log(1e-3 / length), log_rate + math.log(1e6)),
    ]

    def inside(x) -> bool:
        return all(lo + 1e-9 < v < hi - 1e-9 for v, (lo, hi) in zip(x, bounds, strict=True))

    best = None
    if warm_start is not None:
        x_warm = [math.log(v) for v in (warm_start.mu_per_s, warm_start.alpha_per_s, warm_start.beta_per_s)]
        if inside(x_warm):
            for k in _WARM_JUMPS:  # the warm start, then its branching ratio with decays 10x slower and faster
                res = _maximise(rel_t, gaps, length, [x_warm[0], x_warm[1] + k, x_warm[2] + k], bounds)
                if res.success and inside(res.x) and (best is None or res.loglik > best.loglik):
                    best = res
    if best is None:
        starts = [(0.5 * beta_mult * rate, beta_mult * rate) for beta_mult in _COLD_STARTS]
        starts.append((0.5 * rate / n_ev, 0.1 / length))  # the trend start: (α, β)
        for alpha0, beta0 in starts:
            x0 = [math.log(0.5 * rate), math.log(alpha0), math.log(beta0)]
            res = _maximise(rel_t, gaps, length, x0, bounds)
            if best is None or (res.success, res.loglik) > (best.success, best.loglik):
                best = res
    assert best is not None
    mu, alpha, beta = (_exp(v) for v in best.x)
    ll = best.loglik

    # the observed information in natural parameters, −∇²ℓ at the optimum, analytic (the optimiser's last evaluation)
    h = best.hess
    info = np.array([[-h[0], -h[1], -h[2]], [-h[1], -h[3], -h[4]], [-h[2], -h[4], -h[5]]])
    try:
        cov = _inverse(info)
        se = np.sqrt(np.diag(cov)) if np.all(np.diag(cov) > 0) else np.full(3, math.nan)
    except np.linalg.LinAlgError:
        cov, se = nan3, np.full(3, math.nan)

    a, _ = _kernel_sums(gaps, beta)
    comp = _compensator_increments(gaps, a, mu, alpha, beta)
    ks = stats.kstest(comp, "expon")

    state, message = stationarity_check(alpha, beta)
    if state is EstimatorState.OK and not best.success:
        state, message = EstimatorState.FAILED, f"optimiser did not converge: {best.message}"
    at_bound = [
        name
        for name, v, (lo, hi) in zip(("mu", "alpha", "beta"), best.x, bounds, strict=True)
        if v <= lo + 1e-9 or v >= hi - 1e-9
    ]
    if state is EstimatorState.OK and at_bound:
        message = f"parameter(s) at search bound: {', '.join(at_bound)} (alpha at its lower bound ⇒ no self-excitation)"
    return HawkesFit(
        mu_per_s=mu,
        alpha_per_s=alpha,
        beta_per_s=beta,
        loglik=ll,
        stderr_mu=float(se[0]),
        stderr_alpha=float(se[1]),
        stderr_beta=float(se[2]),
        n_events=n_ev,
        duration_s=length,
        state=state,
        message=message,
        converged=bool(best.success),
        loglik_poisson=ll_poisson,
        ks_stat=float(ks.statistic),
        ks_pvalue=float(ks.pvalue),
        cov=cov,
    )


# --- our own fills: cascade flag ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FillCascadeParams:
    """Thresholds of the same-side fill-cascade flag.

    Parameters
    ----------
    raise_excess_ratio : float
        The flag is raised at a fill that takes the side's excess intensity λ − μ to at least this multiple
        of the baseline μ (dimensionless; 4.0 ⇒ fills arriving at >= 5× their baseline rate).
    clear_excess_ratio : float
        Once raised, the flag stays up until λ − μ decays below this multiple of μ (dimensionless, must be
        <= raise_excess_ratio). With the fitted β the hold time after the last fill is exactly
        ln(excess / (clear_excess_ratio · μ)) / β seconds.
    """

    raise_excess_ratio: float = 4.0
    clear_excess_ratio: float = 1.0

    def validate(self) -> FillCascadeParams:
        positive("raise_excess_ratio", self.raise_excess_ratio, "FillCascadeParams")
        positive("clear_excess_ratio", self.clear_excess_ratio, "FillCascadeParams")
        if self.clear_excess_ratio > self.raise_excess_ratio:
            raise ValueError(
                f"clear_excess_ratio must be <= raise_excess_ratio, got {self.clear_excess_ratio!r} > "
                f"{self.raise_excess_ratio!r}"
            )
        return self


def cascade_hold_s(excess_per_s: float, threshold_per_s: float, beta_per_s: float) -> float:
    """Time for an excess intensity to decay below a threshold: ln(excess/threshold)/β seconds (>= 0)."""
    if excess_per_s <= threshold_per_s:
        return 0.0
    return math.log(excess_per_s / threshold_per_s) / beta_per_s


class FillCascade:
    """Flags a cascade of our own fills on one side and holds the flag for the fitted decay time.

    What it estimates
        Per side (BUY fills = our bids taken, SELL fills = our asks lifted), the Hawkes intensity of our
        fills, and whether it is elevated enough to signal a sweep in progress.

    Model
        Each side is an independent exponential Hawkes process (``HawkesParams``, ideally from
        ``fit_hawkes`` on our own fill history). A fill that lifts λ − μ to >= raise_excess_ratio · μ raises
        the flag; it clears when λ − μ decays below clear_excess_ratio · μ, i.e. at
        t_last + ln((λ − μ)/(clear_excess_ratio · μ)) / β: the hold time follows the fitted β, it is not a
        fixed window. A fill during the hold extends it.

    State
        WARMING while the parameters are a prior (``calibrate`` not yet called with an OK fit); OK after;
        FAILED when the last calibration failed (the prior parameters keep running, and the message says so).
    """

    def __init__(
        self,
        hawkes: HawkesParams,
        params: FillCascadeParams | None = None,
        *,
        name: str = "fill_cascade",
    ) -> None:
        self.params = (params or FillCascadeParams()).validate()
        self.name = name
        self._hawkes = {side: HawkesIntensity(hawkes.validate(), name=f"{name}_{side.label}") for side in Side}
        self._clear_at_ns: dict[Side, int | None] = dict.fromkeys(Side)
        self._state = EstimatorState.WARMING
        self._message = "parameters are a prior, not a fit"
        self._last_ns = 0

    @property
    def hawkes_params(self) -> HawkesParams:
        return self._hawkes[Side.BUY].params

    def calibrate(self, fit: HawkesFit) -> None:
        """Adopt a fit for both sides. A failed fit leaves the parameters and sets the state to FAILED with
        the fit's message.

        The event history is kept as its decayed count S, which was decayed with the previous β until now
        (an approximation only for fills still within a few decay times).
        """
        if not fit.ok:
            self._state = EstimatorState.FAILED
            self._message = f"calibration {fit.state.value}: {fit.message}; running on previous parameters"
            return
        for h in self._hawkes.values():
            h.params = fit.params
            h.cov = fit.cov
        self._state, self._message = EstimatorState.OK, ""
        # The hold time depends on β: recompute any open hold with the new parameters.
        for side in Side:
            if self._clear_at_ns[side] is not None:
                self._clear_at_ns[side] = self._last_ns + self._hold_ns(side, self._last_ns)

    def _hold_ns(self, side: Side, now_ns: int) -> int:
        h = self._hawkes[side]
        p = h.params
        hold = cascade_hold_s(h.excess_intensity(now_ns), self.params.clear_excess_ratio * p.mu_per_s, p.beta_per_s)
        return math.ceil(hold * NS_PER_S)

    def update(self, ts_ns: int, side: Side) -> None:
        """Register one of our fills on ``side`` at ``ts_ns`` (ns)."""
        side = Side(side)
        h = self._hawkes[side]
        h.update(ts_ns)
        self._last_ns = max(self._last_ns, ts_ns)
        excess = h.excess_intensity(ts_ns)
        mu = h.params.mu_per_s
        flagged_now = self.flagged(side, ts_ns)
        if flagged_now or excess >= self.params.raise_excess_ratio * mu:
            self._clear_at_ns[side] = ts_ns + self._hold_ns(side, ts_ns)

    def on_fill(self, fill: Fill) -> None:
        """Register a ``Fill`` event at its local timestamp (the strategy core's clock)."""
        self.update(fill.ts_local_ns, fill.side)

    def flagged(self, side: Side, now_ns: int) -> bool:
        clear_at = self._clear_at_ns[Side(side)]
        return clear_at is not None and now_ns < clear_at

    def clears_at_ns(self, side: Side) -> int | None:
        """When the current (or last) flag on ``side`` clears, ns; None if it was never raised."""
        return self._clear_at_ns[Side(side)]

    def excess_ratio(self, side: Side, now_ns: int) -> float:
        """(λ − μ)/μ for ``side`` at ``now_ns``, dimensionless."""
        h = self._hawkes[Side(side)]
        return h.excess_intensity(now_ns) / h.params.mu_per_s

    def snapshot(self, now_ns: int) -> EstimatorSnapshot:
        """Value: the larger same-side excess ratio (λ − μ)/μ; ``detail`` has per-side flags and timings.

        ``std`` is the delta-method standard error of λ/μ from the fit covariance, treating μ in the
        denominator as known (an approximation); NaN while the parameters are a prior.
        """
        detail: dict[str, float] = {}
        p = self.hawkes_params
        for side in Side:
            h = self._hawkes[side]
            clear_at = self._clear_at_ns[side]
            flagged = self.flagged(side, now_ns)
            detail[f"{side.label}_intensity_per_s"] = h.intensity(now_ns)
            detail[f"{side.label}_excess_ratio"] = self.excess_ratio(side, now_ns)
            detail[f"{side.label}_flag"] = 1.0 if flagged else 0.0
            detail[f"{side.label}_clears_in_s"] = (clear_at - now_ns) / NS_PER_S if flagged and clear_at else 0.0
            # Expected further fills from the current excitation alone: ∫ (λ − μ) dt = (λ − μ)/β.
            detail[f"{side.label}_expected_excess_fills"] = h.excess_intensity(now_ns) / p.beta_per_s
        detail.update(mu_per_s=p.mu_per_s, alpha_per_s=p.alpha_per_s, beta_per_s=p.beta_per_s)
        value = max(detail["buy_excess_ratio"], detail["sell_excess_ratio"])
        std_candidates = [self._hawkes[s].intensity_std(now_ns) / p.mu_per_s for s in Side]
        std = max(std_candidates) if all(math.isfinite(x) for x in std_candidates) else math.nan
        return EstimatorSnapshot(
            name=self.name,
            value=value,
            std=std,
            state=self._state,
            last_input_ns=self._last_ns,
            detail=detail,
            message=self._message,
        )


# The compiled classes (apps/engine/estimators/_estimators.pyx, same API, same results) unless MM_PURE_PYTHON=1 is
# set or the module did not build (apps.engine.compiled, docs/compiled-core.md); the Py* classes stay the reference.
_compiled = compiled.load("apps.engine.estimators._estimators")
HawkesIntensity: type[PyHawkesIntensity] = _compiled.HawkesIntensity if _compiled is not None else PyHawkesIntensity
ESTIMATORS_COMPILED: bool = _compiled is not None
# The kernel recursions alone (the fit's compensator check): the compiled loop, bit for bit the reference's.
_kernel_sums = _compiled.kernel_sums if _compiled is not None else py_kernel_sums
# The likelihood, its gradient and Hessian in one pass in C (every Newton step): bit for bit the reference's.
_loglik_derivs = _compiled.loglik_derivs if _compiled is not None else py_loglik_derivs
# The fit's Newton ascent, its likelihood passes, steps and solves all in C: bit for bit the reference's.
_maximise = _compiled.maximise if _compiled is not None else py_maximise
