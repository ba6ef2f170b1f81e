"""The compiled hot path is what runs: a checkout where an extension did not build must fail here, not fall back.

``make test`` always builds the extensions first (the Makefile's rule on every .pyx), so this holds on every run of
the suite, in CI and on a developer's machine alike; only ``MM_PURE_PYTHON=1`` (set on purpose, for debugging)
selects the references, and then only the selection check is skipped: the module must still have built.
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from apps.engine import compiled
from apps.engine.execution import fillmodel
from apps.engine.market import book
from apps.engine.market.events import Side

ROOT = Path(__file__).resolve().parents[2]
COMPILED_MODULES = [
    "apps.engine.market._book",
    "apps.engine.execution._fillmodel",
    "apps.engine.execution._paper",
    "apps.engine.simulation._backtest",
    "apps.engine.accounting._pnl",
    "apps.engine.estimators._estimators",
    "apps.engine.quoting._depthprice",
    "apps.engine.quoting._quote",
    "apps.engine._core",
    "apps.engine.risk._session",
]


def _in_fresh_python(flag: str, code: str) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter with ``MM_PURE_PYTHON=flag``: the choice is made once, at import."""
    env = {**os.environ, "MM_PURE_PYTHON": flag}
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True)


@pytest.mark.parametrize("name", COMPILED_MODULES)
def test_every_compiled_module_is_built_and_is_a_native_extension(name):
    mod = importlib.import_module(name)  # ImportError here: the extension did not build (run `make build`)
    assert Path(mod.__file__).suffix == ".so", f"{name} was imported from {mod.__file__}, not a built extension"
    # an edited .pyx must never run stale: the built module is at least as new as its source
    pyx = ROOT / (name.replace(".", "/") + ".pyx")
    assert Path(mod.__file__).stat().st_mtime >= pyx.stat().st_mtime, f"{mod.__file__} is older than {pyx}"


def test_the_engine_uses_the_compiled_book_unless_told_otherwise():
    if compiled.pure_python():
        pytest.skip("MM_PURE_PYTHON is set: the references are selected on purpose")
    assert compiled.FALLBACKS == {}, f"compiled modules fell back to Python: {compiled.FALLBACKS}"
    assert book.BOOK_COMPILED and book.OrderBook is importlib.import_module("apps.engine.market._book").OrderBook
    from apps.engine.estimators.market import MarketEstimators

    assert type(MarketEstimators().book) is book.OrderBook


def test_the_paper_venue_uses_the_compiled_fill_model_unless_told_otherwise():
    if compiled.pure_python():
        pytest.skip("MM_PURE_PYTHON is set: the references are selected on purpose")
    assert compiled.FALLBACKS == {}, f"compiled modules fell back to Python: {compiled.FALLBACKS}"
    compiled_fm = importlib.import_module("apps.engine.execution._fillmodel")
    assert fillmodel.FILLMODEL_COMPILED
    assert fillmodel.LevelBook is compiled_fm.LevelBook and fillmodel.QueueState is compiled_fm.QueueState
    from apps.engine.execution.paper import PaperVenue, PaperVenueConfig

    venue = PaperVenue(PaperVenueConfig(tick_size=0.1, lot_size=0.001))
    assert type(venue.book) is compiled_fm.LevelBook
    assert type(venue._join_queue(Side.BUY, 1000)) is compiled_fm.QueueState


@pytest.mark.parametrize(("flag", "expect"), [("1", "PyOrderBook"), ("0", "OrderBook"), ("", "OrderBook")])
def test_mm_pure_python_selects_the_reference(flag, expect):
    code = "from apps.engine.market import book; print(book.OrderBook.__name__, book.OrderBook.__module__)"
    out = _in_fresh_python(flag, code)
    name, module = out.stdout.split()
    assert name == expect
    assert module == ("apps.engine.market.book" if flag == "1" else "apps.engine.market._book")


@pytest.mark.parametrize(
    ("flag", "expect"),
    [("1", "PyLevelBook PyQueueState"), ("yes", "PyLevelBook PyQueueState"), ("", "LevelBook QueueState")],
)
def test_mm_pure_python_selects_the_fill_model_reference(flag, expect):
    code = (
        "from apps.engine.execution import fillmodel as f; "
        "print(f.LevelBook.__name__, f.QueueState.__name__, f.LevelBook.__module__, f.QueueState.__module__)"
    )
    out = _in_fresh_python(flag, code)
    *names, m1, m2 = out.stdout.split()
    assert " ".join(names) == expect
    module = "apps.engine.execution.fillmodel" if expect.startswith("Py") else "apps.engine.execution._fillmodel"
    assert m1 == m2 == module


def test_the_engine_uses_the_compiled_venue_and_driver_unless_told_otherwise():
    if compiled.pure_python():
        pytest.skip("MM_PURE_PYTHON is set: the references are selected on purpose")
    assert compiled.FALLBACKS == {}, f"compiled modules fell back to Python: {compiled.FALLBACKS}"
    from apps.engine.core import StrategyCore, StrategyParams
    from apps.engine.execution import paper
    from apps.engine.simulation import backtest

    compiled_paper = importlib.import_module("apps.engine.execution._paper")
    compiled_driver = importlib.import_module("apps.engine.simulation._backtest")
    assert paper.PAPER_COMPILED and backtest.DRIVER_COMPILED
    assert paper.PaperVenue.__mro__[1:3] == (compiled_paper.PaperVenueBase, paper.PyPaperVenue)
    assert backtest.EngineLoop.__mro__[1:3] == (compiled_driver.EngineLoopBase, backtest.PyEngineLoop)
    # the per-event methods are the compiled ones, not the reference's
    assert paper.PaperVenue.on_market is compiled_paper.PaperVenueBase.on_market
    assert backtest.EngineLoop.on_market is compiled_driver.EngineLoopBase.on_market
    venue = paper.PaperVenue(paper.PaperVenueConfig(tick_size=0.1, lot_size=0.001))
    assert venue._resting_type is compiled_paper.Resting
    loop = backtest.EngineLoop(StrategyCore(StrategyParams(), tick_size=0.1, lot_size=0.001), venue)
    assert isinstance(loop, compiled_driver.EngineLoopBase) and isinstance(loop.venue, compiled_paper.PaperVenueBase)


@pytest.mark.parametrize(("flag", "expect"), [("1", "PyPaperVenue PyEngineLoop"), ("", "PaperVenue EngineLoop")])
def test_mm_pure_python_selects_the_venue_and_driver_references(flag, expect):
    code = (
        "from apps.engine.execution import paper; from apps.engine.simulation import backtest as b; "
        "print(paper.PaperVenue.__name__, b.EngineLoop.__name__, paper.PAPER_COMPILED, b.DRIVER_COMPILED)"
    )
    out = _in_fresh_python(flag, code)
    *names, c1, c2 = out.stdout.split()
    assert " ".join(names) == expect
    assert c1 == c2 == str(flag != "1")


ESTIMATOR_CLASSES = [
    ("adverse", "AdverseSelectionEstimator"),
    ("sigma", "SigmaEstimator"),
    ("microprice", "MicropriceRegression"),
    ("flow", "FlowImbalance"),
    ("flow", "TradeArrivalRate"),
    ("hawkes", "HawkesIntensity"),
    ("kappa", "TradeKappaEstimator"),
    ("depth_markout", "DepthMarkoutCurve"),
]


def test_market_estimators_use_the_compiled_estimators_unless_told_otherwise():
    if compiled.pure_python():
        pytest.skip("MM_PURE_PYTHON is set: the references are selected on purpose")
    assert compiled.FALLBACKS == {}, f"compiled modules fell back to Python: {compiled.FALLBACKS}"
    compiled_est = importlib.import_module("apps.engine.estimators._estimators")
    for module, name in ESTIMATOR_CLASSES:
        mod = importlib.import_module(f"apps.engine.estimators.{module}")
        assert mod.ESTIMATORS_COMPILED
        assert getattr(mod, name) is getattr(compiled_est, name), name
    from apps.engine.estimators.market import MarketEstimators

    est = MarketEstimators()
    for attr in ("adverse", "sigma", "microprice", "flow", "arrival", "hawkes", "kappa", "depth_markout"):
        assert type(getattr(est, attr)).__module__ == "apps.engine.estimators._estimators", attr
    # a book ticker and a trade are one compiled call each
    assert isinstance(est._on_bbo.__self__, compiled_est.MarketStep)
    assert isinstance(est._on_trade.__self__, compiled_est.MarketStep)
    # and the core calls that step at C level
    assert est.c_step is est._on_bbo.__self__ is est._on_trade.__self__


def test_market_estimators_keep_their_per_event_fields_in_c_slots():
    """``MarketEstimators`` subclasses ``_estimators.MarketFields`` when built, so the compiled per-event paths read its
    clock, counters and schedule as C fields; the reference's code reads them by name as before. The typed slots
    refuse what the reference never stores there (a float time) instead of converting it."""
    if compiled.pure_python():
        pytest.skip("MM_PURE_PYTHON is set: the references are selected on purpose")
    compiled_est = importlib.import_module("apps.engine.estimators._estimators")
    from apps.engine.estimators.market import MarketEstimators

    assert MarketEstimators.__bases__ == (compiled_est.MarketFields,)
    est = MarketEstimators()
    assert "_now_ns" not in est.__dict__ and "events_seen" not in est.__dict__
    assert (est._now_ns, est.events_seen, est._refresh_due_ns, est._has_bbo_stream) == (0, 0, 2**63 - 1, False)
    assert est._mean_trade_size != est._mean_trade_size  # NaN until the first trade
    est._now_ns = 1_722_000_000_123_456_789
    assert est.now_ns == 1_722_000_000_123_456_789
    with pytest.raises(TypeError, match="_now_ns takes an integer"):
        est._now_ns = 1.5e18  # Cython's own int64 conversion would have truncated it
    with pytest.raises(TypeError, match="events_seen takes an integer"):
        est.events_seen = True
    with pytest.raises(OverflowError):
        est._refresh_due_ns = 2**63
    assert est._now_ns == 1_722_000_000_123_456_789  # a refused write changes nothing


def test_int64_fields_take_every_int64_value_and_refuse_the_rest_at_the_digit_boundaries():
    """``strict_int64`` reads an exact int's value from its 30-bit digits in place (``_slots.pxd``: ``fast_i64``); at
    every digit-count boundary, the sign flips and the int64 limits, the stored value is the int given, and a value
    past int64 is refused, as the generic conversion does."""
    if compiled.pure_python():
        pytest.skip("MM_PURE_PYTHON is set: the references are selected on purpose")
    import random

    from apps.engine.estimators.market import MarketEstimators

    est = MarketEstimators()
    edges = [0, 1, 2**30 - 1, 2**30, 2**31, 2**60 - 1, 2**60, 2**62, 2**63 - 1, 1_722_000_000_123_456_789]
    rng = random.Random(7)
    values = edges + [-x for x in edges] + [-(2**63)] + [rng.randrange(-(2**63), 2**63) for _ in range(2000)]
    for v in values:
        est._now_ns = v
        assert type(est._now_ns) is int and est._now_ns == v
    for bad in (2**63, -(2**63) - 1, 2**90, -(2**90), 2**64 + 5):
        with pytest.raises(OverflowError):
            est._now_ns = bad
        assert est._now_ns == values[-1]


def test_the_strategy_core_keeps_its_clock_in_c_slots():
    """``StrategyCoreBase`` holds the core's event clock and last decision time as int64 C fields (the per-event path
    compares them without Python ints); the reference's code reads and writes them by name, and a write that is not
    an integer is refused instead of truncated."""
    if compiled.pure_python():
        pytest.skip("MM_PURE_PYTHON is set: the references are selected on purpose")
    from apps.engine.core import StrategyCore, StrategyParams

    core = StrategyCore(StrategyParams.from_dict({"max_inventory": 0.05}), tick_size=0.1, lot_size=0.001)
    assert "_now_ns" not in getattr(core, "__dict__", {}) and (core._now_ns, core._decision_ns) == (0, 0)
    core._now_ns = 1_722_000_000_123_456_789
    assert type(core._now_ns) is int and core._now_ns == 1_722_000_000_123_456_789
    with pytest.raises(TypeError, match="_now_ns takes an integer of ns"):
        core._now_ns = 1.5e18
    with pytest.raises(TypeError, match="_decision_ns takes an integer of ns"):
        core._decision_ns = True
    with pytest.raises(OverflowError):
        core._decision_ns = 2**63
    assert (core._now_ns, core._decision_ns) == (1_722_000_000_123_456_789, 0)  # a refused write changes nothing


def test_the_compiled_per_event_paths_read_the_events_by_slot_offset():
    """The core and the estimators' step read a book ticker's, a trade's and an estimate's fields by their slot offsets
    (apps/engine/_slots.pxd); a class that stopped being slotted would silently fall back to getattr: caught here."""
    if compiled.pure_python():
        pytest.skip("MM_PURE_PYTHON is set: the references are selected on purpose")
    from apps.engine import _core
    from apps.engine.estimators import _estimators

    assert _core.slot_reads_active()
    assert _estimators.slot_reads_active()
    from apps.engine.quoting import _quote

    assert _quote.slot_reads_active()  # MarketState's fields read, Level and QuoteResult built, by offset


@pytest.mark.parametrize("flag", ["1", ""])
def test_mm_pure_python_keeps_market_estimators_fields_in_its_dict(flag):
    code = (
        "from apps.engine.estimators.market import MarketEstimators\n"
        "e = MarketEstimators()\n"
        "print([b.__name__ for b in MarketEstimators.__bases__], '_now_ns' in e.__dict__)\n"
    )
    out = _in_fresh_python(flag, code).stdout.strip()
    assert out == ("['object'] True" if flag else "['MarketFields'] False")


@pytest.mark.parametrize("flag", ["1", "true", ""])
def test_mm_pure_python_selects_the_estimator_references(flag):
    code = (
        "import importlib\n"
        f"for mod, name in {ESTIMATOR_CLASSES!r}:\n"
        "    c = getattr(importlib.import_module('apps.engine.estimators.' + mod), name)\n"
        "    print(c.__name__, c.__module__)\n"
    )
    out = _in_fresh_python(flag, code)
    rows = [line.split() for line in out.stdout.splitlines()]
    assert len(rows) == len(ESTIMATOR_CLASSES)
    for (module, name), (got, where) in zip(ESTIMATOR_CLASSES, rows, strict=True):
        if flag:
            assert (got, where) == ("Py" + name, f"apps.engine.estimators.{module}")
        else:
            assert (got, where) == (name, "apps.engine.estimators._estimators")


def test_the_quoter_prices_the_depth_cost_with_the_compiled_loop_unless_told_otherwise():
    from apps.engine.quoting import quoter

    if compiled.pure_python():
        assert quoter.depth_priced_half_spread is quoter.py_depth_priced_half_spread
        return
    assert compiled.FALLBACKS == {}, f"compiled modules fell back to Python: {compiled.FALLBACKS}"
    mod = importlib.import_module("apps.engine.quoting._depthprice")
    assert quoter.DEPTHPRICE_COMPILED and quoter.depth_priced_half_spread is mod.depth_priced_half_spread


def test_the_strategy_core_and_the_quoter_are_the_compiled_ones_unless_told_otherwise():
    from apps.engine import core
    from apps.engine.quoting import quoter

    if compiled.pure_python():
        assert core.StrategyCore is core.PyStrategyCore and quoter.quote is quoter.py_quote
        return
    assert compiled.FALLBACKS == {}, f"compiled modules fell back to Python: {compiled.FALLBACKS}"
    compiled_core = importlib.import_module("apps.engine._core")
    assert core.CORE_COMPILED and core.StrategyCore.__mro__[1:3] == (
        compiled_core.StrategyCoreBase,
        core.PyStrategyCore,
    )
    assert core.StrategyCore.on_event is compiled_core.StrategyCoreBase.on_event
    assert quoter.QUOTE_COMPILED and quoter.quote is importlib.import_module("apps.engine.quoting._quote").quote


@pytest.mark.parametrize(("flag", "expect"), [("1", "PyStrategyCore py_quote"), ("", "StrategyCore quote")])
def test_mm_pure_python_selects_the_strategy_core_and_quoter_references(flag, expect):
    code = (
        "from apps.engine import core; from apps.engine.quoting import quoter as q; "
        "print(core.StrategyCore.__name__, q.quote.__name__, core.CORE_COMPILED, q.QUOTE_COMPILED)"
    )
    *names, c1, c2 = _in_fresh_python(flag, code).stdout.split()
    assert " ".join(names) == expect
    assert c1 == c2 == str(flag != "1")
