"""Risk aversion γ as one log-additive model of named, documented market and book features.

Model
-----
    log γ = log γ₀ + Σᵢ βᵢ·xᵢ,        γ_reported = min(max(γ, γ_min), γ_max)

Every feature ``xᵢ`` is dimensionless and equals 0 under reference conditions, so ``γ = γ₀`` then, and each
``βᵢ·xᵢ`` is the *log-contribution* of one cause: ``exp(βᵢ·xᵢ)`` is the factor by which it scales γ. All
causes enter here and nowhere else (seed 003's lesson: multiplicative post-processes stacked on top of a
log-additive model make γ untraceable). The result lists every contribution, so a quote decision can show
"why this γ"; when a bound binds, the result says which one and by how much (never silently).

γ is in the units of :mod:`apps.engine.quoting.pricing`: per base unit valued at mid. Its scale is set by ``γ₀`` and
must be chosen per asset and size unit; the βs are unit-free.

Features (all dimensionless; helpers below build them from raw quantities)
-------------------------------------------------------------------------
volatility_regime
    ``ln(σ_now / σ_ref)``: short-horizon σ against a long-run reference σ (both per √s). 0 at reference;
    typical −1 … +2 (σ from 0.4× to 7×).
thin_book
    ``ln(D_ref / D_near)``: reference near-touch depth over current depth within a fixed band (base units).
    0 at reference, positive when thin; typical −1 … +3.
flow_toxicity
    Probability-like toxicity of recent taker flow (e.g. VPIN or a posterior P(informed)), in [0, 1].
    0 = uninformed flow; typical 0.1 … 0.6.
cascade_intensity
    ``ln(λ_now / λ_base)`` of a self-exciting (Hawkes) same-side trade/fill intensity against its baseline.
    0 at baseline; typical 0 … 3 during sweeps.
inventory_utilisation
    ``(q / Q_max)²``, in [0, 1] (larger only if the limit is breached). Even in q: aversion grows with exposure
    in either direction; the *direction* of the skew comes from q in the pricing formulas, not from here.
drawdown
    Session drawdown as a fraction of its loss budget, ≥ 0 (1 = budget exhausted); typical 0 … 1.
estimator_uncertainty
    Combined relative standard error of the estimates feeding the quotes, ``sqrt(Σ (std/value)²)`` over e.g.
    σ, κ and A; ≥ 0, typical 0.05 … 1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

from apps.engine.validation import finite, fraction, is_finite_number, non_negative, positive

__all__ = [
    "FEATURE_NAMES",
    "RiskAversionParams",
    "RiskAversionResult",
    "RiskFeatures",
    "cascade_intensity_feature",
    "drawdown_feature",
    "estimator_uncertainty_feature",
    "inventory_utilisation_feature",
    "risk_aversion",
    "thin_book_feature",
    "volatility_regime_feature",
]

FEATURE_NAMES: tuple[str, ...] = (
    "volatility_regime",
    "thin_book",
    "flow_toxicity",
    "cascade_intensity",
    "inventory_utilisation",
    "drawdown",
    "estimator_uncertainty",
)


@dataclass(frozen=True, slots=True)
class RiskAversionParams:
    """Base risk aversion, one coefficient per feature, and the reported bounds.

    The β defaults are *priors*, not calibrated values; each one's reason is given below. Calibrating them
    (regressing realised markout/inventory P&L variance on the features) is a separate job; a β of 0 switches
    its feature off without touching the others.

    Attributes
    ----------
    gamma_base : float
        γ₀ > 0, risk aversion per base unit valued at mid under reference conditions. Asset- and
        unit-specific; the default 1.0 is a placeholder scale, not a recommendation.
    beta_volatility_regime : float
        1.0: γ ∝ (σ/σ_ref). The AS/GLFT skew already grows with σ², so β = 1 means a vol spike tightens the
        inventory budget further, in proportion — doubling σ doubles γ rather than leaving it unchanged.
    beta_thin_book : float
        0.5: γ ∝ sqrt(D_ref/D), the square-root law of impact — the cost of unwinding through a book of depth D
        scales like D^(−1/2).
    beta_flow_toxicity : float
        1.0: fully informed flow (x = 1) multiplies γ by e ≈ 2.7; typical toxicity 0.3 adds ~35 %.
    beta_cascade_intensity : float
        0.5: γ ∝ sqrt(λ_now/λ_base); a 4× intensity burst doubles γ, a gentler response than to σ because
        cascades are short-lived and κ/A estimators also react to them.
    beta_inventory_utilisation : float
        1.0: at the inventory limit γ is e times its flat value; quadratic in q/Q_max, so a 30 % position adds
        only ~9 %.
    beta_drawdown : float
        1.0: an exhausted loss budget multiplies γ by e; half used adds ~65 %.
    beta_estimator_uncertainty : float
        1.0: a 100 % combined relative error multiplies γ by e; 20 % adds ~22 %. Parameter uncertainty is a
        risk the point-estimate formulas ignore.
    gamma_min, gamma_max : float
        Reported bounds on γ, same unit as γ₀, with ``0 < gamma_min <= gamma_base <= gamma_max``. When one binds
        the result says so and keeps the unbounded value.
    """

    gamma_base: float = 1.0
    beta_volatility_regime: float = 1.0
    beta_thin_book: float = 0.5
    beta_flow_toxicity: float = 1.0
    beta_cascade_intensity: float = 0.5
    beta_inventory_utilisation: float = 1.0
    beta_drawdown: float = 1.0
    beta_estimator_uncertainty: float = 1.0
    gamma_min: float = 1e-3
    gamma_max: float = 1e3

    def validate(self) -> None:
        for f in fields(self):
            finite(f.name, getattr(self, f.name), "RiskAversionParams")
        for name in ("gamma_base", "gamma_min", "gamma_max"):
            positive(name, getattr(self, name), "RiskAversionParams")
        for name in FEATURE_NAMES:
            # a negative β would let a risk (volatility, toxicity, drawdown, ...) lower γ and narrow the quotes
            non_negative(f"beta_{name}", self.beta(name), "RiskAversionParams")
        if not self.gamma_min <= self.gamma_max:
            raise ValueError(
                f"gamma_min must be <= gamma_max, got gamma_min={self.gamma_min!r}, gamma_max={self.gamma_max!r}"
            )
        if not self.gamma_min <= self.gamma_base <= self.gamma_max:
            raise ValueError(
                f"gamma_base must lie within [gamma_min, gamma_max], got {self.gamma_base!r} "
                f"outside [{self.gamma_min!r}, {self.gamma_max!r}]"
            )

    def beta(self, feature: str) -> float:
        """The coefficient of a feature by its name in :data:`FEATURE_NAMES`."""
        if feature not in FEATURE_NAMES:
            raise KeyError(f"unknown risk feature {feature!r}")
        return float(getattr(self, f"beta_{feature}"))


@dataclass(frozen=True, slots=True)
class RiskFeatures:
    """The feature vector x (module docstring gives each unit, normalisation and typical range). 0 = reference."""

    volatility_regime: float = 0.0
    thin_book: float = 0.0
    flow_toxicity: float = 0.0
    cascade_intensity: float = 0.0
    inventory_utilisation: float = 0.0
    drawdown: float = 0.0
    estimator_uncertainty: float = 0.0

    def validate(self) -> None:
        for name in FEATURE_NAMES:
            finite(name, getattr(self, name), "RiskFeatures")
        fraction("flow_toxicity", self.flow_toxicity, "RiskFeatures")
        for name in ("inventory_utilisation", "drawdown", "estimator_uncertainty"):
            non_negative(name, getattr(self, name), "RiskFeatures")

    def as_dict(self) -> dict[str, float]:
        return {name: float(getattr(self, name)) for name in FEATURE_NAMES}


@dataclass(frozen=True, slots=True)
class RiskAversionResult:
    """γ and why.

    Attributes
    ----------
    gamma : float
        The γ to use: ``gamma_unbounded`` clipped to ``[gamma_min, gamma_max]``.
    gamma_unbounded : float
        ``exp(log γ₀ + Σ βᵢxᵢ)``, the model's own value (the exponent capped at 700 nats to stay finite;
        ``log_gamma_unbounded`` is always exact).
    gamma_base : float
        γ₀.
    contributions : dict[str, float]
        ``βᵢ·xᵢ`` per feature name, in nats: ``log gamma_unbounded = log gamma_base + sum(contributions)``.
    features : dict[str, float]
        The xᵢ used.
    bound : str
        ``"none"``, ``"min"`` or ``"max"``: which bound binds.
    """

    gamma: float
    gamma_unbounded: float
    gamma_base: float
    contributions: dict[str, float]
    features: dict[str, float]
    bound: str

    @property
    def bound_binding(self) -> bool:
        return self.bound != "none"

    @property
    def log_gamma_unbounded(self) -> float:
        return math.log(self.gamma_base) + math.fsum(self.contributions.values())

    def reasons(self) -> tuple[str, ...]:
        """Human-readable notes for a decision record; non-empty exactly when a bound binds."""
        if not self.bound_binding:
            return ()
        return (f"gamma_{self.bound}_binding: model gamma {self.gamma_unbounded:.6g} clipped to {self.gamma:.6g}",)

    def as_inputs(self) -> dict[str, float]:
        """Flat named numbers for ``QuoteDecision.inputs``; ``gamma_bound`` is −1 (min), 0 (none) or +1 (max)."""
        out = {
            "gamma": self.gamma,
            "gamma_unbounded": self.gamma_unbounded,
            "gamma_base": self.gamma_base,
            "gamma_bound": {"none": 0.0, "min": -1.0, "max": 1.0}[self.bound],
        }
        for name in FEATURE_NAMES:
            out[f"gamma_x_{name}"] = self.features[name]
            out[f"gamma_contrib_{name}"] = self.contributions[name]
        return out


def risk_aversion(params: RiskAversionParams, features: RiskFeatures) -> RiskAversionResult:
    """Evaluate ``log γ = log γ₀ + Σ βᵢxᵢ`` and report every contribution and any binding bound.

    Examples
    --------
    >>> r = risk_aversion(RiskAversionParams(gamma_base=2.0), RiskFeatures(drawdown=0.5))
    >>> round(r.gamma, 4), r.contributions["drawdown"], r.bound
    (3.2974, 0.5, 'none')
    """
    params.validate()
    features.validate()
    xs = features.as_dict()
    contributions = {name: params.beta(name) * xs[name] for name in FEATURE_NAMES}
    log_gamma = math.log(params.gamma_base) + math.fsum(contributions.values())
    # exp overflows past ~709 nats; such a γ is far above any gamma_max, so cap the exponent for the report.
    gamma_unbounded = math.exp(min(log_gamma, 700.0))
    if gamma_unbounded > params.gamma_max:
        gamma, bound = params.gamma_max, "max"
    elif gamma_unbounded < params.gamma_min:
        gamma, bound = params.gamma_min, "min"
    else:
        gamma, bound = gamma_unbounded, "none"
    return RiskAversionResult(gamma, gamma_unbounded, params.gamma_base, contributions, xs, bound)


# --- feature builders from raw quantities --------------------------------------------------------


def volatility_regime_feature(sigma: float, sigma_ref: float) -> float:
    """``ln(σ/σ_ref)``; both per √s, > 0."""
    return math.log(positive("sigma", sigma) / positive("sigma_ref", sigma_ref))


def thin_book_feature(depth_near: float, depth_ref: float) -> float:
    """``ln(D_ref/D_near)``; depths in base units within the same band around mid, > 0."""
    return math.log(positive("depth_ref", depth_ref) / positive("depth_near", depth_near))


def cascade_intensity_feature(intensity: float, baseline: float) -> float:
    """``ln(λ_now/λ_base)``; intensities per second, > 0."""
    return math.log(positive("intensity", intensity) / positive("baseline", baseline))


def inventory_utilisation_feature(q: float, q_max: float) -> float:
    """``(q/Q_max)²``; q signed base units, Q_max > 0 base units."""
    finite("q", q)
    return (float(q) / positive("q_max", q_max)) ** 2


def drawdown_feature(drawdown: float, budget: float) -> float:
    """Drawdown (≥ 0, quote currency, peak-to-current loss) as a fraction of the loss budget (> 0)."""
    non_negative("drawdown", drawdown)
    return float(drawdown) / positive("budget", budget)


def estimator_uncertainty_feature(relative_errors: dict[str, float]) -> float:
    """``sqrt(Σ rᵢ²)`` of relative standard errors ``rᵢ = std/|value|`` (each ≥ 0, finite), keyed by estimate."""
    total = 0.0
    for name, r in relative_errors.items():
        if not is_finite_number(r) or r < 0:
            raise ValueError(f"relative error of {name} must be a finite number >= 0, got {r!r}")
        total += float(r) ** 2
    return math.sqrt(total)
