"""What a session records, as rows for the batched writer (tables named from the models).

:class:`RecorderSink` is the one mapping from what the engine's driver sees and does to database rows, for the
live loop, replay through it and stored backtests alike; :class:`Recorder` writes the rows.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from apps.engine.accounting.funding import FundingClock
from apps.engine.estimators.base import EstimatorSnapshot
from apps.engine.execution.orders import Order as EngineOrder
from apps.engine.market.events import (
    Action,
    BestBidAsk,
    CancelAll,
    CancelOrder,
    DepthSnapshot,
    DepthUpdate,
    Fill,
    Funding,
    MarkPrice,
    ModifyOrder,
    OrderAck,
    OrderEvent,
    OrderReject,
    PlaceOrder,
    QuoteDecision,
    Trade,
)
from apps.marketdata.importer import DEPTH, FUNDING, SNAPSHOTS, _sides, depth_row, event_time, ns_to_dt, snapshot_row
from apps.marketdata.importer import SPECS as MARKET_SPECS
from apps.marketdata.models import QuoteTick, TradeTick
from apps.marketdata.writer import BatchedWriter, TableSpec
from apps.trading.models import (
    EstimatorSnapshotRecord,
    FillRecord,
    Order,
    OrderEventRecord,
    QuoteDecisionRecord,
    RiskEventRecord,
)

if TYPE_CHECKING:
    from apps.ops.counters import LoopMetrics

logger = logging.getLogger(__name__)

TRADES = TradeTick._meta.db_table
QUOTES = QuoteTick._meta.db_table
DECISIONS = QuoteDecisionRecord._meta.db_table
ORDER_EVENTS = OrderEventRecord._meta.db_table
FILLS = FillRecord._meta.db_table
ORDERS = Order._meta.db_table
RISK_EVENTS = RiskEventRecord._meta.db_table
ESTIMATOR_SNAPSHOTS = EstimatorSnapshotRecord._meta.db_table

SPECS = (
    TableSpec(TRADES, ("instrument_id", "ts", "ts_exch_ns", "ts_local_ns", "price", "size", "aggressor", "trade_id")),
    TableSpec(
        QUOTES,
        ("instrument_id", "ts", "ts_exch_ns", "ts_local_ns", "bid_px", "bid_size", "ask_px", "ask_size", "update_id"),
    ),
    TableSpec(
        DECISIONS,
        ("session_id", "ts", "ts_ns", "mid", "bid_px", "ask_px", "bid_size", "ask_size", "inputs", "reasons"),
        frozenset({"inputs", "reasons"}),
    ),
    TableSpec(ORDER_EVENTS, ("session_id", "ts", "ts_ns", "client_order_id", "kind", "detail"), frozenset({"detail"})),
    TableSpec(
        FILLS,
        ("session_id", "ts", "ts_ns", "client_order_id", "fill_id", "side", "price", "size", "fee", "liquidity"),
    ),
    # "values" is an SQL keyword: the writer puts column names into COPY as they are written here
    TableSpec(
        RISK_EVENTS, ("session_id", "ts", "ts_ns", "rule", "action", '"values"', "message"), frozenset({'"values"'})
    ),
    TableSpec(
        ESTIMATOR_SNAPSHOTS,
        ("session_id", "ts", "ts_ns", "name", "value", "std", "state", "ci_low", "ci_high", "detail"),
        frozenset({"detail"}),
    ),
)
# L2 depth (diffs and whole-book snapshots) and funding go to the importer's tables with the importer's rows, so a
# live session's market data reads back (apps.marketdata.selectors.iter_events) like an imported recording
SPECS += tuple(spec for spec in MARKET_SPECS if spec.table in (DEPTH, SNAPSHOTS, FUNDING))
ORDER_SPEC = TableSpec(
    ORDERS,
    ("session_id", "client_order_id", "side", "price", "size", "filled", "status", "created_ts", "updated_ts"),
)


def make_writer(
    flush_interval_s: float, spill_dir: Path | None, journal_path: Path | None = None, owner: str = ""
) -> BatchedWriter:
    return BatchedWriter(
        SPECS,
        upsert_spec=ORDER_SPEC,
        upsert_conflict=("session_id", "client_order_id"),
        flush_interval_s=flush_interval_s,
        spill_dir=spill_dir,
        journal_path=journal_path,
        owner=owner,
    )


def recover_journals(journal_dir: Path, spill_dir: Path | None, current_owner: str) -> dict[str, int]:
    """Replay the journals that dead writers of this session left behind, above their progress marks.

    Returns rows replayed per dead owner. A journal is deleted only after its rows are in the database."""
    from apps.marketdata.models import WriterProgress
    from apps.marketdata.writer import Journal

    replayed: dict[str, int] = {}
    if not journal_dir.exists():
        return replayed
    for path in sorted(journal_dir.glob("*.journal")):
        owner = path.stem
        if owner == current_owner:
            continue
        mark = WriterProgress.objects.filter(owner=owner).values_list("seq", flat=True).first() or 0
        todo = [r for r in Journal.read(path) if r[0] > mark]
        if todo:
            w = make_writer(1.0, None)
            for _seq, kind, table, row in todo:
                if kind == "add":
                    w.add(table, row)
                else:
                    w.upsert(row)
            if not w.flush():
                raise RuntimeError(f"could not replay {path}: {w.stats.last_error}")
        for spill in spill_dir.glob(f"spill-{owner}-*.pickle") if spill_dir and spill_dir.exists() else []:
            spill.unlink()  # its rows were journaled too, and are in now
        path.unlink()
        WriterProgress.objects.filter(owner=owner).delete()
        replayed[owner] = len(todo)
    return replayed


class Recorder:
    """Adapts engine objects to writer rows for one session."""

    def __init__(self, writer: BatchedWriter, session_id: int, instrument_id: int, trade_id_prefix: str = "") -> None:
        self.writer = writer
        self.session_id = session_id
        self.instrument_id = instrument_id
        # a simulated feed numbers its trades from 1 on every start; a per-run prefix keeps them unique
        self.trade_id_prefix = trade_id_prefix
        self._created: dict[str, int] = {}

    def trade(self, t: Trade) -> None:
        self.writer.add(
            TRADES,
            (
                self.instrument_id,
                event_time(t.ts_exch_ns, t.ts_local_ns),
                t.ts_exch_ns,
                t.ts_local_ns,
                t.price,
                t.size,
                int(t.aggressor),
                f"{self.trade_id_prefix}{t.trade_id}",
            ),
        )

    def quote(self, q: BestBidAsk) -> None:
        self.writer.add(
            QUOTES,
            (
                self.instrument_id,
                event_time(q.ts_exch_ns, q.ts_local_ns),
                q.ts_exch_ns,
                q.ts_local_ns,
                q.bid_px,
                q.bid_size,
                q.ask_px,
                q.ask_size,
                q.update_id,
            ),
        )

    def depth(self, ev: DepthUpdate) -> None:
        self.writer.add(DEPTH, depth_row(self.instrument_id, ev, _sides(ev.bids, ev.asks)))

    def depth_snapshot(self, ev: DepthSnapshot) -> None:
        self.writer.add(SNAPSHOTS, snapshot_row(self.instrument_id, ev, _sides(ev.bids, ev.asks)))

    def funding(self, ev: Funding) -> None:
        ts = event_time(ev.ts_exch_ns, ev.ts_local_ns)
        self.writer.add(FUNDING, (self.instrument_id, ts, ev.ts_exch_ns, ev.ts_local_ns, ev.rate, ev.interval_s))

    def decision(self, d: QuoteDecision, params_version: int | None = None) -> None:
        mid = d.inputs.get("mid", 0.0)
        inputs = {k: (v if v == v and v not in (float("inf"), float("-inf")) else None) for k, v in d.inputs.items()}
        if params_version is not None:  # the session's parameter-set version the decision was made with
            inputs["params_version"] = params_version
        self.writer.add(
            DECISIONS,
            (
                self.session_id,
                ns_to_dt(d.ts_ns),
                d.ts_ns,
                mid,
                d.bid_px,
                d.ask_px,
                d.bid_size,
                d.ask_size,
                inputs,
                list(d.reasons),
            ),
        )

    def order_event(self, ts_ns: int, client_order_id: str, kind: str, **detail: object) -> None:
        self.writer.add(ORDER_EVENTS, (self.session_id, ns_to_dt(ts_ns), ts_ns, client_order_id, kind, detail))

    def order_state(self, ts_ns: int, order: EngineOrder) -> None:
        created = self._created.setdefault(order.client_order_id, ts_ns)
        self.writer.upsert(
            (
                self.session_id,
                order.client_order_id,
                int(order.side),
                order.price,
                order.size,
                order.filled,
                order.status.value,
                ns_to_dt(created),
                ns_to_dt(ts_ns),
            ),
        )

    def fill(self, f: Fill) -> None:
        # a venue's fill ids are unique per venue instance; prefixing the (per-run unique) client order id keeps
        # them unique per session across loop restarts. ts is the venue's time of the fill, as for ticks: the
        # natural key (session, fill id, ts) must be the same when a venue delivers a fill again, later
        self.writer.add(
            FILLS,
            (
                self.session_id,
                event_time(f.ts_exch_ns, f.ts_local_ns),
                f.ts_local_ns,
                f.client_order_id,
                f"{f.client_order_id}/{f.fill_id}",
                int(f.side),
                f.price,
                f.size,
                f.fee,
                f.liquidity,
            ),
        )

    def risk_event(self, ts_ns: int, rule: str, action: str, values: dict[str, Any], message: str) -> None:
        self.writer.add(RISK_EVENTS, (self.session_id, ns_to_dt(ts_ns), ts_ns, rule, action, values, message))

    def estimator_snapshot(self, ts_ns: int, snapshots: Sequence[EstimatorSnapshot]) -> None:
        """One row per estimator; NaN and ±inf (an interval not computed, a value not yet known) become NULL."""
        ts = ns_to_dt(ts_ns)
        add, sid = self.writer.add, self.session_id
        for s in snapshots:
            detail: dict[str, Any] = {k: _finite(v) for k, v in s.detail.items()}
            if s.message:
                detail["message"] = s.message
            if s.last_input_ns:
                detail["last_input_ns"] = s.last_input_ns
            add(
                ESTIMATOR_SNAPSHOTS,
                (
                    sid,
                    ts,
                    ts_ns,
                    s.name,
                    _finite(s.value),
                    _finite(s.std),
                    s.state.value,
                    _finite(s.ci_low),
                    _finite(s.ci_high),
                    detail,
                ),
            )


def _finite(v: Any) -> Any:
    """JSON and charts: a float that is not finite is "unknown" (None); anything else passes."""
    return None if isinstance(v, float) and not math.isfinite(v) else v


class RecorderSink:
    """The driver's sink (:class:`apps.engine.simulation.backtest.Sink`) as rows: the one event→row mapping.

    ``record_market`` copies every market event the engine sees into the market-data store (a simulated or live
    feed): trades, top of book, L2 depth diffs and the whole-book snapshots a feed resynchronises with, and
    funding-rate changes, so the session's market can be replayed exactly; a replay or a backtest leaves it off,
    its market data being its input. ``log_fills`` writes one log line per fill: in a
    live loop an independent record to check "no fill lost" against after a crash. ``params_version`` (a live
    session's parameter-set version, set by the loop when it applies one) goes into each recorded decision's
    inputs; the engine's own decision inputs do not carry it, so backtests are unchanged. ``metrics`` (set by the
    live loop) counts quotes, orders, fills and rejects and times them for ``/metrics`` (see
    :mod:`apps.ops.counters`).
    """

    def __init__(
        self,
        recorder: Recorder,
        *,
        record_market: bool = False,
        log_fills: bool = False,
        params_version: int | None = None,
    ) -> None:
        self.recorder = recorder
        self.record_market = record_market
        self.log_fills = log_fills
        self.params_version = params_version
        self.metrics: LoopMetrics | None = None
        self._last_funding_rate: float | None = None
        self._funding_clock = FundingClock()  # mark-price updates -> the settlements worth a row

    def market(self, event: Any) -> None:
        if not self.record_market:
            return
        t = type(event)
        if t is Trade:
            self.recorder.trade(event)
        elif t is BestBidAsk:
            self.recorder.quote(event)
        elif t is DepthUpdate:
            self.recorder.depth(event)
        elif t is DepthSnapshot:
            self.recorder.depth_snapshot(event)
        elif t is MarkPrice:  # an announced rate: stored once it is paid (a replay books each row as a payment)
            paid = self._funding_clock.on_mark(
                event.ts_exch_ns, event.ts_local_ns, event.funding_rate, event.next_funding_ns
            )
            if paid is not None:
                self.recorder.funding(Funding(paid.ts_exch_ns, paid.ts_local_ns, paid.rate, event.interval_s))
        elif t is Funding and event.rate != self._last_funding_rate:
            self._last_funding_rate = event.rate
            self.recorder.funding(event)

    def order_event(self, ev: OrderEvent, order: EngineOrder | None) -> None:
        r, m = self.recorder, self.metrics
        if isinstance(ev, Fill):
            if m is not None:
                m.on_fill()
            if self.log_fills:
                logger.info(
                    "session %s fill %s/%s side=%+d px=%s size=%s",
                    r.session_id,
                    ev.client_order_id,
                    ev.fill_id,
                    int(ev.side),
                    ev.price,
                    ev.size,
                    extra={"session_id": r.session_id, "order_id": ev.client_order_id},
                )
            r.fill(ev)
            r.order_event(
                ev.ts_local_ns, ev.client_order_id, "fill", fill_id=ev.fill_id, price=ev.price, size=ev.size, fee=ev.fee
            )
        elif isinstance(ev, OrderAck):
            if m is not None and ev.status == "open":
                m.on_ack(ev.client_order_id, ev.ts_local_ns)
            r.order_event(ev.ts_local_ns, ev.client_order_id, f"ack_{ev.status}", price=ev.price, size=ev.size)
        elif isinstance(ev, OrderReject):
            if m is not None:
                m.on_reject(ev.client_order_id)
            r.order_event(ev.ts_local_ns, ev.client_order_id, "reject", reason=ev.reason)
        if order is not None:
            r.order_state(ev.ts_local_ns, order)

    def sent(self, ts_ns: int, a: Action, order: EngineOrder | None) -> None:
        r, m = self.recorder, self.metrics
        if m is not None:
            if isinstance(a, PlaceOrder):
                m.on_place(a.client_order_id, ts_ns)
            elif isinstance(a, (CancelOrder, CancelAll)):
                m.on_cancel()
        if isinstance(a, PlaceOrder):
            r.order_event(ts_ns, a.client_order_id, "place", side=int(a.side), price=a.price, size=a.size, tif=a.tif)
        elif isinstance(a, (CancelOrder, ModifyOrder)):
            r.order_event(ts_ns, a.client_order_id, type(a).__name__.lower())
        elif isinstance(a, CancelAll):
            r.order_event(ts_ns, "*", "cancel_all", reason=a.reason)
        if order is not None:
            r.order_state(ts_ns, order)

    def blocked(self, ts_ns: int, a: Action, reason: str) -> None:
        self.recorder.order_event(
            ts_ns,
            getattr(a, "client_order_id", "*"),
            "blocked",
            action=type(a).__name__,
            reason=reason,
            note="further blocked actions in this mode are counted, not recorded",
        )

    def decision(self, decision: QuoteDecision) -> None:
        if self.metrics is not None:
            self.metrics.on_decision(decision.ts_ns)
        self.recorder.decision(decision, self.params_version)

    def risk_event(self, ts_ns: int, rule: str, action: str, values: dict[str, Any], message: str) -> None:
        self.recorder.risk_event(ts_ns, rule, action, values, message)
        self.recorder.writer.flush_soon()  # an operator looks for why the session stopped quoting

    def estimator_snapshot(self, ts_ns: int, snapshots: Sequence[EstimatorSnapshot]) -> None:
        self.recorder.estimator_snapshot(ts_ns, snapshots)

    def note(self, ts_ns: int, client_order_id: str, kind: str, **detail: Any) -> None:
        self.recorder.order_event(ts_ns, client_order_id, kind, **detail)

    def order_state(self, ts_ns: int, order: EngineOrder) -> None:
        self.recorder.order_state(ts_ns, order)

    def flush(self) -> None:
        self.recorder.writer.flush_soon()
