"""The compiled paper venue and driver and their pure-Python references agree exactly, on every shared recording.

``apps/engine/execution/_paper.pyx`` (``PaperVenue``) against ``PyPaperVenue`` and
``apps/engine/simulation/_backtest.pyx`` (``EngineLoop``) against ``PyEngineLoop``, everything else the same (the
compiled book and fill model in both): the whole backtest of every shared Binance recording (the engine
fingerprint's list) for each strategy of the engine fingerprint (GLFT, fixed spread, Avellaneda–Stoikov), the two
pairs in lockstep. The compiled driver replays the recording with its own (compiled) ``run``; its feed steps the
reference driver (``on_market``, which is all the reference's ``run`` does per event) through the same event and
compares, after **every** event, with ``==`` on exact values: the driver's clock, counters, fills, P&L and quote
samples and the ledger's mid and position; the venue's next event time, position, fills delivered, live orders and
its own clocks. Every 64 events and at the end, every live order as the venue sees it (price, sizes, status, queue
ahead) and the last P&L and quote sample, by ``repr`` (exact for floats). At the end, the event, action,
order-event, decision and fill counts and the fingerprint tool's digests of every decision, every fill and the
summary.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from apps.engine.core import PyStrategyCore
from apps.engine.execution.paper import PAPER_COMPILED, PaperVenue, PyPaperVenue
from apps.engine.risk.session import SessionRisk, build_risk_engine
from apps.engine.simulation.backtest import DRIVER_COMPILED, MARKET_TYPES, EngineLoop, PyEngineLoop
from tests.engine.execution.test_fillmodel_equivalence import EVENTS, recording  # noqa: F401 - the fixture
from tools.engine_fingerprint import digest, strategies, venue

pytestmark = pytest.mark.skipif(
    not (PAPER_COMPILED and DRIVER_COMPILED), reason="the compiled venue/driver is not selected (MM_PURE_PYTHON?)"
)


def _state(loop) -> tuple:
    """What must be equal after every event (cheap reads)."""
    v, r, s = loop.venue, loop.result, loop.result.stats
    return (
        loop.now_ns,
        (s.market_events, s.order_events, s.actions, s.decisions, s.local_rejects, s.blocked, s.emergency_cancels),
        len(r.fills),
        len(r.pnl),
        len(r.samples),
        repr(loop.ledger.mid),
        repr(loop.ledger.position),
        repr(r.max_abs_inventory),
        v.next_event_ns(),
        repr(v.position()),
        len(v._fills),
        sorted(v._live),
        v._venue_now_ns,
        v.non_market_trades,
        v._seq,
    )


def _deep(loop) -> tuple:
    """The rest, every 64 events and at the end: every live order and the last samples, exact by repr."""
    v, r = loop.venue, loop.result
    # ``crossed`` as a float: the reference keeps the level book's int 0 for "nothing crossed", the compiled 0.0
    live = [(repr(o), repr(float(v._live[o.client_order_id].crossed))) for o in v.open_orders()]
    return (live, repr(r.pnl[-1]) if r.pnl else None, repr(r.samples[-1]) if r.samples else None, repr(r.fills[-1:]))


def _digests(result) -> tuple:
    s = result.stats
    return (
        (s.market_events, s.actions, s.order_events, len(result.decisions), len(result.fills)),
        digest(result.decisions),
        digest(result.fills),
        digest([result.summary(timing=False)]),
    )


def _risk_state(loop) -> tuple:
    """The risk rules' inputs the driver feeds per event, and what the grid made of them (exact, by repr)."""
    r = loop.risk
    return (
        dict(r.feed_last_ns),
        r.clock_skew_ns,
        r._t,
        repr(r.peak_equity),
        dict(r.edges.active),
        repr(loop.result.risk_events),
        loop.result.risk_cleared,
        loop.gateway.mode,
        list(loop._modes.items()),
        [(c._total, c._last_ns) for f in r.flows.values() for c in (f._sent, f._rejected, f._cancelled, f._messages)],
    )


def _typed(d: dict) -> list:
    """A dict's items in order, each value with its type and exact repr (floats by their shortest exact repr)."""
    return [(k, type(v).__name__, repr(v)) for k, v in d.items()]


def _risk_view(loop) -> tuple:
    """The compiled core's ``risk_state`` against the reference method run on the same core object."""
    core = loop.strategy
    return _typed(core.risk_state()), _typed(PyStrategyCore.risk_state(core))


BENCH_RULES = {"clock_skew": {"max_abs_skew_ms": 2000.0}}


def _session_risk(max_inventory: float, rules: dict | None = None) -> SessionRisk:
    # the bench-anchor's rules by default: the session's defaults with the clock-skew bound raised for these recordings
    return SessionRisk(*build_risk_engine(rules or BENCH_RULES, max_inventory), max_inventory)


class _ListSink:
    """Records what the driver hands a sink, as comparable rows (market events counted, not kept)."""

    def __init__(self) -> None:
        self.rows: list[tuple] = []
        self.market_events = 0

    def market(self, event) -> None:
        self.market_events += 1

    def order_event(self, event, order) -> None:
        self.rows.append(("order_event", repr(event), repr(order)))

    def sent(self, ts_ns, action, order) -> None:
        self.rows.append(("sent", ts_ns, repr(action), repr(order)))

    def blocked(self, ts_ns, action, reason) -> None:
        self.rows.append(("blocked", ts_ns, repr(action), reason))

    def decision(self, decision) -> None:
        self.rows.append(("decision", decision.ts_ns))

    def risk_event(self, ts_ns, rule, action, values, message) -> None:
        self.rows.append(("risk_event", ts_ns, rule, action, repr(values), message))

    def note(self, ts_ns, client_order_id, kind, **detail) -> None:
        self.rows.append(("note", ts_ns, client_order_id, kind, repr(detail)))

    def order_state(self, ts_ns, order) -> None:
        self.rows.append(("order_state", ts_ns, repr(order)))

    def estimator_snapshot(self, ts_ns, snapshots) -> None:
        self.rows.append(("estimator_snapshot", ts_ns, len(snapshots)))

    def flush(self) -> None:
        self.rows.append(("flush",))


def _lockstep(
    events,
    tick,
    lot,
    label,
    *,
    risk: bool = False,
    partial_fills: bool = True,
    rules: dict | None = None,
    sink: bool = False,
):
    # the engine fingerprint's venue: 5 ms each way, risk-averse queue
    cfg = replace(venue(tick, lot).config, partial_fills=partial_fills)
    q_max = strategies(tick, lot)["glft"].params.max_inventory
    ref = PyEngineLoop(
        strategies(tick, lot)[label],
        PyPaperVenue(cfg, seed=1),
        name=label,
        risk=_session_risk(q_max, rules) if risk else None,
        sink=_ListSink() if sink else None,
    )
    com = EngineLoop(
        strategies(tick, lot)[label],
        PaperVenue(cfg, seed=1),
        name=label,
        risk=_session_risk(q_max, rules) if risk else None,
        sink=_ListSink() if sink else None,
    )
    assert type(com.venue).on_market is not PyPaperVenue.on_market and type(ref.venue) is PyPaperVenue
    n = 0

    def feed():
        nonlocal n
        for ev in events:
            yield ev  # the compiled driver processes it before asking for the next one
            if not isinstance(ev, MARKET_TYPES):
                continue
            ref.on_market(ev)
            n += 1
            assert _state(com) == _state(ref), f"{label}: after event {n} ({type(ev).__name__})"
            if risk:
                assert _risk_state(com) == _risk_state(ref), f"{label}: risk inputs after event {n}"
                got_view, want_view = _risk_view(com)
                assert got_view == want_view, f"{label}: the core's risk_state after event {n}"
            if sink:
                assert com.sink.rows == ref.sink.rows, f"{label}: what the sink received, after event {n}"
            if n % 64 == 0:
                assert _deep(com) == _deep(ref), f"{label}: orders or samples after event {n}"

    got = com.run(feed())
    want = ref.finish()
    assert _state(com) == _state(ref) and _deep(com) == _deep(ref), f"{label}: after finish()"
    if risk:
        assert _risk_state(com) == _risk_state(ref), f"{label}: risk inputs after finish()"
    if sink:
        assert com.sink.rows == ref.sink.rows and com.sink.market_events == ref.sink.market_events
    return got, want, n


@pytest.mark.parametrize("label", ["glft", "fixed", "as"])
def test_the_backtest_is_identical_with_the_compiled_venue_and_driver(recording, label):  # noqa: F811
    name, events, tick, lot = recording
    got, want, n = _lockstep(events, tick, lot, label)
    assert n == EVENTS[name], f"{name}: {n} market events compared, not the whole recording"
    assert _digests(got) == _digests(want), f"{name} {label}: compiled (counts, decisions, fills, summary) differ"
    if label == "glft":
        assert len(got.fills) > 0, f"{name}: no fills: the fill path was not compared"


def test_the_backtest_with_the_session_risk_rules_is_identical_with_the_compiled_driver(recording):  # noqa: F811
    """The bench-anchor's loop (GLFT with the session's risk rules, which the compiled driver feeds inline): the risk
    rules' inputs, trips and the gateway's mode after every event, and the whole backtest's digests."""
    name, events, tick, lot = recording
    got, want, n = _lockstep(events, tick, lot, "glft", risk=True)
    assert n == EVENTS[name]
    assert _digests(got) == _digests(want), (
        f"{name}: compiled (counts, decisions, fills, summary) differ with risk rules"
    )
    assert len(got.fills) > 0, f"{name}: no fills with the risk rules: the fill path was not compared"


def test_the_backtest_without_partial_fills_is_identical_with_the_compiled_venue_and_driver(recording):  # noqa: F811
    """``partial_fills=False`` (the bench-anchor's assumption): the same lockstep comparison, GLFT; every order that
    fills fills once, whole."""
    name, events, tick, lot = recording
    got, want, n = _lockstep(events, tick, lot, "glft", partial_fills=False)
    assert n == EVENTS[name]
    assert _digests(got) == _digests(want), f"{name}: compiled (counts, decisions, fills, summary) differ"
    assert len(got.fills) > 0, f"{name}: no fills: the fill path was not compared"
    ids = [f.client_order_id for f in got.fills]
    assert len(set(ids)) == len(ids), f"{name}: an order filled in more than one part without partial fills"


def test_risk_trips_latches_and_modes_are_identical_with_the_compiled_driver(recording):  # noqa: F811
    """Rules tight enough to trip on these recordings: a feed older than 0.3 s and more than 40 (USD-M BTC: 20) messages
    in 10 s pull the quotes (on and off: PAUSED, emergency cancels, cleared edges), a position of one lot latches
    REDUCING (every later evaluation runs with a mode source that is not RUNNING). With a sink, so every risk event,
    note and blocked action is compared too. The compiled driver takes its own path for the evaluations where nothing
    started or cleared, no current trip pulls quotes and every mode is RUNNING, the reference's ``_risk_outcome`` for
    the others (a pull that stays active is one of those: dropping that test makes the modes differ here): both run
    here."""
    name, events, tick, lot = recording
    if name == "spot-btcusdt":
        # the lockstep comparison after every event with a sink runs past the suite's 300 s timeout on this recording
        # (and a timeout raised inside the compiled driver crashes pytest's traceback formatting); USD-M BTC exercises
        # every path (pulls on and off, clears, the reduce latch, emergency cancels), ETH the latch from its first fills
        pytest.skip("over the per-test timeout on the spot recording; the USD-M recordings cover every path")
    rules = {
        **BENCH_RULES,
        "stale_feed": {"max_age_s": 0.3},
        # on USD-M BTC 40 messages no longer trip before the one-lot latch blocks every placement (since κ, A and v̄
        # count taker orders): 20 do, with orders resting, so PAUSED meets them (11 emergency cancels)
        "message_rate": {"max_messages": 20 if name == "usdm-btcusdt" else 40},
        "position_limit": {"max_position": lot},
    }
    got, want, n = _lockstep(events, tick, lot, "glft", risk=True, rules=rules, sink=True)
    assert n == EVENTS[name]
    assert _digests(got) == _digests(want), f"{name}: compiled (counts, decisions, fills, summary) differ with trips"
    actions = {str(t.action) for t in got.risk_events}
    assert {"pull_quotes", "reduce"} <= actions, f"{name}: the tight rules did not trip as intended: {actions}"
    assert got.risk_cleared, f"{name}: no rule cleared: the edge path was not compared"
    if name == "usdm-btcusdt":
        # the recording where a pull meets resting orders; on ETH the one-lot position latches REDUCING within the
        # first fills and the gateway blocks every placement after it (thousands blocked, no order left to cancel)
        assert got.stats.emergency_cancels > 0, f"{name}: no emergency cancel: PAUSED was never entered with orders"
