"""The depth-conditional fill cost: hand-built tapes with known answers, its states and validation, and the curve on
a real recording."""

from __future__ import annotations

import bisect
import math
from pathlib import Path

import pytest

from apps.engine.estimators.base import EstimatorState
from apps.engine.estimators.depth_markout import DepthCostCurve, DepthMarkoutCurve, DepthMarkoutParams
from apps.engine.estimators.market import MarketEstimators
from apps.marketdata.recordings import EVALUATION_RECORDINGS, load_recording

S = 1_000_000_000
MS = 1_000_000
DATA = Path(__file__).resolve().parents[3].parent / "shared" / "data"


class Mids:
    """A step function of local time: ``mid_before(t)`` is the last mid set strictly before ``t``."""

    def __init__(self) -> None:
        self.ts: list[int] = []
        self.mids: list[float] = []

    def set(self, t: int, mid: float) -> None:
        self.ts.append(t)
        self.mids.append(mid)

    def __call__(self, t: int) -> float:
        i = bisect.bisect_left(self.ts, t)
        return self.mids[i - 1] if i > 0 else math.nan


def params(**kw) -> DepthMarkoutParams:
    base = {"horizon_s": 1.0, "reference_lag_s": 0.02, "step_bps": 1.0, "max_depth_bps": 4.0, "prior_events": 0.0}
    return DepthMarkoutParams(**(base | kw))


def test_depth_and_adverse_move_are_measured_from_the_mid_a_lag_before_the_trade():
    mids = Mids()
    est = DepthMarkoutCurve(params(min_events=1))
    mids.set(0, 100.0)
    mids.set(995 * MS, 99.99)  # within the lag before the trade: not the reference
    # a sell aggressor (−1) fills a resting bid at 99.979: 2.1 bps below the reference mid 100
    est.on_trade(1 * S, 99.979, -1, mids)
    mids.set(1 * S + 500 * MS, 99.95)  # the mid at the horizon (1 s later): 5 bps down
    est.advance(2 * S + 1, mids)
    assert est.completed == 1
    c = est.curve()
    # depth +2.1 bps (the bid was below the mid), adverse move +5 bps (the mid fell against the buyer)
    assert list(est._depths) == [pytest.approx(2.1e-4)]
    assert list(est._adverse) == [pytest.approx(5e-4)]
    assert c.counts == (1, 1, 1, 0, 0)
    assert c.costs[:3] == pytest.approx((5e-4, 5e-4, 5e-4))
    assert c.costs[3:] == (c.pooled, c.pooled)  # nothing that deep: the pooled cost (no prior events: no shrinkage)


def test_an_event_is_completed_only_after_its_horizon_and_with_the_mid_in_force_then():
    mids = Mids()
    est = DepthMarkoutCurve(params())
    mids.set(0, 100.0)
    est.on_trade(1 * S, 100.01, +1, mids)  # a buy aggressor fills a resting ask 1 bp above the mid
    mids.set(2 * S, 100.02)  # an update at the horizon itself (t + 1 s): the mid just before it is still 100
    est.advance(2 * S - 1, mids)
    assert est.completed == 0  # the horizon has not come
    est.advance(2 * S, mids)
    assert est.completed == 1
    assert list(est._adverse) == [pytest.approx(0.0)]


def test_one_sweep_is_one_event_as_deep_as_its_deepest_print():
    mids = Mids()
    est = DepthMarkoutCurve(params())
    mids.set(0, 100.0)
    for px in (99.99, 99.98, 99.97):  # one sell sweeping three levels at the same local time
        est.on_trade(1 * S, px, -1, mids)
    est.on_trade(1 * S, 100.01, +1, mids)  # a buy at the same time is another event
    mids.set(1 * S + 1, 100.0)
    est.advance(3 * S, mids)
    assert est.completed == 2
    assert sorted(est._depths) == [pytest.approx(1e-4), pytest.approx(3e-4)]


def test_the_prints_of_one_order_delivered_apart_are_one_event_by_their_exchange_time():
    """Binance's trade streams deliver each print of a sweep as its own message, microseconds apart in local time;
    the order's exchange time (``order_ns``) ties them together. Without it each print would be its own event."""
    mids = Mids()
    mids.set(0, 100.0)
    grouped, apart = DepthMarkoutCurve(params()), DepthMarkoutCurve(params())
    for i, px in enumerate((99.99, 99.98, 99.97)):  # one sell, three levels, local times 5 µs apart
        local = 1 * S + 5_000 * i
        grouped.on_trade(local, px, -1, mids, 1 * S - 3_000_000)
        apart.on_trade(local, px, -1, mids)
    grouped.on_trade(1 * S + 20_000, 100.01, +1, mids, 1 * S - 3_000_000)  # a buy at that exchange time: another
    grouped.on_trade(1 * S + 30_000, 99.99, -1, mids, 1 * S - 2_000_000)  # a sell a ms later: another order
    mids.set(1 * S + 1_000_000, 100.0)
    grouped.advance(3 * S, mids)
    apart.advance(3 * S, mids)
    assert grouped.completed == 3
    assert sorted(grouped._depths) == [pytest.approx(1e-4), pytest.approx(1e-4), pytest.approx(3e-4)]
    assert apart.completed == 3 and sorted(apart._depths) == [pytest.approx(d) for d in (1e-4, 2e-4, 3e-4)]


def test_trades_through_the_reference_mid_reach_no_quote_and_are_left_out_of_the_curve():
    mids = Mids()
    est = DepthMarkoutCurve(params(min_events=1))
    mids.set(0, 100.0)
    est.on_trade(1 * S, 100.02, -1, mids)  # a sell printed above the reference mid: depth −2 bps
    est.on_trade(2 * S, 99.99, -1, mids)  # depth +1 bp
    mids.set(2 * S + 1, 99.98)
    est.advance(4 * S, mids)
    assert est.completed == 2
    c = est.curve()
    assert c.counts[0] == 1
    assert c.pooled == pytest.approx(2e-4)  # only the +1 bp event: the mid fell 2 bps from 100 against the buyer


def test_each_depth_is_shrunk_toward_the_pooled_cost_by_the_prior_events():
    mids = Mids()
    est = DepthMarkoutCurve(params(prior_events=2.0))
    mids.set(0, 100.0)
    # three events: depths 0.5, 1.5 and 2.5 bps below; adverse moves 1, 3 and 6 bps
    moves = []
    for i, (depth_bps, move_bps) in enumerate(((0.5, 1.0), (1.5, 3.0), (2.5, 6.0))):
        t = (10 * i + 1) * S
        mids.set(t - 100 * MS, 100.0)
        est.on_trade(t, 100.0 * (1 - depth_bps * 1e-4), -1, mids)
        mids.set(t + 500 * MS, 100.0 * (1 - move_bps * 1e-4))
        moves.append(move_bps * 1e-4)
    est.advance(100 * S, mids)
    c = est.curve()
    pooled = sum(moves) / 3
    assert c.pooled == pytest.approx(pooled)
    assert c.counts == (3, 2, 1, 0, 0)
    assert c.costs[0] == pytest.approx((sum(moves) + 2 * pooled) / 5)
    assert c.costs[1] == pytest.approx((moves[1] + moves[2] + 2 * pooled) / 4)
    assert c.costs[2] == pytest.approx((moves[2] + 2 * pooled) / 3)
    assert c.costs[3] == pytest.approx(pooled)
    assert c.cost_at(1.7e-4) == pytest.approx(0.3 * c.costs[1] + 0.7 * c.costs[2])
    assert c.cost_at(9e-4) == c.costs[4] and c.cost_at(-1e-4) == c.costs[0]


def test_an_event_whose_horizon_left_the_mid_history_is_dropped_and_counted():
    mids = Mids()
    est = DepthMarkoutCurve(params())
    mids.set(0, 100.0)
    est.on_trade(1 * S, 99.99, -1, mids)
    est.advance(3 * S, lambda t: math.nan)  # the history no longer reaches the horizon
    assert (est.completed, est.dropped) == (0, 1)
    assert est.curve() is None


def test_states_warming_ok_stale():
    mids = Mids()
    est = DepthMarkoutCurve(params(min_events=3, stale_after_s=10.0))
    mids.set(0, 100.0)
    snap = est.snapshot(0)
    assert snap.state is EstimatorState.WARMING and "no completed" in snap.message
    for i in range(3):
        est.on_trade((i + 1) * S, 99.99, -1, mids)
    est.advance(3 * S, mids)
    assert est.snapshot(3 * S).state is EstimatorState.WARMING  # 2 completed so far
    est.advance(5 * S, mids)
    snap = est.snapshot(5 * S)
    assert snap.state is EstimatorState.OK and snap.detail["events"] == 3
    assert est.snapshot(20 * S).state is EstimatorState.STALE


@pytest.mark.parametrize(
    ("kw", "word"),
    [
        ({"horizon_s": 0.0}, "horizon_s"),
        ({"step_bps": -1.0}, "step_bps"),
        ({"step_bps": 2.0, "max_depth_bps": 1.0}, "max_depth_bps"),
        ({"step_bps": 1e-4, "max_depth_bps": 20.0}, "grid points"),
        ({"reference_lag_s": -0.01}, "reference_lag_s"),
        ({"horizon_s": 9.99, "reference_lag_s": 0.02}, "mid history"),
        ({"window": 0}, "window"),
        ({"prior_events": math.nan}, "prior_events"),
    ],
)
def test_nonsense_parameters_are_rejected_with_their_name(kw, word):
    with pytest.raises(ValueError, match=word):
        DepthMarkoutParams(**kw).validate()


def test_the_curve_interpolates_between_grid_points_and_holds_its_ends():
    c = DepthCostCurve(1e-4, (1.0, 2.0, 4.0), (3, 2, 1), 2.0)
    assert [k * c.step for k in range(len(c.cost_array))] == [0.0, 1e-4, 2e-4]  # the grid: depth k·step
    got = [c.cost_at(x) for x in (-1.0, 0.0, 0.5e-4, 1e-4, 1.25e-4, 2e-4, 2.5e-4, 1.0)]
    assert got == pytest.approx([1.0, 1.0, 1.5, 2.0, 2.5, 4.0, 4.0, 4.0])


@pytest.mark.skipif(not (DATA / "hftbacktest-binance-spot-btcusdt-20240808").exists(), reason="shared data missing")
def test_on_the_spot_recording_fills_a_little_off_the_touch_cost_more_than_fills_at_it():
    """What the model is for, on real data: on Binance spot BTCUSDT (one tick wide), a trade that reached 0.5 bps
    from the mid 20 ms before it is followed by a larger move against the maker than the average trade."""
    events = load_recording(DATA, EVALUATION_RECORDINGS["spot-btcusdt"])
    m = MarketEstimators(tick_size=0.01)
    for e in events[:60_000]:
        m.on_event(e)
    snap, curve = m.depth_cost(events[59_999].ts_local_ns + 2 * S)
    assert snap.state is EstimatorState.OK
    assert curve.counts[0] > 1000 and curve.counts[5] > 100
    assert curve.cost_at(0.5e-4) > curve.cost_at(0.0) > 0
    # the same events' public markouts at the touch (the scalar estimator) agree in size with the pooled cost
    adv = m.adverse.snapshot(events[59_999].ts_local_ns)
    assert 0.3 < curve.pooled / adv.value < 3


def test_only_the_latest_window_of_events_is_kept_and_the_curve_forgets_the_rest():
    mids = Mids()
    est = DepthMarkoutCurve(params(window=2))
    mids.set(0, 100.0)
    for i, (px, move) in enumerate(((99.995, 1.0), (99.985, 2.0), (99.975, 4.0))):  # depths 0.5, 1.5, 2.5 bps
        t = (10 * i + 1) * S
        est.on_trade(t, px, -1, mids)
        mids.set(t + 500 * MS, 100.0 - move * 0.01)
        est.advance(t + 2 * S, mids)
        mids.set(t + 3 * S, 100.0)
    c = est.curve()
    assert est.completed == 3 and len(est._depths) == 2
    assert c.counts == (2, 2, 1, 0, 0)  # the 0.5 bps event has left the window
    assert c.pooled == pytest.approx(3e-4) and c.costs[2] == pytest.approx(4e-4)
    assert sum(est._cell_n) == 2 and est._cell_n[0] == 0
