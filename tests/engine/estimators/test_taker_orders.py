"""The trade Hawkes process counts taker orders, not prints: the prints of one order (the same exchange time and
aggressor, each at its own local time, as Binance's trade streams deliver a sweep) are one event, at the first print,
and the fit reads the orders' exchange times. Run against the reference and the compiled estimators (conftest)."""

from __future__ import annotations

import numpy as np
import pytest

from apps.engine.estimators.market import MarketEstimators
from apps.engine.market.events import BestBidAsk, Side, Trade

S = 1_000_000_000
MS = 1_000_000
US = 1_000


def _sweep(exch_ns: int, local_ns: int, side: Side, n: int, px0: float = 100.1) -> list[Trade]:
    """One taker order of ``n`` prints: one exchange time, local times 7 µs apart, walking up (a buy) the book."""
    step = 0.1 if side is Side.BUY else -0.1
    return [
        Trade(exch_ns, local_ns + 7 * US * i, round(px0 + step * (i // 2), 1), 0.01, side, f"{exch_ns}-{i}")
        for i in range(n)
    ]


def _fed(events) -> MarketEstimators:
    est = MarketEstimators(tick_size=0.1)
    est.on_event(BestBidAsk(S, S, 100.0, 5.0, 100.1, 5.0))
    for ev in events:
        est.on_event(ev)
    return est


def test_the_prints_of_one_order_are_one_hawkes_event() -> None:
    est = _fed(_sweep(2 * S, 2 * S + 5 * MS, Side.BUY, 6))
    assert est.trades_seen == 6
    assert est.taker_orders_seen == 1
    assert est.hawkes.n_events == 1
    assert est.hawkes.last_event_ns == 2 * S + 5 * MS  # the first print's local time
    assert list(est._trade_times) == [2.0]  # the exchange time, in s
    assert list(est._order_local_ns) == [2 * S + 5 * MS]


@pytest.mark.parametrize(
    "second, orders",
    [
        ((2 * S, Side.BUY), 1),  # the same order's next print
        ((2 * S, Side.SELL), 2),  # the other side at the same exchange time: another taker
        ((2 * S + MS, Side.BUY), 2),  # the same side a millisecond later: another order
    ],
)
def test_an_order_is_its_exchange_time_and_aggressor(second, orders) -> None:
    exch, side = second
    a = Trade(2 * S, 2 * S + 3 * MS, 100.1, 0.01, Side.BUY, "a")
    b = Trade(exch, 2 * S + 3 * MS + 10 * US, 100.1 if side is Side.BUY else 100.0, 0.01, side, "b")
    est = _fed([a, b])
    assert est.trades_seen == 2
    assert est.taker_orders_seen == orders
    assert est.hawkes.n_events == orders


def test_the_fit_sees_orders_on_the_exchange_clock() -> None:
    """Poisson orders (rate 20/s, exchange time) swept into 1-6 prints each, delivered with 0-3 ms of jitter and µs
    apart: counted per print the fit would read a strongly self-exciting process; per order it finds the Poisson
    rate and little excitation."""
    rng = np.random.default_rng(7)
    t = 2 * S
    events: list = []
    for _ in range(1500):
        t += int(rng.exponential(1 / 20.0) * S) + 1
        exch = t - t % MS  # Binance stamps trades in ms
        side = Side.BUY if rng.random() < 0.5 else Side.SELL
        events += _sweep(exch, exch + int(rng.uniform(0, 3) * MS), side, int(rng.integers(1, 7)))
    events.sort(key=lambda e: e.ts_local_ns)
    est = _fed(events)
    est._refit_hawkes(est.now_ns)
    est.refresh(est.now_ns)
    fit = est.hawkes_fit
    assert est.taker_orders_seen <= 1500 and est.trades_seen > 3 * est.taker_orders_seen
    assert fit.n_events == 1000  # the last hawkes_fit_trades orders
    assert fit.ok
    assert fit.branching_ratio < 0.1, fit
    assert 15.0 < fit.mu_per_s / (1 - fit.branching_ratio) < 25.0, fit


def test_a_feed_without_exchange_times_keys_an_order_by_its_local_time() -> None:
    """ts_exch_ns 0 (no exchange time): prints at one local time by one aggressor are one order, as one message
    delivers them; each other print is its own."""
    a = [Trade(0, 2 * S, 100.1, 0.01, Side.BUY, f"a{i}") for i in range(3)]  # one message
    b = [Trade(0, 2 * S + 5 * US * (i + 1), 100.1, 0.01, Side.BUY, f"b{i}") for i in range(2)]
    est = _fed(a + b)
    assert est.trades_seen == 5
    assert est.taker_orders_seen == 3
    assert list(est._trade_times) == [2.0, 2.000005, 2.00001]


def test_orders_all_at_one_exchange_time_leave_the_fit_for_later_instead_of_failing() -> None:
    """A window of orders with no exchange-time span (here 80 alternating takers stamped with one exchange time)
    cannot be fitted: the re-fit is skipped and retried, the estimators go on."""
    events = [
        Trade(3 * S, 3 * S + i * MS, 100.1 if i % 2 else 100.0, 0.01, Side.BUY if i % 2 else Side.SELL, f"t{i}")
        for i in range(80)
    ]
    est = _fed(events)
    assert est.taker_orders_seen == 80
    est._refit_hawkes(est.now_ns)
    est.refresh(est.now_ns)
    assert est.hawkes_fit is None
    assert est._next_hawkes_fit_ns > est.now_ns


def test_the_estimate_report_counts_orders_and_their_deepest_levels() -> None:
    """estimate_events' taker_orders: prints grouped into orders, each at its deepest level against the touch in force
    before its first print; κ per order from the levels past the first one beyond the touch (geometric MLE)."""
    from apps.engine.estimators.market import estimate_events

    book = BestBidAsk(S, S, 100.0, 5.0, 100.1, 5.0)
    a = [Trade(2 * S, 2 * S + i * US, px, 0.01, Side.BUY, f"a{i}") for i, px in enumerate((100.1, 100.2, 100.3))]
    b = [Trade(3 * S, 3 * S, 100.0, 0.01, Side.SELL, "b")]
    c = [
        Trade(4 * S, 4 * S, 100.1, 0.01, Side.BUY, "c0"),
        BestBidAsk(4 * S + 1, 4 * S + 1, 100.1, 1.0, 100.2, 1.0),  # the book moved inside the order
        Trade(4 * S, 4 * S + 2, 100.2, 0.01, Side.BUY, "c1"),  # one level past the touch the order met
    ]
    end = BestBidAsk(12 * S, 12 * S, 100.1, 1.0, 100.2, 1.0)
    r = estimate_events([book, *a, *b, *c, end], tick_size=0.1)["taker_orders"]
    assert (r["orders"], r["prints"], r["orders_through_touch"]) == (3, 6, 2)
    assert r["prints_per_order"] == pytest.approx(2.0)
    assert r["orders_per_s"] == pytest.approx(3 / 11.0)
    # levels 2 and 1: excess 1 and 0, m = 1/2, q = 1/3; τ = 0.1/100.05 (both orders met the first book)
    assert r["kappa_per_order"] == pytest.approx(np.log(3.0) * 100.05 / 0.1)
    flat = estimate_events([book, *b, end], tick_size=0.1)["taker_orders"]
    assert flat["orders"] == 1 and flat["orders_through_touch"] == 0 and flat["kappa_per_order"] is None


def test_one_public_markout_per_order() -> None:
    """The adverse-selection estimate's public markouts: one per taker order (its prints share one mid and one
    future), not one per print. A book 0.5 bps wide, so the prints are within public_max_distance_bps."""
    est = MarketEstimators(tick_size=0.1)
    est.on_event(BestBidAsk(S, S, 10_000.0, 5.0, 10_000.1, 5.0))
    for i in range(5):  # one buy, five makers at the ask
        est.on_event(Trade(2 * S, 2 * S + i * US, 10_000.1, 0.01, Side.BUY, f"a{i}"))
    est.on_event(Trade(2 * S, 2 * S + 9 * US, 10_000.0, 0.01, Side.SELL, "b"))  # another order
    est.on_event(BestBidAsk(5 * S, 5 * S, 10_000.0, 5.0, 10_000.1, 5.0))  # past both horizons (1 s)
    assert est.trades_seen == 6 and est.taker_orders_seen == 2
    assert est.adverse.public_total == 2


def test_kappa_a_and_the_mean_order_size_take_one_observation_per_order() -> None:
    """GLFT's λ(δ) = A·e^{−κδ} counts orders reaching δ: a feed of sweeps gives the A of its orders' first prints
    alone, the κ of one row per order at its deepest print (against the touch before the order, not the book its own
    prints moved), and v̄ of the orders' summed sizes."""
    rng = np.random.default_rng(3)
    t = 2 * S
    sweeps: list = []
    firsts: list = []
    merged: list = []
    for k in range(300):
        t += int(rng.exponential(0.2) * S) + MS
        side = Side.BUY if rng.random() < 0.5 else Side.SELL
        n = int(rng.integers(1, 6))
        prints = _sweep(t, t + MS, side, n)
        book = BestBidAsk(t, t, 100.0, 5.0, 100.1, 5.0)  # the touch, back before each order
        moved = BestBidAsk(t, t + MS + 1, 100.0, 1.0, 100.2, 1.0) if side is Side.BUY else None
        sweeps += [book, prints[0]] + ([moved] if moved and n > 1 else []) + prints[1:]
        firsts += [book, prints[0]]
        deepest = max(prints, key=lambda p: abs(p.price - 100.05))
        merged += [book, Trade(t, t + MS, deepest.price, 0.01 * n, side, f"m{k}")]
    a, b, c = _fed(sweeps), _fed(firsts), _fed(merged)
    now = a.now_ns
    assert a.taker_orders_seen == b.taker_orders_seen == c.taker_orders_seen == 300
    assert a.trades_seen > 600
    # A: the arrival rate of orders, the same as a feed of their first prints only
    assert a.arrival.snapshot(now).value == b.arrival.snapshot(now).value
    # κ: one row per order at its deepest level; the same as a feed of one print per order at that level
    ka, kc = a.kappa.snapshot(now), c.kappa.snapshot(now)
    for key in ("n_orders", "avg_distance_bps", "avg_distance_beyond_touch_bps", "frac_orders_at_touch"):
        assert ka.detail[key] == pytest.approx(kc.detail[key], rel=1e-12), key
    assert ka.detail["volume"] == pytest.approx(kc.detail["volume"], rel=1e-12)
    assert ka.value == pytest.approx(kc.value, rel=1e-9)
    assert list(a._trade_depths) == pytest.approx(list(c._trade_depths), rel=1e-12)
    # v̄: an EWMA over the orders' sizes
    assert a.mean_trade_size == pytest.approx(c.mean_trade_size, rel=1e-12)
    assert a.mean_trade_size > 1.5 * b.mean_trade_size
