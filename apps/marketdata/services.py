"""Writes for market data: instruments and imports (the management commands are thin shells over these)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path

from django.db import transaction

from apps.marketdata.importer import ImportOptions, ImportSummary, run_import
from apps.marketdata.models import Instrument


def _positive(name: str, value: float | None) -> float | None:
    if value is None:
        return None
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)


@transaction.atomic
def ensure_instrument(
    venue: str,
    symbol: str,
    *,
    kind: str | None = None,
    tick_size: float | None = None,
    lot_size: float | None = None,
) -> Instrument:
    """Return the instrument ``venue:symbol``, creating it when tick and lot size are given.

    An existing instrument is never silently changed: a different tick size, lot size or kind is an error.
    """
    if not venue or not symbol:
        raise ValueError(f"venue and symbol are required, got venue={venue!r} symbol={symbol!r}")
    tick_size = _positive("tick_size", tick_size)
    lot_size = _positive("lot_size", lot_size)
    if kind is not None and kind not in Instrument.Kind.values:
        raise ValueError(f"kind must be one of {Instrument.Kind.values}, got {kind!r}")
    inst = Instrument.objects.select_for_update().filter(venue=venue, symbol=symbol).first()
    if inst is None:
        if tick_size is None or lot_size is None:
            raise ValueError(
                f"instrument {venue}:{symbol} does not exist yet; give --tick-size and --lot-size to create it"
            )
        return Instrument.objects.create(
            venue=venue, symbol=symbol, kind=kind or Instrument.Kind.SPOT, tick_size=tick_size, lot_size=lot_size
        )
    for name, given in (("tick_size", tick_size), ("lot_size", lot_size), ("kind", kind)):
        stored = getattr(inst, name)
        if given is not None and given != stored:
            raise ValueError(f"instrument {inst}: {name} is {stored!r} in the database, {given!r} was given")
    return inst


def import_files(
    paths: Sequence[str | Path],
    *,
    fmt: str,
    venue: str,
    symbol: str,
    kind: str | None = None,
    tick_size: float | None = None,
    lot_size: float | None = None,
    options: ImportOptions | None = None,
    progress: Callable[[str], None] | None = None,
) -> ImportSummary:
    """Import ``paths`` (in this order) for one instrument; see :mod:`apps.marketdata.importer`."""
    missing = [str(p) for p in paths if not Path(p).is_file()]
    if missing:
        raise ValueError(f"files not found: {missing}")
    inst = ensure_instrument(venue, symbol, kind=kind, tick_size=tick_size, lot_size=lot_size)
    return run_import([Path(p) for p in paths], fmt=fmt, instrument=inst, options=options, progress=progress)
