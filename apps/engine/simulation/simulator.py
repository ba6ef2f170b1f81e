"""A seeded market simulator: the feed behind paper trading and demos.

It produces the same event types as a real venue (``DepthSnapshot``, ``DepthUpdate``, ``BestBidAsk``,
``Trade``), so the strategy core cannot tell it from a recording or an exchange connector.

Model
-----
True mid.  The unobserved "true" mid ``S`` follows a jump-diffusion in continuous time::

    d log S = (mu - sigma**2 / 2) dt + sigma dW + dJ

with ``sigma`` per sqrt(second) (a fraction of price), ``mu`` per second, and ``J`` a compound Poisson
process of intensity ``lambda_J`` (per second) whose log-jumps are ``N(-s**2/2, s**2)`` (so a jump has
mean zero in price).  The path is sampled exactly at each observation time (a book refresh or a market
order); between observations nothing is emitted, so nothing else needs simulating.

Quoted book.  On the tick grid (all prices are integer ticks internally): the best bid is
``floor(S / tick)`` and the best ask one tick above, so the true mid always sits inside the spread and the
spread is one tick; with probability ``wide_spread_prob`` per observation one side is pushed out by
1..``wide_spread_max_extra_ticks`` extra ticks (the spread is "usually one tick, sometimes wider").
Behind the touch the L2 ladder has ``depth_levels`` levels a side at a fixed price lattice of
``depth_level_gap_ticks`` (with gap 1 the book is dense; larger gaps mimic the sparse, round-number
levels of a real BTCUSDT book).  Sizes stick to their price (resting orders stay where they are as the
touch moves); new levels get a fresh size with mean ``depth_touch_size * (1 + depth_growth_per_level * i)``
at level ``i`` (0 = touch) and mean-one lognormal noise; at every book refresh each level is re-drawn with
probability ``depth_refresh_prob``.  Market orders do not deplete the displayed book (it is treated as
instantly resilient); the trade tape is driven by the fill-depth model below, not by the displayed sizes.

Market orders.  A Poisson process of intensity ``A`` per second.  Each has an aggressor side, buy with
probability ``0.5 + aggressor_tilt * tanh(z)`` where ``z`` is the true-mid log return since the previous
market order in units of ``sigma * sqrt(dt)`` (tilt 0: 50/50; tilt > 0: flow chases recent moves); a
depth ``delta ~ Exp(kappa)`` (fraction of mid), i.e. it reaches ``delta`` with probability
``exp(-kappa * delta)``; and a size from a Pareto law (tail index ``trade_size_tail_alpha``, scale
``trade_size_min``) rounded to the lot.  A buy prints at ``max(best_ask, ceil(S (1 + delta) / tick))``,
a sell at ``min(best_bid, floor(S (1 - delta) / tick))``: rounded outward, never inside the touch.

How the tick grid interacts with kappa
--------------------------------------
A print exactly at the touch only says that ``S (1 + delta)`` did not pass the touch, and how likely that
is depends on where ``S`` sits inside its tick, which nobody observes.  Prints *beyond* the touch carry the
information: the event "``S (1 + delta)`` passed the ask ``a``" is exponential past ``a`` by
memorylessness, whatever ``S`` and ``a`` are, so the number of ticks ``k = (price - a) / tick >= 1`` of a
through-the-touch buy is exactly geometric, ``P(k) = (1 - q) q**(k - 1)`` with ``q = exp(-kappa * h)``
and ``h = tick / S`` (the tick as a fraction of mid).  The engine's κ estimator uses that likelihood
(:func:`apps.engine.estimators.kappa.tick_posterior`), so kappa is recoverable from the tape alone (trade
price, aggressor side, touch before the trade); the simulator's tests check it does.  The naive estimator
``1 / mean(distance beyond the touch)`` over-counts each excess by about half a tick and is biased by
``~ kappa * h / 2`` (0.4 % at the defaults, 8 % at ``kappa = 1e5``).

Defaults (BTCUSDT-like, lively for a demo)
------------------------------------------
Mid 60,000 USDT, tick 0.1, lot 0.001 BTC (Binance USD-M).  ``sigma = 1e-4`` per sqrt(s) (about 56 %
annualised; the 2024-08-08 recording in ``shared/data`` measures 1.2e-4).  A jump every 2 minutes on
average with a 5 bp standard deviation.  ``A = 5`` market orders per second (the real tape has ~60 prints
per second, most of them fragments of one sweep).  ``kappa = 5000``: a mean 2 bp (about 120 ticks, 12 USDT)
beyond the touch; a tick is only 1/6000 of the mid (0.017 bp), so that is far through a one-tick book.  The
ladder has 20 levels a side 10 ticks (1 USDT) apart, 2 BTC at the touch growing by 25 % of that per
level, so most prints land inside the displayed ladder.  Trade sizes: Pareto, alpha 1.5 (the recording's
Hill estimate is 1.56), minimum 0.005 BTC.  Books refresh every 100 ms (Binance ``depth@100ms``); 5 ms
feed latency.

Events
------
A ``DepthSnapshot`` (followed by a ``BestBidAsk``) first; then, at every observation, a ``DepthUpdate``
when any level changed (Binance-futures sequencing: ``U = pu + 1``, ``u = U + changes - 1``, and ``pu``
of the first diff is the snapshot's ``lastUpdateId``), a ``BestBidAsk`` whenever the top price or size
changed (its ``update_id`` is the ``u`` of the diff that produced it), then a ``Trade`` at an arrival.
All carry ``ts_local_ns = ts_exch_ns + latency_ns`` and come out in non-decreasing ``ts_local_ns``.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields
from decimal import Decimal

import numpy as np

from apps.engine.market.events import BestBidAsk, DepthSnapshot, DepthUpdate, Event, Side, Trade

__all__ = ["MarketSimulator", "SimulatorParams"]

_NS_PER_S = 1_000_000_000
# Observations per vectorised block (a performance knob only; it is fixed so a seed gives one path).
_TARGET_OBS_PER_BLOCK = 2048
_POOL_SIZE = 65_536
_FIRST_UPDATE_ID = 1000


@dataclass(frozen=True, slots=True)
class SimulatorParams:
    """Every constant of the simulated market, with its unit.

    Attributes
    ----------
    start_mid : float
        Initial true mid ``S_0`` in quote currency (USDT).
    tick_size : float
        Price grid step in quote currency.
    lot_size : float
        Size grid step in base units (BTC); every size is a whole number of lots, at least one.
    sigma : float
        Diffusive volatility of the log mid, per sqrt(second) (fraction of price).
    drift_per_s : float
        ``mu``: expected relative price change per second (jumps are compensated, so ``E[S_t] = S_0 e^{mu t}``).
    jump_intensity : float
        ``lambda_J``: jumps per second.
    jump_size_std : float
        ``s``: standard deviation of a log-jump (fraction of price).
    arrival_rate_A : float
        ``A``: market orders per second (Poisson).
    kappa : float
        ``kappa``: per unit fractional distance; a market order reaches depth ``delta`` (fraction of mid)
        with probability ``exp(-kappa * delta)``; mean depth beyond the true mid is ``1 / kappa``.
    aggressor_tilt : float
        In [0, 0.5]: ``P(buy) = 0.5 + aggressor_tilt * tanh(z)``, ``z`` the standardised true-mid return
        since the previous market order; 0 gives 50/50.
    trade_size_min : float
        Pareto scale ``x_m`` of market-order size, base units.
    trade_size_tail_alpha : float
        Pareto tail index ``alpha``: ``P(size > x) = (x_m / x)**alpha``; below 2 the variance is infinite.
    depth_levels : int
        Price levels a side in the L2 book.
    depth_level_gap_ticks : int
        Lattice step of the levels behind the touch, in ticks (1 = dense book).
    depth_touch_size : float
        Mean size at the touch, base units.
    depth_growth_per_level : float
        Mean size at level ``i`` is ``depth_touch_size * (1 + depth_growth_per_level * i)`` (per level).
    depth_size_noise_sigma : float
        Standard deviation of the mean-one lognormal noise on each level size (log units).
    depth_refresh_prob : float
        Probability that a level's size is re-drawn at a book refresh.
    wide_spread_prob : float
        Probability per observation that one side of the touch is pushed out by extra ticks.
    wide_spread_max_extra_ticks : int
        The extra ticks are uniform on ``1..wide_spread_max_extra_ticks``.
    book_update_interval_s : float
        Seconds between book refreshes (each is an observation of the true mid).
    start_ts_ns : int
        Exchange timestamp of the first event, ns since the epoch.
    latency_ns : int
        Feed latency: ``ts_local_ns = ts_exch_ns + latency_ns``.
    """

    start_mid: float = 60_000.0
    tick_size: float = 0.1
    lot_size: float = 0.001
    sigma: float = 1e-4
    drift_per_s: float = 0.0
    jump_intensity: float = 1.0 / 120.0
    jump_size_std: float = 5e-4
    arrival_rate_A: float = 5.0  # noqa: N815 - the model's own symbol A, as the rest of the engine names it
    kappa: float = 5000.0
    aggressor_tilt: float = 0.0
    trade_size_min: float = 0.005
    trade_size_tail_alpha: float = 1.5
    depth_levels: int = 20
    depth_level_gap_ticks: int = 10
    depth_touch_size: float = 2.0
    depth_growth_per_level: float = 0.25
    depth_size_noise_sigma: float = 0.6
    depth_refresh_prob: float = 0.3
    wide_spread_prob: float = 0.05
    wide_spread_max_extra_ticks: int = 3
    book_update_interval_s: float = 0.1
    start_ts_ns: int = 1_700_000_000_000_000_000
    latency_ns: int = 5_000_000

    def validate(self) -> SimulatorParams:
        """Raise ``ValueError`` naming the first bad parameter and its value; return ``self`` when valid."""
        for f in fields(self):
            value = getattr(self, f.name)
            if f.type == "int":
                if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                    raise ValueError(f"SimulatorParams.{f.name} must be an integer, got {value!r}")
            elif isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"SimulatorParams.{f.name} must be a finite number, got {value!r}")
        positive = (
            "start_mid",
            "tick_size",
            "lot_size",
            "kappa",
            "trade_size_min",
            "trade_size_tail_alpha",
            "depth_touch_size",
            "book_update_interval_s",
        )
        non_negative = (
            "sigma",
            "jump_intensity",
            "jump_size_std",
            "arrival_rate_A",
            "depth_growth_per_level",
            "depth_size_noise_sigma",
            "start_ts_ns",
            "latency_ns",
        )
        at_least_one = ("depth_levels", "depth_level_gap_ticks", "wide_spread_max_extra_ticks")
        unit_interval = ("depth_refresh_prob", "wide_spread_prob")
        for name in positive:
            if not getattr(self, name) > 0:
                raise ValueError(f"SimulatorParams.{name} must be > 0, got {getattr(self, name)!r}")
        for name in non_negative:
            if not getattr(self, name) >= 0:
                raise ValueError(f"SimulatorParams.{name} must be >= 0, got {getattr(self, name)!r}")
        for name in at_least_one:
            if not getattr(self, name) >= 1:
                raise ValueError(f"SimulatorParams.{name} must be >= 1, got {getattr(self, name)!r}")
        for name in unit_interval:
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"SimulatorParams.{name} must be in [0, 1], got {getattr(self, name)!r}")
        if not 0.0 <= self.aggressor_tilt <= 0.5:
            raise ValueError(f"SimulatorParams.aggressor_tilt must be in [0, 0.5], got {self.aggressor_tilt!r}")
        if self.wide_spread_prob >= 1.0:
            raise ValueError(f"SimulatorParams.wide_spread_prob must be < 1, got {self.wide_spread_prob!r}")
        if self.start_mid / self.tick_size < 2 * self.depth_levels * self.depth_level_gap_ticks:
            raise ValueError(
                f"SimulatorParams.start_mid {self.start_mid!r} is too few ticks above zero for "
                f"{self.depth_levels} levels {self.depth_level_gap_ticks} ticks apart"
            )
        if round(self.book_update_interval_s * _NS_PER_S) < 1:
            raise ValueError(
                f"SimulatorParams.book_update_interval_s must be at least 1 ns, got {self.book_update_interval_s!r}"
            )
        return self


def _integer_inverse(step: float) -> int:
    """``1 / step`` when that is a whole number (then ``n / it`` prints grid values exactly), else 0."""
    inverse = round(1.0 / step)
    return inverse if inverse >= 1 and abs(inverse * step - 1.0) < 1e-12 else 0


def _decimals(step: float) -> int:
    """Decimal places needed to print multiples of ``step`` exactly (0.1 -> 1, 0.001 -> 3, 0.25 -> 2)."""
    exponent = Decimal(repr(step)).normalize().as_tuple().exponent
    return max(0, -int(exponent))


class _Pool:
    """Pre-drawn random numbers handed out one at a time (refilled from the simulator's generator)."""

    __slots__ = ("_draw", "_i", "_values")

    def __init__(self, draw: Callable[[int], np.ndarray]) -> None:
        self._draw = draw
        self._values: list[float] = []
        self._i = 0

    def next(self) -> float:
        if self._i >= len(self._values):
            self._values = self._draw(_POOL_SIZE).tolist()
            self._i = 0
        value = self._values[self._i]
        self._i += 1
        return value


class MarketSimulator:
    """A seeded, resumable market feed (see the module docstring for the model).

    Parameters
    ----------
    params : SimulatorParams
        The market; validated here.
    seed : int
        Seed for ``np.random.default_rng``; the same seed and params give the same events however the
        stream is consumed (``events`` or chunked ``step_until``).

    Examples
    --------
    >>> sim = MarketSimulator(SimulatorParams(), seed=7)
    >>> first = sim.step_until(SimulatorParams().start_ts_ns + 10**9)
    >>> type(first[0]).__name__
    'DepthSnapshot'
    """

    def __init__(self, params: SimulatorParams, seed: int) -> None:
        self._params = params.validate()
        self._seed = seed
        self._rng = np.random.default_rng(seed)
        p = params
        self._px_dp = _decimals(p.tick_size)
        self._sz_dp = _decimals(p.lot_size)
        self._interval_ns = round(p.book_update_interval_s * _NS_PER_S)
        obs_per_interval = 1.0 + p.arrival_rate_A * p.book_update_interval_s
        self._refresh_per_block = max(1, math.ceil(_TARGET_OBS_PER_BLOCK / obs_per_interval))
        self._mean_lots = [
            p.depth_touch_size * (1.0 + p.depth_growth_per_level * i) / p.lot_size for i in range(p.depth_levels)
        ]
        s = p.depth_size_noise_sigma
        self._size_noise = _Pool(lambda n: np.exp(s * self._rng.standard_normal(n) - 0.5 * s * s))
        self._ticks_per_unit = _integer_inverse(p.tick_size)
        self._lots_per_unit = _integer_inverse(p.lot_size)
        self._px = self._grid_to_float(self._ticks_per_unit, p.tick_size, self._px_dp)
        self._sz = self._grid_to_float(self._lots_per_unit, p.lot_size, self._sz_dp)
        # Mutable state.
        self._log_mid = math.log(p.start_mid)
        self._mid = p.start_mid  # exp(log(S)) can miss S by an ulp; start exactly where asked
        self._last_obs_ns = p.start_ts_ns
        self._block_start_ns = p.start_ts_ns
        self._bids: dict[int, int] = {}  # price in ticks -> size in lots
        self._asks: dict[int, int] = {}
        self._top: tuple[int, int, int, int] = (0, 0, 0, 0)
        self._update_id = _FIRST_UPDATE_ID
        self._trade_id = 0
        self._last_trade_log_mid = self._log_mid
        self._last_trade_ns = p.start_ts_ns
        self._times: list[int] = []  # the current block of observations, consumed from index _i
        self._i = 0
        self._buffer: deque[Event] = deque(self._open())

    # --- read-only views -------------------------------------------------------------------------

    @property
    def true_params(self) -> SimulatorParams:
        """The parameters that generate the market (for tests and for "what was the truth" in demos)."""
        return self._params

    @property
    def seed(self) -> int:
        return self._seed

    @property
    def true_mid(self) -> float:
        """The unobserved true mid at the latest observation, quote currency."""
        return self._mid

    def book(self) -> DepthSnapshot:
        """The L2 book after the latest simulated observation, stamped with its time.

        After ``step_until`` (or an ``events`` loop run to its horizon) that is exactly the book the
        delivered events describe.
        """
        ts = self._last_obs_ns
        return DepthSnapshot(
            ts_exch_ns=ts,
            ts_local_ns=ts + self._params.latency_ns,
            bids=self._levels(sorted(self._bids.items(), reverse=True)),
            asks=self._levels(sorted(self._asks.items())),
            last_update_id=self._update_id,
        )

    # --- the feed --------------------------------------------------------------------------------

    def events(self, until_ns: int | None = None) -> Iterator[Event]:
        """Yield events in order, up to and including ``ts_local_ns <= until_ns`` (forever when ``None``).

        Resumable: a later call continues where this one stopped.
        """
        latency, buffer = self._params.latency_ns, self._buffer
        while True:
            while buffer:
                if until_ns is not None and buffer[0].ts_local_ns > until_ns:
                    return
                yield buffer.popleft()
            # Look at the next observation's time before simulating it, so that the state (book,
            # true_mid) never runs ahead of what has been handed out.
            if until_ns is not None and self._next_obs_ns() + latency > until_ns:
                return
            buffer.extend(self._step())

    def step_until(self, ts_ns: int) -> list[Event]:
        """Every event with ``ts_local_ns <= ts_ns`` not yet returned (for a wall-clock driven loop)."""
        return list(self.events(until_ns=ts_ns))

    # --- internals -------------------------------------------------------------------------------

    def _grid_to_float(self, per_unit: int, step: float, decimals: int) -> Callable[[int], float]:
        """``n -> n * step`` printed exactly: a C-level division when ``1 / step`` is whole, else rounding."""
        if per_unit:
            return float(per_unit).__rtruediv__
        return lambda n: round(n * step, decimals)

    def _levels(self, items: list[tuple[int, int]]) -> tuple[tuple[float, float], ...]:
        tpu, lpu = self._ticks_per_unit, self._lots_per_unit
        if tpu and lpu:  # the hot path: int / int is correctly rounded, so 600001 / 10 is exactly 60000.1
            return tuple([(p / tpu, s / lpu) for p, s in items])
        px, sz = self._px, self._sz
        return tuple([(px(p), sz(s)) for p, s in items])

    def _fresh_lots(self, level: int) -> int:
        lots = int(self._mean_lots[level] * self._size_noise.next() + 0.5)
        return lots if lots >= 1 else 1

    def _ladder(self, touch: int, side: int) -> list[int]:
        """Prices (ticks) of the levels: the touch, then the lattice behind it, best first."""
        g, n = self._params.depth_level_gap_ticks, self._params.depth_levels
        if side > 0:
            first = g * ((touch - 1) // g)
            ladder = [touch, *range(first, first - g * (n - 1), -g)]
            return ladder if ladder[-1] > 0 else [p for p in ladder if p > 0]
        first = g * (touch // g + 1)
        return [touch, *range(first, first + g * (n - 1), g)]

    def _rebuild_side(
        self, old: dict[int, int], prices: list[int], refresh: list[tuple[int, int]]
    ) -> tuple[dict[int, int], list[tuple[int, int]]]:
        """New side and its changes (price, lots; 0 deletes), keeping sizes that stay on the book.

        Levels new to the book get a fresh size, ``refresh`` sets (level index from the touch, lots) on
        re-drawn levels; the rest keep their size.
        """
        new: dict[int, int] = {}
        changes: list[tuple[int, int]] = []
        get, fresh = old.get, self._fresh_lots
        for i, price in enumerate(prices):
            lots = get(price)
            if lots is None:
                lots = fresh(i)
                changes.append((price, lots))
            new[price] = lots
        n = len(prices)
        for i, lots in refresh:
            # A level new to the book already has a fresh size; only resting levels are re-drawn.
            if i < n and (price := prices[i]) in old and new[price] != lots:
                new[price] = lots
                changes.append((price, lots))
        changes.extend([(p, 0) for p in old if p not in new])
        return new, changes

    def _mid_ticks(self) -> float:
        """The true mid in ticks; multiplying by a whole ``1 / tick`` keeps 25.0 at exactly 2500 ticks."""
        mid = self._mid
        return mid * self._ticks_per_unit if self._ticks_per_unit else mid / self._params.tick_size

    def _touch(self, wide: bool, extra: int, wide_side_up: bool) -> tuple[int, int]:
        bid = math.floor(self._mid_ticks())
        ask = bid + 1
        if wide:
            if wide_side_up:
                ask += extra
            else:
                bid = max(1, bid - extra)
        return bid, ask

    def _observe_book(
        self,
        ts: int,
        bid: int,
        ask: int,
        bid_refresh: list[tuple[int, int]],
        ask_refresh: list[tuple[int, int]],
    ) -> list[Event]:
        """Move the book to the touch ``(bid, ask)``; return the diff and BBO it causes (possibly none)."""
        self._bids, bid_changes = self._rebuild_side(self._bids, self._ladder(bid, +1), bid_refresh)
        self._asks, ask_changes = self._rebuild_side(self._asks, self._ladder(ask, -1), ask_refresh)
        n = len(bid_changes) + len(ask_changes)
        if n == 0:
            return []
        bid_changes.sort(reverse=True)
        ask_changes.sort()
        prev = self._update_id
        self._update_id = prev + n
        local = ts + self._params.latency_ns
        out: list[Event] = [
            DepthUpdate(ts, local, self._levels(bid_changes), self._levels(ask_changes), prev + 1, prev + n, prev)
        ]
        top = (bid, self._bids[bid], ask, self._asks[ask])
        if top != self._top:
            self._top = top
            out.append(self._bbo(ts, local))
        return out

    def _bbo(self, ts: int, local: int) -> BestBidAsk:
        bid, bid_lots, ask, ask_lots = self._top
        px, sz = self._px, self._sz
        return BestBidAsk(ts, local, px(bid), sz(bid_lots), px(ask), sz(ask_lots), self._update_id)

    def _trade(self, ts: int, depth: float, size_lots: int, u_side: float) -> Trade:
        p = self._params
        if p.aggressor_tilt > 0 and p.sigma > 0 and ts > self._last_trade_ns:
            dt_s = (ts - self._last_trade_ns) / _NS_PER_S
            z = (self._log_mid - self._last_trade_log_mid) / (p.sigma * math.sqrt(dt_s))
            p_buy = 0.5 + p.aggressor_tilt * math.tanh(z)
        else:
            p_buy = 0.5
        self._last_trade_ns, self._last_trade_log_mid = ts, self._log_mid
        mid_ticks = self._mid_ticks()
        bid, _, ask, _ = self._top
        if u_side < p_buy:
            side, price = Side.BUY, max(ask, math.ceil(mid_ticks * (1.0 + depth)))
        else:
            side, price = Side.SELL, min(bid, math.floor(mid_ticks * (1.0 - depth)))
            price = max(price, 1)  # a sell cannot print at or below zero, however deep it reaches
        self._trade_id += 1
        return Trade(ts, ts + p.latency_ns, self._px(price), self._sz(size_lots), side, str(self._trade_id))

    def _draw_block(self) -> tuple[list[int], list[int], list[float]]:
        """Observation times (ns), kinds (0 refresh, 1 arrival) and true log mids for the next block."""
        p, rng = self._params, self._rng
        t0 = self._block_start_ns
        span_ns = self._refresh_per_block * self._interval_ns
        self._block_start_ns = t0 + span_ns
        refresh_ns = t0 + self._interval_ns * np.arange(1, self._refresh_per_block + 1, dtype=np.int64)
        n_arr = int(rng.poisson(p.arrival_rate_A * span_ns / _NS_PER_S))
        arrival_ns = t0 + np.sort(np.floor(rng.random(n_arr) * span_ns).astype(np.int64)) + 1
        times = np.concatenate([refresh_ns, arrival_ns])
        kinds = np.concatenate([np.zeros(refresh_ns.size, np.int8), np.ones(n_arr, np.int8)])
        order = np.argsort(times, kind="stable")
        times, kinds = times[order], kinds[order]
        dt_s = np.diff(times, prepend=self._last_obs_ns).astype(float) / _NS_PER_S
        increments = (p.drift_per_s - 0.5 * p.sigma**2) * dt_s + p.sigma * np.sqrt(dt_s) * rng.standard_normal(
            times.size
        )
        if p.jump_intensity > 0 and p.jump_size_std > 0:
            n_jumps = rng.poisson(p.jump_intensity * dt_s)
            s = p.jump_size_std
            increments += s * np.sqrt(n_jumps) * rng.standard_normal(times.size) - 0.5 * s * s * n_jumps
        log_mids = self._log_mid + np.cumsum(increments)
        return times.tolist(), kinds.tolist(), log_mids.tolist()

    def _draw_orders(self, n: int) -> tuple[list[float], list[int], list[float]]:
        """Depths (fraction of mid), sizes (lots) and side uniforms of ``n`` market orders."""
        p, rng = self._params, self._rng
        depths = rng.exponential(1.0 / p.kappa, n)
        sizes = p.trade_size_min * rng.random(n) ** (-1.0 / p.trade_size_tail_alpha)
        lots = np.maximum(1, np.rint(sizes / p.lot_size)).astype(np.int64)
        return depths.tolist(), lots.tolist(), rng.random(n).tolist()

    def _draw_refreshes(self, n_refresh: int) -> list[list[tuple[int, int]]]:
        """For each refresh, the bid then the ask (level index, new lots) pairs of the re-drawn levels."""
        p, rng = self._params, self._rng
        n_rows = 2 * n_refresh
        mask = rng.random((n_rows, p.depth_levels)) < p.depth_refresh_prob
        rows, cols = np.nonzero(mask)
        s = p.depth_size_noise_sigma
        noise = np.exp(s * rng.standard_normal(cols.size) - 0.5 * s * s)
        lots = np.maximum(1, np.floor(np.asarray(self._mean_lots)[cols] * noise + 0.5)).astype(np.int64)
        bounds = np.searchsorted(rows, np.arange(n_rows + 1)).tolist()
        pairs = list(zip(cols.tolist(), lots.tolist(), strict=True))
        return [pairs[bounds[r] : bounds[r + 1]] for r in range(n_rows)]

    def _draw_spreads(self, n: int) -> tuple[list[bool], list[int], list[bool]]:
        p, rng = self._params, self._rng
        wide = rng.random(n) < p.wide_spread_prob
        extra = rng.integers(1, p.wide_spread_max_extra_ticks + 1, n)
        up = rng.random(n) < 0.5
        return wide.tolist(), extra.tolist(), up.tolist()

    def _open(self) -> list[Event]:
        """The initial book around ``start_mid``: a snapshot and its top."""
        ts = self._params.start_ts_ns
        bid, ask = self._touch(False, 0, False)
        self._bids, _ = self._rebuild_side({}, self._ladder(bid, +1), [])
        self._asks, _ = self._rebuild_side({}, self._ladder(ask, -1), [])
        self._top = (bid, self._bids[bid], ask, self._asks[ask])
        snapshot = self.book()
        return [snapshot, self._bbo(ts, snapshot.ts_local_ns)]

    def _load_block(self) -> None:
        times, kinds, log_mids = self._draw_block()
        n_arr = sum(kinds)
        self._times, self._kinds, self._log_mids = times, kinds, log_mids
        self._depths, self._lots, self._u_sides = self._draw_orders(n_arr)
        self._wides, self._extras, self._ups = self._draw_spreads(len(times))
        self._refreshes = self._draw_refreshes(len(times) - n_arr)
        self._i = self._j = self._r = 0

    def _next_obs_ns(self) -> int:
        """Exchange time of the next observation (drawing the next block when this one is used up)."""
        if self._i >= len(self._times):
            self._load_block()
        return self._times[self._i]

    def _step(self) -> list[Event]:
        """Process the next observation (a book refresh or a market order) and return its events."""
        ts = self._next_obs_ns()
        i = self._i
        self._i = i + 1
        self._log_mid = self._log_mids[i]
        self._mid = math.exp(self._log_mid)
        self._last_obs_ns = ts
        bid, ask = self._touch(self._wides[i], self._extras[i], self._ups[i])
        if self._kinds[i] == 1:
            out = self._observe_book(ts, bid, ask, [], [])
            j = self._j
            self._j = j + 1
            out.append(self._trade(ts, self._depths[j], self._lots[j], self._u_sides[j]))
            return out
        r = self._r
        self._r = r + 2
        return self._observe_book(ts, bid, ask, self._refreshes[r], self._refreshes[r + 1])
