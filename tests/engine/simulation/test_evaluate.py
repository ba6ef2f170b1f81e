"""The walk-forward evaluation: the split, and that nothing of the evaluated part reaches the fit part or the table's
baseline (on a slice of the shared USD-M recording)."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from apps.engine.accounting.pnl import COMPONENTS
from apps.engine.market.events import BestBidAsk, Side, Trade
from apps.engine.simulation.evaluate import (
    EvaluationConfig,
    EvaluationRow,
    EvaluationSeries,
    cut_to_book,
    evaluate_recording,
    newey_west_sum_se,
    pnl_difference,
    walk_forward_split,
)
from tests.engine.simulation.test_backtest import REAL, _real_events


@pytest.fixture(scope="module")
def events():
    fmt, files, _limit, *_ = REAL["binance-usdm"]
    return _real_events(fmt, files, 25_000)


def test_the_split_is_at_the_fit_fraction_of_the_span(events):
    index, split_ns = walk_forward_split(events, 0.3)
    t0, t1 = events[0].ts_local_ns, events[-1].ts_local_ns
    assert split_ns == t0 + int((t1 - t0) * 0.3)
    assert all(e.ts_local_ns < split_ns for e in events[:index])
    assert all(e.ts_local_ns >= split_ns for e in events[index:])
    with pytest.raises(ValueError, match="fit_fraction"):
        EvaluationConfig(fit_fraction=1.0).validate()


def test_the_recording_is_cut_at_its_last_book_event(events):
    """Trades after the last quote have no mid to value a fill by: they are left out, and counted."""
    last = events[-1].ts_local_ns
    tail = [Trade(last + i * 10**9, last + i * 10**9, 61_000.0, 0.01, Side.BUY) for i in range(1, 4)]
    book = ("BestBidAsk", "DepthSnapshot", "DepthUpdate")
    last_book = max(i for i, e in enumerate(events) if type(e).__name__ in book)
    cut, after = cut_to_book([*events, *tail])
    assert after == 3 + len(events) - 1 - last_book and list(cut) == list(events[: last_book + 1])
    assert type(cut[-1]).__name__ in book
    _, rows = evaluate_recording([*events, *tail], 0.1, 0.001, EvaluationConfig(fit_fraction=0.4))
    assert {r.events_after_book for r in rows} == {after}
    with pytest.raises(ValueError, match="no book"):
        cut_to_book(tail)


def test_the_table_counts_only_the_evaluated_part_and_ignores_its_future_at_the_split(events):
    cfg = EvaluationConfig(fit_fraction=0.4)
    split_ns, rows = evaluate_recording(events, 0.1, 0.001, cfg)
    assert [r.strategy for r in rows] == ["ours", "ours_default", "fixed", "as", "join_touch"]
    assert rows[0].params["gamma"] > 0 and rows[1].params == {}  # γ₀ calibrated on the fit part; the default's not
    for r in rows:
        assert r.pnl_total == pytest.approx(math.fsum(r.pnl.values()), abs=1e-9)
        assert 0.0 <= r.both_sides_share <= 1.0 + 1e-9
        assert math.isnan(r.both_sides_share_with_room) or 0.0 <= r.both_sides_share_with_room <= 1.0 + 1e-9
        assert r.series.pnl["total"][-1] == pytest.approx(r.pnl_total, abs=1e-6)  # the chart's series ends at the table
        assert len(r.series.fills) == r.fills_buy + r.fills_sell
    assert any(r.fills_buy + r.fills_sell > 0 for r in rows), "the slice must produce fills"

    # Walk-forward: whatever the evaluated part holds, the strategies reach the split in the same state. Shift every
    # top of book after the split by +1 % and the fit part's outcome (the P&L at the split, carried in as the
    # inventory) is unchanged, while the evaluated table changes.
    index, _ = walk_forward_split(events, cfg.fit_fraction)

    def shifted(e):
        if isinstance(e, BestBidAsk):
            return dataclasses.replace(e, bid_px=round(e.bid_px * 1.01, 1), ask_px=round(e.ask_px * 1.01, 1))
        return e

    moved = list(events[:index]) + [shifted(e) for e in events[index:]]
    split2, rows2 = evaluate_recording(moved, 0.1, 0.001, cfg)
    assert split2 == split_ns
    assert rows2[0].params == rows[0].params  # the calibrated γ₀ saw nothing after the split
    for a, b in zip(rows, rows2, strict=True):
        assert (b.pnl_at_split, b.inventory_at_split) == (a.pnl_at_split, a.inventory_at_split), a.strategy
    assert [r.pnl for r in rows2] != [r.pnl for r in rows]


def test_join_the_touch_quotes_at_the_touch(events):
    _split, rows = evaluate_recording(events, 0.1, 0.001, EvaluationConfig(fit_fraction=0.5))
    touch = next(r for r in rows if r.strategy == "join_touch")
    # the USD-M BTCUSDT book is one tick (0.1) wide: half a tick is ~0.008 bps at ~61,800
    assert touch.median_half_spread_bps < 0.05


def test_a_given_gamma_is_not_calibrated_and_calibration_can_be_turned_off(events):
    _split, rows = evaluate_recording(events, 0.1, 0.001, EvaluationConfig(fit_fraction=0.5), {"gamma": 7000.0})
    assert [r.strategy for r in rows][:2] == ["ours", "fixed"] and rows[0].params == {"gamma": 7000.0}
    _split, rows = evaluate_recording(events, 0.1, 0.001, EvaluationConfig(fit_fraction=0.5, calibrate_gamma=False))
    assert [r.strategy for r in rows][:2] == ["ours", "fixed"] and rows[0].params == {}
    with pytest.raises(ValueError, match="skew_ratio_at_qmax"):
        EvaluationConfig(skew_ratio_at_qmax=0.0).validate()


def test_the_chart_is_a_valid_png_with_quotes_fills_and_pnl_drawn(events, tmp_path):
    import struct
    import zlib

    import numpy as np

    from apps.engine.simulation.evalchart import GREEN, RED, W, write_evaluation_png
    from apps.engine.simulation.evaluate import mid_path

    split_ns, rows = evaluate_recording(events, 0.1, 0.001, EvaluationConfig(fit_fraction=0.4))
    ts, mids = mid_path(events)
    caption = write_evaluation_png(tmp_path / "c.png", rows, ts, mids, split_ns, events[-1].ts_local_ns)
    data = (tmp_path / "c.png").read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and str(tmp_path / "c.png") in caption
    w, h = struct.unpack(">II", data[16:24])
    assert (w, h) == (W, 780)
    idat = data[data.index(b"IDAT") + 4 : data.index(b"IEND") - 8]
    raw = np.frombuffer(zlib.decompress(idat), dtype=np.uint8).reshape(h, 1 + 3 * w)[:, 1:].reshape(h, w, 3)
    top = raw[:260]
    assert (top == GREEN).all(axis=2).sum() > 100 and (top == RED).all(axis=2).sum() > 100  # bids and asks drawn
    assert (raw[260:] != 255).any(axis=2).sum() > 1000  # the P&L panels are not empty


def test_the_command_prints_the_table_and_writes_a_chart_and_names_bad_input(tmp_path, capsys, settings):
    from pathlib import Path

    from django.core.management import call_command
    from django.core.management.base import CommandError

    data = Path(settings.BASE_DIR).parent / "shared" / "data"
    call_command(
        "evaluate", recording=["usdm-ethusdt"], data_dir=str(data), png_dir=str(tmp_path), params='{"gamma": 9000}'
    )
    out = capsys.readouterr().out
    assert "usdm-ethusdt: evaluated from" in out and "ours: gamma=9000" in out
    assert "γ₀ calibrated" not in out  # a given γ₀ is not calibrated
    for name in ("ours", "fixed", "as", "join_touch"):
        assert f"\n{name} " in out
    assert (tmp_path / "usdm-ethusdt.png").stat().st_size > 1000
    assert "ours − each, ± 2 s.e. (Newey–West over" in out and "join_touch " in out.split("ours − each")[1]
    assert "1 s edge per maker fill, bps before fees" in out
    with pytest.raises(CommandError, match="JSON object"):
        call_command("evaluate", recording=["usdm-ethusdt"], params="[1]", png_dir=str(tmp_path))
    with pytest.raises(CommandError, match="skew_ratio_at_qmax"):
        call_command("evaluate", recording=["usdm-ethusdt"], skew_ratio=-1.0, png_dir=str(tmp_path))
    with pytest.raises(CommandError, match="gamma"):
        call_command("evaluate", recording=["usdm-ethusdt"], params='{"gamma": -1}', png_dir=str(tmp_path))


def test_every_shared_recording_is_evaluated_even_one_too_short_to_calibrate(tmp_path, capsys, settings):
    from pathlib import Path

    from django.core.management import call_command

    from apps.marketdata.recordings import EVALUATION_RECORDINGS

    assert {"usdm-btcusdt", "usdm-ethusdt", "spot-btcusdt", "tardis-usdm-btcusdt", "lobster-amzn"} <= set(
        EVALUATION_RECORDINGS
    )
    data = Path(settings.BASE_DIR).parent / "shared" / "data"
    call_command("evaluate", recording=["hyperliquid-btc"], data_dir=str(data), png_dir=str(tmp_path))
    out = capsys.readouterr().out
    # 25 s of data: no decision with usable estimators in the fit part, so γ₀ stays as given, and the table says so
    assert "ours: γ₀ not calibrated" in out and "no decision with usable kappa" in out
    assert "\nfixed " in out and (tmp_path / "hyperliquid-btc.png").exists()


def test_newey_west_on_hand_built_increments():
    """[1, −1, 1, −1]: mean 0, γ₀ = 1, γ₁ = −3/4. With no lag the sum's s.e. is √(4·1) = 2; with one lag the Bartlett
    weight ½ gives a long-run variance 1 + 2·½·(−3/4) = 1/4, s.e. √(4·¼) = 1: alternating increments cancel."""
    x = [1.0, -1.0, 1.0, -1.0]
    assert newey_west_sum_se(x, lags=0) == pytest.approx(2.0)
    assert newey_west_sum_se(x, lags=1) == pytest.approx(1.0)
    assert newey_west_sum_se([5.0]) == 0.0 and newey_west_sum_se([]) == 0.0
    # a trend alone (constant increments) has no variance about its mean
    assert newey_west_sum_se([0.3] * 50) == pytest.approx(0.0, abs=1e-12)
    # independent increments: the s.e. of the sum is about √n·sd (the default bandwidth for n = 10,000 is 8 lags)
    rng = np.random.default_rng(5)
    z = rng.normal(0.0, 2.0, 10_000).tolist()
    assert newey_west_sum_se(z) == pytest.approx(2.0 * 100.0, rel=0.05)
    with pytest.raises(ValueError, match="lags"):
        newey_west_sum_se(x, lags=-1)
    with pytest.raises(ValueError, match="finite"):
        newey_west_sum_se([1.0, math.nan])


def _row(name: str, ts: list[int], total: list[float], inventory: list[float]) -> EvaluationRow:
    series = EvaluationSeries(pnl_ts=list(ts), pnl={c: [0.0] * len(ts) for c in (*COMPONENTS, "total")})
    series.pnl["total"] = list(total)
    series.pnl["inventory"] = list(inventory)
    series.pnl["spread_capture"] = [t - i for t, i in zip(total, inventory, strict=True)]
    return EvaluationRow(name, total[-1], {}, 0, 0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, series=series)


def test_pnl_difference_is_the_last_samples_difference_with_the_increments_error():
    ts = [1, 2, 3, 4]
    a = _row("ours", ts, [1.0, 0.0, 2.0, 3.0], [1.0, -1.0, 0.0, 0.0])  # without inventory: 0, 1, 2, 3
    b = _row("fixed", ts, [0.0, 0.0, 1.0, 1.0], [0.0, 0.0, 1.0, 1.0])  # without inventory: all 0
    d = pnl_difference(a, b)
    assert d.n == 4
    assert d.net == pytest.approx(2.0) and d.edge == pytest.approx(3.0)
    # net increments of a − b: [1, −1, 2, 1] − [0, 0, 1, 0]; without inventory: [0, 1, 1, 1]
    assert d.net_se == pytest.approx(newey_west_sum_se([1.0, -1.0, 1.0, 1.0]))
    assert d.edge_se == pytest.approx(newey_west_sum_se([0.0, 1.0, 1.0, 1.0]))
    assert pnl_difference(a, a).net == 0.0 and pnl_difference(a, a).net_se == 0.0
    with pytest.raises(ValueError, match="different times"):
        pnl_difference(a, _row("other", [1, 2, 3, 5], [0.0] * 4, [0.0] * 4))


def test_the_fill_edge_is_spread_capture_plus_the_move_with_sweeps_as_clusters():
    from types import SimpleNamespace

    from apps.engine.simulation.evaluate import fill_edge_bps

    s = 1_000_000_000
    ts, mids = [0, 10 * s], [100.0, 101.0]

    def fill(t: int, side: Side, price: float):
        return SimpleNamespace(ts_exch_ns=t, side=side, price=price)

    # a buy at 99.9 with the mid 100 before and after: +10 bps; a sell at 100.2 whose 1 s later mid is 101: −80 bps
    mean, se, n = fill_edge_bps([fill(1 * s, Side.BUY, 99.9), fill(9_500_000_000, Side.SELL, 100.2)], ts, mids, 1.0)
    assert n == 2 and mean == pytest.approx(-35.0)
    assert se == pytest.approx(math.sqrt(45.0**2 + 45.0**2) / 2)
    # two fills at one venue time are one cluster: their deviations add before squaring
    mean, se, n = fill_edge_bps(
        [fill(1 * s, Side.BUY, 99.9), fill(1 * s, Side.BUY, 99.9), fill(9_500_000_000, Side.SELL, 100.2)], ts, mids, 1.0
    )
    assert n == 3 and mean == pytest.approx(-20.0)
    assert se == pytest.approx(math.sqrt((30.0 + 30.0) ** 2 + 60.0**2) / 3)
    assert fill_edge_bps([], ts, mids, 1.0)[2] == 0
    assert math.isnan(fill_edge_bps([fill(1 * s, Side.BUY, 99.9)], ts, mids, 1.0)[1])  # one cluster: no error


def _table(out: str) -> list[str]:
    """The strategy rows of the first table in ``out`` (net P&L and its parts, fills, markouts, spreads): the lines
    between the header and the differences under it."""
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("strategy "))
    end = next(i for i, line in enumerate(lines) if line.startswith("ours − each"))
    return lines[start + 1 : end]


def test_files_the_project_does_not_hold_are_evaluated_as_a_shared_recording_is(tmp_path, capsys, settings):
    """--files with a shared file gives the shared entry's table to the digit (the registry's tick and lot for the
    instrument the records name), under the given name."""
    from pathlib import Path

    from django.core.management import call_command

    from apps.marketdata.recordings import EVALUATION_RECORDINGS

    data = Path(settings.BASE_DIR).parent / "shared" / "data"
    rec = EVALUATION_RECORDINGS["usdm-ethusdt"]
    call_command("evaluate", recording=["usdm-ethusdt"], data_dir=str(data), png_dir=str(tmp_path))
    shared = capsys.readouterr().out
    call_command(
        "evaluate", files=[str(data / f) for f in rec.files], fmt="binance-raw", name="mine", png_dir=str(tmp_path)
    )
    own = capsys.readouterr().out
    assert "mine: evaluated from" in own and "binance-usdm:ETHUSDT; tick 0.01, the registry's; lot 0.001" in own
    assert _table(own) == _table(shared) and len(_table(own)) == 5
    assert (tmp_path / "mine.png").stat().st_size > 1000


def test_files_with_bad_or_missing_settings_are_refused_naming_what_to_pass(tmp_path, settings):
    from pathlib import Path

    from django.core.management import call_command
    from django.core.management.base import CommandError

    from apps.marketdata.recordings import EVALUATION_RECORDINGS, load_recording, recording_for_files

    data = Path(settings.BASE_DIR).parent / "shared" / "data"
    amzn = EVALUATION_RECORDINGS["lobster-amzn"]
    files = [str(data / f) for f in amzn.files]
    with pytest.raises(CommandError, match="needs --format"):
        call_command("evaluate", files=files, png_dir=str(tmp_path))
    with pytest.raises(CommandError, match="exclusive"):
        call_command("evaluate", files=files, fmt="lobster", recording=["usdm-ethusdt"], png_dir=str(tmp_path))
    with pytest.raises(CommandError, match="not found"):
        call_command("evaluate", files=[str(tmp_path / "nope.gz")], fmt="lobster", png_dir=str(tmp_path))
    with pytest.raises(CommandError, match="goes with --files"):
        call_command("evaluate", fmt="lobster", recording=["usdm-ethusdt"], png_dir=str(tmp_path))
    # a LOBSTER file names no instrument: the lot must be given; the tick is inferred from its prices
    events = load_recording(data, amzn)[:20_000]
    paths = [data / f for f in amzn.files]
    with pytest.raises(ValueError, match="--lot-size"):
        recording_for_files(paths, "lobster", events)
    rec = recording_for_files(paths, "lobster", events, lot=1.0, order_size=10.0, max_inventory=200.0)
    assert (rec.tick, rec.lot, rec.order_size, rec.max_inventory) == (0.01, 1.0, 10.0, 200.0)
    assert "inferred from the prices" in rec.note
    # the Tardis sample of 2020 sits on a 0.01 grid: finer than the registry's (today's) 0.1 for BTCUSDT
    tardis = EVALUATION_RECORDINGS["tardis-usdm-btcusdt"]
    t_events = load_recording(data, tardis)
    t_rec = recording_for_files([data / f for f in tardis.files], "tardis", t_events)
    assert t_rec.tick == tardis.tick == 0.01 and t_rec.lot == 0.001
    for bad, match in (
        ({"order_size": 0.0}, "order size"),
        ({"max_inventory": math.nan}, "max inventory"),
        ({"tick": -0.01}, "tick size"),
        ({"order_size": 1.0, "max_inventory": 0.5}, "below one order"),
    ):
        with pytest.raises(ValueError, match=match):
            recording_for_files(paths, "lobster", events, lot=1.0, **bad)
