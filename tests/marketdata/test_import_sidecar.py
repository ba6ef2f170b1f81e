"""The import's sidecar process (apps.marketdata.sidecar, importer.SidecarSide): it stores exactly what the
one-process import stores (rows, quarantine, summary) on clean and corrupted real data, really decodes depth
lines, and a sidecar that fails or dies ends the file with an error instead of hanging or passing silently.
Also the pieces it rests on: deferred depth lines (``records(defer_depth=...)``), ParseStats.merge and the
bulk reservoir."""

from __future__ import annotations

import gc
import gzip
import os
import signal
from pathlib import Path

import pytest
from django.db import connection

from apps.marketdata import importer
from apps.marketdata.importer import ImportOptions, SidecarSide, SideRows
from apps.marketdata.parsers import binance_raw
from apps.marketdata.parsers.common import ParseStats, Quarantined, _Reservoir
from apps.marketdata.services import import_files
from apps.marketdata.sidecar import Sidecar, SidecarError
from tests.conftest import shared_data
from tests.marketdata.test_fast_import import _corrupt
from tests.marketdata.test_import import USDM, _head

pytestmark = pytest.mark.django_db(transaction=True)

TABLES = {
    "marketdata_tradetick": "ts, ts_exch_ns, ts_local_ns, price, size, aggressor, trade_id",
    "marketdata_quotetick": "ts, ts_exch_ns, ts_local_ns, bid_px, bid_size, ask_px, ask_size, update_id, dedupe_key",
    "marketdata_depthupdaterecord": "ts, ts_exch_ns, ts_local_ns, first_update_id, last_update_id, prev_update_id, "
    "bid_px, bid_size, ask_px, ask_size, dedupe_key",
    "marketdata_depthsnapshotrecord": "ts, ts_exch_ns, ts_local_ns, last_update_id, bid_px, bid_size, ask_px, "
    "ask_size, dedupe_key",
    "marketdata_quarantine": "file_sha256, line_no, reason, detail, raw, dedupe_key",
}


def _stored() -> dict[str, list[tuple]]:
    with connection.cursor() as cur:
        out = {}
        for table, cols in TABLES.items():
            cur.execute(f"SELECT {cols} FROM {table} ORDER BY {cols}")
            out[table] = cur.fetchall()
        return out


def _clear() -> None:
    with connection.cursor() as cur:
        cur.execute(f"TRUNCATE {', '.join(TABLES)}")


def _import(paths: list[Path], tmp_path: Path, *, sidecar: bool = True):
    """The file summaries of importing ``paths`` as the USD-M BTCUSDT perp."""
    return import_files(
        paths,
        fmt="binance-raw",
        venue="binance-usdm",
        symbol="BTCUSDT",
        kind="perp",
        tick_size=0.1,
        lot_size=0.001,
        options=ImportOptions(spill_dir=tmp_path / "spill", sidecar=sidecar),
    ).files


def _summary(f) -> dict:
    keep = ("lines", "parsed", "inserted", "duplicates", "quarantined", "clock_offset_ms", "book_matches")
    return {k: getattr(f, k) for k in (*keep, "book_mismatches", "spilled_rows", "error")}


@pytest.fixture
def sidecar_results(monkeypatch):
    """What each SidecarSide.finish_file returned (the parent's side of the protocol)."""
    results = []
    original = SidecarSide.finish_file

    def finish_file(self):
        result = original(self)
        results.append(result)
        return result

    monkeypatch.setattr(SidecarSide, "finish_file", finish_file)
    return results


@pytest.mark.parametrize("corrupt", [False, True], ids=["clean", "corrupted"])
def test_sidecar_and_one_process_store_the_same_rows_quarantine_and_summary(tmp_path, corrupt, sidecar_results):
    lines = [t.rstrip("\n") for t in _head(shared_data(*USDM), tmp_path / "clean.txt", 20_000)]
    if corrupt:  # a quarter of the lines mutated (bad levels, types, JSON), some cut, some back in time
        lines = _corrupt(lines, seed=11)
    path = tmp_path / "input.gz"
    with gzip.open(path, "wt") as fh:
        fh.write("\n".join(lines) + "\n")

    (side,) = _import([path], tmp_path, sidecar=True)
    stored_side = _stored()
    _clear()
    (local,) = _import([path], tmp_path, sidecar=False)
    stored_local = _stored()

    assert _summary(side) == _summary(local)
    assert side.parsed["depth_updates"] > 400 and side.book_matches > 0
    if corrupt:
        assert sum(side.quarantined.values()) > 1_500 and not side.error
        assert {"bad_price", "bad_side", "unparsable", "ts_out_of_order"} <= set(side.quarantined)
    for table in TABLES:
        assert stored_side[table] == stored_local[table], table
    assert len(stored_side["marketdata_quotetick"]) == side.parsed["quotes"]
    # the sidecar decoded depth lines itself (not only the rows of depth the parser decoded)
    (result,) = sidecar_results
    assert result.stats is not None and result.stats.events["DepthUpdate"] > 100


def _alarm(seconds: int):
    def fail(*_):
        raise TimeoutError(f"the import did not end within {seconds} s")

    old = signal.signal(signal.SIGALRM, fail)
    signal.alarm(seconds)
    return old


@pytest.mark.parametrize("how", ["raises", "dies"])
def test_a_failing_sidecar_ends_the_file_with_an_error_and_the_run_goes_on_in_one_process(tmp_path, monkeypatch, how):
    lines = _head(shared_data(*USDM), tmp_path / "clean.txt", 18_000)
    first, second = tmp_path / "first.txt", tmp_path / "second.txt"
    first.write_text("".join(lines[:12_000]))
    second.write_text("".join(lines[12_000:]))
    parent = os.getpid()
    calls = {"n": 0}
    original = SideRows.process

    def process(self, recs):  # the forked child inherits this patch; only the child fails
        calls["n"] += 1
        if os.getpid() != parent and calls["n"] == 3:
            if how == "dies":
                os._exit(9)
            raise RuntimeError("boom in the sidecar")
        return original(self, recs)

    monkeypatch.setattr(SideRows, "process", process)
    old = _alarm(120)
    try:
        f, g = _import([first, second], tmp_path)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    assert "the depth rows of this file may be incomplete" in f.error
    assert ("boom in the sidecar" in f.error) if how == "raises" else ("exit status 9" in f.error)
    assert f.quarantined.get("file_error") == 1
    # the parser's own rows (trades, quotes) are all stored; the error says the depth rows may not be
    assert f.inserted["trades"] == f.parsed["trades"] > 0 and f.inserted["quotes"] == f.parsed["quotes"] > 0
    # the next file is imported whole, in this process
    assert not g.error and g.inserted == g.parsed and g.parsed["depth_updates"] > 100 and not g.quarantined


def test_sidecar_round_trip_keeps_order_and_reports_a_child_exception():
    def serve(recv, reply):
        seen = []
        while (msg := recv()) is not None:
            if msg == "sum":
                reply(sum(seen))
            elif msg == "fail":
                raise ValueError("child says no")
            else:
                seen.append(msg)

    with Sidecar(serve) as car:
        for i in range(1000):
            car.send(i)
        assert car.request("sum") == sum(range(1000))
        car.send("fail")
        with pytest.raises(SidecarError, match="child says no"):
            car.request("sum")


def test_records_defers_depth_lines_that_decode_to_the_same_records(tmp_path):
    lines = _head(shared_data(*USDM), tmp_path / "clean.txt", 5_000)
    numbered = [(i, t.rstrip("\n")) for i, t in enumerate(lines, start=1)]
    direct = list(binance_raw.records(numbered, ParseStats()))
    stats = ParseStats()
    deferred = list(binance_raw.records(numbered, stats, defer_depth=lambda: True))
    raw = [r for r in deferred if r[0] == binance_raw.RAW]
    assert len(raw) == sum(1 for r in direct if r[0] == binance_raw.DEPTH) > 100
    assert stats.events["DepthUpdate"] == 0  # counted where they are decoded
    side_stats = ParseStats()
    decoded = {}
    for r in raw:
        (decoded[r[1]],) = binance_raw.records([(r[1], r[2])], side_stats, 1)  # one line, one record
    rebuilt = [decoded[r[1]] if r[0] == binance_raw.RAW else r for r in deferred]
    assert rebuilt == direct
    stats.merge(side_stats)
    full = ParseStats()
    list(binance_raw.records(numbered, full))
    assert stats.events == full.events and stats.clock_offset_ms() == full.clock_offset_ms()
    assert (stats.first_ts_exch_ns, stats.last_ts_exch_ns) == (full.first_ts_exch_ns, full.last_ts_exch_ns)


def test_lines_that_could_be_trades_are_never_deferred():
    depth = '{"stream":"btcusdt@depth@0ms","data":{"e":"depthUpdate","E":1,"T":1,"U":1,"u":2,"pu":0,"b":[],"a":[]}}'
    sneaky = [
        depth.replace('"e":"depthUpdate"', '"e":"trade","x":"depthUpdate"'),
        depth.replace('"e":"depthUpdate"', '"e":"tr\\u0061de","x":"depthUpdate"'),
    ]
    lines = [(1, f"1723161255000000000 {depth}")] + [(i + 2, f"1723161255000000001 {s}") for i, s in enumerate(sneaky)]
    out = list(binance_raw.records(lines, ParseStats(), defer_depth=lambda: True))
    assert out[0][0] == binance_raw.RAW
    assert all(not (type(r) is tuple and r[0] == binance_raw.RAW) for r in out[1:])


def test_reservoir_add_many_draws_exactly_as_add_one_by_one():
    values = [float(i % 977) for i in range(5_000)]
    one, bulk = _Reservoir(1_000, seed=3), _Reservoir(1_000, seed=3)
    for x in values:
        one.add(x)
    for i in range(0, len(values), 333):
        bulk.add_many(values[i : i + 333])
    assert (one.n, one.values) == (bulk.n, bulk.values)


def test_parse_stats_merge_adds_counts_and_pools_offsets():
    a, b = ParseStats(), ParseStats()
    a.note("Trade", 2_000, 5_000_000)
    b.note("DepthUpdate", 1_000, 3_000_000)
    b.note("Trade", 3_000, 4_000_000)
    b.add_quarantine(Quarantined(7, "bad_price", "", "x"))
    b.ignored["control_message"] += 2
    a.merge(b)
    assert a.events == {"Trade": 2, "DepthUpdate": 1} and a.quarantined == {"bad_price": 1}
    assert a.ignored == {"control_message": 2}
    assert (a.first_ts_exch_ns, a.last_ts_exch_ns) == (1_000, 3_000)
    assert a.clock_offset_ms("Trade") == pytest.approx((4.998 + 3.997) / 2)
    assert a.clock_offset_ms() == pytest.approx(3.997)


def test_an_import_leaves_the_garbage_collector_as_it_found_it(tmp_path):
    lines = _head(shared_data(*USDM), tmp_path / "clean.txt", 2_000)
    path = tmp_path / "input.txt"
    path.write_text("".join(lines))
    before = gc.get_threshold()
    (f,) = _import([path], tmp_path)
    assert f.inserted["quotes"] > 0
    assert gc.get_threshold() == before and gc.get_freeze_count() == 0


def test_sidecar_is_the_default_where_fork_exists():
    assert ImportOptions().sidecar is True
    side = importer._make_side("binance-raw", ImportOptions())
    try:
        assert isinstance(side, SidecarSide) == hasattr(os, "fork")
    finally:
        side.close()
    assert importer._make_side("tardis", ImportOptions()) is None
