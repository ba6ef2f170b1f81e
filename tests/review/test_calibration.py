"""Calibration (issue 18): recovery of the simulator's parameters, the held-out split, the proposal page, and the
admin-only apply through the audited parameter path."""

from __future__ import annotations

import functools

import numpy as np
import pytest
from django.db import IntegrityError, transaction
from django.urls import reverse

from apps.control.models import AuditEvent, ParameterVersion
from apps.control.services import Actor, create_paper_session
from apps.engine.calibration.fit import CalibrationResult, calibrate, check_split, collect
from apps.engine.simulation.simulator import MarketSimulator, SimulatorParams
from apps.review import calibration_services as svc
from apps.review.models import CalibrationRun
from apps.trading.models import TradingSession
from tests.roles import make_user

NS = 1_000_000_000
TRUTH = SimulatorParams()
T0 = TRUTH.start_ts_ns
FIT = (T0, T0 + 900 * NS)
VAL = (T0 + 900 * NS, T0 + 1350 * NS)


@functools.cache
def _events(seed: int = 11) -> tuple:
    return tuple(MarketSimulator(TRUTH, seed=seed).events(until_ns=VAL[1]))


@functools.cache
def _result(seed: int = 11) -> CalibrationResult:
    ev = _events(seed)
    return calibrate(collect(ev, *FIT, tick_size=TRUTH.tick_size), collect(ev, *VAL, tick_size=TRUTH.tick_size))


def _covers(result: CalibrationResult, param: str, truth: float) -> None:
    e = result.estimate(param)
    assert e.ci_low <= truth <= e.ci_high, f"{param}: {truth} outside [{e.ci_low}, {e.ci_high}] (fit {e.new})"


# --- recovery on simulator data (SimulatorParams are the truth) --------------------------------------------


@pytest.mark.parametrize("seed", [11, 12])
def test_it_recovers_kappa_and_a_of_the_simulator_within_their_intervals(seed):
    r = _result(seed)
    _covers(r, "strategy.kappa_prior", TRUTH.kappa)
    _covers(r, "measured.A_per_s", TRUTH.arrival_rate_A)
    assert abs(r.estimate("strategy.kappa_prior").new / TRUTH.kappa - 1) < 0.05


def test_it_recovers_sigma_clean_and_total_within_their_intervals():
    r = _result()
    _covers(r, "measured.sigma_clean", TRUTH.sigma)  # the diffusion alone
    total = float(np.sqrt(TRUTH.sigma**2 + TRUTH.jump_intensity * TRUTH.jump_size_std**2))  # with the jumps
    _covers(r, "measured.sigma_total", total)


def test_what_the_simulator_leaves_out_is_found_absent():
    """No self-excitation, no impact, no predictive imbalance, constant σ: every such estimate's interval covers 0."""
    r = _result()
    _covers(r, "strategy.hawkes_prior_alpha_per_s", 0.0)
    e = r.estimate("strategy.adverse_selection_bps")  # markouts: the tape does not move the true mid
    assert e.ci_low <= 0.0 <= e.ci_high
    _covers(r, "strategy.imbalance_coef_bps", 0.0)
    _covers(r, "strategy.flow_coef_bps", 0.0)
    for name in ("volatility_regime", "thin_book", "flow_toxicity", "cascade_intensity"):
        _covers(r, f"strategy.risk_aversion.beta_{name}", 0.0)
    # the βs of our own position and P&L cannot be identified from market data: the prior is kept and said so
    kept = r.estimate("strategy.risk_aversion.beta_drawdown")
    assert not kept.proposed and kept.new == kept.old and "not identified" in kept.note


def test_the_fitted_values_score_better_than_the_priors_out_of_sample():
    scores = {s.name: s for s in _result().scores}
    assert scores["kappa"].out_fitted > scores["kappa"].out_old
    assert scores["adverse_selection"].out_fitted < scores["adverse_selection"].out_old
    assert np.isfinite(scores["sigma"].in_fitted) and np.isfinite(scores["sigma"].out_fitted)


# --- the split is by time and never overlaps ------------------------------------------------------------------


def test_a_change_is_proposed_only_where_the_data_contradict_the_old_value():
    for e in _result().estimates:
        if e.proposed and e.old is not None:
            assert not e.ci_low <= e.old <= e.ci_high, e.param
    inside = [e for e in _result().estimates if "inside the interval" in e.note]
    assert all(not e.proposed and e.ci_low <= e.old <= e.ci_high for e in inside)


def test_an_overlapping_validation_range_is_refused_naming_the_field():
    with pytest.raises(ValueError, match="validate_start must be at or after fit_end"):
        check_split(FIT[0], FIT[1], FIT[1] - 1, VAL[1])
    with pytest.raises(ValueError, match="fit_end must be after fit_start"):
        check_split(FIT[1], FIT[0], VAL[0], VAL[1])
    ev = _events()
    with pytest.raises(ValueError, match="validate_start"):
        calibrate(collect(ev, *FIT, tick_size=0.1), collect(ev, FIT[1] - 60 * NS, VAL[1], tick_size=0.1))
    check_split(FIT[0], FIT[1], FIT[1], VAL[1])  # adjacent is fine


@pytest.mark.django_db
def test_an_overlapping_run_is_refused_by_the_service_and_by_the_database():
    with pytest.raises(ValueError, match="validate_start"):
        svc.create_run(Actor(label="t"), fit=FIT, validate=(FIT[1] - NS, VAL[1]))
    with pytest.raises(IntegrityError), transaction.atomic():
        CalibrationRun.objects.create(
            source="x", fit_start_ns=FIT[0], fit_end_ns=FIT[1], validate_start_ns=FIT[1] - NS, validate_end_ns=VAL[1]
        )


def test_a_recording_split_fits_on_the_earlier_part_only():
    evs, fit, val = svc.recording_split(_events(), 0.7)
    assert fit[0] == evs[0].ts_local_ns and fit[1] == val[0] and val[1] > evs[-1].ts_local_ns
    with pytest.raises(ValueError, match="split"):
        svc.recording_split(_events(), 1.0)


# --- stored proposal, page, apply / reject ------------------------------------------------------------------


def _proposed_run(user=None) -> CalibrationRun:
    run = svc.create_run(Actor(label="t", user=user), fit=FIT, validate=VAL, source="simulator")
    run = svc.execute(run.pk, _events(), tick_size=TRUTH.tick_size)
    assert run.status == CalibrationRun.Status.PROPOSED, run.error
    return run


@pytest.fixture
def session() -> TradingSession:
    return create_paper_session(Actor(label="test"), name="calib", seed=3, start=False)


@pytest.mark.django_db
def test_the_list_and_the_proposal_page_show_old_new_intervals_scores_and_plots(client):
    run = _proposed_run()
    client.force_login(make_user("viewer"))
    page = client.get(reverse("review:calibration-list")).content.decode()
    assert f"#{run.pk}" in page and "proposed" in page
    page = client.get(reverse("review:calibration-detail", args=[run.pk])).content.decode()
    for text in ("strategy.adverse_selection_bps", "strategy.kappa_prior", "<svg", "out: fitted", "not identified"):
        assert text in page
    assert "strategy.risk_aversion.beta_drawdown" in page and "engine." not in page
    # review only: just what the estimators measure live (A, σ), and the page says so
    rows = [e for e in run.estimates if not e["settable"]]
    assert rows and all(e["param"].startswith("measured.") for e in rows)
    assert "Review only: the <code>measured.*</code> rows" in page
    assert "Apply</button>" not in page  # a viewer sees no decision form


@pytest.mark.django_db
def test_applying_writes_a_parameter_version_and_audit_rows(client, session):
    admin = make_user("admin")
    run = _proposed_run(admin)
    changes = run.changes()
    assert changes["strategy.adverse_selection_bps"] == 0.0  # the prior 0.5 bps is far outside the interval
    assert all(k.startswith("strategy.") for k in changes)  # every proposed value is a session parameter
    client.force_login(admin)
    assert "Apply</button>" in client.get(reverse("review:calibration-detail", args=[run.pk])).content.decode()
    resp = client.post(
        reverse("review:calibration-apply", args=[run.pk]), {"session_id": session.pk, "reason": "fitted on sim"}
    )
    assert resp.status_code == 302
    run.refresh_from_db()
    session.refresh_from_db()
    assert run.status == CalibrationRun.Status.APPLIED and run.applied_session_id == session.pk
    version = ParameterVersion.objects.get(session=session, version=run.applied_version)
    assert version.version == 2 and version.reason == "fitted on sim"
    assert session.params["strategy"]["adverse_selection_bps"] == 0.0
    # the γ βs and the estimator priors go through the same path: the version holds them, the engine runs them
    betas = {k.rsplit(".", 1)[1]: v for k, v in changes.items() if k.startswith("strategy.risk_aversion.")}
    assert betas and version.params["strategy"]["risk_aversion"] == betas
    assert version.params["strategy"]["kappa_prior"] == changes["strategy.kappa_prior"]
    assert version.changes["strategy.kappa_prior"][1] == changes["strategy.kappa_prior"]
    for name, beta in betas.items():
        assert version.changes[f"strategy.risk_aversion.{name}"] == [1.0, beta]
    from apps.trading.runtime import build_session_config

    strategy = build_session_config(version.params, 3).strategy
    assert strategy.risk_aversion.beta_volatility_regime == betas["beta_volatility_regime"]
    assert strategy.estimator_config(0.1).kappa.prior_kappa == changes["strategy.kappa_prior"]
    assert AuditEvent.objects.filter(session=session, action="params.change", detail__version=2).exists()
    assert AuditEvent.objects.filter(action="calibration.apply", detail__run=run.pk).exists()
    # applied once: a second apply is refused
    again = client.post(reverse("review:calibration-apply", args=[run.pk]), {"session_id": session.pk, "reason": "x"})
    assert again.status_code == 400 and b"applied" in again.content


@pytest.mark.django_db
def test_a_started_session_takes_the_live_values_and_the_audit_row_names_the_priors_left_out(session):
    TradingSession.objects.filter(pk=session.pk).update(status=TradingSession.Status.RUNNING)
    run = _proposed_run()
    changes = run.changes()
    priors = {k for k in changes if k.startswith(("strategy.kappa_", "strategy.hawkes_", "strategy.drift_obs_var"))}
    assert "strategy.kappa_prior" in priors
    version = svc.apply(Actor(label="admin"), run.pk, session.pk, "live βs")
    assert not priors & set(version.changes)
    assert (
        version.params["strategy"]["risk_aversion"]["beta_volatility_regime"]
        == (changes["strategy.risk_aversion.beta_volatility_regime"])
    )
    row = AuditEvent.objects.get(action="calibration.apply", detail__run=run.pk)
    assert set(row.detail["not_applied"]) == priors and "estimators are built" in row.detail["not_applied_why"]
    # a started session refuses a prior on its own, with the parameter path's message
    from apps.control import params
    from apps.control.audit import ControlError

    with pytest.raises(ControlError, match=r"strategy\.kappa_prior: cannot change once the session has started"):
        params.change(Actor(label="admin"), session.pk, {"strategy.kappa_prior": 3000.0}, "prior")


@pytest.mark.django_db
@pytest.mark.parametrize("role", ["viewer", "operator"])
def test_a_viewer_or_operator_cannot_apply_or_reject(client, session, role):
    run = _proposed_run()
    client.force_login(make_user(role))
    for name in ("calibration-apply", "calibration-reject"):
        resp = client.post(reverse(f"review:{name}", args=[run.pk]), {"session_id": session.pk, "reason": "x"})
        assert resp.status_code == 403
    run.refresh_from_db()
    assert run.status == CalibrationRun.Status.PROPOSED
    assert ParameterVersion.objects.filter(session=session).count() == 1


@pytest.mark.django_db
def test_bad_apply_input_is_refused_naming_the_field_and_reject_needs_a_reason(client, session):
    run = _proposed_run()
    client.force_login(make_user("admin"))
    url = reverse("review:calibration-apply", args=[run.pk])
    assert b"session_id" in client.post(url, {"reason": "x"}).content
    assert b"no session" in client.post(url, {"session_id": 999999, "reason": "x"}).content
    assert b"reason" in client.post(url, {"session_id": session.pk, "reason": " "}).content
    assert client.get(url).status_code == 405
    reject = reverse("review:calibration-reject", args=[run.pk])
    assert client.post(reject, {"reason": ""}).status_code == 400
    assert client.post(reject, {"reason": "not convinced"}).status_code == 302
    run.refresh_from_db()
    assert run.status == CalibrationRun.Status.REJECTED
    assert AuditEvent.objects.filter(action="calibration.reject", detail__run=run.pk).exists()


# --- manage.py calibrate on a stored range (through the replay of stored ticks) -----------------------------


def _iso(ns: int) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ns / NS, tz=UTC).isoformat()


STORED_END = T0 + 720 * NS


@pytest.fixture
def stored_instrument():
    """The simulator's first 12 minutes stored as quote and trade ticks (what an import or a recorder writes)."""
    from datetime import UTC, datetime

    from apps.engine.market.events import BestBidAsk, Trade
    from apps.marketdata.models import Instrument, QuoteTick, TradeTick

    inst = Instrument.objects.create(venue="sim", symbol="CALIB-TEST", tick_size=0.1, lot_size=0.001)
    quotes, trades = [], []
    for e in _events():
        if e.ts_local_ns >= STORED_END:
            break
        ts = datetime.fromtimestamp(e.ts_exch_ns / NS, tz=UTC)
        common = {"instrument": inst, "ts": ts, "ts_exch_ns": e.ts_exch_ns, "ts_local_ns": e.ts_local_ns}
        if type(e) is BestBidAsk:
            quotes.append(
                QuoteTick(bid_px=e.bid_px, bid_size=e.bid_size, ask_px=e.ask_px, ask_size=e.ask_size, **common)
            )
        elif type(e) is Trade:
            trades.append(TradeTick(price=e.price, size=e.size, aggressor=int(e.aggressor), **common))
    QuoteTick.objects.bulk_create(quotes, batch_size=5000)
    TradeTick.objects.bulk_create(trades, batch_size=5000)
    return inst


@pytest.mark.django_db
def test_the_command_calibrates_a_stored_range_and_prints_a_table(stored_instrument):
    from io import StringIO

    from django.core.management import call_command
    from django.core.management.base import CommandError

    out = StringIO()
    args = ["calibrate", "--venue", "sim", "--symbol", "CALIB-TEST", "--fit-start", _iso(T0)]
    call_command(*args, "--fit-end", _iso(T0 + 480 * NS), "--validate-start", _iso(T0 + 480 * NS),
                 "--validate-end", _iso(STORED_END), stdout=out)  # fmt: skip
    text = out.getvalue()
    assert "strategy.kappa_prior" in text and "strategy.adverse_selection_bps" in text and "out fit" in text
    run = CalibrationRun.objects.get(instrument=stored_instrument)
    assert run.status == CalibrationRun.Status.PROPOSED
    kappa = next(e for e in run.estimates if e["param"] == "strategy.kappa_prior")
    # within 5 % (not the interval): stored ticks replay a trade BEFORE the top of book of the same local
    # nanosecond (selectors.iter_events' tie order), so some simulator prints pair with the previous mid
    assert abs(kappa["new"] / TRUTH.kappa - 1) < 0.05
    with pytest.raises(CommandError, match="validate_start"):
        call_command(*args, "--fit-end", _iso(T0 + 480 * NS), "--validate-start", _iso(T0 + 400 * NS),
                     "--validate-end", _iso(STORED_END))  # fmt: skip
    with pytest.raises(CommandError, match="--fit-end"):
        call_command(*args, "--fit-end", "yesterday", "--validate-start", _iso(T0), "--validate-end", _iso(STORED_END))
    with pytest.raises(CommandError, match="--venue/--symbol"):
        call_command("calibrate", "--venue", "sim", "--symbol", "NOPE", "--fit-start", _iso(T0))


@pytest.mark.django_db
def test_the_celery_task_runs_a_queued_stored_range_run(stored_instrument):
    from apps.review.tasks import run_calibration

    run = svc.create_run(
        Actor(label="t"), fit=(T0, T0 + 480 * NS), validate=(T0 + 480 * NS, STORED_END),
        instrument_id=stored_instrument.pk,
    )  # fmt: skip
    assert run.status == CalibrationRun.Status.QUEUED
    run_calibration.apply(args=[run.pk])  # the task body, in this process (a worker runs the same function)
    run.refresh_from_db()
    assert run.status == CalibrationRun.Status.PROPOSED and run.scores and "kappa" in run.plots
