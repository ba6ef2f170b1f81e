"""The fast import road: ``binance_raw.records`` agrees with the checking functions line by line (good and
corrupted lines), the threaded reader gives ``open_text``'s lines and errors, binary COPY stores exactly what it
is given (NULLs, empty arrays, extreme values), and the direct COPY falls back to staging on a stored key, also
with two writers racing on the same rows."""

from __future__ import annotations

import gzip
import json
import random
import threading

import psycopg
import pytest
from django.db import connection

from apps.marketdata.parsers import binance_raw
from apps.marketdata.parsers.common import (
    UNPARSABLE,
    BadRecordError,
    MonotonicClock,
    ParseStats,
    Quarantined,
    RecentIds,
    epoch_to_ns,
    open_text,
    open_text_threaded,
    quarantine,
)
from apps.marketdata.writer import BatchedWriter, TableSpec, binary_encoder
from tests.conftest import shared_data

USDM = ("hftbacktest-binance-usdm-btcusdt-20240808", "raw", "usdm_btcusdt_20240808.gz")


def _reference(lines):
    """The parser as it was before the fast path: json + decode_message per line (the checking functions)."""
    clock = MonotonicClock("local receive time")
    recent = RecentIds(100_000)
    for line_no, text in lines:
        if not text.strip():
            continue
        try:
            ts_text, sep, body = text.partition(" ")
            if not sep:
                raise BadRecordError(UNPARSABLE, "expected '<local_ts> <json>'")
            try:
                local_ns = epoch_to_ns(int(ts_text))
            except ValueError:
                raise BadRecordError(UNPARSABLE, f"local timestamp is not an integer: {ts_text[:40]!r}") from None
            clock.step(local_ns)
            try:
                msg = json.loads(body)
            except ValueError as exc:
                raise BadRecordError(UNPARSABLE, f"invalid JSON: {exc}") from None
            ev = binance_raw.decode_message(msg, local_ns, recent)
        except BadRecordError as err:
            yield quarantine(line_no, err, text)
            continue
        if ev is not None:
            yield ev


MUTATIONS = [
    ('"61800.20"', '"abc"'),
    ('"61800.20"', '"-1"'),
    ('"61800.20"', '"NaN"'),
    ('"61800.20"', '" 61800.2"'),
    ('"61800.20"', '"1e999"'),
    ('"61800.20"', "61800.2"),
    ('"61800.20"', "true"),
    ('"0.000"', '"-0.0"'),
    ('"0.000"', '"0"'),
    ('"m":false', '"m":"no"'),
    ('"m":false', '"m":null'),
    ('"T":', '"T":"x","T2":'),
    ('"T":', '"T":true,"T2":'),
    ('"u":', '"u":1.5,"u2":'),
    ('"pu":', '"pu":null,"pu2":'),
    ('"U":', '"U":"1","U2":'),
    ('"b":[[', '"b":[["1"],['),
    ('"b":[[', '"b":[["1","2","3"],['),
    ('"b":[[', '"b":["12",['),
    ('"b":[', '"b":{"x":1},"b2":['),
    ('"a":[[', '"a":[["1e400","1"],['),
    ('"t":', '"t":-5,"t2":'),
    ('"e":"trade"', '"e":"aggTrade","a":7'),
    ('{"stream"', '[{"stream"'),
    ('"data":{', '"data":[{'),
    ('"s":"BTCUSDT"', '"s":NaN'),
    ("}}", "}"),
    # depth diffs (the msgspec road): duplicate keys (the last wins), a missing pu, T of 0 (then E), a partial-book
    # stream, a stream that is no string, a kind overwritten by a duplicate
    ('"pu":', '"pu":1,"pu":'),
    ('"pu":', '"pux":'),
    ('"T":', '"T":0,"T0":'),
    ('"stream":"btcusdt@depth@0ms"', '"stream":"btcusdt@depth5@100ms"'),
    ('"stream":"btcusdt@depth@0ms"', '"stream":7'),
    ('"e":"depthUpdate"', '"e":"depthUpdate","e":"x"'),
]


def _corrupt(lines: list[str], seed: int) -> list[str]:
    rng = random.Random(seed)
    out = []
    for text in lines:
        r = rng.random()
        if r < 0.25:
            old, new = rng.choice(MUTATIONS)
            if old in text:
                text = text.replace(old, new, 1)
        elif r < 0.27:
            text = text[: rng.randrange(len(text))]
        elif r < 0.28:
            ts, _, body = text.partition(" ")
            text = f"{int(ts) - 10**12} {body}"  # back in time
        elif r < 0.29:
            text = ""
        out.append(text)
    return out


def _as_items(recs):
    return [r if type(r) is Quarantined else binance_raw.to_event(r) for r in recs]


def test_records_agree_with_the_checking_functions_on_good_and_corrupted_lines():
    with gzip.open(shared_data(*USDM), "rt") as fh:
        lines = [next(fh).rstrip("\n") for _ in range(6000)]
    for seed in (1, 2, 3):
        corrupted = _corrupt(lines, seed)
        numbered = list(enumerate(corrupted, start=1))
        stats = ParseStats()
        fast = _as_items(binance_raw.records(numbered, stats))
        ref = list(_reference(numbered))
        assert len(fast) == len(ref)
        for a, b in zip(fast, ref, strict=True):
            assert a == b  # same event (values and types compare equal) or same quarantine, reason and detail
            assert type(a) is type(b)
        bad = [q for q in ref if isinstance(q, Quarantined)]
        assert len(bad) > 300 and len({q.reason for q in bad}) >= 5
        assert stats.n_quarantined == len(bad) and stats.n_events == len(ref) - len(bad)
        assert stats.lines == len(corrupted)


def test_records_count_and_time_the_real_recording_like_the_event_parser():
    path = shared_data(*USDM)
    fast, slow = ParseStats(), ParseStats()
    n = sum(1 for _ in binance_raw.records(open_text_threaded(path), fast))
    assert n == sum(1 for _ in binance_raw.parse_file(path, stats=slow)) == 93_954
    assert fast.events == slow.events and fast.lines == slow.lines
    assert (fast.first_ts_exch_ns, fast.last_ts_exch_ns) == (slow.first_ts_exch_ns, slow.last_ts_exch_ns)
    assert fast.clock_offset_ms() == slow.clock_offset_ms()


@pytest.mark.parametrize(
    "text",
    ["a\nb\r\nc\rd\n\ne", "x\r\n", "", "\n\n", "é\nü\r", "no newline", "1 {}\n" * 5000 + "tail"],
)
def test_threaded_reader_gives_open_texts_lines(tmp_path, text):
    plain = tmp_path / "t.txt"
    plain.write_text(text, newline="")
    packed = tmp_path / "t.gz"
    with gzip.open(packed, "wt", newline="") as fh:
        fh.write(text)
    for path in (plain, packed):
        for block in (3, 64, 1 << 20):
            assert list(open_text_threaded(path, block_bytes=block)) == list(open_text(path))


def test_threaded_reader_keeps_the_lines_before_a_read_error_and_raises_it(tmp_path):
    text = "".join(f"{i} line\n" for i in range(20_000))
    data = gzip.compress(text.encode())
    path = tmp_path / "cut.gz"
    path.write_bytes(data[: len(data) * 2 // 3])
    got: list[tuple[int, str]] = []
    with pytest.raises(EOFError):
        for item in open_text_threaded(path):
            got.append(item)
    assert got and got == [(i + 1, f"{i} line") for i in range(len(got))]
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"1 ok\n2 \xff\xfe\n")
    with pytest.raises(UnicodeDecodeError):
        list(open_text_threaded(bad))


def test_stopping_early_ends_the_reader_thread(tmp_path):
    path = tmp_path / "big.txt"
    path.write_text("".join(f"{i} x\n" for i in range(300_000)))
    before = threading.active_count()
    it = open_text_threaded(path, block_bytes=1 << 12)
    assert next(it) == (1, "0 x")
    it.close()
    assert threading.active_count() == before


def test_binary_encoder_refuses_unknown_types_and_wrong_rows():
    with pytest.raises(ValueError, match="unknown binary COPY types"):
        binary_encoder(("int8", "jsonb"))
    with pytest.raises(ValueError, match="binary types"):
        TableSpec("t", ("a", "b"), binary_types=("int8",))
    enc = binary_encoder(("int8", "text"))
    with pytest.raises(psycopg.DataError, match="int8 value 'x'"):
        enc([("x", "y")])
    with pytest.raises(psycopg.DataError, match="row has 1 values"):
        enc([(1,)])
    with pytest.raises(psycopg.DataError, match="bool value 1"):
        binary_encoder(("bool",))([(1,)])


BIN = TableSpec(
    "fastimp_bin",
    ("k", "ts", "small", "x", "txt", "arr", "flag"),
    binary_types=("int8", "timestamptz_ns", "int2", "float8", "text", "float8[]", "bool"),
    dedupe=True,
    direct_first=True,
)


@pytest.fixture
def bin_table(transactional_db):
    with connection.cursor() as cur:
        cur.execute(
            "CREATE TABLE fastimp_bin (id bigserial PRIMARY KEY, k bigint, ts timestamptz, small smallint, "
            "x double precision, txt varchar(64), arr double precision[], flag boolean, UNIQUE (k, ts))"
        )
    yield "fastimp_bin"
    with connection.cursor() as cur:
        cur.execute("DROP TABLE IF EXISTS fastimp_bin")


pytestmark = pytest.mark.django_db(transaction=True)


def _stored():
    with connection.cursor() as cur:
        cur.execute(
            "SELECT k, (extract(epoch FROM ts) * 1e6)::bigint, small, x, txt, arr, flag FROM fastimp_bin ORDER BY id"
        )
        return cur.fetchall()


def test_binary_copy_stores_exactly_the_values_given(bin_table):
    ts = 1_723_161_256_322_123_456
    rows = [
        (1, ts, -1, 61800.3, "5266583935", (61800.2, 0.0, 1e-300), True),
        (2, ts - 1, 32767, -0.0, "", (), False),
        (-(2**63), 0, -32768, 1.7976931348623157e308, "é ü ✓", (5e-324,), None),
        (3, -1_000, 0, None, None, None, True),  # before the epoch: floored to whole µs like ns // 1000
    ]
    writer = BatchedWriter([BIN], flush_interval_s=0.05)
    for r in rows:
        writer.add("fastimp_bin", r)
    assert writer.flush()
    got = _stored()
    assert [g[:3] for g in got] == [(r[0], r[1] // 1000, r[2]) for r in rows]
    assert [g[3:] for g in got] == [(r[3], r[4], None if r[5] is None else list(r[5]), r[6]) for r in rows]
    assert writer.stats.direct == {"fastimp_bin": 4}


def test_direct_copy_falls_back_to_staging_on_a_stored_key(bin_table):
    ts = 1_723_161_256_000_000_000
    rows = [(k, ts + k * 1000, 1, 1.0, "a", (1.0,), True) for k in range(100)]
    w1 = BatchedWriter([BIN], flush_interval_s=0.05)
    w1.add_many("fastimp_bin", rows[:60])
    assert w1.flush()
    assert w1.stats.direct == {"fastimp_bin": 60} and w1.stats.inserted == {"fastimp_bin": 60}
    w2 = BatchedWriter([BIN], flush_interval_s=0.05)
    w2.add_many("fastimp_bin", rows[40:])  # 20 already stored
    assert w2.flush()
    assert w2.stats.inserted == {"fastimp_bin": 40} and w2.stats.duplicates == {"fastimp_bin": 20}
    assert w2.stats.direct == {}  # the direct COPY was rolled back, the staging path stored the rows
    w2.add_many("fastimp_bin", [(1000, ts, 1, 1.0, "b", (), False)])
    assert w2.flush() and w2.stats.direct == {}  # staged from then on
    assert len(_stored()) == 101
    with pytest.raises(ValueError, match="row has 2 values"):
        w2.add_many("fastimp_bin", [(1, 2)])


def test_two_writers_racing_on_the_same_rows_store_each_row_once(bin_table):
    ts = 1_723_161_256_000_000_000
    rows = [(k, ts + k, 0, float(k), str(k), (float(k),), k % 2 == 0) for k in range(20_000)]
    writers = [BatchedWriter([BIN], flush_interval_s=0.05, max_batch_rows=2000) for _ in range(2)]
    errors: list[BaseException] = []

    def run(w: BatchedWriter, order: list) -> None:
        try:
            for i in range(0, len(order), 2000):
                w.add_many("fastimp_bin", order[i : i + 2000])
                assert w.flush()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [
        threading.Thread(target=run, args=(writers[0], rows)),
        threading.Thread(target=run, args=(writers[1], rows)),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors
    stored = _stored()
    assert len(stored) == len({r[0] for r in stored}) == 20_000
    total_inserted = sum(w.stats.inserted.get("fastimp_bin", 0) for w in writers)
    total_dup = sum(w.stats.duplicates.get("fastimp_bin", 0) for w in writers)
    assert (total_inserted, total_dup) == (20_000, 20_000)


def test_fast_levels_accepts_exactly_what_parse_levels_accepts():
    from apps.marketdata.parsers.common import parse_levels

    cases = [
        [["1.5", "2"], ["3", "0.000"]],
        [["1.50", "2.0"]],
        [],
        [["1", "0"]],
        [[" 1", "2"]],
        [["1", "2"], ["3"]],
        [["12"]],
        ["12", "34"],
        [[1.5, 2.0]],
        [["1e999", "1"]],
        [["-1", "1"]],
        [["1", "-0.0"]],
        [["nan", "1"]],
        [["1", "2", "3"]],
        "x",
    ]
    for levels in cases:
        for allow_zero in (True, False):
            try:
                expected = parse_levels(levels, "b", allow_zero=allow_zero)
            except BadRecordError:
                expected = None
            fast = binance_raw._fast_levels(levels, allow_zero)
            if fast is not None:  # the fast path may decline; when it answers, it agrees
                assert expected is not None and tuple(zip(*fast, strict=True)) == expected, levels


def test_the_msgspec_depth_road_takes_every_real_diff_and_builds_the_orjson_roads_record(monkeypatch):
    """Every depth diff of the real recording goes the typed (msgspec) road, and the records equal those of the
    orjson road (the fast path switched off) for the whole file, with the same statistics."""
    with gzip.open(shared_data(*USDM), "rt") as fh:
        numbered = list(enumerate((line.rstrip("\n") for line in fh), start=1))
    depth = [(n, t) for n, t in numbered if binance_raw._DEPTH_MARK in t]
    assert len(depth) == 6_551
    taken = [binance_raw._fast_depth(t.partition(" ")[2], n, int(t.partition(" ")[0])) for n, t in depth]
    assert all(r is not None for r in taken)
    typed_stats, orjson_stats = ParseStats(), ParseStats()
    typed = list(binance_raw.records(numbered, typed_stats))
    monkeypatch.setattr(binance_raw, "_fast_depth", lambda body, line_no, local_ns: None)
    plain = list(binance_raw.records(numbered, orjson_stats))
    assert typed == plain
    assert [type(x) for r in typed for x in r] == [type(x) for r in plain for x in r]
    assert typed_stats.events == orjson_stats.events and typed_stats.clock_offset_ms() == orjson_stats.clock_offset_ms()
