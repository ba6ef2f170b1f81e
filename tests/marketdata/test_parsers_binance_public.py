"""binance-public parser: trades / aggTrades / bookTicker with and without headers, kind detection, quarantines."""

from __future__ import annotations

import zipfile

import pytest

from apps.engine.market.events import BestBidAsk, Side, Trade
from apps.marketdata.parsers import binance_public, parse_file
from apps.marketdata.parsers.common import ParseStats, Quarantined


def run(rows, **kw):
    stats = ParseStats()
    items = list(binance_public.parse_lines(enumerate(rows, 1), stats=stats, **kw))
    return items, stats


def quarantines(items):
    return [(q.line_no, q.reason) for q in items if isinstance(q, Quarantined)]


FUTURES_TRADES = [
    "id,price,qty,quote_qty,time,is_buyer_maker",
    "5266583935,61800.30,0.006,370.8,1723161256322,false",
    "5266583936,61800.20,0.199,12298.2,1723161256344,true",
    "5266583936,61800.20,0.199,12298.2,1723161256344,true",  # duplicate
    "5266583937,61800.20,0.1,1,1723161256000,true",  # time went back
    "5266583938,-5,0.1,1,1723161256400,true",  # bad price
    "5266583939,61800.20,0,1,1723161256400,true",  # bad size
    "5266583940,61800.20,0.1,1,1723161256400,maybe",  # bad side
    "5266583941,61800.20,0.1,1723161256400,true",  # one column short
    "garbage,row",
    "5266583942,61800.40,0.3,1,1723161256500,false",
]


def test_futures_trades_with_header_quarantine_each_bad_row_and_keep_the_rest():
    items, stats = run(FUTURES_TRADES)
    assert quarantines(items) == [
        (4, "duplicate_trade_id"),
        (5, "ts_out_of_order"),
        (6, "bad_price"),
        (7, "bad_size"),
        (8, "bad_side"),
        (9, "unparsable"),
        (10, "unparsable"),
    ]
    trades = [e for e in items if isinstance(e, Trade)]
    assert [(t.trade_id, t.aggressor) for t in trades] == [
        ("5266583935", Side.BUY),
        ("5266583936", Side.SELL),
        ("5266583942", Side.BUY),
    ]
    assert trades[0].ts_exch_ns == trades[0].ts_local_ns == 1_723_161_256_322_000_000
    assert stats.kind == "trades" and stats.ignored["header"] == 1 and stats.clock_offset_ms() is None


def test_headerless_spot_trades_in_microseconds_are_detected_from_the_row_shape():
    items, stats = run(["3735683259,61837.63,0.02,1236.75,1735689600123456,True,True"])
    (t,) = items
    assert stats.kind == "trades" and t.aggressor is Side.SELL and t.ts_exch_ns == 1_735_689_600_123_456_000


@pytest.mark.parametrize(
    ("row", "kind"),
    [
        ("100,61800.3,0.5,200,201,1723161256322,false", "aggTrades"),  # futures aggTrades, no header
        ("100,61800.3,0.5,200,201,1723161256322,False,True", "aggTrades"),  # spot aggTrades
        ("5123107839020,61800.20,2.507,61800.30,2.510,1723161256313,1723161256313", "bookTicker"),
        ("1,61800.3,0.5,30,1723161256322,false", "trades"),
    ],
)
def test_headerless_kinds_are_told_apart_by_their_columns(row, kind):
    items, stats = run([row])
    assert stats.kind == kind and not quarantines(items)
    if kind == "aggTrades":
        assert items[0].trade_id == "a100"


def test_the_file_name_decides_the_kind_of_a_headerless_file(tmp_path):
    path = tmp_path / "BTCUSDT-aggTrades-2024-08-08.csv"
    path.write_text("100,61800.3,0.5,200,201,1723161256322,false\n")
    stats = ParseStats()
    (t,) = list(parse_file("binance-public", path, stats=stats))
    assert stats.kind == "aggTrades" and t.trade_id == "a100"


BOOK_TICKER = [
    "update_id,best_bid_price,best_bid_qty,best_ask_price,best_ask_qty,transaction_time,event_time",
    "5123107839020,61800.20,2.507,61800.30,2.510,1723161256313,1723161256314",
    "5123107839021,61800.40,2.507,61800.30,2.510,1723161256313,1723161256314",  # crossed
    "5123107839022,61800.20,-1,61800.30,2.510,1723161256313,1723161256314",  # bad size
    "5123107839023,61800.20,0,61800.30,2.510,1723161256313,1723161256314",  # empty bid size is allowed
]


def test_book_ticker_rows_become_best_bid_ask_with_the_transaction_time():
    items, stats = run(BOOK_TICKER)
    assert quarantines(items) == [(3, "crossed_book"), (4, "bad_size")]
    bbos = [e for e in items if isinstance(e, BestBidAsk)]
    assert [b.update_id for b in bbos] == [5123107839020, 5123107839023]
    assert bbos[0].ts_exch_ns == 1_723_161_256_313_000_000 and bbos[0].ask_size == 2.51
    assert stats.kind == "bookTicker" and stats.quarantined == {"crossed_book": 1, "bad_size": 1}


def test_a_zip_download_parses_like_the_plain_rows(tmp_path):
    path = tmp_path / "BTCUSDT-trades-2024-08-08.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("BTCUSDT-trades-2024-08-08.csv", "\n".join(FUTURES_TRADES) + "\n")
    from_zip = list(parse_file("binance-public", path))
    assert from_zip == run(FUTURES_TRADES)[0]


def test_an_explicit_kind_must_be_known():
    with pytest.raises(ValueError, match="kind"):
        run(["1,2,3"], kind="klines")
