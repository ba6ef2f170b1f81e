"""The strategy core: market and order events in, orders and the decision that caused them out.

One object, no clock of its own (time comes with the events), used unchanged by the live loop, the paper loop
and backtests (architecture principle 1). It owns the market estimators (:class:`~apps.engine.estimators.market.
MarketEstimators`: L2 book, κ, σ, λ/A, flow, Hawkes, fill cascades, drift, microprice), the quoter
(:mod:`apps.engine.quoting.quoter`) and the order tracker. Each decision carries every input that produced it, with
the age of each estimate (principle 2); a quote is only made from κ and σ in state OK (principle 3): while
either is warming, stale or failed the core pulls its quotes and says why, it never substitutes a constant.

When a decision is made
-----------------------
Trades, depth diffs and acks only update state. A new decision is computed on a top-of-book event, a fill,
a timer or a funding event, and only when something it depends on changed: the touch prices, the inventory,
a refreshed estimate (see the refresh schedule in :mod:`apps.engine.estimators.market`), or ``decision_interval_s``
elapsed since the last one. Between those the last decision stands (its inputs would be identical up to
the touch sizes), which is what keeps the per-event cost bounded on a busy feed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from apps.engine import compiled
from apps.engine.estimators.adverse import AdverseSelectionParams
from apps.engine.estimators.base import EstimatorSnapshot
from apps.engine.estimators.depth_markout import MID_HISTORY_S, DepthMarkoutParams
from apps.engine.estimators.drift import DriftParams
from apps.engine.estimators.hawkes import HawkesParams
from apps.engine.estimators.kappa import KappaParams
from apps.engine.estimators.market import EstimatorConfig, MarketEstimators
from apps.engine.estimators.sigma import SigmaParams
from apps.engine.execution.orders import OrderTracker
from apps.engine.execution.reconcile import reconcile_side
from apps.engine.market.events import (
    Action,
    BestBidAsk,
    CancelAll,
    DepthSnapshot,
    DepthUpdate,
    Fill,
    OrderAck,
    OrderReject,
    PlaceOrder,
    QuoteDecision,
    Side,
    Trade,
)
from apps.engine.market.inputs import DecisionInputs
from apps.engine.quoting.quoter import MODEL_CODES, MarketState, QuoteResult, QuoterParams, quote
from apps.engine.quoting.risk_aversion import FEATURE_NAMES, RiskAversionParams
from apps.engine.validation import finite, integer, non_negative, positive

_NS = 1_000_000_000

# A session's ``strategy`` dict is flat: each QuoterParams field by its own name, except gamma_base, which sessions
# have always called ``gamma``.
FLAT_QUOTER_NAMES: dict[str, str] = {
    ("gamma" if f.name == "gamma_base" else f.name): f.name for f in fields(QuoterParams)
}
# the depth-priced fill cost's decision inputs besides its state flag (NaN when the quoter does not price with it;
# the estimator is still fed every trade, so turning fill_cost_by_depth on mid-session finds a warm curve)
_DEPTH_MARKOUT_INPUTS = (
    "depth_markout_events",
    "depth_markout_pooled_bps",
    "depth_markout_cost_0_5bps_bps",
    "depth_markout_cost_1bps_bps",
    "depth_markout_cost_2bps_bps",
)
_WHOLE_NUMBERS = ("levels", "requote_ticks")  # JSON may give 2.0; the quoter and the book want 2
# The StrategyParams fields the estimators are built from: they cannot change on a running core (new estimators
# would start cold, the book included); every other field applies at the next decision (StrategyCore.apply_params).
ESTIMATOR_FIELDS = (
    "kappa_window_s",
    "kappa_min_volume",
    "sigma_bucket_s",
    "sigma_min_buckets",
    "kappa_refresh_s",
    "snapshot_refresh_s",
    "drift_obs_interval_s",
    "kappa_prior",
    "drift_obs_var_trade_flow",
    "drift_obs_var_momentum",
    "drift_obs_var_microprice",
    "hawkes_prior_mu_per_s",
    "hawkes_prior_alpha_per_s",
    "hawkes_prior_beta_per_s",
    "depth_markout_reference_lag_s",
)
# The γ model's coefficients a session sets, in the nested ``strategy.risk_aversion`` object: the βs only. The
# quoter takes γ₀ from ``gamma`` and bounds γ with ``gamma_log_bound_nats``; RiskAversionParams' own gamma_base,
# gamma_min and gamma_max are not used by it, so a session cannot set them.
RISK_AVERSION_FIELDS: tuple[str, ...] = tuple(f"beta_{name}" for name in FEATURE_NAMES)
_KAPPA, _DRIFT, _HAWKES = KappaParams(), DriftParams(), EstimatorConfig().hawkes_prior
_DEPTH_MARKOUT = DepthMarkoutParams()


@dataclass(frozen=True, slots=True)
class StrategyParams:
    """The strategy core's parameters: the quoter's, nested, plus the estimators' and the core's own.

    A session's ``strategy`` dict stays flat, as sessions store it: ``{"gamma": 5000, "max_inventory": 0.05,
    "kappa_window_s": 60, ...}``. :meth:`from_dict` reads it (``gamma`` is the quoter's ``gamma_base``; every
    other quoter field keeps its name, see :data:`FLAT_QUOTER_NAMES`) and :meth:`as_dict` writes the same shape.
    The quoting defaults are :class:`~apps.engine.quoting.quoter.QuoterParams`'s; nothing here repeats them.

    Attributes
    ----------
    quoter : QuoterParams
        γ₀ and its model, T, Q_max, order size, ladder, reservation-price terms, E[P&L] filter, requote rule,
        taker (see :class:`~apps.engine.quoting.quoter.QuoterParams` for units and defaults).
    kappa_window_s, kappa_min_volume : float
        Trade window (s) and minimum window volume (base units) of the κ estimator.
    sigma_bucket_s : float
        Target bucket length (s) of the σ estimator's volume clock.
    sigma_min_buckets : int
        Bucket returns the σ estimator needs before it reports (quoting waits for it).
    loss_budget : float
        Session loss budget, quote currency; the drawdown feature of γ is drawdown / loss_budget.
    kappa_refresh_s, snapshot_refresh_s, drift_obs_interval_s : float
        Estimator refresh schedule, seconds (see :mod:`apps.engine.estimators.market`).
    decision_interval_s : float
        A decision is recomputed at least this often while events arrive, even if nothing changed.
    session_end_ns : int
        Session close, ns since the epoch (0 = none); T is the time left to it when shorter.
    kappa_prior : float
        Prior mean of κ, per unit fractional distance beyond the touch: the κ estimator's Gamma prior
        (``KappaParams.prior_kappa``) the live estimate starts from and shrinks towards while trades are few.
    drift_obs_var_trade_flow, drift_obs_var_momentum, drift_obs_var_microprice : float
        Observation noise variance R of each reading of the Kalman drift (``DriftParams.obs_var_*``), 1/s²: the
        larger, the less that reading moves the drift estimate.
    hawkes_prior_mu_per_s, hawkes_prior_alpha_per_s, hawkes_prior_beta_per_s : float
        Hawkes intensity the trade and fill cascade estimators start from, 1/s: baseline μ, jump per event α and
        decay β (α < β).
    depth_markout_reference_lag_s : float
        The depth-conditional fill cost's reference lag, seconds (``DepthMarkoutParams.reference_lag_s``): a public
        trade's depth and the move after it are measured from the mid this long before it, the age of the mid a
        resting quote was priced from. Default 0.02; ``manage.py evaluate`` calibrates it on each recording's fit
        part from the age of our own quotes when filled. ≥ 0, and with the markout horizon (the quote life, at most
        5 s) below the 10 s of mid history the estimator keeps.
    risk_aversion : RiskAversionParams
        The γ model's βs, nats per unit feature (``strategy.risk_aversion.beta_<feature>``; see
        :mod:`apps.engine.quoting.risk_aversion` for each feature); only the ``beta_*`` fields are read.
    """

    quoter: QuoterParams = field(default_factory=QuoterParams)
    kappa_window_s: float = 60.0
    kappa_min_volume: float = 0.5
    sigma_bucket_s: float = 1.0
    sigma_min_buckets: int = 20
    loss_budget: float = 100.0
    kappa_refresh_s: float = 1.0
    snapshot_refresh_s: float = 0.25
    drift_obs_interval_s: float = 1.0
    decision_interval_s: float = 0.5
    session_end_ns: int = 0
    kappa_prior: float = _KAPPA.prior_kappa
    drift_obs_var_trade_flow: float = _DRIFT.obs_var_trade_flow
    drift_obs_var_momentum: float = _DRIFT.obs_var_momentum
    drift_obs_var_microprice: float = _DRIFT.obs_var_microprice
    hawkes_prior_mu_per_s: float = _HAWKES.mu_per_s
    hawkes_prior_alpha_per_s: float = _HAWKES.alpha_per_s
    hawkes_prior_beta_per_s: float = _HAWKES.beta_per_s
    depth_markout_reference_lag_s: float = _DEPTH_MARKOUT.reference_lag_s
    risk_aversion: RiskAversionParams = field(default_factory=RiskAversionParams)

    @property
    def max_inventory(self) -> float:
        """Q_max (the quoter's), which the backtest driver and the session's risk rules read."""
        return self.quoter.max_inventory

    def validate(self) -> StrategyParams:
        where = "StrategyParams"
        if not isinstance(self.quoter, QuoterParams):
            raise ValueError(f"StrategyParams.quoter must be a QuoterParams, got {type(self.quoter).__name__}")
        for name in (
            "kappa_window_s",
            "sigma_bucket_s",
            "loss_budget",
            "kappa_refresh_s",
            "snapshot_refresh_s",
            "drift_obs_interval_s",
            "decision_interval_s",
            "kappa_prior",
            "drift_obs_var_trade_flow",
            "drift_obs_var_momentum",
            "drift_obs_var_microprice",
            "hawkes_prior_mu_per_s",
            "hawkes_prior_beta_per_s",
        ):
            positive(name, getattr(self, name), where)
        non_negative("kappa_min_volume", self.kappa_min_volume, where)
        non_negative("hawkes_prior_alpha_per_s", self.hawkes_prior_alpha_per_s, where)
        non_negative("depth_markout_reference_lag_s", self.depth_markout_reference_lag_s, where)
        if not self.hawkes_prior_alpha_per_s < self.hawkes_prior_beta_per_s:
            raise ValueError(
                f"{where}.hawkes_prior_alpha_per_s must be < hawkes_prior_beta_per_s (a stationary Hawkes process), "
                f"got {self.hawkes_prior_alpha_per_s!r} >= {self.hawkes_prior_beta_per_s!r}"
            )
        integer("sigma_min_buckets", self.sigma_min_buckets, where, minimum=2)
        integer("session_end_ns", self.session_end_ns, where)
        if not isinstance(self.risk_aversion, RiskAversionParams):
            raise ValueError(f"{where}.risk_aversion must be an object of βs, got {type(self.risk_aversion).__name__}")
        for name in RISK_AVERSION_FIELDS:
            finite(name, getattr(self.risk_aversion, name), f"{where}.risk_aversion")
        try:
            self.quoter.validate()
        except ValueError as exc:  # named as the session's flat dict names them
            message = str(exc).replace("QuoterParams.gamma_base", "StrategyParams.gamma")
            raise ValueError(message.replace("QuoterParams.", "StrategyParams.")) from None
        horizon = min(self.quoter.quote_life_s, 0.5 * MID_HISTORY_S)
        if not horizon + self.depth_markout_reference_lag_s < MID_HISTORY_S:
            raise ValueError(
                f"{where}.depth_markout_reference_lag_s must be < {MID_HISTORY_S - horizon:g} s (the {MID_HISTORY_S:g} "
                f"s of mid history kept, less the markout horizon {horizon:g} s), got "
                f"{self.depth_markout_reference_lag_s!r}"
            )
        return self

    def estimator_config(self, tick_size: float) -> EstimatorConfig:
        return EstimatorConfig(
            kappa=KappaParams(
                window_s=self.kappa_window_s,
                min_volume=self.kappa_min_volume,
                prior_kappa=self.kappa_prior,
                tick_size=tick_size,
                gof_interval_s=10.0,
            ),
            sigma=SigmaParams(target_bucket_s=self.sigma_bucket_s, min_buckets=int(self.sigma_min_buckets)),
            drift=DriftParams(
                obs_var_trade_flow=self.drift_obs_var_trade_flow,
                obs_var_momentum=self.drift_obs_var_momentum,
                obs_var_microprice=self.drift_obs_var_microprice,
            ),
            hawkes_prior=HawkesParams(
                mu_per_s=self.hawkes_prior_mu_per_s,
                alpha_per_s=self.hawkes_prior_alpha_per_s,
                beta_per_s=self.hawkes_prior_beta_per_s,
            ),
            # the markout horizon of the measured adverse selection is the quoter's quote life
            adverse=AdverseSelectionParams(horizon_s=self.quoter.quote_life_s),
            # and of the depth curve, within the mid history it reads (10 s)
            depth_markout=DepthMarkoutParams(
                horizon_s=min(self.quoter.quote_life_s, 0.5 * MID_HISTORY_S),
                reference_lag_s=self.depth_markout_reference_lag_s,
            ),
            kappa_refresh_s=self.kappa_refresh_s,
            kappa_min_refresh_s=min(0.2, self.kappa_refresh_s),
            snapshot_refresh_s=self.snapshot_refresh_s,
            drift_obs_interval_s=self.drift_obs_interval_s,
        )

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> StrategyParams:
        """From a session's flat ``strategy`` dict (any subset of :meth:`as_dict`'s keys), validated."""
        if not isinstance(data, Mapping):
            raise ValueError(f"StrategyParams: parameters must be an object, got {type(data).__name__}")
        own = {f.name for f in fields(cls)} - {"quoter", "risk_aversion"}
        known = own | set(FLAT_QUOTER_NAMES) | {"risk_aversion"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"StrategyParams: unknown parameter(s) {unknown}; known: {sorted(known)}")
        quoter = {FLAT_QUOTER_NAMES[k]: v for k, v in data.items() if k in FLAT_QUOTER_NAMES}
        for name in _WHOLE_NUMBERS:
            v = quoter.get(name)
            if isinstance(v, float) and v.is_integer():
                quoter[name] = int(v)
        risk = _risk_aversion(data.get("risk_aversion", {}))
        return cls(QuoterParams(**quoter), risk_aversion=risk, **{k: v for k, v in data.items() if k in own}).validate()

    def as_dict(self) -> dict[str, Any]:
        """The ``strategy`` dict a session stores (flat but for the ``risk_aversion`` βs); :meth:`from_dict` reads
        it back."""
        out = {flat: getattr(self.quoter, name) for flat, name in FLAT_QUOTER_NAMES.items()}
        out.update({f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("quoter", "risk_aversion")})
        out["risk_aversion"] = {name: getattr(self.risk_aversion, name) for name in RISK_AVERSION_FIELDS}
        return out


def _risk_aversion(data: Any) -> RiskAversionParams:
    """The γ model's βs from a session's ``strategy.risk_aversion`` object (any subset of the ``beta_*`` names)."""
    where = "StrategyParams.risk_aversion"
    if not isinstance(data, Mapping):
        raise ValueError(f"{where} must be an object of βs, got {type(data).__name__}")
    unknown = sorted(set(data) - set(RISK_AVERSION_FIELDS))
    if unknown:
        raise ValueError(
            f"{where}: unknown parameter(s) {unknown}; known: {list(RISK_AVERSION_FIELDS)} (γ₀ is strategy.gamma, "
            "its bound strategy.gamma_log_bound_nats)"
        )
    for name, value in data.items():
        finite(name, value, where)
    return RiskAversionParams(**{k: float(v) for k, v in data.items()})


class PyStrategyCore:
    """GLFT/AS quoting around a reservation price built from measured κ, σ, drift, flow and inventory.

    Feed every event to :meth:`on_event`; send the returned actions to the venue. ``last_decision`` is the
    latest :class:`QuoteDecision` (``last_quote`` the quoter's full result with ladders); :meth:`state` is
    a flat dict for dashboards.
    """

    def __init__(
        self,
        params: StrategyParams,
        *,
        tick_size: float,
        lot_size: float,
        id_prefix: str = "q",
        initial_position: float = 0.0,
        initial_cash: float = 0.0,
        initial_fees: float = 0.0,
        initial_fills: int = 0,
    ) -> None:
        if not (tick_size > 0 and lot_size > 0):
            raise ValueError(f"tick_size and lot_size must be > 0, got {tick_size!r}, {lot_size!r}")
        self.params = params.validate()
        self.tick_size = tick_size
        self.lot_size = lot_size
        self.id_prefix = id_prefix
        self.quoter_params = params.quoter
        self.risk_params = params.risk_aversion
        self.market = MarketEstimators(params.estimator_config(tick_size), tick_size=tick_size)
        # a restarted live session continues from its recorded fills: position, cash (net of fees), fees, count
        self.tracker = OrderTracker(initial_position, initial_cash, initial_fees)
        self.last_decision: QuoteDecision | None = None
        self.last_quote: QuoteResult | None = None
        self.decisions_changed = False
        self.halted = False
        self.fills = initial_fills
        self.decisions_computed = 0
        self._seq = 0
        self._now_ns = 0
        self._decision_key: tuple | None = None
        self._decision_ns = 0
        self._peak_pnl: float | None = None  # the first mark sets it: an inherited position is not a drawdown
        self._force_changed = False  # set by apply_params: the next decision is recorded whatever its prices

    def apply_params(self, params: StrategyParams) -> None:
        """Quote with ``params`` from the next decision on (a live parameter change; the caller records which).

        The quoter's fields, the γ model's βs (``risk_aversion``), ``loss_budget``, ``decision_interval_s`` and
        ``session_end_ns`` take effect at once:
        the next event that can make a decision makes one, and it is reported as changed (so it is recorded)
        even when its prices are the same. The estimators' fields (:data:`ESTIMATOR_FIELDS`) must be unchanged:
        a ValueError names the first that differs. Position, cash, orders and estimates are kept.
        """
        params = params.validate()
        for name in ESTIMATOR_FIELDS:
            if getattr(params, name) != getattr(self.params, name):
                raise ValueError(
                    f"StrategyParams.{name} cannot change on a running strategy core: the estimators are built "
                    f"from it once per run ({getattr(self.params, name)!r} -> {getattr(params, name)!r})"
                )
        self.params = params
        self.quoter_params = params.quoter
        self.risk_params = params.risk_aversion
        self._decision_key = None  # decide again at the next event, with the new parameters
        self._force_changed = True

    @property
    def bbo(self) -> BestBidAsk | None:
        """The latest top of book (the baselines have the same attribute; the live loop's flatten reads it)."""
        return self.market.bbo

    # --- events -------------------------------------------------------------------------------

    def refresh(self) -> bool:
        """Recompute the estimates that are due, stamped at the last event's time (``MarketEstimators.refresh``):
        the engine driver calls this after an event's actions were sent, so no decision waits for a posterior
        grid or a fit. When a driver does not, the next :meth:`on_event` does it first, with the same stamp and
        the same result. True when anything was due."""
        m = self.market
        now = self._now_ns
        if m.refresh_due(now):
            m.refresh(now)
            return True
        return False

    def on_event(self, event: Any) -> list[Action]:
        if self.market.refresh_due(self._now_ns):
            self.market.refresh(self._now_ns)  # left due after the last event (see refresh)
        ts = event.ts_local_ns
        if ts > self._now_ns:
            self._now_ns = ts
        self.decisions_changed = False
        cls = type(event)
        if cls is Trade or cls is DepthUpdate or cls is DepthSnapshot:
            self.market.on_event(event)
            return []  # state only; the next top-of-book change re-quotes
        if cls is BestBidAsk:
            self.market.on_event(event)
        elif cls is OrderAck or cls is OrderReject:
            self.tracker.on_event(event)
            return []
        elif cls is Fill:
            self.tracker.on_event(event)
            self.market.on_fill(event)
            self.fills += 1
        else:
            self.market.on_event(event)  # funding; timers carry only time
        if self.halted or self.market.bbo is None:
            return []
        result = self._decide(self._now_ns)
        if result is None:
            return []
        actions = self._reconcile(result)
        self.tracker.on_actions(actions)
        return actions

    def halt(self, reason: str) -> list[Action]:
        """Latch: stop quoting and cancel everything. Only a new core (an operator re-arm) quotes again."""
        self.halted = True
        actions: list[Action] = [CancelAll(reason=reason)]
        self.tracker.on_actions(actions)
        return actions

    # --- the decision ---------------------------------------------------------------------------

    def _decide(self, now_ns: int) -> QuoteResult | None:
        m = self.market
        bbo = m.bbo
        assert bbo is not None
        snaps = m.cached_snapshots(now_ns)  # refreshed between events (refresh)
        key = (bbo.bid_px, bbo.ask_px, self.tracker.position, m.version, self.halted)
        if (
            key == self._decision_key
            and self.last_quote is not None
            and now_ns - self._decision_ns < self.params.decision_interval_s * _NS
        ):
            return None  # nothing the decision depends on changed
        return self._decide_now(now_ns, key, snaps)

    def _decide_now(self, now_ns: int, key: tuple, snaps: tuple[EstimatorSnapshot, ...]) -> QuoteResult:
        """The decision, once :meth:`_decide` found that something it depends on changed (``key``: the touch,
        the position, the estimates' version, the halt; ``snaps``: the six cached snapshots)."""
        m = self.market
        bbo = m.bbo
        q = key[2]
        k, s, lam, flow, drift, micro = snaps
        self._decision_key = key
        self._decision_ns = now_ns
        self.decisions_computed += 1

        mid = bbo.mid
        reasons: list[str] = []
        for snap in (k, s):
            if not snap.usable:
                reasons.append(f"{snap.name} {snap.state.value}: {snap.message}".rstrip(": "))
        sig_clean = self.market.sigma.sigma_for_spread
        sig_inv = self.market.sigma.sigma_for_inventory
        extra: dict[str, float] = {
            "kappa_std": k.std,
            "kappa_ci_low": k.ci_low,
            "kappa_ci_high": k.ci_high,
            "avg_trade_distance_bps": k.detail.get("avg_distance_bps", math.nan),
            "sigma_total": s.detail.get("sigma_total", math.nan),
            "lambda_per_s": lam.value,
            "mean_trade_size": m.mean_trade_size,
        }
        extra.update(m.ages(now_ns))
        for snap in (k, s, lam, flow, drift, micro):
            extra[f"{snap.name}_state_ok"] = 1.0 if snap.usable else 0.0

        if reasons:
            result = QuoteResult(
                now_ns,
                (),
                (),
                DecisionInputs.from_mapping(
                    {
                        "mid": mid,
                        "best_bid": bbo.bid_px,
                        "best_ask": bbo.ask_px,
                        "q": q,
                        "q_ratio": q / self.quoter_params.max_inventory,
                        "gamma": self.quoter_params.gamma_base,
                        "model_requested_code": MODEL_CODES[self.quoter_params.model],
                        "horizon_s": self.quoter_params.horizon_s,
                        "kappa": k.value,
                        "sigma_spread": sig_clean,
                        "sigma_inventory": sig_inv,
                        **extra,
                    }
                ),
                tuple(reasons),
            )
            self._set(result)
            return result

        adv = m.adverse.snapshot(now_ns)
        extra.update(
            adverse_selection_measured_bps=adv.value * 1e4,
            adverse_selection_ci_low_bps=adv.ci_low * 1e4,
            adverse_selection_ci_high_bps=adv.ci_high * 1e4,
            adverse_selection_state_ok=1.0 if adv.usable else 0.0,
            adverse_selection_own_markouts=adv.detail["own_markouts"],
            adverse_selection_public_markouts=adv.detail["public_markouts"],
        )
        curve = None
        curve_ok = False
        if self.quoter_params.fill_cost_by_depth:  # the curve is built and read only when the quoter prices with it
            depth, curve = m.cached_depth_cost(now_ns)
            curve_ok = depth.usable and curve is not None
            d = depth.detail
            extra["depth_markout_state_ok"] = 1.0 if depth.usable else 0.0
            nan = math.nan
            costs = (d.get("cost_0.5bps_bps", nan), d.get("cost_1bps_bps", nan), d.get("cost_2bps_bps", nan))
            extra.update(zip(_DEPTH_MARKOUT_INPUTS, (d["events"], depth.value * 1e4, *costs), strict=True))
        else:  # the same inputs, marked unused
            extra["depth_markout_state_ok"] = 0.0
            extra.update(dict.fromkeys(_DEPTH_MARKOUT_INPUTS, math.nan))
        book = m.book_signals() if m.book.n_bid_levels and m.book.n_ask_levels else {}
        flow_imb = flow.value if flow.usable else 0.0
        features = m.risk_features(now_ns, k, s, book.get("depth_near", math.nan), flow_imb)
        pnl = self.tracker.cash + q * mid
        self._peak_pnl = pnl if self._peak_pnl is None else max(self._peak_pnl, pnl)
        features["drawdown"] = max(self._peak_pnl - pnl, 0.0) / self.params.loss_budget
        extra.update(pnl=pnl, depth_near=book.get("depth_near", math.nan))
        bid_queue: dict[float, float] = {}
        ask_queue: dict[float, float] = {}
        if book:
            bid_queue = dict(m.book.bids(self.quoter_params.levels + 5))
            ask_queue = dict(m.book.asks(self.quoter_params.levels + 5))
        else:
            bid_queue = {bbo.bid_px: bbo.bid_size}
            ask_queue = {bbo.ask_px: bbo.ask_size}
        drift_ok = drift.usable
        drift_horizon_s = self.quoter_params.drift_horizon_s
        state = MarketState(
            ts_ns=now_ns,
            best_bid=bbo.bid_px,
            best_ask=bbo.ask_px,
            kappa=k.value,
            sigma_clean=sig_clean,
            sigma_inventory=sig_inv,
            kappa_ok=True,
            sigma_ok=True,
            a_per_s=lam.value if lam.usable else math.nan,
            mean_trade_size=m.mean_trade_size,
            drift_mean_per_s=drift.value,
            drift_std_per_s=drift.std,
            drift_expected_return=m.drift.expected_return(drift_horizon_s, now_ns) if drift_ok else 0.0,
            drift_ok=drift_ok,
            book_imbalance=book.get("book_imbalance", 0.0),
            flow_imbalance=flow_imb,
            microprice_offset=micro.value if micro.usable else 0.0,
            microprice_ok=micro.usable,
            funding_rate=m.funding_rate,
            funding_interval_s=m.funding_interval_s,
            flow_toxicity=features.get("flow_toxicity", 0.0),
            adverse_selection=adv.value,
            adverse_selection_ok=adv.usable,
            fill_cost_curve=curve,
            fill_cost_curve_ok=curve_ok,
            bid_queue=bid_queue,
            ask_queue=ask_queue,
            risk_features=features,
            session_end_ns=int(self.params.session_end_ns),
            extra_inputs=extra,
        )
        result = quote(self.quoter_params, self.risk_params, state, q, tick_size=self.tick_size, lot_size=self.lot_size)
        self._set(result)
        return result

    def _set(self, result: QuoteResult) -> None:
        decision = result.to_decision()
        prev = self.last_decision
        if (
            prev is None
            or self._force_changed
            or (prev.bid_px, prev.ask_px, prev.reasons) != (decision.bid_px, decision.ask_px, decision.reasons)
        ):
            self.decisions_changed = True
            self._force_changed = False
        self.last_decision = decision
        self.last_quote = result

    inventory_guard_skips = 0

    def _reconcile(self, result: QuoteResult) -> list[Action]:
        actions: list[Action] = []
        p = self.quoter_params
        for side, levels in ((Side.BUY, result.bids), (Side.SELL, result.asks)):
            r = reconcile_side(
                self.tracker,
                side,
                [(lv.price, lv.size) for lv in levels],
                tick_size=self.tick_size,
                requote_ticks=p.requote_ticks,
                max_inventory=p.max_inventory,
                modify_orders=p.modify_orders,
                new_order_id=self._next_order_id,
            )
            actions += r.actions
            self.inventory_guard_skips += r.guard_skips  # reported in state(): the guard binds, it is not silent
        if result.taker_side is not None and result.taker_size > 0:
            pending_taker = any(o.tif.value == "IOC" for o in self.tracker.open_orders())
            if not pending_taker:
                self._seq += 1
                actions.append(
                    PlaceOrder(
                        f"{self.id_prefix}-t{self._seq}",
                        result.taker_side,
                        result.taker_price,
                        result.taker_size,
                        tif="IOC",
                    )
                )
        return actions

    def _next_order_id(self) -> str:
        self._seq += 1
        return f"{self.id_prefix}-{self._seq}"

    # --- read side ------------------------------------------------------------------------------

    def estimator_snapshots(self) -> tuple[EstimatorSnapshot, EstimatorSnapshot]:
        """κ and σ as the last decision saw them (a read never refreshes the estimators' caches)."""
        return self.market.peek("kappa", self._now_ns), self.market.peek("sigma", self._now_ns)

    def risk_state(self) -> dict[str, Any]:
        """The part of :meth:`state` the session's risk rules read (``SessionRisk.evaluate``), with the same
        values: the driver evaluates the rules every 100 ms of market time, and the dashboard's other fields (open
        orders, quotes, estimates' intervals) would cost more than the rules themselves."""
        bbo = self.market.bbo
        mid = bbo.mid if bbo else math.nan
        q = self.tracker.position
        pnl = self.tracker.cash + q * mid if math.isfinite(mid) else math.nan
        m = self.market
        # _finite_only's rule, value by value (the grid asks ten times a second); an estimator state's _value_ is
        # what its .value property returns
        return {
            "mid": None if isinstance(mid, float) and not math.isfinite(mid) else mid,
            "kappa_state": m.peek("kappa", self._now_ns).state._value_,
            "sigma_state": m.peek("sigma", self._now_ns).state._value_,
            "inventory": None if isinstance(q, float) and not math.isfinite(q) else q,
            "pnl": None if isinstance(pnl, float) and not math.isfinite(pnl) else pnl,
        }

    def state(self) -> dict[str, Any]:
        d = self.last_decision
        bbo = self.market.bbo
        mid = bbo.mid if bbo else math.nan
        k, s = self.estimator_snapshots()
        open_orders = self.tracker.open_orders()
        bids = [o.price for o in open_orders if o.side is Side.BUY]
        asks = [o.price for o in open_orders if o.side is Side.SELL]
        # our quotes are what rests at the venue: the last decision's prices are what the model wanted, and
        # while paused, reducing or halted the gateway sends none of them
        bid = max(bids) if bids else None
        ask = min(asks) if asks else None
        q = self.tracker.position
        pnl = self.tracker.cash + q * mid if math.isfinite(mid) else math.nan
        inputs = d.inputs if d else {}
        return _finite_only(
            {
                "ts_ns": self._now_ns,
                "mid": mid,
                "bid_px": bid,
                "ask_px": ask,
                "spread_bps": (ask - bid) / mid * 1e4 if (bid and ask and math.isfinite(mid)) else None,
                "kappa": k.value,
                "kappa_state": k.state.value,
                "kappa_ci_low": k.ci_low,
                "kappa_ci_high": k.ci_high,
                "sigma_bps": s.value * 1e4,
                "sigma_state": s.state.value,
                "gamma": inputs.get("gamma", self.quoter_params.gamma_base),
                "inventory": q,
                "skew_bps": (inputs.get("skew_frac", math.nan) * 1e4) if d else None,
                "drift_bps_per_min": inputs.get("drift_mean_per_s", math.nan) * 1e4 * 60 if d else None,
                "pnl": pnl,
                "cash": self.tracker.cash,
                "fees": self.tracker.fees_paid,
                "fills": self.fills,
                "open_orders": len(open_orders),
                "reasons": list(d.reasons) if d else [],
                "halted": self.halted,
                "inventory_guard_skips": self.inventory_guard_skips,
            }
        )


_compiled_core = compiled.load("apps.engine._core")

if _compiled_core is not None:

    class StrategyCore(_compiled_core.StrategyCoreBase, PyStrategyCore):
        """The strategy core with its per-event path and its decision compiled (``_core.StrategyCoreBase``: the
        market events, the check that no decision is due, ``_decide_now``, ``_set`` and ``_reconcile``); everything
        else is ``PyStrategyCore``'s."""

else:
    StrategyCore = PyStrategyCore  # type: ignore[misc]

# which one runs: the compiled per-event path when built and MM_PURE_PYTHON is not set
CORE_COMPILED: bool = _compiled_core is not None


def _finite_only(d: dict[str, Any]) -> dict[str, Any]:
    """JSON-safe: NaN and inf become None so the browser shows '—' rather than a fake number."""
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in d.items()}


__all__ = ["CORE_COMPILED", "ESTIMATOR_FIELDS", "PyStrategyCore", "StrategyCore", "StrategyParams"]
