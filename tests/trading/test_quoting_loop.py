"""The quoting loop against real PostgreSQL and Redis: in-process for the data path, a real worker for redelivery."""

from __future__ import annotations

import threading
import time

import pytest

from apps.control.models import AuditEvent
from apps.control.services import Actor, create_paper_session, halt_session
from apps.marketdata.models import QuoteTick, TradeTick
from apps.trading.loop import QuotingLoop
from apps.trading.models import FillRecord, Order, OrderEventRecord, QuoteDecisionRecord, TradingSession
from tests.conftest import wait_until as _wait

FAST = {"strategy": {"sigma_bucket_s": 0.25, "sigma_min_buckets": 8, "kappa_min_volume": 0.05}}


def _session(**kw) -> TradingSession:
    return create_paper_session(Actor(label="test"), name="t", params=FAST, seed=kw.get("seed", 7), start=False)


def _run_in_thread(loop: QuotingLoop, seconds: float) -> threading.Thread:
    t = threading.Thread(target=loop.run, kwargs={"max_seconds": seconds})
    t.start()
    return t


@pytest.mark.django_db(transaction=True)
def test_it_records_ticks_decisions_orders_and_fills_from_a_simulated_session(settings):
    settings.MM_LOOP_INTERVAL_MS = 50
    session = _session()
    loop = QuotingLoop(session.pk)
    outcome = loop.run(max_seconds=12)
    assert outcome == "time_limit"
    assert TradeTick.objects.filter(instrument=session.instrument).count() > 20
    assert QuoteTick.objects.filter(instrument=session.instrument).count() > 20
    decisions = QuoteDecisionRecord.objects.filter(session=session)
    quoted = decisions.exclude(bid_px=None).exclude(ask_px=None)
    assert quoted.exists(), "never quoted both sides"
    d = quoted.last()
    for key in ("mid", "kappa", "sigma_spread", "sigma_inventory", "gamma", "q", "half_spread_frac", "skew_frac"):
        assert key in d.inputs, key
    assert d.bid_px < d.inputs["mid"] < d.ask_px
    warming = decisions.filter(bid_px=None).first()
    assert warming is not None and any("warming" in r for r in warming.reasons)
    assert Order.objects.filter(session=session).count() >= 2
    assert OrderEventRecord.objects.filter(session=session, kind="place").exists()
    assert FillRecord.objects.filter(session=session).exists(), "no fills in 12 s of simulated trading"
    # the loop ended: it cancelled everything and released the lease
    assert not Order.objects.filter(session=session, status__in=Order.OPEN_STATUSES).exists()
    session.refresh_from_db()
    assert session.lease_owner == ""
    assert session.last_state["fills"] == FillRecord.objects.filter(session=session).count()


@pytest.mark.django_db(transaction=True)
def test_a_second_loop_for_the_same_session_does_not_start():
    session = _session()
    first = QuotingLoop(session.pk)
    thread = _run_in_thread(first, 4)
    time.sleep(1.0)
    second = QuotingLoop(session.pk)
    assert second.run(max_seconds=1) == "lease_held_elsewhere"
    thread.join()
    assert AuditEvent.objects.filter(session=session, action="loop.start").count() == 1
    assert AuditEvent.objects.filter(session=session, action="loop.lease_held").count() == 1


@pytest.mark.django_db(transaction=True)
def test_the_kill_switch_cancels_every_open_order_and_nothing_is_sent_until_rearmed(operator):
    from apps.control.services import rearm_session, resume_session, stop_session

    session = _session()
    loop = QuotingLoop(session.pk)
    thread = _run_in_thread(loop, 60)
    try:
        assert _wait(lambda: Order.objects.filter(session=session, status="open").exists(), 20)
        halt_session(Actor(label="test"), session.pk, "test kill switch")
        t_halt = time.time_ns()
        assert _wait(lambda: not Order.objects.filter(session=session, status__in=Order.OPEN_STATUSES).exists(), 5), (
            "orders still open after the halt"
        )
        time.sleep(1.5)  # the loop keeps running, halted: nothing new may go out
        assert thread.is_alive()
        late = OrderEventRecord.objects.filter(session=session, kind="place", ts_ns__gt=t_halt + 200_000_000)
        assert not late.exists(), "an order was sent while HALTED"
        assert OrderEventRecord.objects.filter(session=session, kind="blocked").exists()
        session.refresh_from_db()
        assert session.status == TradingSession.Status.HALTED
        assert AuditEvent.objects.filter(session=session, action="session.halt", reason="test kill switch").exists()
        # a rule or a system actor cannot re-arm; an operator with a reason can, and the session comes back paused
        with pytest.raises(Exception, match="only an operator"):
            rearm_session(Actor(label="risk-rule"), session.pk, "try")
        rearm_session(Actor.of(operator), session.pk, "checked, fine")
        resume_session(Actor.of(operator), session.pk, "go")
        t_resume = time.time_ns()
        assert _wait(
            lambda: OrderEventRecord.objects.filter(session=session, kind="place", ts_ns__gt=t_resume).exists(), 10
        ), "no quoting after re-arm and resume"
        stop_session(Actor.of(operator), session.pk, "done")
        thread.join(10)
        assert not thread.is_alive() and loop.stats.outcome == "session_stopped"
        assert not Order.objects.filter(session=session, status__in=Order.OPEN_STATUSES).exists()
    finally:
        TradingSession.objects.filter(pk=session.pk).update(status="stopped")
        thread.join(10)


@pytest.mark.stack
@pytest.mark.django_db(transaction=True)
def test_a_redelivered_task_does_not_start_a_second_loop_on_a_real_worker(tmp_path, purge_queues):
    from apps.trading.tasks import run_quoting_session
    from tests.conftest import _stop, stack_env, start_worker

    session = _session()
    logs = tmp_path / "logs"
    logs.mkdir()
    worker = start_worker(stack_env(), logs, queues="quoting", concurrency=2)
    try:
        run_quoting_session.delay(session.pk)
        run_quoting_session.delay(session.pk)  # the same delivery again, as after a broker redelivery
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if AuditEvent.objects.filter(session=session, action="loop.lease_held").exists() and (
                FillRecord.objects.filter(session=session).exists()
            ):
                break
            time.sleep(0.2)
        assert AuditEvent.objects.filter(session=session, action="loop.start").count() == 1
        assert AuditEvent.objects.filter(session=session, action="loop.lease_held").count() == 1
        assert TradeTick.objects.filter(instrument=session.instrument).exists()
        assert FillRecord.objects.filter(session=session).exists()
        halt_session(Actor(label="test"), session.pk, "end of test")
        deadline = time.monotonic() + 10
        while (
            time.monotonic() < deadline
            and Order.objects.filter(session=session, status__in=Order.OPEN_STATUSES).exists()
        ):
            time.sleep(0.1)
        assert not Order.objects.filter(session=session, status__in=Order.OPEN_STATUSES).exists()
    finally:
        _stop({"worker": worker})


@pytest.mark.django_db(transaction=True)
def test_stop_with_flatten_closes_the_position_with_an_ioc_within_the_slippage_bound(operator):
    from apps.control.services import stop_session

    session = _session()
    loop = QuotingLoop(session.pk)
    thread = _run_in_thread(loop, 60)
    try:
        assert _wait(lambda: hasattr(loop, "core") and abs(loop.core.tracker.position) > 1e-9, 40), "no position"
        stop_session(Actor.of(operator), session.pk, "flatten test", flatten=True, max_slippage_bps=10.0)
        thread.join(20)
    finally:
        TradingSession.objects.filter(pk=session.pk).update(status="stopped")
        thread.join(10)
    assert loop.stats.outcome == "session_stopped"
    done = OrderEventRecord.objects.get(session=session, kind="flatten_done")
    assert abs(done.detail["position_after"]) < 1e-9
    flat_fills = FillRecord.objects.filter(session=session, client_order_id__contains="-flatten-")
    assert flat_fills.exists()
    q = sum(f.side * f.size for f in FillRecord.objects.filter(session=session))
    assert abs(q) < 1e-9, "fills in the database do not net to zero"
    limit = done.detail["limit"]
    for f in flat_fills:
        assert (f.price >= limit) if f.side < 0 else (f.price <= limit)
    assert not Order.objects.filter(session=session, status__in=Order.OPEN_STATUSES).exists()


class _DeadDatabaseWriter:
    """Stands in for the batched writer while PostgreSQL is away: it buffers and never manages to flush."""

    def __init__(self, limit: int) -> None:
        self.rows = 0
        self.limit = limit

    def add(self, *_a) -> None:
        self.rows += 1

    def upsert(self, *_a) -> None:
        self.rows += 1

    @property
    def overflowing(self) -> bool:
        return self.rows >= self.limit

    def start(self) -> None: ...
    def close(self) -> None: ...
    def flush_soon(self) -> None: ...


@pytest.mark.django_db(transaction=True)
def test_quoting_halts_when_the_record_buffer_would_overflow():
    session = _session()
    loop = QuotingLoop(session.pk, writer=_DeadDatabaseWriter(limit=300))
    outcome = loop.run(max_seconds=30)
    session.refresh_from_db()
    assert session.status == TradingSession.Status.HALTED
    assert "buffer overflow" in session.status_reason
    assert outcome in ("halted_by_loop", "time_limit")
    assert loop.core.tracker.open_orders() == []


@pytest.mark.django_db(transaction=True)
def test_the_global_kill_switch_stops_every_session_until_an_operator_rearms_it(operator):
    """Like a session's kill switch: while it is halted the loop publishes 'halted' with no resting quote, and its
    re-arm brings the session back PAUSED (nothing is sent until the operator resumes it)."""
    from apps.control.services import ControlError, halt_all, rearm_all, resume_session
    from apps.live.broadcast import render_session_state

    published: list[tuple[str, dict, str]] = []

    def publish(session_id: int, snapshot: dict, status: str) -> None:  # what the browsers would receive
        state = snapshot["state"]  # the snapshot's flat tiles (the same dict the session stores as last_state)
        published.append((status, state, render_session_state(session_id, snapshot, status)))

    session = _session()
    loop = QuotingLoop(session.pk, publish=publish)
    thread = _run_in_thread(loop, 60)
    try:
        assert _wait(lambda: Order.objects.filter(session=session, status="open").exists(), 30)
        assert _wait(lambda: any(s == "running" and st.get("bid_px") for s, st, _ in published), 5)
        halt_all(Actor(label="risk-desk"), "venue incident")
        t = time.time_ns()
        assert _wait(lambda: not Order.objects.filter(session=session, status__in=Order.OPEN_STATUSES).exists(), 5)
        time.sleep(1.0)
        assert not OrderEventRecord.objects.filter(session=session, kind="place", ts_ns__gt=t + 200_000_000).exists()
        status, state, html = published[-1]
        assert status == "halted" and state["open_orders"] == 0
        assert state.get("bid_px") is None and state.get("ask_px") is None  # not the model's wished-for quote
        assert 'id="v-bid">—<' in html and 'id="v-ask">—<' in html
        assert "not quoting: session halted" in html
        with pytest.raises(ControlError, match="only an operator"):
            rearm_all(Actor(label="risk-desk"), "ok now")
        rearm_all(Actor.of(operator), "incident over")
        t2 = time.time_ns()
        session.refresh_from_db()
        assert session.status == TradingSession.Status.PAUSED
        assert AuditEvent.objects.filter(session=session, action="session.pause", detail__by="global.armed").exists()
        time.sleep(1.0)
        assert not OrderEventRecord.objects.filter(session=session, kind="place", ts_ns__gt=t2).exists()
        assert published[-1][0] == "paused" and 'id="v-bid">—<' in published[-1][2]
        resume_session(Actor.of(operator), session.pk, "go")
        t3 = time.time_ns()
        assert _wait(lambda: OrderEventRecord.objects.filter(session=session, kind="place", ts_ns__gt=t3).exists(), 10)
        assert TradingSession.objects.get(pk=session.pk).status == TradingSession.Status.RUNNING
    finally:
        TradingSession.objects.filter(pk=session.pk).update(status="stopped")
        thread.join(15)
