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
from dataclasses import asdict, dataclass, fields
from typing import Any

from apps.engine.estimators.base import EstimatorSnapshot
from apps.engine.estimators.kappa import KappaParams
from apps.engine.estimators.market import EstimatorConfig, MarketEstimators
from apps.engine.estimators.sigma import SigmaParams
from apps.engine.execution.orders import OrderStatus, OrderTracker
from apps.engine.market.events import (
    Action,
    BestBidAsk,
    CancelAll,
    CancelOrder,
    DepthSnapshot,
    DepthUpdate,
    Fill,
    ModifyOrder,
    OrderAck,
    OrderReject,
    PlaceOrder,
    QuoteDecision,
    Side,
    Trade,
)
from apps.engine.quoting.quoter import MarketState, QuoteResult, QuoterParams, needs_requote, quote
from apps.engine.quoting.risk_aversion import RiskAversionParams

_NS = 1_000_000_000

_INT_FIELDS = ("requote_ticks", "sigma_min_buckets", "levels", "session_end_ns")
_BOOL_FIELDS = ("modify_orders",)


@dataclass(frozen=True, slots=True)
class StrategyParams:
    """Quoting parameters (a session's ``strategy`` dict goes through :meth:`from_dict`).

    Attributes
    ----------
    gamma : float
        γ₀, base risk aversion per base unit valued at mid (see :mod:`apps.engine.quoting.quoter` for the unit and
        for how the risk features move it). Default 5000 per BTC with T = 400 s: with σ ≈ 1e-4/√s the skew is
        γσ²T = 2 bps per 0.01 BTC, so at 10 % of Q_max (0.005 BTC) it is already 1 bps — the level below which the
        skew-magnitude alarm calls the model mis-scaled — and 10 bps at Q_max; the half spread
        (1/γ)·ln(1+γ/κ) is 1.4 bps at κ = 5000 (1/κ = 2 bps).
    horizon_s : float
        Inventory horizon T, seconds (shortened to the time left when ``session_end_ns`` is set).
    order_size : float
        Size of the first ladder level, base units (rounded down to the lot).
    max_inventory : float
        Q_max, base units: a side's ladder never adds up past it.
    requote_ticks : int
        A working quote is replaced only when its target moved by at least this many ticks. Default 30
        (0.5 bps on BTCUSDT at 0.1 tick): the mid moves ~0.3 bps per 100 ms at σ = 1e-4/√s, and a 1-tick
        threshold re-quotes on nearly every book update, which the message-rate rule (250 per 10 s) then stops.
    kappa_window_s, kappa_min_volume : float
        Trade window (s) and minimum window volume (base units) of the κ estimator.
    sigma_bucket_s : float
        Target bucket length (s) of the σ estimator's volume clock.
    sigma_min_buckets : int
        Bucket returns the σ estimator needs before it reports (quoting waits for it).
    levels, level_spacing_bps, size_growth : ladder shape (see :class:`~apps.engine.quoting.quoter.QuoterParams`).
    drift_horizon_s, imbalance_coef_bps, flow_coef_bps : reservation-price terms (same).
    quote_life_s, adverse_selection_bps, maker_fee_bps, taker_fee_bps : expected-P&L filter and taker cost.
    taker_trigger_ratio : float
        Emergency taker reduction is considered at |q| ≥ this × Q_max.
    modify_orders : bool
        Move working orders with ModifyOrder instead of cancel + new.
    gamma_log_bound_nats, beta_direction_confidence : γ's smooth bound and the direction feature's β.
    loss_budget : float
        Session loss budget, quote currency; the drawdown feature of γ is drawdown / loss_budget.
    kappa_refresh_s, snapshot_refresh_s, drift_obs_interval_s : float
        Estimator refresh schedule, seconds (see :mod:`apps.engine.estimators.market`).
    decision_interval_s : float
        A decision is recomputed at least this often while events arrive, even if nothing changed.
    session_end_ns : int
        Session close, ns since the epoch (0 = none); T is the time left to it when shorter.
    """

    gamma: float = 5000.0
    horizon_s: float = 400.0
    order_size: float = 0.005
    max_inventory: float = 0.05
    requote_ticks: int = 30
    kappa_window_s: float = 60.0
    kappa_min_volume: float = 0.5
    sigma_bucket_s: float = 1.0
    sigma_min_buckets: int = 20
    levels: int = 1
    level_spacing_bps: float = 1.0
    size_growth: float = 1.0
    drift_horizon_s: float = 30.0
    imbalance_coef_bps: float = 0.2
    flow_coef_bps: float = 0.2
    quote_life_s: float = 1.0
    adverse_selection_bps: float = 0.5
    maker_fee_bps: float = 0.0
    taker_fee_bps: float = 5.0
    taker_trigger_ratio: float = 1.0
    modify_orders: bool = False
    gamma_log_bound_nats: float = 2.3
    beta_direction_confidence: float = -0.5
    loss_budget: float = 100.0
    kappa_refresh_s: float = 1.0
    snapshot_refresh_s: float = 0.25
    drift_obs_interval_s: float = 1.0
    decision_interval_s: float = 0.5
    session_end_ns: int = 0

    def validate(self) -> StrategyParams:
        for f in fields(self):
            v = getattr(self, f.name)
            if f.name in _BOOL_FIELDS:
                if not isinstance(v, bool):
                    raise ValueError(f"StrategyParams.{f.name} must be true or false, got {v!r}")
                continue
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise ValueError(f"StrategyParams.{f.name} must be a finite number, got {v!r}")
        for name in (
            "gamma",
            "horizon_s",
            "order_size",
            "max_inventory",
            "kappa_window_s",
            "sigma_bucket_s",
            "loss_budget",
            "kappa_refresh_s",
            "snapshot_refresh_s",
            "drift_obs_interval_s",
            "decision_interval_s",
        ):
            if getattr(self, name) <= 0:
                raise ValueError(f"StrategyParams.{name} must be > 0, got {getattr(self, name)!r}")
        if self.requote_ticks < 0 or int(self.requote_ticks) != self.requote_ticks:
            raise ValueError(f"StrategyParams.requote_ticks must be a non-negative integer, got {self.requote_ticks!r}")
        if self.sigma_min_buckets < 2 or int(self.sigma_min_buckets) != self.sigma_min_buckets:
            raise ValueError(
                f"StrategyParams.sigma_min_buckets must be an integer >= 2, got {self.sigma_min_buckets!r}"
            )
        if self.session_end_ns < 0 or int(self.session_end_ns) != self.session_end_ns:
            raise ValueError(f"StrategyParams.session_end_ns must be an integer >= 0, got {self.session_end_ns!r}")
        if self.kappa_min_volume < 0:
            raise ValueError(f"StrategyParams.kappa_min_volume must be >= 0, got {self.kappa_min_volume!r}")
        # the quoter validates its own share (levels, spacing, fees, ...) with the same field names
        try:
            self.quoter_params()
        except ValueError as exc:
            raise ValueError(str(exc).replace("QuoterParams.", "StrategyParams.")) from None
        return self

    def quoter_params(self) -> QuoterParams:
        return QuoterParams(
            gamma_base=self.gamma,
            gamma_log_bound_nats=self.gamma_log_bound_nats,
            beta_direction_confidence=self.beta_direction_confidence,
            horizon_s=self.horizon_s,
            drift_horizon_s=self.drift_horizon_s,
            max_inventory=self.max_inventory,
            order_size=self.order_size,
            levels=int(self.levels) if self.levels == int(self.levels) else self.levels,
            level_spacing_bps=self.level_spacing_bps,
            size_growth=self.size_growth,
            imbalance_coef_bps=self.imbalance_coef_bps,
            flow_coef_bps=self.flow_coef_bps,
            quote_life_s=self.quote_life_s,
            adverse_selection_bps=self.adverse_selection_bps,
            maker_fee_bps=self.maker_fee_bps,
            taker_fee_bps=self.taker_fee_bps,
            requote_ticks=int(self.requote_ticks),
            modify_orders=self.modify_orders,
            taker_trigger_ratio=self.taker_trigger_ratio,
        ).validate()

    def estimator_config(self, tick_size: float) -> EstimatorConfig:
        return EstimatorConfig(
            kappa=KappaParams(
                window_s=self.kappa_window_s, min_volume=self.kappa_min_volume, tick_size=tick_size, gof_interval_s=10.0
            ),
            sigma=SigmaParams(target_bucket_s=self.sigma_bucket_s, min_buckets=int(self.sigma_min_buckets)),
            kappa_refresh_s=self.kappa_refresh_s,
            kappa_min_refresh_s=min(0.2, self.kappa_refresh_s),
            snapshot_refresh_s=self.snapshot_refresh_s,
            drift_obs_interval_s=self.drift_obs_interval_s,
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StrategyParams:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"StrategyParams: unknown parameter(s) {unknown}; known: {sorted(known)}")
        return cls(**data).validate()

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class StrategyCore:
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
    ) -> None:
        if not (tick_size > 0 and lot_size > 0):
            raise ValueError(f"tick_size and lot_size must be > 0, got {tick_size!r}, {lot_size!r}")
        self.params = params.validate()
        self.tick_size = tick_size
        self.lot_size = lot_size
        self.id_prefix = id_prefix
        self.quoter_params = params.quoter_params()
        self.risk_params = RiskAversionParams()
        self.market = MarketEstimators(params.estimator_config(tick_size), tick_size=tick_size)
        self.tracker = OrderTracker(initial_position=initial_position)
        self.last_decision: QuoteDecision | None = None
        self.last_quote: QuoteResult | None = None
        self.decisions_changed = False
        self.halted = False
        self.fills = 0
        self.decisions_computed = 0
        self._seq = 0
        self._now_ns = 0
        self._decision_key: tuple | None = None
        self._decision_ns = 0
        self._peak_pnl: float | None = None  # the first mark sets it: an inherited position is not a drawdown

    @property
    def bbo(self) -> BestBidAsk | None:
        """The latest top of book (the baselines have the same attribute; the live loop's flatten reads it)."""
        return self.market.bbo

    # --- events -------------------------------------------------------------------------------

    def on_event(self, event: Any) -> list[Action]:
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
        q = self.tracker.position
        k, s, lam, flow, drift, micro = m.snapshots(now_ns)
        key = (bbo.bid_px, bbo.ask_px, q, m.version, self.halted)
        if (
            key == self._decision_key
            and self.last_quote is not None
            and now_ns - self._decision_ns < self.params.decision_interval_s * _NS
        ):
            return None  # nothing the decision depends on changed
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
                {
                    "mid": mid,
                    "best_bid": bbo.bid_px,
                    "best_ask": bbo.ask_px,
                    "q": q,
                    "q_ratio": q / self.params.max_inventory,
                    "gamma": self.params.gamma,
                    "horizon_s": self.params.horizon_s,
                    "kappa": k.value,
                    "sigma_spread": sig_clean,
                    "sigma_inventory": sig_inv,
                    **extra,
                },
                tuple(reasons),
            )
            self._set(result)
            return result

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
            bid_queue = dict(m.book.bids(self.params.levels + 5))
            ask_queue = dict(m.book.asks(self.params.levels + 5))
        else:
            bid_queue = {bbo.bid_px: bbo.bid_size}
            ask_queue = {bbo.ask_px: bbo.ask_size}
        drift_ok = drift.usable
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
            drift_expected_return=m.drift.expected_return(self.params.drift_horizon_s, now_ns) if drift_ok else 0.0,
            drift_ok=drift_ok,
            book_imbalance=book.get("book_imbalance", 0.0),
            flow_imbalance=flow_imb,
            microprice_offset=micro.value if micro.usable else 0.0,
            microprice_ok=micro.usable,
            funding_rate=m.funding_rate,
            funding_interval_s=m.funding_interval_s,
            flow_toxicity=features.get("flow_toxicity", 0.0),
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
        if prev is None or (prev.bid_px, prev.ask_px, prev.reasons) != (
            decision.bid_px,
            decision.ask_px,
            decision.reasons,
        ):
            self.decisions_changed = True
        self.last_decision = decision
        self.last_quote = result

    inventory_guard_skips = 0

    def _reconcile(self, result: QuoteResult) -> list[Action]:
        actions: list[Action] = []
        p = self.quoter_params
        tick, requote_ticks = self.tick_size, p.requote_ticks
        for side, levels in ((Side.BUY, result.bids), (Side.SELL, result.asks)):
            working = [
                o
                for o in self.tracker.open_orders_on(side)
                if o.status is not OrderStatus.PENDING_CANCEL and o.tif.value == "POST_ONLY"
            ]
            if any(o.status is OrderStatus.PENDING_NEW for o in working):
                continue  # wait for the venue's answer before touching this side again
            unmatched_targets = []
            free = list(working)
            for lv in levels:
                match = next((o for o in free if not needs_requote(o.price, lv.price, tick, requote_ticks)), None)
                if match is not None:
                    free.remove(match)
                else:
                    unmatched_targets.append(lv)
            # Worst case if every live order on this side fills, pending cancels included (a cancel can race a
            # fill): a new order may only use what is left of Q_max. Without this, a bid whose cancel is in flight
            # and its replacement can both fill and take |q| past Q_max.
            sign = 1.0 if side is Side.BUY else -1.0
            exposure = sign * self.tracker.position + sum(o.remaining for o in self.tracker.open_orders_on(side))
            room = p.max_inventory - exposure + 1e-12
            for lv in unmatched_targets:
                if p.modify_orders and free:
                    o = free.pop(0)
                    actions.append(ModifyOrder(o.client_order_id, lv.price, lv.size))
                elif lv.size > room:
                    self.inventory_guard_skips += 1  # reported in state(): the guard binds, it is not silent
                else:
                    room -= lv.size
                    self._seq += 1
                    actions.append(
                        PlaceOrder(f"{self.id_prefix}-{self._seq}", side, lv.price, lv.size, tif="POST_ONLY")
                    )
            for o in free:
                actions.append(CancelOrder(o.client_order_id))
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

    # --- read side ------------------------------------------------------------------------------

    def estimator_snapshots(self) -> tuple[EstimatorSnapshot, EstimatorSnapshot]:
        """κ and σ as the last decision saw them (a read never refreshes the estimators' caches)."""
        return self.market.peek("kappa", self._now_ns), self.market.peek("sigma", self._now_ns)

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
                "gamma": inputs.get("gamma", self.params.gamma),
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


def _finite_only(d: dict[str, Any]) -> dict[str, Any]:
    """JSON-safe: NaN and inf become None so the browser shows '—' rather than a fake number."""
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in d.items()}


__all__ = ["StrategyCore", "StrategyParams"]
