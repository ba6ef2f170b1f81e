"""The compiled strategy core's per-event path and its pure-Python reference agree exactly, on every shared recording.

``apps/engine/_core.pyx`` (``StrategyCore``) against ``PyStrategyCore`` (:mod:`apps.engine.core`), everything else
the same: each in its own backtest (the engine fingerprint's venue, 5 ms each way), the two driven in lockstep
through every market event of the three Binance recordings with GLFT at its defaults and with the fill cost by
depth off, and with a ladder of three levels, modified orders, a tight Q_max and an early taker (the guard, the
modify and the taker paths), whose parameters change mid-way through ``apply_params`` (γ, the requote rule, the
fill cost by depth). After **every** event: the actions the core returned (by ``repr``, exact for floats), whether
the decision changed, the decision key (touch, position, estimates' version, halt), the decision count and time,
the estimators' clock, counters, version and γ-feature references (σ_ref, D_ref, their time), the position and cash,
the guard's skips and the order sequence.
After **every** decision (the compiled ``_decide_now``, ``_set`` and ``_reconcile`` against the reference's): the
whole decision, its time, prices and sizes, every input key in order with its type and exact bits, the reasons;
and the quoter's full result by ``repr`` (ladders, taker). At the end, the fingerprint tool's digests of every
decision and fill.
"""

from __future__ import annotations

import math
import random
import struct

import pytest

from apps.engine.core import CORE_COMPILED, PyStrategyCore, StrategyCore, StrategyParams
from apps.engine.execution.orders import OrderTracker
from apps.engine.execution.paper import PaperVenue
from apps.engine.market.events import CancelOrder, Fill, ModifyOrder, OrderAck, PlaceOrder, Side
from apps.engine.quoting.quoter import Level, QuoteResult
from apps.engine.simulation.backtest import MARKET_TYPES, EngineLoop
from tests.engine.execution.test_fillmodel_equivalence import EVENTS, recording  # noqa: F401 - the fixture
from tools.engine_fingerprint import digest, venue

pytestmark = pytest.mark.skipif(not CORE_COMPILED, reason="the compiled strategy core is not selected")


class _Recorder:
    """Wraps a core's ``on_event`` to keep what it returned for the comparison."""

    def __init__(self, core) -> None:
        self.core = core
        self.returned: list[str] = []
        self.kinds: set[str] = set()  # the action types returned

    def __getattr__(self, name):
        return getattr(self.core, name)

    def on_event(self, event):
        actions = self.core.on_event(event)
        self.returned.append(repr(actions))
        self.kinds.update(f"{type(a).__name__}{getattr(a, 'tif', '')}" for a in actions)
        return actions


def _exact(v):
    """A value as its type and, for a float, its exact bits (so -0.0 != 0.0, NaN == NaN and 1 != 1.0)."""
    return (type(v).__name__, struct.pack("<d", v) if type(v) is float else v)


def _decision(core) -> tuple:
    """The last decision, exactly: what the decision record serialises, in its key order."""
    d = core.last_decision
    return (
        d.ts_ns,
        _exact(d.bid_px),
        _exact(d.ask_px),
        _exact(d.bid_size),
        _exact(d.ask_size),
        tuple((k, _exact(v)) for k, v in d.inputs.items()),
        d.reasons,
    )


def _step_both(ref, fast, ev, where: str) -> None:
    """``ev`` through both cores, each followed by its refresh step: the same actions and the same state after it
    (``where`` names the event in the failure messages). The lockstep the core's equivalence tests share."""
    a = ref.on_event(ev)
    ref.refresh()
    b = fast.on_event(ev)
    fast.refresh()
    assert repr(b) == repr(a), f"{where}: actions differ"
    assert _state(fast) == _state(ref), f"{where}: state differs"


def _state(core) -> tuple:
    m, t = core.market, core.tracker
    return (
        core._now_ns,
        core.decisions_changed,
        core._decision_key,
        core._decision_ns,
        core.decisions_computed,
        core.fills,
        core.halted,
        core.inventory_guard_skips,
        core._seq,
        repr(core._peak_pnl),
        m.now_ns,
        m._first_ns,
        m.events_seen,
        m.non_market_trades,
        m.trades_seen,
        m._kappa_trades_since,
        m._refresh_due_ns,  # the refresh schedule the core's per-event check reads as C fields
        m._kappa_min_due_ns,
        m.version,
        (repr(m._sigma_ref), repr(m._depth_ref), m._ref_t_ns),  # what risk_features keeps between decisions
        repr(t.position),
        repr(t.cash),
    )


# a ladder, modifies, a tight Q_max, a huge γ and a free taker: the guard, modify and taker paths of the
# reconciliation (the taker fires on the USD-M BTCUSDT file)
_LADDER = {
    "levels": 3,
    "modify_orders": True,
    "requote_ticks": 2,
    "max_inventory": 0.012,
    "taker_trigger_ratio": 0.3,
    "taker_fee_bps": 0.0,
    "gamma": 2e7,
}
_SWITCH_AT = 30_000  # events; then the ladder's parameters change through apply_params
_SWITCH = {
    "gamma": 1e7,
    "requote_ticks": 5,
    "modify_orders": False,
    "fill_cost_by_depth": False,
    "decision_interval_s": 0.2,
}


@pytest.mark.parametrize(
    "params", [{}, {"fill_cost_by_depth": False}, _LADDER], ids=["defaults", "no-depth-cost", "ladder-apply-params"]
)
def test_the_strategy_core_is_identical_compiled_and_in_python(recording, params):  # noqa: F811
    name, events, tick, lot = recording
    p = StrategyParams.from_dict(params)
    ref_core, com_core = PyStrategyCore(p, tick_size=tick, lot_size=lot), StrategyCore(p, tick_size=tick, lot_size=lot)
    assert type(com_core).on_event is not PyStrategyCore.on_event
    assert type(com_core)._decide_now is not PyStrategyCore._decide_now
    assert type(com_core)._reconcile is not PyStrategyCore._reconcile
    ref_rec, com_rec = _Recorder(ref_core), _Recorder(com_core)
    cfg = venue(tick, lot).config
    ref = EngineLoop(ref_rec, PaperVenue(cfg, seed=1), name="ref")
    com = EngineLoop(com_rec, PaperVenue(cfg, seed=1), name="com")
    n = 0
    decisions = 0
    for ev in events:
        if not isinstance(ev, MARKET_TYPES):
            continue
        if params is _LADDER and n == _SWITCH_AT:
            switched = StrategyParams.from_dict({**params, **_SWITCH})
            ref_core.apply_params(switched)
            com_core.apply_params(switched)
        ref.on_market(ev)
        com.on_market(ev)
        n += 1
        assert com_rec.returned == ref_rec.returned, f"{name}: actions after event {n} ({type(ev).__name__})"
        assert _state(com_core) == _state(ref_core), f"{name}: core state after event {n} ({type(ev).__name__})"
        com_rec.returned.clear()
        ref_rec.returned.clear()
        if ref_core.decisions_computed != decisions:
            decisions = ref_core.decisions_computed
            assert _decision(com_core) == _decision(ref_core), f"{name}: decision after event {n}"
            assert repr(com_core.last_quote) == repr(ref_core.last_quote), f"{name}: quote after event {n}"
    got, want = com.finish(), ref.finish()
    assert n == EVENTS[name]
    assert repr(com_core.last_decision) == repr(ref_core.last_decision)
    assert digest(got.decisions) == digest(want.decisions) and digest(got.fills) == digest(want.fills)
    assert len(got.fills) > 0 and com_core.decisions_computed > 100, f"{name}: the decision path was not compared"
    if params is _LADDER and name == "usdm-btcusdt":  # the paths this case is for were taken
        kinds = ref_rec.kinds
        assert {"PlaceOrderPOST_ONLY", "PlaceOrderIOC", "CancelOrder", "ModifyOrder"} <= kinds, kinds
        assert ref_core.inventory_guard_skips > 0


# --- the reconciliation on generated order books ------------------------------------------------------------------


def _tracker(rng: random.Random, position: float) -> OrderTracker:
    """A tracker with up to six orders on random sides, prices, sizes, time-in-force and states."""
    t = OrderTracker(initial_position=position)
    for i in range(rng.randint(0, 6)):
        cid = f"o{i}"
        side = rng.choice((Side.BUY, Side.SELL))
        price = 100.0 + rng.randint(-12, 12) * 0.1  # on the grid up to float noise
        size = rng.choice((0.001, 0.002, 0.005, 0.01))
        tif = rng.choice(("POST_ONLY", "POST_ONLY", "POST_ONLY", "GTC", "IOC"))
        t.on_actions([PlaceOrder(cid, side, price, size, tif=tif)])
        state = rng.choice(("pending_new", "open", "open", "open", "partial", "cancelling", "modifying"))
        if state == "pending_new":
            continue
        t.on_event(OrderAck(1, 1, cid, "open", price, size))
        if state == "partial":
            t.on_event(Fill(2, 2, cid, f"f{i}", side, price, 0.001, remaining=round(size - 0.001, 12)))
        elif state == "cancelling":
            t.on_actions([CancelOrder(cid)])
        elif state == "modifying":
            t.on_actions([ModifyOrder(cid, price + 0.1, size)])
    return t


def _levels(rng: random.Random, side: Side) -> tuple:
    sign = -1 if side is Side.BUY else 1
    start = rng.randint(-3, 3)
    return tuple(
        Level(side, i, 100.0 + (start + sign * i * rng.randint(1, 4)) * 0.1, rng.choice((0.001, 0.005, 0.02)), 0, 0, 0)
        for i in range(rng.randint(0, 3))
    )


def test_the_compiled_reconciliation_is_the_reference_on_generated_order_books():
    """``_reconcile`` (``reconcile_side`` per side, then the taker) on 4,000 generated trackers and quotes: the
    same actions (by ``repr``: ids, prices, sizes, order), the same guard skips and order sequence."""
    rng = random.Random(15)
    seen: set[str] = set()
    for case in range(4000):
        p = StrategyParams.from_dict(
            {
                "requote_ticks": rng.choice((0, 1, 2, 3, 30)),
                "modify_orders": rng.random() < 0.4,
                "max_inventory": rng.choice((0.004, 0.01, 0.05)),
            }
        )
        position = rng.choice((0.0, 0.002, -0.002, 0.009, -0.009, 0.05))
        state = rng.getstate()
        cores = []
        for cls in (PyStrategyCore, StrategyCore):
            rng.setstate(state)
            core = cls(p, tick_size=0.1, lot_size=0.001)
            core.tracker = _tracker(rng, position)
            core._seq = 7
            bids, asks = _levels(rng, Side.BUY), _levels(rng, Side.SELL)
            taker = rng.choice((None, None, Side.BUY, Side.SELL))
            size = rng.choice((0.0, 0.001, 0.003)) if taker is not None else 0.0
            result = QuoteResult(1, bids, asks, {}, (), taker, size, 100.0 if taker is not None else math.nan)
            cores.append((core, core._reconcile(result)))
        (ref, want), (com, got) = cores
        assert repr(got) == repr(want), f"case {case}"
        assert (com.inventory_guard_skips, com._seq) == (ref.inventory_guard_skips, ref._seq), f"case {case}"
        seen.update(f"{type(a).__name__}{getattr(a, 'tif', '')}" for a in want)
        seen.update(("guard",) if ref.inventory_guard_skips else ())
    assert {"PlaceOrderPOST_ONLY", "PlaceOrderIOC", "CancelOrder", "ModifyOrder", "guard"} <= seen, seen
