"""Behaviour of the built-in market simulator: the feed's contract and the statistics of its market.

Statistical tolerances are stated in standard errors (SE) of the quantity checked; every run is seeded,
so a failure is a real change of behaviour, not bad luck.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from apps.engine.estimators.kappa import KappaPosterior, tick_posterior
from apps.engine.market.events import BestBidAsk, DepthSnapshot, DepthUpdate, Side, Trade
from apps.engine.simulation.simulator import MarketSimulator, SimulatorParams

NS = 1_000_000_000
DEFAULTS = SimulatorParams()


def run(params: SimulatorParams, seed: int, seconds: float) -> list:
    sim = MarketSimulator(params, seed)
    return sim.step_until(params.start_ts_ns + params.latency_ns + int(seconds * NS))


class ReplayedBook:
    """A consumer's L2 book: the snapshot plus every diff, as a strategy would rebuild it."""

    def __init__(self, snapshot: DepthSnapshot) -> None:
        self.bids = dict(snapshot.bids)
        self.asks = dict(snapshot.asks)
        self.last_update_id = snapshot.last_update_id

    def apply(self, diff: DepthUpdate) -> None:
        for side, levels in ((self.bids, diff.bids), (self.asks, diff.asks)):
            for price, size in levels:
                if size == 0:
                    side.pop(price, None)
                else:
                    side[price] = size
        self.last_update_id = diff.last_update_id

    def best(self) -> tuple[float, float, float, float]:
        bid, ask = max(self.bids), min(self.asks)
        return bid, self.bids[bid], ask, self.asks[ask]

    def sorted_sizes(self) -> tuple[list[float], list[float]]:
        bids = [self.bids[p] for p in sorted(self.bids, reverse=True)]
        asks = [self.asks[p] for p in sorted(self.asks)]
        return bids, asks


def trade_tape(events: list) -> np.ndarray:
    """Rows of (price, aggressor, touch on the aggressor's side, size, quoted mid) from the feed alone."""
    rows, bbo = [], None
    for e in events:
        if isinstance(e, BestBidAsk):
            bbo = e
        elif isinstance(e, Trade):
            touch = bbo.ask_px if e.aggressor is Side.BUY else bbo.bid_px
            rows.append((e.price, int(e.aggressor), touch, e.size, bbo.mid))
    return np.array(rows)


def tick_kappa(tape: np.ndarray, tick_size: float) -> tuple[KappaPosterior, int]:
    """κ from the tape by the engine's own tick model (:func:`tick_posterior`, flat prior), and the prints used.

    A print ``k ≥ 1`` ticks beyond the touch is ``k − 1`` ticks beyond the first price past it; prints at the
    touch carry no usable information (their chance depends on where the mid sits inside its tick).
    """
    k = np.rint(tape[:, 1] * (tape[:, 0] - tape[:, 2]) / tick_size)
    assert np.all(k >= 0), "a print inside the touch on its aggressor's side"
    through = k >= 1
    tau = tick_size / tape[through, 2]
    post = tick_posterior(
        n_eff=float(through.sum()),
        sum_delta_beyond=float(np.sum((k[through] - 1) * tau)),
        tick_frac=float(tau.mean()),
        prior_shape=1.0,
        prior_rate=0.0,
    )
    return post, int(through.sum())


def mid_returns(events: list, step_s: float) -> np.ndarray:
    """Log returns of the quoted mid sampled every ``step_s`` seconds (last BBO at or before each time)."""
    ts = np.array([e.ts_exch_ns for e in events if isinstance(e, BestBidAsk)])
    mids = np.array([e.mid for e in events if isinstance(e, BestBidAsk)])
    grid = np.arange(ts[0], ts[-1], int(step_s * NS))
    sampled = mids[np.searchsorted(ts, grid, side="right") - 1]
    return np.diff(np.log(sampled))


@pytest.fixture(scope="module")
def default_run() -> list:
    return run(DEFAULTS, seed=11, seconds=600)


# --- parameters --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("kappa", 0.0),
        ("kappa", -3.0),
        ("sigma", math.nan),
        ("sigma", -1e-4),
        ("tick_size", 0.0),
        ("arrival_rate_A", math.inf),
        ("depth_levels", 0),
        ("depth_levels", 2.5),
        ("latency_ns", 1.5),
        ("aggressor_tilt", 0.6),
        ("wide_spread_prob", 1.0),
        ("depth_refresh_prob", 1.5),
        ("trade_size_tail_alpha", 0.0),
        ("book_update_interval_s", 0.0),
    ],
)
def test_it_rejects_a_bad_parameter_naming_it(name: str, value: float) -> None:
    params = dataclasses.replace(DEFAULTS, **{name: value})
    with pytest.raises(ValueError, match=name):
        params.validate()
    with pytest.raises(ValueError, match=name):
        MarketSimulator(params, seed=1)


def test_it_accepts_its_defaults_and_exposes_the_true_parameters() -> None:
    assert DEFAULTS.validate() is DEFAULTS
    sim = MarketSimulator(DEFAULTS, seed=3)
    assert sim.true_params == DEFAULTS
    assert sim.true_mid == pytest.approx(DEFAULTS.start_mid)


# --- determinism and resumability ------------------------------------------------------------------


def test_it_repeats_exactly_for_the_same_seed_and_differs_for_another() -> None:
    a = run(DEFAULTS, seed=5, seconds=20)
    b = run(DEFAULTS, seed=5, seconds=20)
    c = run(DEFAULTS, seed=6, seconds=20)
    assert len(a) > 200
    assert a == b
    assert a != c


def test_it_gives_the_same_stream_however_it_is_consumed() -> None:
    whole = run(DEFAULTS, seed=8, seconds=30)
    sim = MarketSimulator(DEFAULTS, seed=8)
    chunked: list = []
    start = DEFAULTS.start_ts_ns + DEFAULTS.latency_ns
    for k in range(1, 301):  # a 100 ms wall-clock loop
        chunk = sim.step_until(start + k * NS // 10)
        assert all(e.ts_local_ns <= start + k * NS // 10 for e in chunk)
        chunked.extend(chunk)
    assert chunked == whole


def test_it_streams_forever_without_a_horizon() -> None:
    sim = MarketSimulator(DEFAULTS, seed=2)
    stream = sim.events()
    first = [next(stream) for _ in range(20_000)]  # beyond the first vectorised block
    assert first[-1].ts_exch_ns > DEFAULTS.start_ts_ns + 60 * NS


# --- the feed's contract ------------------------------------------------------------------------------


def test_it_opens_with_a_snapshot_and_a_top_of_book(default_run: list) -> None:
    snap, bbo = default_run[0], default_run[1]
    assert isinstance(snap, DepthSnapshot)
    assert isinstance(bbo, BestBidAsk)
    assert len(snap.bids) == len(snap.asks) == DEFAULTS.depth_levels
    assert (bbo.bid_px, bbo.bid_size, bbo.ask_px, bbo.ask_size) == (*snap.bids[0], *snap.asks[0])
    assert bbo.bid_px <= DEFAULTS.start_mid < bbo.ask_px
    assert not any(isinstance(e, DepthSnapshot) for e in default_run[1:])


def test_its_clocks_are_ordered_and_local_time_lags_by_the_latency(default_run: list) -> None:
    local = np.array([e.ts_local_ns for e in default_run])
    assert np.all(np.diff(local) >= 0)
    assert all(e.ts_local_ns - e.ts_exch_ns == DEFAULTS.latency_ns for e in default_run)
    assert default_run[-1].ts_exch_ns - DEFAULTS.start_ts_ns > 599 * NS


def test_its_depth_diffs_chain_their_update_ids_binance_style(default_run: list) -> None:
    prev_u = default_run[0].last_update_id
    last_diff_u = prev_u
    for e in default_run[1:]:
        if isinstance(e, DepthUpdate):
            assert e.prev_update_id == prev_u
            assert e.first_update_id == prev_u + 1
            assert e.last_update_id == e.first_update_id + len(e.bids) + len(e.asks) - 1
            prev_u = last_diff_u = e.last_update_id
        elif isinstance(e, BestBidAsk):
            assert e.update_id == last_diff_u


def test_its_book_is_never_crossed_and_every_top_matches_it(default_run: list) -> None:
    book = ReplayedBook(default_run[0])
    n_bbo = 0
    for e in default_run[1:]:
        if isinstance(e, DepthUpdate):
            book.apply(e)
            bid, _, ask, _ = book.best()
            assert bid < ask
            assert len(book.bids) == len(book.asks) == DEFAULTS.depth_levels
        elif isinstance(e, BestBidAsk):
            assert (e.bid_px, e.bid_size, e.ask_px, e.ask_size) == book.best()
            n_bbo += 1
    assert n_bbo > 1000


def test_it_publishes_a_top_on_every_top_change_and_only_then(default_run: list) -> None:
    book = ReplayedBook(default_run[0])
    top = book.best()
    events = default_run[2:]
    for i, e in enumerate(events):
        if isinstance(e, DepthUpdate):
            book.apply(e)
            changed = book.best() != top
            follows = i + 1 < len(events) and isinstance(events[i + 1], BestBidAsk)
            assert changed == follows or i + 1 == len(events)
            top = book.best()


def test_its_replayed_book_equals_the_simulators_own() -> None:
    sim = MarketSimulator(DEFAULTS, seed=11)
    events = sim.step_until(DEFAULTS.start_ts_ns + DEFAULTS.latency_ns + 60 * NS)
    book = ReplayedBook(events[0])
    for e in events:
        if isinstance(e, DepthUpdate):
            book.apply(e)
    own = sim.book()
    assert own.last_update_id == book.last_update_id
    assert own.bids == tuple(sorted(book.bids.items(), reverse=True))
    assert own.asks == tuple(sorted(book.asks.items()))
    # The unobserved true mid always lies inside the published spread.
    assert own.bids[0][0] <= sim.true_mid < own.asks[0][0]


def test_its_prices_and_sizes_sit_on_the_grid(default_run: list) -> None:
    prices, sizes = [], []
    for e in default_run:
        if isinstance(e, (DepthUpdate, DepthSnapshot)):
            for px, sz in (*e.bids, *e.asks):
                prices.append(px)
                sizes.append(sz)
        elif isinstance(e, Trade):
            prices.append(e.price)
            sizes.append(e.size)
    ticks = np.array(prices) / DEFAULTS.tick_size
    lots = np.array(sizes) / DEFAULTS.lot_size
    assert np.max(np.abs(ticks - np.rint(ticks))) < 1e-6
    assert np.max(np.abs(lots - np.rint(lots))) < 1e-6
    # Exact decimal representations, so a venue or recorder sees 60000.1 and not 60000.100000000006.
    assert all(len(repr(p).split(".")[-1]) <= 1 for p in prices[:5000])


def test_its_trades_print_at_or_through_the_touch_on_the_aggressor_side(default_run: list) -> None:
    tape = trade_tape(default_run)
    price, side, touch = tape[:, 0], tape[:, 1], tape[:, 2]
    assert np.all(side * (price - touch) >= -1e-9)
    assert np.all(np.diff([int(e.trade_id) for e in default_run if isinstance(e, Trade)]) == 1)


def test_its_spread_is_usually_one_tick_and_sometimes_wider(default_run: list) -> None:
    spreads = np.array([e.ask_px - e.bid_px for e in default_run if isinstance(e, BestBidAsk)])
    ticks = np.rint(spreads / DEFAULTS.tick_size)
    one_tick = np.mean(ticks == 1)
    assert 0.90 < one_tick < 0.99  # about 1 - wide_spread_prob = 0.95
    assert ticks.max() <= 1 + DEFAULTS.wide_spread_max_extra_ticks
    narrow = run(dataclasses.replace(DEFAULTS, wide_spread_prob=0.0), seed=1, seconds=30)
    assert all(round((e.ask_px - e.bid_px) / DEFAULTS.tick_size) == 1 for e in narrow if isinstance(e, BestBidAsk))


# --- the statistics of the simulated market ----------------------------------------------------------


def test_its_trade_rate_matches_A(default_run: list) -> None:
    n = sum(isinstance(e, Trade) for e in default_run)
    expected = DEFAULTS.arrival_rate_A * 600
    assert abs(n - expected) < 4 * math.sqrt(expected)  # Poisson SE


def test_its_aggressors_are_balanced_without_tilt(default_run: list) -> None:
    side = trade_tape(default_run)[:, 1]
    assert abs(np.mean(side > 0) - 0.5) < 4 * 0.5 / math.sqrt(side.size)


def test_its_aggressors_chase_recent_moves_with_a_tilt() -> None:
    params = dataclasses.replace(DEFAULTS, aggressor_tilt=0.4, arrival_rate_A=10.0, book_update_interval_s=1.0)
    tape = trade_tape(run(params, seed=4, seconds=300))
    side, mid = tape[:, 1], tape[:, 4]
    move = np.sign(np.diff(mid))
    agree = np.mean(side[1:][move != 0] == move[move != 0])
    assert agree > 0.6  # 0.5 without tilt; E[0.5 + 0.4 tanh|z|] is about 0.75 here


def test_its_realised_sigma_matches_sigma_without_jumps() -> None:
    params = dataclasses.replace(
        DEFAULTS, jump_intensity=0.0, arrival_rate_A=0.5, book_update_interval_s=1.0, wide_spread_prob=0.0
    )
    r = mid_returns(run(params, seed=21, seconds=7200), step_s=1.0)
    sigma_hat = math.sqrt(np.mean(r**2))
    se = params.sigma / math.sqrt(2 * r.size)  # SE of a Gaussian standard deviation, ~0.8 %
    assert abs(sigma_hat - params.sigma) < 4 * se
    excess_kurtosis = np.mean(r**4) / np.mean(r**2) ** 2 - 3
    assert abs(excess_kurtosis) < 0.5


def test_its_realised_variance_adds_the_jump_variance_with_jumps_on() -> None:
    params = dataclasses.replace(
        DEFAULTS,
        jump_intensity=0.02,
        jump_size_std=5e-4,
        arrival_rate_A=0.5,
        book_update_interval_s=1.0,
        wide_spread_prob=0.0,
    )
    r = mid_returns(run(params, seed=22, seconds=14_400), step_s=1.0)
    s = params.jump_size_std
    expected = params.sigma**2 + params.jump_intensity * (s**2 + s**4 / 4)  # E[J^2] for J ~ N(-s^2/2, s^2)
    # SE of the mean of r^2 is ~3.5 % here, dominated by the ~290 jumps.
    assert np.mean(r**2) == pytest.approx(expected, rel=0.12)
    excess_kurtosis = np.mean(r**4) / np.mean(r**2) ** 2 - 3
    assert excess_kurtosis > 3  # jumps fatten the tails of 1-second returns


def test_it_gives_back_kappa_from_its_trade_tape(default_run: list) -> None:
    tape = trade_tape(default_run)
    fit, n_through = tick_kappa(tape, DEFAULTS.tick_size)
    assert n_through > 0.95 * len(tape)  # at kappa 5000 almost every print goes through the touch
    assert abs(fit.mean - DEFAULTS.kappa) < 4 * fit.std
    # The defaults put prints a few bps beyond the touch, i.e. far through a one-tick book.
    mean_excess_bps = np.mean(tape[:, 1] * (tape[:, 0] - tape[:, 2]) / tape[:, 4]) * 1e4
    assert 1.0 < mean_excess_bps < 4.0


def test_it_gives_back_a_large_kappa_where_the_tick_grid_matters() -> None:
    params = dataclasses.replace(DEFAULTS, kappa=1e5, arrival_rate_A=10.0, book_update_interval_s=1.0)
    tape = trade_tape(run(params, seed=9, seconds=300))
    fit, _ = tick_kappa(tape, params.tick_size)
    assert abs(fit.mean - params.kappa) < 4 * fit.std
    # The grid-blind estimate (1 / mean distance beyond the touch) over-counts each print by about half a
    # tick: here kappa * tick / mid / 2 is about 8 %, which the tick model removes.
    excess = tape[:, 1] * (tape[:, 0] - tape[:, 2]) / tape[:, 2]
    naive = 1.0 / excess[excess > 0].mean()
    assert naive < params.kappa * 0.95


def test_its_depth_grows_away_from_the_touch_on_average(default_run: list) -> None:
    book = ReplayedBook(default_run[0])
    by_level = np.zeros(DEFAULTS.depth_levels)
    n = 0
    for i, e in enumerate(default_run):
        if isinstance(e, DepthUpdate):
            book.apply(e)
            if i % 25 == 0:
                bids, asks = book.sorted_sizes()
                by_level += np.array(bids) + np.array(asks)
                n += 2
    mean_size = by_level / n
    slope = np.polyfit(np.arange(mean_size.size), mean_size, 1)[0]
    assert slope > 0
    assert mean_size[-5:].mean() > 2 * mean_size[:3].mean()
    assert np.mean(np.diff(mean_size) > 0) > 0.7


def test_its_trade_sizes_are_heavy_tailed(default_run: list) -> None:
    sizes = trade_tape(default_run)[:, 3]
    top = np.sort(sizes)[::-1]
    k = top.size // 20
    hill_alpha = 1.0 / np.mean(np.log(top[:k] / top[k]))
    assert hill_alpha == pytest.approx(
        DEFAULTS.trade_size_tail_alpha, abs=4 * DEFAULTS.trade_size_tail_alpha / math.sqrt(k)
    )
    kurtosis = np.mean((sizes - sizes.mean()) ** 4) / sizes.var() ** 2
    assert kurtosis > 20  # a normal has 3; alpha < 4 has none at all
    assert np.median(sizes) < sizes.mean() / 1.5
