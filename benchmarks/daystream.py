"""A day (or any number of hours) of Binance USD-M BTCUSDT, built by repeating and re-stamping the shared recording.

The recording (:data:`DATA`, 5 min 45 s, 93,954 messages) is parsed once and kept; :func:`day_stream` then yields
its events again and again, copy ``k`` shifted by ``k`` periods, without ever holding more than that one parsed
copy: every yielded event is a new object, built from the template with

* both clocks (``ts_exch_ns``, ``ts_local_ns``) plus ``k · period_ns``, where ``period_ns`` is the recording's span
  on either clock plus 1 ms, rounded up to a whole ms (344.804 s): local time stays non-decreasing across a copy's
  boundary and so does every stream's exchange time (trades, book tickers, diffs); exchange times stay whole ms;
* every exchange sequence id (depth ``U``/``u``/``pu``, book-ticker ``u``, the snapshot's ``lastUpdateId``) plus
  ``k`` times the recording's id span, so the ``pu`` chain of the diffs runs on from copy to copy, and every trade id
  plus ``k`` times the recording's trade-id span, so trade ids stay unique and increasing.

Copy 0 is the recording exactly as the existing benchmarks replay it. In copies ``k >= 1`` the REST snapshot, which
the recorder wrote after 54 messages, comes first (re-stamped at the copy's first local time, exchange time kept),
and the diffs before it that it already contains (``u < lastUpdateId``: 4 of 6) are dropped: the Binance futures
re-sync rule (MANIFEST quirk 2). Without it, those diffs (book levels near 61,800) would land on the previous copy's
book (near 61,660, 5 min 45 s later in the recording) and cross it. The price itself is not shifted: at each boundary
the market jumps from the recording's last mid (61,659.75) back to its first (61,800.25), +140.5 USDT (+23 bps), once
per 5 min 45 s, with a fresh snapshot, as after a reconnect. Everything else (prices, sizes, levels) is the template's
own objects (level tuples are shared, not copied).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.common import USDM_BTCUSDT_RAW

BASE_DIR = Path(__file__).resolve().parent.parent
DATA = USDM_BTCUSDT_RAW
# hftbacktest's rows of one copy of the recording (docs/bench-anchor.md: 466,493 depth + 21,476 trade + 4,000
# snapshot + 4 clear; its converter drops bookTicker); the unit make bench-anchor compares in
HFT_ROWS_PER_COPY = 491_973
_MS = 1_000_000


@dataclass(frozen=True)
class Recording:
    """One parsed copy of the recording, and what re-stamping it needs."""

    events: list[Any]  # copy 0, as parsed (Quarantined rows dropped)
    resync: list[Any]  # copies k >= 1: snapshot first, the diffs it contains dropped
    period_ns: int  # the shift between two copies, on both clocks
    id_span: int  # exchange sequence ids: max - min + 1
    trade_id_span: int  # trade ids: max - min + 1
    parse_s: float

    @property
    def messages(self) -> int:
        return len(self.events)

    def copies_for_hours(self, hours: float) -> int:
        """Whole copies covering at least ``hours`` of market time (at least one)."""
        return max(1, math.ceil(hours * 3600e9 / self.period_ns - 1e-9))

    def events_in(self, copies: int) -> int:
        return len(self.events) + (copies - 1) * len(self.resync)


def require_compiled() -> str:
    """What runs the hot path: "compiled" or "pure Python (MM_PURE_PYTHON)". Raises when a compiled module fell back
    to Python without being asked to (a checkout whose extensions are not built): its numbers would be the
    reference's, quoted as the product's."""
    from apps.engine import compiled

    if compiled.FALLBACKS:
        raise RuntimeError(f"compiled modules fell back to Python (run make build): {compiled.FALLBACKS}")
    return "pure Python (MM_PURE_PYTHON)" if compiled.pure_python() else "compiled"


def _ids(e: Any) -> tuple[int, ...]:
    return tuple(
        x
        for x in (
            getattr(e, "first_update_id", 0),
            getattr(e, "last_update_id", 0),
            getattr(e, "prev_update_id", 0),
            getattr(e, "update_id", 0),
        )
        if x
    )


def load(path: Path = DATA) -> Recording:
    import time

    from apps.engine.market.events import DepthSnapshot, DepthUpdate, Trade
    from apps.marketdata.parsers import Quarantined, parse_file

    t0 = time.perf_counter()
    events = [e for e in parse_file("binance-raw", path) if not isinstance(e, Quarantined)]
    parse_s = time.perf_counter() - t0
    if not events:
        raise ValueError(f"{path}: no events")
    local_span = events[-1].ts_local_ns - events[0].ts_local_ns
    exch = [e.ts_exch_ns for e in events]
    period = max(local_span, max(exch) - min(exch)) + _MS
    period = -(-period // _MS) * _MS
    ids = [x for e in events for x in _ids(e)]
    tids = [int(e.trade_id) for e in events if type(e) is Trade and e.trade_id]
    snap_at = next((i for i, e in enumerate(events) if type(e) is DepthSnapshot), None)
    if snap_at is None:
        resync = list(events)
    else:
        snap = events[snap_at]
        first = events[0].ts_local_ns
        moved = DepthSnapshot(snap.ts_exch_ns, first, snap.bids, snap.asks, snap.last_update_id)
        before = [
            e for e in events[:snap_at] if not (type(e) is DepthUpdate and e.last_update_id < snap.last_update_id)
        ]
        resync = [moved, *before, *events[snap_at + 1 :]]
    return Recording(
        events=events,
        resync=resync,
        period_ns=period,
        id_span=(max(ids) - min(ids) + 1) if ids else 0,
        trade_id_span=(max(tids) - min(tids) + 1) if tids else 0,
        parse_s=parse_s,
    )


def copy_events(rec: Recording, k: int) -> Iterator[Any]:
    """Copy ``k`` of the recording, re-stamped (new objects; ``k = 0`` yields the parsed events themselves)."""
    from apps.engine.market.events import BestBidAsk, DepthSnapshot, DepthUpdate, Trade

    if k == 0:
        yield from rec.events
        return
    d = k * rec.period_ns
    di = k * rec.id_span
    dt = k * rec.trade_id_span
    for e in rec.resync:
        cls = type(e)
        if cls is BestBidAsk:
            yield BestBidAsk(
                e.ts_exch_ns + d,
                e.ts_local_ns + d,
                e.bid_px,
                e.bid_size,
                e.ask_px,
                e.ask_size,
                e.update_id + di if e.update_id else 0,
            )
        elif cls is Trade:
            yield Trade(
                e.ts_exch_ns + d,
                e.ts_local_ns + d,
                e.price,
                e.size,
                e.aggressor,
                str(int(e.trade_id) + dt) if e.trade_id else "",
                e.market,
                e.kind,
            )
        elif cls is DepthUpdate:
            yield DepthUpdate(
                e.ts_exch_ns + d,
                e.ts_local_ns + d,
                e.bids,
                e.asks,
                e.first_update_id + di if e.first_update_id else 0,
                e.last_update_id + di if e.last_update_id else 0,
                e.prev_update_id + di if e.prev_update_id else 0,
            )
        elif cls is DepthSnapshot:
            yield DepthSnapshot(
                e.ts_exch_ns + d, e.ts_local_ns + d, e.bids, e.asks, e.last_update_id + di if e.last_update_id else 0
            )
        else:
            raise TypeError(f"copy_events: no re-stamping rule for {cls.__name__}")


def day_stream(rec: Recording, copies: int) -> Iterator[Any]:
    """``copies`` re-stamped copies of the recording, one after the other, generated as they are consumed."""
    for k in range(copies):
        yield from copy_events(rec, k)
