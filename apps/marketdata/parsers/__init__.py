"""Streaming parsers for recorded market data: real file formats -> engine events.

Each format module has ``parse_lines(lines, *, stats=None, ...)`` over ``(line_no, text)`` pairs and
``parse_file(path, *, stats=None, ...)`` (plain, .gz or .zip). Both return generators that yield
:mod:`apps.engine.market.events` (``Trade``, ``BestBidAsk``, ``DepthUpdate``, ``DepthSnapshot``) or
:class:`~.common.Quarantined` records, in file order, in constant memory. Pass a
:class:`~.common.ParseStats` to get counts per event type, quarantines per reason and the median
local−exchange clock offset.

Pure Python: no Django, so the engine and tests can use them directly.

>>> from apps.marketdata.parsers import parse_file, ParseStats   # doctest: +SKIP
>>> stats = ParseStats()
>>> for item in parse_file("binance-raw", "usdm_btcusdt_20240808.gz", stats=stats): ...
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

from . import binance_public, binance_raw, hyperliquid, lobster, tardis
from .common import REASONS, MarketItem, ParseStats, Quarantined, open_text

FORMATS: dict[str, Callable[..., Iterator[MarketItem]]] = {
    binance_raw.FORMAT: binance_raw.parse_file,
    tardis.FORMAT: tardis.parse_file,
    lobster.FORMAT: lobster.parse_file,
    hyperliquid.FORMAT: hyperliquid.parse_file,
    binance_public.FORMAT: binance_public.parse_file,
}


def parse_file(
    fmt: str, path: str | Path, *, stats: ParseStats | None = None, **kwargs: object
) -> Iterator[MarketItem]:
    """Parse ``path`` in format ``fmt`` (a key of :data:`FORMATS`); extra keywords go to the format."""
    try:
        fn = FORMATS[fmt]
    except KeyError:
        raise ValueError(f"unknown format {fmt!r}; known: {sorted(FORMATS)}") from None
    return fn(path, stats=stats, **kwargs)


__all__ = ["FORMATS", "REASONS", "ParseStats", "Quarantined", "open_text", "parse_file"]
