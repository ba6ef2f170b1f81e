"""Shared parser plumbing: file opening (plain/gz/zip), time units, stats, duplicate window."""

from __future__ import annotations

import gzip
import zipfile

import pytest

from apps.engine.market.events import BestBidAsk, Side, Trade
from apps.marketdata.parsers import FORMATS, parse_file
from apps.marketdata.parsers.common import ParseStats, Quarantined, RecentIds, epoch_to_ns, open_text


def test_open_text_reads_plain_gzip_and_every_zip_member_with_line_numbers(tmp_path):
    plain = tmp_path / "a.txt"
    plain.write_text("one\r\ntwo\n")
    gz = tmp_path / "a.gz"
    with gzip.open(gz, "wt") as fh:
        fh.write("one\ntwo\n")
    zp = tmp_path / "a.zip"
    with zipfile.ZipFile(zp, "w") as zf:
        zf.writestr("m1.csv", "one\ntwo\n")
        zf.writestr("m2.csv", "three\n")
    assert list(open_text(plain)) == [(1, "one"), (2, "two")]
    assert list(open_text(gz)) == [(1, "one"), (2, "two")]
    assert list(open_text(zp)) == [(1, "one"), (2, "two"), (1, "three")]
    assert list(open_text(zp, member="m2.csv")) == [(1, "three")]


def test_open_text_detects_compression_by_content_not_suffix(tmp_path):
    p = tmp_path / "looks_plain.csv"
    with gzip.open(p, "wt") as fh:
        fh.write("x\n")
    assert list(open_text(p)) == [(1, "x")]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1_723_161_255, 1_723_161_255_000_000_000),  # s
        (1_723_161_255_123, 1_723_161_255_123_000_000),  # ms
        (1_723_161_255_123_456, 1_723_161_255_123_456_000),  # µs
        (1_723_161_255_123_456_789, 1_723_161_255_123_456_789),  # ns
    ],
)
def test_epoch_to_ns_picks_the_unit_by_magnitude(value, expected):
    assert epoch_to_ns(value) == expected


def test_parse_stats_counts_and_takes_the_median_local_minus_exchange_offset():
    stats = ParseStats()
    for i, off_ms in enumerate([10, 12, 1000, 11, 9]):  # one outlier: the median ignores it
        t_exch = 10**18 + 1_000_000_000 * i
        stats.observe(Trade(t_exch, t_exch + off_ms * 1_000_000, 1.0, 1.0, Side.BUY))
    stats.observe(BestBidAsk(0, 5, 1.0, 1.0, 2.0, 1.0))  # no exchange time: no offset sample
    stats.observe(Quarantined(3, "bad_price", "x"))
    assert stats.events == {"Trade": 5, "BestBidAsk": 1}
    assert stats.quarantined == {"bad_price": 1}
    assert stats.clock_offset_ms() == pytest.approx(11.0)
    assert stats.clock_offset_ms("BestBidAsk") is None
    assert stats.summary()["clock_offset_ms_by_type"] == {"Trade": pytest.approx(11.0)}


def test_parse_stats_median_stays_close_with_a_bounded_sample():
    stats = ParseStats(offset_sample_size=500)
    for i in range(20_000):
        stats.observe(Trade(1, 1 + (i % 1000) * 1_000_000, 1.0, 1.0, Side.BUY))  # uniform 0..999 ms
    assert stats.clock_offset_ms() == pytest.approx(500, abs=60)
    assert len(stats._offsets["Trade"].values) == 500


def test_recent_ids_forgets_ids_older_than_its_capacity():
    recent = RecentIds(capacity=2)
    assert not recent.seen_before("a")
    assert recent.seen_before("a")
    recent.seen_before("b")
    recent.seen_before("c")  # pushes "a" out
    assert not recent.seen_before("a")


def test_the_registry_knows_every_format_and_rejects_others(tmp_path):
    assert set(FORMATS) == {"binance-raw", "tardis", "lobster", "hyperliquid", "binance-public"}
    with pytest.raises(ValueError, match="unknown format"):
        parse_file("nope", tmp_path / "x")
