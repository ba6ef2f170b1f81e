"""binance-raw parser: hand-written lines with every quarantine reason, gzip/zip, and the real recordings."""

from __future__ import annotations

import csv
import gzip
import itertools
import json
import statistics
import time
import zipfile
from pathlib import Path

import pytest

from apps.engine.market.events import BestBidAsk, DepthSnapshot, DepthUpdate, Side, Trade
from apps.marketdata.parsers import binance_raw, parse_file
from apps.marketdata.parsers.common import ParseStats, Quarantined

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
USDM = DATA / "hftbacktest-binance-usdm-btcusdt-20240808"
SPOT = DATA / "hftbacktest-binance-spot-btcusdt-20240808"

T0 = 1_723_161_255_000_000_000  # ns


def line(local, payload):
    return f"{local} {json.dumps(payload, separators=(',', ':'))}"


def trade(t, p="61800.30", q="0.006", m=False, T=1_723_161_256_322):
    return {"stream": "btcusdt@trade", "data": {"e": "trade", "E": T, "T": T, "t": t, "p": p, "q": q, "m": m}}


def ticker(b="61800.20", a="61800.30", u=7):
    return {
        "stream": "btcusdt@bookTicker",
        "data": {
            "e": "bookTicker",
            "u": u,
            "b": b,
            "B": "2.5",
            "a": a,
            "A": "1.5",
            "T": 1_723_161_256_400,
            "E": 1_723_161_256_401,
        },
    }


def depth(levels_b=(("61800.20", "2.0"), ("61790.00", "0.000"))):
    return {
        "stream": "btcusdt@depth@0ms",
        "data": {
            "e": "depthUpdate",
            "E": 1_723_161_256_500,
            "T": 1_723_161_256_499,
            "U": 100,
            "u": 105,
            "pu": 99,
            "b": [list(x) for x in levels_b],
            "a": [["61800.30", "1.0"]],
        },
    }


SNAPSHOT = {
    "lastUpdateId": 104,
    "E": 1_723_161_256_501,
    "T": 1_723_161_256_493,
    "bids": [["61800.20", "2.9"], ["61800.10", "0.7"]],
    "asks": [["61800.30", "1.1"]],
}

# (text, expected quarantine reason or None for a good line)
FIXTURE = [
    (line((T0 + 1_000) // 1000, trade(1)), None),  # local time in µs
    (line(T0 + 2_000, ticker()), None),
    (line(T0 + 3_000, depth()), None),
    (line(T0 + 4_000, SNAPSHOT), None),
    ("garbage-without-space", "unparsable"),
    (f"{T0 + 5_000} {{not json", "unparsable"),
    (line(T0 + 6_000, trade(2, p="-1")), "bad_price"),
    (line(T0 + 7_000, trade(3, q="NaN")), "bad_size"),
    (line(T0 + 8_000, ticker(b="61800.40")), "crossed_book"),
    (line(T0 + 9_000, trade(1)), "duplicate_trade_id"),
    (line(T0 - 1, trade(4)), "ts_out_of_order"),
    (line(T0 + 10_000, {"stream": "btcusdt@kline_1m", "data": {"e": "kline"}}), "unknown_message"),
    (line(T0 + 11_000, trade(5, m="yes")), "bad_side"),
    (line(T0 + 12_000, {"result": None, "id": 1}), None),  # subscription ack: ignored, not an event
    (line(T0 + 13_000, depth(levels_b=(("abc", "1"),))), "unparsable"),
    (line(T0 + 14_000, depth(levels_b=(("61800.20", "-2"),))), "bad_size"),
    (line(T0 + 15_000, {**SNAPSHOT, "asks": [["61800.00", "1"]]}), "crossed_book"),
    (line(T0 + 16_000, trade(6, m=True)), None),
]


def _check_fixture(items, stats):
    quarantined = [(q.line_no, q.reason) for q in items if isinstance(q, Quarantined)]
    expected = [(i + 1, reason) for i, (_t, reason) in enumerate(FIXTURE) if reason]
    assert quarantined == expected
    events = [e for e in items if not isinstance(e, Quarantined)]
    assert [type(e) for e in events] == [Trade, BestBidAsk, DepthUpdate, DepthSnapshot, Trade]
    t1, bbo, upd, snap, t6 = events
    assert t1.ts_local_ns == T0 + 1_000 and t1.ts_exch_ns == 1_723_161_256_322_000_000
    assert (t1.aggressor, t6.aggressor) == (Side.BUY, Side.SELL)  # m=true => seller was the aggressor
    assert (t1.price, t1.size, t1.trade_id) == (61800.30, 0.006, "1")
    assert (bbo.bid_px, bbo.bid_size, bbo.ask_px, bbo.ask_size, bbo.update_id) == (61800.2, 2.5, 61800.3, 1.5, 7)
    assert bbo.ts_exch_ns == 1_723_161_256_400_000_000  # T preferred over E
    assert (upd.first_update_id, upd.last_update_id, upd.prev_update_id) == (100, 105, 99)
    assert upd.bids == ((61800.2, 2.0), (61790.0, 0.0))  # 0 kept: it deletes the level
    assert snap.last_update_id == 104 and snap.bids[0] == (61800.2, 2.9)
    assert stats.lines == len(FIXTURE) and stats.ignored["control_message"] == 1
    assert stats.n_quarantined == len(expected) and stats.events["Trade"] == 2


def test_each_bad_line_is_quarantined_with_its_reason_and_good_lines_are_kept():
    stats = ParseStats()
    items = list(binance_raw.parse_lines(enumerate((t for t, _r in FIXTURE), start=1), stats=stats))
    _check_fixture(items, stats)


@pytest.mark.parametrize("container", ["gz", "zip"])
def test_gzip_and_zip_files_give_the_same_result(tmp_path, container):
    text = "\n".join(t for t, _r in FIXTURE) + "\n"
    path = tmp_path / f"rec.{container}"
    if container == "gz":
        with gzip.open(path, "wt") as fh:
            fh.write(text)
    else:
        with zipfile.ZipFile(path, "w") as zf:
            zf.writestr("rec.txt", text)
    stats = ParseStats()
    _check_fixture(list(parse_file("binance-raw", path, stats=stats)), stats)
    assert stats.source == str(path)


# --- real recordings -----------------------------------------------------------------------------------


def _need(*paths):
    for p in paths:
        if not p.exists():
            pytest.skip(f"real data not present: {p}")


@pytest.fixture(scope="module")
def usdm():
    path = USDM / "raw" / "usdm_btcusdt_20240808.gz"
    _need(path)
    stats = ParseStats()
    t0 = time.perf_counter()
    items = list(binance_raw.parse_file(path, stats=stats))
    elapsed = time.perf_counter() - t0
    print(
        f"\nbinance-raw USD-M: {len(items)} events in {elapsed:.2f} s = {len(items) / elapsed:,.0f} events/s;"
        f" offsets ms {stats.summary()['clock_offset_ms_by_type']}"
    )
    return items, stats


def test_usdm_recording_gives_the_manifest_counts_with_nothing_quarantined(usdm):
    items, stats = usdm
    assert stats.lines == 93_954
    assert stats.events == {"Trade": 21_313, "BestBidAsk": 66_089, "DepthUpdate": 6_551, "DepthSnapshot": 1}
    assert stats.n_quarantined == 0
    trades = [e for e in items if isinstance(e, Trade)]
    assert sum(t.aggressor is Side.BUY for t in trades) == 9_616
    assert sum(t.aggressor is Side.SELL for t in trades) == 11_697
    snap = next(e for e in items if isinstance(e, DepthSnapshot))
    assert snap.last_update_id == 5_123_107_852_948 and len(snap.bids) == len(snap.asks) == 1000


def test_usdm_local_clock_is_about_1270_ms_behind_the_exchange(usdm):
    _items, stats = usdm
    for kind in ("Trade", "BestBidAsk", "DepthUpdate"):
        assert -1_300 < stats.clock_offset_ms(kind) < -1_240


def test_usdm_trades_equal_the_independently_flattened_csv(usdm):
    items, _stats = usdm
    path = USDM / "derived" / "trades.csv.gz"
    _need(path)
    with gzip.open(path, "rt") as fh:
        rows = list(csv.DictReader(fh))
    trades = [e for e in items if isinstance(e, Trade)]
    assert len(rows) == len(trades)
    for row, t in zip(rows, trades):
        assert int(row["local_ts_ns"]) == t.ts_local_ns and int(row["trade_ts_ms"]) * 1_000_000 == t.ts_exch_ns
        assert row["trade_id"] == t.trade_id and float(row["price"]) == t.price and float(row["qty"]) == t.size
        assert row["aggressor_side"] == t.aggressor.label


def test_spot_recording_gives_the_manifest_counts_and_has_no_exchange_time_on_book_ticker():
    paths = [SPOT / "raw" / "spot_btcusdt_20240808.gz", SPOT / "raw" / "spot_btcusdt_20240809.gz"]
    _need(*paths)
    stats = ParseStats()
    items = list(itertools.chain.from_iterable(binance_raw.parse_file(p, stats=stats) for p in paths))
    assert stats.lines == 41_249 + 58_325
    assert stats.events == {"Trade": 19_904, "BestBidAsk": 73_174, "DepthUpdate": 6_495, "DepthSnapshot": 1}
    assert stats.n_quarantined == 0
    trades = [e for e in items if isinstance(e, Trade)]
    assert (sum(t.aggressor is Side.BUY for t in trades), sum(t.aggressor is Side.SELL for t in trades)) == (
        9_093,
        10_811,
    )
    assert all(e.ts_exch_ns == 0 for e in items if isinstance(e, BestBidAsk))
    assert sum(len(e.bids) + len(e.asks) for e in items if isinstance(e, DepthUpdate)) == 298_111
    assert stats.clock_offset_ms("BestBidAsk") is None
    depth_offset = stats.clock_offset_ms("DepthUpdate")
    assert -1_290 < depth_offset < -1_260  # MANIFEST: about -1,273 ms
    # Spot trade messages lag: E - T has a small median but a long tail (MANIFEST quirk 2)
    lag_ms = [(e.ts_local_ns - e.ts_exch_ns) / 1e6 - depth_offset for e in trades]
    assert abs(statistics.median(lag_ms)) < 5 and max(lag_ms) > 100


def test_the_receive_clock_moves_on_a_line_quarantined_for_its_content():
    """The local timestamp is the recorder's: a line with a bad price still says when it arrived, so a later
    line stamped before it went back in time (and a line out of order does not move the clock)."""
    rows = [
        line(T0 + 1_000, trade(1)),
        line(T0 + 9_000, trade(2, p="NaN")),  # bad content, good receive time
        line(T0 + 5_000, trade(3)),  # before the line above: out of order
        line(T0 + 2_000, trade(4)),  # out of order too (the clock stays at T0 + 9000)
        line(T0 + 9_000, trade(5)),  # equal is fine
    ]
    stats = ParseStats()
    items = list(binance_raw.parse_lines(enumerate(rows, start=1), stats=stats))
    reasons = [(q.line_no, q.reason) for q in items if isinstance(q, Quarantined)]
    assert reasons == [(2, "bad_price"), (3, "ts_out_of_order"), (4, "ts_out_of_order")]
    assert [t.trade_id for t in items if isinstance(t, Trade)] == ["1", "5"]
    assert "went back 4000 ns" in next(q.detail for q in items if isinstance(q, Quarantined) and q.line_no == 3)
