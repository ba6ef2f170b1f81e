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
