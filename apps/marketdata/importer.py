"""Streaming import of recorded market data into the tick tables, with data-quality checks.

Pipeline per file: ``parse_file`` (a generator; gzip/zip handled there) -> rows -> :class:`BatchedWriter` (a
background thread COPYs while the parser keeps going, so parsing and the database work overlap). Memory is
constant: the writer's buffer is bounded (the importer waits when it passes ``high_water_rows``; if the database
is away the writer spills to ``spill_dir`` and replays on recovery).

``binance-raw`` takes a faster road to the same rows: :func:`~apps.marketdata.parsers.binance_raw.records`
(plain tuples, no event objects; the same checks) over a reader thread that decompresses while the parser runs
(zlib releases the GIL), and :meth:`_FileImport.run_binance_raw`. Tick rows go to PostgreSQL as binary COPY.
It also uses the second core: a forked sidecar process (:class:`SidecarSide`, :mod:`apps.marketdata.sidecar`)
with its own connection and writer builds the depth rows and runs the book check (:class:`SideRows`), and
decodes depth lines whenever it keeps up (the parser then hands them over undecoded, see
``records(defer_depth=...)``), so the two share the parsing whatever the load. It stores the same rows and
quarantine as the one-process road (``ImportOptions(sidecar=False)``, ``import_marketdata --no-sidecar``, and
where ``os.fork`` is missing); ``tests/marketdata/test_import_sidecar.py`` holds them equal on clean and
corrupted real data. A sidecar that fails or dies ends its file with a ``file_error`` that says so. Measured
in ``benchmarks/bench_import.py``: 0.6-0.7x the rate of a plain COPY of the same rows (one process alone:
0.33-0.39x).

Idempotency: every stored row carries a natural key (trade id; content hash for quotes, depth and quarantine
rows) under a unique index. Tick batches are COPYed straight into their table inside a savepoint; when one hits a
stored key (a re-import, an overlapping file, a concurrent import of the same file, which waits on the other's
uncommitted keys) the writer rolls that COPY back and moves that table's rows through a staging table with
``ON CONFLICT DO NOTHING`` from then on. So importing the same file twice adds nothing (the second run reports
every row as a duplicate), and no interleaving of imports can store a row twice.

Quality: the parsers quarantine bad lines (unparsable, bad price/size/side, crossed book, duplicate trade id,
local time going backwards); for ``binance-raw`` the importer also rebuilds the L2 book with
:class:`~apps.engine.market.book.BinanceBookSync` and checks it against the exchange's bookTicker at every update id
both carry (``book_matches`` / ``book_mismatches``), quarantining mismatches (``book_mismatch``), sequence gaps
(``sequence_gap``) and a crossed rebuilt book (``crossed_book``). A read error (a truncated gzip, bytes that are
not UTF-8) ends that file with a ``file_error`` quarantine row; everything before it is kept.
"""

from __future__ import annotations

import gc
import hashlib
import logging
import sys
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from django.db import connection
from django.utils import timezone

from apps.engine.accounting.funding import FundingClock
from apps.engine.market.book import BinanceBookSync, BookSyncParams, OrderBook, SyncRule
from apps.engine.market.events import BestBidAsk, DepthSnapshot, DepthUpdate, Funding, MarkPrice, Trade
from apps.marketdata import sidecar
from apps.marketdata.models import (
    DepthSnapshotRecord,
    DepthUpdateRecord,
    FundingRate,
    ImportFile,
    ImportRun,
    Instrument,
    Quarantine,
    QuoteTick,
    TradeTick,
)
from apps.marketdata.parsers import FORMATS, ParseStats, Quarantined, binance_raw, parse_file
from apps.marketdata.parsers.common import open_text_threaded
from apps.marketdata.sidecar import Sidecar, SidecarError
from apps.marketdata.timescale import db_mode
from apps.marketdata.writer import BatchedWriter, TableSpec

logger = logging.getLogger(__name__)

TRADES = TradeTick._meta.db_table
QUOTES = QuoteTick._meta.db_table
DEPTH = DepthUpdateRecord._meta.db_table
SNAPSHOTS = DepthSnapshotRecord._meta.db_table
FUNDING = FundingRate._meta.db_table
QUARANTINE = Quarantine._meta.db_table

_TICK = ("instrument_id", "ts", "ts_exch_ns", "ts_local_ns")
_LEVELS = ("bid_px", "bid_size", "ask_px", "ask_size")
# Tick rows carry ``ts`` as int ns since the epoch (the event time: exchange stamp, or local when the venue sent
# none) and depth levels as float tuples; they go to PostgreSQL as binary COPY (no text for the server to parse).
_TICK_BIN = ("int8", "timestamptz_ns", "int8", "int8")
_LEVELS_BIN = ("float8[]",) * 4
SPECS: tuple[TableSpec, ...] = (
    TableSpec(
        TRADES,
        (*_TICK, "price", "size", "aggressor", "trade_id"),
        dedupe=True,
        binary_types=(*_TICK_BIN, "float8", "float8", "int2", "text"),
        direct_first=True,
    ),
    TableSpec(
        QUOTES,
        (*_TICK, *_LEVELS, "update_id", "dedupe_key"),
        dedupe=True,
        binary_types=(*_TICK_BIN, "float8", "float8", "float8", "float8", "int8", "int8"),
        direct_first=True,
    ),
    TableSpec(
        DEPTH,
        (*_TICK, "first_update_id", "last_update_id", "prev_update_id", *_LEVELS, "dedupe_key"),
        dedupe=True,
        binary_types=(*_TICK_BIN, "int8", "int8", "int8", *_LEVELS_BIN, "int8"),
        direct_first=True,
    ),
    TableSpec(
        SNAPSHOTS,
        (*_TICK, "last_update_id", *_LEVELS, "dedupe_key"),
        dedupe=True,
        binary_types=(*_TICK_BIN, "int8", *_LEVELS_BIN, "int8"),
        direct_first=True,
    ),
    TableSpec(FUNDING, (*_TICK, "rate", "interval_s"), dedupe=True),
    TableSpec(
        QUARANTINE,
        ("import_file_id", "file_sha256", "path", "line_no", "reason", "detail", "raw", "dedupe_key"),
        dedupe=True,
    ),
)
TABLE_LABELS = {TRADES: "trades", QUOTES: "quotes", DEPTH: "depth_updates", SNAPSHOTS: "depth_snapshots"}
TABLE_LABELS |= {FUNDING: "funding", QUARANTINE: "quarantine"}

_OTHER_TRADE, _MARK = binance_raw.OTHER_TRADE, binance_raw.MARK
_TRADE, _QUOTE, _DEPTH, _SNAPSHOT, _RAW = (
    binance_raw.TRADE,
    binance_raw.QUOTE,
    binance_raw.DEPTH,
    binance_raw.SNAPSHOT,
    binance_raw.RAW,
)
_BLOCK = 2000  # records between hand-overs to the writer and the side (and progress ticks)
_SIDECAR_SPARE = 2  # blocks queued for the sidecar beyond which the parser decodes depth lines itself

BOOK_MISMATCH = "book_mismatch"
SEQUENCE_GAP = "sequence_gap"
CROSSED_REBUILT = "crossed_book"
FILE_ERROR = "file_error"

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def ns_to_dt(ts_ns: int) -> datetime:
    """Integer ns since the epoch -> aware datetime (µs resolution, truncated; the exact ns are stored too)."""
    return _EPOCH + timedelta(microseconds=ts_ns // 1000)


def event_time(ts_exch_ns: int, ts_local_ns: int) -> datetime:
    """A row's time: the exchange's stamp, or our receive time when the venue sent none (0)."""
    return ns_to_dt(ts_exch_ns or ts_local_ns)


def _sides(bids: tuple[tuple[float, float], ...], asks: tuple[tuple[float, float], ...]) -> tuple[tuple, ...]:
    """(bid prices, bid sizes, ask prices, ask sizes) of two level lists, as float tuples."""
    bp, bs = zip(*bids, strict=True) if bids else ((), ())
    ap, as_ = zip(*asks, strict=True) if asks else ((), ())
    return bp, bs, ap, as_


def _clean_text(text: str) -> str:
    return text.replace("\x00", "\\x00")  # PostgreSQL text cannot hold NUL


def quarantine_key(line_no: int, reason: str, raw: str) -> int:
    """Stable 64-bit key of a quarantine record (re-importing a file adds no new quarantine rows)."""
    digest = hashlib.blake2b(f"{line_no}\x00{reason}\x00{raw}".encode(errors="replace"), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


@dataclass(frozen=True)
class ImportOptions:
    """Tuning of an import.

    Attributes
    ----------
    batch_rows : int
        Writer flush size, rows (default 10,000: small batches keep the server busy while the parser runs, and
        leave little to write after the last line).
    high_water_rows : int
        Buffered rows above which the parser waits for the writer (bounded memory; default 400,000).
    flush_interval_s : float
        Writer flush period, seconds (default 0.1).
    book_check : bool
        Rebuild the book and compare it with bookTicker (binance-raw only; default True).
    book_check_window : int
        Update ids remembered on each side while waiting for the other (default 20,000).
    spill_dir : Path | None
        Where the writer spills rows while the database is away (default ``<var>/spill/marketdata-import``).
    sidecar : bool
        binance-raw: build the depth rows, run the book check and decode depth lines in a forked process with
        its own database connection, beside the parser (default True; the same rows and checks in one process
        when False or where ``os.fork`` does not exist).
    """

    batch_rows: int = 10_000
    high_water_rows: int = 400_000
    flush_interval_s: float = 0.1
    book_check: bool = True
    book_check_window: int = 20_000
    spill_dir: Path | None = None
    sidecar: bool = True

    def validate(self) -> ImportOptions:
        for name in ("batch_rows", "high_water_rows", "book_check_window"):
            v = getattr(self, name)
            if not isinstance(v, int) or v <= 0:
                raise ValueError(f"{name} must be an int > 0, got {v!r}")
        if self.high_water_rows < self.batch_rows:
            raise ValueError(f"high_water_rows must be >= batch_rows, got {self.high_water_rows!r}")
        if not self.flush_interval_s > 0:
            raise ValueError(f"flush_interval_s must be > 0, got {self.flush_interval_s!r}")
        return self


# --- book reconstruction check ------------------------------------------------------------------


@dataclass(frozen=True)
class Issue:
    line_no: int
    reason: str
    detail: str


class BookCheck:
    """Rebuild the Binance L2 book from snapshot + diffs and compare its top with bookTicker by update id.

    bookTicker ``u`` and a depth diff's ``u`` name the same book state; either may arrive first, so each side
    waits (bounded) for the other. The continuity rule is taken from the first diff: ``pu`` present means
    futures, else spot. State carries across the files of one run (a recording split at midnight).
    """

    def __init__(self, window: int = 20_000) -> None:
        self.window = window
        self.sync: BinanceBookSync | None = None
        self._early_snapshots: list[DepthSnapshot] = []
        self._tops: OrderedDict[int, tuple[tuple[float, float] | None, tuple[float, float] | None]] = OrderedDict()
        self._bbos: OrderedDict[int, tuple[float, float, float, float, int]] = OrderedDict()
        self.matches = 0
        self.mismatches = 0
        self.gaps = 0
        self.crossed = 0
        self.issues: list[Issue] = []
        self._line = 0

    def _make_sync(self, rule: SyncRule) -> BinanceBookSync:
        sync = BinanceBookSync(BookSyncParams(rule=rule), OrderBook(checked=False), on_apply=self._on_apply)
        for snap in self._early_snapshots:
            self._gaps(sync.process(snap))
        self._early_snapshots.clear()
        return sync

    def on_depth(self, ev: DepthUpdate | DepthSnapshot, line_no: int) -> None:
        self._line = line_no
        if self.sync is None:
            if isinstance(ev, DepthSnapshot):
                self._early_snapshots = [ev]  # only the newest matters
                return
            self.sync = self._make_sync(SyncRule.FUTURES if ev.prev_update_id else SyncRule.SPOT)
        self._gaps(self.sync.process(ev))

    def _gaps(self, gaps: list) -> None:
        for g in gaps:
            self.gaps += 1
            self.issues.append(Issue(self._line, SEQUENCE_GAP, f"{g.kind}: expected {g.expected}, got {g.got}"))

    def _on_apply(self, diff: DepthUpdate, book: OrderBook) -> None:
        bid, ask = book.best_bid(), book.best_ask()
        if bid is not None and ask is not None and bid[0] >= ask[0]:
            self.crossed += 1
            self.issues.append(
                Issue(self._line, CROSSED_REBUILT, f"rebuilt book crossed after u={diff.last_update_id}")
            )
        u = diff.last_update_id
        waiting = self._bbos.pop(u, None)
        if waiting is not None:
            self._compare(u, waiting, (bid, ask))
            return
        self._tops[u] = (bid, ask)
        if len(self._tops) > self.window:
            self._tops.popitem(last=False)

    def on_bbo(self, u: int, bid_px: float, bid_size: float, ask_px: float, ask_size: float, line_no: int) -> None:
        """A bookTicker: update id ``u`` (0 = none, nothing to compare) and its touch, from line ``line_no``."""
        if not u:
            return
        top = self._tops.pop(u, None)
        if top is not None:
            self._compare(u, (bid_px, bid_size, ask_px, ask_size, line_no), top)
            return
        self._bbos[u] = (bid_px, bid_size, ask_px, ask_size, line_no)
        if len(self._bbos) > self.window:
            self._bbos.popitem(last=False)

    def _compare(self, u: int, bbo: tuple[float, float, float, float, int], top: tuple) -> None:
        bid_px, bid_size, ask_px, ask_size, line_no = bbo
        bid, ask = top
        if bid == (bid_px, bid_size) and ask == (ask_px, ask_size):
            self.matches += 1
            return
        self.mismatches += 1
        self.issues.append(
            Issue(
                line_no,
                BOOK_MISMATCH,
                f"u={u} bookTicker bid {bid_px}x{bid_size} ask {ask_px}x{ask_size}; rebuilt bid {bid} ask {ask}",
            )
        )


# --- summary --------------------------------------------------------------------------------------


@dataclass
class FileSummary:
    path: str
    sha256: str
    kind: str
    lines: int
    parsed: dict[str, int]
    inserted: dict[str, int]
    duplicates: dict[str, int]
    quarantined: dict[str, int]
    clock_offset_ms: float | None
    book_matches: int
    book_mismatches: int
    duration_s: float
    rows_per_s: float
    spilled_rows: int = 0
    error: str = ""
    # trades that are not market trades (insurance fund, ADL, ...), by the venue's label: not stored
    non_market_trades: dict[str, int] = field(default_factory=dict)


@dataclass
class ImportSummary:
    run_id: int
    db_mode: str
    fmt: str
    instrument: str
    files: list[FileSummary] = field(default_factory=list)

    def totals(self, attr: str) -> dict[str, int]:
        out: Counter = Counter()
        for f in self.files:
            out.update(getattr(f, attr))
        return dict(out)

    def format(self) -> str:
        """Human-readable summary (what ``import_marketdata`` prints)."""
        lines = [f"import run #{self.run_id}: {self.fmt} -> {self.instrument}   database mode: {self.db_mode}"]
        for f in self.files:
            offset = "n/a (no local clock)" if f.clock_offset_ms is None else f"{f.clock_offset_ms:+.1f} ms"
            lines.append(f"  {f.path}  [{f.kind or '-'}]  sha256 {f.sha256[:12]}")
            lines.append(
                f"    {f.lines:,} lines in {f.duration_s:.2f} s = {f.rows_per_s:,.0f} rows/s; "
                f"clock offset (local - exchange, median) {offset}"
            )
            for table in sorted(set(f.parsed) | set(f.inserted)):
                lines.append(
                    f"    {table:<16} parsed {f.parsed.get(table, 0):>10,}  new {f.inserted.get(table, 0):>10,}  "
                    f"already stored {f.duplicates.get(table, 0):>10,}"
                )
            excluded = sum(f.non_market_trades.values())
            kinds = "".join(f", {k} {n:,}" for k, n in sorted(f.non_market_trades.items()))
            lines.append(f"    non-market trades excluded {excluded:,}{kinds}")
            if f.quarantined:
                reasons = ", ".join(f"{r} {n:,}" for r, n in sorted(f.quarantined.items()))
                lines.append(f"    quarantined {sum(f.quarantined.values()):,}: {reasons}")
            else:
                lines.append("    quarantined 0")
            if f.book_matches or f.book_mismatches:
                lines.append(
                    f"    rebuilt book vs bookTicker: {f.book_matches:,} match, {f.book_mismatches:,} mismatch"
                )
            if f.spilled_rows:
                lines.append(f"    WARNING {f.spilled_rows:,} rows spilled to disk; replayed by the next import")
            if f.error:
                lines.append(f"    ERROR {f.error}")
        return "\n".join(lines)


# --- the import ---------------------------------------------------------------------------------------


def _default_spill_dir() -> Path:
    from mmweb import embedded

    return embedded.var_dir() / "spill" / "marketdata-import"


# The rows of the tick tables, with their natural keys (a trade's id; a hash of the content for the others), for
# both roads: events (:meth:`_FileImport.run`) and binance-raw records (:meth:`_FileImport.run_binance_raw`,
# :class:`SideRows`). Times: local then exchange ns; a row's ``ts`` is the exchange's, or ours when it sent none.


def trade_row(iid: int, local: int, exch: int, px: float, sz: float, aggressor: int, trade_id: str) -> tuple:
    return (iid, exch or local, exch, local, px, sz, aggressor, trade_id)


def funding_row(iid: int, exch: int, local: int, rate: float, interval_s: float) -> tuple:
    """A FundingRate row: one funding settlement (time, rate paid). From ``markPrice`` updates only the
    settlements are stored (:class:`~apps.engine.accounting.funding.FundingClock`): a stored-range replay turns
    each row into a Funding payment, so the per-second announced rates must not become rows."""
    return (iid, event_time(exch, local), exch, local, rate, interval_s)


def quote_row(iid: int, local: int, exch: int, b: float, bq: float, a: float, aq: float, u: int) -> tuple:
    return (iid, exch or local, exch, local, b, bq, a, aq, u, hash((exch, local, u, b, bq, a, aq)))


def depth_row(iid: int, ev: DepthUpdate, sides: tuple[tuple, ...]) -> tuple:
    """``sides``: the event's levels as (bid prices, bid sizes, ask prices, ask sizes)."""
    exch, local, fu, lu = ev.ts_exch_ns, ev.ts_local_ns, ev.first_update_id, ev.last_update_id
    key = hash((exch, local, fu, lu, ev.bids, ev.asks))
    return (iid, exch or local, exch, local, fu, lu, ev.prev_update_id, *sides, key)


def snapshot_row(iid: int, ev: DepthSnapshot, sides: tuple[tuple, ...]) -> tuple:
    exch, local, lu = ev.ts_exch_ns, ev.ts_local_ns, ev.last_update_id
    return (iid, exch or local, exch, local, lu, *sides, hash((exch, local, lu, ev.bids, ev.asks)))


def quarantine_row(file_id: int, sha: str, path: str, line_no: int, reason: str, detail: str, raw: str) -> tuple:
    raw = _clean_text(raw)
    key = quarantine_key(line_no, reason, raw + detail)
    return (file_id, sha, path, line_no, reason, _clean_text(detail), raw, key)


class _Quarantine:
    """Quarantine rows of one file into a writer, counted by reason."""

    def __init__(self, writer: BatchedWriter, file_id: int, sha: str, path: str) -> None:
        self.writer, self.file_id, self.sha, self.path = writer, file_id, sha, path
        self.counts: Counter = Counter()

    def __call__(self, line_no: int, reason: str, detail: str, raw: str) -> None:
        self.writer.add(QUARANTINE, quarantine_row(self.file_id, self.sha, self.path, line_no, reason, detail, raw))
        self.counts[reason] += 1


class SideRows:
    """The rows of a binance-raw file's depth diffs and snapshots, and the book check over them and the quotes.

    Fed :func:`~apps.marketdata.parsers.binance_raw.records` tuples in file order: depth and snapshot records,
    quotes (only for the book check: their rows, like the trades', come from
    :meth:`_FileImport.run_binance_raw`) and ``RAW`` depth lines, which are decoded here, into :attr:`stats`
    and :attr:`parsed` (a line that turns out to be a quote gets its row here). The same code runs in the
    importing process or in its sidecar process (:class:`SidecarSide`), so both give the same rows and the same
    quarantine.
    """

    def __init__(
        self,
        iid: int,
        writer: BatchedWriter,
        book: BookCheck | None,
        quarantine: Callable[[int, str, str, str], None],
        high_water_rows: int,
    ) -> None:
        self.iid, self.writer, self.book, self.quarantine = iid, writer, book, quarantine
        self.high_water_rows = high_water_rows
        self.stats = ParseStats(fmt=binance_raw.FORMAT)  # of the RAW lines decoded here
        self.parsed: Counter = Counter()
        self._book0 = (book.matches, book.mismatches) if book is not None else (0, 0)  # the check spans files

    def process(self, recs: list[tuple]) -> None:
        iid, book, stats = self.iid, self.book, self.stats
        on_bbo = book.on_bbo if book is not None else None
        on_depth = book.on_depth if book is not None else None
        quotes: list[tuple] = []
        depth: list[tuple] = []
        snaps: list[tuple] = []
        for rec in recs:
            kind = rec[0]
            raw = kind == _RAW
            if raw:
                decoded = list(binance_raw.records(((rec[1], rec[2]),), stats, 1))
                if not decoded:
                    continue  # a control message (counted in stats.ignored)
                rec = decoded[0]
                if type(rec) is not tuple:
                    self.quarantine(rec.line_no, rec.reason, rec.detail, rec.raw)
                    continue
                kind = rec[0]
            if kind == _QUOTE:
                _k, line_no, _local, _exch, b, bq, a, aq, u = rec
                if raw:
                    quotes.append(quote_row(iid, *rec[2:]))
                if on_bbo is not None:
                    on_bbo(u, b, bq, a, aq, line_no)
                continue
            if kind != _DEPTH and kind != _SNAPSHOT:  # records(defer_depth=...) never defers a possible trade
                raise AssertionError(f"line {rec[1]}: a record of kind {kind} cannot come here")
            ev = binance_raw.depth_event(rec)
            if kind == _DEPTH:
                depth.append(depth_row(iid, ev, rec[7:]))
            else:
                snaps.append(snapshot_row(iid, ev, rec[7:]))
            if on_depth is not None:
                on_depth(ev, rec[1])
        for table, label, rows in (
            (QUOTES, "quotes", quotes),
            (DEPTH, "depth_updates", depth),
            (SNAPSHOTS, "depth_snapshots", snaps),
        ):
            if rows:
                self.writer.add_many(table, rows)
                self.parsed[label] += len(rows)
        self.drain_book_issues()
        while self.writer.buffered_rows >= self.high_water_rows:
            time.sleep(0.005)

    def drain_book_issues(self) -> None:
        if self.book is not None and self.book.issues:
            for issue in self.book.issues:
                self.quarantine(issue.line_no, issue.reason, issue.detail, "")
            self.book.issues.clear()

    def finish(self) -> SideResult:
        """Quarantine the book check's last findings; what this file's records gave (rows and book matches)."""
        self.drain_book_issues()
        book = self.book
        matches, mismatches = (book.matches, book.mismatches) if book is not None else (0, 0)
        return SideResult(
            parsed=dict(self.parsed),
            book_matches=matches - self._book0[0],
            book_mismatches=mismatches - self._book0[1],
            stats=self.stats,
        )


@dataclass
class SideResult:
    """What a side did for one file: records by label, rows stored and skipped per table (a sidecar's own
    writer), quarantine rows by reason, book matches, and the ParseStats of the lines it decoded."""

    parsed: dict[str, int] = field(default_factory=dict)
    inserted: dict[str, int] = field(default_factory=dict)
    duplicates: dict[str, int] = field(default_factory=dict)
    quarantined: dict[str, int] = field(default_factory=dict)
    book_matches: int = 0
    book_mismatches: int = 0
    spilled_rows: int = 0
    stats: ParseStats | None = None


class LocalSide:
    """:class:`SideRows` in the importing process, into its writer (counts come from that writer)."""

    def __init__(self, book: BookCheck | None) -> None:
        self.book = book

    def start_file(self, job: _FileImport, options: ImportOptions) -> None:
        self._rows = SideRows(job.iid, job.writer, self.book, job.quarantine, options.high_water_rows)

    def process(self, recs: list[tuple]) -> None:
        self._rows.process(recs)

    def finish_file(self) -> SideResult:
        return self._rows.finish()

    def close(self) -> None:
        pass


def _import_writer(options: ImportOptions, connect: Callable[[], Any] | None = None) -> BatchedWriter:
    return BatchedWriter(
        SPECS,
        flush_interval_s=options.flush_interval_s,
        max_batch_rows=options.batch_rows,
        max_buffer_rows=max(options.high_water_rows * 2, options.batch_rows),
        spill_dir=options.spill_dir or _default_spill_dir(),
        connect=connect,
    )


class SidecarSide:
    """:class:`SideRows` in a forked process with its own database connection: the import's second core.

    One process serves every file of a run (the book check's state carries across files); each file gets its
    own writer there, and :meth:`finish_file` waits until that writer has stored everything.
    """

    def __init__(self, options: ImportOptions) -> None:
        conninfo = connection.get_connection_params()  # Django's own, for a connection it does not manage
        self._sidecar = Sidecar(_side_server(options, conninfo))
        self._keeping_up = True
        self.failed = False

    def start_file(self, job: _FileImport, options: ImportOptions) -> None:
        self._sidecar.send(("file", job.iid, job.file_id, job.sha, job.path))

    def process(self, recs: list[tuple]) -> None:
        self._sidecar.send(("recs", recs))
        self._keeping_up = self._sidecar.backlog <= _SIDECAR_SPARE

    def wants_raw(self) -> bool:
        """Whether to hand it depth lines undecoded (it decodes them): while it keeps up, so the two processes
        share the parsing whatever the mix of messages and the load on the machine."""
        return self._keeping_up

    def finish_file(self) -> SideResult:
        try:
            return self._sidecar.request(("end",))
        except SidecarError:
            self.failed = True
            raise

    def close(self) -> None:
        self._sidecar.close()


def _side_server(options: ImportOptions, conninfo: dict[str, Any]) -> Callable:
    def connect() -> Any:
        import psycopg

        return psycopg.connect(**conninfo, autocommit=True)

    def serve(recv: Callable[[], Any], reply: Callable[[Any], None]) -> None:
        book = BookCheck(options.book_check_window) if options.book_check else None
        writer: BatchedWriter | None = None
        rows: SideRows | None = None
        quarantine: _Quarantine | None = None
        try:
            while (msg := recv()) is not None:
                if msg[0] == "recs":
                    rows.process(msg[1])
                elif msg[0] == "file":
                    _op, iid, file_id, sha, path = msg
                    writer = _import_writer(options, connect)
                    writer.start()
                    quarantine = _Quarantine(writer, file_id, sha, path)
                    rows = SideRows(iid, writer, book, quarantine, options.high_water_rows)
                elif msg[0] == "end":
                    result = rows.finish()
                    writer.close(timeout_s=3600.0)
                    stats, writer = writer.stats, None
                    # this process's own writer stored the rows: the parent adds its counts to its own
                    result.inserted = {t: n for t, n in stats.inserted.items() if t != QUARANTINE}
                    result.duplicates = {t: n for t, n in stats.duplicates.items() if t != QUARANTINE}
                    result.quarantined = dict(quarantine.counts)
                    result.spilled_rows = stats.rows_spilled - stats.rows_replayed
                    reply(result)
        finally:
            if writer is not None:
                # the parent went away or this failed mid-file: store (or spill) what arrived, as the parent does
                writer.close(timeout_s=3600.0)

    return serve


class _FileImport:
    """Streams one file into the writer; the per-event methods are the hot path."""

    def __init__(self, inst_id: int, path: Path, sha: str, file_id: int, writer: BatchedWriter) -> None:
        self.iid = inst_id
        self.path = str(path)
        self.sha = sha
        self.file_id = file_id
        self.writer = writer
        self.parsed: Counter = Counter()
        self.quarantine = _Quarantine(writer, file_id, sha, self.path)  # quarantine(line_no, reason, detail, raw)
        self.quarantined = self.quarantine.counts
        self.funding = FundingClock()  # funding settlements from mark-price updates

    def run(self, items: Iterator[Any], stats: ParseStats, options: ImportOptions, tick: Callable[[], None]) -> str:
        add = self.writer.add
        iid = self.iid
        parsed = self.parsed
        n = 0
        try:
            for item in items:
                cls = type(item)
                if cls is Trade and not item.market:
                    pass  # counted by the parser (ParseStats.non_market_trades); not a market trade: not stored
                elif cls is Trade:
                    t = item
                    trade = (t.price, t.size, int(t.aggressor), t.trade_id)
                    add(TRADES, trade_row(iid, t.ts_local_ns, t.ts_exch_ns, *trade))
                    parsed["trades"] += 1
                elif cls is BestBidAsk:
                    q = item
                    quote = (q.bid_px, q.bid_size, q.ask_px, q.ask_size, q.update_id)
                    add(QUOTES, quote_row(iid, q.ts_local_ns, q.ts_exch_ns, *quote))
                    parsed["quotes"] += 1
                elif cls is DepthUpdate:
                    add(DEPTH, depth_row(iid, item, _sides(item.bids, item.asks)))
                    parsed["depth_updates"] += 1
                elif cls is DepthSnapshot:
                    add(SNAPSHOTS, snapshot_row(iid, item, _sides(item.bids, item.asks)))
                    parsed["depth_snapshots"] += 1
                elif cls is Quarantined:
                    self.quarantine(item.line_no, item.reason, item.detail, item.raw)
                elif cls is Funding:
                    f = item
                    add(
                        FUNDING,
                        (
                            iid,
                            event_time(f.ts_exch_ns, f.ts_local_ns),
                            f.ts_exch_ns,
                            f.ts_local_ns,
                            f.rate,
                            f.interval_s,
                        ),
                    )
                    parsed["funding"] += 1
                elif cls is MarkPrice:
                    m = item
                    paid = self.funding.on_mark(m.ts_exch_ns, m.ts_local_ns, m.funding_rate, m.next_funding_ns)
                    if paid is not None:
                        add(FUNDING, funding_row(iid, paid.ts_exch_ns, paid.ts_local_ns, paid.rate, m.interval_s))
                        parsed["funding"] += 1
                n += 1
                if n % 2000 == 0:
                    tick()
                    while self.writer.buffered_rows >= options.high_water_rows:
                        time.sleep(0.005)
        except Exception as exc:  # noqa: BLE001 - a read error ends this file; what was read is kept
            detail = f"{type(exc).__name__}: {exc}"
            self.quarantine(stats.lines + 1, FILE_ERROR, detail, "")
            logger.warning("import %s stopped at line %d: %s", self.path, stats.lines + 1, detail)
            return detail
        return ""

    def run_binance_raw(
        self,
        recs: Iterator[Any],
        stats: ParseStats,
        options: ImportOptions,
        tick: Callable[[], None],
        side: LocalSide | SidecarSide,
    ) -> str:
        """:meth:`run` for :func:`~apps.marketdata.parsers.binance_raw.records` tuples (no event objects): the
        same rows, checks and counts, several times faster. Trade and quote rows go to the writer in blocks of
        ``_BLOCK`` records; depth diffs, snapshots, ``RAW`` depth lines and (for the book check) quotes go, in
        file order, to ``side`` (a :class:`LocalSide`, or a :class:`SidecarSide` process)."""
        iid = self.iid
        trades: list[tuple] = []
        quotes: list[tuple] = []
        block: list[tuple] = []
        book_quotes = options.book_check
        add_many, parsed, high_water = self.writer.add_many, self.parsed, options.high_water_rows

        def hand_over() -> None:
            for table, label, rows in ((TRADES, "trades", trades), (QUOTES, "quotes", quotes)):
                if rows:
                    add_many(table, rows.copy())
                    parsed[label] += len(rows)
                    rows.clear()
            if block:
                side.process(block.copy())
                block.clear()

        n = 0
        try:
            for rec in recs:
                if type(rec) is tuple:
                    kind = rec[0]
                    if kind == _QUOTE:
                        quotes.append(quote_row(iid, *rec[2:]))
                        if book_quotes:
                            block.append(rec)
                    elif kind == _TRADE:
                        trades.append(trade_row(iid, *rec[2:]))
                    elif kind == _OTHER_TRADE:
                        pass  # counted by the parser (ParseStats.non_market_trades); not stored
                    elif kind == _MARK:
                        paid = self.funding.on_mark(rec[3], rec[2], rec[5], rec[6])
                        if paid is not None:
                            row = funding_row(iid, paid.ts_exch_ns, paid.ts_local_ns, paid.rate, 8 * 3600.0)
                            self.writer.add(FUNDING, row)
                            parsed["funding"] += 1
                    else:
                        block.append(rec)
                else:
                    self.quarantine(rec.line_no, rec.reason, rec.detail, rec.raw)
                n += 1
                if n % _BLOCK == 0:
                    hand_over()
                    tick()
                    while self.writer.buffered_rows >= high_water:
                        time.sleep(0.005)
        except Exception as exc:  # noqa: BLE001 - a read error ends this file; what was read is kept
            hand_over()
            detail = f"{type(exc).__name__}: {exc}"
            self.quarantine(stats.lines + 1, FILE_ERROR, detail, "")
            logger.warning("import %s stopped at line %d: %s", self.path, stats.lines + 1, detail)
            return detail
        finally:
            hand_over()
        return ""


def _progress_printer(path: Path, stats: ParseStats) -> Callable[[], None]:
    if not sys.stderr.isatty():
        return lambda: None
    t0 = time.monotonic()
    last = [0.0]

    def tick() -> None:
        now = time.monotonic()
        if now - last[0] >= 0.5:
            last[0] = now
            rate = stats.lines / max(now - t0, 1e-9)
            sys.stderr.write(f"\r{path.name}: {stats.lines:,} lines, {rate:,.0f} lines/s ")
            sys.stderr.flush()

    return tick


def _reconnect_if_broken() -> None:
    """Drop this thread's Django connection when the database went away meanwhile (a restart during a long
    import, which the writers ride out): the next query then reconnects instead of failing the bookkeeping."""
    if connection.connection is not None and not connection.in_atomic_block and not connection.is_usable():
        connection.close()


def import_one_file(
    run: ImportRun,
    path: Path,
    *,
    options: ImportOptions,
    side: LocalSide | SidecarSide | None,
    progress: Callable[[str], None] | None = None,
) -> FileSummary:
    """Import one file. ``side`` takes a binance-raw file's quotes and depth (None for the other formats)."""
    sha = file_sha256(path)
    _reconnect_if_broken()
    fobj = ImportFile.objects.create(run=run, path=str(path), sha256=sha, size_bytes=path.stat().st_size, fmt=run.fmt)
    writer = _import_writer(options)
    stats = ParseStats()
    job = _FileImport(run.instrument_id, path, sha, fobj.pk, writer)
    t0 = time.perf_counter()
    writer.start()
    tick = _progress_printer(path, stats)
    side_result = SideResult()
    try:
        if run.fmt == binance_raw.FORMAT:
            assert side is not None
            stats.source = str(path)
            side.start_file(job, options)
            # a sidecar decodes the depth lines too (see records(defer_depth=...)): the heaviest part of the parse
            defer = side.wants_raw if isinstance(side, SidecarSide) else None
            recs = binance_raw.records(open_text_threaded(path), stats, defer_depth=defer)
            error = job.run_binance_raw(recs, stats, options, tick, side)
            try:
                side_result = side.finish_file()
                job.parsed.update(side_result.parsed)
                if side_result.stats is not None:
                    stats.merge(side_result.stats)
            except SidecarError as exc:
                # what the sidecar had not stored yet is not in the database: say so loudly
                lost = f"the depth rows of this file may be incomplete: {exc}"
                error = f"{error}; {lost}" if error else lost
                logger.error("import %s: %s", path, exc)
                job.quarantine(stats.lines + 1, FILE_ERROR, lost, "")
        else:
            error = job.run(parse_file(run.fmt, path, stats=stats), stats, options, tick)
    finally:
        writer.close(timeout_s=3600.0)
    duration = time.perf_counter() - t0
    if sys.stderr.isatty():
        sys.stderr.write("\n")
    labels = TABLE_LABELS
    inserted, duplicates = Counter(side_result.inserted), Counter(side_result.duplicates)
    inserted.update(writer.stats.inserted)
    duplicates.update(writer.stats.duplicates)
    inserted = {labels[t]: n for t, n in inserted.items() if t != QUARANTINE}
    duplicates = {labels[t]: n for t, n in duplicates.items() if t != QUARANTINE}
    quarantined = job.quarantined + Counter(side_result.quarantined)
    rows = sum(job.parsed.values()) + sum(quarantined.values())
    summary = FileSummary(
        path=str(path),
        sha256=sha,
        kind=stats.kind,
        lines=stats.lines,
        parsed=dict(job.parsed),
        inserted=inserted,
        duplicates=duplicates,
        quarantined=dict(quarantined),
        clock_offset_ms=stats.clock_offset_ms(),
        book_matches=side_result.book_matches,
        book_mismatches=side_result.book_mismatches,
        duration_s=duration,
        rows_per_s=rows / duration if duration > 0 else 0.0,
        spilled_rows=writer.stats.rows_spilled - writer.stats.rows_replayed + side_result.spilled_rows,
        error=error,
        non_market_trades=dict(stats.non_market_trades),
    )
    _reconnect_if_broken()
    ImportFile.objects.filter(pk=fobj.pk).update(
        kind=summary.kind,
        lines=summary.lines,
        parsed=summary.parsed,
        inserted=summary.inserted,
        duplicates=summary.duplicates,
        quarantined=summary.quarantined,
        ignored=dict(stats.ignored),
        clock_offset_ms=summary.clock_offset_ms,
        book_matches=summary.book_matches,
        book_mismatches=summary.book_mismatches,
        duration_s=summary.duration_s,
        rows_per_s=summary.rows_per_s,
    )
    if progress is not None:
        progress(f"{path}: {summary.lines:,} lines, {rows:,} rows in {duration:.2f} s")
    return summary


_GC_GEN0 = 50_000  # allocations between young collections while an import runs (CPython's default is 700)
_gc_lock = threading.Lock()
_gc_state: dict[str, Any] = {"imports": 0, "saved": None}


@contextmanager
def _import_gc() -> Iterator[None]:
    """An import allocates millions of tuples that die young or sit in the writer's buffer for a moment: collect
    the young generation less often, and never walk the objects that existed before the import (``gc.freeze``;
    they are not its garbage; a sidecar forked meanwhile inherits this, so its collector does not touch, hence
    copy, the parent's pages).
    Restored when the last concurrent import ends."""
    with _gc_lock:
        _gc_state["imports"] += 1
        if _gc_state["imports"] == 1:
            _gc_state["saved"] = gc.get_threshold()
            gc.freeze()
            gc.set_threshold(_GC_GEN0, *_gc_state["saved"][1:])
    try:
        yield
    finally:
        with _gc_lock:
            _gc_state["imports"] -= 1
            if _gc_state["imports"] == 0:
                gc.set_threshold(*_gc_state["saved"])
                gc.unfreeze()


def _make_side(fmt: str, options: ImportOptions) -> LocalSide | SidecarSide | None:
    if fmt != binance_raw.FORMAT:
        return None
    if options.sidecar and sidecar.available():
        try:
            return SidecarSide(options)
        except OSError as exc:  # no process or pipe to spare: the same import in this process
            logger.warning("import: no sidecar process (%s); importing in one process", exc)
    return LocalSide(BookCheck(options.book_check_window) if options.book_check else None)


def run_import(
    paths: list[Path],
    *,
    fmt: str,
    instrument: Instrument,
    options: ImportOptions | None = None,
    progress: Callable[[str], None] | None = None,
) -> ImportSummary:
    """Import ``paths`` in order for ``instrument``; returns the summary (also stored as ImportRun/ImportFile)."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; known: {sorted(FORMATS)}")
    options = (options or ImportOptions()).validate()
    mode = db_mode()
    run = ImportRun.objects.create(fmt=fmt, instrument=instrument, db_mode=mode)
    summary = ImportSummary(run_id=run.pk, db_mode=mode, fmt=fmt, instrument=str(instrument))
    side = None
    try:
        with _import_gc():
            side = _make_side(fmt, options)  # forked here, a sidecar inherits the import's GC settings
            for path in paths:
                if isinstance(side, SidecarSide) and side.failed:
                    # the rest of the run in this process (the book check starts again from the next snapshot)
                    side.close()
                    side = _make_side(fmt, replace(options, sidecar=False))
                summary.files.append(import_one_file(run, path, options=options, side=side, progress=progress))
    except BaseException as exc:
        _reconnect_if_broken()
        ImportRun.objects.filter(pk=run.pk).update(
            status=ImportRun.Status.FAILED, error=f"{type(exc).__name__}: {exc}", finished_at=timezone.now()
        )
        raise
    finally:
        if side is not None:
            side.close()
    _reconnect_if_broken()
    ImportRun.objects.filter(pk=run.pk).update(status=ImportRun.Status.DONE, finished_at=timezone.now())
    return summary
