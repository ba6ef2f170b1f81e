"""The quoter: a market state and an inventory in, a fully explained quote decision out (pure, no clock).

Units (see :mod:`apps.engine.quoting.pricing`): distances and price shifts are fractions of mid (``1e-4`` = 1 bp);
σ is the log-price volatility per √second; κ is per unit fractional distance; A and λ per second; T in
seconds; q and sizes in base units.

Quoting models (``QuoterParams.model``, recorded in every decision as ``model_code``)
-----------------------------------------------------------------------------------
Units as in :mod:`apps.engine.quoting.pricing`: prices normalised by the mid, so σ is in (fraction of mid)
per √s, κ and γ (and ξ) per unit fractional distance / per base unit valued at mid (γ has the unit of 1/price
in the normalised price, per base unit), A per second, Δ = ``order_size`` and q in base units, T in seconds.

``glft`` (default): Guéant–Lehalle–Fernandez-Tapia's asymptotic closed form (Guéant 2017, Δ-sized fills)

    c1 = (1/(ξΔ))·ln(1 + ξΔ/κ),      c2 = √( γ/(2·A·Δ·κ) · (1 + ξΔ/κ)^(1 + κ/(ξΔ)) ),
    δ* = c1 + (Δ/2)·σ_spread·c2,     inventory_term = q·σ_inv·c2,

so ``bid_offset = δ* + inventory_term`` and ``ask_offset = δ* − inventory_term`` (fractions of mid). κ and A are
the trade-tape fit's (A is moved from the touch to the mid: :func:`glft_a_at_mid`); σ_spread is σ_clean
(jump-robust), σ_inv = max(σ_total, σ_clean) (jumps included), the σ rule of
:mod:`apps.engine.estimators.sigma`. ξ, the spread term's risk aversion, is held at ``gamma_base`` (γ₀); the
risk features act on γ, which appears only inside c2. That is why no risk feature can narrow the quotes: c1
(which *falls* as its risk aversion rises) does not see them, and c2 rises with γ. With ξ = γ (GLFT 2013's CARA
model) a rise in γ would shrink c1 faster than it grows c2 whenever σ is small — the bug of issue 16.

``glft_finite``: the finite-horizon GLFT solution (:func:`apps.engine.quoting.glft.glft_offsets_at`, same γ, ξ,
σ_inv, κ, A, Δ, the grid ±Q_max in steps of Δ) at τ = time left to ``session_end_ns``, interpolated linearly in
q; without a session end it is the asymptotic ``glft`` (and the decision says so). The inventory term is the
solution's at q, ``(bid(q) − ask(q))/2``; δ* is the solution's at flat inventory, ``bid(0) = ask(0)``. The exact
solution's own half-spread ``(bid(q)+ask(q))/2`` can *narrow* slightly as σ or γ rise when |q| is near Q_max
(the reducing side moves in faster than the other moves out; e.g. q = 0.7·Q_max: −0.06 %), and a risk rise must
never narrow the quotes, so that part of the solution is not used.

``as``: Avellaneda–Stoikov finite-T, kept as a baseline: ``δ* = (1/(γΔ))·ln(1+γΔ/κ) + γΔσ_spread²T/2`` and
``inventory_term = q·γ·σ_inv²·T`` with T = ``horizon_s`` (or the time left). Its first term falls as γ rises.

What each risk feature moves, and which way
-------------------------------------------
Every feature of :mod:`apps.engine.quoting.risk_aversion` (volatility regime, thin book, flow toxicity, cascade
intensity, inventory utilisation, drawdown, estimator uncertainty) has β ≥ 0 (validated) and enters log γ; γ
enters c2 only, so a larger feature value **widens** δ* (through (Δ/2)·σ_spread·c2) and **steepens** the skew
(through q·σ_inv·c2); it never narrows the spread. σ widens δ* and steepens the skew directly (c2 multiplies
σ). Flow toxicity also **raises** the adverse-selection cost in the E[P&L] filter (below), which can only drop
levels, never move them inward. ``position_direction_confidence`` (β < 0) is not a risk feature: confidence
that the drift favours the position lowers γ, i.e. a flatter skew and a slightly tighter spread. Other terms move
only the reservation price r (drift, funding, imbalance, flow, microprice), never δ*.

γ itself comes from the log-additive model of :mod:`apps.engine.quoting.risk_aversion` (one model, named features)
plus one feature that module does not have, ``position_direction_confidence`` (below), and its *total*
log-contribution ``C = Σ βᵢxᵢ`` is bounded smoothly:

    log γ = log γ₀ + C_max · tanh(C / C_max).

The bound never clips; it compresses. It is reported as *binding* when it removes more than
``gamma_bound_report_nats`` of the model's log-γ (``gamma_bound_shrink_nats`` in the inputs).

position_direction_confidence
    ``x = 2·P(sign(μ) = sign(q)) − 1`` in [−1, 1] with ``P = Φ(sign(q)·m/s)`` from the drift posterior
    (mean m, sd s). 0 when flat or when the drift is unknown. Its β is negative by default: the more the
    drift posterior agrees with the position, the less averse we are to holding it (seed 003's
    continuation idea, entering γ instead of zeroing the skew).

Reservation price
-----------------
    r = s · (1 + drift_term − inventory_term − funding_term + imbalance_skew + flow_skew + microprice_term)

* ``drift_term`` = E[∫₀^{T_d} μ dt], the Kalman drift's expected return over ``drift_horizon_s``;
* ``inventory_term`` as above, with σ_inv the inventory σ (``max(σ_total, σ_clean)``, jumps included);
* ``funding_term`` = funding_rate · T / funding_interval_s: the carry a holder pays over the horizon (a
  positive rate makes holding long costlier, so r moves down);
* ``imbalance_skew`` = imbalance_coef · I_book and ``flow_skew`` = flow_coef · I_flow (prior coefficients,
  fraction of mid per unit imbalance);
* ``microprice_term``: the learned microprice offset. While the microprice regression is usable (its
  out-of-sample R² passes its threshold) it *replaces* the two prior skews (they predict the same mid move;
  adding both would count it twice) and the decision says so.

``skew_frac = (s − r)/s``: positive when quotes move down (long inventory), the dashboard's ``skew_bps``.

Horizon: ``T = horizon_s``, shortened to the time left to ``session_end_ns`` when one is given (the
finite-horizon reading); ``horizon_source`` in the inputs says which (0 = parameter, 1 = session end).

Half-spread and σ: δ* prices diffusive risk through σ_clean directly (GLFT's c2 term) and through γ's
``volatility_regime`` feature; the inventory term uses σ_inv.

Ladders
-------
Level ``i = 0..N−1`` sits at ``δ* + i·level_spacing`` from r on each side, rounded outward to the tick
(bid down, ask up) and never through the opposite touch (post-only: a bid at or above the best ask is
placed one tick below it, and the guardrail is reported). Sizes: ``order_size · size_growth^i`` rounded down
to the lot, then cut so that the side's total never exceeds its room, ``Q_max − q`` for bids and
``Q_max + q`` for asks; a level left with less than one lot is dropped with the reason.

Expected-P&L filter
-------------------
Each level's expected P&L per quote life τ = ``quote_life_s`` (fraction of mid × base units):

    p_fill = 1 − exp(−A · e^{−κ·d} · τ · e^{−Q/v̄}),     E[P&L] = p_fill · size · (edge − adverse − fee),

with ``d`` the distance beyond the market touch (fraction of mid; the tick κ model measures depth beyond
the touch, so A is the rate of trades reaching the touch), ``Q`` the resting size ahead of us at that price
(queue position at the back) and ``v̄`` the mean trade size (the chance a trade reaching the level is big
enough to get through the queue is taken as ``e^{−Q/v̄}``, exponential trade sizes); ``edge`` the distance
from the reservation price (the price at which we are indifferent to the fill); ``adverse`` the expected
post-fill mid move against us (scaled up by flow toxicity as ``(1 + toxicity)``); ``fee`` the maker fee
(negative for a rebate). A level with negative E[P&L] is dropped and the drop is recorded; a level at or through
the touch (bid ≥ best bid, ask ≤ best ask) is kept only when its E[P&L] is strictly positive. ``adverse`` is the
*measured* post-fill move (:mod:`apps.engine.estimators.adverse`: our fills' and comparable public trades'
markouts at the quote life, ``adverse_selection_measured`` = 1 in the inputs) while that estimator is OK, and the
prior ``adverse_selection_bps`` otherwise. It is a symmetric cost, so it enters the filter only, not r.

Requote and taker
-----------------
:func:`apps.engine.execution.reconcile.needs_requote`: a working order is replaced only when its target moved by
at least ``requote_ticks`` ticks. ``modify_orders`` chooses ModifyOrder (keeps the order id, loses queue priority on
most venues anyway) over cancel-replace.

Emergency taker: when ``|q| ≥ taker_trigger_ratio · Q_max``, the model's own reducing-side quote sits
``k·|q| − δ`` beyond the mid (k = d(inventory_term)/dq: σ_inv·c2 for GLFT, γσ_inv²T for AS; δ the quoted
half-spread). When that is more than ``c`` = half the market spread + taker fee, the model would pay more to
be filled as a maker than crossing costs, so we cross: ``x* = |q| − (δ + c)/k``, cut to [0, |q|] and rounded down
to the lot, brings the reducing quote back to the crossing price. The taker thus prices inventory with the same
γ, σ and model as the quotes (an earlier rule used AS's ``½γσ²T·q²`` penalty beside GLFT quotes, and at the
default γ₀ it crossed 7 bps to shed inventory whose GLFT skew was under 0.5 bps).

Cost of a fill
--------------
GLFT prices a fill's value as the distance from r. When each fill costs ``c_f`` more (the expected adverse move
after it plus the maker fee), the sup over δ of ``A·e^{−κδ}·(δ − c_f − …)`` is reached at ``δ* + c_f``: the
optimal quotes move out by exactly the per-fill cost. With ``fill_cost_in_spread`` (default) the quoted
half-spread is ``δ = δ* + max(adverse + fee, 0)`` (floored at 0, so a rebate or a favourable measured markout
never narrows it below δ*); ``adverse`` is the same measured (or prior) value, scaled by flow toxicity, that the
E[P&L] filter uses, so flow toxicity widens the spread. The decision records ``half_spread_model_frac`` (δ*) and
``half_spread_fill_cost_frac``.

**By depth** (``fill_cost_by_depth``, default on, once the depth curve is OK): the cost of a fill is not one
number. A quote deep in the book is filled by sweeps and by moves that reached it while our cancel was in flight,
and the mid goes on moving after those more than after a lone trade at the touch
(:mod:`apps.engine.estimators.depth_markout` measures ``c(δ)`` from the public tape, per depth from the mid our
quote would have been priced from). With a depth-dependent cost the same objective,
``e^{−κδ}·(δ − (δ* − 1/κ) − C(δ))`` with ``C(δ) = c(δ) + toxicity·max(ā, 0) + fee`` (ā the pooled cost), is
maximised exactly over δ ≥ δ* (:func:`depth_priced_half_spread`; ``c`` is linear between its grid points): with
a constant ``c`` this is ``δ* + max(c + fee, 0)`` again, the rule above. The objective has increasing differences
in (δ, δ*) and in (δ, the added cost), so a risk feature, which raises δ* or toxicity, never narrows the quoted
spread (Topkis; ties go to the wider δ). Toxicity adds ``toxicity·max(ā, 0)`` rather than scaling ``c``, which
is what keeps that true where ``c`` rises steeply with depth. The decision records ``fill_cost_by_depth`` (1 when
used) and ``fill_cost_at_quote_frac``, ``C`` at the chosen δ.

Both sides use the one δ. Pricing each side at its own depth (the side that reduces inventory sits shallower,
where fills cost more) was tried: −3.3 → −1.8 USDT on the spot recording, within its inventory noise, and it lets
a risk feature that steepens the skew narrow the spread, so it is not done.

**Skew cap** (``skew_cap_by_fill_cost``, default on, while the quotes are priced by depth): the reservation shift
(inventory, drift, funding, imbalance, flow, microprice together) is bounded, ``|r − s|/s ≤ δ − d_min``, so that
neither quote sits nearer the mid than ``d_min``, the shallowest depth of the curve where a fill earns its measured
cost (``d − c(d) − fee ≥ 0``; ``δ`` itself when no shallower depth does, which leaves no skew). GLFT's skew values
a reducing fill by the inventory risk it removes, but the model has no adverse selection: on the shared Binance
recordings the skew put the reducing quote at or through the touch, where the tape's fills lose ~1–3 bps within a
second. The cap moves both quotes together, so the spread (2δ) is unchanged and no risk feature narrows it; the
skew still grows with |q| and with γ up to the cap, and stays there. The decision records ``skew_model_frac`` (the
skew the model asked for), ``skew_cap_frac`` (NaN when the cap is off) and, when it binds, the reason
"skew capped …". The emergency taker still prices inventory with the model's uncapped slope.

Flag: ``|q| > skew_flag_ratio·Q_max`` while ``|skew| < skew_flag_bps`` raises ``skew_too_small``
(seed 003: short 8.65 units with a 0.00 bps skew for a whole losing session). It reads the model's skew, before the
cap: a deliberate cap is reported as such, not as a mis-scaled γ, σ or horizon.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field, fields, replace
from typing import Any

import numpy as np

from apps.engine import compiled
from apps.engine.market.events import QuoteDecision, Side
from apps.engine.market.inputs import DecisionInputs
from apps.engine.quoting.glft import GLFTParams, GLFTRangeError, glft_offsets_at
from apps.engine.quoting.pricing import glft_coefficients, half_spread
from apps.engine.quoting.risk_aversion import FEATURE_NAMES, RiskAversionParams
from apps.engine.validation import boolean, finite, integer, non_negative, positive

__all__ = [
    "MODEL_CODES",
    "GammaResult",
    "LadderCosts",
    "Level",
    "MarketState",
    "ModelTerms",
    "QuoteResult",
    "QuoterParams",
    "Reservation",
    "bounded_gamma",
    "depth_priced_half_spread",
    "direction_confidence",
    "fill_probability",
    "glft_a_at_mid",
    "horizon_left_s",
    "level_expected_pnl",
    "level_price",
    "level_size",
    "model_terms",
    "py_depth_priced_half_spread",
    "py_quote",
    "quote",
    "taker_reduction_size",
]

_BPS = 1e-4

# ``model_code`` in a decision's inputs (inputs are numbers): which model produced the quotes.
MODEL_CODES: dict[str, float] = {"as": 0.0, "glft": 1.0, "glft_finite": 2.0}


# --------------------------------------------------------------------------------------------------
# Parameters
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class QuoterParams:
    """Quoting parameters (units in the names or below; defaults for BTC-like perpetuals).

    These are the product's defaults: :class:`apps.engine.core.StrategyParams` nests this class and a session's
    flat ``strategy`` dict sets its fields by name (``gamma`` for ``gamma_base``).

    Attributes
    ----------
    gamma_base : float
        γ₀, risk aversion per base unit valued at mid under reference conditions; also ξ, the GLFT spread term's
        risk aversion (module docstring). Default 5000 per BTC: with κ = 5000, Δ = 0.005 BTC, A = 5/s and
        σ = 1e-4/√s, c1 ≈ 2.0 bps and the GLFT skew σ·c2 ≈ 9 bps per BTC (0.46 bps at Q_max = 0.05 BTC).
    gamma_log_bound_nats : float
        C_max of the smooth bound ``C_max·tanh(C/C_max)`` on the total log-contribution (2.3 ⇒ γ within
        ×/÷10 of γ₀).
    gamma_bound_report_nats : float
        The bound is reported as binding when it removes more than this many nats of log γ.
    beta_direction_confidence : float
        β of ``position_direction_confidence`` (negative: confidence in the position lowers γ).
    horizon_s : float
        T, seconds, for the inventory and funding terms (shortened to the time left when the market state has
        a session end).
    drift_horizon_s : float
        T_d, seconds over which the drift's expected return enters r (≈ the life of a resting quote plus
        the time to lay off a fill).
    max_inventory : float
        Q_max, base units.
    order_size : float
        Size of level 0, base units.
    levels : int
        N, levels per side.
    level_spacing_bps : float
        Distance between consecutive levels, bps of mid (at least one tick after rounding).
    size_growth : float
        Size ratio between consecutive levels (1 = equal sizes).
    imbalance_coef_bps, flow_coef_bps : float
        Prior skew of r per unit book imbalance (best ``imbalance_levels`` levels) and per unit taker-flow
        imbalance, bps of mid.
    quote_life_s : float
        τ, expected life of a resting quote for the fill probability, seconds.
    adverse_selection_bps : float
        Expected mid move against a filled maker order, bps (a prior until markouts measure it).
    maker_fee_bps, taker_fee_bps : float
        Fees in bps of notional (negative = rebate).
    requote_ticks : int
        A working order is replaced only when its target moved by at least this many ticks. Default 30
        (0.5 bps on BTCUSDT at 0.1 tick): the mid moves ~0.3 bps per 100 ms at σ = 1e-4/√s, and a 1-tick
        threshold re-quotes on nearly every book update, which the message-rate rule (250 per 10 s) then stops.
    modify_orders : bool
        Replace with ModifyOrder instead of cancel + new order.
    taker_trigger_ratio : float
        Emergency taker reduction is considered when |q| ≥ this × Q_max.
    fill_cost_in_spread : bool
        Add the expected cost of a fill (adverse selection, measured once the estimator is OK, plus the maker
        fee; floored at 0) to δ* (module docstring, "Cost of a fill"). Default True; False is the textbook GLFT
        δ* with the costs only in the E[P&L] filter.
    fill_cost_by_depth : bool
        With ``fill_cost_in_spread``: price the cost of a fill per depth from the measured depth curve while it is
        OK (module docstring, "Cost of a fill", "By depth"), else the one measured number. Default True.
    skew_cap_by_fill_cost : bool
        While the quotes are priced by depth: bound the skew so that neither quote sits nearer the mid than the
        shallowest depth where a fill earns its measured cost (module docstring, "Skew cap"). Default True.
    skew_flag_ratio, skew_flag_bps : float
        Flag when |q| > ratio·Q_max but |skew| < skew_flag_bps.
    model : str
        The quoting model (recorded in every decision as ``model_code``, see :data:`MODEL_CODES`):
        ``"glft"`` (default) the GLFT asymptotic closed form; ``"glft_finite"`` the finite-horizon GLFT solution
        to the session's end time (the asymptotic form when the session has none); ``"as"``
        Avellaneda–Stoikov finite-T, kept as a baseline (its half-spread *falls* as γ rises).
    """

    gamma_base: float = 5000.0
    gamma_log_bound_nats: float = 2.3
    gamma_bound_report_nats: float = 0.05
    beta_direction_confidence: float = -0.5
    horizon_s: float = 400.0
    drift_horizon_s: float = 30.0
    max_inventory: float = 0.05
    order_size: float = 0.005
    levels: int = 1
    level_spacing_bps: float = 1.0
    size_growth: float = 1.0
    imbalance_coef_bps: float = 0.2
    flow_coef_bps: float = 0.2
    quote_life_s: float = 1.0
    adverse_selection_bps: float = 0.5
    maker_fee_bps: float = 0.0
    taker_fee_bps: float = 5.0
    requote_ticks: int = 30
    modify_orders: bool = False
    taker_trigger_ratio: float = 1.0
    fill_cost_in_spread: bool = True
    fill_cost_by_depth: bool = True
    skew_cap_by_fill_cost: bool = True
    skew_flag_ratio: float = 0.1
    skew_flag_bps: float = 1.0
    model: str = "glft"

    def validate(self) -> QuoterParams:
        where = "QuoterParams"
        boolean("modify_orders", self.modify_orders, where)
        boolean("fill_cost_in_spread", self.fill_cost_in_spread, where)
        boolean("fill_cost_by_depth", self.fill_cost_by_depth, where)
        boolean("skew_cap_by_fill_cost", self.skew_cap_by_fill_cost, where)
        if self.model not in MODEL_CODES:
            raise ValueError(f"{where}.model must be one of {sorted(MODEL_CODES)}, got {self.model!r}")
        for f in fields(self):
            if f.name not in _BOOLEAN_OR_NAMED:
                finite(f.name, getattr(self, f.name), where)
        for name in (
            "gamma_base",
            "gamma_log_bound_nats",
            "horizon_s",
            "drift_horizon_s",
            "max_inventory",
            "order_size",
            "size_growth",
            "quote_life_s",
            "taker_trigger_ratio",
        ):
            positive(name, getattr(self, name), where)
        for name in ("gamma_bound_report_nats", "level_spacing_bps", "adverse_selection_bps", "skew_flag_ratio"):
            non_negative(name, getattr(self, name), where)
        integer("levels", self.levels, where, minimum=1)
        integer("requote_ticks", self.requote_ticks, where, minimum=0)
        return self


# --------------------------------------------------------------------------------------------------
# Market state (what the estimators say, already read)
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MarketState:
    """Everything the quoter needs, as plain numbers (NaN = unknown; ``*_ok`` says whether it is usable).

    Prices in quote currency, sizes in base units, the rest in the units of the module docstring.
    ``bid_queue``/``ask_queue`` map a price to the resting size there (the queue we would join);
    ``risk_features`` are the :class:`RiskFeatures` x's (``inventory_utilisation`` is filled in by the
    quoter from q). ``session_end_ns`` (0 = none) shortens T. ``adverse_selection`` is the measured post-fill
    mid move against a maker fill (fraction of mid, :mod:`apps.engine.estimators.adverse`), used while
    ``adverse_selection_ok``; ``fill_cost_curve`` the same per depth
    (:class:`~apps.engine.estimators.depth_markout.DepthCostCurve`), used while ``fill_cost_curve_ok``.
    """

    ts_ns: int
    best_bid: float
    best_ask: float
    kappa: float
    sigma_clean: float
    sigma_inventory: float
    kappa_ok: bool = True
    sigma_ok: bool = True
    a_per_s: float = math.nan
    mean_trade_size: float = math.nan
    drift_mean_per_s: float = 0.0
    drift_std_per_s: float = math.nan
    drift_expected_return: float = 0.0
    drift_ok: bool = False
    book_imbalance: float = 0.0
    flow_imbalance: float = 0.0
    microprice_offset: float = 0.0
    microprice_ok: bool = False
    funding_rate: float = 0.0
    funding_interval_s: float = 8 * 3600.0
    flow_toxicity: float = 0.0
    adverse_selection: float = math.nan
    adverse_selection_ok: bool = False
    fill_cost_curve: Any = None
    fill_cost_curve_ok: bool = False
    bid_queue: dict[float, float] = field(default_factory=dict)
    ask_queue: dict[float, float] = field(default_factory=dict)
    risk_features: dict[str, float] = field(default_factory=dict)
    session_end_ns: int = 0
    extra_inputs: dict[str, float] = field(default_factory=dict)

    @property
    def mid(self) -> float:
        return 0.5 * (self.best_bid + self.best_ask)


@dataclass(frozen=True, slots=True)
class Level:
    side: Side
    index: int
    price: float
    size: float
    offset_frac: float  # distance from mid after rounding, positive = away from mid
    p_fill: float
    expected_pnl: float  # fraction of mid × base units per quote life


@dataclass(frozen=True, slots=True)
class GammaResult:
    gamma: float
    log_contribution: float  # C, the model's total, nats
    log_contribution_bounded: float  # C_max·tanh(C/C_max)
    contributions: dict[str, float]
    features: dict[str, float]

    @property
    def shrink_nats(self) -> float:
        return self.log_contribution - self.log_contribution_bounded


@dataclass(frozen=True, slots=True)
class QuoteResult:
    """The quoter's full answer: ladders, optional taker order, every input and term, and reasons."""

    ts_ns: int
    bids: tuple[Level, ...]
    asks: tuple[Level, ...]
    inputs: DecisionInputs  # every named number of the decision, a typed vector (apps/engine/market/inputs.py)
    reasons: tuple[str, ...]
    taker_side: Side | None = None
    taker_size: float = 0.0
    taker_price: float = math.nan

    def to_decision(self) -> QuoteDecision:
        """The shared :class:`QuoteDecision`: best level per side, ladders flattened into ``inputs``."""
        b = self.bids[0] if self.bids else None
        a = self.asks[0] if self.asks else None
        return QuoteDecision(
            self.ts_ns,
            b.price if b else None,
            a.price if a else None,
            b.size if b else 0.0,
            a.size if a else 0.0,
            self.inputs,
            self.reasons,
        )


# --------------------------------------------------------------------------------------------------
# Pieces (pure functions)
# --------------------------------------------------------------------------------------------------


def direction_confidence(q: float, drift_mean: float, drift_std: float) -> float:
    """``2·Φ(sign(q)·m/s) − 1`` in [−1, 1]; 0 when flat or when the drift sd is unknown/zero."""
    if q == 0 or not (math.isfinite(drift_std) and drift_std > 0 and math.isfinite(drift_mean)):
        return 0.0
    z = math.copysign(1.0, q) * drift_mean / drift_std
    return math.erf(z / math.sqrt(2.0))  # = 2Φ(z) − 1


def bounded_gamma(
    gamma_base: float,
    risk: RiskAversionParams,
    features: dict[str, float],
    beta_direction: float,
    direction_x: float,
    bound_nats: float,
) -> GammaResult:
    """γ = γ₀·exp(C_max·tanh(C/C_max)), C = Σβᵢxᵢ over :data:`FEATURE_NAMES` plus the direction feature.

    ``features`` keys are feature names (missing = 0, the reference); γ₀ is ``gamma_base`` (per base unit).
    The β's come from ``risk`` (its ``gamma_base``, ``gamma_min`` and ``gamma_max`` are not used): the same
    log-additive model as :func:`apps.engine.quoting.risk_aversion.risk_aversion`, with a smooth bound on the
    total log-contribution instead of a clip on γ.

    >>> r = bounded_gamma(100.0, RiskAversionParams(), {"drawdown": 0.5}, -0.5, 0.0, 2.3)
    >>> round(r.gamma, 2), round(r.log_contribution, 3)
    (163.6, 0.5)
    """
    xs = {name: float(features.get(name, 0.0)) for name in FEATURE_NAMES}
    contributions = {name: getattr(risk, attr) * xs[name] for name, attr in _BETA_ATTRS}
    xs["position_direction_confidence"] = direction_x
    contributions["position_direction_confidence"] = beta_direction * direction_x
    c = math.fsum(contributions.values())
    cb = bound_nats * math.tanh(c / bound_nats)
    return GammaResult(gamma_base * math.exp(cb), c, cb, contributions, xs)


def fill_probability(
    a_per_s: float, kappa: float, depth_beyond_touch: float, life_s: float, queue_ahead: float, mean_trade_size: float
) -> float:
    """``1 − exp(−A·e^{−κd}·τ·e^{−Q/v̄})`` (see the module docstring); d ≥ 0 fraction of mid, Q, v̄ base units."""
    d = max(depth_beyond_touch, 0.0)
    through_queue = math.exp(-queue_ahead / mean_trade_size) if mean_trade_size > 0 and queue_ahead > 0 else 1.0
    return -math.expm1(-a_per_s * math.exp(-kappa * d) * life_s * through_queue)


def taker_reduction_size(q: float, slope: float, half_spread_frac: float, cost_frac: float) -> float:
    """x* = |q| − (δ + c)/k cut to [0, |q|] (k = d(inventory_term)/dq, δ the half-spread, c the cost of crossing):
    base units to take so the reducing side's quote is no longer beyond the crossing price (not lot-rounded)."""
    if not slope > 0:
        return 0.0
    return min(max(abs(q) - (half_spread_frac + cost_frac) / slope, 0.0), abs(q))


_BETA_ATTRS = tuple((name, f"beta_{name}") for name in FEATURE_NAMES)


@functools.cache
def _gamma_keys(name: str) -> tuple[str, str]:
    return f"gamma_x_{name}", f"gamma_contrib_{name}"


@functools.cache
def _level_keys(side: Side, i: int) -> tuple[str, str, str, str, str, str]:
    """Label and ``inputs`` keys of ladder level ``i`` on ``side`` (built once: decisions are frequent)."""
    label = f"{'bid' if side is Side.BUY else 'ask'} L{i}"
    stem = label.replace(" ", "_")
    return label, f"{stem}_px", f"{stem}_size", f"{stem}_p_fill", f"{stem}_edge_bps", f"{stem}_expected_pnl"


def _floor_to(x: float, step: float) -> float:
    n = math.floor(x / step + 1e-9)
    return round(n * step, 12)


def _ceil_to(x: float, step: float) -> float:
    n = math.ceil(x / step - 1e-9)
    return round(n * step, 12)


# --------------------------------------------------------------------------------------------------
# The decision, in steps
#
# Each step reads what it needs, returns its result, and appends what it used to the decision's trace:
# ``inputs`` (named numbers) and ``reasons`` (what bound, what was dropped and why), in the order below.
# --------------------------------------------------------------------------------------------------


def py_quote(
    params: QuoterParams,
    risk: RiskAversionParams,
    market: MarketState,
    q: float,
    *,
    tick_size: float,
    lot_size: float,
) -> QuoteResult:
    """Compute the quote ladders for inventory ``q`` in ``market`` (see the module docstring).

    γ → horizon → reservation price and half-spread → skew flag → a ladder per side (price, size, E[P&L]
    filter per level) → emergency taker.
    """
    p = params
    inputs = _market_inputs(p, market, q, tick_size, lot_size)
    if not market.kappa_ok or not market.sigma_ok:
        return QuoteResult(market.ts_ns, (), (), _record(inputs), ("estimators not usable",))
    if p.model != "as" and not (math.isfinite(market.a_per_s) and market.a_per_s > 0):
        reason = f"A not usable: model {p.model} needs the fill intensity"
        return QuoteResult(market.ts_ns, (), (), _record(inputs), (reason,))
    reasons: list[str] = []
    gamma = _gamma_step(p, risk, market, q, inputs, reasons)
    horizon, horizon_source = horizon_left_s(p.horizon_s, market.session_end_ns, market.ts_ns)
    costs = _ladder_costs(p, market, tick_size, inputs)
    res = _reservation_step(p, market, q, gamma, horizon, horizon_source, costs, inputs, reasons)
    _skew_flag_step(p, q, res.model_skew_frac, inputs, reasons)
    bids = _ladder_step(Side.BUY, p, market, q, res, costs, tick_size, lot_size, inputs, reasons)
    asks = _ladder_step(Side.SELL, p, market, q, res, costs, tick_size, lot_size, inputs, reasons)
    taker_side, taker_size, taker_px = _taker_step(p, market, q, gamma, res, costs, lot_size, inputs, reasons)
    inputs["taker_size"] = taker_size
    return QuoteResult(
        market.ts_ns, tuple(bids), tuple(asks), _record(inputs), tuple(reasons), taker_side, taker_size, taker_px
    )


# The steps write the decision's inputs into a dict, in order (the readable form); the result holds them as the typed
# record (apps/engine/market/inputs.py: one shared layout of names, one array of doubles), which the compiled
# quoter writes directly.
_record = DecisionInputs.from_mapping


def _market_inputs(p: QuoterParams, market: MarketState, q: float, tick_size: float, lot_size: float) -> dict:
    """The decision's inputs every quote carries, quoted or not: touch, inventory, κ, σ, A, grid."""
    inputs: dict[str, float] = {
        "mid": market.mid,
        "best_bid": market.best_bid,
        "best_ask": market.best_ask,
        "q": q,
        "q_ratio": q / p.max_inventory,
        "max_inventory": p.max_inventory,
        "kappa": market.kappa,
        "sigma_spread": market.sigma_clean,
        "sigma_inventory": market.sigma_inventory,
        "a_per_s": market.a_per_s,
        "tick_size": tick_size,
        "lot_size": lot_size,
        "model_requested_code": MODEL_CODES[p.model],
    }
    inputs.update(market.extra_inputs)
    return inputs


# --- γ -------------------------------------------------------------------------------------------------


def _gamma_step(
    p: QuoterParams,
    risk: RiskAversionParams,
    market: MarketState,
    q: float,
    inputs: dict[str, float],
    reasons: list[str],
) -> float:
    """γ from the bounded log-additive model (:func:`bounded_gamma`), every feature and contribution traced."""
    features = dict(market.risk_features)
    features["inventory_utilisation"] = (q / p.max_inventory) ** 2
    dir_x = direction_confidence(q, market.drift_mean_per_s, market.drift_std_per_s) if market.drift_ok else 0.0
    g = bounded_gamma(p.gamma_base, risk, features, p.beta_direction_confidence, dir_x, p.gamma_log_bound_nats)
    gamma = g.gamma
    inputs.update(
        gamma=gamma,
        gamma_base=p.gamma_base,
        gamma_full_inventory=gamma * p.max_inventory,
        gamma_log_contribution=g.log_contribution,
        gamma_log_contribution_bounded=g.log_contribution_bounded,
        gamma_bound_shrink_nats=g.shrink_nats,
        gamma_bound=1.0 if abs(g.shrink_nats) > p.gamma_bound_report_nats else 0.0,
    )
    contributions = g.contributions
    for name, x in g.features.items():
        kx, kc = _gamma_keys(name)
        inputs[kx] = x
        inputs[kc] = contributions[name]
    if abs(g.shrink_nats) > p.gamma_bound_report_nats:
        reasons.append(
            f"gamma_bound_binding: model log-contribution {g.log_contribution:.3f} nats compressed to "
            f"{g.log_contribution_bounded:.3f} (bound ±{p.gamma_log_bound_nats:g})"
        )
    return gamma


# --- reservation price and half-spread -------------------------------------------------------------------


def horizon_left_s(horizon_s: float, session_end_ns: int, now_ns: int) -> tuple[float, float]:
    """``(T, source)``: ``horizon_s``, or the time left to ``session_end_ns`` when shorter (source 1.0)."""
    if session_end_ns:
        left = (session_end_ns - now_ns) / 1e9
        if left < horizon_s:
            return max(left, 0.0), 1.0
    return horizon_s, 0.0


# QuoterParams fields that are not numbers (validated as booleans or by name)
_BOOLEAN_OR_NAMED = ("modify_orders", "model", "fill_cost_in_spread", "fill_cost_by_depth", "skew_cap_by_fill_cost")


@dataclass(frozen=True, slots=True)
class Reservation:
    """The reservation price ``r`` (quote currency) and what the ladders and the taker need with it."""

    price: float
    half_spread_frac: float  # δ, fraction of mid (δ* plus the cost of a fill)
    skew_frac: float  # (s − r)/s, as quoted (after the skew cap)
    model_skew_frac: float  # the skew the model asked for, before the cap (the skew flag reads this)
    horizon_s: float  # T actually used
    sigma_inventory: float  # σ_inv of the inventory term, per √s
    inventory_slope: float  # d(inventory_term)/dq, fraction of mid per base unit


@dataclass(frozen=True, slots=True)
class ModelTerms:
    """What the quoting model contributes: the inventory term and the half-spread (fractions of mid)."""

    model: str  # the model actually used ("glft_finite" falls back to "glft" without a session end)
    inventory_term: float  # q-driven reservation shift, positive when long (quotes move down)
    half_spread: float  # δ*, fraction of mid
    c1: float  # the risk-neutral part of δ*: (1/(ξΔ))·ln(1+ξΔ/κ) (GLFT) or (1/γ)·ln(1+γ/κ) (AS)
    c2: float  # GLFT's c2 (√s per base unit); NaN for AS
    xi: float  # spread-term risk aversion ξ
    a_mid_per_s: float  # A at zero distance from mid, per second
    inventory_slope: float  # k = inventory_term / q (per base unit); the finite solution's chord at one lot when flat
    note: str = ""


def glft_a_at_mid(market: MarketState) -> float:
    """A at zero distance *from mid*, per second: the tape's A counts trades reaching the touch (the κ fit
    measures depth beyond it), so ``λ(δ) = A·e^{−κ(δ−h)} = (A·e^{κh})·e^{−κδ}`` with h the half market spread."""
    h = 0.5 * (market.best_ask - market.best_bid) / market.mid
    return market.a_per_s * math.exp(market.kappa * max(h, 0.0))


def model_terms(p: QuoterParams, market: MarketState, q: float, gamma: float, horizon: float) -> ModelTerms:
    """The inventory term and half-spread of ``p.model`` (module docstring, "Quoting models").

    GLFT models need A (``market.a_per_s`` finite and > 0); the caller checks that first.
    """
    kappa = market.kappa
    sig_spread, sig_inv = market.sigma_clean, market.sigma_inventory
    if p.model == "as":
        gd = gamma * p.order_size
        c1 = half_spread(gd, kappa)  # (1/(γΔ))·ln(1 + γΔ/κ)
        inv = q * gamma * sig_inv * sig_inv * horizon
        delta = c1 + 0.5 * gd * sig_spread * sig_spread * horizon
        return ModelTerms("as", inv, delta, c1, math.nan, gamma, math.nan, gamma * sig_inv**2 * horizon)
    xi = p.gamma_base
    a_mid = glft_a_at_mid(market)
    c1, c2 = glft_coefficients(gamma, xi, p.order_size, a_mid, kappa)
    delta = c1 + 0.5 * p.order_size * sig_spread * c2
    asym = ModelTerms("glft", q * sig_inv * c2, delta, c1, c2, xi, a_mid, sig_inv * c2)
    if p.model == "glft":
        return asym
    if not market.session_end_ns:
        return replace(asym, note="glft_finite: no session end, asymptotic GLFT")
    tau = max((market.session_end_ns - market.ts_ns) / 1e9, 0.0)
    n_lots = min(max(round(p.max_inventory / p.order_size), 1), 2000)
    gp = GLFTParams(gamma, sig_inv, kappa, a_mid, p.order_size, n_lots * p.order_size, xi)
    try:
        bid, ask = glft_offsets_at(gp, tau)
    except GLFTRangeError as exc:
        return replace(asym, note=f"glft_finite: {exc}; asymptotic GLFT")
    # Where a side is not quoted (the grid's edge) take the asymptotic offset: the ladder's room rule drops it.
    grid = gp.inventory
    bid = np.where(np.isfinite(bid), bid, c1 + sig_inv * c2 * (grid + 0.5 * p.order_size))
    ask = np.where(np.isfinite(ask), ask, c1 - sig_inv * c2 * (grid - 0.5 * p.order_size))

    def inventory_term_at(qq: float) -> float:  # the solution's (bid − ask)/2, linear in q between grid points
        x = min(max(qq / p.order_size + n_lots, 0.0), 2.0 * n_lots)
        i0 = min(math.floor(x), 2 * n_lots - 1)
        w = x - i0
        b = (1.0 - w) * bid[i0] + w * bid[i0 + 1]
        a = (1.0 - w) * ask[i0] + w * ask[i0 + 1]
        return 0.5 * (b - a)

    # plain floats (the grid's values are numpy scalars): a decision's inputs are Python floats whatever the model
    inv = float(inventory_term_at(q))
    k = inv / q if q else float(inventory_term_at(p.order_size)) / p.order_size
    flat_half = 0.5 * float(bid[n_lots] + ask[n_lots])  # symmetric at q = 0: bid = ask offset there
    return ModelTerms("glft_finite", inv, flat_half, c1, c2, xi, a_mid, k)


def _reservation_step(
    p: QuoterParams,
    market: MarketState,
    q: float,
    gamma: float,
    horizon: float,
    horizon_source: float,
    costs: LadderCosts,
    inputs: dict[str, float],
    reasons: list[str],
) -> Reservation:
    """``r = s·(1 + drift − inventory − funding + imbalance + flow + microprice)`` and ``δ*`` (module docstring)."""
    mid = market.mid
    sig_inv = market.sigma_inventory
    terms = model_terms(p, market, q, gamma, horizon)
    inventory_term = terms.inventory_term
    drift_term = market.drift_expected_return if market.drift_ok else 0.0
    funding_term = market.funding_rate * horizon / market.funding_interval_s
    if market.microprice_ok:
        imbalance_skew = flow_skew = 0.0
        micro_term = market.microprice_offset
        reasons.append("microprice usable: learned microprice term replaces the imbalance and flow prior skews")
    else:
        imbalance_skew = p.imbalance_coef_bps * _BPS * market.book_imbalance
        flow_skew = p.flow_coef_bps * _BPS * market.flow_imbalance
        micro_term = 0.0
    shift = drift_term - inventory_term - funding_term + imbalance_skew + flow_skew + micro_term
    r = mid * (1.0 + shift)
    by_depth = p.fill_cost_in_spread and p.fill_cost_by_depth and market.fill_cost_curve_ok
    if by_depth:
        delta, cost_at_quote = depth_priced_half_spread(
            terms.half_spread, market.kappa, market.fill_cost_curve, max(market.flow_toxicity, 0.0), costs.fee_frac
        )
        fill_cost = delta - terms.half_spread
    else:
        fill_cost = max(costs.adverse_frac + costs.fee_frac, 0.0) if p.fill_cost_in_spread else 0.0
        delta = terms.half_spread + fill_cost
        cost_at_quote = costs.adverse_frac + costs.fee_frac
    model_shift = shift
    cap = math.nan
    if by_depth and p.skew_cap_by_fill_cost:
        cap = delta - fill_cost_floor_depth(market.fill_cost_curve, costs.fee_frac, delta)
        if shift > cap:
            shift = cap
        elif shift < -cap:
            shift = -cap
        if shift != model_shift:
            r = mid * (1.0 + shift)
            reasons.append(_SKEW_CAPPED)
    skew = -shift
    if terms.note:
        reasons.append(terms.note)
    inputs.update(
        model_code=MODEL_CODES[terms.model],
        model_requested_code=MODEL_CODES[p.model],
        spread_gamma=terms.xi,
        glft_c1_frac=terms.c1,
        glft_c2=terms.c2,
        glft_a_mid_per_s=terms.a_mid_per_s,
        half_spread_base_frac=terms.c1,
        half_spread_risk_frac=terms.half_spread - terms.c1,
        half_spread_model_frac=terms.half_spread,
        half_spread_fill_cost_frac=fill_cost,
        fill_cost_by_depth=1.0 if by_depth else 0.0,
        fill_cost_at_quote_frac=cost_at_quote,
        inventory_slope_frac=terms.inventory_slope,
    )
    inputs.update(
        horizon_s=horizon,
        horizon_source=horizon_source,
        drift_horizon_s=p.drift_horizon_s,
        drift_mean_per_s=market.drift_mean_per_s,
        drift_std_per_s=market.drift_std_per_s,
        drift_ok=1.0 if market.drift_ok else 0.0,
        inventory_term_frac=inventory_term,
        drift_term_frac=drift_term,
        funding_rate=market.funding_rate,
        funding_term_frac=funding_term,
        book_imbalance=market.book_imbalance,
        flow_imbalance=market.flow_imbalance,
        imbalance_skew_frac=imbalance_skew,
        flow_skew_frac=flow_skew,
        microprice_ok=1.0 if market.microprice_ok else 0.0,
        microprice_term_frac=micro_term,
        reservation_shift_frac=shift,
        skew_frac=skew,
        skew_bps=skew * 1e4,
        skew_model_frac=-model_shift,
        skew_cap_frac=cap,
        reservation_price=r,
        half_spread_frac=delta,
        half_spread_bps=delta * 1e4,
        raw_bid=r - delta * mid,
        raw_ask=r + delta * mid,
    )
    if not market.drift_ok:
        reasons.append("drift not usable: drift term is 0")
    return Reservation(r, delta, skew, -model_shift, horizon, sig_inv, terms.inventory_slope)


_SKEW_CAPPED = "skew capped: nearer the mid a fill costs more than it earns (depth curve)"


def fill_cost_floor_depth(curve: Any, fee_frac: float, delta: float) -> float:
    """The shallowest grid depth ``d`` (fraction of mid) of the depth curve where a fill earns its cost,
    ``d − c(d) − fee ≥ 0``, or ``delta`` when none at or below ``delta`` does (module docstring, "Skew cap")."""
    costs = curve.cost_array
    step = curve.step
    for k in range(len(costs)):
        d = k * step
        if d >= delta:
            break
        if d - float(costs[k]) - fee_frac >= 0.0:
            return d
    return delta


def py_depth_priced_half_spread(
    delta_star: float, kappa: float, curve: Any, toxicity: float, fee_frac: float
) -> tuple[float, float]:
    """``(δ, C(δ))``: the half-spread at or beyond ``delta_star`` that maximises
    ``J(δ) = e^{−κδ}·(δ − δ* + 1/κ − C(δ))``, with ``C(δ) = c(δ) + toxicity·max(ā, 0) + fee`` and ``c`` the depth
    curve (module docstring, "Cost of a fill"; fractions of mid, κ per fraction of mid).

    ``c`` is linear between the curve's grid points and constant past the last one
    (:meth:`~apps.engine.estimators.depth_markout.DepthCostCurve.cost_at`), so on each cell J has one stationary
    point, found in closed form and clamped to the cell; the best cell wins, ties to the wider δ. This is the
    exact maximiser over all δ ≥ δ*, not over a grid: with a constant ``c`` it is ``max(δ* + c + fee, δ*)``, the
    scalar rule, and it never decreases when δ* or the added cost rises (J has increasing differences in δ and each
    of them, and the feasible set [δ*, ∞) rises with δ*)."""
    if not (kappa > 0 and math.isfinite(kappa) and math.isfinite(delta_star)):
        raise ValueError(f"depth_priced_half_spread: needs a finite δ* and κ > 0, got δ*={delta_star!r} κ={kappa!r}")
    lo = delta_star
    costs = curve.cost_array  # float64; each cost is read back as a Python float (the same double)
    step = curve.step
    extra = toxicity * max(curve.pooled, 0.0) + fee_frac
    inv_k = 1.0 / kappa
    base = delta_star - inv_k  # J(δ) = e^{−κδ}·(δ − base − C(δ)), up to the factor e^{κδ*}
    last = len(costs) - 1
    best, best_cost, best_v = math.nan, math.nan, -math.inf
    for k in range(min(max(math.floor(lo / step), 0), last), last + 1):
        e = k * step
        a = e if e > lo else lo  # the cell's part at or beyond δ*
        b = (k + 1) * step if k < last else math.inf
        if b < a:
            continue
        ck = float(costs[k])
        c0 = ck + extra
        slope = (float(costs[k + 1]) - ck) / step if k < last else 0.0
        if slope < 1.0:  # J rises then falls on the cell: its stationary point, clamped to the cell
            x = inv_k + (base + c0 - slope * e) / (1.0 - slope)
            x = b if x > b else (a if x < a else x)
        else:  # the cost rises faster than the depth: J falls across the cell
            x = a
        c = c0 + slope * (x - e)
        v = math.exp(-kappa * (x - lo)) * (x - base - c)
        if v >= best_v:  # ties to the wider δ
            best, best_cost, best_v = x, c, v
    return best, best_cost


# the compiled twin (apps/engine/quoting/_depthprice.pyx: the same loop in C, the same doubles) when it is built
_depthprice = compiled.load("apps.engine.quoting._depthprice")
depth_priced_half_spread = py_depth_priced_half_spread if _depthprice is None else _depthprice.depth_priced_half_spread
DEPTHPRICE_COMPILED = _depthprice is not None


def _skew_flag_step(p: QuoterParams, q: float, skew: float, inputs: dict[str, float], reasons: list[str]) -> None:
    """Flag a skew too small for the position (seed 003: short 8.65 units with a 0.00 bps skew)."""
    small = abs(q) > p.skew_flag_ratio * p.max_inventory and abs(skew) < p.skew_flag_bps * _BPS
    inputs["skew_too_small"] = 1.0 if small else 0.0
    if small:
        reasons.append(
            f"skew_too_small: |q|={abs(q):.6g} > {p.skew_flag_ratio:g}·Q_max but |skew|={abs(skew) * 1e4:.3f} bps "
            f"< {p.skew_flag_bps:g} bps"
        )


# --- ladders ----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LadderCosts:
    """What every level's price and E[P&L] need besides the reservation price (fractions of mid unless stated)."""

    spacing_px: float  # distance between levels, quote currency (at least one tick)
    adverse_frac: float  # expected post-fill move against us, scaled by flow toxicity
    fee_frac: float  # maker fee (negative = rebate)
    half_market_spread_px: float  # half the market's spread, quote currency
    a_per_s: float  # A (NaN = unknown: p_fill unknown)
    mean_trade_size: float  # v̄, base units


def _ladder_costs(p: QuoterParams, market: MarketState, tick_size: float, inputs: dict[str, float]) -> LadderCosts:
    mid = market.mid
    measured = market.adverse_selection_ok and math.isfinite(market.adverse_selection)
    base = market.adverse_selection if measured else p.adverse_selection_bps * _BPS
    adverse = base * (1.0 + max(market.flow_toxicity, 0.0))
    fee = p.maker_fee_bps * _BPS
    inputs.update(
        adverse_selection_frac=adverse,
        adverse_selection_base_frac=base,
        adverse_selection_measured=1.0 if measured else 0.0,
        maker_fee_frac=fee,
        quote_life_s=p.quote_life_s,
    )
    return LadderCosts(
        spacing_px=max(p.level_spacing_bps * _BPS * mid, tick_size),
        adverse_frac=adverse,
        fee_frac=fee,
        half_market_spread_px=0.5 * (market.best_ask - market.best_bid),
        a_per_s=market.a_per_s if math.isfinite(market.a_per_s) else math.nan,
        mean_trade_size=market.mean_trade_size,
    )


def level_price(
    side: Side, offset_px: float, r: float, best_bid: float, best_ask: float, last_px: float | None, tick: float
) -> tuple[float, bool]:
    """``(price, clamped)`` of a level ``offset_px`` from ``r``: rounded outward to the tick, never through the
    opposite touch (post-only: one tick inside it instead, ``clamped``), and strictly behind the level before."""
    clamped = False
    if side is Side.BUY:
        px = _floor_to(r - offset_px, tick)
        if px >= best_ask:
            px = _floor_to(best_ask - tick, tick)
            clamped = True
        if last_px is not None and px >= last_px:
            px = round(last_px - tick, 12)
    else:
        px = _ceil_to(r + offset_px, tick)
        if px <= best_bid:
            px = _ceil_to(best_bid + tick, tick)
            clamped = True
        if last_px is not None and px <= last_px:
            px = round(last_px + tick, 12)
    return px, clamped


def level_size(order_size: float, size_growth: float, i: int, room: float, lot_size: float) -> float:
    """``order_size·size_growth^i`` rounded down to the lot, cut to the ``room`` left on this side."""
    size = _floor_to(order_size * size_growth**i, lot_size)
    if size > room + 1e-12:
        size = _floor_to(max(room, 0.0), lot_size)
    return size


def level_expected_pnl(
    side: Side,
    px: float,
    size: float,
    market: MarketState,
    r: float,
    costs: LadderCosts,
    quote_life_s: float,
) -> tuple[float, float, float, float]:
    """``(offset, edge, p_fill, E[P&L])`` of a level (fractions of mid; E[P&L] × base units per quote life).

    ``edge − adverse − fee`` is the value per unit of a fill; p_fill unknown (NaN) counts as 1.
    """
    mid = market.mid
    off = (mid - px) / mid if side is Side.BUY else (px - mid) / mid
    edge = (r - px) / mid if side is Side.BUY else (px - r) / mid
    beyond = off - costs.half_market_spread_px / mid
    queue_ahead = (market.bid_queue if side is Side.BUY else market.ask_queue).get(px, 0.0)
    if math.isfinite(costs.a_per_s) and math.isfinite(costs.mean_trade_size):
        pf = fill_probability(costs.a_per_s, market.kappa, beyond, quote_life_s, queue_ahead, costs.mean_trade_size)
    else:
        pf = math.nan
    per_unit = edge - costs.adverse_frac - costs.fee_frac
    epnl = (pf if math.isfinite(pf) else 1.0) * size * per_unit
    return off, edge, pf, epnl


def _ladder_step(
    side: Side,
    p: QuoterParams,
    market: MarketState,
    q: float,
    res: Reservation,
    costs: LadderCosts,
    tick_size: float,
    lot_size: float,
    inputs: dict[str, float],
    reasons: list[str],
) -> list[Level]:
    """Levels ``0..N−1`` of one side: price, size within the side's room, then the E[P&L] filter per level.

    A level dropped by the filter leaves its room to the next one; the first level with less than a lot of room
    ends the side.
    """
    mid = market.mid
    r, delta = res.price, res.half_spread_frac
    left = p.max_inventory - q if side is Side.BUY else p.max_inventory + q
    touch_clamped = False
    last_px: float | None = None
    ladder: list[Level] = []
    for i in range(int(p.levels)):
        px, clamped = level_price(
            side, delta * mid + i * costs.spacing_px, r, market.best_bid, market.best_ask, last_px, tick_size
        )
        touch_clamped = touch_clamped or clamped
        last_px = px
        label, k_px, k_size, k_pfill, k_edge, k_epnl = _level_keys(side, i)
        if px <= 0:
            reasons.append(f"{label} dropped: price {px:g} <= 0")
            continue
        size = level_size(p.order_size, p.size_growth, i, left, lot_size)
        if size < lot_size - 1e-12:
            word = "bid" if side is Side.BUY else "ask"
            bound = "max_inventory" if side is Side.BUY else "-max_inventory"
            reasons.append(
                f"no {word} at L{i}: a fill would take q={q:.6g} past {bound} {p.max_inventory:g} "
                f"(room {max(left, 0.0):.6g})"
            )
            break
        off, edge, pf, epnl = level_expected_pnl(side, px, size, market, r, costs, p.quote_life_s)
        inputs[k_px] = px
        inputs[k_size] = size
        inputs[k_pfill] = pf
        inputs[k_edge] = edge * 1e4
        inputs[k_epnl] = epnl
        per_unit = edge - costs.adverse_frac - costs.fee_frac
        at_touch = px >= market.best_bid if side is Side.BUY else px <= market.best_ask
        # the E[P&L] filter; at or through the touch (first in the queue, first picked off) only when > 0
        if per_unit < 0 or (at_touch and per_unit <= 0):
            reasons.append(
                f"{label} dropped: expected P&L {epnl:.3g} {'<=' if at_touch else '<'} 0"
                f"{' at the touch' if at_touch else ''} (edge {edge * 1e4:.3f} bps vs adverse "
                f"{costs.adverse_frac * 1e4:.3f} + fee {costs.fee_frac * 1e4:.3f} bps, p_fill {pf:.3g})"
            )
            continue
        ladder.append(Level(side, i, px, size, off, pf, epnl))
        left -= size
    if touch_clamped:
        word = "bid" if side is Side.BUY else "ask"
        other = "ask" if side is Side.BUY else "bid"
        where = "below the best ask" if side is Side.BUY else "above the best bid"
        reasons.append(f"{word} would cross the {other}: placed one tick {where} (post-only)")
    return ladder


# --- emergency taker ----------------------------------------------------------------------------------------


def _taker_step(
    p: QuoterParams,
    market: MarketState,
    q: float,
    gamma: float,
    res: Reservation,
    costs: LadderCosts,
    lot_size: float,
    inputs: dict[str, float],
    reasons: list[str],
) -> tuple[Side | None, float, float]:
    """``(side, size, price)`` of the emergency taker order, or ``(None, 0, NaN)`` (module docstring)."""
    if not (abs(q) >= p.taker_trigger_ratio * p.max_inventory and q != 0):
        return None, 0.0, math.nan
    mid = market.mid
    cost = costs.half_market_spread_px / mid + p.taker_fee_bps * _BPS
    x = _floor_to(taker_reduction_size(q, res.inventory_slope, res.half_spread_frac, cost), lot_size)
    inputs.update(taker_cost_frac=cost, taker_size_optimal=x)
    if x < lot_size - 1e-12:
        return None, 0.0, math.nan
    reasons.append(
        f"emergency taker: |q|={abs(q):.6g} >= {p.taker_trigger_ratio:g}·Q_max and the reducing quote would sit "
        f"{(abs(q) * res.inventory_slope - res.half_spread_frac) * 1e4:.2f} bps beyond the mid, past the crossing "
        f"cost {cost * 1e4:.2f} bps; {'sell' if q > 0 else 'buy'} {x:g}"
    )
    return (Side.SELL if q > 0 else Side.BUY), x, (market.best_bid if q > 0 else market.best_ask)


# The compiled twin of py_quote (apps/engine/quoting/_quote.pyx: the same steps in C doubles, the same QuoteResult to
# the bit) when it is built. Loaded last: it reads this module's classes and steps on its first call.
_quote = compiled.load("apps.engine.quoting._quote")
quote = py_quote if _quote is None else _quote.quote
QUOTE_COMPILED = _quote is not None
