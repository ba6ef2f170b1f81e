"""Record Binance market data into the market-data store (``manage.py record``): trades, top of book, every L2
diff, the REST snapshots the connector fetched, and funding-rate changes (from markPrice), through the batched
writer (COPY; rows it cannot write spill to disk and are replayed when the database answers again).

Every message received is stored, in sequence or not (a diff that arrived while the book was resynchronising is
still market data; the stored update ids let a reader rebuild the book with the same rule). Disconnects are the
connector's business: it reconnects with back-off and fetches fresh snapshots, which are stored too.
"""

from __future__ import annotations

import queue
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from apps.engine.accounting.funding import FundingClock
from apps.engine.market.events import BestBidAsk, DepthSnapshot, DepthUpdate, MarkPrice, Trade
from apps.venues.binance.connector import BinanceConnector


@dataclass
class RecordCounts:
    trades: int = 0
    quotes: int = 0
    depth_updates: int = 0
    depth_snapshots: int = 0
    funding: int = 0
    per_symbol: dict[str, dict[str, int]] = field(default_factory=dict)


def _spill_dir() -> Path:
    from django.conf import settings

    return Path(settings.MM_SPILL_DIR) / "marketdata-record"


class Recorder:
    """Drain a connector's queue into a :class:`~apps.marketdata.writer.BatchedWriter` with the importer's tables."""

    def __init__(
        self,
        connector: BinanceConnector,
        instrument_ids: dict[str, int],
        writer: Any | None = None,
        *,
        max_buffer_rows: int = 200_000,
    ) -> None:
        """``max_buffer_rows``: rows the writer keeps in memory while the database is away before it spills the
        oldest to ``MM_SPILL_DIR/marketdata-record`` (replayed, oldest first, when the database answers)."""
        from apps.marketdata.importer import SPECS
        from apps.marketdata.writer import BatchedWriter

        missing = set(connector.symbols) - set(instrument_ids)
        if missing:
            raise ValueError(f"instrument_ids: no instrument for {sorted(missing)}")
        self.connector = connector
        self.iids = instrument_ids
        self.writer = writer or BatchedWriter(
            SPECS,
            flush_interval_s=0.5,
            max_batch_rows=min(5000, max_buffer_rows),
            max_buffer_rows=max_buffer_rows,
            spill_dir=_spill_dir(),
        )
        self.counts = RecordCounts(per_symbol={s: {} for s in connector.symbols})
        self._clocks: dict[str, FundingClock] = {}  # per symbol: mark-price updates -> settlements

    def drain(self) -> int:
        """Move what the connector has queued into the writer; returns the number of items taken."""
        from apps.marketdata.importer import (
            DEPTH,
            FUNDING,
            QUOTES,
            SNAPSHOTS,
            TRADES,
            _sides,
            depth_row,
            event_time,
            quote_row,
            snapshot_row,
            trade_row,
        )

        q = self.connector.queue
        add = self.writer.add
        c = self.counts
        n = 0
        while True:
            try:
                kind, sym, ev, _whole = q.get_nowait()
            except queue.Empty:
                break
            n += 1
            if kind != "event":
                continue
            iid = self.iids[sym]
            t = type(ev)
            per = c.per_symbol[sym]
            if t is Trade:
                add(
                    TRADES,
                    trade_row(iid, ev.ts_local_ns, ev.ts_exch_ns, ev.price, ev.size, int(ev.aggressor), ev.trade_id),
                )
                c.trades += 1
                label = "trades"
            elif t is BestBidAsk:
                add(
                    QUOTES,
                    quote_row(
                        iid, ev.ts_local_ns, ev.ts_exch_ns, ev.bid_px, ev.bid_size, ev.ask_px, ev.ask_size, ev.update_id
                    ),
                )
                c.quotes += 1
                label = "quotes"
            elif t is DepthUpdate:
                add(DEPTH, depth_row(iid, ev, _sides(ev.bids, ev.asks)))
                c.depth_updates += 1
                label = "depth_updates"
            elif t is DepthSnapshot:
                add(SNAPSHOTS, snapshot_row(iid, ev, _sides(ev.bids, ev.asks)))
                c.depth_snapshots += 1
                label = "depth_snapshots"
            elif t is MarkPrice:
                # stored as the importer stores it: one row per settlement (a stored-range replay pays each row)
                paid = self._clocks.setdefault(sym, FundingClock()).on_mark(
                    ev.ts_exch_ns, ev.ts_local_ns, ev.funding_rate, ev.next_funding_ns
                )
                if paid is None:
                    continue
                ts = event_time(paid.ts_exch_ns, paid.ts_local_ns)
                add(FUNDING, (iid, ts, paid.ts_exch_ns, paid.ts_local_ns, paid.rate, ev.interval_s))
                c.funding += 1
                label = "funding"
            else:
                continue
            per[label] = per.get(label, 0) + 1
        return n

    def progress_line(self, elapsed_s: float) -> str:
        c, conn = self.counts, self.connector
        ws = self.writer.stats
        return (
            f"[{elapsed_s:7.1f}s] {conn.state.value:<10} trades {c.trades:,} quotes {c.quotes:,} "
            f"depth {c.depth_updates:,} snapshots {c.depth_snapshots:,} funding {c.funding:,} | "
            f"gaps {conn.stats.gaps} reconnects {max(0, conn.stats.connects - 1)} | "
            f"buffered {self.writer.buffered_rows:,} written {ws.rows_written:,} spilled {ws.rows_spilled:,}"
        )

    def run(
        self,
        seconds: float | None,
        *,
        progress: Callable[[str], None] | None = None,
        progress_every_s: float = 1.0,
        should_stop: Callable[[], bool] = lambda: False,
    ) -> RecordCounts:
        """Record until ``seconds`` pass (None: until ``should_stop``), then flush and close the writer."""
        self.writer.start()
        self.connector.start()
        t0 = time.monotonic()
        next_progress = t0 + progress_every_s
        try:
            while not should_stop():
                now = time.monotonic()
                if seconds is not None and now - t0 >= seconds:
                    break
                if self.drain() == 0:
                    time.sleep(0.01)
                if progress is not None and now >= next_progress:
                    progress(self.progress_line(now - t0))
                    next_progress = now + progress_every_s
        finally:
            self.connector.stop()
            self.drain()
            self.writer.close()
            if progress is not None:
                progress(self.progress_line(time.monotonic() - t0))
                progress(self.states_line())
        return self.counts

    def states_line(self) -> str:
        """Every state the connection passed through, in order (the once-a-second lines sample it and can miss a
        short one, such as a sync that finished between two samples)."""
        states = [s for _, s in self.connector.stats.states]
        return "states " + " > ".join(states) if states else "states (none)"


def record(
    venue: str,
    symbols: Sequence[str],
    seconds: float | None,
    *,
    progress: Callable[[str], None] | None = None,
    should_stop: Callable[[], bool] = lambda: False,
    max_buffer_rows: int = 200_000,
    **connector_kwargs: Any,
) -> RecordCounts:
    """Create the instruments (registry values) and record their market data."""
    from apps.marketdata import instruments

    conn = BinanceConnector(venue, symbols, **connector_kwargs)
    iids = {}
    for sym in conn.symbols:
        known = instruments.lookup(venue, sym)
        if known is None:
            raise ValueError(
                f"symbols: {venue}:{sym} is not a known instrument (known: {', '.join(instruments.known_keys())})"
            )
        iids[sym] = instruments.ensure_known_instrument(known).pk
    recorder = Recorder(conn, iids, max_buffer_rows=max_buffer_rows)
    return recorder.run(seconds, progress=progress, should_stop=should_stop)
