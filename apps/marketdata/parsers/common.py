"""Shared pieces of the market-data parsers: file opening, quarantine records, per-file statistics.

A parser is a generator over ``(line_no, text)`` pairs that yields engine events
(:mod:`apps.engine.market.events`) or :class:`Quarantined` records, in file order and in constant memory.
Nothing here imports Django; the lead's importers wire these generators to tables.

Conventions shared by every format
----------------------------------
* ``ts_exch_ns`` / ``ts_local_ns`` are int nanoseconds since the Unix epoch.
* ``ts_exch_ns == 0`` means the venue sent no exchange time for that message (Binance spot bookTicker,
  Binance spot REST snapshot).
* Formats without a receive clock (LOBSTER, Binance public CSVs) set ``ts_local_ns = ts_exch_ns``;
  their :class:`ParseStats` then reports no clock offset (``has_local_clock = False``).
"""

from __future__ import annotations

import codecs
import contextlib
import gzip
import io
import math
import queue
import random
import threading
import zipfile
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from apps.engine.market.events import BestBidAsk, DepthSnapshot, DepthUpdate, MarkPrice, Trade

Lines = Iterable[tuple[int, str]]

# Quarantine reasons (strings so they store and group easily).
UNPARSABLE = "unparsable"  # not the expected syntax: bad JSON, wrong column count, non-numeric field
UNKNOWN_MESSAGE = "unknown_message"  # well-formed but not a message this format knows
BAD_PRICE = "bad_price"  # price <= 0, NaN or infinite
BAD_SIZE = "bad_size"  # size negative, NaN or infinite (0 is bad for trades and snapshots, a delete in diffs)
BAD_SIDE = "bad_side"  # aggressor side missing or not recognised
CROSSED_BOOK = "crossed_book"  # best bid >= best ask (locked counts: the engine cannot represent it)
EMPTY_BOOK = "empty_book"  # a top-of-book row with a side missing
DUPLICATE_TRADE_ID = "duplicate_trade_id"  # trade id already seen among the recent ids
TS_OUT_OF_ORDER = "ts_out_of_order"  # the format's ordering clock went backwards
MISSING_ROW = "missing_row"  # a paired file (LOBSTER orderbook) has no row for this message

REASONS = (
    UNPARSABLE,
    UNKNOWN_MESSAGE,
    BAD_PRICE,
    BAD_SIZE,
    BAD_SIDE,
    CROSSED_BOOK,
    EMPTY_BOOK,
    DUPLICATE_TRADE_ID,
    TS_OUT_OF_ORDER,
    MISSING_ROW,
)


@dataclass(frozen=True, slots=True)
class Quarantined:
    """An input record the parser refused, kept for review instead of silently dropped.

    ``line_no`` is 1-based within the file (within the member for zip files); ``reason`` is one of
    :data:`REASONS`; ``raw`` is the offending text (truncated to ``RAW_MAX_CHARS``); ``detail`` says what
    exactly was wrong.
    """

    line_no: int
    reason: str
    raw: str
    detail: str = ""


RAW_MAX_CHARS = 2000


class BadRecordError(Exception):
    """Raised inside a parser for a record to quarantine; carries the reason code."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def quarantine(line_no: int, err: BadRecordError, raw: str) -> Quarantined:
    return Quarantined(line_no, err.reason, raw[:RAW_MAX_CHARS].rstrip("\r\n"), err.detail)


# --- file opening -------------------------------------------------------------------------------


def _lines_of(stream: io.TextIOBase) -> Iterator[tuple[int, str]]:
    for i, text in enumerate(stream, start=1):
        yield i, text.rstrip("\r\n")


def zip_members(path: str | Path) -> list[str]:
    """Names of the file members of a zip archive, in archive order (directories left out)."""
    with zipfile.ZipFile(path) as zf:
        return [info.filename for info in zf.infolist() if not info.is_dir()]


def open_text(path: str | Path, member: str | None = None, encoding: str = "utf-8") -> Iterator[tuple[int, str]]:
    """Yield ``(line_no, text)`` for a plain, ``.gz`` or ``.zip`` text file, streaming.

    Line endings are stripped; ``line_no`` starts at 1. A ``.zip`` yields every member in archive
    order (line numbers restart at 1 for each member) unless ``member`` names one. Compression is
    detected from the magic bytes, not the suffix, so a mislabelled file still opens.
    """
    p = Path(path)
    with open(p, "rb") as fh:
        magic = fh.read(4)
    if magic[:2] == b"\x1f\x8b":
        with gzip.open(p, "rt", encoding=encoding, newline="") as fh:
            yield from _lines_of(fh)
    elif magic == b"PK\x03\x04":
        with zipfile.ZipFile(p) as zf:
            names = [member] if member is not None else [i.filename for i in zf.infolist() if not i.is_dir()]
            for name in names:
                with zf.open(name) as raw:
                    yield from _lines_of(io.TextIOWrapper(raw, encoding=encoding, newline=""))
    else:
        with open(p, encoding=encoding, newline="") as fh:
            yield from _lines_of(fh)


def _read_blocks(
    path: Path, gz: bool, encoding: str, block_bytes: int, out: queue.Queue, stop: threading.Event
) -> None:
    """Reader thread of :func:`open_text_threaded`: decoded text blocks that end at a line end, then None (or the
    exception that stopped the read, after every complete line before it)."""
    decoder = codecs.getincrementaldecoder(encoding)()
    pieces: list[bytes] = []
    size = 0

    def emit(final: bool) -> None:
        nonlocal pieces, size
        data = b"".join(pieces)
        cut = len(data) if final else data.rfind(b"\n") + 1
        if cut:
            out.put(decoder.decode(data[:cut], final=final))
        pieces, size = ([data[cut:]] if cut < len(data) else []), len(data) - cut

    try:
        with gzip.open(path, "rb") if gz else open(path, "rb") as fh:
            while not stop.is_set():
                piece = fh.read(1 << 16)  # zlib and crc32 release the GIL: this overlaps with the parsing
                if not piece:
                    emit(final=True)
                    break
                pieces.append(piece)
                size += len(piece)
                if size >= block_bytes:
                    emit(final=False)
        out.put(None)
    except BaseException as exc:  # noqa: BLE001 - handed to the consumer, which raises it where it reads
        with contextlib.suppress(BaseException):  # the first error is the one to report
            emit(final=False)
        out.put(exc)


def open_text_threaded(
    path: str | Path, encoding: str = "utf-8", block_bytes: int = 1 << 20
) -> Iterator[tuple[int, str]]:
    """:func:`open_text` for a plain or ``.gz`` file, with the reading and decompression in a thread.

    Same lines, line numbers and errors (a truncated gzip, bytes that are not ``encoding``: raised at the point
    of the file where they are) as :func:`open_text`; a ``.zip`` goes to :func:`open_text`. Memory stays bounded
    (at most four blocks of ``block_bytes`` wait in the queue).
    """
    p = Path(path)
    with open(p, "rb") as fh:
        magic = fh.read(4)
    if magic == b"PK\x03\x04":
        yield from open_text(p, encoding=encoding)
        return
    blocks: queue.Queue = queue.Queue(maxsize=4)
    stop = threading.Event()
    reader = threading.Thread(
        target=_read_blocks,
        args=(p, magic[:2] == b"\x1f\x8b", encoding, block_bytes, blocks, stop),
        name="marketdata-reader",
        daemon=True,
    )
    reader.start()
    line_no = 0
    pending = ""  # a block ending in a lone "\r" continues the line on the next block only for "\r\n"
    try:
        while True:
            block = blocks.get()
            if block is None:
                break
            if isinstance(block, BaseException):
                raise block
            if pending:
                block, pending = pending + block, ""
            if "\r" in block:
                # universal line ends, like the text reader of open_text (newline=""): "\r", "\n" and "\r\n"
                lines = io.StringIO(block, newline="").readlines()
                if lines and lines[-1].endswith("\r"):
                    pending = lines.pop()
                lines = [ln.rstrip("\r\n") for ln in lines]
            else:
                lines = block.split("\n")
                if lines[-1]:
                    pending = lines[-1]  # only at the end of the file: no final newline
                lines.pop()
            for text in lines:
                line_no += 1
                yield line_no, text
        if pending:
            line_no += 1
            yield line_no, pending.rstrip("\r\n")
    finally:
        stop.set()
        while reader.is_alive():  # let a blocked put() finish, then the thread sees ``stop``
            with contextlib.suppress(queue.Empty):
                blocks.get(timeout=0.05)


# --- value helpers ------------------------------------------------------------------------------


def epoch_to_ns(value: int) -> int:
    """Convert an integer epoch timestamp in s, ms, µs or ns to ns, choosing the unit by magnitude.

    Thresholds (valid for dates between about 1973 and 5138): ``>= 1e17`` ns, ``>= 1e14`` µs,
    ``>= 1e11`` ms, else seconds.
    """
    v = abs(value)
    if v >= 10**17:
        return value
    if v >= 10**14:
        return value * 1_000
    if v >= 10**11:
        return value * 1_000_000
    return value * 1_000_000_000


def parse_int(text: str, what: str) -> int:
    try:
        return int(text)
    except (TypeError, ValueError):
        raise BadRecordError(UNPARSABLE, f"{what} is not an integer: {text!r}") from None


def parse_float(text: object, what: str) -> float:
    try:
        return float(text)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise BadRecordError(UNPARSABLE, f"{what} is not a number: {text!r}") from None


def check_price(px: float, what: str = "price") -> float:
    if not (math.isfinite(px) and px > 0):
        raise BadRecordError(BAD_PRICE, f"{what} must be finite and > 0, got {px!r}")
    return px


def check_size(sz: float, what: str = "size", *, allow_zero: bool) -> float:
    if not math.isfinite(sz) or sz < 0 or (sz == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise BadRecordError(BAD_SIZE, f"{what} must be finite and {bound}, got {sz!r}")
    return sz


def parse_levels(levels: object, what: str, *, allow_zero: bool) -> tuple[tuple[float, float], ...]:
    """``[[px, size], ...]`` (strings or numbers) to a tuple of float pairs, validated.

    A fast path converts and checks the whole list with comprehensions; only when that fails does the
    slow path walk the levels again to name the bad one.
    """
    try:
        out = tuple([(float(px), float(sz)) for px, sz in levels])  # type: ignore[union-attr]
    except (TypeError, ValueError):
        return _parse_levels_slow(levels, what, allow_zero=allow_zero)
    if allow_zero:
        ok = all(0 < px < _INF and 0 <= sz < _INF for px, sz in out)
    else:
        ok = all(0 < px < _INF and 0 < sz < _INF for px, sz in out)
    return out if ok else _parse_levels_slow(levels, what, allow_zero=allow_zero)


_INF = math.inf


def _parse_levels_slow(levels: object, what: str, *, allow_zero: bool) -> tuple[tuple[float, float], ...]:
    if not isinstance(levels, list):
        raise BadRecordError(UNPARSABLE, f"{what} is not a list")
    out = []
    for lvl in levels:
        if not isinstance(lvl, (list, tuple)) or len(lvl) != 2:
            raise BadRecordError(UNPARSABLE, f"{what} level is not a [price, size] pair: {lvl!r}")
        px = check_price(parse_float(lvl[0], f"{what} price"), f"{what} price")
        sz = check_size(parse_float(lvl[1], f"{what} size"), f"{what} size", allow_zero=allow_zero)
        out.append((px, sz))
    return tuple(out)


def check_not_crossed(bid_px: float, ask_px: float) -> None:
    if bid_px >= ask_px:
        raise BadRecordError(CROSSED_BOOK, f"bid {bid_px} >= ask {ask_px}")


def sorted_snapshot_sides(
    bids: Iterable[tuple[float, float]], asks: Iterable[tuple[float, float]]
) -> tuple[tuple[tuple[float, float], ...], tuple[tuple[float, float], ...]]:
    """Order snapshot sides best-first and reject a crossed snapshot."""
    b = tuple(sorted(bids, key=lambda lv: -lv[0]))
    a = tuple(sorted(asks, key=lambda lv: lv[0]))
    if b and a:
        check_not_crossed(b[0][0], a[0][0])
    return b, a


class RecentIds:
    """Membership test over the last ``capacity`` ids seen (constant memory duplicate detection).

    Duplicates further apart than ``capacity`` ids are not detected; exchanges resend recent ids
    (reconnect replays, overlapping recordings), which is what this is for.
    """

    def __init__(self, capacity: int = 100_000) -> None:
        if capacity <= 0:
            raise ValueError(f"capacity must be > 0, got {capacity!r}")
        self.capacity = capacity
        self._order: deque[str] = deque()
        self._seen: set[str] = set()

    def seen_before(self, key: str) -> bool:
        """True when ``key`` is among the recent ids; otherwise remember it and return False."""
        if key in self._seen:
            return True
        self._seen.add(key)
        self._order.append(key)
        if len(self._order) > self.capacity:
            self._seen.discard(self._order.popleft())
        return False


class MonotonicClock:
    """Checks that a clock never goes backwards (equal values are fine)."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.last: int | None = None

    def check(self, ts_ns: int) -> None:
        if self.last is not None and ts_ns < self.last:
            raise BadRecordError(TS_OUT_OF_ORDER, f"{self.what} went back {self.last - ts_ns} ns")

    def advance(self, ts_ns: int) -> None:
        self.last = ts_ns

    def step(self, ts_ns: int) -> None:
        """:meth:`check`, then :meth:`advance`: for a receive clock, which is the recorder's whatever the line
        holds (a line quarantined for its content still moves it)."""
        self.check(ts_ns)
        self.last = ts_ns


# --- statistics ---------------------------------------------------------------------------------


class _Reservoir:
    """Uniform sample of at most ``capacity`` values (exact when fewer were offered)."""

    def __init__(self, capacity: int, seed: int) -> None:
        self.capacity = capacity
        self.n = 0
        self.values: list[float] = []
        self._rng = random.Random(seed)

    def add(self, x: float) -> None:
        self.n += 1
        if self.n <= self.capacity:
            self.values.append(x)
        else:
            j = self._rng.randrange(self.n)
            if j < self.capacity:
                self.values[j] = x

    def add_many(self, xs: list[float]) -> None:
        """:meth:`add` for each of ``xs`` in turn (the same draws, so the same sample), without a call per value."""
        values, cap, n = self.values, self.capacity, self.n
        if n < cap:
            take = xs[: cap - n]
            values.extend(take)
            n += len(take)
            xs = xs[len(take) :]
        randrange = self._rng.randrange
        for x in xs:
            n += 1
            j = randrange(n)
            if j < cap:
                values[j] = x
        self.n = n

    def pool(self, other: _Reservoir) -> None:
        """Take in ``other``'s sample (of other values); past the capacity the pool is thinned uniformly."""
        self.values.extend(other.values)
        self.n += other.n
        if len(self.values) > self.capacity:
            self.values = self._rng.sample(self.values, self.capacity)

    def median(self) -> float | None:
        if not self.values:
            return None
        s = sorted(self.values)
        m = len(s) // 2
        return s[m] if len(s) % 2 else 0.5 * (s[m - 1] + s[m])


@dataclass
class ParseStats:
    """Per-file summary that a parser fills as it streams.

    Attributes
    ----------
    events : Counter
        Events yielded, by class name (``Trade``, ``BestBidAsk``, ``DepthUpdate``, ``DepthSnapshot``).
    quarantined : Counter
        Quarantined records by reason (see :data:`REASONS`).
    ignored : Counter
        Well-formed control messages deliberately skipped (subscription acks, LOBSTER non-trade
        messages, halts), by kind.
    non_market_trades : Counter
        Trades yielded with ``market=False`` (insurance fund, ADL, ...), by the venue's label; they are also
        counted in ``events["Trade"]``. Estimators, the fill model and the importer leave them out.
    kind : str
        Sub-kind detected inside the format (``trades``, ``quotes``, ``aggTrades``, ...), if any.
    lines : int
        Input lines (rows) read, headers included.
    has_local_clock : bool
        False for formats without a receive clock; then no offset is reported.

    The clock offset is ``ts_local_ns - ts_exch_ns`` per event, in ms: the receive latency plus the
    recorder's clock error (they cannot be separated from one file). Medians come from a uniform
    reservoir of ``offset_sample_size`` values per event type (exact up to that many events), so memory
    stays constant.
    """

    source: str = ""
    fmt: str = ""
    kind: str = ""
    lines: int = 0
    has_local_clock: bool = True
    events: Counter = field(default_factory=Counter)
    quarantined: Counter = field(default_factory=Counter)
    ignored: Counter = field(default_factory=Counter)
    non_market_trades: Counter = field(default_factory=Counter)
    first_ts_exch_ns: int | None = None
    last_ts_exch_ns: int | None = None
    offset_sample_size: int = 50_000
    _offsets: dict[str, _Reservoir] = field(default_factory=dict, repr=False)

    def add_event(self, ev: object) -> None:
        self.note(type(ev).__name__, ev.ts_exch_ns, ev.ts_local_ns)  # type: ignore[attr-defined]
        if getattr(ev, "market", True) is False:
            self.non_market_trades[ev.kind] += 1  # type: ignore[attr-defined]

    def note(self, kind: str, ts_exch: int, ts_local: int) -> None:
        """Record one event of class name ``kind`` from its two clocks (what :meth:`add_event` does, without
        needing the event object: the fast binance-raw path calls this)."""
        self.events[kind] += 1
        if ts_exch:
            first = self.first_ts_exch_ns
            if first is None or ts_exch < first:
                self.first_ts_exch_ns = ts_exch
            last = self.last_ts_exch_ns
            if last is None or ts_exch > last:
                self.last_ts_exch_ns = ts_exch
            if self.has_local_clock:
                self.reservoir(kind).add((ts_local - ts_exch) / 1e6)

    def reservoir(self, kind: str) -> _Reservoir:
        """The clock-offset sample of event class ``kind`` (created on first use)."""
        res = self._offsets.get(kind)
        if res is None:
            res = self._offsets[kind] = _Reservoir(self.offset_sample_size, seed=len(self._offsets))
        return res

    def merge(self, other: ParseStats) -> None:
        """Add what ``other`` counted over other lines of the same file (not its line count: the lines were
        counted where they were read). Clock-offset samples of one event type are pooled; past the sample size
        the pool is thinned uniformly, so the median stays an estimate from a uniform sample."""
        self.events.update(other.events)
        self.quarantined.update(other.quarantined)
        self.ignored.update(other.ignored)
        self.non_market_trades.update(other.non_market_trades)
        for attr, pick in (("first_ts_exch_ns", min), ("last_ts_exch_ns", max)):
            theirs = getattr(other, attr)
            if theirs is not None:
                mine = getattr(self, attr)
                setattr(self, attr, theirs if mine is None else pick(mine, theirs))
        for kind, theirs in other._offsets.items():
            self.reservoir(kind).pool(theirs)

    def add_quarantine(self, q: Quarantined) -> None:
        self.quarantined[q.reason] += 1

    def observe(self, item: object) -> None:
        if isinstance(item, Quarantined):
            self.add_quarantine(item)
        else:
            self.add_event(item)

    def clock_offset_ms(self, kind: str | None = None) -> float | None:
        """Median ``local − exchange`` in ms, for one event type or pooled over all; None if unknown."""
        if not self.has_local_clock:
            return None
        if kind is not None:
            res = self._offsets.get(kind)
            return res.median() if res else None
        pooled = _Reservoir(10**12, 0)
        for res in self._offsets.values():
            pooled.values.extend(res.values)
        return pooled.median()

    @property
    def n_events(self) -> int:
        return sum(self.events.values())

    @property
    def n_quarantined(self) -> int:
        return sum(self.quarantined.values())

    def summary(self) -> dict[str, object]:
        """A JSON-friendly dict of everything above."""
        return {
            "source": self.source,
            "format": self.fmt,
            "kind": self.kind,
            "lines": self.lines,
            "events": dict(self.events),
            "quarantined": dict(self.quarantined),
            "ignored": dict(self.ignored),
            "non_market_trades": dict(self.non_market_trades),
            "first_ts_exch_ns": self.first_ts_exch_ns,
            "last_ts_exch_ns": self.last_ts_exch_ns,
            "clock_offset_ms": self.clock_offset_ms(),
            "clock_offset_ms_by_type": {k: r.median() for k, r in self._offsets.items()}
            if self.has_local_clock
            else {},
        }


def counting(lines: Lines, stats: ParseStats | None) -> Iterator[tuple[int, str]]:
    """Pass lines through, counting them into ``stats``."""
    if stats is None:
        yield from lines
        return
    for item in lines:
        stats.lines += 1
        yield item


def observed(items: Iterator[object], stats: ParseStats | None) -> Iterator[object]:
    """Pass parser output through, recording each item into ``stats``."""
    if stats is None:
        yield from items
        return
    for item in items:
        stats.observe(item)
        yield item


MarketItem = Trade | BestBidAsk | DepthUpdate | DepthSnapshot | MarkPrice | Quarantined
ParserFn = Callable[..., Iterator[MarketItem]]
