"""The shared recordings that the engine's fingerprints and the walk-forward evaluation run on, and how their files
are read into one time-ordered event list. One table, so the two always mean the same data.

:data:`BINANCE_RAW_RECORDINGS` (Binance's raw combined streams, full L2) is what the fingerprints cover;
:data:`EVALUATION_RECORDINGS` is every shared recording ``manage.py evaluate`` runs on: those three plus the Tardis,
LOBSTER and Hyperliquid samples, each with its format, tick, lot and the order size and Q_max the evaluation uses
there (0.01 and 0.2 of the base asset on the BTC and ETH markets, as issue 16's assumptions; on AMZN, priced ~220
USD a share, 10 shares and 200, a notional close to the BTC books')."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from apps.engine.estimators.market import infer_tick_size
from apps.engine.simulation.backtest import merge_by_local_time
from apps.marketdata import instruments
from apps.marketdata.identify import identify
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


def load_files(fmt: str, paths: list[Path]) -> list[Any]:
    """Every parsed event of the files in format ``fmt`` (quarantined lines left out), merged by local time."""
    streams: list[Iterator[Any]] = [(e for e in parse_file(fmt, p) if not isinstance(e, Quarantined)) for p in paths]
    return list(merge_by_local_time(*streams))


def load_recording(data_dir: Path, rec: Recording) -> list[Any]:
    """Every parsed event of ``rec``'s files (quarantined lines left out), merged by local time."""
    return load_files(rec.fmt, [data_dir / f for f in rec.files])


def known_instrument(paths: list[Path], fmt: str) -> instruments.KnownInstrument | None:
    """The registry's entry for the instrument the files' records name, or None (unnamed, unreadable, or not in the
    registry)."""
    try:
        found = identify(paths, fmt)
    except (OSError, ValueError):
        return None
    return instruments.lookup(found.venue, found.symbol) if found else None


def event_prices(e: Any) -> list[float]:
    """The prices an event carries (a trade's, a top of book's two), for inferring the tick."""
    for a, b in (("price", None), ("bid_px", "ask_px")):
        if hasattr(e, a):
            return [getattr(e, a)] + ([getattr(e, b)] if b else [])
    return []


def tick_for_files(
    known: instruments.KnownInstrument | None, events: list[Any], tick: float = 0.0
) -> tuple[float, str]:
    """The tick of recorded ``events`` and how it was found: ``tick`` when given (> 0); else inferred from the first
    5,000 events' quotes (their prints where they hold none), unless the registry's entry ``known`` has one and the
    prices sit on no finer grid than it (the registry holds today's tick, a recording may be older: Binance USD-M
    BTCUSDT in 2020 traded on 0.01 where the registry has 0.1). ValueError, naming ``--tick-size``, when neither
    tells."""
    if tick:
        return tick, "given"
    # from the quotes where there are any: they sit on the grid, where prints need not (a Nasdaq midpoint
    # execution prints at half a cent: LOBSTER AMZN's first 5,000 events hold 8)
    head = events[:5000]
    seen = infer_tick_size([x for e in head if hasattr(e, "bid_px") for x in event_prices(e)])
    if not seen:
        seen = infer_tick_size([x for e in head for x in event_prices(e)])
    if known and not (seen and seen < known.tick_size * (1 - 1e-9)):
        return known.tick_size, "the registry's"
    if not seen:
        raise ValueError("cannot tell the tick size from the files (fewer than two prices): pass --tick-size")
    return seen, "inferred from the prices"


def recording_for_files(
    paths: list[Path],
    fmt: str,
    events: list[Any],
    *,
    tick: float = 0.0,
    lot: float = 0.0,
    order_size: float = 0.01,
    max_inventory: float = 0.2,
) -> Recording:
    """A :class:`Recording` of files the project does not hold (``manage.py evaluate --files``), from its parsed
    ``events``. The tick and lot as given, else the registry's for the instrument the records name, else (the tick
    only) inferred from the first 5,000 events' quotes (their prints where they hold none); the inferred tick also
    wins over the registry's when the prices sit on a finer grid (the registry holds today's tick, a recording may be
    older). ValueError, naming what to pass, when one is unknown or a size is not a positive number, or Q_max is
    below one order."""
    for name, v in (("tick size", tick), ("lot size", lot)):
        if not (v >= 0 and math.isfinite(v)):
            raise ValueError(f"the {name} must be a finite number >= 0 (0: from the instrument), got {v!r}")
    for name, v in (("order size", order_size), ("max inventory", max_inventory)):
        if not (v > 0 and math.isfinite(v)):
            raise ValueError(f"the {name} must be a finite number > 0, got {v!r}")
    if max_inventory < order_size:
        raise ValueError(f"the max inventory {max_inventory:g} is below one order of {order_size:g}")
    known = known_instrument(paths, fmt)
    tick, how = tick_for_files(known, events, tick)
    if not lot and known:
        lot = known.lot_size
    if not lot:
        raise ValueError("the files name no instrument the registry knows: pass --lot-size")
    what = f"{known.venue}:{known.symbol}" if known else "an instrument the registry does not know"
    return Recording(
        fmt,
        tuple(str(p) for p in paths),
        tick,
        lot,
        order_size,
        max_inventory,
        note=f"files given on the command line ({what}; tick {tick:g}, {how}; lot {lot:g})",
    )
