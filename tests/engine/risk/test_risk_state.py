"""The driver evaluates the session's risk rules on ``StrategyCore.risk_state()``, not the dashboard's ``state()``:
the two must give the rules the same values, and the rules must read nothing else.

On the shared USD-M recording (fills from the paper venue through the engine driver, risk
rules on), at every one of the driver's risk evaluations: ``risk_state()`` equals ``state()`` restricted to its
keys (compiled core and reference alike), and ``SessionRisk.evaluate`` given the whole ``state()`` reads only keys
``risk_state()`` has.
"""

from __future__ import annotations

import pytest

from apps.engine.core import PyStrategyCore, StrategyCore, StrategyParams
from apps.engine.risk.session import SessionRisk, build_risk_engine
from apps.engine.simulation.backtest import MARKET_TYPES, EngineLoop
from tests.engine.execution.test_fillmodel_equivalence import recording  # noqa: F401 - the fixture
from tools.engine_fingerprint import venue


class _Reads(dict):
    """A dict that notes every key read through ``get`` or ``[]``."""

    def __init__(self, *a, **k):
        super().__init__(*a, **k)
        self.read: set[str] = set()

    def get(self, key, default=None):
        self.read.add(key)
        return super().get(key, default)

    def __getitem__(self, key):
        self.read.add(key)
        return super().__getitem__(key)


@pytest.mark.parametrize("core_class", [StrategyCore, PyStrategyCore], ids=["compiled", "reference"])
@pytest.mark.parametrize("recording", ["usdm-btcusdt"], indirect=True)
def test_the_risk_rules_read_the_same_values_from_risk_state(recording, core_class):  # noqa: F811
    _, events, tick, lot = recording
    core = core_class(StrategyParams(), tick_size=tick, lot_size=lot)  # the engine fingerprint's GLFT
    max_inv = core.params.max_inventory
    # the recorder's clock runs ~1 s off the exchange's: the skew rule at 2 s, as in test_loop_equivalence
    risk = SessionRisk(*build_risk_engine({"clock_skew": {"max_abs_skew_ms": 2000.0}}, max_inv), max_inv)
    seen: list[tuple[dict, dict]] = []
    reads: set[str] = set()
    loop = EngineLoop(core, venue(tick, lot), risk=risk)
    evaluate = risk.evaluate

    def checked(now_ns, view, inputs):
        full = core.state()
        seen.append((dict(view), {k: full.get(k) for k in view}))
        spy = _Reads(full)
        out = evaluate(now_ns, spy, inputs)
        reads.update(spy.read)
        return out

    risk.evaluate = checked
    for ev in events:
        if isinstance(ev, MARKET_TYPES):
            loop.on_market(ev)
    assert loop.result.fills and len(seen) > 1000  # it fills; a risk evaluation every 100 ms of market time
    assert any(v["pnl"] not in (None, 0.0) for v, _ in seen)  # the slice trades: the P&L moves
    for view, full in seen:
        assert view == full
    assert reads and reads <= set(seen[0][0])
