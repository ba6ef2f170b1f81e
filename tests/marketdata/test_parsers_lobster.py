"""lobster parser: message/orderbook pairing, aggressor = -direction, exact times, quarantines, real AMZN sample."""

from __future__ import annotations

import datetime as dt
import gzip
import zipfile
from pathlib import Path

import pytest

from apps.engine.market.events import BestBidAsk, Side, Trade
from apps.marketdata.parsers import lobster, parse_file
from apps.marketdata.parsers.common import ParseStats, Quarantined, open_text, zip_members

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "lobster-amzn-20120621-level1"
ZIP = DATA / "LOBSTER_SampleFile_AMZN_2012-06-21_1.zip"
MSG_GZ = DATA / "AMZN_2012-06-21_34200000_57600000_message_1.csv.gz"

# 2012-06-21 is EDT (UTC-4): local midnight = 04:00 UTC
MIDNIGHT_NS = int(dt.datetime(2012, 6, 21, 4, tzinfo=dt.UTC).timestamp()) * 10**9

MESSAGES = [
    "34200.017459617,5,0,1,2238200,-1",  # hidden execution vs resting sell => buyer aggressor
    "34200.18960767,1,11885113,21,2238100,1",
    "34200.190226476,4,11885113,21,2238100,1",  # visible execution vs resting buy => seller aggressor
    "34200.2,4,11885114,5,2238100,0",  # bad direction
    "34200.3,4,11885115,0,2238100,1",  # zero size
    "34200.1,1,11885116,5,2238000,1",  # time went back
    "34200.4,9,0,0,0,0",  # unknown type
    "34200.5,7,0,0,-1,-1",  # halt: ignored
    "34200.6,1,11885117,5,2238000,1",  # book row empty
    "34200.7,1,11885118,5,2238000,1",  # book row crossed
    "34200.8,1,abc,5,2238000,1",  # unparsable
    "34200.9,3,11885117,5,2238000,1",  # no orderbook row
]
BOOK = [
    "2239500,100,2231800,100",
    "2239500,100,2238100,21",
    "2239500,100,2237500,100",
    "2239500,100,2237500,100",
    "2239500,100,2237500,100",
    "2239500,100,2237500,100",
    "2239500,100,2237500,100",
    "2239500,100,2237500,100",
    "9999999999,0,2237500,100",
    "2237000,100,2237500,100",
    "2239500,100,2237500,100",
]
EXPECTED_Q = [
    (4, "bad_side"),
    (5, "bad_size"),
    (6, "ts_out_of_order"),
    (7, "unknown_message"),
    (9, "empty_book"),
    (10, "crossed_book"),
    (11, "unparsable"),
    (12, "missing_row"),
]


def _check(items, stats):
    assert [(q.line_no, q.reason) for q in items if isinstance(q, Quarantined)] == EXPECTED_Q
    trades = [e for e in items if isinstance(e, Trade)]
    assert [(t.aggressor, t.price, t.size, t.trade_id) for t in trades] == [
        (Side.BUY, 223.82, 1.0, "1"),
        (Side.SELL, 223.81, 21.0, "3"),
    ]
    assert trades[0].ts_exch_ns == MIDNIGHT_NS + 34_200_017_459_617  # exact to the ns
    assert trades[0].ts_local_ns == trades[0].ts_exch_ns
    bbos = [e for e in items if isinstance(e, BestBidAsk)]
    assert [b.update_id for b in bbos] == [1, 2, 3, 8]  # rows whose message and book are both fine
    assert (bbos[1].bid_px, bbos[1].bid_size, bbos[1].ask_px) == (223.81, 21.0, 223.95)
    # the book after a trade message follows the trade
    assert items.index(trades[1]) + 1 == items.index(bbos[2])
    assert stats.ignored["halt"] == 1 and stats.clock_offset_ms() is None


def test_pairs_are_parsed_with_every_bad_row_quarantined():
    stats = ParseStats()
    items = list(lobster.parse_pair(enumerate(MESSAGES, 1), enumerate(BOOK, 1), dt.date(2012, 6, 21), stats=stats))
    _check(items, stats)


def test_gzip_pair_with_inferred_orderbook_name_and_zip_archive_give_the_same_result(tmp_path):
    name = "AMZN_2012-06-21_34200000_57600000_{}_1.csv"
    for kind, rows in (("message", MESSAGES), ("orderbook", BOOK)):
        with gzip.open(tmp_path / (name.format(kind) + ".gz"), "wt") as fh:
            fh.write("\n".join(rows) + "\n")
    stats = ParseStats()
    _check(list(parse_file("lobster", tmp_path / (name.format("message") + ".gz"), stats=stats)), stats)
    zp = tmp_path / "sample.zip"
    with zipfile.ZipFile(zp, "w") as zf:
        zf.writestr("README.txt", "not data")
        zf.writestr(name.format("message"), "\n".join(MESSAGES) + "\n")
        zf.writestr(name.format("orderbook"), "\n".join(BOOK) + "\n")
    stats = ParseStats()
    _check(list(parse_file("lobster", zp, stats=stats)), stats)


def test_a_file_name_without_a_date_needs_session_date(tmp_path):
    (tmp_path / "x_message.csv").write_text(MESSAGES[0] + "\n")
    (tmp_path / "x_book.csv").write_text(BOOK[0] + "\n")
    with pytest.raises(ValueError, match="session_date"):
        lobster.parse_file(tmp_path / "x_message.csv", tmp_path / "x_book.csv")
    items = list(
        lobster.parse_file(tmp_path / "x_message.csv", tmp_path / "x_book.csv", session_date=dt.date(2012, 6, 21))
    )
    assert items[0].ts_exch_ns == MIDNIGHT_NS + 34_200_017_459_617


@pytest.mark.parametrize("path", [ZIP, MSG_GZ], ids=["zip", "gz-pair"])
def test_real_amzn_sample_matches_the_manifest(path):
    if not path.exists():
        pytest.skip(f"real data not present: {path}")
    stats = ParseStats()
    items = list(lobster.parse_file(path, stats=stats))
    assert stats.lines == 57_515 and stats.n_quarantined == 0
    assert stats.events == {"Trade": 8_974 + 2_445, "BestBidAsk": 57_515}
    assert stats.ignored == {"submit": 27_845, "partial_cancel": 16, "delete": 18_235}
    trades = [e for e in items if isinstance(e, Trade)]
    # MANIFEST: 4,808 visible executions against sells (buyer-initiated), 4,166 against buys; all at the touch
    prev_bbo = None
    visible_buys = visible_sells = at_touch = 0
    row_of_trade = {}
    for e in items:
        if isinstance(e, BestBidAsk):
            prev_bbo = e
        else:
            row_of_trade[e.trade_id] = prev_bbo
    member = None if path == MSG_GZ else next(n for n in zip_members(path) if "_message_" in n)
    lines = open_text(path, member)
    msg_types = {str(line_no): text.split(",")[1] for line_no, text in lines}
    for t in trades:
        if msg_types[t.trade_id] != "4":
            continue
        before = row_of_trade[t.trade_id]
        visible_buys += t.aggressor is Side.BUY
        visible_sells += t.aggressor is Side.SELL
        at_touch += t.price == (before.ask_px if t.aggressor is Side.BUY else before.bid_px)
    assert (visible_buys, visible_sells) == (4_808, 4_166)
    assert at_touch == 8_974
    first_utc = dt.datetime.fromtimestamp(stats.first_ts_exch_ns / 1e9, dt.UTC)
    assert (first_utc.hour, first_utc.minute) == (13, 30)  # 09:30 New York (EDT)
