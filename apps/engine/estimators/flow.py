"""Order-flow signals from the trade tape: aggressor imbalance and the trade arrival rate λ.

Both use exponential decay in time with a half-life ``half_life_s``: an observation ``t`` seconds old
has weight ``2^(−t / half_life_s)`` = ``e^{−t/τ}`` with ``τ = half_life_s / ln 2``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from scipy import special

from apps.engine import compiled
from apps.engine.estimators.base import EstimatorSnapshot, EstimatorState
from apps.engine.validation import fraction, non_negative, positive

_NS_PER_S = 1_000_000_000


def _z(ci_level: float) -> float:
    return float(special.ndtri(0.5 + 0.5 * ci_level))


# --------------------------------------------------------------------------------------------------
# Flow imbalance
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FlowParams:
    """Parameters of :class:`FlowImbalance`.

    Attributes
    ----------
    half_life_s : float
        Half-life of the exponential decay, seconds.
    min_volume : float
        Decayed base volume needed before the imbalance is reported (WARMING below).
    stale_after_s : float
        Seconds without a trade after which the signal is STALE.
    ci_level : float
        Coverage of the reported interval.
    """

    half_life_s: float = 10.0
    min_volume: float = 1.0
    stale_after_s: float = 30.0
    ci_level: float = 0.95

    def validate(self) -> FlowParams:
        positive("half_life_s", self.half_life_s, "FlowParams")
        non_negative("min_volume", self.min_volume, "FlowParams")
        positive("stale_after_s", self.stale_after_s, "FlowParams")
        fraction("ci_level", self.ci_level, "FlowParams", open_low=True, closed_high=False)
        return self


class PyFlowImbalance:
    """Volume-weighted aggressor imbalance ``I = (B − S) / (B + S)`` in [−1, 1], decayed in time.

    ``B``, ``S`` are the exponentially decayed base volumes of buy- and sell-aggressor trades. +1 means all
    recent volume lifted the ask. Uncertainty: treating each trade's sign as an independent draw with mean
    I, the weighted mean of signs has ``sd = √(1 − I²) · √(Σw²) / Σw`` (Σw² decays at twice the rate);
    ``n_eff = (Σw)²/Σw²`` is in ``detail``. Assumption: signs are independent (order splitting makes them
    autocorrelated, so the sd is a lower bound).
    """

    name = "flow_imbalance"

    def __init__(self, params: FlowParams | None = None) -> None:
        self.params = (params or FlowParams()).validate()
        self._tau_s = self.params.half_life_s / math.log(2.0)
        self._buy = 0.0
        self._sell = 0.0
        self._w2 = 0.0  # Σw², decays at rate 2/τ
        self._t_ns: int | None = None
        self._last_input_ns = 0

    def _decayed(self, now_ns: int) -> tuple[float, float, float]:
        if self._t_ns is None:
            return 0.0, 0.0, 0.0
        dt = max(now_ns - self._t_ns, 0) / _NS_PER_S
        f = math.exp(-dt / self._tau_s)
        return self._buy * f, self._sell * f, self._w2 * f * f

    def update(self, ts_ns: int, size: float, aggressor: int) -> None:
        """Add a trade of ``size`` base units; ``aggressor`` is +1 (buy, lifted the ask) or −1 (sell)."""
        positive("size", size, "FlowImbalance.update")
        if int(aggressor) not in (1, -1):
            raise ValueError(f"aggressor must be +1 or -1, got {aggressor!r}")
        self.update_trusted(ts_ns, size, int(aggressor))

    def update_trusted(self, ts_ns: int, size: float, aggressor: int) -> None:
        """:meth:`update` without the input checks (``aggressor`` an int ±1), for callers that feed
        validated trade events (:class:`~apps.engine.estimators.market.MarketEstimators`)."""
        t = self._t_ns
        if t is None:
            t = ts_ns
        elif ts_ns > t:
            f = math.exp(-(ts_ns - t) / _NS_PER_S / self._tau_s)
            self._buy *= f
            self._sell *= f
            self._w2 = self._w2 * f * f
            t = ts_ns
        if aggressor == 1:
            self._buy += size
        else:
            self._sell += size
        self._w2 += size * size
        self._t_ns = t
        if ts_ns > self._last_input_ns:
            self._last_input_ns = ts_ns

    def snapshot(self, now_ns: int) -> EstimatorSnapshot:
        """Read the imbalance at ``now_ns`` (dimensionless, [−1, 1])."""
        p = self.params
        buy, sell, w2 = self._decayed(now_ns)
        total = buy + sell
        value = std = lo = hi = math.nan
        if total > 0:
            value = (buy - sell) / total
            std = math.sqrt(max(1.0 - value * value, 0.0) * w2) / total
            z = _z(p.ci_level)
            lo, hi = max(value - z * std, -1.0), min(value + z * std, 1.0)
        detail = {
            "buy_volume": buy,
            "sell_volume": sell,
            "n_eff": total * total / w2 if w2 > 0 else 0.0,
            "half_life_s": p.half_life_s,
        }
        if self._t_ns is None:
            state, msg = EstimatorState.WARMING, "no trades yet"
        elif (now_ns - self._last_input_ns) / _NS_PER_S > p.stale_after_s:
            state, msg = EstimatorState.STALE, f"no trade for more than {p.stale_after_s:g} s"
        elif total < p.min_volume or total <= 0:
            state, msg = EstimatorState.WARMING, f"decayed volume {total:g} below min_volume {p.min_volume:g}"
        else:
            state, msg = EstimatorState.OK, ""
        return EstimatorSnapshot(self.name, value, std, state, self._last_input_ns, lo, hi, detail, msg)


# --------------------------------------------------------------------------------------------------
# Trade arrival rate
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ArrivalParams:
    """Parameters of :class:`TradeArrivalRate`.

    A "trade" here is one event fed to :meth:`TradeArrivalRate.update`. ``MarketEstimators`` (``market.py``) feeds one
    per taker order (its first print), since GLFT's A counts orders: ``min_trades`` and ``lambda_max`` are then in
    orders.

    Attributes
    ----------
    half_life_s : float
        Half-life of the exponential decay, seconds.
    min_trades : float
        Trades needed since the start before λ is reported (WARMING below). A cold-start rule only: once reached,
        a quiet market's low decayed count is a low rate, reported as OK with its (wide) interval. Stopping there
        would idle the quotes through every lull of a slow market (a full LOBSTER AMZN day: 32 % of the time with
        a decayed-count rule), and a small λ already widens GLFT's quotes (c2 ∝ 1/√A).
    stale_after_s : float
        Seconds without input after which λ is STALE. Quiet periods lower λ by themselves (the estimate
        decays to ``now``); staleness means the feed, not the market, may be silent.
    lambda_max : float
        Plausible upper bound of λ, trades per second; above it the state is FAILED.
    ci_level : float
        Coverage of the reported interval.
    """

    half_life_s: float = 30.0
    min_trades: float = 10.0
    stale_after_s: float = 60.0
    lambda_max: float = 10_000.0
    ci_level: float = 0.95

    def validate(self) -> ArrivalParams:
        positive("half_life_s", self.half_life_s, "ArrivalParams")
        non_negative("min_trades", self.min_trades, "ArrivalParams")
        positive("stale_after_s", self.stale_after_s, "ArrivalParams")
        positive("lambda_max", self.lambda_max, "ArrivalParams")
        fraction("ci_level", self.ci_level, "ArrivalParams", open_low=True, closed_high=False)
        return self


class PyTradeArrivalRate:
    """λ, the rate of trades per second, as an exponentially weighted count.

    With decayed count ``N(t) = Σ e^{−(t−t_i)/τ}`` and the exposure ``E(t) = τ (1 − e^{−(t−t_0)/τ})``
    (the integral of the weights since the first observation ``t_0``), ``λ̂ = N/E`` is unbiased for a
    Poisson process of constant rate, including the cold start. Poisson std: ``Var(N) = λ Σ w²``-type
    integral ``λ·(τ/2)(1 − e^{−2(t−t_0)/τ})``, so ``sd(λ̂) = √(λ̂ · (τ/2)(1 − e^{−2(t−t_0)/τ})) / E``.
    λ decays when no trades come (it is read at ``now``). Assumption: locally Poisson arrivals (trade
    clustering makes the sd a lower bound). ``update`` may be given ``count`` > 1 for a batch at one time.
    """

    name = "trade_rate"

    def __init__(self, params: ArrivalParams | None = None) -> None:
        self.params = (params or ArrivalParams()).validate()
        self._tau_s = self.params.half_life_s / math.log(2.0)
        self._count = 0.0
        self._trades = 0  # since the start, undecayed: the cold-start rule
        self._t_ns: int | None = None
        self._start_ns: int | None = None
        self._last_input_ns = 0

    def start(self, ts_ns: int) -> None:
        """Start the exposure clock without a trade (e.g. at session start), so quiet time counts."""
        if self._start_ns is None:
            self._start_ns = ts_ns
            self._t_ns = ts_ns
            self._last_input_ns = max(self._last_input_ns, ts_ns)

    def update(self, ts_ns: int, count: int = 1) -> None:
        """Record ``count`` trades at ``ts_ns``."""
        if not (isinstance(count, int) and count >= 1):
            raise ValueError(f"count must be a positive integer, got {count!r}")
        self.update_trusted(ts_ns, count)

    def update_trusted(self, ts_ns: int, count: int = 1) -> None:
        """:meth:`update` without the input check, for :class:`~apps.engine.estimators.market.MarketEstimators`."""
        if self._start_ns is None:
            self.start(ts_ns)
        self._trades += count
        t = self._t_ns
        if ts_ns > t:
            self._count = self._count * math.exp(-(ts_ns - t) / _NS_PER_S / self._tau_s) + count
            self._t_ns = ts_ns
        else:
            self._count += count
        if ts_ns > self._last_input_ns:
            self._last_input_ns = ts_ns

    def snapshot(self, now_ns: int) -> EstimatorSnapshot:
        """Read λ (trades per second) at ``now_ns``."""
        p = self.params
        tau = self._tau_s
        if self._start_ns is None:
            return EstimatorSnapshot(self.name, math.nan, math.nan, EstimatorState.WARMING, 0, message="no input yet")
        now = max(now_ns, self._t_ns)
        n = self._count * math.exp(-(now - self._t_ns) / _NS_PER_S / tau)
        age_s = (now - self._start_ns) / _NS_PER_S
        exposure = tau * -math.expm1(-age_s / tau)
        value = std = lo = hi = math.nan
        if exposure > 0:
            value = n / exposure
            var_n = value * 0.5 * tau * -math.expm1(-2.0 * age_s / tau)
            std = math.sqrt(max(var_n, 0.0)) / exposure
            z = _z(p.ci_level)
            lo, hi = max(value - z * std, 0.0), value + z * std
        detail = {
            "decayed_count": n,
            "trades": float(self._trades),
            "exposure_s": exposure,
            "half_life_s": p.half_life_s,
        }
        if (now_ns - self._last_input_ns) / _NS_PER_S > p.stale_after_s:
            state, msg = EstimatorState.STALE, f"no input for more than {p.stale_after_s:g} s"
        elif self._trades < p.min_trades:
            state, msg = (
                EstimatorState.WARMING,
                f"{self._trades} trades since the start, below min_trades {p.min_trades:g}",
            )
        elif not (math.isfinite(value) and value <= p.lambda_max):
            state, msg = EstimatorState.FAILED, f"rate {value:.4g}/s above lambda_max {p.lambda_max:g}/s"
        else:
            state, msg = EstimatorState.OK, ""
        return EstimatorSnapshot(self.name, value, std, state, self._last_input_ns, lo, hi, detail, msg)


# The compiled classes (apps/engine/estimators/_estimators.pyx, same API, same results) unless MM_PURE_PYTHON=1 is
# set or the module did not build (apps.engine.compiled, docs/compiled-core.md); the Py* classes stay the reference.
_compiled = compiled.load("apps.engine.estimators._estimators")
FlowImbalance: type[PyFlowImbalance] = _compiled.FlowImbalance if _compiled is not None else PyFlowImbalance
TradeArrivalRate: type[PyTradeArrivalRate] = _compiled.TradeArrivalRate if _compiled is not None else PyTradeArrivalRate
ESTIMATORS_COMPILED: bool = _compiled is not None
