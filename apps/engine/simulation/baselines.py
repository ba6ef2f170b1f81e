"""Baseline quoters to compare GLFT against, with the strategy core's interface.

* :class:`FixedSpreadQuoter` — quotes ``mid·(1 ∓ h)`` with a constant half-spread ``h`` and no inventory skew,
  stopping one side at the inventory limit. The naive market maker.
* :class:`AvellanedaStoikovQuoter` — the plain finite-horizon Avellaneda–Stoikov (2008) closed form
  (:func:`apps.engine.quoting.pricing.avellaneda_stoikov_quotes`): reservation price ``s·(1 − q·γ·σ²·T)`` and total
  spread ``γσ²T + (2/γ)·ln(1 + γ/κ)`` with a constant horizon ``T``. σ and κ are either fixed parameters
  (the textbook setting) or, when left at ``None``, measured by the same estimators the GLFT core uses, so the
  comparison isolates the formula.

Both expose what the backtester and the quoting loop use: ``on_event(event) -> actions``, ``last_decision``,
``decisions_changed``, ``tracker``, ``halt(reason)``, ``state()``, ``params``. Orders are post-only, one per
side, and go through the core's own reconciler (:func:`apps.engine.execution.reconcile.reconcile_side`): replaced
only when the target moved by ``requote_ticks`` or more, a side with an order awaiting its ack left alone, and no
new order placed that could take ``|q|`` past ``max_inventory`` if every live order on its side filled.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

from apps.engine.estimators.kappa import KappaParams, TradeKappaEstimator
from apps.engine.estimators.sigma import SigmaEstimator, SigmaParams
from apps.engine.execution.orders import OrderTracker, round_price, round_size
from apps.engine.execution.reconcile import reconcile_side
from apps.engine.market.events import (
    Action,
    BestBidAsk,
    CancelAll,
    Fill,
    OrderAck,
    OrderReject,
    QuoteDecision,
    Side,
    Trade,
)
from apps.engine.quoting.pricing import avellaneda_stoikov_quotes
from apps.engine.validation import finite, integer, non_negative, positive


def _check_fields(obj: Any, positives: tuple[str, ...], optional_positive: tuple[str, ...] = ()) -> None:
    """Every field a finite number (``optional_positive`` ones may be ``None``), ``positives`` > 0."""
    where = type(obj).__name__
    for f in fields(obj):
        v = getattr(obj, f.name)
        if not (v is None and f.name in optional_positive):
            finite(f.name, v, where)
    for name in positives + optional_positive:
        if getattr(obj, name) is not None:
            positive(name, getattr(obj, name), where)
    integer("requote_ticks", obj.requote_ticks, where)


def _from_dict(cls: type, data: dict[str, Any], *, ignore_unknown: bool) -> Any:
    if not isinstance(data, dict):
        raise ValueError(f"{cls.__name__}: parameters must be an object, got {type(data).__name__}")
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown and not ignore_unknown:
        raise ValueError(f"{cls.__name__}: unknown parameter(s) {unknown}; known: {sorted(known)}")
    return cls(**{k: v for k, v in data.items() if k in known}).validate()


@dataclass(frozen=True, slots=True)
class FixedSpreadParams:
    """Parameters of :class:`FixedSpreadQuoter`.

    Attributes
    ----------
    half_spread_bps : float
        Constant distance of each quote from mid, bps (> 0).
    order_size : float
        Quote size, base units (rounded down to the lot).
    max_inventory : float
        Q_max, base units: a side whose fill would take |q| past it is not quoted.
    requote_ticks : int
        A working quote is replaced only when its target moved by at least this many ticks.
    """

    half_spread_bps: float = 2.0
    order_size: float = 0.005
    max_inventory: float = 0.05
    requote_ticks: int = 1

    def validate(self) -> FixedSpreadParams:
        _check_fields(self, ("half_spread_bps", "order_size", "max_inventory"))
        return self

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, ignore_unknown: bool = False) -> FixedSpreadParams:
        return _from_dict(cls, data, ignore_unknown=ignore_unknown)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class ASParams:
    """Parameters of :class:`AvellanedaStoikovQuoter` (units as in :mod:`apps.engine.quoting.pricing`).

    Attributes
    ----------
    gamma : float
        Risk aversion γ per base unit valued at mid.
    horizon_s : float
        The constant horizon T − t, seconds.
    order_size, max_inventory, requote_ticks
        As in :class:`FixedSpreadParams`.
    sigma : float or None
        Fixed σ per √second; ``None`` measures it (σ estimator, same settings as the core).
    kappa : float or None
        Fixed κ per unit fractional distance; ``None`` measures it (trade κ estimator).
    kappa_window_s, kappa_min_volume, kappa_max, sigma_bucket_s, sigma_min_buckets
        Estimator settings, used only for the measured σ/κ (meanings as in the core's ``StrategyParams``;
        ``kappa_max`` is the estimator's plausible upper bound, per unit fractional distance).
    """

    gamma: float = 1000.0
    horizon_s: float = 300.0
    order_size: float = 0.005
    max_inventory: float = 0.05
    requote_ticks: int = 1
    sigma: float | None = None
    kappa: float | None = None
    kappa_window_s: float = 60.0
    kappa_min_volume: float = 0.5
    kappa_max: float = 50_000.0
    sigma_bucket_s: float = 1.0
    sigma_min_buckets: int = 20

    def validate(self) -> ASParams:
        _check_fields(
            self,
            ("gamma", "horizon_s", "order_size", "max_inventory", "kappa_window_s", "kappa_max", "sigma_bucket_s"),
            ("sigma", "kappa"),
        )
        non_negative("kappa_min_volume", self.kappa_min_volume, "ASParams")
        integer("sigma_min_buckets", self.sigma_min_buckets, "ASParams", minimum=2)
        return self

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, ignore_unknown: bool = False) -> ASParams:
        return _from_dict(cls, data, ignore_unknown=ignore_unknown)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class _Quoter:
    """Shared plumbing: events, tracker, reconciliation, halt, state. Subclasses implement ``_targets``."""

    params: Any

    def __init__(self, *, tick_size: float, lot_size: float, id_prefix: str) -> None:
        if not (tick_size > 0 and lot_size > 0):
            raise ValueError(f"tick_size and lot_size must be > 0, got {tick_size!r}, {lot_size!r}")
        self.tick_size = tick_size
        self.lot_size = lot_size
        self.id_prefix = id_prefix
        self.tracker = OrderTracker()
        self.bbo: BestBidAsk | None = None
        self.last_decision: QuoteDecision | None = None
        self.decisions_changed = False
        self.halted = False
        self.fills = 0
        self.inventory_guard_skips = 0
        self._seq = 0
        self._now_ns = 0

    def on_event(self, event: Any) -> list[Action]:
        self._now_ns = max(self._now_ns, event.ts_local_ns)
        self.decisions_changed = False
        if isinstance(event, BestBidAsk):
            self.bbo = event
            self._on_bbo(event)
        elif isinstance(event, Trade):
            self._on_trade(event)
            return []
        elif isinstance(event, (OrderAck, OrderReject, Fill)):
            self.tracker.on_event(event)
            if isinstance(event, Fill):
                self.fills += 1
            else:
                return []
        if self.halted or self.bbo is None:
            return []
        decision = self._decide(self._now_ns)
        actions = self._reconcile(decision)
        self.tracker.on_actions(actions)
        return actions

    def halt(self, reason: str) -> list[Action]:
        self.halted = True
        actions: list[Action] = [CancelAll(reason=reason)]
        self.tracker.on_actions(actions)
        return actions

    # hooks
    def _on_bbo(self, bbo: BestBidAsk) -> None:
        pass

    def _on_trade(self, trade: Trade) -> None:
        pass

    def _targets(self, now_ns: int, mid: float, q: float, inputs: dict[str, float]) -> tuple[float, float] | str:
        """Raw (unrounded) bid and ask prices, or the reason not to quote."""
        raise NotImplementedError

    def _decide(self, now_ns: int) -> QuoteDecision:
        p = self.params
        bbo = self.bbo
        assert bbo is not None
        mid = bbo.mid
        q = self.tracker.position
        inputs: dict[str, float] = {"mid": mid, "best_bid": bbo.bid_px, "best_ask": bbo.ask_px, "q": q}
        reasons: list[str] = []
        targets = self._targets(now_ns, mid, q, inputs)
        if isinstance(targets, str):
            decision = QuoteDecision(now_ns, None, None, 0.0, 0.0, inputs, (targets,))
            self._set_decision(decision)
            return decision
        raw_bid, raw_ask = targets
        bid_px = round_price(raw_bid, self.tick_size, Side.BUY)
        ask_px = round_price(raw_ask, self.tick_size, Side.SELL)
        inputs.update(raw_bid=raw_bid, raw_ask=raw_ask, tick_size=self.tick_size)
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
            r = reconcile_side(
                self.tracker,
                side,
                [(target, size)] if target is not None and size > 0 else [],
                tick_size=self.tick_size,
                requote_ticks=self.params.requote_ticks,
                max_inventory=self.params.max_inventory,
                modify_orders=False,
                new_order_id=self._next_order_id,
            )
            actions += r.actions
            self.inventory_guard_skips += r.guard_skips
        return actions

    def _next_order_id(self) -> str:
        self._seq += 1
        return f"{self.id_prefix}-{self._seq}"

    def state(self) -> dict[str, Any]:
        d = self.last_decision
        mid = self.bbo.mid if self.bbo else math.nan
        q = self.tracker.position
        open_orders = self.tracker.open_orders()
        # what rests at the venue, not what the last decision wanted (see StrategyCore.state)
        bids = [o.price for o in open_orders if o.side is Side.BUY]
        asks = [o.price for o in open_orders if o.side is Side.SELL]
        bid = max(bids) if bids else None
        ask = min(asks) if asks else None
        out = {
            "ts_ns": self._now_ns,
            "mid": mid,
            "bid_px": bid,
            "ask_px": ask,
            "spread_bps": (ask - bid) / mid * 1e4 if (bid and ask and math.isfinite(mid)) else None,
            "inventory": q,
            "pnl": self.tracker.cash + q * mid if math.isfinite(mid) else math.nan,
            "cash": self.tracker.cash,
            "fees": self.tracker.fees_paid,
            "fills": self.fills,
            "open_orders": len(open_orders),
            "reasons": list(d.reasons) if d else [],
            "halted": self.halted,
        }
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in out.items()}


class FixedSpreadQuoter(_Quoter):
    """Constant half-spread around mid, no skew. See the module docstring."""

    def __init__(self, params: FixedSpreadParams, *, tick_size: float, lot_size: float, id_prefix: str = "f") -> None:
        super().__init__(tick_size=tick_size, lot_size=lot_size, id_prefix=id_prefix)
        self.params = params.validate()

    def _targets(self, now_ns: int, mid: float, q: float, inputs: dict[str, float]) -> tuple[float, float]:
        h = self.params.half_spread_bps * 1e-4
        inputs["half_spread_frac"] = h
        return mid * (1.0 - h), mid * (1.0 + h)


class AvellanedaStoikovQuoter(_Quoter):
    """The plain AS closed form with a constant horizon. See the module docstring."""

    def __init__(self, params: ASParams, *, tick_size: float, lot_size: float, id_prefix: str = "a") -> None:
        super().__init__(tick_size=tick_size, lot_size=lot_size, id_prefix=id_prefix)
        self.params = params.validate()
        self.kappa_est = TradeKappaEstimator(
            KappaParams(
                window_s=params.kappa_window_s,
                min_volume=params.kappa_min_volume,
                kappa_max=params.kappa_max,
                tick_size=tick_size,
            ).validate()
        )
        self.sigma_est = SigmaEstimator(
            SigmaParams(target_bucket_s=params.sigma_bucket_s, min_buckets=int(params.sigma_min_buckets))
        )

    def _on_bbo(self, bbo: BestBidAsk) -> None:
        if self.params.sigma is None:
            self.sigma_est.update(bbo.ts_local_ns, bbo.mid)

    def _on_trade(self, trade: Trade) -> None:
        bbo = self.bbo
        if bbo is None:
            return
        if self.params.kappa is None:
            # one observation per taker order, its prints grouped by Trade.order_key (kappa's module docstring)
            self.kappa_est.update_from_events(trade, bbo)
        if self.params.sigma is None:
            self.sigma_est.update(trade.ts_local_ns, bbo.mid, volume=trade.size)

    def _targets(self, now_ns: int, mid: float, q: float, inputs: dict[str, float]) -> tuple[float, float] | str:
        p = self.params
        reasons = []
        if p.kappa is None:
            k = self.kappa_est.snapshot(now_ns)
            inputs["kappa_std"] = k.std
            if not k.usable:
                reasons.append(f"{k.name} {k.state.value}: {k.message}".rstrip(": "))
            kappa = k.value
        else:
            kappa = p.kappa
        if p.sigma is None:
            s = self.sigma_est.snapshot(now_ns)
            if not s.usable:
                reasons.append(f"{s.name} {s.state.value}: {s.message}".rstrip(": "))
            sigma = self.sigma_est.sigma_for_inventory
        else:
            sigma = p.sigma
        inputs.update(kappa=kappa, sigma=sigma, gamma=p.gamma, horizon_s=p.horizon_s)
        if reasons:
            return "; ".join(reasons)
        bid, ask = avellaneda_stoikov_quotes(mid, q, p.gamma, sigma, kappa, p.horizon_s)
        inputs.update(reservation_price=0.5 * (bid + ask), as_spread_frac=(ask - bid) / mid)
        return bid, ask
