"""Per-session risk: builds the engine's RiskEngine from the session's ``params["risk"]`` and keeps its inputs.

The one driver (:class:`apps.engine.simulation.backtest.EngineLoop`) feeds and evaluates it in every mode:
live, replay through the live loop, and backtests. Pure: no Django, no I/O.

``params["risk"]`` maps a rule kind to overrides of its params, e.g.
``{"position_limit": {"max_position": 0.1}, "drawdown": {"max_drawdown_frac": 0.02}, "capital_quote": 10000}``.
Unknown rule kinds or fields are rejected with a message naming them. Defaults tie the position limit to the
strategy's own Q_max (the quoter never exceeds Q_max; the rule trips at 2·Q_max, i.e. when something is wrong).

The margin rule (:class:`~apps.engine.risk.rules.MarginRule`) joins the set only when ``params["risk"]["margin"]``
is given (``{}`` for its defaults): it needs the venue's margin report (leverage, maintenance rate, wallet,
entry price), which a venue hands over through :meth:`SessionRisk.on_margin`. The paper venue reports no
margin, so on it the rule is configured but not applicable (it returns no trip while ``leverage`` is unknown).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

from apps.engine import compiled
from apps.engine.risk.rules import (
    CancelRateRule,
    ClockSkewRule,
    CrossedBookRule,
    DrawdownRule,
    EstimatorStateRule,
    MarginRule,
    MessageRateRule,
    NotionalLimitRule,
    OrderFlowWindow,
    PositionLimitRule,
    RejectRateRule,
    RiskEngine,
    RiskState,
    RollingLoss,
    RuleTrip,
    SkewAlarmRule,
    StaleFeedRule,
    TripEdges,
    WindowLossRule,
)

RULES = (
    PositionLimitRule,
    NotionalLimitRule,
    DrawdownRule,
    WindowLossRule,
    StaleFeedRule,
    CrossedBookRule,
    ClockSkewRule,
    EstimatorStateRule,
    RejectRateRule,
    CancelRateRule,
    MessageRateRule,
    SkewAlarmRule,
)
OPTIONAL_RULES = (MarginRule,)  # only when configured: they need a report not every venue gives
FEED = "market"


def build_risk_engine(risk: dict[str, Any], max_inventory: float) -> tuple[RiskEngine, float]:
    """(engine, capital in quote currency). Raises ValueError naming the bad rule or field."""
    if not isinstance(risk, dict):
        raise ValueError(f"params.risk must be an object, got {type(risk).__name__}")
    risk = dict(risk)
    capital = risk.pop("capital_quote", 10_000.0)
    if (
        isinstance(capital, bool)
        or not isinstance(capital, (int, float))
        or not (capital > 0 and math.isfinite(capital))
    ):
        raise ValueError(f"params.risk.capital_quote must be a positive number, got {capital!r}")
    kinds = {cls.kind: cls for cls in (*RULES, *OPTIONAL_RULES)}
    unknown = sorted(set(risk) - set(kinds))
    if unknown:
        raise ValueError(f"params.risk: unknown rule(s) {unknown}; known: {sorted(kinds)} and capital_quote")
    defaults: dict[str, dict[str, Any]] = {
        "position_limit": {"max_position": 2 * max_inventory},
        "stale_feed": {"feeds": (FEED,)},
    }
    rules = []
    for kind, cls in kinds.items():
        if cls in OPTIONAL_RULES and kind not in risk:
            continue
        base = cls().params
        overrides = {**defaults.get(kind, {}), **risk.get(kind, {})}
        # JSON has no tuples: a list given for a tuple field (feeds, estimators, bad_states) is that tuple
        overrides = {k: tuple(v) if isinstance(v, list) else v for k, v in overrides.items()}
        fields = {f.name for f in dataclasses.fields(base)}
        bad = sorted(set(overrides) - fields)
        if bad:
            raise ValueError(f"params.risk.{kind}: unknown field(s) {bad}; known: {sorted(fields)}")
        try:
            rules.append(cls(dataclasses.replace(base, **overrides)))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"params.risk.{kind}: {exc}") from exc
    return RiskEngine(rules), float(capital)


def margin_inventory_cap(
    account_value: float, leverage: float, mid: float, max_margin_use: float, lot_size: float
) -> float | None:
    """The largest |position| (base units, a whole number of lots) whose initial margin at ``leverage`` stays within
    ``max_margin_use`` of ``account_value``: ``max_margin_use · account_value · leverage / mid``, the margin rule's
    bound turned into a size, so a quoter capped by it never quotes the position that rule would trip on.
    ``None`` when an input is unknown (not finite, or not positive); 0 when the account cannot carry one lot."""
    values = (account_value, leverage, mid, max_margin_use, lot_size)
    if not all(math.isfinite(v) and v > 0 for v in values):
        return None
    lots = math.floor(max_margin_use * account_value * leverage / mid / lot_size + 1e-9)
    return round(max(lots, 0) * lot_size, 12)


class PySessionRisk:
    """Keeps the rolling inputs and turns the engine's level trips into edges (one record per episode).

    The pure-Python reference: use :data:`SessionRisk`, which is this class with :meth:`evaluate` compiled
    (``apps/engine/risk/_session.pyx``) when that is built.

    Its state is in slots: the compiled driver writes the per-event inputs by slot offset, every market event.
    ``__dict__`` stays for anything else set on a session (a test's spy).

    A market event only records its two clocks (:meth:`on_market`); ``feed_last_ns`` and ``clock_skew_ns`` are
    brought up to date from the newest ones when either is read or set (:meth:`_settle`), so an event costs two
    stores instead of a dict write and a new int. One thread drives a session (the trading loop's, or a replay's):
    a read on another thread, racing an event, could leave that event's feed time unapplied until the next event."""

    __slots__ = (
        "__dict__",
        "_clock_skew_ns",
        "_feed_last_ns",
        "_feed_local_ns",
        "_skew_exch_ns",
        "_skew_local_ns",
        "_t",
        "capital",
        "clock_measured",
        "edges",
        "engine",
        "flows",
        "losses",
        "margin",
        "max_inventory",
        "peak_equity",
    )

    def __init__(self, engine: RiskEngine, capital_quote: float, max_inventory: float) -> None:
        self.engine = engine
        self.capital = capital_quote
        self.max_inventory = max_inventory
        self.losses = {w: RollingLoss(w) for w in engine.loss_windows_s}
        self.flows = {w: OrderFlowWindow(w) for w in engine.order_flow_windows_s}
        self.edges = TripEdges()
        self.peak_equity = capital_quote
        self._feed_last_ns: dict[str, int] = {}
        self._clock_skew_ns: int | None = None
        # the newest market event's local time, and the newest local and exchange times that measure the skew
        # (None: nothing to settle)
        self._feed_local_ns: int | None = None
        self._skew_local_ns: int | None = None
        self._skew_exch_ns = 0
        self.clock_measured = False  # a live feed measures the offset (on_clock): events no longer set it
        self.margin: tuple[float, float, float, float] | None = None  # leverage, maint. rate, wallet, entry
        self._t = 0  # the rolling windows need non-decreasing time; event stamps can lag the wall clock

    def replace_rules(self, engine: RiskEngine, capital_quote: float, max_inventory: float) -> None:
        """Evaluate ``engine``'s rules from now on (a live parameter change). The rolling windows the new rules
        share with the old keep their history; a new window starts empty; trip edges carry over by rule name, so a
        rule still tripping is not recorded twice. Equity is re-based on the new capital (peak moved by the same
        amount), so a capital change is not a drawdown."""
        self.peak_equity += capital_quote - self.capital
        self.engine, self.capital, self.max_inventory = engine, capital_quote, max_inventory
        self.losses = {w: self.losses.get(w) or RollingLoss(w) for w in engine.loss_windows_s}
        self.flows = {w: self.flows.get(w) or OrderFlowWindow(w) for w in engine.order_flow_windows_s}

    def _now(self, ts_ns: int) -> int:
        self._t = max(self._t, ts_ns)
        return self._t

    def on_market(self, ts_local_ns: int, ts_exch_ns: int) -> None:
        """The feed's newest event: ``feed_last_ns[FEED]`` becomes its local time and, with an exchange time and no
        measured offset, ``clock_skew_ns`` the difference of the two (when next read: :meth:`_settle`)."""
        # the compiled driver (apps/engine/simulation/_backtest.pyx) runs this inline for a SessionRisk: keep in step
        self._feed_local_ns = ts_local_ns
        if ts_exch_ns and not self.clock_measured:
            self._skew_local_ns = ts_local_ns
            self._skew_exch_ns = ts_exch_ns

    def _settle(self) -> None:
        """Apply the clocks :meth:`on_market` recorded since the last read."""
        local = self._feed_local_ns
        if local is not None:
            self._feed_local_ns = None
            self._feed_last_ns[FEED] = local
        local = self._skew_local_ns
        if local is not None:
            self._skew_local_ns = None
            self._clock_skew_ns = local - self._skew_exch_ns

    @property
    def feed_last_ns(self) -> dict[str, int]:
        """Each feed's last event time (local ns), by feed name."""
        self._settle()
        return self._feed_last_ns

    @feed_last_ns.setter
    def feed_last_ns(self, value: dict[str, int]) -> None:
        self._settle()
        self._feed_last_ns = value

    @property
    def clock_skew_ns(self) -> int | None:
        """Local minus exchange time: the newest event's (a replay) or the measured offset (:meth:`on_clock`)."""
        self._settle()
        return self._clock_skew_ns

    @clock_skew_ns.setter
    def clock_skew_ns(self, value: int | None) -> None:
        self._settle()
        self._clock_skew_ns = value

    def on_clock(self, offset_ns: int) -> None:
        """A live feed's measured local-minus-exchange offset (:class:`~apps.engine.market.clock.ClockEstimator`:
        min-filtered, median over a window): the clock-skew rule reads it from now on, instead of the last event's
        raw difference, which one late message moves by its whole delay. Replays and backtests never call this, so
        they keep the per-event difference (and their results)."""
        self.clock_measured = True
        self.clock_skew_ns = int(offset_ns)

    def on_margin(self, leverage: float, maint_margin_rate: float, wallet_balance: float, entry_price: float) -> None:
        """The venue's margin report (isolated linear perpetual): what the margin rule reads."""
        self.margin = (leverage, maint_margin_rate, wallet_balance, entry_price)

    def on_sent(self, ts_ns: int, n_place: int, n_cancel: int) -> None:
        ts_ns = self._now(ts_ns)
        for f in self.flows.values():
            if n_place:
                f.record_sent(ts_ns, n_place)
            if n_cancel:
                f.record_cancel(ts_ns, n_cancel)
            if n_place + n_cancel:
                f.record_message(ts_ns, n_place + n_cancel)

    def on_reject(self, ts_ns: int) -> None:
        ts_ns = self._now(ts_ns)
        for f in self.flows.values():
            f.record_reject(ts_ns)

    def evaluate(
        self, now_ns: int, core_state: dict[str, Any], decision_inputs: Mapping[str, float]
    ) -> tuple[list[RuleTrip], list[str], list[RuleTrip]]:
        """(started trips, cleared rule names, all current trips)."""
        now_ns = self._now(now_ns)
        pnl = core_state.get("pnl")
        pnl = 0.0 if pnl is None else float(pnl)
        equity = self.capital + pnl
        self.peak_equity = max(self.peak_equity, equity)
        for loss in self.losses.values():
            loss.update(now_ns, pnl)
        q = float(core_state.get("inventory") or 0.0)
        # the model's skew (before the quoter's skew cap, when it binds): the alarm is for a mis-scaled γ, σ or T,
        # and a deliberate cap is reported by the quoter as its own reason
        skew = decision_inputs.get("skew_model_frac", decision_inputs.get("skew_frac", 0.0))
        state = RiskState(
            ts_ns=now_ns,
            position=q,
            mid=float(core_state.get("mid") or math.nan),
            best_bid=decision_inputs.get("best_bid", math.nan),
            best_ask=decision_inputs.get("best_ask", math.nan),
            equity=equity,
            peak_equity=self.peak_equity,
            window_losses={w: loss.loss(now_ns) for w, loss in self.losses.items()},
            feed_last_ts_ns=dict(self.feed_last_ns),
            clock_skew_ns=self.clock_skew_ns,
            estimator_states={
                "kappa": core_state.get("kappa_state") or "warming",
                "sigma": core_state.get("sigma_state") or "warming",
            },
            order_flow={w: f.snapshot(now_ns) for w, f in self.flows.items()},
            max_inventory=float(self.max_inventory),
            skew_frac=float(skew),
        )
        if self.margin is not None:
            state.leverage, state.maint_margin_rate, state.wallet_balance, state.entry_price = self.margin
        trips = self.engine.evaluate(state)
        started, cleared = self.edges.update(trips)
        return started, cleared, trips


_compiled_session = compiled.load("apps.engine.risk._session")

if _compiled_session is not None:

    class SessionRisk(PySessionRisk):
        """The session's risk with one evaluation compiled (``_session.evaluate``: the same updates of the rolling
        inputs, the rules' quiet case checked in C, the reference rules on the same ``RiskState`` whenever one may
        trip) and the orders sent counted in C (``_session.on_sent``); everything else is ``PySessionRisk``'s."""

        # a Cython function compiled with binding=True: it binds like a Python function, so risk.evaluate(...) passes
        # the session as its first argument
        evaluate = _compiled_session.evaluate
        # the orders sent, likewise (``_session.on_sent``: the reference's updates by slot offset)
        on_sent = _compiled_session.on_sent
else:
    SessionRisk = PySessionRisk  # type: ignore[misc]

# which one the driver runs: the compiled evaluation when built and MM_PURE_PYTHON is not set
SESSION_COMPILED: bool = _compiled_session is not None
