"""hyperliquid parser: l2Book snapshots, trades with aggressor B/A, bbo, quarantines, the real 25 s sample."""

from __future__ import annotations

import gzip
import json
import zipfile
from pathlib import Path

import pytest

from apps.engine.market.events import BestBidAsk, DepthSnapshot, Side, Trade
from apps.marketdata.parsers import hyperliquid, parse_file
from apps.marketdata.parsers.common import ParseStats, Quarantined

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "hftbacktest-hyperliquid-btc-20250126-tiny"
RAW = DATA / "raw" / "hyperliquid_btc_20250126.gz"
T0 = 1_737_918_843_893_903_000


def book(bid="105055.0", ask="105056.0", coin="BTC", t=1_737_918_843_542):
    return {
        "channel": "l2Book",
        "data": {
            "coin": coin,
            "time": t,
            "levels": [
                [{"px": bid, "sz": "3.0", "n": 5}, {"px": "105054.0", "sz": "0.1", "n": 1}],
                [{"px": ask, "sz": "6.3", "n": 2}],
            ],
        },
    }


def trade(tid, side="B", px="105056.0", sz="0.00219", coin="BTC"):
    return {
        "coin": coin,
        "side": side,
        "px": px,
        "sz": sz,
        "tid": tid,
        "time": 1_737_918_843_700,
        "hash": "0x",
        "users": [],
    }


def ln(i, msg):
    return f"{T0 + i * 1000} {json.dumps(msg)}"


LINES = [
    ln(0, book()),
    ln(
        1, {"channel": "trades", "data": [trade(1), trade(2, side="A"), trade(1), trade(3, side="X"), trade(4, px="0")]}
    ),
    ln(2, book(bid="105057.0")),  # crossed
    ln(3, {"channel": "subscriptionResponse", "data": {}}),
    ln(4, {"channel": "candle", "data": {}}),
    ln(
        5,
        {
            "channel": "bbo",
            "data": {
                "coin": "BTC",
                "time": 1_737_918_844_000,
                "bbo": [{"px": "105055.0", "sz": "1", "n": 1}, {"px": "105056.0", "sz": "2", "n": 1}],
            },
        },
    ),
    ln(
        6,
        {
            "channel": "bbo",
            "data": {"coin": "BTC", "time": 1_737_918_844_000, "bbo": [None, {"px": "1", "sz": "2", "n": 1}]},
        },
    ),
    f"{T0} {json.dumps(book())}",  # local time went back
    f"{T0 + 8000} {{broken",
    ln(9, book(coin="ETH")),
]
EXPECTED_Q = [
    (2, "duplicate_trade_id"),
    (2, "bad_side"),
    (2, "bad_price"),
    (3, "crossed_book"),
    (5, "unknown_message"),
    (7, "empty_book"),
    (8, "ts_out_of_order"),
    (9, "unparsable"),
]


def _check(items, stats):
    assert [(q.line_no, q.reason) for q in items if isinstance(q, Quarantined)] == EXPECTED_Q
    events = [e for e in items if not isinstance(e, Quarantined)]
    assert [type(e) for e in events] == [DepthSnapshot, Trade, Trade, BestBidAsk]
    snap, t1, t2, bbo = events
    assert snap.bids == ((105055.0, 3.0), (105054.0, 0.1)) and snap.asks == ((105056.0, 6.3),)
    assert snap.ts_exch_ns == 1_737_918_843_542_000_000 and snap.ts_local_ns == T0
    assert (t1.aggressor, t2.aggressor, t1.trade_id) == (Side.BUY, Side.SELL, "1")
    assert (bbo.bid_px, bbo.ask_size) == (105055.0, 2.0)
    assert stats.ignored == {"subscriptionResponse": 1, "other_coin": 1}


def test_bad_messages_and_bad_trades_are_quarantined_one_by_one():
    stats = ParseStats()
    _check(list(hyperliquid.parse_lines(enumerate(LINES, 1), stats=stats, coin="BTC")), stats)


@pytest.mark.parametrize("container", ["gz", "zip"])
def test_gzip_and_zip_inputs(tmp_path, container):
    path = tmp_path / f"hl.{container}"
    text = "\n".join(LINES) + "\n"
    if container == "gz":
        with gzip.open(path, "wt") as fh:
            fh.write(text)
    else:
        with zipfile.ZipFile(path, "w") as zf:
            zf.writestr("hl.txt", text)
    stats = ParseStats()
    _check(list(parse_file("hyperliquid", path, stats=stats, coin="BTC")), stats)


def test_real_sample_matches_the_manifest():
    if not RAW.exists():
        pytest.skip(f"real data not present: {RAW}")
    stats = ParseStats()
    items = list(hyperliquid.parse_file(RAW, stats=stats))
    assert stats.lines == 55 and stats.n_quarantined == 0
    assert stats.events == {"DepthSnapshot": 46, "Trade": 64}
    snaps = [e for e in items if isinstance(e, DepthSnapshot)]
    assert all(len(s.bids) == len(s.asks) == 20 for s in snaps)
    assert all(s.bids[0][0] < s.asks[0][0] for s in snaps)
    trades = [e for e in items if isinstance(e, Trade)]
    assert len({t.trade_id for t in trades}) == 64
    # MANIFEST: every trade prints at or through the touch on its aggressor side. Checked here against the
    # latest snapshot stamped at or before the trade (the subscribe replay predates every snapshot).
    judged = through = 0
    for t in trades:
        prior = [s for s in snaps if s.ts_exch_ns <= t.ts_exch_ns]
        if prior:
            touch = prior[-1].asks[0][0] if t.aggressor is Side.BUY else prior[-1].bids[0][0]
            judged += 1
            through += t.price >= touch if t.aggressor is Side.BUY else t.price <= touch
    assert judged > 30 and through == judged
    # MANIFEST: local - exchange median about 470 ms on the books (trades include the subscribe replay)
    assert 440 < stats.clock_offset_ms("DepthSnapshot") < 500
    assert min(t.ts_exch_ns for t in trades) < snaps[0].ts_exch_ns - 40 * 10**9  # replay ~49 s old
