"""The decision's queues from the compiled book (``QueueLevels``, ``apps/engine/market/_book.pyx``) behave as the dict
``dict(book.bids(n))`` they replace: the same items in the same order, the same lookups (a float price, an equal
int, an absent price, an unhashable key), equal to that dict both ways; and a quote from a market state holding them
is the same, bit for bit, as one from the dicts, in the compiled quoter and the reference."""

from __future__ import annotations

import pickle
import random
import struct
from collections.abc import Mapping
from dataclasses import replace

import pytest

from apps.engine.market.events import DepthUpdate, Side
from apps.engine.quoting.quoter import MarketState, QuoterParams, py_quote
from apps.engine.quoting.risk_aversion import RiskAversionParams

_book = pytest.importorskip("apps.engine.market._book", reason="the compiled book is not built")
_quote = pytest.importorskip("apps.engine.quoting._quote", reason="the compiled quoter is not built")


def _random_book(rng: random.Random, n_bid: int, n_ask: int) -> _book.OrderBook:
    book = _book.OrderBook()
    bids = tuple((round(100.0 - 0.1 * (i + 1) - 0.1 * rng.randrange(3), 1), rng.choice([0.001, 0.5, 1.25, 7.0]))
                 for i in range(n_bid))  # fmt: skip
    asks = tuple((round(100.0 + 0.1 * i + 0.1 * rng.randrange(3), 1), rng.choice([0.002, 0.3, 2.5]))
                 for i in range(n_ask))  # fmt: skip
    book.apply_update(DepthUpdate(1, 1, bids, asks))
    return book


@pytest.mark.parametrize("seed", range(40))
def test_queue_levels_hold_what_the_dict_holds(seed):
    rng = random.Random(seed)
    book = _random_book(rng, rng.randrange(0, 60), rng.randrange(0, 60))
    for side, levels in ((Side.BUY, book.bids), (Side.SELL, book.asks)):
        for n in (0, 1, 6, 16, 17, 40, 200):  # the inline buffer (16) and past it
            q = book.queue_levels(side, n)
            d = dict(levels(n))
            assert isinstance(q, Mapping)
            assert q == d and d == q
            assert not (q != d)  # noqa: SIM202 - __ne__ itself is under test
            assert len(q) == len(d)
            assert list(q) == list(d) and q.keys() == list(d.keys())
            assert q.items() == list(d.items()) and q.values() == list(d.values())
            assert q.as_dict() == d and list(q.as_dict()) == list(d)
            for px in [*d, 0.05, -1.0, 1e9]:
                assert q.get(px) == d.get(px)
                assert q.get(px, "absent") == d.get(px, "absent")
                assert (px in q) == (px in d)
                if px in d:
                    assert struct.pack("<d", q[px]) == struct.pack("<d", d[px])
                else:
                    with pytest.raises(KeyError):
                        q[px]
            assert pickle.loads(pickle.dumps(q)) == d


def test_lookups_match_a_dict_for_other_keys():
    book = _book.OrderBook()
    book.apply_update(DepthUpdate(1, 1, ((100.0, 1.5), (99.5, 2.0)), ((101.0, 3.0),)))
    q, d = book.queue_levels(Side.BUY, 5), dict(book.bids(5))
    assert q.get(100) == d.get(100) == 1.5  # an int equal to a price finds it, as in a dict
    assert q.get(True) == d.get(True)  # True == 1: absent here
    with pytest.raises(TypeError):
        q.get([100.0])
    with pytest.raises(TypeError):
        d.get([100.0])
    assert q != {100.0: 1.5} and q != {100.0: 1.5, 99.5: 2.0, 1.0: 0.0}
    assert (q == [100.0, 99.5]) is False
    with pytest.raises(TypeError):
        hash(q)
    with pytest.raises(ValueError, match="n must be an int"):
        book.queue_levels(Side.BUY, -1)
    assert repr(q) == "QueueLevels({100.0: 1.5, 99.5: 2.0})"


def test_the_copy_does_not_follow_the_book():
    book = _book.OrderBook()
    book.apply_update(DepthUpdate(1, 1, ((100.0, 1.5),), ((101.0, 3.0),)))
    q = book.queue_levels(Side.SELL, 3)
    book.apply_update(DepthUpdate(2, 2, (), ((101.0, 0.0), (100.5, 9.0))))
    assert q == {101.0: 3.0}


def _bits(r):
    return (
        [
            (lv.price, lv.size, struct.pack("<d", lv.p_fill), struct.pack("<d", lv.expected_pnl))
            for lv in r.bids + r.asks
        ],
        r.inputs.vector.tobytes(),
        r.reasons,
    )


@pytest.mark.parametrize("levels", [1, 3])
@pytest.mark.parametrize("q_inv", [0.0, 0.02, -0.03])
def test_a_quote_reads_the_queues_as_it_reads_the_dicts(levels, q_inv):
    """Queues that hold the prices the ladder quotes at (so queue_ahead is read, not 0) give the same quote."""
    book = _book.OrderBook()
    bids = tuple((round(99.9 - 0.1 * i, 1), 0.25 * (i + 1)) for i in range(12))
    asks = tuple((round(100.1 + 0.1 * i, 1), 0.5 * (i + 1)) for i in range(12))
    book.apply_update(DepthUpdate(1, 1, bids, asks))
    base = MarketState(1, 99.9, 100.1, 800.0, 1e-4, 1e-4, a_per_s=5.0, mean_trade_size=0.4)
    as_dicts = replace(base, bid_queue=dict(book.bids(levels + 5)), ask_queue=dict(book.asks(levels + 5)))
    as_levels = replace(
        base, bid_queue=book.queue_levels(Side.BUY, levels + 5), ask_queue=book.queue_levels(Side.SELL, levels + 5)
    )
    p = QuoterParams(levels=levels, max_inventory=0.2)
    kw = {"tick_size": 0.1, "lot_size": 0.001}
    want = _bits(py_quote(p, RiskAversionParams(), as_dicts, q_inv, **kw))
    empty = _bits(py_quote(p, RiskAversionParams(), replace(base, bid_queue={}, ask_queue={}), q_inv, **kw))
    assert empty[0] != want[0], "no quoted price is in the queues: the test would not read them"
    assert _bits(py_quote(p, RiskAversionParams(), as_levels, q_inv, **kw)) == want
    assert _bits(_quote.quote(p, RiskAversionParams(), as_dicts, q_inv, **kw)) == want
    assert _bits(_quote.quote(p, RiskAversionParams(), as_levels, q_inv, **kw)) == want


def test_the_compiled_quoter_refuses_a_queue_that_is_not_a_mapping_it_reads():
    m = MarketState(1, 99.9, 100.1, 800.0, 1e-4, 1e-4, a_per_s=5.0, mean_trade_size=0.4, bid_queue=[(99.9, 1.0)])
    with pytest.raises(TypeError, match="queues map price to size"):
        _quote.quote(QuoterParams(), RiskAversionParams(), m, 0.0, tick_size=0.1, lot_size=0.001)
