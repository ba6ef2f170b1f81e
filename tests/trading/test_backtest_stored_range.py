"""``manage.py backtest --venue V --symbol S [--start T] [--end T]``: a backtest over market data already stored in
PostgreSQL (imported with the import service) gives the same decisions and fills as the same backtest over the
recorded file, and every bad source is a clear CommandError that stores nothing."""

from __future__ import annotations

import gzip
import io
import json
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command

from apps.engine.market.events import BestBidAsk, DepthSnapshot, DepthUpdate, Funding, Trade
from apps.marketdata.importer import ImportOptions
from apps.marketdata.models import Instrument
from apps.marketdata.selectors import stored_range_ns
from apps.marketdata.services import import_files
from apps.trading.backtest import (
    STORED,
    StoredRange,
    create_sweep,
    execute_run_by_id,
    load_events,
    load_stored,
    ns_to_iso,
    parse_time_ns,
    sweep_table,
)
from apps.trading.models import BacktestRun, FillRecord, PnlPoint, QuoteDecisionRecord, SweepRun, TradingSession
from tests.conftest import shared_data
from tests.trading.test_backtest_command import PARAMS, SP, write_binance_raw

pytestmark = pytest.mark.django_db(transaction=True)

USDM = ("hftbacktest-binance-usdm-btcusdt-20240808", "raw", "usdm_btcusdt_20240808.gz")
USDM_LINES = 12_000  # a slice: the first 12,000 lines (47 s of market; each strategy fills both sides)
USDM_PARAMS = {
    # the skew cap (issue 16) keeps GLFT's reducing quote out of the shallow depths, where this short slice's fills
    # are; off, GLFT fills both sides often enough for the comparison to cover fills (the cap has its own tests)
    "strategy": {
        "sigma_bucket_s": 0.25,
        "sigma_min_buckets": 8,
        "kappa_min_volume": 0.05,
        "skew_cap_by_fill_cost": False,
    },
    "fixed": {"half_spread_bps": 0.2},
    "as": {"horizon_s": 5.0},
    "venue": {"entry_latency_ns": 2_000_000, "response_latency_ns": 3_000_000},
    # the session's risk rules run in backtests too; this recorder's clock was 1.27 s behind the exchange, past the
    # default 1 s skew bound that would pull quotes for the whole run (as it would live)
    "risk": {"clock_skew": {"max_abs_skew_ms": 2000.0}},
}
# the file run needs tick/lot and names its own instrument; the stored run takes both from the stored Instrument
USDM_FILE_PARAMS = {
    **USDM_PARAMS,
    "venue": {**USDM_PARAMS["venue"], "tick_size": 0.1, "lot_size": 0.001},
    "instrument": {"venue": "file-usdm", "symbol": "BTCUSDT", "kind": "perp"},
}
# the stored run over the fixture: no tick/lot (the Instrument's) and no instrument section
SIM_STORED_PARAMS = {k: v for k, v in PARAMS.items() if k != "instrument"}
SIM_STORED_PARAMS["venue"] = {k: v for k, v in PARAMS["venue"].items() if k not in ("tick_size", "lot_size")}
TIMING = ("wall_s", "events_per_s", "data")


def run_command(*args: str) -> str:
    out = io.StringIO()
    call_command("backtest", *args, stdout=out)
    return out.getvalue()


def run_json(*args: str) -> list[dict[str, Any]]:
    got = json.loads(run_command(*args, "--json"))
    return got if isinstance(got, list) else [got]


def _import(path: Path, venue: str, tmp_path: Path, *, tick: float, lot: float) -> Instrument:
    summary = import_files(
        [path],
        fmt="binance-raw",
        venue=venue,
        symbol="BTCUSDT",
        kind="perp",
        tick_size=tick,
        lot_size=lot,
        options=ImportOptions(spill_dir=tmp_path / "spill"),
    )
    assert summary.files[0].error == ""
    return Instrument.objects.get(venue=venue, symbol="BTCUSDT")


def session_record(session_id: int) -> dict[str, list[tuple]]:
    """What a backtest stored, in order: decisions and fills with every value that matters."""
    decisions = [
        (d.ts_ns, d.mid, d.bid_px, d.ask_px, d.bid_size, d.ask_size, d.reasons)
        for d in QuoteDecisionRecord.objects.filter(session_id=session_id).order_by("ts_ns", "id")
    ]
    fills = [
        (f.ts_ns, f.side, f.price, f.size, f.fee, f.liquidity)
        for f in FillRecord.objects.filter(session_id=session_id).order_by("ts_ns", "id")
    ]
    pnl = [
        (p.ts_ns, p.position, p.cash, p.total)
        for p in PnlPoint.objects.filter(session_id=session_id).order_by("ts_ns", "id")
    ]
    return {"decisions": decisions, "fills": fills, "pnl": pnl}


def assert_same_backtest(stored: dict[str, Any], from_file: dict[str, Any]) -> None:
    assert stored["strategy"] == from_file["strategy"]
    a, b = session_record(stored["session_id"]), session_record(from_file["session_id"])
    assert len(a["decisions"]) == len(b["decisions"]) == stored["decisions"]
    assert len(a["fills"]) == len(b["fills"]) == stored["fills_buy"] + stored["fills_sell"]
    assert a["decisions"] == b["decisions"]
    assert a["fills"] == b["fills"]
    assert a["pnl"] == b["pnl"]
    strip = lambda s: {k: v for k, v in s.items() if k not in (*TIMING, "session_id", "run_id")}  # noqa: E731
    assert strip(stored) == strip(from_file)


# --- the fixture case (no shared data needed) ------------------------------------------------------------------


@pytest.fixture
def sim_stored(tmp_path: Path) -> tuple[Path, Instrument]:
    path = write_binance_raw(tmp_path / "sim.txt", 60, seed=4)
    return path, _import(path, "sim-stored", tmp_path, tick=SP.tick_size, lot=SP.lot_size)


# The store keeps no file order across tables: events at the SAME local ns come back snapshot, depth, funding,
# trade, quote (apps.marketdata.selectors._RANK), whatever order the file had them in.
STORE_TIE_RANK = {DepthSnapshot: 0, DepthUpdate: 1, Funding: 2, Trade: 3, BestBidAsk: 4}


def _line_rank(line: str) -> tuple[int, int]:
    local, msg = line.split(" ", 1)
    stream = json.loads(msg).get("stream", "")
    kind = Trade if "@trade" in stream else BestBidAsk if "@bookTicker" in stream else DepthUpdate
    return int(local), STORE_TIE_RANK[DepthSnapshot if not stream else kind]


def test_the_store_orders_equal_local_times_by_kind_and_otherwise_returns_the_file(sim_stored, tmp_path) -> None:
    """The simulator stamps a quote and the trade after it with the same local ns (file: quote, trade); the store
    gives them back trade first. Nothing else differs: same events, same values, same order otherwise."""
    path, _inst = sim_stored
    file_events = load_events([path], "binance-raw").events
    stored = load_stored(StoredRange("sim-stored", "BTCUSDT")).events
    assert len(stored) == len(file_events) > 500
    assert stored != file_events  # the fixture has ties (if the simulator stops making them, this test says so)
    tie_sorted = sorted(file_events, key=lambda e: (e.ts_local_ns, STORE_TIE_RANK[type(e)]))
    assert stored == tie_sorted
    moved = [i for i, (a, b) in enumerate(zip(stored, file_events, strict=True)) if a != b]
    assert all(stored[i].ts_local_ns == file_events[i].ts_local_ns for i in moved)


def test_a_stored_range_backtests_like_its_file_and_records_where_the_data_came_from(sim_stored, tmp_path) -> None:
    path, inst = sim_stored
    first, end = stored_range_ns(inst.pk)
    stored = run_json(
        "--venue", "sim-stored", "--symbol", "BTCUSDT", "--params", json.dumps(SIM_STORED_PARAMS), "--compare"
    )
    # the same file with its equal-local-time lines in the store's order (see the test above)
    lines = path.read_text().splitlines(keepends=True)
    tie_sorted = tmp_path / "sim-tie-sorted.txt"
    tie_sorted.write_text("".join(sorted(lines, key=_line_rank)))
    from_file = run_json(
        "--data", str(tie_sorted), "--format", "binance-raw", "--params", json.dumps(PARAMS), "--compare"
    )
    assert [s["strategy"] for s in stored] == ["glft", "fixed", "as"]
    record = {
        "venue": "sim-stored",
        "symbol": "BTCUSDT",
        "start_ns": first,
        "end_ns": end,
        "start": ns_to_iso(first),
        "end": ns_to_iso(end),
    }
    for s, f in zip(stored, from_file, strict=True):
        assert s["events_processed"] == s["data"]["events"] == f["data"]["events"] > 500
        assert s["data"]["stored"] == record and "files" not in s["data"]
        assert s["fills_buy"] > 0 and s["fills_sell"] > 0
        run = BacktestRun.objects.select_related("session").get(pk=s["run_id"])
        assert run.status == BacktestRun.Status.DONE
        assert (run.data_format, run.data_files) == (STORED, [record])
        assert run.summary["data"]["stored"] == record
        session = run.session
        assert session.instrument_id == inst.pk and session.feed == "replay:stored"
        assert session.status == TradingSession.Status.STOPPED
        # tick and lot came from the stored Instrument and are recorded with the parameters
        assert run.params["venue"]["tick_size"] == SP.tick_size and run.params["venue"]["lot_size"] == SP.lot_size
        assert run.params["instrument"] == {"venue": "sim-stored", "symbol": "BTCUSDT", "kind": "perp"}
        assert_same_backtest(s, f)


def test_the_table_names_the_stored_range_and_a_sub_range_holds_only_its_events(sim_stored) -> None:
    _path, inst = sim_stored
    first, end = stored_range_ns(inst.pk)
    start_iso = ns_to_iso(first + 20 * 10**9)
    end_iso = ns_to_iso(first + 40 * 10**9)
    out = run_command(
        "--venue", "sim-stored", "--symbol", "BTCUSDT", "--start", start_iso, "--end", end_iso,
        "--params", json.dumps(SIM_STORED_PARAMS), "--strategy", "fixed",
    )  # fmt: skip
    assert f"stored sim-stored:BTCUSDT [{start_iso}, {end_iso})" in out
    assert "fills buy" in out and "P&L total" in out
    run = BacktestRun.objects.get()
    rec = run.data_files[0]
    assert (rec["start_ns"], rec["end_ns"]) == (first + 20 * 10**9, first + 40 * 10**9)
    decisions = QuoteDecisionRecord.objects.filter(session=run.session)
    assert decisions.exists()
    assert all(rec["start_ns"] <= ts < rec["end_ns"] for ts in decisions.values_list("ts_ns", flat=True))
    assert 15.0 < run.summary["span_s"] < 20.0
    # an open end runs to the last stored event; times without an offset are UTC
    naive = start_iso.removesuffix("Z")
    run_command(
        "--venue", "sim-stored", "--symbol", "BTCUSDT", "--start", naive, "--params", json.dumps(SIM_STORED_PARAMS),
        "--strategy", "fixed",
    )  # fmt: skip
    rec2 = BacktestRun.objects.order_by("-id").first().data_files[0]
    assert (rec2["start_ns"], rec2["end_ns"]) == (first + 20 * 10**9, end)


def test_params_may_override_the_stored_tick_and_lot(sim_stored) -> None:
    params = {**SIM_STORED_PARAMS, "venue": {**SIM_STORED_PARAMS["venue"], "tick_size": SP.tick_size * 10}}
    [s] = run_json("--venue", "sim-stored", "--symbol", "BTCUSDT", "--params", json.dumps(params))
    run = BacktestRun.objects.get(pk=s["run_id"])
    assert run.params["venue"]["tick_size"] == SP.tick_size * 10 and run.params["venue"]["lot_size"] == SP.lot_size
    prices = FillRecord.objects.filter(session_id=s["session_id"]).values_list("price", flat=True)
    assert prices, "no fills: nothing shows which tick was used"
    coarse = SP.tick_size * 10
    assert all(abs(p / coarse - round(p / coarse)) < 1e-6 for p in prices)


def test_a_sweep_over_a_stored_range_runs_every_point_on_the_same_range(sim_stored) -> None:
    _path, inst = sim_stored
    first, end = stored_range_ns(inst.pk)
    sweep = create_sweep(
        StoredRange("sim-stored", "BTCUSDT", first + 10 * 10**9),
        STORED,
        SIM_STORED_PARAMS,
        {"strategy.gamma": [100.0, 1000.0]},
        name="stored",
    )
    assert sweep.data_format == STORED and sweep.data_files[0]["start_ns"] == first + 10 * 10**9
    assert sweep.data_files[0]["end_ns"] == end
    for run_id in sweep.runs.order_by("id").values_list("id", flat=True):
        assert execute_run_by_id(run_id) == BacktestRun.Status.DONE
    sweep.refresh_from_db()
    assert sweep.status == SweepRun.Status.DONE
    rows = sweep_table(sweep.pk)
    assert [r["strategy.gamma"] for r in rows] == [100.0, 1000.0]
    for r in rows:
        run = BacktestRun.objects.get(pk=r["run_id"])
        assert run.data_files == sweep.data_files and run.summary["data"]["stored"] == sweep.data_files[0]
        assert run.summary["events_processed"] > 300 and r["pnl_total"] is not None


T0 = 1_723_161_255_000_000_000  # local ns; the exchange stamps below are 1.27 s later, as in the real recording


def _raw(local_ns: int, msg: dict[str, Any]) -> str:
    return f"{local_ns} {json.dumps(msg)}\n"


def _ticker(u: int, bid_size: str, at_ns: int) -> dict[str, Any]:
    ms = at_ns // 1_000_000 + 1270
    data = {"e": "bookTicker", "u": u, "b": "61000.0", "B": bid_size, "a": "61000.1", "A": "1.500", "T": ms, "E": ms}
    return {"stream": "btcusdt@bookTicker", "data": data}


def write_snapshot_bracketed(path: Path) -> Path:
    """A hand-written recording that starts and ends with a REST depth snapshot (no trade, quote or diff before
    the first line or after the last)."""
    ms = T0 // 1_000_000 + 1270
    book = {"bids": [["61000.0", "1.000"], ["60999.9", "2.000"]], "asks": [["61000.1", "1.500"], ["61000.2", "2.5"]]}
    diff = {"e": "depthUpdate", "E": ms + 2000, "T": ms + 2000, "U": 100, "u": 102, "pu": 99}
    trade = {"e": "trade", "E": ms + 3000, "T": ms + 3000, "t": 7, "p": "61000.0", "q": "0.200", "m": True}
    path.write_text(
        _raw(T0, {"lastUpdateId": 100, "E": ms, "T": ms, **book})
        + _raw(T0 + 1 * 10**9, _ticker(101, "1.000", T0 + 1 * 10**9))
        + _raw(T0 + 2 * 10**9, {"stream": "btcusdt@depth@0ms", "data": {**diff, "b": [["61000.0", "0.800"]], "a": []}})
        + _raw(T0 + 3 * 10**9, {"stream": "btcusdt@trade", "data": trade})
        + _raw(T0 + 4 * 10**9, _ticker(102, "0.800", T0 + 4 * 10**9))
        + _raw(T0 + 5 * 10**9, {"lastUpdateId": 102, "E": ms + 5000, "T": ms + 5000, **book})
    )
    return path


def test_a_default_range_starts_and_ends_with_the_stored_snapshots(tmp_path: Path) -> None:
    path = write_snapshot_bracketed(tmp_path / "bracketed.txt")
    inst = _import(path, "handmade", tmp_path, tick=0.1, lot=0.001)
    file_events = load_events([path], "binance-raw").events
    assert [type(e) for e in file_events] == [DepthSnapshot, BestBidAsk, DepthUpdate, Trade, BestBidAsk, DepthSnapshot]
    # the stored range reaches from the first snapshot to the last, which bracket every other row
    assert stored_range_ns(inst.pk) == (T0, T0 + 5 * 10**9 + 1)
    assert load_stored(StoredRange("handmade", "BTCUSDT")).events == file_events
    params = {"fixed": {"half_spread_bps": 1.0}, "backtest": {"markout_s": 1.0}}
    [s] = run_json("--venue", "handmade", "--symbol", "BTCUSDT", "--params", json.dumps(params), "--strategy", "fixed")
    assert s["events_processed"] == 6
    assert s["data"]["stored"]["start"] == "2024-08-08T23:54:15.000000000Z"
    assert (s["data"]["stored"]["start_ns"], s["data"]["stored"]["end_ns"]) == (T0, T0 + 5 * 10**9 + 1)
    assert BacktestRun.objects.get(pk=s["run_id"]).session.instrument == inst


# --- bad sources -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "no data: give --data FILES --format F, or --venue V --symbol S"),
        (["--data", "x.txt"], "--data needs --format"),
        (["--format", "binance-raw", "--venue", "sim-stored", "--symbol", "BTCUSDT"], "--format applies to --data"),
        (["--data", "x.txt", "--format", "binance-raw", "--venue", "v"], "--data and --venue are two data sources"),
        (["--venue", "sim-stored"], "a stored range needs --symbol"),
        (["--symbol", "BTCUSDT", "--start", "2024-08-08T23:55:00Z"], "a stored range needs --venue"),
        (["--start", "2024-08-08"], "a stored range needs --venue and --symbol"),
        (["--venue", "sim-stored", "--symbol", "BTCUSDT", "--start", "yesterday"], "--start: 'yesterday' is not an"),
        (["--venue", "sim-stored", "--symbol", "BTCUSDT", "--end", "2024-13-01"], "--end: '2024-13-01' is not an"),
        (["--venue", "sim-stored", "--symbol", "BTCUSDT", "--end", "2024-08-08T23:55:00."], "--end: .* is not an"),
        (
            ["--venue", "sim-stored", "--symbol", "BTCUSDT", "--start", "2024-08-08T23:55:00Z", "--end", "2024-08-08"],
            "--start 2024-08-08T23:55:00Z must be before --end 2024-08-08",
        ),
        (
            ["--venue", "sim-stored", "--symbol", "BTCUSDT", "--start", "2030-01-01", "--end", "2030-01-01"],
            "must be before --end",
        ),
        (
            ["--venue", "sim-stored", "--symbol", "ETHUSDT"],
            r"unknown instrument sim-stored:ETHUSDT: .*\(stored instruments: sim-stored:BTCUSDT\)",
        ),
        (
            ["--venue", "sim-stored", "--symbol", "BTCUSDT", "--start", "2030-01-01", "--end", "2030-01-02"],
            r"no stored events for sim-stored:BTCUSDT "
            r"\[2030-01-01T00:00:00.000000000Z, 2030-01-02T00:00:00.000000000Z\)",
        ),
        (["--venue", "sim-stored", "--symbol", "BTCUSDT", "--start", "2030-01-01"], "start .* must be before end"),
    ],
)
def test_a_bad_source_is_a_clear_error_and_stores_nothing(sim_stored, args, message) -> None:
    with pytest.raises(CommandError, match=message):
        run_command(*args, "--params", json.dumps(SIM_STORED_PARAMS))
    assert not TradingSession.objects.exists() and not BacktestRun.objects.exists()


def test_an_instrument_with_nothing_stored_and_a_contradicting_params_instrument_are_errors(sim_stored) -> None:
    Instrument.objects.create(venue="empty", symbol="BTCUSDT", kind="perp", tick_size=0.1, lot_size=0.001)
    with pytest.raises(CommandError, match="no market data stored for empty:BTCUSDT"):
        run_command("--venue", "empty", "--symbol", "BTCUSDT", "--params", json.dumps(SIM_STORED_PARAMS))
    params = {**SIM_STORED_PARAMS, "instrument": {"kind": "spot"}}
    with pytest.raises(CommandError, match=r"params.instrument \{'kind': 'spot'\} contradicts the stored"):
        run_command("--venue", "sim-stored", "--symbol", "BTCUSDT", "--params", json.dumps(params))
    with pytest.raises(CommandError, match=r"params\.strategy: StrategyParams\.gamma must be > 0"):
        bad = {**SIM_STORED_PARAMS, "strategy": {"gamma": -1}}
        run_command("--venue", "sim-stored", "--symbol", "BTCUSDT", "--params", json.dumps(bad))
    assert not TradingSession.objects.exists() and not BacktestRun.objects.exists()


def test_iso_times_parse_to_exact_nanoseconds() -> None:
    assert parse_time_ns("1970-01-01T00:00:01Z") == 10**9
    assert parse_time_ns("1970-01-01T00:00:01") == 10**9  # no offset: UTC
    assert parse_time_ns("1970-01-01T02:00:01+02:00") == 10**9
    assert parse_time_ns("2024-08-08T23:54:15.051234567Z") == 1723161255_051234567
    assert parse_time_ns("2024-08-08T23:54:15.5") == 1723161255_500000000
    assert ns_to_iso(1723161255_051234567) == "2024-08-08T23:54:15.051234567Z"
    assert parse_time_ns(ns_to_iso(1723161255_000000001)) == 1723161255_000000001
    for bad in ("", "2024-08-08T25:00:00", "1723161255", "2024-08-08T23:54:15.Z"):
        with pytest.raises(ValueError, match="is not an ISO-8601 timestamp"):
            parse_time_ns(bad, "--start")


# --- real data: stored-range replay is file replay --------------------------------------------------------------


def test_the_imported_binance_usdm_recording_backtests_exactly_like_the_file(tmp_path: Path) -> None:
    src = shared_data(*USDM)
    path = tmp_path / "usdm_slice.txt"
    with gzip.open(src, "rt") as fh:
        path.write_text("".join(next(fh) for _ in range(USDM_LINES)))
    inst = _import(path, "binance-usdm-stored", tmp_path, tick=0.1, lot=0.001)
    # the recording has no two lines at the same local ns, so the store returns exactly the file's events
    assert (
        load_stored(StoredRange("binance-usdm-stored", "BTCUSDT")).events == load_events([path], "binance-raw").events
    )
    stored = run_json(
        "--venue", "binance-usdm-stored", "--symbol", "BTCUSDT", "--params", json.dumps(USDM_PARAMS), "--compare"
    )
    from_file = run_json(
        "--data", str(path), "--format", "binance-raw", "--params", json.dumps(USDM_FILE_PARAMS), "--compare"
    )
    for s, f in zip(stored, from_file, strict=True):
        assert s["data"]["events"] == f["data"]["events"] == USDM_LINES  # every line is one event, none dropped
        assert s["data"]["stored"]["start_ns"] == stored_range_ns(inst.pk)[0]
        assert_same_backtest(s, f)
    for s in stored:
        assert s["decisions"] > 200 and s["fills_buy"] > 5 and s["fills_sell"] > 5, s["strategy"]


def test_a_replay_abandoned_early_closes_its_cursors_and_the_connection_stays_usable(tmp_path: Path) -> None:
    from django.db import connection

    from apps.marketdata.selectors import iter_events

    path = write_snapshot_bracketed(tmp_path / "bracketed.txt")
    inst = _import(path, "handmade", tmp_path, tick=0.1, lot=0.001)
    first, end = stored_range_ns(inst.pk)
    events = iter_events(inst.pk, first, end, chunk=1)
    assert type(next(events)) is DepthSnapshot
    with connection.cursor() as cur:
        cur.execute("SELECT count(*) FROM pg_cursors WHERE name LIKE 'replay_%%'")
        assert cur.fetchone()[0] >= 4  # a named cursor per table with rows in range, while streaming
    events.close()
    with connection.cursor() as cur:
        cur.execute("SELECT count(*) FROM pg_cursors")
        assert cur.fetchone()[0] == 0
    assert connection.in_atomic_block is False
    # and the same range reads back whole afterwards
    assert len(list(iter_events(inst.pk, first, end))) == 6
