"""Backtests as a service: recorded data → the engine loop (strategy + paper venue) → a stored session.

The data is either recorded files (``files`` + a parser ``fmt``) or a :class:`StoredRange`: one instrument's market
data already in the tick tables between two local times, read back by
:func:`apps.marketdata.selectors.iter_events` (format :data:`STORED`). A run records where its data came from in
``BacktestRun.data_format``/``data_files``: the files' paths, or ``"stored"`` and one object
``{"venue", "symbol", "start_ns", "end_ns", "start", "end"}`` with the range resolved at creation time.

A backtest is stored like any other session: a :class:`TradingSession` with ``mode=backtest`` whose decisions,
orders, order events and fills are written through the quoting loop's own recording path
(:class:`~apps.trading.recording.Recorder` on a :func:`~apps.trading.recording.make_writer` writer), plus a
P&L series (:class:`PnlPoint`) and a :class:`BacktestRun` row with the parameters and the summary.

Parameters (one JSON object; every section optional except ``venue.tick_size``/``venue.lot_size``, which a stored
range takes from its Instrument when they are not given)::

    {"strategy": {...StrategyParams...},        # the GLFT core
     "fixed": {...FixedSpreadParams...},        # the fixed-spread baseline
     "as": {...ASParams...},                    # Avellaneda–Stoikov; defaults to the keys it shares with "strategy"
     "venue": {...PaperVenueConfig...},         # tick_size and lot_size required
     "backtest": {"markout_s": 1.0, "sample_interval_s": 1.0, "snapshot_interval_s": 1.0,
                  "max_events": 50000},             # optional: replay only the first N market events
     "instrument": {"venue": "binance-usdm", "symbol": "BTCUSDT", "kind": "perp"},
     "risk": {...}}                             # the live session's rule overrides (apps.engine.risk.session)

Every backtest runs the session's risk rules (their defaults, with ``risk`` overrides) in the same driver as the
live loop: a rule that halts or reduces a live session halts or reduces the backtest at the same instant, and
the run's summary lists the trips (``risk_events``) when there were any.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from django.db import transaction
from django.utils import timezone

from apps.engine.core import StrategyCore, StrategyParams
from apps.engine.execution.paper import PaperVenue, PaperVenueConfig
from apps.engine.risk.session import SessionRisk, build_risk_engine
from apps.engine.simulation.backtest import BacktestConfig, BacktestResult, EngineLoop, merge_by_local_time
from apps.engine.simulation.baselines import ASParams, AvellanedaStoikovQuoter, FixedSpreadParams, FixedSpreadQuoter
from apps.marketdata.identify import identify
from apps.marketdata.models import (
    DepthSnapshotRecord,
    DepthUpdateRecord,
    FundingRate,
    Instrument,
    QuoteTick,
    TradeTick,
)
from apps.marketdata.parsers import FORMATS, ParseStats, Quarantined, parse_file
from apps.marketdata.selectors import iter_events, stored_range_ns
from apps.trading.models import BacktestRun, PnlPoint, SweepRun, TradingSession
from apps.trading.ports import session_control
from apps.trading.recording import Recorder, RecorderSink, make_writer, ns_to_dt

STRATEGIES = ("glft", "fixed", "as")
SECTIONS = ("strategy", "fixed", "as", "venue", "backtest", "instrument", "risk")
RECORDER_FLUSH_S = 0.5
STORED = "stored"  # data_format of a run over a stored range (not a parser format)
assert STORED not in FORMATS


@dataclass(frozen=True)
class BacktestParams:
    """The validated parameter object (see the module docstring for the JSON layout)."""

    glft: StrategyParams
    fixed: FixedSpreadParams
    avst: ASParams
    venue: PaperVenueConfig
    backtest: BacktestConfig
    instrument: dict[str, str]
    raw: dict[str, Any]
    risk: dict[str, Any] = field(default_factory=dict)
    max_events: int | None = None  # replay only the first N events of the data (a small slice from the browser)

    def session_risk(self, kind: str) -> SessionRisk:
        """The live session's rule set for a strategy of ``kind`` (its Q_max sets the position limit's default)."""
        max_inventory = {"glft": self.glft, "fixed": self.fixed, "as": self.avst}[kind].max_inventory
        engine, capital = build_risk_engine(self.risk, max_inventory)
        return SessionRisk(engine, capital, max_inventory)


def parse_params(params: dict[str, Any] | str) -> BacktestParams:
    """Validate a parameter object (or its JSON text); every error names the section and the field."""
    if isinstance(params, str):
        try:
            params = json.loads(params)
        except json.JSONDecodeError as exc:
            raise ValueError(f"params: not valid JSON ({exc})") from None
    if not isinstance(params, dict):
        raise ValueError(f"params must be a JSON object, got {type(params).__name__}")
    unknown = sorted(set(params) - set(SECTIONS))
    if unknown:
        raise ValueError(f"params: unknown section(s) {unknown}; expected some of {list(SECTIONS)}")
    for name in SECTIONS:
        if not isinstance(params.get(name, {}), dict):
            raise ValueError(f"params.{name} must be an object, got {type(params[name]).__name__}")
    venue = dict(params.get("venue", {}))
    for name in ("tick_size", "lot_size"):
        if name not in venue:
            raise ValueError(f"params.venue.{name} is required (the instrument's {name.replace('_', ' ')})")
    glft_d = params.get("strategy", {})
    as_d = {**{k: v for k, v in glft_d.items() if k in {f.name for f in dataclasses.fields(ASParams)}}}
    as_d.update(params.get("as", {}))
    instrument = params.get("instrument", {})
    bad = sorted(set(instrument) - {"venue", "symbol", "kind"})
    if bad:
        raise ValueError(f"params.instrument: unknown field(s) {bad}; known: ['kind', 'symbol', 'venue']")
    risk = params.get("risk", {})
    glft = _section("strategy", lambda: StrategyParams.from_dict(glft_d))
    build_risk_engine(risk, glft.max_inventory)  # validates: every error names the rule and the field
    bt = dict(params.get("backtest", {}))
    max_events = bt.pop("max_events", None)
    if max_events is not None and (isinstance(max_events, bool) or not isinstance(max_events, int) or max_events < 1):
        raise ValueError(f"params.backtest.max_events must be a positive integer, got {max_events!r}")
    return BacktestParams(
        glft=glft,
        fixed=_section("fixed", lambda: FixedSpreadParams.from_dict(params.get("fixed", {}))),
        avst=_section("as", lambda: ASParams.from_dict(as_d)),
        venue=_section("venue", lambda: _venue(venue)),
        backtest=_section("backtest", lambda: _backtest(bt)),
        instrument={str(k): str(v) for k, v in instrument.items()},
        raw=params,
        risk=risk,
        max_events=max_events,
    )


def _section(name: str, build: Any) -> Any:
    try:
        return build()
    except (TypeError, ValueError) as exc:
        raise ValueError(f"params.{name}: {exc}") from None


def _venue(d: dict[str, Any]) -> PaperVenueConfig:
    known = {f.name for f in dataclasses.fields(PaperVenueConfig)}
    unknown = sorted(set(d) - known)
    if unknown:
        raise ValueError(f"unknown field(s) {unknown}; known: {sorted(known)}")
    cfg = PaperVenueConfig(**d)
    cfg.validate()
    return cfg


def _backtest(d: dict[str, Any]) -> BacktestConfig:
    known = {"markout_s", "sample_interval_s", "snapshot_interval_s"}
    unknown = sorted(set(d) - known)
    if unknown:
        raise ValueError(f"unknown field(s) {unknown}; known: {sorted(known)}")
    return BacktestConfig(**d, keep_decisions=False).validate()


def load_params(text_or_path: str) -> dict[str, Any]:
    """``--params`` value: inline JSON, or the path of a JSON file."""
    s = text_or_path.strip()
    if s.startswith("{"):
        data = json.loads(s)
    else:
        path = Path(s)
        if not path.is_file():
            raise ValueError(f"--params: {s!r} is neither a JSON object nor an existing file")
        data = json.loads(path.read_text())
    if not isinstance(data, dict):
        raise ValueError("--params must hold a JSON object")
    return data


# --- data -------------------------------------------------------------------------------------------


@dataclass
class LoadedData:
    events: list[Any]
    parse_s: float  # time to parse the files, or to read the stored range
    quarantined: int
    stats: list[ParseStats] = field(default_factory=list)
    stored: dict[str, Any] | None = None  # the StoredRange record when the data came from the database

    def info(self) -> dict[str, Any]:
        out: dict[str, Any] = {"events": len(self.events), "parse_s": self.parse_s, "quarantined": self.quarantined}
        if self.stored is not None:
            out["stored"] = self.stored
        else:
            out["files"] = [s.source for s in self.stats]
        return out


def load_events(files: Sequence[str | Path], fmt: str) -> LoadedData:
    """Parse every file (one stream each) and merge them by local time. Quarantined records are counted."""
    if not files:
        raise ValueError("no data files given")
    for f in files:
        if not Path(f).is_file():
            raise ValueError(f"data file not found: {f}")
    t0 = time.perf_counter()
    stats = [ParseStats() for _ in files]
    quarantined = 0
    streams = [list(parse_file(fmt, f, stats=st)) for f, st in zip(files, stats, strict=True)]
    clean: list[list[Any]] = []
    for s in streams:
        good = [e for e in s if not isinstance(e, Quarantined)]
        quarantined += len(s) - len(good)
        clean.append(good)
    events = clean[0] if len(clean) == 1 else list(merge_by_local_time(*clean))
    # a recorder's clock can step back a little; the loop feeds events in arrival (file) order either way
    return LoadedData(events, time.perf_counter() - t0, quarantined, stats)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def ns_to_iso(ts_ns: int) -> str:
    """Local-time ns → ISO-8601 UTC with nanoseconds (``2024-08-08T23:54:15.051234567Z``)."""
    secs, ns = divmod(ts_ns, 10**9)
    return (_EPOCH + timedelta(seconds=secs)).strftime("%Y-%m-%dT%H:%M:%S") + f".{ns:09d}Z"


def parse_time_ns(text: str, name: str = "time") -> int:
    """ISO-8601 timestamp → ns since the epoch; UTC when it carries no offset. Digits after the second beyond
    microseconds are kept (``...:15.051234567``). ``name`` labels the error."""
    s = text.strip()
    frac_ns = 0
    # datetime.fromisoformat stops at microseconds: split a longer fraction off and add it back exactly
    head, dot, rest = s.partition(".")
    if dot:
        digits = len(rest) - len(rest.lstrip("0123456789"))
        frac, tail = rest[:digits], rest[digits:]
        if not frac:
            raise ValueError(f"{name}: {text!r} is not an ISO-8601 timestamp (e.g. 2024-08-08T23:55:00Z)")
        frac_ns = int(frac[:9].ljust(9, "0"))
        s = head + tail
    try:
        dt = datetime.fromisoformat(s)
    except ValueError:
        raise ValueError(f"{name}: {text!r} is not an ISO-8601 timestamp (e.g. 2024-08-08T23:55:00Z)") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    whole_s = (dt - _EPOCH) // timedelta(seconds=1)
    return whole_s * 10**9 + frac_ns


@dataclass(frozen=True)
class StoredRange:
    """One instrument's stored market data with ``start_ns <= ts_local_ns < end_ns`` (local receive time, ns).

    ``None`` bounds mean the first stored event / just after the last one (of any kind, snapshots included).
    :meth:`resolve` fills them and checks the range.
    """

    venue: str
    symbol: str
    start_ns: int | None = None
    end_ns: int | None = None

    def __str__(self) -> str:
        a = "first" if self.start_ns is None else ns_to_iso(self.start_ns)
        b = "last" if self.end_ns is None else ns_to_iso(self.end_ns)
        return f"{self.venue}:{self.symbol} [{a}, {b})"

    def instrument(self) -> Instrument:
        inst = Instrument.objects.filter(venue=self.venue, symbol=self.symbol).first()
        if inst is None:
            known = [str(i) for i in Instrument.objects.order_by("venue", "symbol")[:20]]
            raise ValueError(
                f"unknown instrument {self.venue}:{self.symbol}: nothing stored under that venue and symbol "
                f"(stored instruments: {', '.join(known) or 'none'})"
            )
        return inst

    def resolve(self) -> tuple[Instrument, StoredRange]:
        """The instrument and the range with both bounds set; ValueError when the instrument is unknown, the
        range is empty or inverted, or no stored event falls inside it."""
        for name in ("start_ns", "end_ns"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int)):
                raise ValueError(f"stored range: {name} must be an integer (ns) or None, got {v!r}")
        inst = self.instrument()
        start, end = self.start_ns, self.end_ns
        if start is None or end is None:
            bounds = stored_range_ns(inst.pk)
            if bounds is None:
                raise ValueError(f"no market data stored for {inst} (import some with manage.py import_marketdata)")
            start = bounds[0] if start is None else start
            end = bounds[1] if end is None else end
        if start >= end:
            raise ValueError(f"stored range: start {ns_to_iso(start)} must be before end {ns_to_iso(end)}")
        resolved = StoredRange(self.venue, self.symbol, start, end)
        if not _has_stored_events(inst.pk, start, end):
            raise ValueError(f"no stored events for {resolved}")
        return inst, resolved

    def record(self) -> dict[str, Any]:
        """What a run stores in ``data_files`` (a resolved range)."""
        if self.start_ns is None or self.end_ns is None:
            raise ValueError(f"stored range {self} has an open bound: resolve() it first")
        return {
            "venue": self.venue,
            "symbol": self.symbol,
            "start_ns": self.start_ns,
            "end_ns": self.end_ns,
            "start": ns_to_iso(self.start_ns),
            "end": ns_to_iso(self.end_ns),
        }

    @classmethod
    def from_record(cls, d: dict[str, Any]) -> StoredRange:
        return cls(d["venue"], d["symbol"], int(d["start_ns"]), int(d["end_ns"]))


_MARGIN_NS = 60 * 10**9  # as apps.marketdata.selectors: rows are found by exchange time ±60 s, then local time


def _has_stored_events(instrument_id: int, start_ns: int, end_ns: int) -> bool:
    """Whether :func:`~apps.marketdata.selectors.iter_events` would yield anything for the range (cheap: one
    indexed EXISTS per table; stopping ``iter_events`` early would leave its server-side cursors half closed)."""
    lo, hi = ns_to_dt(start_ns - _MARGIN_NS), ns_to_dt(end_ns + _MARGIN_NS)
    return any(
        model.objects.filter(
            instrument_id=instrument_id, ts__gte=lo, ts__lt=hi, ts_local_ns__gte=start_ns, ts_local_ns__lt=end_ns
        ).exists()
        for model in (TradeTick, QuoteTick, DepthUpdateRecord, DepthSnapshotRecord, FundingRate)
    )


def load_stored(rng: StoredRange) -> LoadedData:
    """Read a stored range into memory as the engine's events, in local-time order."""
    t0 = time.perf_counter()
    inst, rng = rng.resolve()
    record = rng.record()
    events = list(iter_events(inst.pk, record["start_ns"], record["end_ns"]))
    if not events:
        raise ValueError(f"no stored events for {rng}")
    return LoadedData(events, time.perf_counter() - t0, 0, stored=record)


def load_data(fmt: str, data_files: Sequence[Any]) -> LoadedData:
    """The events of a run as it records its source (``data_format``, ``data_files``)."""
    if fmt == STORED:
        if len(data_files) != 1 or not isinstance(data_files[0], dict):
            raise ValueError(f"a stored-range run must record one range object, got {data_files!r}")
        return load_stored(StoredRange.from_record(data_files[0]))
    return load_events(data_files, fmt)


DataSource = Sequence[str | Path] | StoredRange


def _source(data: DataSource, fmt: str) -> tuple[list[Any], Instrument | None]:
    """Check ``fmt`` against the kind of source; the ``data_files`` record and (stored) the instrument."""
    if isinstance(data, StoredRange):
        if fmt != STORED:
            raise ValueError(f"a stored range takes format {STORED!r}, got {fmt!r}")
        inst, rng = data.resolve()
        return [rng.record()], inst
    if fmt == STORED:
        raise ValueError(f"format {STORED!r} needs a StoredRange, not files")
    if isinstance(data, (str, Path)):
        raise ValueError(f"data files must be a list of paths, got one {type(data).__name__} {str(data)!r}")
    return [str(f) for f in data], None


def params_for_instrument(params: dict[str, Any], inst: Instrument | None) -> dict[str, Any]:
    """A stored range's parameters: ``venue.tick_size``/``lot_size`` default to the instrument's (params may
    override them), and ``instrument`` is the stored one (a conflicting ``params.instrument`` is an error)."""
    if inst is None or not isinstance(params, dict):
        return params
    out = dict(params)
    given = out.get("instrument", {})
    if isinstance(given, dict):
        stored = {"venue": inst.venue, "symbol": inst.symbol, "kind": inst.kind}
        clash = {k: v for k, v in given.items() if k in stored and v != stored[k]}
        if clash:
            raise ValueError(
                f"params.instrument {clash} contradicts the stored instrument {inst} ({inst.kind}); "
                "leave params.instrument out for a stored range"
            )
        out["instrument"] = {**given, **stored}
    venue = out.get("venue", {})
    if isinstance(venue, dict):
        out["venue"] = {"tick_size": inst.tick_size, "lot_size": inst.lot_size, **venue}
    return out


# --- the run ----------------------------------------------------------------------------------------


def build_strategy(kind: str, p: BacktestParams, id_prefix: str) -> Any:
    tick, lot = p.venue.tick_size, p.venue.lot_size
    if kind == "glft":
        return StrategyCore(p.glft, tick_size=tick, lot_size=lot, id_prefix=id_prefix)
    if kind == "fixed":
        return FixedSpreadQuoter(p.fixed, tick_size=tick, lot_size=lot, id_prefix=id_prefix)
    if kind == "as":
        return AvellanedaStoikovQuoter(p.avst, tick_size=tick, lot_size=lot, id_prefix=id_prefix)
    raise ValueError(f"strategy must be one of {STRATEGIES}, got {kind!r}")


def run_engine(
    events: Sequence[Any], p: BacktestParams, kind: str, *, seed: int = 0, sink: Any = None, id_prefix: str = "bt"
) -> BacktestResult:
    """The pure run: no database. Same events, parameters and seed ⇒ the same result."""
    strategy = build_strategy(kind, p, id_prefix)
    venue = PaperVenue(p.venue, seed=seed)
    loop = EngineLoop(strategy, venue, p.backtest, sink=sink, name=kind, risk=p.session_risk(kind))
    return loop.run(events)


def _instrument(p: BacktestParams, fmt: str, files: Sequence[str]) -> Instrument:
    """The instrument a file backtest replays: ``params.instrument`` where it says, else what the files' records
    say (:func:`apps.marketdata.identify.identify`); ``replay-<format>:UNKNOWN`` only when neither does."""
    found = identify(files, fmt)
    venue = p.instrument.get("venue") or (found.venue if found else f"replay-{fmt}")
    symbol = p.instrument.get("symbol") or (found.symbol if found else "UNKNOWN")
    kind = p.instrument.get("kind") or (found.kind if found else Instrument.Kind.SPOT)
    if kind not in Instrument.Kind.values:
        raise ValueError(f"params.instrument.kind must be one of {Instrument.Kind.values}, got {kind!r}")
    inst, _ = Instrument.objects.get_or_create(
        venue=venue,
        symbol=symbol,
        defaults={"tick_size": p.venue.tick_size, "lot_size": p.venue.lot_size, "kind": kind},
    )
    if (inst.tick_size, inst.lot_size) != (p.venue.tick_size, p.venue.lot_size):
        raise ValueError(
            f"instrument {venue}:{symbol} has tick {inst.tick_size} / lot {inst.lot_size}, but params.venue says "
            f"{p.venue.tick_size} / {p.venue.lot_size}"
        )
    return inst


@dataclass
class StoredBacktest:
    run_id: int
    session_id: int
    summary: dict[str, Any]
    result: BacktestResult


def create_run(
    data: DataSource, fmt: str, params: dict[str, Any], strategy: str, *, name: str = "", seed: int = 0
) -> BacktestRun:
    """Validate and create the session and run rows (status pending); nothing is parsed yet.

    ``data`` is a list of files in parser format ``fmt``, or a :class:`StoredRange` with ``fmt`` = :data:`STORED`
    (its open bounds are resolved now, so the run records the exact range).
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    files, inst = _source(data, fmt)
    p = parse_params(params_for_instrument(params, inst))
    with transaction.atomic():
        session = TradingSession.objects.create(
            name=(name or f"backtest {strategy}")[:100],
            mode=TradingSession.Mode.BACKTEST,
            feed=f"replay:{fmt}"[:32],
            instrument=inst or _instrument(p, fmt, files),
            params=p.raw,
            seed=seed,
        )
        return BacktestRun.objects.create(
            session=session,
            strategy=strategy,
            data_format=fmt,
            data_files=files,
            params=p.raw,
        )


Progress = Callable[[int, int], None]  # (events processed, events in the run)
PROGRESS_EVERY = 500  # events between two progress calls (the callback throttles by time itself)


def _with_progress(events: Sequence[Any], progress: Progress) -> Iterator[Any]:
    """The events, calling ``progress(done, total)`` every :data:`PROGRESS_EVERY` of them and once at the end."""
    total = len(events)
    progress(0, total)
    for i, event in enumerate(events, 1):
        yield event
        if i % PROGRESS_EVERY == 0:
            progress(i, total)
    progress(total, total)


def execute_run(
    run: BacktestRun, events: Sequence[Any] | None = None, *, progress: Progress | None = None
) -> StoredBacktest:
    """Run a created backtest and store everything; marks the run FAILED (with the error) if anything raises.

    ``progress`` (optional) is called with (events processed, total) as the replay goes (see :func:`_with_progress`);
    ``params.backtest.max_events`` cuts the data to its first N events before the replay."""
    BacktestRun.objects.filter(pk=run.pk).update(status=BacktestRun.Status.RUNNING)
    session = run.session
    assert session is not None
    control = session_control(session.pk, actor_label="backtest")  # the session's status is control's to write
    control.report("run", "backtest started")
    try:
        p = parse_params(run.params)
        data_info: dict[str, Any] = {}
        if events is None:
            data = load_data(run.data_format, run.data_files)
            events, data_info = data.events, data.info()
        if p.max_events is not None and len(events) > p.max_events:
            events = events[: p.max_events]
            data_info = {**data_info, "events": len(events), "max_events": p.max_events}
        if events:
            # a backtest's session lives in its data's time (the receive clock its fills and P&L are stamped in)
            TradingSession.objects.filter(pk=session.pk).update(started_at=ns_to_dt(events[0].ts_local_ns))
        writer = make_writer(RECORDER_FLUSH_S, None)
        recorder = Recorder(writer, session.pk, session.instrument_id)
        strategy = build_strategy(run.strategy, p, f"bt{session.pk}")
        venue = PaperVenue(p.venue, seed=int(session.seed))
        writer.start()
        try:
            sink = RecorderSink(recorder)
            risk = p.session_risk(run.strategy)
            feed = events if progress is None else _with_progress(events, progress)
            result = EngineLoop(strategy, venue, p.backtest, sink=sink, name=run.strategy, risk=risk).run(feed)
        finally:
            writer.close()
        if writer.buffered_rows or writer.stats.rows_spilled > writer.stats.rows_replayed:
            raise RuntimeError(
                f"recorder could not write every row: {writer.stats.last_error or 'database unavailable'}"
            )
        store_pnl(session.pk, result)
        summary = {**result.summary(), "data": data_info, "seed": int(session.seed)}
        # the data's first and last event (the end-of-data cancels' answers included); no data, no span
        span = (
            {"started_at": ns_to_dt(result.first_ts_ns), "ended_at": ns_to_dt(result.last_ts_ns)}
            if result.stats.market_events
            else {"ended_at": timezone.now()}
        )
        with transaction.atomic():
            BacktestRun.objects.filter(pk=run.pk).update(
                status=BacktestRun.Status.DONE, summary=summary, finished_at=timezone.now()
            )
            control.report("finish", "backtest finished", extra_fields={"last_state": strategy.state(), **span})
        return StoredBacktest(run.pk, session.pk, summary, result)
    except Exception as exc:
        BacktestRun.objects.filter(pk=run.pk).update(
            status=BacktestRun.Status.FAILED, error=f"{type(exc).__name__}: {exc}"
        )
        control.report("fail", f"backtest failed: {type(exc).__name__}: {exc}")
        raise


def store_pnl(session_id: int, result: BacktestResult) -> int:
    rows = [
        PnlPoint(
            session_id=session_id,
            ts=ns_to_dt(b.ts_ns),
            ts_ns=b.ts_ns,
            mid=b.mid,
            position=b.position,
            cash=b.cash,
            total=b.total,
            spread_capture=b.spread_capture,
            adverse_selection=b.adverse_selection,
            inventory=b.inventory,
            fees=b.fees,
            funding=b.funding,
        )
        for b in result.pnl
    ]
    PnlPoint.objects.bulk_create(rows, batch_size=2000)
    return len(rows)


def run_backtests(
    data_source: DataSource,
    fmt: str,
    params: dict[str, Any],
    strategies: Sequence[str],
    *,
    seed: int = 0,
    name: str = "",
) -> tuple[list[StoredBacktest], LoadedData]:
    """Load once (parse the files or read the stored range), then run and store one backtest per strategy on the
    same events (``--compare``). Arguments as :func:`create_run`."""
    for s in strategies:
        if s not in STRATEGIES:
            raise ValueError(f"strategy must be one of {STRATEGIES}, got {s!r}")
    files, inst = _source(data_source, fmt)  # a stored range is resolved (and checked) once, here
    if isinstance(data_source, StoredRange):
        data_source = StoredRange.from_record(files[0])
    parse_params(params_for_instrument(params, inst))  # fail before parsing a large file
    data = load_data(fmt, files)
    out = []
    for s in strategies:
        run = create_run(data_source, fmt, params, s, name=f"{name or 'backtest'} {s}", seed=seed)
        stored = execute_run(run, data.events)
        stored.summary["data"] = data.info()
        BacktestRun.objects.filter(pk=run.pk).update(summary=stored.summary)
        out.append(stored)
    return out, data


# --- parameter sweeps -------------------------------------------------------------------------------

SWEEP_QUEUE = "periodic"  # until CELERY_TASK_ROUTES sends apps.trading.tasks_sweep.* to a "backtest" queue
MAX_SWEEP_POINTS = 500


def expand_grid(grid: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """``{"strategy.gamma": [1, 10], "venue.entry_latency_ns": [0, 5e6]}`` → every combination, in order. A key is
    dotted from its section down (``strategy.risk_aversion.beta_thin_book`` sets a nested field)."""
    import itertools

    if not isinstance(grid, dict) or not grid:
        raise ValueError("grid must be a non-empty object of 'section.field' -> list of values")
    for key, values in grid.items():
        parts = key.split(".") if isinstance(key, str) else []
        if len(parts) < 2 or parts[0] not in SECTIONS or not all(parts):
            raise ValueError(f"grid key must be 'section.field' with section in {list(SECTIONS)}, got {key!r}")
        if not isinstance(values, list) or not values:
            raise ValueError(f"grid[{key!r}] must be a non-empty list, got {values!r}")
    keys = list(grid)
    points = [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*(grid[k] for k in keys))]
    if len(points) > MAX_SWEEP_POINTS:
        raise ValueError(f"grid has {len(points)} points; at most {MAX_SWEEP_POINTS} per sweep")
    return points


def apply_point(base: dict[str, Any], point: dict[str, Any]) -> dict[str, Any]:
    params = json.loads(json.dumps(base))
    for key, value in point.items():
        *path, name = key.split(".")
        node = params
        for part in path:
            node = node.setdefault(part, {})
        node[name] = value
    return params


def create_sweep(
    data: DataSource,
    fmt: str,
    base_params: dict[str, Any],
    grid: dict[str, list[Any]],
    *,
    strategy: str = "glft",
    name: str = "",
    seed: int = 0,
) -> SweepRun:
    """Validate every point first (nothing is created when one is bad), then create the sweep and its runs.

    ``data``/``fmt`` as :func:`create_run`: files, or a :class:`StoredRange` (resolved once, so every point
    replays the same range)."""
    points = expand_grid(grid)
    files, inst = _source(data, fmt)
    if isinstance(data, StoredRange):
        data = StoredRange.from_record(files[0])
    for point in points:
        try:
            parse_params(params_for_instrument(apply_point(base_params, point), inst))
        except ValueError as exc:
            raise ValueError(f"sweep point {point}: {exc}") from None
    with transaction.atomic():
        sweep = SweepRun.objects.create(
            name=(name or "sweep")[:100],
            strategy=strategy,
            data_format=fmt,
            data_files=files,
            base_params=base_params,
            grid=grid,
            n_points=len(points),
            status=SweepRun.Status.RUNNING,
        )
        for i, point in enumerate(points):
            run = create_run(data, fmt, apply_point(base_params, point), strategy, name=f"{sweep.name} #{i}", seed=seed)
            BacktestRun.objects.filter(pk=run.pk).update(sweep=sweep, point=point)
    return sweep


def start_sweep(*args: Any, queue: str = SWEEP_QUEUE, **kwargs: Any) -> SweepRun:
    """Create a sweep and queue one Celery task per point after commit (they run in parallel on the workers).

    Arguments as :func:`create_sweep`; ``queue`` is the Celery queue the points go to.
    """
    from apps.trading.tasks_sweep import run_backtest_point

    sweep = create_sweep(*args, **kwargs)
    run_ids = list(sweep.runs.order_by("id").values_list("id", flat=True))

    def _queue() -> None:
        for run_id in run_ids:
            run_backtest_point.apply_async(args=[run_id], queue=queue)

    transaction.on_commit(_queue)
    return sweep


def start_run(*args: Any, queue: str = SWEEP_QUEUE, **kwargs: Any) -> BacktestRun:
    """Create one backtest (arguments as :func:`create_run`) and queue it on a Celery worker after commit."""
    from apps.trading.tasks_sweep import run_backtest_point

    run = create_run(*args, **kwargs)
    transaction.on_commit(lambda: run_backtest_point.apply_async(args=[run.pk], queue=queue))
    return run


_EVENTS_CACHE: dict[tuple[Any, ...], LoadedData] = {}


def _cached_events(files: Sequence[Any], fmt: str) -> LoadedData:
    """A worker runs many points over the same data: load it once per process (files keyed by path and mtime;
    a stored range by its resolved bounds)."""
    if fmt == STORED:
        key: tuple[Any, ...] = (fmt, json.dumps(list(files), sort_keys=True))
    else:
        key = (fmt, *((f, Path(f).stat().st_mtime_ns) for f in files))
    if key not in _EVENTS_CACHE:
        _EVENTS_CACHE.clear()  # one data set at a time bounds the memory
        _EVENTS_CACHE[key] = load_data(fmt, files)
    return _EVENTS_CACHE[key]


def execute_run_by_id(run_id: int, progress: Progress | None = None) -> str:
    """Run one stored backtest (a sweep point); returns its status. Finishing the last point closes the sweep.
    ``progress`` as :func:`execute_run`."""
    run = BacktestRun.objects.select_related("session").get(pk=run_id)
    if run.status != BacktestRun.Status.PENDING:
        return run.status  # a redelivered task: the run is done or under way elsewhere
    try:
        data = _cached_events(run.data_files, run.data_format)
        stored = execute_run(run, data.events, progress=progress)
        info = {**data.info(), **stored.summary.get("data", {})}  # a max_events cut says the events replayed
        BacktestRun.objects.filter(pk=run.pk).update(summary={**stored.summary, "data": info})
        status = BacktestRun.Status.DONE
    except Exception:  # noqa: BLE001 - recorded on the run by execute_run (or here when parsing failed)
        BacktestRun.objects.filter(pk=run.pk, status__in=["pending", "running"]).update(
            status=BacktestRun.Status.FAILED, error="failed before the run started (see worker log)"
        )
        status = BacktestRun.Status.FAILED
    if run.sweep_id is not None:
        with transaction.atomic():
            sweep = SweepRun.objects.select_for_update().get(pk=run.sweep_id)
            left = sweep.runs.filter(status__in=["pending", "running"]).count()
            if left == 0 and sweep.status == SweepRun.Status.RUNNING:
                failed = sweep.runs.filter(status=BacktestRun.Status.FAILED).exists()
                sweep.status = SweepRun.Status.FAILED if failed else SweepRun.Status.DONE
                sweep.save(update_fields=["status"])
    return status


SWEEP_COLUMNS = (
    "fills_buy",
    "fills_sell",
    "volume",
    "avg_quoted_spread_bps",
    "max_abs_inventory",
    "pnl_total",
    "markout_mean_bps",
    "sharpe_per_interval",
    "max_drawdown",
)


def sweep_table(sweep_id: int) -> list[dict[str, Any]]:
    """One row per point: the grid values beside the main summary numbers, in grid order (a selector)."""
    rows = []
    for run in BacktestRun.objects.filter(sweep_id=sweep_id).order_by("id"):
        s = run.summary or {}
        rows.append(
            {
                "run_id": run.pk,
                "session_id": run.session_id,
                "status": run.status,
                **run.point,
                **{c: s.get(c) for c in SWEEP_COLUMNS},
                **{f"pnl.{k}": v for k, v in (s.get("pnl") or {}).items()},
            }
        )
    return rows
