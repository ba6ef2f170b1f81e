"""The live page's snapshot: everything the operator sees, as one JSON-ready dict, built from the running engine.

Each published snapshot is complete (latest wins): a browser that misses some loses nothing but intermediate
frames. Rolling windows (market trades, our fills, risk events) carry ids so the browser de-duplicates them when
it merges windows into its chart history.

Pure read side: :func:`build_snapshot` reads the strategy core and the driver and changes nothing in them. The
only thing it needs that the engine does not keep is a short tape of what went by (market trades, our fills, risk
events, why quotes were pulled): :class:`LiveTape` wraps the driver's sink, forwarding every call unchanged, and
keeps bounded windows of those. :func:`attach_tape` installs it once per driver.

Units (see ``docs/console-live.md``): prices in quote currency; spreads, skew and σ in bps (σ per √s); κ per unit
fractional distance (κ≈3333 ⇔ 3 bps); λ and A per second; drift in bps per minute; sizes and inventory in base
units; P&L in quote currency; times in ns since the epoch (UTC). ``feed`` (a live connector's, else None):
its connection ``state`` and ``message_age_s`` (seconds since its last message, by the connector's wall clock).
"""

from __future__ import annotations

import math
import time
from collections import deque
from typing import Any

from apps.engine.accounting.pnl import COMPONENTS
from apps.engine.market.events import Fill, Side, Trade
from apps.live.wording import MODE_SOURCES, MODE_WORDS, explain_all

SNAPSHOT_VERSION = 1
TRADES_KEPT = 60  # market trades in each snapshot; the page keeps its own history, de-duplicated by id
FILLS_KEPT = 20
RISK_EVENTS_KEPT = 20
PULLS_KEPT = 10
_NS = 1_000_000_000


def _num(x: Any) -> float | None:
    """JSON-safe number: NaN/inf become None so the page shows '—' rather than a fake value."""
    if x is None or isinstance(x, bool):
        return None
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def _side(side: Any) -> str:
    return "buy" if int(side) == int(Side.BUY) else "sell"


class LiveTape:
    """A pass-through sink that remembers the last few market trades, our fills, risk events and pulls.

    Every call goes on to the wrapped sink (the recorder) first, unchanged; the tape only appends to bounded
    deques, so it adds a constant cost per event and cannot grow."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.trades: deque[dict[str, Any]] = deque(maxlen=TRADES_KEPT)
        self.fills: deque[dict[str, Any]] = deque(maxlen=FILLS_KEPT)
        self.risk_events: deque[dict[str, Any]] = deque(maxlen=RISK_EVENTS_KEPT)
        self.pulls: deque[dict[str, Any]] = deque(maxlen=PULLS_KEPT)
        self._trade_seq = 0

    # --- the Sink calls the tape looks at -------------------------------------------------------
    def market(self, event: Any) -> None:
        if self.inner is not None:
            self.inner.market(event)
        if type(event) is Trade:
            self._trade_seq += 1
            self.trades.append(
                {
                    "id": event.trade_id or f"t{event.ts_local_ns}-{self._trade_seq}",
                    "ts_ns": event.ts_local_ns,
                    "px": event.price,
                    "size": event.size,
                    "side": _side(event.aggressor),
                }
            )

    def order_event(self, event: Any, order: Any) -> None:
        if self.inner is not None:
            self.inner.order_event(event, order)
        if type(event) is Fill:
            self.fills.append(
                {
                    "id": event.fill_id,
                    "order_id": event.client_order_id,
                    "ts_ns": event.ts_local_ns,
                    "side": _side(event.side),
                    "px": event.price,
                    "size": event.size,
                    "fee": event.fee,
                    "liquidity": event.liquidity,
                }
            )

    def risk_event(self, ts_ns: int, rule: str, action: str, values: dict[str, Any], message: str) -> None:
        if self.inner is not None:
            self.inner.risk_event(ts_ns, rule, action, values, message)
        self.risk_events.append(
            {
                "id": f"{ts_ns}-{rule}-{action}",
                "ts_ns": ts_ns,
                "rule": rule,
                "action": action,
                "message": message,
                "values": {k: (_num(v) if isinstance(v, (int, float)) else str(v)) for k, v in values.items()},
            }
        )

    def note(self, ts_ns: int, client_order_id: str, kind: str, **detail: Any) -> None:
        if self.inner is not None:
            self.inner.note(ts_ns, client_order_id, kind, **detail)
        if kind == "emergency_cancel_all":
            self.pulls.append({"ts_ns": ts_ns, "reason": str(detail.get("reason", ""))})

    def blocked(self, ts_ns: int, action: Any, reason: str) -> None:
        if self.inner is not None:
            self.inner.blocked(ts_ns, action, reason)
        self.pulls.append({"ts_ns": ts_ns, "reason": f"gateway: {reason}"})

    # --- everything else goes straight through --------------------------------------------------
    def __getattr__(self, name: str) -> Any:  # sent, decision, order_state, flush, ...
        inner = self.__dict__.get("inner")
        if inner is None:
            raise AttributeError(name)
        return getattr(inner, name)


def attach_tape(driver: Any) -> LiveTape:
    """The driver's tape, wrapping its sink the first time (later calls return the same tape)."""
    sink = driver.sink
    if isinstance(sink, LiveTape):
        return sink
    tape = LiveTape(sink)
    driver.sink = tape
    return tape


# --- the snapshot -----------------------------------------------------------------------------------


def _estimators(core: Any, inputs: dict[str, float], now_ns: int) -> dict[str, Any]:
    m = core.market
    k, s = core.estimator_snapshots()
    lam = m.peek("arrival", now_ns)
    drift = m.peek("drift", now_ns)
    sigma_total = s.detail.get("sigma_total", math.nan)
    return {
        "kappa": {
            "value": _num(k.value),
            "ci_low": _num(k.ci_low),
            "ci_high": _num(k.ci_high),
            "std": _num(k.std),
            "state": k.state.value,
            "message": k.message,
            "n_orders": _num(k.detail.get("n_orders")),
            "avg_trade_distance_bps": _num(k.detail.get("avg_distance_bps")),
        },
        "sigma": {
            "clean_bps": _num(m.sigma.sigma_for_spread * 1e4),
            "total_bps": _num(sigma_total * 1e4),
            "value_bps": _num(s.value * 1e4),
            "state": s.state.value,
            "message": s.message,
        },
        "a_per_s": _num(inputs.get("a_per_s")),
        "lambda_per_s": {"value": _num(lam.value), "state": lam.state.value},
        "drift": {
            "bps_per_min": _num(drift.value * 1e4 * 60),
            "std_bps_per_min": _num(drift.std * 1e4 * 60),
            "state": drift.state.value,
        },
    }


def _gamma(core: Any, inputs: dict[str, float]) -> dict[str, Any]:
    contributions = {
        k.removeprefix("gamma_contrib_"): _num(v) for k, v in inputs.items() if k.startswith("gamma_contrib_")
    }
    features = {k.removeprefix("gamma_x_"): _num(v) for k, v in inputs.items() if k.startswith("gamma_x_")}
    return {
        "value": _num(inputs.get("gamma", core.quoter_params.gamma_base)),
        "base": _num(inputs.get("gamma_base", core.quoter_params.gamma_base)),
        "log_contribution": _num(inputs.get("gamma_log_contribution")),
        "log_contribution_bounded": _num(inputs.get("gamma_log_contribution_bounded")),
        "bound_binding": bool(inputs.get("gamma_bound", 0.0)),
        "contributions": contributions,
        "features": features,
    }


def _orders(core: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    bids: list[dict[str, Any]] = []
    asks: list[dict[str, Any]] = []
    for o in core.tracker.open_orders():
        row = {
            "id": o.client_order_id,
            "side": _side(o.side),
            "px": o.price,
            "size": o.size,
            "remaining": o.remaining,
            "status": str(o.status),
            "tif": str(getattr(o.tif, "value", o.tif)),
        }
        (bids if o.side is Side.BUY else asks).append(row)
    bids.sort(key=lambda r: -r["px"])
    asks.sort(key=lambda r: r["px"])
    return bids, asks


def _risk(driver: Any, tape: LiveTape | None, status: str) -> dict[str, Any]:
    modes = driver.modes  # the driver's per-source modes; the gateway obeys the strictest
    sources = {name: mode.name.lower() for name, mode in modes.items()}
    mode = driver.mode.name.lower()
    holding = [
        {"source": name, "source_words": MODE_SOURCES.get(name, name), "mode": m, "words": MODE_WORDS.get(m, m)}
        for name, m in sources.items()
        if m != "running"
    ]
    return {
        "mode": mode,
        "mode_words": MODE_WORDS.get(mode, mode),
        "quoting": mode == "running",
        "sources": sources,
        "holding": holding,  # every source that holds quotes back, and what it does
        "pulls": list(tape.pulls) if tape else [],
        "events": list(tape.risk_events) if tape else [],
        "status": status,
    }


def _decision(core: Any) -> dict[str, Any] | None:
    d = core.last_decision
    if d is None:
        return None
    inputs = {k: _num(v) for k, v in d.inputs.items()}
    return {
        "ts_ns": d.ts_ns,
        "bid_px": _num(d.bid_px),
        "ask_px": _num(d.ask_px),
        "bid_size": _num(d.bid_size),
        "ask_size": _num(d.ask_size),
        "reasons": explain_all(d.reasons),
        "inputs": inputs,
        "key_inputs": {
            "reservation_price": inputs.get("reservation_price"),
            "half_spread_bps": inputs.get("half_spread_bps"),
            "skew_bps": inputs.get("skew_bps"),
            "inventory_term_bps": _bps(inputs.get("inventory_term_frac")),
            "drift_term_bps": _bps(inputs.get("drift_term_frac")),
            "funding_term_bps": _bps(inputs.get("funding_term_frac")),
            "imbalance_skew_bps": _bps(inputs.get("imbalance_skew_frac")),
            "flow_skew_bps": _bps(inputs.get("flow_skew_frac")),
            "microprice_term_bps": _bps(inputs.get("microprice_term_frac")),
            "horizon_s": inputs.get("horizon_s"),
            "adverse_selection_bps": _bps(inputs.get("adverse_selection_frac")),
            "maker_fee_bps": _bps(inputs.get("maker_fee_frac")),
        },
    }


def _bps(frac: float | None) -> float | None:
    return None if frac is None else frac * 1e4


def build_snapshot(
    core: Any,
    driver: Any,
    tape: LiveTape | None,
    *,
    session_id: int,
    status: str,
    seq: int = 0,
    feed: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One complete, JSON-ready snapshot of a running session (see the module docstring for units)."""
    built_ns = time.time_ns()
    now_ns = int(driver.now_ns)  # the latest local time processed (the core's own clock is never ahead of it)
    bbo = core.market.bbo
    mid = bbo.mid if bbo else math.nan
    micro = core.market.peek("microprice", now_ns)
    micro_offset = micro.value if micro.usable else math.nan
    d = core.last_decision
    inputs = dict(d.inputs) if d else {}
    bids, asks = _orders(core)
    our_bid = bids[0]["px"] if bids else None
    our_ask = asks[0]["px"] if asks else None
    q = core.tracker.position
    q_max = core.quoter_params.max_inventory
    ledger = driver.ledger
    pnl = ledger.snapshot(now_ns).as_dict() if math.isfinite(ledger.mid) else None
    market_spread_bps = (bbo.ask_px - bbo.bid_px) / mid * 1e4 if bbo and mid > 0 else math.nan
    our_spread_bps = (our_ask - our_bid) / mid * 1e4 if (our_bid and our_ask and mid > 0) else math.nan
    return {
        "v": SNAPSHOT_VERSION,
        "session_id": session_id,
        "seq": seq,
        "status": status,
        "ts_ns": now_ns,
        "built_ns": built_ns,
        "market": {
            "mid": _num(mid),
            "microprice": _num(mid * (1 + micro_offset)) if math.isfinite(micro_offset) else None,
            "microprice_state": micro.state.value,
            "best_bid": _num(bbo.bid_px) if bbo else None,
            "best_ask": _num(bbo.ask_px) if bbo else None,
            "bid_size": _num(bbo.bid_size) if bbo else None,
            "ask_size": _num(bbo.ask_size) if bbo else None,
            "spread_bps": _num(market_spread_bps),
        },
        "quotes": {
            "bid_px": our_bid,
            "ask_px": our_ask,
            "spread_bps": _num(our_spread_bps),
            "market_spread_bps": _num(market_spread_bps),
            "bids": bids,
            "asks": asks,
        },
        "estimators": _estimators(core, inputs, now_ns),
        "gamma": _gamma(core, inputs),
        "inventory": {
            "q": q,
            "q_max": q_max,
            "q_ratio": q / q_max if q_max else None,
            "skew_bps": _num(inputs.get("skew_bps")),
        },
        "pnl": {
            "total": _num(pnl["total"]) if pnl else None,
            "parts": {c: _num(pnl[c]) for c in COMPONENTS} if pnl else dict.fromkeys(COMPONENTS),
            "markout_s": ledger.markout_s,
            "fills_this_run": ledger.fills,
            # the core's mark includes a position inherited from an earlier run of the session; the split
            # above covers this run's fills (the ledger starts with the run)
            "session_total": _num(core.tracker.cash + q * mid),
            "fees_session": _num(core.tracker.fees_paid),
        },
        "counts": {
            "fills": core.fills,
            "open_orders": len(bids) + len(asks),
            "decisions": core.decisions_computed,
        },
        "trades": list(tape.trades) if tape else [],
        "fills": list(tape.fills) if tape else [],
        "risk": _risk(driver, tape, status),
        "decision": _decision(core),
        # a live connector's connection: state (connecting/syncing/live/backoff/stopped), book whole, message age
        # in seconds; None for the simulator and replays
        "feed": feed,
        "state": core.state(),  # the legacy flat tiles (also what the session row stores as last_state)
    }


def snapshot_from_state(session_id: int, state: dict[str, Any], status: str) -> dict[str, Any]:
    """A snapshot with only what a stored ``last_state`` (``StrategyCore.state()``) holds: the page before the
    loop's first publish, and the status pushes of the control layer when no loop runs."""
    state = dict(state or {})
    return {
        "v": SNAPSHOT_VERSION,
        "session_id": session_id,
        "seq": 0,
        "status": status,
        "ts_ns": state.get("ts_ns") or 0,
        "built_ns": time.time_ns(),
        "partial": True,
        "state": state,
    }


__all__ = ["LiveTape", "attach_tape", "build_snapshot", "snapshot_from_state"]
