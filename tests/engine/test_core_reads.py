"""The compiled decision's estimator reads (``_book_signals``, ``_risk_features``, ``_expected_return`` and the ages in
``apps/engine/_core.pyx``) against the references they twin, in the states the shared recordings never reach.

On every recording the decision has both book sides, a usable Hawkes fit and an uncalibrated fill cascade
(tests/engine/test_core_equivalence.py compares those decisions). Here the reference ``PyStrategyCore`` and the
compiled ``StrategyCore`` replay the USD-M BTCUSDT recording in lockstep up to an event where the same change is made
to both (a calibrated fill cascade with recent fills, no Hawkes fit or a failed one, the ask side of the book emptied,
a pure-Python book with integer sizes); each then decides at once and replays on. After every event the core state
(with the γ features' slow references σ_ref, D_ref and their time) and after every decision the whole decision (every
input key in order, its type and exact bits) and the quoter's result must be the same.
"""

from __future__ import annotations

import dataclasses
import math

import pytest

from apps.engine.core import CORE_COMPILED, PyStrategyCore, StrategyCore, StrategyParams
from apps.engine.estimators.base import EstimatorState
from apps.engine.market.book import PyOrderBook
from apps.engine.market.events import DepthSnapshot, DepthUpdate, Side
from apps.marketdata.recordings import BINANCE_RAW_RECORDINGS, load_binance_raw
from tests.engine.execution.test_fillmodel_equivalence import DATA
from tests.engine.test_core_equivalence import _decision, _state

pytestmark = pytest.mark.skipif(not CORE_COMPILED, reason="the compiled strategy core is not selected")

_CHANGE_AT = 20_000  # events replayed before the change (the estimators are warm, the core has been quoting)
_AFTER = 6_000  # events replayed after it


@pytest.fixture(scope="module")
def usdm():
    files, tick, lot = BINANCE_RAW_RECORDINGS["usdm-btcusdt"]
    missing = [f for f in files if not (DATA / f).exists()]
    if missing:
        pytest.skip(f"shared recording missing: {missing}")
    return load_binance_raw(DATA, files)[: _CHANGE_AT + _AFTER], tick, lot


def test_the_decision_reads_through_twins_of_the_current_references():
    """The twins were written against these references; a changed reference (or Python version) fails here."""
    from apps.engine import _core

    assert _core.reference_digests() == _core.twinned_digests()
    assert _core.reads_twinned()


def _calibrated_cascade(core):
    m = core.market
    fc = m.fill_cascade
    fc.calibrate(m.hawkes_fit)  # the trade tape's fit: state OK, the risk_features' fill-cascade term runs
    now = core._now_ns
    for i in range(6):  # a burst of our bids taken: the buy side's excess intensity is far above its baseline
        fc.update(now - 50_000_000 + i * 10_000_000, Side.BUY)
    assert fc._state is EstimatorState.OK and fc.excess_ratio(Side.BUY, now) > 1.0


def _no_hawkes_fit(core):
    core.market.hawkes_fit = None


def _failed_hawkes_fit(core):
    m = core.market
    m.hawkes_fit = dataclasses.replace(m.hawkes_fit, state=EstimatorState.FAILED, message="test")


def _no_asks(core):
    book = core.market.book
    asks = tuple((px, 0.0) for px, _ in book.asks())
    book.apply_update(DepthUpdate(core._now_ns, core._now_ns, (), asks))
    assert book.n_ask_levels == 0 and book.n_bid_levels > 0


_THIN: dict[str, float] = {}  # the thin book's imbalance over its levels, as book_signals computes it


def _thin_book(core):
    """Fewer levels on each side than the decision's queues and the imbalance read (the compiled book's ``head``
    stops at the book's last level): two bids and three asks left."""
    book = core.market.book
    now = core._now_ns
    gone_bids = tuple((px, 0.0) for px, _ in book.bids()[2:])
    gone_asks = tuple((px, 0.0) for px, _ in book.asks()[3:])
    book.apply_update(DepthUpdate(now, now, gone_bids, gone_asks))
    assert book.n_bid_levels == 2 and book.n_ask_levels == 3
    assert core.market.config.imbalance_levels > 3 and core.quoter_params.levels + 5 > 3
    b, a = sum(s for _, s in book.bids()), sum(s for _, s in book.asks())
    _THIN["imbalance"] = (b - a) / (b + a)


def _python_book_int_sizes(core):
    m = core.market
    book = PyOrderBook(checked=False)
    bids = tuple((px, int(sz * 1000) + 1) for px, sz in m.book.bids())
    asks = tuple((px, int(sz * 1000) + 1) for px, sz in m.book.asks())
    book.apply_snapshot(DepthSnapshot(core._now_ns, core._now_ns, bids, asks, 1))
    m.book = book


_CHANGES = {
    "fill-cascade-calibrated": _calibrated_cascade,
    "no-hawkes-fit": _no_hawkes_fit,
    "failed-hawkes-fit": _failed_hawkes_fit,
    "no-asks": _no_asks,
    "python-book-int-sizes": _python_book_int_sizes,
    "thin-book": _thin_book,
}
# what the decision at the change shows of the path it took (its inputs)
_SHOWN = {
    "fill-cascade-calibrated": lambda i: i["gamma_x_cascade_intensity"] > 0.5,  # log1p of an excess ratio > 1
    "no-hawkes-fit": lambda i: i["gamma_x_cascade_intensity"] == 0.0,
    "failed-hawkes-fit": lambda i: i["gamma_x_cascade_intensity"] == 0.0,
    "no-asks": lambda i: math.isnan(i["depth_near"]) and i["book_imbalance"] == 0.0,
    # the reference book sums int sizes to an int: the reads' type checks send both twins to the references (the
    # decision's typed record holds it as a double: an integral one, where the recording's sizes sum to fractions)
    "python-book-int-sizes": lambda i: i["depth_near"] >= 1 and i["depth_near"] == int(i["depth_near"]),
    "thin-book": lambda i: i["book_imbalance"] == _THIN["imbalance"],
}


def _decide(core):
    """A decision now, as ``_decide`` would make it if something had changed."""
    m = core.market
    now = core._now_ns
    key = (m.bbo.bid_px, m.bbo.ask_px, core.tracker.position, m.version, core.halted)
    return core._decide_now(now, key, m.cached_snapshots(now))


@pytest.mark.parametrize("change", list(_CHANGES))
def test_the_compiled_reads_are_the_reference_in_states_the_recordings_never_reach(usdm, change):
    events, tick, lot = usdm
    p = StrategyParams.from_dict({"max_inventory": 0.05})
    ref, com = PyStrategyCore(p, tick_size=tick, lot_size=lot), StrategyCore(p, tick_size=tick, lot_size=lot)
    decisions = 0
    inputs: set[str] = set()  # the input keys of the decisions after the change
    for n, ev in enumerate(events):
        if n == _CHANGE_AT:
            for core in (ref, com):
                _CHANGES[change](core)
                _decide(core)
            assert _state(com) == _state(ref)
            assert _decision(com) == _decision(ref), "the decision at the change"
            assert repr(com.last_quote) == repr(ref.last_quote)
            assert _SHOWN[change](ref.last_decision.inputs), ref.last_decision.inputs
            decisions = ref.decisions_computed
        for core in (ref, com):
            core.on_event(ev)
            core.refresh()
        assert _state(com) == _state(ref), f"core state after event {n}"
        if ref.decisions_computed != decisions:
            decisions = ref.decisions_computed
            assert _decision(com) == _decision(ref), f"decision after event {n}"
            assert repr(com.last_quote) == repr(ref.last_quote), f"quote after event {n}"
            if n > _CHANGE_AT:
                inputs.update(ref.last_decision.inputs)
    assert com.decisions_computed > 100
    assert inputs, "no decision after the change"
