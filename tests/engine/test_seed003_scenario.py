"""Seed 003's losing session, replayed: short 8.65 units through a steady +38 bps rise.

The original system quoted with skew_bps = 0.00 the whole time (a magnitude bug plus overrides) and its drift
moved by -1.7 bps against a +38 bps trend. Here the same situation goes through the real strategy core:
the quotes must skew well beyond 1 bp (ask pulled up, bid moved toward the market), the small-skew flag must
stay quiet, and the drift estimate must turn positive.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from apps.engine.core import StrategyCore, StrategyParams
from apps.engine.market.events import BestBidAsk, Side, Trade

TICK, LOT = 0.1, 0.001
START = 1_700_000_000 * 10**9
Q0 = -8.65


def rising_market(seconds: float = 600.0, rise_bps: float = 38.0, sigma: float = 3e-5, seed: int = 3):
    """A one-tick book whose mid rises steadily by ``rise_bps`` over ``seconds`` with diffusive noise, and a
    tape with 65 % buy aggressors at geometric depths beyond the touch (κ = 5000)."""
    rng = np.random.default_rng(seed)
    dt = 0.1
    n = int(seconds / dt)
    mu = math.log1p(rise_bps * 1e-4) / seconds
    log_mid = math.log(60_000.0) + np.cumsum(mu * dt + sigma * math.sqrt(dt) * rng.standard_normal(n))
    events = []
    for i in range(n):
        ts = START + int(i * dt * 1e9)
        mid = math.exp(log_mid[i])
        bid = math.floor(mid / TICK) * TICK
        bid, ask = round(bid, 1), round(bid + TICK, 1)
        events.append(BestBidAsk(ts, ts, bid, float(rng.uniform(0.5, 3.0)), ask, float(rng.uniform(0.5, 3.0))))
        if rng.random() < 0.5:  # 5 trades per second
            side = Side.BUY if rng.random() < 0.65 else Side.SELL
            beyond = int(rng.geometric(1 - math.exp(-5000 * TICK / mid))) - 1
            px = ask + beyond * TICK if side is Side.BUY else bid - beyond * TICK
            t = ts + 50_000_000
            events.append(Trade(t, t, round(px, 1), float(rng.choice([0.01, 0.05, 0.2])), side))
    return events


@pytest.mark.parametrize("skew_cap", [False, True], ids=["model-skew", "skew-capped"])
def test_short_inventory_in_a_rise_skews_the_quotes_and_the_drift_responds(skew_cap):
    # γ 3000 (was 1000 under the AS inventory term γσ²T·q): the GLFT skew σ·c2·q grows as √γ
    params = StrategyParams.from_dict(
        {
            "max_inventory": 10.0,
            "order_size": 0.5,
            "gamma": 3000.0,
            "horizon_s": 300.0,
            "skew_cap_by_fill_cost": skew_cap,
        }
    )
    core = StrategyCore(params, tick_size=TICK, lot_size=LOT, initial_position=Q0)
    decisions = []
    for ev in rising_market():
        core.on_event(ev)
        d = core.last_decision
        if isinstance(ev, BestBidAsk) and d is not None and d.bid_px is not None:
            decisions.append(d)
    assert len(decisions) > 100, "the core never quoted"
    late = decisions[len(decisions) // 2 :]
    for d in late:
        i = d.inputs
        assert i["q"] == Q0
        mid, delta = i["mid"], i["half_spread_frac"]
        # the model's |skew| well above 1 bp, in the direction that buys back the short (reservation above mid)
        assert i["skew_model_frac"] * 1e4 < -5.0, i["skew_model_frac"]
        if skew_cap:
            # quoted: bounded by the skew cap (the bid no nearer the mid than the shallowest depth where a fill
            # earns its measured cost), still above the flag's 1 bp here and in the same direction
            assert i["skew_frac"] == -i["skew_cap_frac"] and i["skew_bps"] < -1.0, (i["skew_bps"], i["skew_cap_frac"])
            assert "skew capped" in " ".join(d.reasons)
        else:
            assert i["skew_bps"] == i["skew_model_frac"] * 1e4 < -5.0, i["skew_bps"]
        assert i["inventory_term_frac"] < 0 and i["reservation_price"] > mid
        assert i["skew_too_small"] == 0.0
        # ask pulled up beyond the symmetric half-spread; bid moved toward (or onto) the market
        assert d.ask_px - mid > delta * mid
        assert mid - d.bid_px < delta * mid
        assert d.bid_px < i["best_ask"]  # post-only: never through the touch
    # the drift filter responds to the rise: positive on average over the second half and usable
    drift = np.array([d.inputs["drift_mean_per_s"] for d in late])
    trend_per_s = math.log1p(38e-4) / 600.0
    assert np.mean(drift) > 0.25 * trend_per_s, (np.mean(drift), trend_per_s)
    assert np.mean([d.inputs["drift_ok"] for d in late]) > 0.9
    assert np.mean([d.inputs["drift_term_frac"] for d in late]) > 0
    state = core.state()
    assert state["skew_bps"] is not None and abs(state["skew_bps"]) > (1.0 if skew_cap else 5.0)


def test_the_same_market_with_a_flat_book_does_not_skew():
    core = StrategyCore(
        StrategyParams.from_dict({"max_inventory": 10.0, "order_size": 0.5}), tick_size=TICK, lot_size=LOT
    )
    for ev in rising_market(seconds=120.0):
        core.on_event(ev)
    d = core.last_decision
    assert d is not None and d.inputs["q"] == 0.0
    assert d.inputs["inventory_term_frac"] == 0.0
