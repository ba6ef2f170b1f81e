"""The strategy core: market and order events in, orders and the decision that caused them out.

One object, no clock of its own (time comes with the events), used unchanged by the live loop, the paper loop
and backtests (architecture principle 1). Each decision carries every input that produced it (principle 2);
a quote is only made from estimators in state OK (principle 3): while κ or σ is warming, stale or failed the
core pulls its quotes and says why, it never substitutes a constant.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

from apps.engine.estimators.base import EstimatorSnapshot
from apps.engine.estimators.kappa import KappaParams, TradeKappaEstimator
from apps.engine.estimators.sigma import SigmaEstimator, SigmaParams
from apps.engine.events import (
    Action,
    BestBidAsk,
    CancelAll,
    CancelOrder,
    Fill,
    OrderAck,
    OrderReject,
    PlaceOrder,
    QuoteDecision,
    Side,
    Trade,
)
from apps.engine.orders import OrderStatus, OrderTracker, round_price, round_size
from apps.engine.pricing import half_spread, inventory_skew

_NS = 1_000_000_000


@dataclass(frozen=True, slots=True)
class StrategyParams:
    """Quoting parameters.

    Attributes
    ----------
    gamma : float
        Risk aversion γ, per base unit valued at mid (see :mod:`apps.engine.pricing` for the unit). Default
        1000 per BTC: with σ≈1e-4/√s and T=300 s a 0.05 BTC position skews quotes by ~1.5 bps while the half
        spread stays within 15 % of 1/κ.
    horizon_s : float
        Inventory horizon T in seconds for the reservation skew q·γ·σ²·T.
    order_size : float
        Size of each quote, base units (rounded down to the lot).
    max_inventory : float
        Q_max, base units: no bid is quoted when a fill would take q above +Q_max, no ask below −Q_max.
    requote_ticks : int
        A working quote is replaced only when its target moved by at least this many ticks (limits churn).
    kappa_window_s, kappa_min_volume : float
        Trade window (s) and minimum window volume (base units) of the κ estimator.
    sigma_bucket_s : float
        Target bucket length (s) of the σ estimator's volume clock.
    sigma_min_buckets : int
        Bucket returns the σ estimator needs before it reports (quoting waits for it).
    """

    gamma: float = 1000.0
    horizon_s: float = 300.0
    order_size: float = 0.005
    max_inventory: float = 0.05
    requote_ticks: int = 1
    kappa_window_s: float = 60.0
    kappa_min_volume: float = 0.5
    sigma_bucket_s: float = 1.0
    sigma_min_buckets: int = 20

    def validate(self) -> StrategyParams:
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise ValueError(f"StrategyParams.{f.name} must be a finite number, got {v!r}")
        for name in ("gamma", "horizon_s", "order_size", "max_inventory", "kappa_window_s", "sigma_bucket_s"):
            if getattr(self, name) <= 0:
                raise ValueError(f"StrategyParams.{name} must be > 0, got {getattr(self, name)!r}")
        if self.requote_ticks < 0 or int(self.requote_ticks) != self.requote_ticks:
            raise ValueError(f"StrategyParams.requote_ticks must be a non-negative integer, got {self.requote_ticks!r}")
        if self.sigma_min_buckets < 2 or int(self.sigma_min_buckets) != self.sigma_min_buckets:
            raise ValueError(
                f"StrategyParams.sigma_min_buckets must be an integer >= 2, got {self.sigma_min_buckets!r}"
            )
        if self.kappa_min_volume < 0:
            raise ValueError(f"StrategyParams.kappa_min_volume must be >= 0, got {self.kappa_min_volume!r}")
        return self

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
    """GLFT quoting around the reservation price with trade-based κ and σ.

    Feed every event to :meth:`on_event`; send the returned actions to the venue. ``last_decision`` is the
    latest :class:`QuoteDecision`; :meth:`state` is a flat dict for dashboards.
    """

    def __init__(self, params: StrategyParams, *, tick_size: float, lot_size: float, id_prefix: str = "q") -> None:
        if not (tick_size > 0 and lot_size > 0):
            raise ValueError(f"tick_size and lot_size must be > 0, got {tick_size!r}, {lot_size!r}")
        self.params = params.validate()
        self.tick_size = tick_size
        self.lot_size = lot_size
        self.id_prefix = id_prefix
        self.kappa = TradeKappaEstimator(
            KappaParams(window_s=params.kappa_window_s, min_volume=params.kappa_min_volume, tick_size=tick_size)
        )
        self.sigma = SigmaEstimator(
            SigmaParams(target_bucket_s=params.sigma_bucket_s, min_buckets=int(params.sigma_min_buckets))
        )
        self.tracker = OrderTracker()
        self.bbo: BestBidAsk | None = None
        self.last_decision: QuoteDecision | None = None
        self.decisions_changed = False
        self.halted = False
        self.fills = 0
        self._seq = 0
        self._now_ns = 0

    # --- events -------------------------------------------------------------------------------

    def on_event(self, event: Any) -> list[Action]:
        self._now_ns = max(self._now_ns, event.ts_local_ns)
        self.decisions_changed = False
        if isinstance(event, BestBidAsk):
            self.bbo = event
            self.sigma.update(event.ts_local_ns, event.mid)
        elif isinstance(event, Trade):
            if self.bbo is not None:
                self.kappa.update(
                    event.ts_local_ns,
                    event.price,
                    event.size,
                    self.bbo.mid,
                    half_spread_px=0.5 * (self.bbo.ask_px - self.bbo.bid_px),
                )
                self.sigma.update(event.ts_local_ns, self.bbo.mid, volume=event.size)
            return []  # a trade changes estimators; the next top-of-book change re-quotes
        elif isinstance(event, (OrderAck, OrderReject, Fill)):
            self.tracker.on_event(event)
            if isinstance(event, Fill):
                self.fills += 1
            else:
                return []
        else:
            # depth, funding, timers: nothing to quote on yet beyond a re-evaluation below
            pass
        if self.halted or self.bbo is None:
            return []
        decision = self._decide(self._now_ns)
        actions = self._reconcile(decision)
        self.tracker.on_actions(actions)
        return actions

    def halt(self, reason: str) -> list[Action]:
        """Latch: stop quoting and cancel everything. Only a new core (an operator re-arm) quotes again."""
        self.halted = True
        actions: list[Action] = [CancelAll(reason=reason)]
        self.tracker.on_actions(actions)
        return actions

    # --- the decision ---------------------------------------------------------------------------

    def _decide(self, now_ns: int) -> QuoteDecision:
        p = self.params
        bbo = self.bbo
        assert bbo is not None
        mid = bbo.mid
        q = self.tracker.position
        k_snap = self.kappa.snapshot(now_ns)
        s_snap = self.sigma.snapshot(now_ns)
        inputs: dict[str, float] = {
            "mid": mid,
            "best_bid": bbo.bid_px,
            "best_ask": bbo.ask_px,
            "q": q,
            "q_ratio": q / p.max_inventory,
            "gamma": p.gamma,
            "horizon_s": p.horizon_s,
            "kappa": k_snap.value,
            "kappa_std": k_snap.std,
            "sigma_spread": self.sigma.sigma_for_spread,
            "sigma_inventory": self.sigma.sigma_for_inventory,
        }
        reasons: list[str] = []
        for snap in (k_snap, s_snap):
            if not snap.usable:
                reasons.append(f"{snap.name} {snap.state.value}: {snap.message}".rstrip(": "))
        if reasons:
            decision = QuoteDecision(now_ns, None, None, 0.0, 0.0, inputs, tuple(reasons))
            self._set_decision(decision)
            return decision

        delta = half_spread(p.gamma, k_snap.value)
        skew = inventory_skew(q, p.gamma, self.sigma.sigma_for_inventory, p.horizon_s)
        raw_bid = mid * (1.0 - skew - delta)
        raw_ask = mid * (1.0 - skew + delta)
        bid_px = round_price(raw_bid, self.tick_size, Side.BUY)
        ask_px = round_price(raw_ask, self.tick_size, Side.SELL)
        inputs.update(
            half_spread_frac=delta,
            skew_frac=skew,
            reservation_price=mid * (1.0 - skew),
            raw_bid=raw_bid,
            raw_ask=raw_ask,
            tick_size=self.tick_size,
        )
        # Guardrails: each one that binds is reported in reasons, never applied silently.
        if bid_px >= bbo.ask_px:
            bid_px = round_price(bbo.ask_px - self.tick_size, self.tick_size, Side.BUY)
            reasons.append("bid would cross the ask: placed one tick below the best ask (post-only)")
        if ask_px <= bbo.bid_px:
            ask_px = round_price(bbo.bid_px + self.tick_size, self.tick_size, Side.SELL)
            reasons.append("ask would cross the bid: placed one tick above the best bid (post-only)")
        size = round_size(p.order_size, self.lot_size)
        bid: float | None = bid_px
        ask: float | None = ask_px
        if q + size > p.max_inventory + 1e-12:
            bid = None
            reasons.append(f"no bid: a fill would take q={q:.6g} past max_inventory {p.max_inventory:g}")
        if q - size < -p.max_inventory - 1e-12:
            ask = None
            reasons.append(f"no ask: a fill would take q={q:.6g} past -max_inventory {p.max_inventory:g}")
        decision = QuoteDecision(now_ns, bid, ask, size if bid else 0.0, size if ask else 0.0, inputs, tuple(reasons))
        self._set_decision(decision)
        return decision

    def _set_decision(self, decision: QuoteDecision) -> None:
        prev = self.last_decision
        if prev is None or (prev.bid_px, prev.ask_px, prev.reasons) != (
            decision.bid_px,
            decision.ask_px,
            decision.reasons,
        ):
            self.decisions_changed = True
        self.last_decision = decision

    def _reconcile(self, decision: QuoteDecision) -> list[Action]:
        actions: list[Action] = []
        for side, target, size in (
            (Side.BUY, decision.bid_px, decision.bid_size),
            (Side.SELL, decision.ask_px, decision.ask_size),
        ):
            working = [o for o in self.tracker.open_orders_on(side) if o.status is not OrderStatus.PENDING_CANCEL]
            if any(o.status is OrderStatus.PENDING_NEW for o in working):
                continue  # wait for the venue's answer before touching this side again
            keep = None
            # keep one working order while the target is within requote_ticks of it (prices sit on the grid)
            tolerance = max(self.params.requote_ticks, 1) * self.tick_size - 1e-9
            for order in working:
                if keep is None and target is not None and abs(order.price - target) < tolerance:
                    keep = order
                else:
                    actions.append(CancelOrder(order.client_order_id))
            if keep is None and target is not None and size > 0:
                self._seq += 1
                actions.append(PlaceOrder(f"{self.id_prefix}-{self._seq}", side, target, size, tif="POST_ONLY"))
        return actions

    # --- read side ------------------------------------------------------------------------------

    def estimator_snapshots(self) -> tuple[EstimatorSnapshot, EstimatorSnapshot]:
        return self.kappa.snapshot(self._now_ns), self.sigma.snapshot(self._now_ns)

    def state(self) -> dict[str, Any]:
        d = self.last_decision
        mid = self.bbo.mid if self.bbo else math.nan
        k, s = self.estimator_snapshots()
        open_orders = self.tracker.open_orders()
        bids = [o.price for o in open_orders if o.side is Side.BUY]
        asks = [o.price for o in open_orders if o.side is Side.SELL]
        bid = max(bids) if bids else (d.bid_px if d else None)
        ask = min(asks) if asks else (d.ask_px if d else None)
        q = self.tracker.position
        pnl = self.tracker.cash + q * mid if math.isfinite(mid) else math.nan
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
                "gamma": self.params.gamma,
                "inventory": q,
                "skew_bps": (d.inputs.get("skew_frac", math.nan) * 1e4) if d else None,
                "pnl": pnl,
                "cash": self.tracker.cash,
                "fees": self.tracker.fees_paid,
                "fills": self.fills,
                "open_orders": len(open_orders),
                "reasons": list(d.reasons) if d else [],
                "halted": self.halted,
            }
        )


def _finite_only(d: dict[str, Any]) -> dict[str, Any]:
    """JSON-safe: NaN and inf become None so the browser shows '—' rather than a fake number."""
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in d.items()}
