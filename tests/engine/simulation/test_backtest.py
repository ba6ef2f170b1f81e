"""The backtest driver: conservation at every step, fills the market explains, determinism, time order."""

from __future__ import annotations

import itertools
import json
import random
from dataclasses import asdict

import pytest

from apps.engine.core import StrategyCore, StrategyParams
from apps.engine.execution.paper import PaperVenue, PaperVenueConfig
from apps.engine.market.events import BestBidAsk, DepthSnapshot, DepthUpdate, Fill, Side, Trade
from apps.engine.market.feeds import ReplayingFeed
from apps.engine.simulation.backtest import BacktestConfig, EngineLoop, merge_by_local_time
from apps.engine.simulation.baselines import FixedSpreadParams, FixedSpreadQuoter
from apps.engine.simulation.simulator import MarketSimulator, SimulatorParams
from tests.engine.variants import VARIANTS, select

SP = SimulatorParams()
FAST = {"sigma_bucket_s": 0.25, "sigma_min_buckets": 8, "kappa_min_volume": 0.05}


@pytest.fixture(autouse=True, params=VARIANTS)
def variant(request, monkeypatch):
    """Every test here runs against the reference venue and driver and against the compiled ones."""
    return select(request.param, monkeypatch, request.module)


def sim_events(seconds: float = 60.0, seed: int = 4) -> list:
    return list(MarketSimulator(SP, seed=seed).events(until_ns=SP.start_ts_ns + int(seconds * 1e9)))


def venue(seed: int = 1, **kw) -> PaperVenue:
    cfg = {"tick_size": SP.tick_size, "lot_size": SP.lot_size, "maker_fee": -0.0001, "taker_fee": 0.0004}
    cfg.update({"entry_latency_ns": 2_000_000, "response_latency_ns": 3_000_000, **kw})
    return PaperVenue(PaperVenueConfig(**cfg), seed=seed)


def fixed(**kw) -> FixedSpreadQuoter:
    params = FixedSpreadParams(**{"half_spread_bps": 1.0, "order_size": 0.01, "max_inventory": 0.1, **kw})
    return FixedSpreadQuoter(params, tick_size=SP.tick_size, lot_size=SP.lot_size)


def glft() -> StrategyCore:
    return StrategyCore(StrategyParams.from_dict(FAST), tick_size=SP.tick_size, lot_size=SP.lot_size)


def test_cash_plus_inventory_times_mid_is_the_pnl_and_components_sum_exactly_at_every_step() -> None:
    loop = EngineLoop(fixed(), venue(), BacktestConfig(markout_s=0.5, sample_interval_s=0.25))
    tracker = loop.strategy.tracker
    steps = 0
    for ev in sim_events(60):
        loop.on_market(ev)
        e = loop.ledger.exact()
        assert e.total == e.components_sum == e.cash + e.position * e.mid
        # the strategy's own books (floats) agree with the exact ledger
        assert tracker.position == pytest.approx(float(e.position), abs=1e-9)
        assert tracker.cash == pytest.approx(float(e.cash), abs=1e-6)
        steps += 1
    result = loop.finish()
    assert steps > 1000 and len(result.fills) > 20
    for p in result.pnl:
        assert p.total == pytest.approx(p.cash + p.position * p.mid, abs=1e-6)
        parts = p.spread_capture + p.adverse_selection + p.inventory + p.fees + p.funding
        assert parts == pytest.approx(p.total, abs=1e-9)


def test_no_fill_happens_at_a_price_the_market_did_not_reach() -> None:
    events = sim_events(90)
    result = EngineLoop(fixed(half_spread_bps=0.5), venue()).run(events)
    assert len(result.fills) > 20
    best_bid: float | None = None
    best_ask: float | None = None
    reached: dict[int, tuple[float, float]] = {}  # venue time -> (lowest sell reach, highest buy reach)
    for ev in events:
        lo, hi = reached.get(ev.ts_local_ns, (float("inf"), float("-inf")))
        if isinstance(ev, Trade):
            if ev.aggressor is Side.SELL:
                lo = min(lo, ev.price)
            else:
                hi = max(hi, ev.price)
        elif isinstance(ev, BestBidAsk):
            best_bid, best_ask = ev.bid_px, ev.ask_px
            lo, hi = min(lo, best_ask), max(hi, best_bid)
        reached[ev.ts_local_ns] = (lo, hi)
    assert best_bid is not None and best_ask is not None
    for f in result.fills:
        lo, hi = reached[f.ts_exch_ns]  # local venue clock: a fill happens at its trigger's local time
        if f.side is Side.BUY:
            assert lo <= f.price + 1e-9, f"buy fill at {f.price} but the market only reached down to {lo}"
        else:
            assert hi >= f.price - 1e-9, f"sell fill at {f.price} but the market only reached up to {hi}"
        assert f.liquidity == "maker"


def test_glft_fills_both_sides_and_respects_its_inventory_limit_on_the_simulator() -> None:
    result = EngineLoop(glft(), venue(), name="glft").run(sim_events(120))
    s = result.summary()
    assert s["fills_buy"] > 0 and s["fills_sell"] > 0
    assert s["max_abs_inventory"] <= StrategyParams().max_inventory + 1e-12
    assert s["events_processed"] == len(sim_events(120))
    assert set(s["pnl"]) == {"spread_capture", "adverse_selection", "inventory", "fees", "funding"}


def _fingerprint(result) -> str:
    return json.dumps(
        {
            "summary": result.summary(timing=False),
            "fills": [asdict(f) for f in result.fills],
            "decisions": [
                # the decision's typed input record is named when serialised, as the recorder does
                [d.ts_ns, d.bid_px, d.ask_px, d.bid_size, d.ask_size, dict(d.inputs), d.reasons]
                for d in result.decisions
            ],
            "pnl": [p.as_dict() for p in result.pnl],
        },
        sort_keys=True,
    )


def test_the_same_data_and_parameters_give_byte_identical_results() -> None:
    events = sim_events(60)
    a = _fingerprint(EngineLoop(glft(), venue(seed=9)).run(events))
    b = _fingerprint(EngineLoop(glft(), venue(seed=9)).run(events))
    assert a == b
    assert '"fills": []' not in a


def test_the_strategy_sees_every_event_in_local_time_order_even_with_latency() -> None:
    seen: list[int] = []

    class Spy(FixedSpreadQuoter):
        def on_event(self, event):
            seen.append(event.ts_local_ns)
            return super().on_event(event)

    strategy = Spy(
        FixedSpreadParams(half_spread_bps=0.5, order_size=0.01, max_inventory=0.1),
        tick_size=SP.tick_size,
        lot_size=SP.lot_size,
    )
    result = EngineLoop(strategy, venue(entry_latency_ns=7_000_000, response_latency_ns=11_000_000)).run(sim_events(30))
    assert result.stats.order_events > 50
    assert all(b >= a for a, b in itertools.pairwise(seen)), "an event was delivered after a later one"


def test_wall_clock_steps_of_any_size_give_the_same_decisions_and_fills_as_one_pass() -> None:
    events = sim_events(45)
    whole = EngineLoop(glft(), venue(seed=2)).run(events)
    rng = random.Random(0)
    stepped = EngineLoop(glft(), venue(seed=2))
    now = events[0].ts_local_ns
    feed = ReplayingFeed(events, start_ns=now)  # the live loop's replay feed, here with no time shift
    while not feed.exhausted:
        now += rng.choice([1_000_000, 50_000_000, 100_000_000, 700_000_000])
        stepped.step_until(feed.poll(now), now)
    stepped.finish()
    # the stepped driver's last wake-up lies up to 700 ms past the final market event, so acks due in that tail
    # reach its core (and may prompt one more decision) while the single pass ends at the last event
    end = events[-1].ts_local_ns
    assert [asdict(f) for f in stepped.result.fills if f.ts_local_ns <= end] == [
        asdict(f) for f in whole.fills if f.ts_local_ns <= end
    ]
    assert [d for d in stepped.result.decisions if d.ts_ns <= end] == [d for d in whole.decisions if d.ts_ns <= end]
    assert len(whole.fills) > 5


def test_depth_data_drives_the_mid_and_bad_config_is_rejected() -> None:
    loop = EngineLoop(fixed(), venue())
    loop.on_market(DepthSnapshot(1, 1, ((100.0, 1.0), (99.9, 2.0)), ((100.2, 1.0),)))
    assert loop.ledger.mid == pytest.approx(100.1)
    loop.on_market(DepthUpdate(2, 2, ((100.1, 1.0),), ()))
    assert loop.ledger.mid == pytest.approx(100.15)
    with pytest.raises(ValueError, match="sample_interval_s"):
        BacktestConfig(sample_interval_s=0).validate()
    with pytest.raises(ValueError, match="goes back in local time"):
        ReplayingFeed([BestBidAsk(5, 5, 1.0, 1.0, 2.0, 1.0), BestBidAsk(4, 4, 1.0, 1.0, 2.0, 1.0)], start_ns=5)


def test_merge_by_local_time_interleaves_streams() -> None:
    a = [BestBidAsk(t, t, 1.0, 1.0, 2.0, 1.0) for t in (1, 4, 6)]
    b = [Trade(t, t, 1.5, 1.0, Side.BUY) for t in (2, 4, 5)]
    assert [e.ts_local_ns for e in merge_by_local_time(a, b)] == [1, 2, 4, 4, 5, 6]


def test_fills_are_recorded_once_each() -> None:
    result = EngineLoop(fixed(), venue()).run(sim_events(30))
    ids = [f.fill_id for f in result.fills]
    assert len(ids) == len(set(ids)) and all(isinstance(f, Fill) for f in result.fills)


# --- the shared real data -----------------------------------------------------------------------------

REAL = {
    # name: (format, files under ../shared/data, events to replay, tick, lot, GLFT params, fixed params)
    "binance-usdm": (
        "binance-raw",
        ["hftbacktest-binance-usdm-btcusdt-20240808/raw/usdm_btcusdt_20240808.gz"],
        30_000,
        0.1,
        0.001,
        {"gamma": 1000.0, "order_size": 0.005, "max_inventory": 0.05},
        {"half_spread_bps": 1.0, "order_size": 0.005, "max_inventory": 0.05},
    ),
    "binance-spot": (
        "binance-raw",
        ["hftbacktest-binance-spot-btcusdt-20240808/raw/spot_btcusdt_20240808.gz"],
        30_000,
        0.01,
        0.00001,
        {"gamma": 1000.0, "order_size": 0.005, "max_inventory": 0.05},
        {"half_spread_bps": 1.0, "order_size": 0.005, "max_inventory": 0.05},
    ),
    "tardis-binance-futures": (
        "tardis",
        [
            "tardis-binance-futures-btcusdt-20200222/binance-futures_quotes_BTCUSDT_2020-02-22.csv.gz",
            "tardis-binance-futures-btcusdt-20200222/binance-futures_trades_BTCUSDT_2020-02-22.csv.gz",
        ],
        10_600,
        0.01,
        0.001,
        {"gamma": 1000.0, "order_size": 0.005, "max_inventory": 0.05, "kappa_min_volume": 0.2},
        {"half_spread_bps": 1.0, "order_size": 0.005, "max_inventory": 0.05},
    ),
    "lobster-amzn": (
        "lobster",
        ["lobster-amzn-20120621-level1/AMZN_2012-06-21_34200000_57600000_message_1.csv.gz"],
        12_000,
        0.01,
        1.0,
        {"gamma": 0.01, "order_size": 100.0, "max_inventory": 500.0, "kappa_min_volume": 500.0},
        {"half_spread_bps": 3.0, "order_size": 100.0, "max_inventory": 500.0},
    ),
}


def _real_events(fmt: str, files: list[str], limit: int) -> list:
    from apps.marketdata.parsers import Quarantined, parse_file
    from tests.conftest import shared_data

    streams = []
    for f in files:
        path = shared_data(*f.split("/"))
        streams.append([e for e in parse_file(fmt, path) if not isinstance(e, Quarantined)])
    events = streams[0] if len(streams) == 1 else list(merge_by_local_time(*streams))
    return events[:limit]


@pytest.mark.parametrize("name", list(REAL))
def test_on_the_shared_real_data_glft_beside_both_baselines(name: str) -> None:
    from apps.engine.simulation.baselines import ASParams, AvellanedaStoikovQuoter

    fmt, files, limit, tick, lot, glft_params, fixed_params = REAL[name]
    events = _real_events(fmt, files, limit)
    cfg = PaperVenueConfig(
        tick, lot, maker_fee=0.0, taker_fee=0.0005, entry_latency_ns=5_000_000, response_latency_ns=5_000_000
    )
    as_params = {k: v for k, v in glft_params.items() if k in ASParams.__dataclass_fields__}
    quoters = {
        "glft": StrategyCore(StrategyParams.from_dict(glft_params), tick_size=tick, lot_size=lot),
        "fixed": FixedSpreadQuoter(FixedSpreadParams(**fixed_params), tick_size=tick, lot_size=lot),
        "as": AvellanedaStoikovQuoter(ASParams(**as_params, horizon_s=10.0), tick_size=tick, lot_size=lot),
    }
    rows = {}
    for label, quoter in quoters.items():
        rows[label] = EngineLoop(quoter, PaperVenue(cfg, seed=1), name=label).run(events).summary()
    keys = (
        "median_quoted_spread_bps",
        "median_market_spread_bps",
        "median_bid_distance_ticks",
        "median_ask_distance_ticks",
        "fills_buy",
        "fills_sell",
        "max_abs_inventory",
        "pnl_total",
        "pnl.spread_capture",
        "pnl.adverse_selection",
        "pnl.inventory",
        "pnl.fees",
        "pnl.funding",
        "markout_mean_bps",
        "events_per_s",
    )
    span = rows["glft"]["span_s"]
    print(f"\n{name}: {len(events):,} events, {span:.0f} s, markout horizon 1 s")
    print(f"{'':28}" + "".join(f"{k:>14}" for k in rows))
    for key in keys:
        vals = [r["pnl"][key[4:]] if key.startswith("pnl.") else r[key] for r in rows.values()]
        print(f"{key:28}" + "".join(f"{v:>14.4g}" if isinstance(v, (int, float)) else f"{'—':>14}" for v in vals))
    g = rows["glft"]
    assert g["fills_buy"] > 0 and g["fills_sell"] > 0
    assert g["max_abs_inventory"] <= glft_params["max_inventory"] + 1e-9
