"""import_marketdata on the real samples (exact counts from the manifests), idempotent re-import, corrupted copies,
replay round trip and Parquet export. Imports run on the test database in real transactions (the writer's thread
has its own connection)."""

from __future__ import annotations

import gzip
import io
import random
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
from django.core.management import call_command
from django.db import connection

from apps.marketdata import selectors
from apps.marketdata.importer import ImportOptions
from apps.marketdata.models import DepthUpdateRecord, ImportFile, Quarantine, QuoteTick, TradeTick
from apps.marketdata.parsers import ParseStats, Quarantined, parse_file
from apps.marketdata.replay import paced, replay
from apps.marketdata.services import ensure_instrument, import_files
from apps.marketdata.timescale import POSTGRESQL, db_mode
from tests.conftest import shared_data

pytestmark = pytest.mark.django_db(transaction=True)

USDM = ("hftbacktest-binance-usdm-btcusdt-20240808", "raw", "usdm_btcusdt_20240808.gz")


def _opts(tmp_path: Path) -> ImportOptions:
    return ImportOptions(spill_dir=tmp_path / "spill")


def _count(model, iid: int) -> int:
    return model.objects.filter(instrument_id=iid).count()


def _head(src: Path, dst: Path, n: int) -> list[str]:
    with gzip.open(src, "rt") as fh:
        lines = [next(fh) for _ in range(n)]
    dst.write_text("".join(lines))
    return lines


def test_usdm_raw_sample_imports_exactly_and_reimport_adds_nothing(tmp_path):
    path = shared_data(*USDM)
    kw = {"fmt": "binance-raw", "venue": "binance-usdm", "symbol": "BTCUSDT", "options": _opts(tmp_path)}
    s1 = import_files([path], kind="perp", tick_size=0.1, lot_size=0.001, **kw)
    f = s1.files[0]
    expected = {"trades": 21_313, "quotes": 66_089, "depth_updates": 6_551, "depth_snapshots": 1}
    assert f.parsed == expected and f.inserted == expected and f.quarantined == {}
    assert (f.book_matches, f.book_mismatches) == (629, 0)  # manifest: all 629 shared update ids agree
    assert f.clock_offset_ms == pytest.approx(-1270, abs=10)  # manifest quirk 1
    assert s1.db_mode == db_mode() == POSTGRESQL
    iid = ensure_instrument("binance-usdm", "BTCUSDT").pk
    assert _count(TradeTick, iid) == 21_313 and _count(QuoteTick, iid) == 66_089
    levels = DepthUpdateRecord.objects.filter(instrument_id=iid).extra(
        select={"n": "cardinality(bid_px) + cardinality(ask_px)"}
    )
    assert sum(r.n for r in levels) == 443_521  # manifest: depth_updates rows, one per level
    assert "database mode: postgresql" in s1.format() and "629 match, 0 mismatch" in s1.format()

    s2 = import_files([path], **kw)
    f2 = s2.files[0]
    assert f2.inserted == dict.fromkeys(expected, 0) and f2.duplicates == expected
    assert _count(TradeTick, iid) == 21_313 and _count(QuoteTick, iid) == 66_089
    assert ImportFile.objects.filter(sha256=f.sha256).count() == 2


def test_spot_raw_two_files_rebuild_the_book_across_midnight(tmp_path):
    root = shared_data("hftbacktest-binance-spot-btcusdt-20240808", "raw")
    s = import_files(
        [root / "spot_btcusdt_20240808.gz", root / "spot_btcusdt_20240809.gz"],
        fmt="binance-raw",
        venue="binance",
        symbol="BTCUSDT",
        tick_size=0.01,
        lot_size=0.00001,
        options=_opts(tmp_path),
    )
    parsed = s.totals("parsed")
    assert parsed["trades"] == 19_904 and parsed["quotes"] == 73_174 and parsed["depth_snapshots"] == 1
    assert sum(f.book_matches for f in s.files) == 1_072 and sum(f.book_mismatches for f in s.files) == 0
    assert s.totals("quarantined") == {}
    iid = ensure_instrument("binance", "BTCUSDT").pk
    # spot bookTicker has no exchange time: ts falls back to the local clock, so no quote is dated 1970
    assert not QuoteTick.objects.filter(instrument_id=iid, ts__year__lt=2024).exists()
    assert _count(QuoteTick, iid) == 73_174


@pytest.mark.parametrize(
    ("fmt", "parts", "expected"),
    [
        (
            "tardis",
            ("tardis-binance-futures-btcusdt-20200222", "binance-futures_trades_BTCUSDT_2020-02-22.csv.gz"),
            {"trades": 9_999},
        ),
        (
            "tardis",
            ("tardis-binance-futures-btcusdt-20200222", "binance-futures_quotes_BTCUSDT_2020-02-22.csv.gz"),
            {"quotes": 9_999},
        ),
        (
            "lobster",
            ("lobster-amzn-20120621-level1", "LOBSTER_SampleFile_AMZN_2012-06-21_1.zip"),
            {"trades": 8_974 + 2_445, "quotes": 57_515},
        ),
        (
            "hyperliquid",
            ("hftbacktest-hyperliquid-btc-20250126-tiny", "raw", "hyperliquid_btc_20250126.gz"),
            {"trades": 64, "depth_snapshots": 46},
        ),
    ],
)
def test_real_samples_of_each_format_import_exactly_once(tmp_path, fmt, parts, expected):
    path = shared_data(*parts)
    kw = {"fmt": fmt, "venue": fmt, "symbol": "X", "tick_size": 0.01, "lot_size": 0.001, "options": _opts(tmp_path)}
    f = import_files([path], **kw).files[0]
    assert f.parsed == expected and f.inserted == expected and f.quarantined == {}
    f2 = import_files([path], **kw).files[0]
    assert sum(f2.inserted.values()) == 0 and f2.duplicates == expected


BINANCE_PUBLIC_TRADES = """id,price,qty,quote_qty,time,is_buyer_maker,is_best_match
1,61800.1,0.5,30900.05,1723161256322,true,true
2,61800.2,0.1,6180.02,1723161256323,false,true
3,61800.2,-0.1,6180.02,1723161256324,false,true
4,nan,0.1,6180.02,1723161256325,false,true
"""


def test_binance_public_csv_fixture_keeps_good_rows_and_quarantines_bad(tmp_path):
    path = tmp_path / "BTCUSDT-trades-2024-08-08.csv"
    path.write_text(BINANCE_PUBLIC_TRADES)
    kw = {"fmt": "binance-public", "venue": "bp", "symbol": "BTCUSDT", "tick_size": 0.1, "lot_size": 0.001}
    f = import_files([path], options=_opts(tmp_path), **kw).files[0]
    assert f.inserted == {"trades": 2} and f.quarantined == {"bad_size": 1, "bad_price": 1}
    assert set(Quarantine.objects.values_list("line_no", flat=True)) == {4, 5}
    import_files([path], options=_opts(tmp_path), **kw)
    assert Quarantine.objects.count() == 2  # quarantine rows are idempotent too


def _json_nan(text: str) -> str | None:
    return re.sub(r'"(p|px)":"[^"]*"', r'"\1":"NaN"', text, count=1) if re.search(r'"(p|px)":"', text) else None


def _json_negative(text: str) -> str | None:
    m = re.search(r'"(q|sz)":"', text)
    return text[: m.end()] + "-" + text[m.end() :] if m else None


def _json_garbage(text: str) -> str:
    return f"{text.split(' ', 1)[0]} {{not json at all]]"


def _corrupt(
    lines: list[str],
    seed: int,
    nan=_json_nan,
    negative=_json_negative,
    garbage=_json_garbage,
) -> tuple[list[str], dict[int, str]]:
    """Corrupt a copy: truncated lines, garbage, NaN prices, negative sizes, a shuffled block (``nan`` and
    ``negative`` rewrite a line of the format, or return None when it has no such field)."""
    rng = random.Random(seed)
    out = list(lines)
    bad: dict[int, str] = {}
    n = len(out)
    lo, hi = min(100, n // 10) or 1, n - min(200, n // 5)
    idx = rng.sample(range(lo, hi), min(40, (hi - lo) // 3))
    for k, i in enumerate(idx):
        text = out[i].rstrip("\n")
        if k % 4 == 0:
            out[i] = text[: len(text) // 2] + "\n"
        elif k % 4 == 1:
            out[i] = garbage(text) + "\n"
        elif k % 4 == 2 and nan(text) is not None:
            out[i] = nan(text) + "\n"
        elif negative(text) is not None:
            out[i] = negative(text) + "\n"
        else:
            out[i] = text[: len(text) // 3] + "\n"
        bad[i + 1] = out[i]
    if n >= 400:  # shuffle a block near the end: the receive (or message) time goes backwards there
        block = out[-150:-100]
        rng.shuffle(block)
        out[-150:-100] = block
    return out, bad


def _csv_field(col: int, rewrite):
    def mutate(text: str) -> str | None:
        cells = text.split(",")
        if len(cells) <= col:
            return None
        cells[col] = rewrite(cells[col])
        return ",".join(cells)

    return mutate


def test_corrupted_copy_keeps_every_good_row_and_quarantines_every_bad_one(tmp_path):
    src = shared_data(*USDM)
    lines = _head(src, tmp_path / "clean.txt", 3000)
    corrupted, bad = _corrupt(lines, seed=7)
    path = tmp_path / "corrupt.gz"
    with gzip.open(path, "wt") as fh:
        fh.writelines(corrupted)
    # the reference: what the (separately tested) parser accepts and refuses in this file
    stats = ParseStats()
    items = list(parse_file("binance-raw", path, stats=stats))
    refused = {q.line_no: q.reason for q in items if isinstance(q, Quarantined)}
    assert set(bad) <= set(refused)  # every corrupted line is refused
    assert stats.n_events + stats.n_quarantined + sum(stats.ignored.values()) == len(corrupted)

    f = import_files(
        [path], fmt="binance-raw", venue="c", symbol="X", tick_size=0.1, lot_size=0.001, options=_opts(tmp_path)
    ).files[0]
    iid = ensure_instrument("c", "X").pk
    assert _count(TradeTick, iid) == stats.events["Trade"]
    assert _count(QuoteTick, iid) == stats.events["BestBidAsk"]
    assert _count(DepthUpdateRecord, iid) == stats.events["DepthUpdate"]
    stored = dict(Quarantine.objects.filter(import_file__sha256=f.sha256).values_list("line_no", "reason"))
    for line_no, reason in refused.items():
        assert stored[line_no] == reason
    assert {k: v for k, v in f.quarantined.items() if k in set(refused.values())} == dict(stats.quarantined)
    raw = Quarantine.objects.get(import_file__sha256=f.sha256, line_no=min(bad))
    assert raw.raw == bad[min(bad)].rstrip("\n")[:2000]


_TARDIS = "tardis-binance-futures-btcusdt-20200222"
_LOBSTER = "lobster-amzn-20120621-level1"
_LOBSTER_MESSAGES = "AMZN_2012-06-21_34200000_57600000_message_1.csv.gz"
_CSV_GARBAGE = lambda text: "not,a,valid,row"  # noqa: E731 - a column count no CSV format here has


_USDM_DERIVED = ("hftbacktest-binance-usdm-btcusdt-20240808", "derived")


def _binance_public(kind: str):
    """A Binance public-data CSV (futures layout, with its header) made from the USD-M recording's real trades or
    bookTicker messages (its MANIFEST's derived files): there is no public-data sample in ../shared/data."""

    def build(tmp_path: Path) -> Path:
        name = "trades.csv.gz" if kind == "trades" else "bbo.csv.gz"
        with gzip.open(shared_data(*_USDM_DERIVED, name), "rt") as fh:
            rows = [r.rstrip("\n").split(",") for r in fh.readlines()[1:]]
        if kind == "trades":  # local_ts_ns,event_ts_ms,trade_ts_ms,trade_id,price,qty,is_buyer_maker,aggressor_side
            out = ["id,price,qty,quote_qty,time,is_buyer_maker"]
            out += [f"{r[3]},{r[4]},{r[5]},{float(r[4]) * float(r[5]):.8f},{r[2]},{'true' if r[6] == '1' else 'false'}"
                    for r in rows]  # fmt: skip
        else:  # local_ts_ns,event_ts_ms,tx_ts_ms,update_id,bid_px,bid_qty,ask_px,ask_qty
            out = ["update_id,best_bid_price,best_bid_qty,best_ask_price,best_ask_qty,transaction_time,event_time"]
            out += [f"{r[3]},{r[4]},{r[5]},{r[6]},{r[7]},{r[2]},{r[1]}" for r in rows]
        tmp_path.mkdir(exist_ok=True)
        path = tmp_path / f"BTCUSDT-{kind}-2024-08-08.csv.gz"
        with gzip.open(path, "wt") as fh:
            fh.write("\n".join(out) + "\n")
        return path

    return build


@pytest.mark.parametrize(
    ("fmt", "parts", "nan", "negative", "garbage"),
    [
        (
            "tardis",
            (_TARDIS, "binance-futures_trades_BTCUSDT_2020-02-22.csv.gz"),
            _csv_field(6, lambda v: "NaN"),
            _csv_field(7, lambda v: "-" + v),
            _CSV_GARBAGE,
        ),
        (
            "tardis",
            (_TARDIS, "binance-futures_quotes_BTCUSDT_2020-02-22.csv.gz"),
            _csv_field(5, lambda v: "NaN"),
            _csv_field(4, lambda v: "-" + v),
            _CSV_GARBAGE,
        ),
        (
            "lobster",
            (_LOBSTER, _LOBSTER_MESSAGES),
            _csv_field(4, lambda v: "0"),  # prices are integers (USD x 10,000): a NaN is unparsable, a 0 is bad
            _csv_field(3, lambda v: "-" + v),
            _CSV_GARBAGE,
        ),
        (
            "hyperliquid",
            ("hftbacktest-hyperliquid-btc-20250126-tiny", "raw", "hyperliquid_btc_20250126.gz"),
            _json_nan,
            _json_negative,
            _json_garbage,
        ),
        (
            "binance-public",
            _binance_public("trades"),
            _csv_field(1, lambda v: "NaN"),
            _csv_field(2, lambda v: "-" + v),
            _CSV_GARBAGE,
        ),
        (
            "binance-public",
            _binance_public("bookTicker"),
            _csv_field(1, lambda v: "NaN"),
            _csv_field(2, lambda v: "-" + v),
            _CSV_GARBAGE,
        ),
    ],
    ids=["tardis-trades", "tardis-quotes", "lobster", "hyperliquid", "public-trades", "public-bookticker"],
)
def test_corrupted_copies_of_the_other_formats_keep_good_rows_and_quarantine_bad_ones(
    tmp_path, fmt, parts, nan, negative, garbage
):
    src = parts(tmp_path / "source") if callable(parts) else shared_data(*parts)
    with gzip.open(src, "rt") as fh:
        lines = fh.readlines()
    corrupted, bad = _corrupt(lines, seed=5, nan=nan, negative=negative, garbage=garbage)
    assert len(bad) >= 10
    path = tmp_path / src.name  # the same name: LOBSTER finds its orderbook file by it
    with gzip.open(path, "wt") as fh:
        fh.writelines(corrupted)
    if fmt == "lobster":
        book = src.name.replace("message", "orderbook")
        (tmp_path / book).write_bytes(shared_data(_LOBSTER, book).read_bytes())
    stats = ParseStats()
    items = list(parse_file(fmt, path, stats=stats))
    refused = {q.line_no: q.reason for q in items if isinstance(q, Quarantined)}
    assert set(bad) <= set(refused)  # every corrupted line is refused
    assert {"unparsable", "bad_price", "bad_size"} <= set(refused.values())

    f = import_files(
        [path], fmt=fmt, venue="c", symbol=fmt, tick_size=0.01, lot_size=0.001, options=_opts(tmp_path)
    ).files[0]
    assert not f.error
    iid = ensure_instrument("c", fmt).pk
    labels = {
        "Trade": "trades",
        "BestBidAsk": "quotes",
        "DepthUpdate": "depth_updates",
        "DepthSnapshot": "depth_snapshots",
    }
    expected = {labels[k]: n for k, n in stats.events.items() if n}
    assert f.parsed == expected and f.inserted == expected  # every good row lands
    assert _count(TradeTick, iid) == stats.events["Trade"] and _count(QuoteTick, iid) == stats.events["BestBidAsk"]
    stored = dict(Quarantine.objects.filter(import_file__sha256=f.sha256).values_list("line_no", "reason"))
    assert stored == refused and f.quarantined == dict(stats.quarantined)


def test_unreadable_file_ends_with_a_file_error_and_keeps_what_was_read(tmp_path):
    src = shared_data(*USDM)
    lines = _head(src, tmp_path / "clean.txt", 500)
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb") as gz:
        gz.write("".join(lines).encode())
    path = tmp_path / "truncated.gz"
    path.write_bytes(buf.getvalue()[: len(buf.getvalue()) * 2 // 3])  # cut mid-stream
    f = import_files(
        [path], fmt="binance-raw", venue="t", symbol="X", tick_size=0.1, lot_size=0.001, options=_opts(tmp_path)
    ).files[0]
    assert f.error and f.quarantined.get("file_error") == 1
    assert sum(f.inserted.values()) == sum(f.parsed.values()) > 0


def test_replay_returns_the_stored_range_as_the_parsed_event_stream(tmp_path):
    src = shared_data(*USDM)
    path = tmp_path / "head.txt"
    _head(src, path, 2000)
    import_files(
        [path], fmt="binance-raw", venue="r", symbol="X", tick_size=0.1, lot_size=0.001, options=_opts(tmp_path)
    )
    iid = ensure_instrument("r", "X").pk
    rank = {"DepthSnapshot": 0, "DepthUpdate": 1, "Trade": 3, "BestBidAsk": 4}
    parsed = [e for e in parse_file("binance-raw", path) if not isinstance(e, Quarantined)]
    parsed.sort(key=lambda e: (e.ts_local_ns, rank[type(e).__name__]))
    lo, hi = selectors.stored_range_ns(iid)
    replayed = list(replay(iid, lo, hi))
    assert replayed == parsed
    # a sub-range, paced on a fake clock at 1000x: wall gaps are local gaps / 1000
    mid = parsed[len(parsed) // 2].ts_local_ns
    now = [0.0]
    sleeps: list[float] = []

    def sleep(s: float) -> None:
        sleeps.append(s)
        now[0] += s

    part = list(replay(iid, mid, hi, speed=1000.0, clock=lambda: now[0], sleep=sleep))
    assert part == [e for e in parsed if e.ts_local_ns >= mid]
    assert now[0] == pytest.approx((part[-1].ts_local_ns - part[0].ts_local_ns) / 1e9 / 1000, rel=1e-6)
    with pytest.raises(ValueError, match="speed"):
        list(paced(iter(part), 0.0))


def test_export_marketdata_writes_parquet_and_bars_cover_the_range(tmp_path):
    import pyarrow.parquet as pq

    src = shared_data(*USDM)
    path = tmp_path / "head.txt"
    _head(src, path, 3000)
    call_command(
        "import_marketdata", str(path), "--format", "binance-raw", "--venue", "e", "--symbol", "X",
        "--tick-size", "0.1", "--lot-size", "0.001", stdout=io.StringIO(),
    )  # fmt: skip
    iid = ensure_instrument("e", "X").pk
    out = tmp_path / "trades.parquet"
    start, end = "2024-08-08T00:00:00", "2024-08-10T00:00:00"
    call_command(
        "export_marketdata", "--venue", "e", "--symbol", "X", "--start", start, "--end", end, "--out", str(out),
        stdout=io.StringIO(),
    )  # fmt: skip
    table = pq.read_table(out)
    assert table.num_rows == _count(TradeTick, iid) > 0
    assert (
        table.column("price").to_pylist()[0]
        == TradeTick.objects.filter(instrument_id=iid).order_by("ts", "id")[0].price
    )
    bars = selectors.bars(iid, datetime(2024, 8, 8, tzinfo=UTC), datetime(2024, 8, 10, tzinfo=UTC))
    assert sum(b["n_trades"] for b in bars) == _count(TradeTick, iid)
    assert sum(b["n_quotes"] for b in bars) == _count(QuoteTick, iid)
    assert all(b["mid"] is None or b["spread"] >= 0 for b in bars)
    with connection.cursor() as cur:
        cur.execute("SELECT count(*) FROM pg_indexes WHERE indexname = 'marketdata_tradetick_ts_brin'")
        assert cur.fetchone()[0] == 1  # plain PostgreSQL mode: BRIN time index
