"""The shared recordings that the engine's fingerprints and the walk-forward evaluation run on, and how their files
are read into one time-ordered event list. One table, so the two always mean the same data.

:data:`BINANCE_RAW_RECORDINGS` (Binance's raw combined streams, full L2) is what the fingerprints cover;
:data:`EVALUATION_RECORDINGS` is every shared recording ``manage.py evaluate`` runs on: those three plus the Tardis,
LOBSTER and Hyperliquid samples, each with its format, tick, lot and the order size and Q_max the evaluation uses
there (0.01 and 0.2 of the base asset on the BTC and ETH markets, as issue 16's assumptions; on AMZN, priced ~220
USD a share, 10 shares and 200, a notional close to the BTC books')."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from apps.engine.simulation.backtest import merge_by_local_time
from apps.marketdata.parsers import Quarantined, parse_file

# name: (raw files under the shared data directory, tick size, lot size), in Binance's raw combined-stream format
BINANCE_RAW_RECORDINGS: dict[str, tuple[tuple[str, ...], float, float]] = {
    "usdm-btcusdt": (("hftbacktest-binance-usdm-btcusdt-20240808/raw/usdm_btcusdt_20240808.gz",), 0.1, 0.001),
    "usdm-ethusdt": (("hftbacktest-binance-usdm-ethusdt-20240808/raw/usdm_ethusdt_20240808.gz",), 0.01, 0.001),
    "spot-btcusdt": (
        (
            "hftbacktest-binance-spot-btcusdt-20240808/raw/spot_btcusdt_20240808.gz",
            "hftbacktest-binance-spot-btcusdt-20240808/raw/spot_btcusdt_20240809.gz",
        ),
        0.01,
        0.00001,
    ),
}


def load_binance_raw(data_dir: Path, files: tuple[str, ...]) -> list[Any]:
    """Every parsed event of ``files`` (under ``data_dir``), quarantined lines left out, merged by local time."""
    streams: list[Iterator[Any]] = [
        (e for e in parse_file("binance-raw", data_dir / f) if not isinstance(e, Quarantined)) for f in files
    ]
    return list(merge_by_local_time(*streams))


@dataclass(frozen=True, slots=True)
class Recording:
    """One shared recording: its parser format, its files under the shared data directory, tick and lot, and the
    order size and Q_max (base units) an evaluation uses on it."""

    fmt: str
    files: tuple[str, ...]
    tick: float
    lot: float
    order_size: float = 0.01
    max_inventory: float = 0.2
    note: str = ""


EVALUATION_RECORDINGS: dict[str, Recording] = {
    **{name: Recording("binance-raw", files, tick, lot) for name, (files, tick, lot) in BINANCE_RAW_RECORDINGS.items()},
    "tardis-usdm-btcusdt": Recording(
        "tardis",
        (
            "tardis-binance-futures-btcusdt-20200222/binance-futures_quotes_BTCUSDT_2020-02-22.csv.gz",
            "tardis-binance-futures-btcusdt-20200222/binance-futures_trades_BTCUSDT_2020-02-22.csv.gz",
        ),
        0.01,
        0.001,
        note="top of book only, quotes for the first 4 minutes (502 trades overlap them): no L2 queue",
    ),
    "lobster-amzn": Recording(
        "lobster",
        ("lobster-amzn-20120621-level1/AMZN_2012-06-21_34200000_57600000_message_1.csv.gz",),
        0.01,
        1.0,
        order_size=10.0,
        max_inventory=200.0,
        note="Nasdaq level 1, a full trading day; the crypto fee assumptions are kept",
    ),
    "hyperliquid-btc": Recording(
        "hyperliquid",
        ("hftbacktest-hyperliquid-btc-20250126-tiny/raw/hyperliquid_btc_20250126.gz",),
        1.0,
        0.00001,
        note="25 s format sample: too short for the estimators to warm up",
    ),
}


def load_recording(data_dir: Path, rec: Recording) -> list[Any]:
    """Every parsed event of ``rec``'s files (quarantined lines left out), merged by local time."""
    streams: list[Iterator[Any]] = [
        (e for e in parse_file(rec.fmt, data_dir / f) if not isinstance(e, Quarantined)) for f in rec.files
    ]
    return list(merge_by_local_time(*streams))
