"""tardis parser: kind detection from the header, L2 message grouping, quarantines, real NautilusTrader fixtures."""

from __future__ import annotations

import gzip
import zipfile
from pathlib import Path

import pytest

from apps.engine.market.events import BestBidAsk, DepthSnapshot, DepthUpdate, Side, Trade
from apps.marketdata.parsers import parse_file, tardis
from apps.marketdata.parsers.common import ParseStats, Quarantined

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "tardis-binance-futures-btcusdt-20200222"
TRADES = DATA / "binance-futures_trades_BTCUSDT_2020-02-22.csv.gz"
QUOTES = DATA / "binance-futures_quotes_BTCUSDT_2020-02-22.csv.gz"

TRADE_ROWS = [
    ("exchange,symbol,timestamp,local_timestamp,id,side,price,amount", None),
    ("binance-futures,BTCUSDT,1582329602111000,1582329602418379,42377944,buy,9682,0.132", None),
    ("binance-futures,BTCUSDT,1582329602116000,1582329602418420,42377945,sell,9681.5,0.412", None),
    ("binance-futures,BTCUSDT,1582329602116000,1582329602418420,42377945,sell,9681.5,0.412", "duplicate_trade_id"),
    ("binance-futures,BTCUSDT,1582329602117000,1582329602418000,42377946,buy,9682,0.1", "ts_out_of_order"),
    ("binance-futures,BTCUSDT,1582329602118000,1582329602419000,42377947,unknown,9682,0.1", "bad_side"),
    ("binance-futures,BTCUSDT,1582329602118000,1582329602419000,42377948,buy,0,0.1", "bad_price"),
    ("binance-futures,BTCUSDT,1582329602118000,1582329602419000,42377949,buy,9682,0", "bad_size"),
    ("binance-futures,BTCUSDT,1582329602118000,1582329602419000,42377950,buy,9682", "unparsable"),
    ("binance-futures,BTCUSDT,15823296021180xx,1582329602419000,42377951,buy,9682,1", "unparsable"),
    ("binance-futures,BTCUSDT,1582329602119000,1582329602420000,42377952,buy,9682.5,0.2", None),
]


def _run(rows, stats=None):
    return list(tardis.parse_lines(enumerate((r for r, _ in rows), start=1), stats=stats))


def _quarantines(items):
    return [(q.line_no, q.reason) for q in items if isinstance(q, Quarantined)]


def _expected(rows):
    return [(i + 1, reason) for i, (_r, reason) in enumerate(rows) if reason]


def test_trades_bad_rows_are_quarantined_and_good_rows_kept_with_us_converted_to_ns():
    stats = ParseStats()
    items = _run(TRADE_ROWS, stats)
    assert _quarantines(items) == _expected(TRADE_ROWS)
    trades = [e for e in items if isinstance(e, Trade)]
    assert [t.trade_id for t in trades] == ["42377944", "42377945", "42377952"]
    assert trades[0].ts_exch_ns == 1_582_329_602_111_000_000 and trades[0].ts_local_ns == 1_582_329_602_418_379_000
    assert [t.aggressor for t in trades] == [Side.BUY, Side.SELL, Side.BUY]
    assert stats.kind == "trades" and stats.clock_offset_ms() == pytest.approx(302.42)


QUOTE_ROWS = [
    ("exchange,symbol,timestamp,local_timestamp,ask_amount,ask_price,bid_price,bid_amount", None),
    ("binance-futures,BTCUSDT,1582329601096000,1582329603502092,0.84,9682,9681.92,0.67", None),
    ("binance-futures,BTCUSDT,1582329601097000,1582329603502093,0.84,9681,9681.92,0.67", "crossed_book"),
    ("binance-futures,BTCUSDT,1582329601098000,1582329603502094,,,9681.92,0.67", "empty_book"),
    ("binance-futures,BTCUSDT,1582329601099000,1582329603502095,0.84,nan,9681.92,0.67", "bad_price"),
]


def test_quotes_map_ask_first_columns_and_quarantine_crossed_and_empty_rows():
    items = _run(QUOTE_ROWS)
    assert _quarantines(items) == _expected(QUOTE_ROWS)
    (q,) = [e for e in items if isinstance(e, BestBidAsk)]
    assert (q.bid_px, q.bid_size, q.ask_px, q.ask_size) == (9681.92, 0.67, 9682.0, 0.84)


L2_ROWS = [
    ("exchange,symbol,timestamp,local_timestamp,is_snapshot,side,price,amount", None),
    ("bitmex,XBTUSD,1000000,1000100,true,bid,99.5,10", None),
    ("bitmex,XBTUSD,1000000,1000100,true,ask,100.5,5", None),
    ("bitmex,XBTUSD,1000000,1000100,true,bid,100,20", None),
    ("bitmex,XBTUSD,2000000,2000100,false,ask,100.5,0", None),
    ("bitmex,XBTUSD,2000000,2000100,false,ask,101,7", None),
    ("bitmex,XBTUSD,2000000,2000100,false,middle,101,7", "bad_side"),
    ("bitmex,XBTUSD,3000000,3000100,false,bid,100,-1", "bad_size"),
    ("bitmex,XBTUSD,3000000,3000100,false,bid,99,3", None),
    ("bitmex,XBTUSD,4000000,4000100,true,bid,100,1", None),
    ("bitmex,XBTUSD,4000000,4000100,true,ask,99,1", None),  # crossed snapshot
]


def test_incremental_l2_rows_group_into_one_event_per_message():
    items = _run(L2_ROWS)
    events = [e for e in items if not isinstance(e, Quarantined)]
    assert [type(e) for e in events] == [DepthSnapshot, DepthUpdate, DepthUpdate]
    snap, upd1, upd2 = events
    assert snap.bids == ((100.0, 20.0), (99.5, 10.0)) and snap.asks == ((100.5, 5.0),)
    assert upd1.asks == ((100.5, 0.0), (101.0, 7.0)) and upd1.ts_local_ns == 2_000_100_000
    assert upd2.bids == ((99.0, 3.0),)
    assert _quarantines(items) == [(7, "bad_side"), (8, "bad_size"), (10, "crossed_book")]


def test_book_snapshot_rows_become_depth_snapshots_and_stop_at_empty_levels():
    rows = [
        "exchange,symbol,timestamp,local_timestamp,asks[0].price,asks[0].amount,bids[0].price,bids[0].amount,"
        "asks[1].price,asks[1].amount,bids[1].price,bids[1].amount",
        "deribit,BTC-PERPETUAL,1000,2000,101,1,100,2,102,3,,",
    ]
    stats = ParseStats()
    (snap,) = list(tardis.parse_lines(enumerate(rows, start=1), stats=stats))
    assert snap.asks == ((101.0, 1.0), (102.0, 3.0)) and snap.bids == ((100.0, 2.0),)
    assert stats.kind == "book_snapshot"


def test_an_unknown_header_is_refused():
    with pytest.raises(ValueError, match="Tardis"):
        _run([("time,price", None), ("1,2", None)])


@pytest.mark.parametrize("container", ["gz", "zip"])
def test_gzip_and_zip_inputs_parse_identically(tmp_path, container):
    text = "\n".join(r for r, _ in TRADE_ROWS) + "\n"
    path = tmp_path / f"trades.csv.{container}"
    if container == "gz":
        with gzip.open(path, "wt") as fh:
            fh.write(text)
    else:
        with zipfile.ZipFile(path, "w") as zf:
            zf.writestr("trades.csv", text)
    assert list(parse_file("tardis", path)) == _run(TRADE_ROWS)


def _need(p):
    if not p.exists():
        pytest.skip(f"real data not present: {p}")


def test_real_trades_file_matches_the_manifest():
    _need(TRADES)
    stats = ParseStats()
    trades = list(tardis.parse_file(TRADES, stats=stats))
    assert stats.events == {"Trade": 9_999} and stats.n_quarantined == 0
    assert sum(t.aggressor is Side.BUY for t in trades) == 5_267
    assert [int(t.trade_id) for t in trades] == list(range(42_377_944, 42_387_943))  # contiguous
    assert 120 < stats.clock_offset_ms() < 135  # MANIFEST: about 128 ms


def test_real_quotes_file_matches_the_manifest_and_overlaps_502_trades():
    _need(TRADES)
    _need(QUOTES)
    stats = ParseStats()
    quotes = list(tardis.parse_file(QUOTES, stats=stats))
    assert stats.events == {"BestBidAsk": 9_999} and stats.n_quarantined == 0
    assert 115 < stats.clock_offset_ms() < 130  # MANIFEST: about 122 ms
    lo, hi = quotes[0].ts_exch_ns, quotes[-1].ts_exch_ns
    assert sum(lo <= t.ts_exch_ns <= hi for t in tardis.parse_file(TRADES)) == 502


def test_the_local_timestamp_moves_on_a_row_quarantined_for_its_content():
    rows = [
        ("exchange,symbol,timestamp,local_timestamp,id,side,price,amount", None),
        ("binance-futures,BTCUSDT,1582329602111000,1582329602418000,1,buy,9682,0.1", None),
        ("binance-futures,BTCUSDT,1582329602112000,1582329602420000,2,buy,0,0.1", "bad_price"),
        ("binance-futures,BTCUSDT,1582329602113000,1582329602419000,3,buy,9682,0.1", "ts_out_of_order"),
        ("binance-futures,BTCUSDT,1582329602114000,1582329602420000,4,buy,9682,0.1", None),
    ]
    assert _quarantines(_run(rows)) == _expected(rows)
