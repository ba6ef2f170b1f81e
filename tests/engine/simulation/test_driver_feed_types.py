"""``EngineLoop.run``'s test of each feed item (``_backtest.pyx``): ``isinstance(event, MARKET_TYPES)``, answered by
the event's exact class when it is one of the tuple's plain classes, else asked as before. The compiled driver must
take exactly the items the reference takes, ask a metaclass's ``__instancecheck__`` exactly as often, and give the
same run, whatever ``MARKET_TYPES`` holds; and it skips the ``_after`` step only when that step has nothing to do.
"""

from __future__ import annotations

import dataclasses

import pytest

from apps.engine.core import CORE_COMPILED, StrategyCore
from apps.engine.execution.paper import PAPER_COMPILED
from apps.engine.market.events import BestBidAsk, DepthUpdate, OrderAck, Timer, Trade
from apps.engine.simulation import backtest
from apps.engine.simulation.backtest import DRIVER_COMPILED, MARKET_TYPES, EngineLoop, PyEngineLoop
from tests.engine.simulation.test_driver_direct_calls import _core, _digest, _events, _venue

pytestmark = pytest.mark.skipif(
    not (CORE_COMPILED and PAPER_COMPILED and DRIVER_COMPILED), reason="the compiled core, venue and driver"
)


class SubTrade(Trade):
    """A plain subclass: not one of the tuple's classes, but an instance of one (isinstance decides)."""

    __slots__ = ()


class SubBook(BestBidAsk):
    __slots__ = ()


def _as(cls, event):
    return cls(*(getattr(event, f.name) for f in dataclasses.fields(event)))


def _both(feed, **kw) -> list:
    out = []
    for cls in (EngineLoop, PyEngineLoop):
        result = cls(_core(), _venue(), **kw).run(feed)
        out.append((_digest(result), [repr(s) for s in result.pnl], [repr(f) for f in result.fills]))
    return out


def test_subclass_events_and_other_items_are_taken_or_skipped_as_the_reference_does():
    events = _events(12.0)
    feed: list = []
    for k, ev in enumerate(events):
        if k % 7 == 3 and type(ev) is Trade:
            ev = _as(SubTrade, ev)
        elif k % 11 == 5 and type(ev) is BestBidAsk:
            ev = _as(SubBook, ev)
        feed.append(ev)
        if k % 13 == 0:  # not market events: skipped
            feed.append(None)
            feed.append("tick")
            feed.append(7)
            feed.append(OrderAck(ev.ts_exch_ns, ev.ts_local_ns, "nobody", "open"))
    assert any(type(e) is SubTrade for e in feed) and any(type(e) is SubBook for e in feed)
    compiled, reference = _both(feed)
    assert compiled == reference
    assert compiled[0][0] == sum(isinstance(e, MARKET_TYPES) for e in feed) > 300
    # and the same as the feed without the foreign items, with the subclasses taken as market events
    assert compiled[0][0] == len(events)


def test_a_tuple_with_a_metaclass_asks_its_instancecheck_as_often_as_the_reference(monkeypatch):
    calls = {"n": 0}

    class Counting(type):
        def __instancecheck__(cls, instance):
            calls["n"] += 1
            return False

    class Never(metaclass=Counting):
        pass

    feed = _events(6.0)
    seen = []
    # first: asked for every item; after the book events: asked for the trades and what follows them
    for types in ((Never, *MARKET_TYPES), (BestBidAsk, DepthUpdate, Never, *MARKET_TYPES)):
        monkeypatch.setattr(backtest, "MARKET_TYPES", types)
        runs = []
        for cls in (EngineLoop, PyEngineLoop):
            calls["n"] = 0
            result = cls(_core(), _venue()).run(feed)
            runs.append((calls["n"], _digest(result)))
        assert runs[0] == runs[1]
        seen.append(runs[0][0])
    assert seen[0] == len(feed)
    assert 0 < seen[1] < len(feed)


@pytest.mark.parametrize(
    "types",
    [
        Trade,  # not a tuple: only the trades
        (Trade,),
        ((Trade, BestBidAsk), DepthUpdate),  # nested: isinstance walks it
        (SubTrade, BestBidAsk),  # the subclass listed, its base not: the plain trades are skipped
        tuple(MARKET_TYPES) + tuple(type(f"Extra{k}", (), {}) for k in range(12)),  # more classes than kept
        (Timer, DepthUpdate, Trade, BestBidAsk),  # another order
    ],
    ids=["class", "one", "nested", "subclass-only", "long", "reordered"],
)
def test_other_market_types_give_the_reference_run(monkeypatch, types):
    events = _events(6.0)
    feed = [(_as(SubTrade, e) if k % 5 == 0 and type(e) is Trade else e) for k, e in enumerate(events)]
    monkeypatch.setattr(backtest, "MARKET_TYPES", types)
    compiled, reference = _both(feed)
    assert compiled == reference
    assert compiled[0][0] == sum(isinstance(e, types) for e in feed)


def test_a_class_with_its_own_attribute_access_is_asked_by_isinstance(monkeypatch):
    """A listed class whose instances read ``__class__`` through their own ``__getattribute__``: isinstance (which
    reads it for every listed class before a match) is asked, so what that method returns decides, as in the
    reference."""
    reads = {"n": 0}

    class Loud(Timer):
        __slots__ = ()

        def __getattribute__(self, name):
            if name == "__class__":
                reads["n"] += 1
            return object.__getattribute__(self, name)

    class Lying(Timer):
        __slots__ = ()

        @property
        def __class__(self):
            return Trade

    events = _events(6.0)
    first = events[0]
    feed = list(events[:300])
    feed.insert(100, Loud(first.ts_exch_ns, events[99].ts_local_ns))
    types = (Trade, BestBidAsk, DepthUpdate, Loud)
    monkeypatch.setattr(backtest, "MARKET_TYPES", types)
    out = []
    for cls in (EngineLoop, PyEngineLoop):
        reads["n"] = 0
        result = cls(_core(), _venue()).run(feed)
        out.append((_digest(result), reads["n"] > 0))
    assert out[0] == out[1]
    # the Loud tick is taken, its __class__ read by isinstance
    assert out[0][0][0] == sum(isinstance(e, types) for e in feed) > 100 and out[0][1]
    # a Timer whose __class__ says Trade: isinstance takes it as a market event in both drivers, which then fail
    # alike on the fields it lacks
    feed = list(events[:300])
    feed.insert(200, Lying(first.ts_exch_ns, events[198].ts_local_ns))
    failures = []
    for cls in (EngineLoop, PyEngineLoop):
        with pytest.raises(AttributeError) as info:
            cls(_core(), _venue()).run(feed)
        failures.append(str(info.value))
    assert failures[0] == failures[1]


def test_the_after_step_is_skipped_only_when_it_has_nothing_to_do():
    """The compiled ``_market`` skips ``_after`` when the core returns no actions (None) and made no decision; a
    core that returns an empty list, or a decision without actions, goes through it, with the reference's run."""

    class EmptyLists(StrategyCore):
        def on_event(self, event):
            out = super().on_event(event)
            return [] if out is None else out

    events = _events(10.0)
    plain = EngineLoop(_core(), _venue()).run(events)
    lists = EngineLoop(_core(EmptyLists), _venue()).run(events)
    ref = PyEngineLoop(_core(), _venue()).run(events)
    assert _digest(plain) == _digest(lists) == _digest(ref)
    assert plain.stats.decisions > 10 and len(plain.decisions) == len(ref.decisions) == plain.stats.decisions
