"""All market estimators behind one event interface, with O(1) updates and rate-bounded expensive reads.

:class:`MarketEstimators` owns the L2 book and every estimator the quoter reads: κ (trade tape, Gamma
posterior), σ (volume clock, RV/BV), λ (trade arrival rate; also A, see below), taker-flow imbalance, a
Hawkes intensity of market trades (re-fitted by maximum likelihood at a bounded rate), the fill-cascade
flag for our own fills, the Kalman drift (inputs: trade flow, momentum, microprice) and the microprice
regression. The strategy core, the ``estimate`` command and the benchmark all use it, so the numbers an
operator sees from a recording are the numbers the quoter would have used.

Cost model (why the core can keep up with a feed)
-------------------------------------------------
Every ``on_event`` does O(1) work per estimator (plus the book diff's levels). Reads that integrate a
posterior or run a fit are *cached* and recomputed only when stale:

* κ snapshot (tick posterior on a 201-point grid + goodness of fit): at most every ``kappa_refresh_s``,
  or sooner once ``kappa_refresh_trades`` new trades arrived, but never twice within
  ``kappa_min_refresh_s``;
* σ, λ, flow and drift snapshots: every ``snapshot_refresh_s``;
* σ's window statistics (numpy over the closed buckets): once per closed bucket;
* Kalman drift observations (momentum, flow, microprice): one of each every ``drift_obs_interval_s``;
* κ goodness of fit (KS, power law; diagnostic only): every 10 s (``KappaParams.gof_interval_s``);
* Hawkes maximum-likelihood re-fit on the last ``hawkes_fit_trades`` taker-order times: every ``hawkes_refit_s``
  (a cold fit of 1000 trades ~35–130 ms, a warm-started re-fit ~10–30 ms, once per 5 minutes by default).

The refresh step. None of these runs inside the event that finds it due: the event only marks it, and
:meth:`MarketEstimators.refresh` does it *after* the event, stamped with that event's time (so it sees exactly
the data up to and including it). The engine driver calls the strategy core's ``refresh()`` once the event's
actions were sent, so a quoting event reads caches and never waits for a posterior grid, a bucket's statistics
or a fit; the next decision reads what the refresh computed. A caller that never runs the step gets the same
numbers: the next ``on_event`` (of the core or of these estimators) runs it first, with the same stamp. Until it
ran, reads see the estimates before that event (σ's statistics before the bucket that just closed).
:meth:`MarketEstimators.cached_snapshots` / :meth:`MarketEstimators.cached_depth_cost` are the decision's reads;
:meth:`MarketEstimators.snapshots` and the per-estimator getters still refresh what is due when called.

The age of each cached estimate is reported (``*_age_s`` in :meth:`MarketEstimators.ages`), and goes into
each decision's inputs, so "how old was the κ behind this quote" is answerable.

A and λ
-------
κ is measured on the depth *beyond the touch* (the tick model of :mod:`apps.engine.estimators.kappa`), so every trade
reaches depth 0 of that scale and ``A`` (the intensity at depth 0) is the trade arrival rate λ itself; the
``estimate`` report also gives the joint Poisson fit of ``λ(δ) = A·e^{−κδ}`` on the depth histogram
(:func:`~apps.engine.estimators.kappa.fit_intensity_curve`) as a cross-check.

Drift observations (each an unbiased reading of μ in 1/s, with its variance)
---------------------------------------------------------------------------
* momentum: ``ln(mid_t / mid_{t−L}) / L`` over ``momentum_lookback_s`` = L; its variance under the
  diffusion is ``σ_inv²/L`` (1/s²), computed from the measured σ, not a constant;
* trade_flow: ``flow_drift_per_s · I_flow`` (a prior slope: drift per unit taker imbalance), with the
  drift filter's documented ``obs_var_trade_flow``;
* microprice: learned offset / its horizon, only while the microprice regression is usable, with variance
  ``residual_var / horizon²``.
"""

from __future__ import annotations

import itertools
import math
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from apps.engine import compiled
from apps.engine.estimators.adverse import AdverseSelectionEstimator, AdverseSelectionParams
from apps.engine.estimators.base import EstimatorSnapshot, EstimatorState
from apps.engine.estimators.depth_markout import DepthCostCurve, DepthMarkoutCurve, DepthMarkoutParams
from apps.engine.estimators.drift import DriftParams, KalmanDrift
from apps.engine.estimators.flow import ArrivalParams, FlowImbalance, FlowParams, TradeArrivalRate
from apps.engine.estimators.hawkes import (
    FillCascade,
    HawkesIntensity,
    HawkesParams,
    fit_hawkes,
)
from apps.engine.estimators.kappa import KappaParams, TradeKappaEstimator, fit_intensity_curve
from apps.engine.estimators.microprice import MicropriceParams, MicropriceRegression
from apps.engine.estimators.sigma import SigmaEstimator, SigmaParams
from apps.engine.market.book import OrderBook
from apps.engine.market.events import (
    BestBidAsk,
    DepthSnapshot,
    DepthUpdate,
    EventError,
    Fill,
    Funding,
    MarkPrice,
    Side,
    Trade,
)

_NS = 1_000_000_000
_NEVER = 2**63 - 1  # a refresh time that never comes (int64 max: the compiled core compares it as a C integer)

# MarketStep (apps/engine/estimators/_estimators.pyx) runs _on_bbo's and _on_trade's bodies as one compiled call each
# when the estimators are the compiled classes; None when MM_PURE_PYTHON=1 or not built (see apps.engine.compiled).
_compiled = compiled.load("apps.engine.estimators._estimators")


def _pos(name: str, v: float, *, zero: bool = False) -> None:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or (v < 0 if zero else v <= 0):
        raise ValueError(
            f"EstimatorConfig.{name} must be a finite {'non-negative' if zero else 'positive'} number, got {v!r}"
        )


@dataclass(frozen=True, slots=True)
class EstimatorConfig:
    """Parameters of every estimator plus the refresh schedule (see the module docstring).

    Attributes
    ----------
    kappa, sigma, flow, arrival, drift, microprice, adverse, depth_markout : params of each estimator.
    hawkes_prior : HawkesParams
        Hawkes parameters used until the first successful fit (the intensity is WARMING until then).
    kappa_refresh_s, kappa_min_refresh_s : float
        Max / min seconds between κ snapshot recomputations.
    kappa_refresh_trades : int
        New trades that trigger a κ recomputation before ``kappa_refresh_s``.
    snapshot_refresh_s : float
        Seconds between σ, λ, flow, drift and microprice snapshot refreshes.
    drift_obs_interval_s : float
        Seconds between drift observations (one per source).
    momentum_lookback_s : float
        L, the momentum reading's lookback, seconds.
    flow_drift_per_s : float
        Drift (1/s) read from a taker-flow imbalance of 1 (prior slope).
    hawkes_refit_s : float
        Seconds between Hawkes maximum-likelihood re-fits on the trade tape.
    hawkes_fit_trades : int
        Taker-order times used by each fit (the latest ones; an order's prints share its exchange time and side, and
        it is one Hawkes event, at its first print).
    imbalance_levels : int
        Book levels per side in the book imbalance.
    near_touch_bps : float
        Band around mid for "liquidity near the touch", bps.
    reference_half_life_s : float
        Half-life of the slow references σ_ref and D_ref of the γ features (volatility regime, thin book).
    """

    kappa: KappaParams = field(default_factory=lambda: KappaParams(gof_interval_s=10.0))
    sigma: SigmaParams = field(default_factory=SigmaParams)
    flow: FlowParams = field(default_factory=FlowParams)
    arrival: ArrivalParams = field(default_factory=ArrivalParams)
    drift: DriftParams = field(default_factory=DriftParams)
    microprice: MicropriceParams = field(default_factory=MicropriceParams)
    adverse: AdverseSelectionParams = field(default_factory=AdverseSelectionParams)
    depth_markout: DepthMarkoutParams = field(default_factory=DepthMarkoutParams)
    hawkes_prior: HawkesParams = field(
        default_factory=lambda: HawkesParams(mu_per_s=1.0, alpha_per_s=0.5, beta_per_s=1.0)
    )
    kappa_refresh_s: float = 1.0
    kappa_min_refresh_s: float = 0.2
    kappa_refresh_trades: int = 200
    snapshot_refresh_s: float = 0.25
    drift_obs_interval_s: float = 1.0
    momentum_lookback_s: float = 10.0
    flow_drift_per_s: float = 2e-5
    hawkes_refit_s: float = 300.0
    hawkes_fit_trades: int = 1000
    imbalance_levels: int = 5
    near_touch_bps: float = 5.0
    reference_half_life_s: float = 1800.0

    def validate(self) -> EstimatorConfig:
        for name in (
            "kappa_refresh_s",
            "snapshot_refresh_s",
            "drift_obs_interval_s",
            "momentum_lookback_s",
            "hawkes_refit_s",
            "near_touch_bps",
            "reference_half_life_s",
        ):
            _pos(name, getattr(self, name))
        _pos("kappa_min_refresh_s", self.kappa_min_refresh_s, zero=True)
        _pos("flow_drift_per_s", self.flow_drift_per_s, zero=True)
        for name in ("kappa_refresh_trades", "hawkes_fit_trades", "imbalance_levels"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"EstimatorConfig.{name} must be a positive integer, got {v!r}")
        return self


class _Cached:
    """A snapshot and when it was taken."""

    __slots__ = ("at_ns", "snap")

    def __init__(self) -> None:
        self.snap: EstimatorSnapshot | None = None
        self.at_ns = -1


# The per-event fields as C slots when the compiled module is built (``_estimators.MarketFields``: the compiled
# per-event paths read them as C fields); the reference's code below reads and writes them by name either way.
_Fields: type = _compiled.MarketFields if _compiled is not None else object


class MarketEstimators(_Fields):  # type: ignore[misc,valid-type]
    """Book + estimators driven by market events; reads are cached (module docstring).

    Parameters
    ----------
    config : EstimatorConfig
    tick_size : float
        Price tick, quote currency (the κ tick model uses it unless ``config.kappa.tick_size`` is set).
    """

    def __init__(self, config: EstimatorConfig | None = None, *, tick_size: float = 0.0) -> None:
        cfg = (config or EstimatorConfig()).validate()
        if cfg.kappa.tick_size == 0 and tick_size > 0:
            kp = cfg.kappa
            cfg = _replace(cfg, kappa=_replace(kp, tick_size=tick_size))
        self.config = cfg
        self.book = OrderBook()
        self.kappa = TradeKappaEstimator(cfg.kappa)
        self.sigma = SigmaEstimator(cfg.sigma)
        self.flow = FlowImbalance(cfg.flow)
        self.arrival = TradeArrivalRate(cfg.arrival)
        self.drift = KalmanDrift(cfg.drift)
        self.microprice = MicropriceRegression(cfg.microprice)
        self.adverse = AdverseSelectionEstimator(cfg.adverse)
        self.depth_markout = DepthMarkoutCurve(cfg.depth_markout)
        self.hawkes = HawkesIntensity(cfg.hawkes_prior, name="trade_hawkes")
        self.hawkes_fit = None
        self.fill_cascade = FillCascade(cfg.hawkes_prior)
        self.bbo: BestBidAsk | None = None
        self._has_bbo_stream = False
        self.funding_rate = 0.0
        self.funding_interval_s = 8 * 3600.0
        self.trades_seen = 0
        self.non_market_trades = 0  # insurance-fund / ADL prints: left out of every trade estimator
        # Taker orders (_on_trade): the exchange time and aggressor of the last market print, which a print of the same
        # order repeats; and how many orders the prints came from (the Hawkes process's events)
        self._order_ts_exch_ns = -1
        self._order_side = 0
        self.taker_orders_seen = 0
        # whether κ holds the open order as its last row (κ keeps the order's touch: kappa.order_mid, order_half_spread)
        self._order_in_kappa = False
        self.mark_price = math.nan
        self.events_seen = 0
        self.book_errors = 0
        self._now_ns = 0
        self._first_ns = 0
        # the Hawkes fit's events (taker orders): exchange times in s (the fit's clock: the local one adds the feed's
        # delivery jitter, which a fit reads as a microsecond-scale kernel) and local times in ns (the online
        # intensity's clock, for the replay after a fit)
        self._trade_times: deque[float] = deque(maxlen=cfg.hawkes_fit_trades)
        self._order_local_ns: deque[int] = deque(maxlen=cfg.hawkes_fit_trades)
        self._trade_depths: deque[float] = deque(maxlen=20_000)  # depth beyond touch, fraction of mid
        self._pending_volume = 0.0
        self._mean_trade_size = math.nan
        self._size_decay = 0.5 ** (1.0 / 500.0)  # per taker order: half-life of 500 orders
        self._mids: deque[tuple[int, float]] = deque()
        self._momentum_ns = int(cfg.momentum_lookback_s * _NS)
        self._snapshot_refresh_ns = int(cfg.snapshot_refresh_s * _NS)
        self._kappa_refresh_ns = cfg.kappa_refresh_s * _NS
        self._kappa_min_refresh_ns = cfg.kappa_min_refresh_s * _NS
        self._flow_value = 0.0
        self._cache = {name: _Cached() for name in ("kappa", "sigma", "arrival", "flow", "drift", "microprice")}
        c = self._cache
        self._c_depth = _Cached()  # the depth-conditional fill cost: read by the quoter only, not in snapshots()
        self._depth_curve: DepthCostCurve | None = None
        self._c_kappa, self._c_sigma, self._c_arrival = c["kappa"], c["sigma"], c["arrival"]
        self._c_flow, self._c_drift, self._c_microprice = c["flow"], c["drift"], c["microprice"]
        self._all_fresh_until_ns = 0  # see snapshots()
        self._all_snaps: tuple[EstimatorSnapshot, ...] = ()
        self._kappa_trades_since = 0
        # the refresh step's schedule (refresh_due/refresh): nothing is due until a first read cached something
        self._refresh_due_ns = _NEVER
        self._kappa_min_due_ns = _NEVER  # κ's trade-count trigger, not before kappa_min_refresh_s
        self._kappa_trades_n = cfg.kappa_refresh_trades
        self._next_drift_ns = 0
        self._next_hawkes_fit_ns = 0
        self._hawkes_fit_at: int | None = None  # a re-fit due after the trade at this time (_refit_hawkes)
        self._sigma_ref = math.nan
        self._depth_ref = math.nan
        self._ref_t_ns = 0
        self.version = 0  # bumps whenever a cached estimate is refreshed
        self.sigma.defer_closed = True  # its window statistics are recomputed in the refresh step (refresh)
        if _compiled is not None and _compiled.MarketStep.fits(self):
            # A book ticker and a trade become one compiled call each, with the same effects as _on_bbo and
            # _on_trade below, which stay the reference (and run whenever an estimator is a Python class).
            step = _compiled.MarketStep(self)
            self._on_bbo = step.on_bbo
            self._on_trade = step.on_trade
            self.c_step = step  # the core calls the step's two at C level (_estimators.pxd)
            # and the refresh step (refresh and what it calls, with the same effects) one compiled call
            self.refresh = step.refresh

    # --- events --------------------------------------------------------------------------------

    @property
    def now_ns(self) -> int:
        return self._now_ns

    def on_event(self, ev: Any) -> None:
        """Feed one market event (Trade, BestBidAsk, DepthSnapshot, DepthUpdate, Funding; others ignored)."""
        if self.refresh_due(self._now_ns):
            self.refresh(self._now_ns)  # what the last event left due, if no driver ran the refresh step
        ts = ev.ts_local_ns
        if ts > self._now_ns:
            self._now_ns = ts
        if not self._first_ns:
            self._first_ns = ts
        self.events_seen += 1
        cls = type(ev)
        if cls is BestBidAsk:
            self._has_bbo_stream = True
            self._on_bbo(ev)
        elif cls is Trade:
            if ev.market:
                self._on_trade(ev)
            else:
                self.non_market_trades += 1  # not order flow a quote meets: no κ, flow, arrival, Hawkes, σ volume
        elif cls is DepthUpdate:
            try:
                self.book.apply_update(ev)
            except EventError:
                self.book_errors += 1
        elif cls is DepthSnapshot:
            try:
                self.book.apply_snapshot(ev)
            except EventError:
                self.book_errors += 1
                return
            if not self._has_bbo_stream:
                # venues that publish whole-book snapshots only (Hyperliquid l2Book): the touch comes from them
                bb, ba = self.book.best_bid(), self.book.best_ask()
                if bb and ba and bb[0] < ba[0]:
                    self._on_bbo(BestBidAsk(ev.ts_exch_ns, ts, bb[0], bb[1], ba[0], ba[1]))
        elif cls is Funding:
            self.funding_rate = ev.rate
            self.funding_interval_s = ev.interval_s
        elif cls is MarkPrice:
            # the rate the next settlement will charge: the reservation price's funding term uses it
            self.funding_rate = ev.funding_rate
            self.funding_interval_s = ev.interval_s
            self.mark_price = ev.mark_price

    def on_fill(self, fill: Fill) -> None:
        self.fill_cascade.update(fill.ts_local_ns, fill.side)
        if fill.liquidity == "maker":
            t = fill.ts_exch_ns if 0 < fill.ts_exch_ns < fill.ts_local_ns else fill.ts_local_ns
            self.adverse.on_own_fill(t, int(fill.side))

    def _on_bbo(self, b: BestBidAsk) -> None:
        # Runs on most events of a real feed: the estimators' unchecked entry points are used, since a
        # BestBidAsk is validated when it is built (finite positive prices, not crossed).
        ts = b.ts_local_ns
        self.bbo = b
        mid = 0.5 * (b.bid_px + b.ask_px)
        self.adverse.on_book(ts, mid)
        self.sigma.update_trusted(ts, mid, self._pending_volume)
        if self.sigma.closed_stale:
            self._refresh_due_ns = 0  # a bucket closed: the refresh step settles σ's window statistics
        self._pending_volume = 0.0
        bs = b.bid_size
        tot = bs + b.ask_size
        self.microprice.observe_trusted(ts, mid, (bs - b.ask_size) / tot if tot > 0 else 0.0, self._flow_value)
        mids = self._mids
        if not mids or mids[-1][1] != mid:
            mids.append((ts, mid))
        cutoff = ts - self._momentum_ns
        while len(mids) > 1 and mids[1][0] <= cutoff:
            mids.popleft()
        if ts >= self._next_drift_ns:
            self._drift_observations(ts, mid)

    def _on_trade(self, t: Trade) -> None:
        # A Trade is validated when built (finite positive price and size, aggressor ±1).
        ts = t.ts_local_ns
        b = self.bbo
        self.trades_seen += 1
        price, size = t.price, t.size
        aggressor = int(t.aggressor)
        # A taker order that meets several resting orders prints once per maker, each with the order's exchange time
        # and side (Binance's trade streams: 21,313 prints from 5,436 orders on the shared USD-M recording, each print
        # its own message at its own local time); a feed without exchange times: the local time.
        tx = t.ts_exch_ns or ts  # (Trade.order_key, field by field as the compiled twin compares it)
        new_order = tx != self._order_ts_exch_ns or aggressor != self._order_side
        # GLFT's λ(δ) = A·e^{−κδ} is the rate of orders reaching δ (one order fills a resting quote once): κ, A, v̄
        # and the intensity fit take one observation per order, its depth its deepest print against the touch before
        # its first print (the book its earlier prints moved is not the one a resting quote was placed in)
        if b is not None:
            if new_order or not self._order_in_kappa:
                bid, ask = b.bid_px, b.ask_px
                mid = 0.5 * (bid + ask)
                hs = 0.5 * (ask - bid)
                self.kappa.update_trusted(ts, price, size, mid, hs)
                self._order_in_kappa = True
                d = abs(price - mid) - hs
                self._trade_depths.append(d / mid if d > 0 else 0.0)
            else:
                self.kappa.extend_trusted(ts, price, size)
                mid = self.kappa.order_mid  # the order's touch, as κ holds it
                d = abs(price - mid) - self.kappa.order_half_spread
                d = d / mid if d > 0 else 0.0
                if d > self._trade_depths[-1]:
                    self._trade_depths[-1] = d
            self._kappa_trades_since += 1
        elif new_order:
            self._order_in_kappa = False  # an order before the first book: no depth, nothing for κ to extend
        if new_order:
            # one public markout per order: its prints share one mid and one future, so counting each would weigh a
            # sweep by its number of makers and take its copies for independent samples
            self.adverse.on_public_trade(ts, price, aggressor)
        self.depth_markout.on_trade(ts, price, aggressor, self.adverse.mid_before, tx)
        self.flow.update_trusted(ts, size, aggressor)
        if new_order:
            self.arrival.update_trusted(ts)  # A: orders per second
        # The Hawkes process models order arrivals: one event per order, at its first print. Counted per print, a
        # ten-maker sweep adds 10α of excitation at one instant and puts gaps of microseconds into the fit, whose
        # likelihood then runs to β → ∞ (LOBSTER AMZN).
        if new_order:
            self._order_ts_exch_ns = tx
            self._order_side = aggressor
            self.taker_orders_seen += 1
            if ts >= self.hawkes.last_event_ns:
                self.hawkes.update(ts)
            self._trade_times.append(tx / _NS)
            self._order_local_ns.append(ts)
        self._pending_volume += size
        # v̄, the mean taker order size (the queue term's): an EWMA over orders; an order's further prints add at the
        # weight its first print had (the EWMA is linear in the last order's size): 1 for the first order, else
        # 1 − decay
        m = self._mean_trade_size
        decay = self._size_decay
        if new_order:
            self._mean_trade_size = size if m != m else decay * m + (1 - decay) * size
        else:
            self._mean_trade_size = m + (1.0 if self.taker_orders_seen == 1 else 1 - decay) * size
        if ts >= self._next_hawkes_fit_ns:
            self._refit_hawkes(ts)

    def _refit_hawkes(self, ts: int) -> None:
        """The Hawkes re-fit is due after the trade at ``ts``: the refresh step runs it (:meth:`_fit_hawkes`),
        stamped ``ts``, before anything else reaches the estimators, so it sees exactly the trades up to this one."""
        self._hawkes_fit_at = ts
        self._next_hawkes_fit_ns = _NEVER  # until the fit sets the next time
        self._refresh_due_ns = 0

    def _fit_hawkes(self, ts: int) -> None:
        """Maximum-likelihood re-fit of the trade Hawkes process (bounded rate: ``hawkes_refit_s``)."""
        self._next_hawkes_fit_ns = ts + int(self.config.hawkes_refit_s * _NS)
        # in exchange time, sorted (the feed may deliver two orders out of their exchange order)
        times = np.sort(np.fromiter(self._trade_times, float, len(self._trade_times)), kind="stable")
        if times.size < 50 or not times[-1] > times[0]:
            self._next_hawkes_fit_ns = ts + int(min(self.config.hawkes_refit_s, 10.0) * _NS)
            return
        prev = self.hawkes_fit
        fit = fit_hawkes(times - times[0], min_events=50, warm_start=self.hawkes.params if prev and prev.ok else None)
        self.hawkes_fit = fit
        if fit.ok:
            h = type(self.hawkes).from_fit(fit, name="trade_hawkes")  # the class in use (compiled or reference)
            # replay the recent orders (local time, the intensity's clock) so the excitation is current under the new
            # parameters
            base = ts - 30.0 / fit.beta_per_s * _NS
            for t_ns in self._order_local_ns:
                if t_ns >= base and t_ns >= h.last_event_ns:
                    h.update(t_ns)
            self.hawkes = h

    def _drift_observations(self, ts: int, mid: float) -> None:
        cfg = self.config
        self._next_drift_ns = ts + int(cfg.drift_obs_interval_s * _NS)
        self._flow_value = self._flow_now(ts)
        d = self.drift
        sig = self.sigma.sigma_for_inventory
        if len(self._mids) >= 2 and math.isfinite(sig) and sig > 0:
            t0, m0 = self._mids[0]
            lookback = (ts - t0) / _NS
            if lookback >= 0.5 * cfg.momentum_lookback_s:
                d.update(ts, "momentum", math.log(mid / m0) / lookback, obs_var=sig * sig / lookback)
        if cfg.flow_drift_per_s > 0 and self.flow._t_ns is not None:
            d.update(ts, "trade_flow", cfg.flow_drift_per_s * self._flow_value)
        snap = self._cache["microprice"].snap
        if snap is not None and snap.usable:
            h = self.microprice.params.horizon_s
            rv = self.microprice.residual_var
            if math.isfinite(rv) and rv > 0:
                d.update(ts, "microprice", snap.value / h, obs_var=rv / (h * h))

    def _flow_now(self, ts: int) -> float:
        buy, sell, _ = self.flow._decayed(ts)
        tot = buy + sell
        return (buy - sell) / tot if tot > 0 else 0.0

    # --- cached reads -----------------------------------------------------------------------------

    def _get(self, c: _Cached, now_ns: int, compute) -> EstimatorSnapshot:
        if c.snap is None or now_ns - c.at_ns >= self._snapshot_refresh_ns:
            c.snap = compute(now_ns)
            c.at_ns = now_ns
            self.version += 1
            self._all_fresh_until_ns = 0
        return c.snap

    def snapshots(self, now_ns: int) -> tuple[EstimatorSnapshot, ...]:
        """(κ, σ, λ, flow, drift, microprice) cached snapshots, exactly as the six getters in that order
        would return them, but in one comparison while none of them is due (most top-of-book events)."""
        if now_ns < self._all_fresh_until_ns and self._kappa_trades_since < self.config.kappa_refresh_trades:
            return self._all_snaps
        kappa = self.kappa_snapshot(now_ns)
        r = self._snapshot_refresh_ns
        # The five other getters in their order, each exactly as _get refreshes its cache, inlined: the refresh
        # step runs this every snapshot_refresh_s, and the two Python calls per estimator were a visible part of it.
        for c, est in (
            (self._c_sigma, self.sigma),
            (self._c_arrival, self.arrival),
            (self._c_flow, self.flow),
            (self._c_drift, self.drift),
            (self._c_microprice, self.microprice),
        ):
            if c.snap is None or now_ns - c.at_ns >= r:
                c.snap = est.snapshot(now_ns)
                c.at_ns = now_ns
                self.version += 1
                self._all_fresh_until_ns = 0
        snaps = (
            kappa,
            self._c_sigma.snap,
            self._c_arrival.snap,
            self._c_flow.snap,
            self._c_drift.snap,
            self._c_microprice.snap,
        )
        self._all_fresh_until_ns = min(
            self._c_kappa.at_ns + self._kappa_refresh_ns,
            self._c_sigma.at_ns + r,
            self._c_arrival.at_ns + r,
            self._c_flow.at_ns + r,
            self._c_drift.at_ns + r,
            self._c_microprice.at_ns + r,
        )
        self._all_snaps = snaps
        return snaps

    # --- the refresh step: the quoting event reads caches, the driver refreshes them between events ---------

    def cached_snapshots(self, now_ns: int) -> tuple[EstimatorSnapshot, ...]:
        """The six cached snapshots as :meth:`snapshots` returns them, without refreshing a due one: the
        strategy core's decision reads these, and :meth:`refresh` (run by the driver after the event's
        actions went out) keeps them fresh. Only the very first read computes them (then the refresh
        schedule starts)."""
        if self._all_snaps:
            return self._all_snaps
        snaps = self.snapshots(now_ns)
        self._schedule()
        return snaps

    def cached_depth_cost(self, now_ns: int) -> tuple[EstimatorSnapshot, DepthCostCurve | None]:
        """:meth:`depth_cost` from the cache, like :meth:`cached_snapshots`: the first read builds the curve
        and from then on :meth:`refresh` keeps it on the σ/λ schedule."""
        c = self._c_depth
        if c.snap is not None:
            return c.snap, self._depth_curve
        out = self.depth_cost(now_ns)
        self._schedule()
        return out

    def refresh_due(self, now_ns: int) -> bool:
        """Whether :meth:`refresh` at ``now_ns`` would recompute anything (two comparisons)."""
        return now_ns >= self._refresh_due_ns or (
            self._kappa_trades_since >= self._kappa_trades_n and now_ns >= self._kappa_min_due_ns
        )

    def refresh(self, now_ns: int) -> None:
        """Recompute every cached estimate that is due at ``now_ns`` (the schedule of the module docstring),
        stamped ``now_ns``: the κ posterior, σ, λ, flow, drift, microprice and, once the quoter has read it,
        the depth-conditional fill cost. The engine driver calls it after an event's actions were sent, so
        the quoting event never pays for a refresh; the next decision reads what it computed."""
        self._settle()
        if self._all_snaps:  # before the first read there is no schedule to keep
            self.snapshots(now_ns)
        if self._c_depth.snap is not None:
            self.depth_cost(now_ns)
        self._schedule()

    def _settle(self) -> None:
        """The work an event left for the refresh step: σ's window statistics after a bucket closed, the
        Hawkes re-fit after the trade that found it due (each as of that event)."""
        self.sigma.settle()
        at = self._hawkes_fit_at
        if at is not None:
            self._hawkes_fit_at = None
            self._fit_hawkes(at)

    def _schedule(self) -> None:
        if self.sigma.closed_stale or self._hawkes_fit_at is not None:
            self._refresh_due_ns = 0  # an event's leftover work (_settle) is still to do
            return
        due = self._all_fresh_until_ns if self._all_snaps else _NEVER
        c = self._c_depth
        if c.snap is not None:
            due = min(due, c.at_ns + self._snapshot_refresh_ns)
        # an integer time (κ's refresh interval is a float of ns, so ``due`` can be one): for the integer times it is
        # compared with, now >= due exactly when now >= ceil(due)
        self._refresh_due_ns = math.ceil(due)
        k = self._c_kappa
        self._kappa_min_due_ns = math.ceil(k.at_ns + self._kappa_min_refresh_ns) if k.snap is not None else _NEVER

    def peek(self, name: str, now_ns: int) -> EstimatorSnapshot:
        """The last cached snapshot, computed now only if there is none — and then NOT cached. Reading for a
        dashboard or a risk check must not move the cache's refresh clock: decisions would then depend on when
        the reader looked (live and backtest results would differ)."""
        c = self._cache[name]
        if c.snap is not None:
            return c.snap
        est = {"kappa": self.kappa, "sigma": self.sigma}.get(name) or getattr(self, name)
        return est.snapshot(now_ns)

    def kappa_snapshot(self, now_ns: int) -> EstimatorSnapshot:
        c = self._c_kappa
        age = now_ns - c.at_ns
        if (
            c.snap is None
            or age >= self._kappa_refresh_ns
            or (self._kappa_trades_since >= self.config.kappa_refresh_trades and age >= self._kappa_min_refresh_ns)
        ):
            c.snap = self.kappa.snapshot(now_ns)
            c.at_ns = now_ns
            self._kappa_trades_since = 0
            self.version += 1
            self._all_fresh_until_ns = 0
        return c.snap

    def sigma_snapshot(self, now_ns: int) -> EstimatorSnapshot:
        return self._get(self._c_sigma, now_ns, self.sigma.snapshot)

    def arrival_snapshot(self, now_ns: int) -> EstimatorSnapshot:
        return self._get(self._c_arrival, now_ns, self.arrival.snapshot)

    def flow_snapshot(self, now_ns: int) -> EstimatorSnapshot:
        return self._get(self._c_flow, now_ns, self.flow.snapshot)

    def drift_snapshot(self, now_ns: int) -> EstimatorSnapshot:
        return self._get(self._c_drift, now_ns, self.drift.snapshot)

    def microprice_snapshot(self, now_ns: int) -> EstimatorSnapshot:
        return self._get(self._c_microprice, now_ns, self.microprice.snapshot)

    def depth_cost(self, now_ns: int) -> tuple[EstimatorSnapshot, DepthCostCurve | None]:
        """The depth-conditional fill cost (:mod:`apps.engine.estimators.depth_markout`): its snapshot and its
        curve, refreshed on the σ/λ schedule (``snapshot_refresh_s``)."""
        dm = self.depth_markout

        def compute(t: int) -> EstimatorSnapshot:
            dm.advance(t, self.adverse.mid_before)
            self._depth_curve = dm.curve()  # cached with its snapshot: both move on the same schedule
            return dm.snapshot(t)

        snap = self._get(self._c_depth, now_ns, compute)
        return snap, self._depth_curve

    def ages(self, now_ns: int) -> dict[str, float]:
        """Seconds since each cached estimate was computed (NaN = never)."""
        return {
            f"{name}_age_s": ((now_ns - c.at_ns) / _NS if c.snap is not None else math.nan)
            for name, c in self._cache.items()
        }

    @property
    def mean_trade_size(self) -> float:
        return self._mean_trade_size

    # --- book-derived signals and γ features -----------------------------------------------------

    def book_signals(self) -> dict[str, float]:
        """Imbalance over ``imbalance_levels``, liquidity within ``near_touch_bps`` of mid (base units, every
        level in the band: a 5 bps band holds a few hundred 0.1-tick levels of a BTC perp)."""
        n = self.config.imbalance_levels
        bids = self.book.bids(n)
        asks = self.book.asks(n)
        b = sum(s for _, s in bids)
        a = sum(s for _, s in asks)
        imb = (b - a) / (b + a) if b + a > 0 else 0.0
        mid = self.bbo.mid if self.bbo else self.book.mid
        near = math.nan
        if mid:
            near = self.book.size_within(mid, self.config.near_touch_bps * 1e-4)
        return {"book_imbalance": imb, "depth_near": near, "book_levels": float(len(bids) + len(asks))}

    def risk_features(
        self, now_ns: int, k: EstimatorSnapshot, s: EstimatorSnapshot, depth_near: float, flow_imb: float
    ) -> dict[str, float]:
        """The γ features this object can measure (drawdown and inventory come from the core)."""
        dt_s = (now_ns - self._ref_t_ns) / _NS if self._ref_t_ns else 0.0
        w = 1.0 - 0.5 ** (dt_s / self.config.reference_half_life_s) if dt_s > 0 else 0.0
        self._ref_t_ns = now_ns
        out: dict[str, float] = {}
        clean = s.detail.get("sigma_clean", math.nan)
        if s.usable and clean > 0:
            self._sigma_ref = (
                clean if self._sigma_ref != self._sigma_ref else self._sigma_ref + w * (clean - self._sigma_ref)
            )
            out["volatility_regime"] = math.log(clean / self._sigma_ref)
        if depth_near == depth_near and depth_near > 0:
            self._depth_ref = (
                depth_near
                if self._depth_ref != self._depth_ref
                else self._depth_ref + w * (depth_near - self._depth_ref)
            )
            out["thin_book"] = math.log(self._depth_ref / depth_near)
        out["flow_toxicity"] = min(abs(flow_imb), 1.0)
        cascade = 0.0
        if self.hawkes_fit is not None and self.hawkes_fit.ok and self.hawkes.n_events:
            lam = self.hawkes.intensity(max(now_ns, self.hawkes.last_event_ns))
            cascade = max(math.log(lam / self.hawkes.params.mu_per_s), 0.0)
        fc = self.fill_cascade
        if fc._state is EstimatorState.OK:
            excess = max(fc.excess_ratio(Side.BUY, now_ns), fc.excess_ratio(Side.SELL, now_ns))
            cascade = max(cascade, math.log1p(excess))
        out["cascade_intensity"] = cascade
        rel = []
        if k.usable and k.value > 0:
            rel.append(k.std / k.value)
        if s.usable and s.value > 0:
            rel.append(s.std / s.value)
        out["estimator_uncertainty"] = math.sqrt(sum(r * r for r in rel if math.isfinite(r)))
        return out

    # --- the report for the estimate command ------------------------------------------------------

    def report(self, now_ns: int | None = None) -> dict[str, Any]:
        """Final snapshot of every estimator as plain JSON-able values (NaN/inf become None)."""
        now = self._now_ns if now_ns is None else now_ns
        self._settle()  # what the last event left for a refresh step
        # a report reads fresh values, whatever the cache says
        for c in self._cache.values():
            c.snap = None
        k = self.kappa_snapshot(now)
        s = self.sigma_snapshot(now)
        lam = self.arrival_snapshot(now)
        flow = self.flow_snapshot(now)
        drift = self.drift_snapshot(now)
        micro = self.microprice_snapshot(now)
        if self._trade_times:
            self._refit_hawkes(now)
        duration_s = (now - self._first_ns) / _NS if self._first_ns else 0.0
        intensity: dict[str, Any] = {"error": None}
        depths = np.fromiter(self._trade_depths, float, len(self._trade_depths))
        if depths.size >= 2 and duration_s > 0 and self.bbo is not None:
            tau = (self.config.kappa.tick_size or 0.0) / self.bbo.mid
            # the depths held cover the last len(depths) taker orders; scale the duration accordingly
            span_s = duration_s * depths.size / max(self.taker_orders_seen, 1)
            try:
                fit = fit_intensity_curve(depths, span_s, bin_width=tau if tau > 0 else None)
                intensity = {
                    "a_per_s": fit.a_per_s,
                    "a_std": fit.a_std,
                    "kappa": fit.kappa,
                    "kappa_std": fit.kappa_std,
                    "n_trades": fit.n_trades,
                    "converged": fit.converged,
                    "duration_s": span_s,
                }
            except (ValueError, np.linalg.LinAlgError) as exc:
                intensity = {"error": str(exc)}
        hf = self.hawkes_fit
        hawkes: dict[str, Any] = {"state": "warming", "message": "fewer than 50 trades"}
        if hf is not None:
            hawkes = {
                "state": hf.state.value,
                "message": hf.message,
                "mu_per_s": hf.mu_per_s,
                "alpha_per_s": hf.alpha_per_s,
                "beta_per_s": hf.beta_per_s,
                "branching_ratio": hf.branching_ratio,
                "decay_time_s": hf.decay_time_s,
                "stderr_mu": hf.stderr_mu,
                "stderr_alpha": hf.stderr_alpha,
                "stderr_beta": hf.stderr_beta,
                "n_events": hf.n_events,
                "ks_pvalue": hf.ks_pvalue,
            }
        out = {
            "events_seen": self.events_seen,
            "trades_seen": self.trades_seen,
            "taker_orders_seen": self.taker_orders_seen,
            "non_market_trades_excluded": self.non_market_trades,
            "duration_s": duration_s,
            "book_errors": self.book_errors,
            "kappa": {
                "value": k.value,
                "ci_low": k.ci_low,
                "ci_high": k.ci_high,
                "std": k.std,
                "state": k.state.value,
                "message": k.message,
                "avg_trade_distance_bps": k.detail.get("avg_distance_bps"),
                "avg_distance_beyond_touch_bps": k.detail.get("avg_distance_beyond_touch_bps"),
                "kappa_raw": k.detail.get("kappa_raw"),
                "kappa_tick": k.detail.get("kappa_tick"),
                "frac_orders_at_touch": k.detail.get("frac_orders_at_touch"),
                "fit_test": {
                    name: k.detail.get(name)
                    for name in ("ks_stat", "ks_p", "powerlaw_alpha", "loglik_ratio", "loglik_ratio_p", "gof_n")
                },
            },
            "intensity_fit": intensity,
            "A_per_s": lam.value,
            "sigma": {
                "sigma_clean": s.detail.get("sigma_clean"),
                "sigma_total": s.detail.get("sigma_total"),
                "ci_low": s.ci_low,
                "ci_high": s.ci_high,
                "state": s.state.value,
                "message": s.message,
                "jump_share": s.detail.get("jump_share"),
                "correction_factor": s.detail.get("correction_factor"),
                "n_buckets": s.detail.get("n_buckets"),
            },
            "lambda_per_s": {
                "value": lam.value,
                "ci_low": lam.ci_low,
                "ci_high": lam.ci_high,
                "state": lam.state.value,
            },
            "hawkes": hawkes,
            "drift": {
                "mean_per_s": drift.value,
                "std_per_s": drift.std,
                "state": drift.state.value,
                "theta_per_s": drift.detail.get("theta_per_s"),
                "n_obs": drift.detail.get("n_obs"),
            },
            "flow_imbalance": {"value": flow.value, "state": flow.state.value},
            "microprice": {"r2_oos": micro.detail.get("r2_oos"), "state": micro.state.value},
            "mean_trade_size": self._mean_trade_size,
        }
        return _json_safe(out)


def _replace(obj: Any, **changes: Any) -> Any:
    import dataclasses

    return dataclasses.replace(obj, **changes)


def _json_safe(v: Any) -> Any:
    if isinstance(v, dict):
        return {k: _json_safe(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_json_safe(x) for x in v]
    if isinstance(v, (float, np.floating)):
        f = float(v)
        return f if math.isfinite(f) else None
    if isinstance(v, np.integer):
        return int(v)
    return v


class _OrderTape:
    """The report's per-order cross-check of A and κ (``taker_orders`` in :func:`estimate_events`).

    GLFT's ``λ(δ) = A·e^{−κδ}`` is the rate of market *orders* that reach a quote at depth δ: one order fills a
    resting quote once, however many makers it prints against. The estimators count orders too (κ over their window
    with its prior, A the order rate). Here, over the whole recording with no prior: each taker order (as
    :class:`MarketEstimators` counts them: ``taker_orders_seen``) is taken at its deepest price against the touch in
    force before its first print, and κ is the tick model's MLE on the orders' deepest levels (the geometric MLE on
    the levels past the first one beyond the touch, ``q̂ = m/(1+m)``, ``κ = −ln q̂ / τ``, τ the tick as a fraction of
    the mid), each order weighing one. Diagnostic only: nothing quotes from it.
    """

    def __init__(self, tick_size: float) -> None:
        self.tick = tick_size
        self.level = -1  # the open order's deepest level beyond the touch, ticks (−1: no touch or no tick)
        self.tau = math.nan
        self.touch = math.nan
        self.through: list[tuple[int, float]] = []  # (deepest level, τ) of the closed orders that went through

    def on_print(self, t: Trade, bbo: BestBidAsk | None, new_order: bool) -> None:
        """A market print; ``bbo`` the touch before it; ``new_order`` when it opened an order."""
        side = int(t.aggressor)
        if new_order:
            self._close()
            if bbo is not None and self.tick > 0:
                self.tau = self.tick / bbo.mid
                self.touch = bbo.ask_px if side > 0 else bbo.bid_px
                self.level = 0
        if self.level >= 0:
            self.level = max(self.level, round((t.price - self.touch) * side / self.tick))

    def _close(self) -> None:
        if self.level >= 1:
            self.through.append((self.level, self.tau))
        self.level = -1
        self.tau = math.nan

    def result(self, orders: int, prints: int, duration_s: float) -> dict[str, Any]:
        self._close()
        out: dict[str, Any] = {
            "orders": orders,
            "prints": prints,
            "prints_per_order": prints / orders if orders else math.nan,
            "orders_per_s": orders / duration_s if duration_s > 0 else math.nan,
            "orders_through_touch": len(self.through),
            "kappa_per_order": math.nan,
        }
        if self.through:
            m = math.fsum(lv - 1 for lv, _ in self.through) / len(self.through)
            tau = math.fsum(t for _, t in self.through) / len(self.through)
            q = m / (1.0 + m)
            out["kappa_per_order"] = -math.log(q) / tau if q > 0 else math.inf
        return out


def estimate_events(events: Any, *, tick_size: float = 0.0, config: EstimatorConfig | None = None) -> dict[str, Any]:
    """Run :class:`MarketEstimators` over an iterable of events and return its final :meth:`report`, with the
    per-order cross-check of A and κ under ``taker_orders`` (:class:`_OrderTape`).

    Items that are not events (e.g. a parser's quarantine records, which have no ``ts_local_ns``) are
    counted under ``skipped`` and otherwise ignored.
    """
    est = MarketEstimators(config, tick_size=tick_size)
    tape = _OrderTape(est.config.kappa.tick_size)
    skipped = 0
    for ev in events:
        if not hasattr(ev, "ts_local_ns"):
            skipped += 1
            continue
        if type(ev) is Trade and ev.market:
            bbo, orders = est.bbo, est.taker_orders_seen  # the touch before the print; did the print open an order?
            est.on_event(ev)
            tape.on_print(ev, bbo, est.taker_orders_seen != orders)
        else:
            est.on_event(ev)
    out = est.report()
    out["skipped"] = skipped
    duration_s = out.get("duration_s") or 0.0
    out["taker_orders"] = _json_safe(tape.result(est.taker_orders_seen, est.trades_seen, duration_s))
    return out


def infer_tick_size(prices: list[float]) -> float:
    """The price grid from observed prices: the smallest positive gap between distinct prices, rounded to a
    power-of-ten multiple of 1, 2.5 or 5 (0 when fewer than two distinct prices)."""
    ps = sorted(set(prices))
    gaps = [b - a for a, b in itertools.pairwise(ps) if b - a > 1e-12]
    if not gaps:
        return 0.0
    g = min(gaps)
    exp10 = 10 ** math.floor(math.log10(g))
    for m in (1.0, 2.0, 2.5, 5.0, 10.0):
        if abs(g - m * exp10) <= 0.05 * m * exp10:
            return round(m * exp10, 12)
    return round(g, 12)
