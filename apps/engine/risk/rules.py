"""Automatic risk rules: small pure checks of a :class:`RiskState` that say when to warn, pull quotes,
reduce or halt, and with which values.

Contract
--------
* Each rule is an object with a ``name``, a frozen params dataclass (``validate()`` raises ``ValueError``
  naming the field and the bad value) and ``evaluate(state) -> RuleTrip | None``. ``evaluate`` reads the state
  and nothing else: no clock, no I/O, no hidden history. Rolling quantities (loss over a window, order counts
  in a window) are computed by the helpers :class:`RollingCounter`, :class:`RollingLoss` and
  :class:`OrderFlowWindow`, which the loop feeds and whose results it puts into the state.
* A rule trips **at** its bound and not below it: ``|q| >= max_position`` trips, ``|q| < max_position`` does
  not; a "minimum distance" bound trips at ``distance <= bound``.
* Trips are *level-triggered*: a rule reports a trip on every evaluation while its condition holds. Use
  :class:`TripEdges` to turn that into "started" / "cleared" edges for the risk-event log.
* **Unknown inputs fail closed.** A required input that is missing or not finite (no mid yet, a named feed
  never seen, an estimator not reported) makes the rule trip with :data:`UNKNOWN_INPUT_ACTION`
  (``pull_quotes``) and ``cause="unknown_input"``, never silently pass. ``pull_quotes`` does not latch the kill
  switch, so this is harmless at start-up and safe later. The one exception is *not applicable*: the margin
  rule returns ``None`` when the state describes no perpetual position (``leverage is None``).

Actions, least to most severe (:data:`ACTION_SEVERITY`)
------------------------------------------------------
``warn``         record it, keep quoting.
``pull_quotes``  cancel our quotes and send none while the condition holds; position is kept; not latched.
``reduce``       only orders that reduce ``|q|`` (kill switch REDUCING; latched there).
``halt``         cancel everything, send nothing (kill switch HALTED; latched until an operator re-arms).

Units
-----
Timestamps int ns (``RiskState.ts_ns`` is the *local* time of the evaluation); prices and money in quote
currency; ``q`` in base units (+ long, − short); fractions are plain fractions (0.05 = 5 %); windows in
seconds (``window_s``), ages and skews configured in seconds or milliseconds as their names say.

Cost
----
:meth:`RiskEngine.evaluate` is O(R + F + E): R rules, F feeds checked by stale-data rules, E estimators
checked; no allocation beyond one list unless a rule trips. With the fourteen-rule set of the tests a call on
a healthy state takes about 6 µs in CPython 3.11 (best of 5; 13–26 µs on a heavily loaded 2-core machine;
0.1–2 µs per rule, the margin and drawdown rules the dearest), cheap enough to run on every event.
The helpers are O(1) amortised per sample.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import ClassVar, Protocol

from apps.engine.validation import fraction, positive

__all__ = [
    "ACTION_SEVERITY",
    "UNKNOWN_INPUT_ACTION",
    "CancelRateParams",
    "CancelRateRule",
    "ClockSkewParams",
    "ClockSkewRule",
    "CrossedBookParams",
    "CrossedBookRule",
    "DrawdownParams",
    "DrawdownRule",
    "EstimatorStateParams",
    "EstimatorStateRule",
    "MarginParams",
    "MarginRule",
    "MessageRateParams",
    "MessageRateRule",
    "NotionalLimitParams",
    "NotionalLimitRule",
    "OrderFlowCounts",
    "OrderFlowWindow",
    "PositionLimitParams",
    "PositionLimitRule",
    "RejectRateParams",
    "RejectRateRule",
    "RiskEngine",
    "RiskRule",
    "RiskState",
    "RollingCounter",
    "RollingLoss",
    "RuleAction",
    "RuleTrip",
    "SkewAlarmParams",
    "SkewAlarmRule",
    "StaleFeedParams",
    "StaleFeedRule",
    "TripEdges",
    "WindowLossParams",
    "WindowLossRule",
    "isolated_liquidation_price",
    "skew_magnitude_alarm",
    "worst_action",
]

NS_PER_S = 1_000_000_000
NS_PER_MS = 1_000_000


class RuleAction(StrEnum):
    WARN = "warn"
    PULL_QUOTES = "pull_quotes"
    REDUCE = "reduce"
    HALT = "halt"


ACTION_SEVERITY: dict[RuleAction, int] = {
    RuleAction.WARN: 0,
    RuleAction.PULL_QUOTES: 1,
    RuleAction.REDUCE: 2,
    RuleAction.HALT: 3,
}

UNKNOWN_INPUT_ACTION = RuleAction.PULL_QUOTES
"""What a rule does when an input it needs is missing or not finite (fail closed without latching)."""


# --- validation helpers ---------------------------------------------------------------------------------


def _finite(value: object) -> bool:
    """A finite real number (bools excluded). On the hot path: no isinstance chain when the input is good."""
    try:
        return math.isfinite(value) and value is not True and value is not False  # type: ignore[arg-type]
    except TypeError:  # None, str, ...
        return False


def _require_action(value: object) -> None:
    try:
        RuleAction(value)
    except ValueError:
        allowed = ", ".join(a.value for a in RuleAction)
        raise ValueError(f"action must be one of {allowed}, got {value!r}") from None


def _require_names(name: str, value: object, *, allow_empty: bool) -> None:
    if not isinstance(value, tuple) or not all(isinstance(v, str) and v for v in value):
        raise ValueError(f"{name} must be a tuple of non-empty strings, got {value!r}")
    if not allow_empty and not value:
        raise ValueError(f"{name} must not be empty, got {value!r}")


# --- results ----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RuleTrip:
    """One rule tripped.

    Attributes
    ----------
    rule : str
        The rule's name (unique within a :class:`RiskEngine`).
    kind : str
        The rule's type, e.g. ``"drawdown"``.
    action : RuleAction
        What to do.
    ts_ns : int
        ``RiskState.ts_ns`` of the evaluation (local time, ns).
    values : dict
        The values that tripped it, bound included (e.g. ``{"drawdown_frac": 0.05, "max_drawdown_frac": 0.05}``).
    message : str
        One readable sentence for the operator.
    cause : str
        ``"bound"`` (a bound was reached) or ``"unknown_input"`` (a required input was missing or not finite).
    """

    rule: str
    kind: str
    action: RuleAction
    ts_ns: int
    values: dict[str, float | int | str | bool]
    message: str
    cause: str = "bound"

    def to_dict(self) -> dict[str, object]:
        """Plain JSON-able form for a risk-event row (non-finite floats become strings)."""
        vals: dict[str, object] = {}
        for k, v in self.values.items():
            vals[k] = v if not (isinstance(v, float) and not math.isfinite(v)) else repr(v)
        return {
            "rule": self.rule,
            "kind": self.kind,
            "action": self.action.value,
            "ts_ns": self.ts_ns,
            "values": vals,
            "message": self.message,
            "cause": self.cause,
        }


def worst_action(trips: Iterable[RuleTrip]) -> RuleAction | None:
    """The most severe action among ``trips`` (``None`` when there are none)."""
    worst: RuleAction | None = None
    for t in trips:
        if worst is None or ACTION_SEVERITY[t.action] > ACTION_SEVERITY[worst]:
            worst = t.action
    return worst


# --- rolling helpers ---------------------------------------------------------------------------------------


class RollingCounter:
    """Count of events in the trailing window ``(now − W, now]``.

    An event at ``ts`` is counted while ``now − W < ts <= now``: it drops out exactly ``W`` after it happened.
    Timestamps must not decrease (the loop's local clock); a decrease raises ``ValueError``, since silently
    miscounting a rate limit is worse than failing. O(1) amortised per ``add``/``count``; memory O(distinct
    timestamps in the window).

    Parameters
    ----------
    window_ns : int
        W > 0, in nanoseconds.

    Examples
    --------
    >>> c = RollingCounter(10 * NS_PER_S)
    >>> c.add(0); c.add(5 * NS_PER_S, 2)
    >>> c.count(9 * NS_PER_S), c.count(10 * NS_PER_S), c.count(15 * NS_PER_S)
    (3, 2, 0)
    """

    __slots__ = ("_events", "_last_ns", "_total", "window_ns")

    def __init__(self, window_ns: int) -> None:
        if isinstance(window_ns, bool) or not isinstance(window_ns, int) or window_ns <= 0:
            raise ValueError(f"window_ns must be an int > 0, got {window_ns!r}")
        self.window_ns = window_ns
        self._events: deque[list[int]] = deque()  # [ts_ns, n], ts strictly increasing
        self._total = 0
        self._last_ns: int | None = None

    def _advance(self, now_ns: int) -> None:
        if self._last_ns is not None and now_ns < self._last_ns:
            raise ValueError(f"time went backwards: {now_ns} < {self._last_ns}")
        self._last_ns = now_ns
        cutoff = now_ns - self.window_ns
        events = self._events
        while events and events[0][0] <= cutoff:
            self._total -= events.popleft()[1]

    def add(self, ts_ns: int, n: int = 1) -> None:
        """Record ``n >= 1`` events at ``ts_ns``."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"n must be an int >= 1, got {n!r}")
        self._advance(ts_ns)
        if self._events and self._events[-1][0] == ts_ns:
            self._events[-1][1] += n
        else:
            self._events.append([ts_ns, n])
        self._total += n

    def count(self, now_ns: int) -> int:
        """Events in ``(now_ns − W, now_ns]``."""
        # _advance, inline (the risk grid counts 8 windows per evaluation; most have nothing to expire)
        if self._last_ns is not None and now_ns < self._last_ns:
            raise ValueError(f"time went backwards: {now_ns} < {self._last_ns}")
        self._last_ns = now_ns
        events = self._events
        if events:
            cutoff = now_ns - self.window_ns
            while events and events[0][0] <= cutoff:
                self._total -= events.popleft()[1]
        return self._total


class RollingLoss:
    """Loss over a trailing window: the highest P&L in the window minus the latest P&L (quote currency, >= 0).

    Model: P&L ``P(t)`` (realised + unrealised, net of fees, quote currency) is a step function sampled by
    ``update``. The window is ``[now − W, now]`` and includes the value *in effect* at its start (the last
    sample at or before ``now − W``), so a drop is seen even when samples are sparse. The result is
    ``max_{t ∈ window} P(t) − P(now)``: it catches "made 100, then lost 150" inside the window, which the net
    change (−50) would understate. O(1) amortised per sample (monotonic deque); memory O(samples in window).

    Parameters
    ----------
    window_s : float
        W > 0, in seconds.
    """

    __slots__ = ("_max", "_samples", "_seq", "window_ns", "window_s")

    def __init__(self, window_s: float) -> None:
        positive("window_s", window_s, "RollingLoss")
        self.window_s = float(window_s)
        self.window_ns = round(window_s * NS_PER_S)
        self._samples: deque[tuple[int, int, float]] = deque()  # (seq, ts_ns, pnl)
        self._max: deque[tuple[int, float]] = deque()  # (seq, pnl), pnl strictly decreasing
        self._seq = 0

    def _expire(self, now_ns: int) -> None:
        cutoff = now_ns - self.window_ns
        samples = self._samples
        while len(samples) >= 2 and samples[1][1] <= cutoff:
            samples.popleft()
        first_seq = samples[0][0] if samples else self._seq
        while self._max and self._max[0][0] < first_seq:
            self._max.popleft()

    def update(self, ts_ns: int, pnl_quote: float) -> None:
        """Record the session P&L ``pnl_quote`` (quote currency) at local time ``ts_ns`` (non-decreasing)."""
        if not _finite(pnl_quote):
            raise ValueError(f"pnl_quote must be finite, got {pnl_quote!r}")
        if self._samples and ts_ns < self._samples[-1][1]:
            raise ValueError(f"time went backwards: {ts_ns} < {self._samples[-1][1]}")
        self._seq += 1
        self._samples.append((self._seq, ts_ns, float(pnl_quote)))
        while self._max and self._max[-1][1] <= pnl_quote:
            self._max.pop()
        self._max.append((self._seq, float(pnl_quote)))
        self._expire(ts_ns)

    def loss(self, now_ns: int) -> float:
        """``max P over [now − W, now] − P(now)``; NaN before the first sample (an unknown, not a zero)."""
        if not self._samples:
            return math.nan
        if now_ns < self._samples[-1][1]:
            raise ValueError(f"time went backwards: {now_ns} < {self._samples[-1][1]}")
        self._expire(now_ns)
        return self._max[0][1] - self._samples[-1][2]


@dataclass(frozen=True, slots=True)
class OrderFlowCounts:
    """Our order traffic in one trailing window: requests sent, rejects, cancels, and all venue messages."""

    window_s: float
    sent: int = 0
    rejected: int = 0
    cancelled: int = 0
    messages: int = 0


class OrderFlowWindow:
    """Four :class:`RollingCounter` s over one window, fed by the order gateway.

    ``record_sent`` per new order sent, ``record_reject`` per reject received, ``record_cancel`` per cancel
    request sent, ``record_message`` per request of any kind that counts against the venue's rate limit
    (place, cancel, modify, cancel-all): the gateway calls it *as well as* the specific method.
    """

    __slots__ = ("_cancelled", "_last", "_messages", "_rejected", "_sent", "window_s")

    def __init__(self, window_s: float) -> None:
        positive("window_s", window_s, "OrderFlowWindow")
        self.window_s = float(window_s)
        ns = round(window_s * NS_PER_S)
        self._sent = RollingCounter(ns)
        self._rejected = RollingCounter(ns)
        self._cancelled = RollingCounter(ns)
        self._messages = RollingCounter(ns)
        self._last: OrderFlowCounts | None = None  # the last snapshot (immutable): returned again while equal

    def record_sent(self, ts_ns: int, n: int = 1) -> None:
        self._sent.add(ts_ns, n)

    def record_reject(self, ts_ns: int, n: int = 1) -> None:
        self._rejected.add(ts_ns, n)

    def record_cancel(self, ts_ns: int, n: int = 1) -> None:
        self._cancelled.add(ts_ns, n)

    def record_message(self, ts_ns: int, n: int = 1) -> None:
        self._messages.add(ts_ns, n)

    def snapshot(self, now_ns: int) -> OrderFlowCounts:
        sent = self._sent.count(now_ns)
        rejected = self._rejected.count(now_ns)
        cancelled = self._cancelled.count(now_ns)
        messages = self._messages.count(now_ns)
        last = self._last
        if (
            last is not None
            and last.sent == sent
            and last.rejected == rejected
            and last.cancelled == cancelled
            and last.messages == messages
        ):
            return last  # the risk grid asks every 100 ms; the counts rarely move between two asks
        self._last = last = OrderFlowCounts(self.window_s, sent, rejected, cancelled, messages)
        return last


# --- the inputs --------------------------------------------------------------------------------------------


@dataclass(slots=True)
class RiskState:
    """Everything the rules read, at one instant. Mutable so the loop can update it in place per event.

    NaN / ``None`` / a missing key mean *unknown*; rules that need an unknown input trip with
    :data:`UNKNOWN_INPUT_ACTION` (see the module docstring).

    Attributes
    ----------
    ts_ns : int
        Local time of this evaluation, ns since the epoch.
    position : float
        q, base units, + long / − short.
    mid : float
        Mid (or mark) price, quote currency.
    best_bid, best_ask : float
        Top of book, quote currency.
    equity : float
        Session equity now (wallet + unrealised P&L), quote currency.
    peak_equity : float
        Highest equity since the session started, quote currency (the drawdown rule uses
        ``max(peak_equity, equity)`` so a late update cannot understate it).
    window_losses : dict[float, float]
        ``window_s -> loss`` from a :class:`RollingLoss` per configured window (quote currency, >= 0).
    feed_last_ts_ns : dict[str, int]
        Feed name -> local time of its last message, ns.
    clock_skew_ns : int | None
        Local minus exchange clock, ns (e.g. a low quantile of ``ts_local_ns − ts_exch_ns``); ``None`` = unknown.
    estimator_states : dict[str, str]
        Estimator name -> ``"ok" | "warming" | "stale" | "failed"`` (an ``EstimatorState`` works: it is a str).
    order_flow : dict[float, OrderFlowCounts]
        ``window_s -> counts`` from an :class:`OrderFlowWindow` per configured window.
    leverage : float | None
        Perpetuals only: isolated-margin leverage L >= 1. ``None`` = not a margined position (margin rule n/a).
    maint_margin_rate : float
        Perpetuals: maintenance margin rate m, fraction of notional, in [0, 1).
    entry_price : float
        Perpetuals: average entry price of the open position, quote currency.
    wallet_balance : float
        Perpetuals: wallet balance backing the position, quote currency (excludes unrealised P&L).
    max_inventory : float
        Q_max, base units: the inventory bound the session quotes under, the scale of the skew alarm's position
        test. NaN = not reported (the skew alarm then stays quiet).
    skew_frac : float
        The model's inventory skew as a fraction of mid, before the quoter's skew cap (a deliberate cap is the
        quoter's own reason, not a mis-scaled model). NaN = unknown, which with a meaningful position raises the
        skew alarm (an unknown skew is not a sufficient one).
    """

    ts_ns: int
    position: float = 0.0
    mid: float = math.nan
    best_bid: float = math.nan
    best_ask: float = math.nan
    equity: float = math.nan
    peak_equity: float = math.nan
    window_losses: dict[float, float] = field(default_factory=dict)
    feed_last_ts_ns: dict[str, int] = field(default_factory=dict)
    clock_skew_ns: int | None = None
    estimator_states: dict[str, str] = field(default_factory=dict)
    order_flow: dict[float, OrderFlowCounts] = field(default_factory=dict)
    leverage: float | None = None
    maint_margin_rate: float = math.nan
    entry_price: float = math.nan
    wallet_balance: float = math.nan
    max_inventory: float = math.nan
    skew_frac: float = math.nan

    @property
    def notional_quote(self) -> float:
        """``|q|·mid`` in quote currency (linear contracts and spot); NaN while mid is unknown."""
        return abs(self.position) * self.mid


# --- rules ---------------------------------------------------------------------------------------------------


class RiskRule(Protocol):
    name: str
    kind: str
    action: RuleAction

    def evaluate(self, state: RiskState) -> RuleTrip | None: ...


class _Rule:
    """Shared plumbing: validate params, store name/action, build trips."""

    kind: ClassVar[str] = "rule"
    # slots: the compiled risk evaluation (apps/engine/risk/_session.pyx) reads them by offset
    __slots__ = ("action", "name", "params")

    def __init__(self, params: object, name: str | None = None) -> None:
        params.validate()  # type: ignore[attr-defined]
        if name is not None and (not isinstance(name, str) or not name):
            raise ValueError(f"name must be a non-empty string, got {name!r}")
        self.params = params
        self.name: str = name or self.kind
        self.action: RuleAction = RuleAction(params.action)  # type: ignore[attr-defined]

    def _trip(self, state: RiskState, values: dict[str, float | int | str | bool], message: str) -> RuleTrip:
        return RuleTrip(self.name, self.kind, self.action, state.ts_ns, values, message)

    def _unknown(self, state: RiskState, what: str, value: object) -> RuleTrip:
        return RuleTrip(
            self.name,
            self.kind,
            UNKNOWN_INPUT_ACTION,
            state.ts_ns,
            {"unknown_input": what},
            f"{self.name}: cannot evaluate, {what} is unknown ({value!r})",
            cause="unknown_input",
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, params={self.params!r})"


@dataclass(frozen=True, slots=True)
class PositionLimitParams:
    """Position limit.

    Attributes
    ----------
    max_position : float
        Q_max > 0, base units: trips when ``|q| >= max_position``. Asset- and size-specific; the default
        1.0 is a placeholder to be set per market.
    action : RuleAction
        Default ``reduce``: at the limit only reducing orders make sense.
    """

    max_position: float = 1.0
    action: RuleAction = RuleAction.REDUCE

    def validate(self) -> None:
        positive("max_position", self.max_position, "PositionLimitParams")
        _require_action(self.action)


class PositionLimitRule(_Rule):
    kind = "position_limit"
    __slots__ = ()
    params: PositionLimitParams

    def __init__(self, params: PositionLimitParams | None = None, name: str | None = None) -> None:
        super().__init__(params or PositionLimitParams(), name)

    def evaluate(self, state: RiskState) -> RuleTrip | None:
        q = state.position
        if not _finite(q):
            return self._unknown(state, "position", q)
        bound = self.params.max_position
        if abs(q) >= bound:
            return self._trip(
                state,
                {"position": q, "abs_position": abs(q), "max_position": bound},
                f"|q| = {abs(q):g} reached the position limit {bound:g}",
            )
        return None


@dataclass(frozen=True, slots=True)
class NotionalLimitParams:
    """Notional limit.

    Attributes
    ----------
    max_notional_quote : float
        > 0, quote currency: trips when ``|q|·mid >= max_notional_quote``. Default 50 000 (placeholder).
    action : RuleAction
        Default ``reduce``.
    """

    max_notional_quote: float = 50_000.0
    action: RuleAction = RuleAction.REDUCE

    def validate(self) -> None:
        positive("max_notional_quote", self.max_notional_quote, "NotionalLimitParams")
        _require_action(self.action)


class NotionalLimitRule(_Rule):
    kind = "notional_limit"
    __slots__ = ()
    params: NotionalLimitParams

    def __init__(self, params: NotionalLimitParams | None = None, name: str | None = None) -> None:
        super().__init__(params or NotionalLimitParams(), name)

    def evaluate(self, state: RiskState) -> RuleTrip | None:
        q, mid = state.position, state.mid
        if not _finite(q):
            return self._unknown(state, "position", q)
        if q == 0:
            return None  # flat: notional is 0 whatever the price
        if not (_finite(mid) and mid > 0):
            return self._unknown(state, "mid", mid)
        notional = abs(q) * mid
        bound = self.params.max_notional_quote
        if notional >= bound:
            return self._trip(
                state,
                {"position": q, "mid": mid, "notional_quote": notional, "max_notional_quote": bound},
                f"notional {notional:.2f} reached the limit {bound:.2f}",
            )
        return None


@dataclass(frozen=True, slots=True)
class DrawdownParams:
    """Drawdown from the session's **peak** equity (not from its start).

    ``drawdown = peak − equity`` (quote currency) and ``drawdown_frac = drawdown / peak``; trips when either
    reaches its bound. Set a bound to ``inf`` to switch it off (at least one must be finite).

    Attributes
    ----------
    max_drawdown_frac : float
        In (0, 1]; default 0.05 (5 % of peak equity).
    max_drawdown_quote : float
        > 0, quote currency; default ``inf`` (off).
    action : RuleAction
        Default ``halt``.
    """

    max_drawdown_frac: float = 0.05
    max_drawdown_quote: float = math.inf
    action: RuleAction = RuleAction.HALT

    def validate(self) -> None:
        if self.max_drawdown_frac != math.inf:
            fraction("max_drawdown_frac", self.max_drawdown_frac, "DrawdownParams", open_low=True, closed_high=True)
        if self.max_drawdown_quote != math.inf:
            positive("max_drawdown_quote", self.max_drawdown_quote, "DrawdownParams")
        if self.max_drawdown_frac == math.inf and self.max_drawdown_quote == math.inf:
            raise ValueError("max_drawdown_frac and max_drawdown_quote are both inf: at least one must be finite")
        _require_action(self.action)


class DrawdownRule(_Rule):
    kind = "drawdown"
    __slots__ = ()
    params: DrawdownParams

    def __init__(self, params: DrawdownParams | None = None, name: str | None = None) -> None:
        super().__init__(params or DrawdownParams(), name)

    def evaluate(self, state: RiskState) -> RuleTrip | None:
        equity, peak = state.equity, state.peak_equity
        if not _finite(equity):
            return self._unknown(state, "equity", equity)
        if not _finite(peak):
            return self._unknown(state, "peak_equity", peak)
        peak = max(peak, equity)
        dd = peak - equity
        p = self.params
        frac = dd / peak if peak > 0 else math.inf
        hit_quote = dd >= p.max_drawdown_quote
        hit_frac = p.max_drawdown_frac != math.inf and frac >= p.max_drawdown_frac
        if hit_quote or hit_frac:
            which = "fraction" if hit_frac else "amount"
            return self._trip(
                state,
                {
                    "equity": equity,
                    "peak_equity": peak,
                    "drawdown_quote": dd,
                    "drawdown_frac": frac,
                    "max_drawdown_quote": p.max_drawdown_quote,
                    "max_drawdown_frac": p.max_drawdown_frac,
                },
                f"drawdown {dd:.2f} ({frac:.2%}) from peak equity {peak:.2f} reached the {which} bound",
            )
        return None


@dataclass(frozen=True, slots=True)
class WindowLossParams:
    """Loss over a rolling window (see :class:`RollingLoss` for the definition).

    Attributes
    ----------
    window_s : float
        W > 0, seconds; default 300 (5 min). The state must carry ``window_losses[window_s]``.
    max_loss_quote : float
        > 0, quote currency: trips when the window loss ``>= max_loss_quote``. Default 500 (placeholder).
    action : RuleAction
        Default ``halt``.
    """

    window_s: float = 300.0
    max_loss_quote: float = 500.0
    action: RuleAction = RuleAction.HALT

    def validate(self) -> None:
        positive("window_s", self.window_s, "WindowLossParams")
        positive("max_loss_quote", self.max_loss_quote, "WindowLossParams")
        _require_action(self.action)


class WindowLossRule(_Rule):
    kind = "window_loss"
    __slots__ = ()
    params: WindowLossParams

    def __init__(self, params: WindowLossParams | None = None, name: str | None = None) -> None:
        super().__init__(params or WindowLossParams(), name)

    def evaluate(self, state: RiskState) -> RuleTrip | None:
        p = self.params
        loss = state.window_losses.get(p.window_s, math.nan)
        if not _finite(loss):
            return self._unknown(state, f"window_losses[{p.window_s:g}]", loss)
        if loss >= p.max_loss_quote:
            return self._trip(
                state,
                {"window_s": p.window_s, "loss_quote": loss, "max_loss_quote": p.max_loss_quote},
                f"lost {loss:.2f} within {p.window_s:g} s (limit {p.max_loss_quote:.2f})",
            )
        return None


@dataclass(frozen=True, slots=True)
class StaleFeedParams:
    """Stale market data, per feed.

    ``age = ts_ns − feed_last_ts_ns[feed]``; trips when ``age >= max_age_s`` for any checked feed.

    Attributes
    ----------
    max_age_s : float
        > 0, seconds; default 2.0. Converted once to ns (rounded) for an exact integer comparison.
    feeds : tuple[str, ...]
        Feeds that must be fresh; a named feed never seen trips (infinitely old). Default ``()`` = every feed
        present in the state, and an empty state trips ("no market data").
    action : RuleAction
        Default ``pull_quotes``: not latched, quoting resumes once data flows (after the feed resyncs).
    """

    max_age_s: float = 2.0
    feeds: tuple[str, ...] = ()
    action: RuleAction = RuleAction.PULL_QUOTES

    def validate(self) -> None:
        positive("max_age_s", self.max_age_s, "StaleFeedParams")
        _require_names("feeds", self.feeds, allow_empty=True)
        _require_action(self.action)


class StaleFeedRule(_Rule):
    kind = "stale_feed"
    __slots__ = ("max_age_ns",)
    params: StaleFeedParams

    def __init__(self, params: StaleFeedParams | None = None, name: str | None = None) -> None:
        super().__init__(params or StaleFeedParams(), name)
        self.max_age_ns = round(self.params.max_age_s * NS_PER_S)

    def evaluate(self, state: RiskState) -> RuleTrip | None:
        last = state.feed_last_ts_ns
        feeds: Iterable[str] = self.params.feeds or last.keys()
        if not last and not self.params.feeds:
            return self._trip(
                state, {"max_age_s": self.params.max_age_s, "feeds_seen": 0}, "no market data from any feed"
            )
        now = state.ts_ns
        stale: dict[str, float | int | str | bool] = {}
        names: list[str] = []
        for feed in feeds:
            ts = last.get(feed)
            age_ns = now - ts if ts is not None else None
            if age_ns is None or age_ns >= self.max_age_ns:
                stale[f"age_s[{feed}]"] = math.inf if age_ns is None else age_ns / NS_PER_S
                names.append(feed if age_ns is not None else f"{feed} (never seen)")
        if stale:
            stale["max_age_s"] = self.params.max_age_s
            listing = ", ".join(names)
            return self._trip(state, stale, f"stale market data (>= {self.params.max_age_s:g} s): {listing}")
        return None


@dataclass(frozen=True, slots=True)
class CrossedBookParams:
    """Crossed (bid > ask) or locked (bid == ask) top of book; no numeric bound.

    Attributes
    ----------
    action : RuleAction
        Default ``pull_quotes``: the book is wrong (missed update, bad merge) until a resync fixes it.
    """

    action: RuleAction = RuleAction.PULL_QUOTES

    def validate(self) -> None:
        _require_action(self.action)


class CrossedBookRule(_Rule):
    kind = "crossed_book"
    __slots__ = ()
    params: CrossedBookParams

    def __init__(self, params: CrossedBookParams | None = None, name: str | None = None) -> None:
        super().__init__(params or CrossedBookParams(), name)

    def evaluate(self, state: RiskState) -> RuleTrip | None:
        bid, ask = state.best_bid, state.best_ask
        if not (_finite(bid) and bid > 0):
            return self._unknown(state, "best_bid", bid)
        if not (_finite(ask) and ask > 0):
            return self._unknown(state, "best_ask", ask)
        if bid >= ask:
            what = "locked" if bid == ask else "crossed"
            return self._trip(state, {"best_bid": bid, "best_ask": ask}, f"{what} book: bid {bid} >= ask {ask}")
        return None


@dataclass(frozen=True, slots=True)
class ClockSkewParams:
    """Clock skew between local and exchange time.

    Trips when ``|clock_skew_ns| >= max_abs_skew_ms`` (after conversion to ns). The skew estimate includes
    one-way network latency, so the bound must sit well above the normal latency.

    Attributes
    ----------
    max_abs_skew_ms : float
        > 0, milliseconds; default 1000.
    action : RuleAction
        Default ``pull_quotes``: staleness and latency measurements are unreliable.
    """

    max_abs_skew_ms: float = 1000.0
    action: RuleAction = RuleAction.PULL_QUOTES

    def validate(self) -> None:
        positive("max_abs_skew_ms", self.max_abs_skew_ms, "ClockSkewParams")
        _require_action(self.action)


class ClockSkewRule(_Rule):
    kind = "clock_skew"
    __slots__ = ("max_abs_skew_ns",)
    params: ClockSkewParams

    def __init__(self, params: ClockSkewParams | None = None, name: str | None = None) -> None:
        super().__init__(params or ClockSkewParams(), name)
        self.max_abs_skew_ns = round(self.params.max_abs_skew_ms * NS_PER_MS)

    def evaluate(self, state: RiskState) -> RuleTrip | None:
        skew = state.clock_skew_ns
        if not _finite(skew):
            return self._unknown(state, "clock_skew_ns", skew)
        if abs(skew) >= self.max_abs_skew_ns:  # type: ignore[arg-type]
            return self._trip(
                state,
                {"clock_skew_ms": skew / NS_PER_MS, "max_abs_skew_ms": self.params.max_abs_skew_ms},  # type: ignore[operator]
                f"local-exchange clock skew {skew / NS_PER_MS:.1f} ms reached "  # type: ignore[operator]
                f"{self.params.max_abs_skew_ms:g} ms",
            )
        return None


@dataclass(frozen=True, slots=True)
class EstimatorStateParams:
    """Estimators in a bad state.

    Attributes
    ----------
    estimators : tuple[str, ...]
        Names that matter (non-empty); default ``("kappa", "sigma")``. One not reported in the state trips.
    bad_states : tuple[str, ...]
        States that trip; default ``("failed", "stale")``. ``warming`` is left out by default because the
        quoter already refuses to quote on a warming estimator and start-up would otherwise always trip.
    action : RuleAction
        Default ``pull_quotes``.
    """

    estimators: tuple[str, ...] = ("kappa", "sigma")
    bad_states: tuple[str, ...] = ("failed", "stale")
    action: RuleAction = RuleAction.PULL_QUOTES

    def validate(self) -> None:
        _require_names("estimators", self.estimators, allow_empty=False)
        _require_names("bad_states", self.bad_states, allow_empty=False)
        allowed = {"ok", "warming", "stale", "failed"}
        for s in self.bad_states:
            if s not in allowed:
                raise ValueError(f"bad_states must be among {sorted(allowed)}, got {s!r}")
        _require_action(self.action)


class EstimatorStateRule(_Rule):
    kind = "estimator_state"
    __slots__ = ("_bad",)
    params: EstimatorStateParams

    def __init__(self, params: EstimatorStateParams | None = None, name: str | None = None) -> None:
        super().__init__(params or EstimatorStateParams(), name)
        self._bad = frozenset(self.params.bad_states)

    def evaluate(self, state: RiskState) -> RuleTrip | None:
        states = state.estimator_states
        bad: dict[str, float | int | str | bool] = {}
        for name in self.params.estimators:
            s = states.get(name)
            if s is None:
                bad[name] = "missing"
            elif s in self._bad:
                bad[name] = str(s)  # EstimatorState is a StrEnum; str() keeps the plain value
        if bad:
            listing = ", ".join(f"{k}={v}" for k, v in bad.items())
            return self._trip(state, bad, f"estimators not usable: {listing}")
        return None


def _rate_params_validate(p: object, count_field: str) -> None:
    positive("window_s", p.window_s, type(p).__name__)  # type: ignore[attr-defined]
    value = getattr(p, count_field)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{count_field} must be an int >= 1, got {value!r}")
    _require_action(p.action)  # type: ignore[attr-defined]


@dataclass(frozen=True, slots=True)
class RejectRateParams:
    """Reject ratio over a rolling window: ``rejected / sent``.

    Trips when ``sent >= min_orders`` and ``rejected / sent >= max_reject_ratio``; below ``min_orders`` the
    ratio is too noisy to act on and the rule does not trip (documented, not silent: it is a sample-size
    rule). Post-only rejects in fast markets are normal, hence the generous default.

    Attributes
    ----------
    window_s : float
        > 0, seconds; default 60. The state must carry ``order_flow[window_s]``.
    max_reject_ratio : float
        In (0, 1]; default 0.5.
    min_orders : int
        >= 1; default 10.
    action : RuleAction
        Default ``pull_quotes``.
    """

    window_s: float = 60.0
    max_reject_ratio: float = 0.5
    min_orders: int = 10
    action: RuleAction = RuleAction.PULL_QUOTES

    def validate(self) -> None:
        _rate_params_validate(self, "min_orders")
        fraction("max_reject_ratio", self.max_reject_ratio, "RejectRateParams", open_low=True, closed_high=True)


class _FlowRule(_Rule):
    __slots__ = ()

    def _counts(self, state: RiskState) -> OrderFlowCounts | None:
        return state.order_flow.get(self.params.window_s)  # type: ignore[attr-defined]


class RejectRateRule(_FlowRule):
    kind = "reject_rate"
    __slots__ = ()
    params: RejectRateParams

    def __init__(self, params: RejectRateParams | None = None, name: str | None = None) -> None:
        super().__init__(params or RejectRateParams(), name)

    def evaluate(self, state: RiskState) -> RuleTrip | None:
        p = self.params
        c = self._counts(state)
        if c is None:
            return self._unknown(state, f"order_flow[{p.window_s:g}]", None)
        if c.sent < p.min_orders:
            return None
        ratio = c.rejected / c.sent
        if ratio >= p.max_reject_ratio:
            return self._trip(
                state,
                {
                    "window_s": p.window_s,
                    "sent": c.sent,
                    "rejected": c.rejected,
                    "reject_ratio": ratio,
                    "max_reject_ratio": p.max_reject_ratio,
                },
                f"{c.rejected} of {c.sent} orders rejected in {p.window_s:g} s (ratio {ratio:.2f})",
            )
        return None


@dataclass(frozen=True, slots=True)
class CancelRateParams:
    """Cancel requests per rolling window.

    Attributes
    ----------
    window_s : float
        > 0, seconds; default 10.
    max_cancels : int
        >= 1, cancels in the window; trips at ``cancelled >= max_cancels``. Default 250.
    action : RuleAction
        Default ``pull_quotes``.
    """

    window_s: float = 10.0
    max_cancels: int = 250
    action: RuleAction = RuleAction.PULL_QUOTES

    def validate(self) -> None:
        _rate_params_validate(self, "max_cancels")


class CancelRateRule(_FlowRule):
    kind = "cancel_rate"
    __slots__ = ()
    params: CancelRateParams

    def __init__(self, params: CancelRateParams | None = None, name: str | None = None) -> None:
        super().__init__(params or CancelRateParams(), name)

    def evaluate(self, state: RiskState) -> RuleTrip | None:
        p = self.params
        c = self._counts(state)
        if c is None:
            return self._unknown(state, f"order_flow[{p.window_s:g}]", None)
        if c.cancelled >= p.max_cancels:
            return self._trip(
                state,
                {
                    "window_s": p.window_s,
                    "cancelled": c.cancelled,
                    "cancels_per_s": c.cancelled / p.window_s,
                    "max_cancels": p.max_cancels,
                },
                f"{c.cancelled} cancels in {p.window_s:g} s reached the limit {p.max_cancels}",
            )
        return None


@dataclass(frozen=True, slots=True)
class MessageRateParams:
    """Venue messages (every request) per rolling window, to stay under the venue's rate limit.

    Attributes
    ----------
    window_s : float
        > 0, seconds; default 10.
    max_messages : int
        >= 1, messages in the window; trips at ``messages >= max_messages``. Default 250 (below e.g. a
        300-orders-per-10-s venue limit, leaving room for cancels when pulling quotes).
    action : RuleAction
        Default ``pull_quotes``.
    """

    window_s: float = 10.0
    max_messages: int = 250
    action: RuleAction = RuleAction.PULL_QUOTES

    def validate(self) -> None:
        _rate_params_validate(self, "max_messages")


class MessageRateRule(_FlowRule):
    kind = "message_rate"
    __slots__ = ()
    params: MessageRateParams

    def __init__(self, params: MessageRateParams | None = None, name: str | None = None) -> None:
        super().__init__(params or MessageRateParams(), name)

    def evaluate(self, state: RiskState) -> RuleTrip | None:
        p = self.params
        c = self._counts(state)
        if c is None:
            return self._unknown(state, f"order_flow[{p.window_s:g}]", None)
        if c.messages >= p.max_messages:
            return self._trip(
                state,
                {
                    "window_s": p.window_s,
                    "messages": c.messages,
                    "messages_per_s": c.messages / p.window_s,
                    "max_messages": p.max_messages,
                },
                f"{c.messages} messages in {p.window_s:g} s reached the limit {p.max_messages}",
            )
        return None


def isolated_liquidation_price(entry_price: float, position: float, leverage: float, maint_margin_rate: float) -> float:
    """Liquidation price of an isolated-margin linear perpetual position, quote currency.

    Model: the position of ``q`` base units opened at ``P_e`` posts initial margin ``|q|·P_e/L``. At mark
    ``P`` its margin is ``|q|·P_e/L + q·(P − P_e)`` and its maintenance requirement ``m·|q|·P``. Liquidation
    is where the two are equal:

        long  (q > 0):  P_liq = P_e · (1 − 1/L) / (1 − m)
        short (q < 0):  P_liq = P_e · (1 + 1/L) / (1 + m)

    Ignores fees, funding, margin added after entry and tiered "maintenance amount" deductions (venues
    such as Binance subtract a per-tier constant), so the venue's price may differ slightly; the rule's
    distance bound should leave room for that. Independent of ``|q|``; ``q = 0`` has none (NaN).

    Parameters
    ----------
    entry_price : float
        P_e > 0, quote currency.
    position : float
        q, base units; only its sign matters.
    leverage : float
        L >= 1.
    maint_margin_rate : float
        m in [0, 1).

    Examples
    --------
    >>> isolated_liquidation_price(100.0, 1.0, 10.0, 0.0)
    90.0
    >>> round(isolated_liquidation_price(100.0, -1.0, 10.0, 0.0), 10)
    110.0
    """
    if position > 0:
        return entry_price * (1.0 - 1.0 / leverage) / (1.0 - maint_margin_rate)
    if position < 0:
        return entry_price * (1.0 + 1.0 / leverage) / (1.0 + maint_margin_rate)
    return math.nan


@dataclass(frozen=True, slots=True)
class MarginParams:
    """Margin use and distance to liquidation for isolated-margin linear perpetuals.

    ``margin_use = (|q|·mark/L) / (W + q·(mark − P_e))``: the initial margin the position needs at the
    current mark as a fraction of the margin balance (wallet ``W`` plus unrealised P&L); ``inf`` when the
    balance is not positive. ``liq_distance_frac`` is the adverse move from mark to the liquidation price
    (:func:`isolated_liquidation_price`) as a fraction of mark: ``(mark − P_liq)/mark`` for a long,
    ``(P_liq − mark)/mark`` for a short; negative means past it.

    Attributes
    ----------
    max_margin_use : float
        In (0, 1]; trips at ``margin_use >= max_margin_use``. Default 0.5.
    min_liq_distance_frac : float
        In (0, 1); trips at ``liq_distance_frac <= min_liq_distance_frac``. Default 0.05 (a 5 % move).
    action : RuleAction
        Default ``reduce``: reducing the position is the cure (halting would block it).
    """

    max_margin_use: float = 0.5
    min_liq_distance_frac: float = 0.05
    action: RuleAction = RuleAction.REDUCE

    def validate(self) -> None:
        fraction("max_margin_use", self.max_margin_use, "MarginParams", open_low=True, closed_high=True)
        fraction("min_liq_distance_frac", self.min_liq_distance_frac, "MarginParams", open_low=True, closed_high=False)
        _require_action(self.action)


class MarginRule(_Rule):
    """Not applicable (returns ``None``) when ``state.leverage is None`` (spot) or the position is flat."""

    kind = "margin"
    __slots__ = ()
    params: MarginParams

    def __init__(self, params: MarginParams | None = None, name: str | None = None) -> None:
        super().__init__(params or MarginParams(), name)

    def evaluate(self, state: RiskState) -> RuleTrip | None:
        lev = state.leverage
        q = state.position
        if lev is None:
            return None
        if not _finite(q):
            return self._unknown(state, "position", q)
        if q == 0:
            return None
        if not (_finite(lev) and lev >= 1):
            return self._unknown(state, "leverage", lev)
        m, entry, wallet, mark = state.maint_margin_rate, state.entry_price, state.wallet_balance, state.mid
        if not (_finite(m) and 0 <= m < 1):
            return self._unknown(state, "maint_margin_rate", m)
        if not (_finite(entry) and entry > 0):
            return self._unknown(state, "entry_price", entry)
        if not _finite(wallet):
            return self._unknown(state, "wallet_balance", wallet)
        if not (_finite(mark) and mark > 0):
            return self._unknown(state, "mid", mark)
        balance = wallet + q * (mark - entry)
        margin_use = (abs(q) * mark / lev) / balance if balance > 0 else math.inf
        liq = isolated_liquidation_price(entry, q, lev, m)
        dist = (mark - liq) / mark if q > 0 else (liq - mark) / mark
        p = self.params
        hit_use = margin_use >= p.max_margin_use
        hit_liq = dist <= p.min_liq_distance_frac
        if hit_use or hit_liq:
            parts = []
            if hit_use:
                parts.append(f"margin use {margin_use:.2%} reached {p.max_margin_use:.2%}")
            if hit_liq:
                parts.append(f"liquidation at {liq:.6g} is {dist:.2%} away (min {p.min_liq_distance_frac:.2%})")
            return self._trip(
                state,
                {
                    "position": q,
                    "mark": mark,
                    "entry_price": entry,
                    "leverage": lev,
                    "maint_margin_rate": m,
                    "wallet_balance": wallet,
                    "margin_balance": balance,
                    "margin_use": margin_use,
                    "max_margin_use": p.max_margin_use,
                    "liquidation_price": liq,
                    "liq_distance_frac": dist,
                    "min_liq_distance_frac": p.min_liq_distance_frac,
                },
                "; ".join(parts),
            )
        return None


@dataclass(frozen=True, slots=True)
class SkewAlarmParams:
    """The skew-magnitude alarm (seed 003, P0): a meaningful position that barely moves the quotes means γ,
    σ or T is mis-scaled (the "skew_bps = 0.00" failure).

    Attributes
    ----------
    min_position_ratio : float
        In (0, 1]; the alarm needs ``|q| > min_position_ratio · Q_max``. Default 0.10.
    min_skew_bps : float
        > 0, basis points of mid; the alarm needs ``|skew| < min_skew_bps``. Default 1.0.
    action : RuleAction
        Default ``warn``: a diagnostic, the operator decides.
    """

    min_position_ratio: float = 0.10
    min_skew_bps: float = 1.0
    action: RuleAction = RuleAction.WARN

    def validate(self) -> None:
        fraction("min_position_ratio", self.min_position_ratio, "SkewAlarmParams", open_low=True, closed_high=True)
        positive("min_skew_bps", self.min_skew_bps, "SkewAlarmParams")
        _require_action(self.action)


_DEFAULT_SKEW_ALARM = SkewAlarmParams()  # frozen: one instance serves every call without params


def skew_magnitude_alarm(
    position: float, max_position: float, skew_frac: float, params: SkewAlarmParams | None = None
) -> bool:
    """The quoter's flag: ``|q| > ratio·Q_max`` **and** ``|skew| < min_skew_bps`` (skew as a fraction of mid).

    Both comparisons are strict as the seed states them ("position > 10 % of max but |skew| < 1 bps"): at
    exactly 10 % of Q_max or exactly 1 bp there is no alarm. A non-finite skew with a meaningful position
    raises the alarm (an unknown skew is not a sufficient one).
    """
    p = params or _DEFAULT_SKEW_ALARM
    if not abs(position) > p.min_position_ratio * max_position:
        return False
    if not math.isfinite(skew_frac):
        return True
    return abs(skew_frac) * 1e4 < p.min_skew_bps


class SkewAlarmRule(_Rule):
    """Trips while :func:`skew_magnitude_alarm` holds for the state's position, Q_max and model skew under this
    rule's own params (two skew alarms with different bounds trip apart)."""

    kind = "skew_alarm"
    __slots__ = ()
    params: SkewAlarmParams

    def __init__(self, params: SkewAlarmParams | None = None, name: str | None = None) -> None:
        super().__init__(params or SkewAlarmParams(), name)

    def evaluate(self, state: RiskState) -> RuleTrip | None:
        p = self.params
        if skew_magnitude_alarm(state.position, state.max_inventory, state.skew_frac, p):
            return self._trip(
                state,
                {
                    "skew_alarm": True,
                    "position": state.position,
                    "min_position_ratio": p.min_position_ratio,
                    "min_skew_bps": p.min_skew_bps,
                },
                _skew_alarm_message(state.position, p.min_position_ratio, p.min_skew_bps),
            )
        return None


def _skew_alarm_message(position: float, min_position_ratio: float, min_skew_bps: float) -> str:
    """The skew alarm's sentence, a function of its three arguments only: one formatter for this rule and the
    compiled risk evaluation (``apps/engine/risk/_session.pyx``), which builds the same trip without a
    :class:`RiskState` and reuses a sentence while the three stay the same."""
    return (
        f"position {position:g} is above {min_position_ratio:.0%} of the limit but the inventory "
        f"skew is under {min_skew_bps:g} bps: gamma, sigma or horizon is mis-scaled"
    )


# --- the engine ---------------------------------------------------------------------------------------------


class RiskEngine:
    """Runs every configured rule and returns every trip.

    ``evaluate(state)`` costs one call per rule (see the module docstring); rules are independent, so order
    only affects the order of the returned list (configuration order). Rule names must be unique.
    ``loss_windows_s`` and ``order_flow_windows_s`` tell the loop which :class:`RollingLoss` and
    :class:`OrderFlowWindow` helpers to keep so that every rule finds its window in the state.
    """

    __slots__ = ("rules",)

    def __init__(self, rules: Sequence[RiskRule]) -> None:
        names = [r.name for r in rules]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"rule names must be unique, duplicated: {dupes}")
        self.rules: tuple[RiskRule, ...] = tuple(rules)

    @classmethod
    def default(cls) -> RiskEngine:
        """One of each rule with default params (placeholders for the asset-specific limits)."""
        return cls(
            [
                PositionLimitRule(),
                NotionalLimitRule(),
                DrawdownRule(),
                WindowLossRule(),
                StaleFeedRule(),
                CrossedBookRule(),
                ClockSkewRule(),
                EstimatorStateRule(),
                RejectRateRule(),
                CancelRateRule(),
                MessageRateRule(),
                MarginRule(),
                SkewAlarmRule(),
            ]
        )

    @property
    def loss_windows_s(self) -> tuple[float, ...]:
        return tuple(sorted({r.params.window_s for r in self.rules if isinstance(r, WindowLossRule)}))

    @property
    def order_flow_windows_s(self) -> tuple[float, ...]:
        return tuple(sorted({r.params.window_s for r in self.rules if isinstance(r, _FlowRule)}))  # type: ignore[attr-defined]

    def evaluate(self, state: RiskState) -> list[RuleTrip]:
        trips = []
        for rule in self.rules:
            trip = rule.evaluate(state)
            if trip is not None:
                trips.append(trip)
        return trips


class TripEdges:
    """Turns level-triggered trips into edges, so each episode is recorded once.

    ``update(trips)`` returns ``(started, cleared)``: trips of rules that were not tripping on the previous
    call (or whose action or cause changed), and names of rules that were tripping and no longer are.
    """

    __slots__ = ("_active",)

    def __init__(self) -> None:
        self._active: dict[str, tuple[RuleAction, str]] = {}

    @property
    def active(self) -> Mapping[str, tuple[RuleAction, str]]:
        return dict(self._active)

    def update(self, trips: Iterable[RuleTrip]) -> tuple[list[RuleTrip], list[str]]:
        now: dict[str, tuple[RuleAction, str]] = {}
        started: list[RuleTrip] = []
        for t in trips:
            key = (t.action, t.cause)
            now[t.rule] = key
            if self._active.get(t.rule) != key:
                started.append(t)
        cleared = [name for name in self._active if name not in now]
        self._active = now
        return started, cleared
