"""Known instruments: the registry agrees with the recordings' manifests, and the commands need no grid for them."""

from __future__ import annotations

import io
import json
import re

import pytest
from django.core.management import CommandError, call_command

from apps.marketdata import instruments
from apps.marketdata.models import Instrument
from apps.trading.models import BacktestRun, TradingSession
from tests.conftest import shared_data

HL_FILE = ("hftbacktest-hyperliquid-btc-20250126-tiny", "raw", "hyperliquid_btc_20250126.gz")


@pytest.mark.parametrize(
    ("dataset", "key"),
    [
        ("hftbacktest-binance-usdm-btcusdt-20240808", "binance-usdm:BTCUSDT"),
        ("hftbacktest-binance-usdm-ethusdt-20240808", "binance-usdm:ETHUSDT"),
        ("hftbacktest-binance-spot-btcusdt-20240808", "binance-spot:BTCUSDT"),
    ],
)
def test_the_registry_has_the_tick_and_lot_the_recordings_manifests_state(dataset, key):
    text = (shared_data(dataset) / "MANIFEST.md").read_text()
    m = re.search(r"Tick size ([\d.]+) USDT, lot size ([\d.]+) (\w+)", text)
    assert m, "the manifest states no tick/lot"
    known = instruments.get(key)
    assert (known.tick_size, known.lot_size, known.base) == (float(m.group(1)), float(m.group(2)), m.group(3))


def test_every_entry_is_a_valid_paper_venue_with_fees_in_plausible_ranges():
    from apps.engine.execution.paper import PaperVenueConfig

    assert instruments.known_keys() == [
        "binance-usdm:BTCUSDT",
        "binance-usdm:ETHUSDT",
        "binance-spot:BTCUSDT",
        "binance-spot:ETHUSDT",
        "hyperliquid:BTC",
    ]
    for k in instruments.KNOWN:
        PaperVenueConfig(**k.venue_params()).validate()
        assert 0 <= k.maker_fee <= k.taker_fee <= 0.002, k.key  # at most 20 bps, maker never dearer than taker
        assert k.source
    assert instruments.get("hyperliquid:BTC").strategy_fee_params() == {"maker_fee_bps": 1.5, "taker_fee_bps": 4.5}
    assert instruments.lookup("binance-usdm", "btcusdt") is instruments.get("binance-usdm:BTCUSDT")
    with pytest.raises(ValueError, match="unknown instrument 'kraken:XBTUSD'; known: binance-usdm:BTCUSDT"):
        instruments.get("kraken:XBTUSD")


def test_defaults_fill_only_what_the_caller_left_out():
    known = instruments.get("binance-usdm:BTCUSDT")
    out = instruments.with_instrument_defaults({"venue": {"taker_fee": 0.0001}, "strategy": {"gamma": 1.0}}, known)
    assert out["venue"] == {"tick_size": 0.1, "lot_size": 0.001, "maker_fee": 0.0002, "taker_fee": 0.0001}
    assert out["strategy"] == {"maker_fee_bps": 2.0, "taker_fee_bps": 5.0, "gamma": 1.0}
    fees_only = instruments.with_instrument_defaults({}, known, grid=False)["venue"]
    assert fees_only == {"maker_fee": 0.0002, "taker_fee": 0.0005}
    assert instruments.with_instrument_defaults({"x": 1}, None) == {"x": 1}
    assert instruments.currencies("BTC", "hyperliquid") == ("BTC", "USD")
    assert instruments.currencies("ETHUSDT", "binance-spot") == ("ETH", "USDT")


@pytest.mark.django_db(transaction=True)
def test_import_of_a_known_instruments_file_needs_no_venue_symbol_or_grid():
    path = shared_data(*HL_FILE)
    out = io.StringIO()
    call_command("import_marketdata", str(path), "--format", "hyperliquid", stdout=out)
    inst = Instrument.objects.get()
    assert (inst.venue, inst.symbol, inst.kind, inst.tick_size, inst.lot_size) == (
        "hyperliquid",
        "BTC",
        "perp",
        1.0,
        0.00001,
    )
    # again: idempotent, and an existing row keeps its own grid
    call_command("import_marketdata", str(path), "--format", "hyperliquid", "--venue", "hyperliquid", stdout=out)
    assert Instrument.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_import_of_an_unknown_instrument_still_asks_for_its_grid(tmp_path):
    path = shared_data(*HL_FILE)
    with pytest.raises(CommandError, match="give --tick-size and --lot-size"):
        call_command("import_marketdata", str(path), "--format", "hyperliquid", "--symbol", "SOL", stdout=io.StringIO())
    assert not Instrument.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_backtest_of_a_known_instruments_file_runs_with_no_params_on_its_grid_and_fees():
    path = shared_data(*HL_FILE)
    out = io.StringIO()
    call_command("backtest", "--data", str(path), "--format", "hyperliquid", "--json", stdout=out)
    summary = json.loads(out.getvalue())
    run = BacktestRun.objects.get()
    assert run.session_id == summary["session_id"]
    assert run.params["venue"] == {"tick_size": 1.0, "lot_size": 0.00001, "maker_fee": 0.00015, "taker_fee": 0.00045}
    inst = run.session.instrument
    assert (inst.venue, inst.symbol, inst.tick_size) == ("hyperliquid", "BTC", 1.0)


@pytest.mark.django_db(transaction=True)
def test_backtest_of_an_unknown_instrument_without_a_grid_names_the_known_ones_and_the_fix():
    lobster = shared_data("lobster-amzn-20120621-level1", "AMZN_2012-06-21_34200000_57600000_message_1.csv.gz")
    with pytest.raises(CommandError, match=r"nasdaq:AMZN is not a known instrument \(binance-usdm:BTCUSDT.*tick_size"):
        call_command("backtest", "--data", str(lobster), "--format", "lobster", stdout=io.StringIO())
    assert not TradingSession.objects.exists()


def test_estimate_takes_a_known_instruments_tick():
    path = shared_data(*HL_FILE)
    out = io.StringIO()
    call_command("estimate", str(path), "--format", "hyperliquid", "--json", stdout=out)
    assert json.loads(out.getvalue())["tick_size"] == 1.0
