"""A parameter change reaches a running quoting loop at its next step, without a restart, and the next recorded
decision names the version it used; a revert brings the old value back the same way. The loop is driven one step
at a time on a stepped clock, against the real database and writer."""

from __future__ import annotations

import time

import pytest

from apps.control.models import AuditEvent
from apps.control.params import change, revert
from apps.control.services import Actor, create_paper_session
from apps.trading.loop import QuotingLoop
from apps.trading.models import QuoteDecisionRecord, TradingSession
from tests.roles import make_user

FAST = {"strategy": {"sigma_bucket_s": 0.25, "sigma_min_buckets": 8, "kappa_min_volume": 0.05}}
STEP_NS = 100_000_000


class SteppedClock:
    def __init__(self) -> None:
        self.t = time.time_ns()

    def __call__(self) -> int:
        return self.t


def _step(loop: QuotingLoop, clock: SteppedClock, n: int = 1) -> None:
    for _ in range(n):
        clock.t += STEP_NS
        assert loop.step()


def _quoting(loop: QuotingLoop, clock: SteppedClock, max_steps: int = 600) -> None:
    for _ in range(max_steps):
        _step(loop, clock)
        d = loop.core.last_decision
        if d is not None and d.bid_px is not None and d.ask_px is not None:
            return
    pytest.fail("the loop never quoted both sides")


def _last_recorded(loop: QuotingLoop, session: TradingSession) -> QuoteDecisionRecord:
    loop.writer.flush()
    return QuoteDecisionRecord.objects.filter(session=session).order_by("-ts_ns", "-id").first()


def _next_decision_with(loop, clock, session, version: int, max_steps: int = 50) -> QuoteDecisionRecord:
    for _ in range(max_steps):
        _step(loop, clock)
        d = _last_recorded(loop, session)
        if d is not None and d.inputs.get("params_version") == version:
            return d
    pytest.fail(f"no decision recorded with params_version {version}")


@pytest.mark.django_db(transaction=True)
def test_an_edit_reaches_the_running_loop_at_its_next_step_and_a_revert_restores_it():
    admin = make_user("admin", "params-admin")
    session = create_paper_session(Actor(label="t"), name="live-params", params=FAST, seed=7, start=False)
    clock = SteppedClock()
    loop = QuotingLoop(session.pk, clock=clock, publish=lambda *a: None)
    assert loop.start()
    try:
        _quoting(loop, clock)
        before = _last_recorded(loop, session)
        assert before.inputs["params_version"] == 1 and before.inputs["gamma_base"] == 5000.0

        v2 = change(Actor.of(admin), session.pk, {"strategy.gamma": 2000, "risk.capital_quote": 20000}, "tighter")
        assert v2.version == 2
        assert AuditEvent.objects.filter(session=session, action="params.change", actor=admin).exists()
        assert loop.core.quoter_params.gamma_base == 5000.0  # nothing changes until the loop's next step

        _step(loop, clock)
        assert loop.core.quoter_params.gamma_base == 2000
        assert loop.driver.risk.capital == 20000
        assert loop.sink.params_version == 2
        applied = AuditEvent.objects.get(session=session, action="params.applied")
        assert applied.detail["version"] == 2 and applied.detail["previous"] == 1

        d = _next_decision_with(loop, clock, session, 2)
        assert d.inputs["gamma_base"] == 2000

        revert(Actor.of(admin), session.pk, 1, "back")
        d = _next_decision_with(loop, clock, session, 3)
        assert d.inputs["gamma_base"] == 5000.0
        assert loop.core.quoter_params.gamma_base == 5000.0 and loop.driver.risk.capital == 10000.0
        assert loop.stats.outcome == ""  # the same run throughout: no restart
        assert AuditEvent.objects.filter(session=session, action="loop.start").count() == 1
    finally:
        TradingSession.objects.filter(pk=session.pk).update(status="stopped")
        loop.finish()


@pytest.mark.django_db(transaction=True)
def test_a_version_the_running_core_cannot_take_is_noted_once_and_the_loop_keeps_its_own():
    """Only a CREATED session may change its estimator fields; a version written then and found by a loop that
    already runs (a start racing an edit) is refused by the engine, noted, and not retried every step."""
    session = create_paper_session(Actor(label="t"), name="race", params=FAST, seed=8, start=False)
    clock = SteppedClock()
    loop = QuotingLoop(session.pk, clock=clock, publish=lambda *a: None)
    assert loop.start()
    try:
        _step(loop, clock, 3)
        TradingSession.objects.filter(pk=session.pk).update(status="created")
        change(Actor(label="a"), session.pk, {"strategy.kappa_window_s": 90}, "before start")
        TradingSession.objects.filter(pk=session.pk).update(status="running")
        _step(loop, clock, 3)
        assert loop.sink.params_version == 1 and loop.core.params.kappa_window_s == 60.0
        noted = AuditEvent.objects.filter(session=session, action="params.not_applied")
        assert noted.count() == 1 and "kappa_window_s" in noted.get().reason
    finally:
        TradingSession.objects.filter(pk=session.pk).update(status="stopped")
        loop.finish()


@pytest.mark.django_db(transaction=True)
def test_a_sessions_gamma_betas_shape_its_decisions_and_a_live_beta_edit_reaches_the_loop():
    """``strategy.risk_aversion`` βs set at creation are the ones each decision's γ contributions use; an edit of one
    reaches the running loop at its next step, like any live field, and the next decision uses it."""
    admin = make_user("admin", "beta-admin")
    params = {"strategy": {**FAST["strategy"], "risk_aversion": {"beta_estimator_uncertainty": 2.0}}}
    session = create_paper_session(Actor(label="t"), name="live-betas", params=params, seed=9, start=False)
    clock = SteppedClock()
    loop = QuotingLoop(session.pk, clock=clock, publish=lambda *a: None)
    assert loop.start()
    try:
        _quoting(loop, clock)
        d = _last_recorded(loop, session)
        x = d.inputs["gamma_x_estimator_uncertainty"]
        assert x > 0 and d.inputs["gamma_contrib_estimator_uncertainty"] == pytest.approx(2.0 * x)
        assert d.inputs["gamma_contrib_thin_book"] == pytest.approx(0.5 * d.inputs["gamma_x_thin_book"])  # default

        change(Actor.of(admin), session.pk, {"strategy.risk_aversion.beta_estimator_uncertainty": 0.0}, "switch off")
        assert loop.core.risk_params.beta_estimator_uncertainty == 2.0  # nothing changes until the next step
        _step(loop, clock)
        assert loop.core.risk_params.beta_estimator_uncertainty == 0.0 and loop.sink.params_version == 2
        d = _next_decision_with(loop, clock, session, 2)
        assert d.inputs["gamma_x_estimator_uncertainty"] > 0 and d.inputs["gamma_contrib_estimator_uncertainty"] == 0.0
        assert loop.stats.outcome == ""  # no restart
    finally:
        TradingSession.objects.filter(pk=session.pk).update(status="stopped")
        loop.finish()
