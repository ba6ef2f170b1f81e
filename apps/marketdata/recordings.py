"""The shared Binance recordings that the engine's fingerprints and the walk-forward evaluation run on, and how
their files are read into one time-ordered event list. One table, so the two always mean the same data."""

from __future__ import annotations

from collections.abc import Iterator
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
