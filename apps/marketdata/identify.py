"""Which instrument a recorded file holds: venue, symbol and kind, read from the records (or the file's name where
the format keeps it there), so a backtest over files is labelled with the market it replays.

Per format, the evidence:

* ``binance-raw``: the stream name (``btcusdt@trade``) or the payload's ``s``; USD-M futures when a depth diff
  carries ``pu`` or a trade carries ``X`` (spot has neither; a spot trade carries ``M``). COIN-M symbols
  (``BTCUSD_PERP``) are ``binance-coinm``.
* ``tardis``: the ``exchange`` and ``symbol`` columns (``binance-futures`` is USD-M, ``binance`` is spot).
* ``hyperliquid``: the ``coin`` of the messages (Hyperliquid lists perpetuals).
* ``lobster``: the file name, ``TICKER_date_start_end_message_level.csv`` (LOBSTER rebuilds Nasdaq's book).
* ``binance-public``: the file name, ``SYMBOL-trades-date.csv``, and ``futures/um`` or ``spot`` in its path.

Only the first lines of a file are read. ``None`` when the records do not say (a bare payload with no symbol).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from apps.marketdata.parsers.common import open_text

_SCAN_LINES = 5_000  # a recording interleaves its streams within the first few hundred lines


@dataclass(frozen=True)
class DataInstrument:
    venue: str
    symbol: str
    kind: str  # an Instrument.Kind value: "spot" or "perp"
    evidence: str  # what said so, for the error message when files disagree

    def label(self) -> str:
        return f"{self.venue}:{self.symbol}"


def _lines(path: Path, n: int = _SCAN_LINES) -> list[str]:
    out = []
    for _no, text in open_text(path):
        out.append(text)
        if len(out) >= n:
            break
    return out


def _binance_raw(path: Path) -> DataInstrument | None:
    symbol, futures, spot = "", False, False
    for line in _lines(path):
        _ts, _, body = line.partition(" ")
        try:
            msg = json.loads(body)
        except ValueError:
            continue
        if not isinstance(msg, dict):
            continue
        data = msg.get("data", msg)
        if not isinstance(data, dict):
            continue
        stream = msg.get("stream")
        if not symbol and isinstance(stream, str) and "@" in stream:
            symbol = stream.split("@", 1)[0].upper()
        if not symbol and isinstance(data.get("s"), str):
            symbol = data["s"].upper()
        event = data.get("e")
        if event == "depthUpdate":
            futures |= "pu" in data
            spot |= "pu" not in data
        elif event == "trade":
            futures |= "X" in data
            spot |= "M" in data
        if symbol and (futures or spot):
            break
    if not symbol:
        return None
    if futures and not spot:
        venue, kind = ("binance-coinm" if "_" in symbol else "binance-usdm"), "perp"
    elif spot and not futures:
        venue, kind = "binance-spot", "spot"
    else:
        venue, kind = "binance", "spot"  # the records do not tell the market
    return DataInstrument(venue, symbol, kind, f"{path.name}: stream names and message fields")


_TARDIS_VENUES = {"binance-futures": ("binance-usdm", "perp"), "binance": ("binance-spot", "spot")}


def _tardis(path: Path) -> DataInstrument | None:
    lines = _lines(path, 2)
    if len(lines) < 2:
        return None
    head = [c.strip() for c in lines[0].split(",")]
    row = [c.strip() for c in lines[1].split(",")]
    if "exchange" not in head or "symbol" not in head or len(row) != len(head):
        return None
    exchange, symbol = row[head.index("exchange")], row[head.index("symbol")].upper()
    venue, kind = _TARDIS_VENUES.get(exchange, (exchange, "perp" if "PERP" in symbol else "spot"))
    return DataInstrument(venue, symbol, kind, f"{path.name}: exchange and symbol columns")


def _hyperliquid(path: Path) -> DataInstrument | None:
    for line in _lines(path, 200):
        m = re.search(r'"coin"\s*:\s*"([^"]+)"', line)
        if m:
            return DataInstrument("hyperliquid", m.group(1).upper(), "perp", f"{path.name}: coin of the messages")
    return None


_LOBSTER_NAME = re.compile(r"^([A-Za-z.]+)_\d{4}-\d{2}-\d{2}_\d+_\d+_(?:message|orderbook)_\d+")


def _lobster(path: Path) -> DataInstrument | None:
    m = _LOBSTER_NAME.match(path.name)
    if not m:
        return None
    return DataInstrument("nasdaq", m.group(1).upper(), "spot", f"{path.name}: LOBSTER file name")


_BINANCE_PUBLIC_NAME = re.compile(r"^([A-Z0-9_]+)-(?:trades|aggTrades|bookTicker|bookDepth|klines)-")


def _binance_public(path: Path) -> DataInstrument | None:
    m = _BINANCE_PUBLIC_NAME.match(path.name)
    if not m:
        return None
    parts = path.as_posix()
    if "/futures/um/" in parts:
        venue, kind = "binance-usdm", "perp"
    elif "/futures/cm/" in parts:
        venue, kind = "binance-coinm", "perp"
    elif "/spot/" in parts:
        venue, kind = "binance-spot", "spot"
    else:
        venue, kind = "binance", "spot"
    return DataInstrument(venue, m.group(1), kind, f"{path.name}: Binance public-data file name and path")


_BY_FORMAT = {
    "binance-raw": _binance_raw,
    "tardis": _tardis,
    "hyperliquid": _hyperliquid,
    "lobster": _lobster,
    "binance-public": _binance_public,
}


def identify(files: Sequence[str | Path], fmt: str) -> DataInstrument | None:
    """The instrument the files hold, or None when their records do not say. Files of different instruments
    are an error (a backtest merges them into one market)."""
    find = _BY_FORMAT.get(fmt)
    if find is None:
        return None
    found = [find(Path(f)) for f in files]
    known = [d for d in found if d is not None]
    if not known:
        return None
    labels = {(d.venue, d.symbol) for d in known}
    if len(labels) > 1:
        raise ValueError(
            "the data files hold different instruments: " + "; ".join(f"{d.label()} ({d.evidence})" for d in known)
        )
    return known[0]
