"""``manage.py estimate``: the estimators over recorded files, as text or JSON, with clear errors."""

from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from tests.conftest import shared_data


def _run(*args: str) -> str:
    out = StringIO()
    call_command("estimate", *args, stdout=out)
    return out.getvalue()


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(CommandError, match="not found"):
        _run(str(tmp_path / "nope.gz"), "--format", "binance-raw")


def test_unknown_format_is_rejected(tmp_path):
    f = tmp_path / "x.txt"
    f.write_text("hello\n")
    with pytest.raises(CommandError, match="format"):
        _run(str(f), "--format", "csv")


def test_a_file_with_no_events_in_that_format_is_a_clear_error(tmp_path):
    f = tmp_path / "x.txt"
    f.write_text("this is not a recording\n")
    with pytest.raises(CommandError, match="no market events"):
        _run(str(f), "--format", "binance-raw")


def test_json_report_on_the_hyperliquid_sample_has_every_estimate():
    path = shared_data("hftbacktest-hyperliquid-btc-20250126-tiny", "raw", "hyperliquid_btc_20250126.gz")
    report = json.loads(_run(str(path), "--format", "hyperliquid", "--json"))
    assert report["trades_seen"] > 0
    for key in ("kappa", "sigma", "lambda_per_s", "hawkes", "drift", "intensity_fit", "A_per_s"):
        assert key in report
    k = report["kappa"]
    assert {"value", "ci_low", "ci_high", "state", "fit_test", "avg_trade_distance_bps"} <= set(k)


def test_text_report_on_binance_usdm():
    path = shared_data("hftbacktest-binance-usdm-btcusdt-20240808", "raw", "usdm_btcusdt_20240808.gz")
    text = _run(str(path), "--format", "binance-raw")
    assert "kappa" in text and "sigma" in text and "hawkes" in text and "trades seen 21313" in text


def test_the_tick_of_an_older_recording_is_read_from_its_quotes_not_todays_registry():
    # Tardis, Binance USD-M BTCUSDT on 2020-02-22: quoted on 0.01, where the registry holds today's 0.1. κ's tick model
    # on a 0.1 grid would put every order at the touch; evaluate --files and estimate read the same 0.01.
    d = "tardis-binance-futures-btcusdt-20200222"
    files = [
        shared_data(d, "binance-futures_quotes_BTCUSDT_2020-02-22.csv.gz"),
        shared_data(d, "binance-futures_trades_BTCUSDT_2020-02-22.csv.gz"),
    ]
    report = json.loads(_run(*map(str, files), "--format", "tardis", "--json"))
    assert report["tick_size"] == pytest.approx(0.01) and report["tick_source"] == "inferred from the prices"
    given = json.loads(_run(*map(str, files), "--format", "tardis", "--json", "--tick-size", "0.1"))
    assert given["tick_size"] == 0.1 and given["tick_source"] == "given"
    # on the coarser grid fewer orders go through the touch: the two reports differ where the tick matters
    assert given["kappa"]["avg_distance_beyond_touch_bps"] < report["kappa"]["avg_distance_beyond_touch_bps"], (
        given["kappa"],
        report["kappa"],
    )


def test_the_registry_tick_stands_when_the_quotes_sit_on_its_grid():
    path = shared_data("hftbacktest-binance-usdm-btcusdt-20240808", "raw", "usdm_btcusdt_20240808.gz")
    report = json.loads(_run(str(path), "--format", "binance-raw", "--json"))
    assert report["tick_size"] == 0.1 and report["tick_source"] == "the registry's"


@pytest.mark.parametrize("bad", ["-0.1", "nan", "inf"])
def test_a_bad_tick_size_is_refused(bad):
    path = shared_data("hftbacktest-binance-usdm-btcusdt-20240808", "raw", "usdm_btcusdt_20240808.gz")
    with pytest.raises(CommandError, match="--tick-size must be a finite number >= 0"):
        _run(str(path), "--format", "binance-raw", "--tick-size", bad)
