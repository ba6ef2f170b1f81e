"""Calibration runs: create (range checked), execute (fit + validate, pure engine code), apply or reject.

Applying goes through :func:`apps.control.params.change`, the only writer of a session's parameters (a new
ParameterVersion and its ``params.change`` audit row), plus a ``calibration.apply`` audit row naming the run;
nothing is ever applied automatically. Every proposed value is a session parameter; the κ, drift and Hawkes priors
are estimator fields, so a session that has already started takes the rest and the audit row names those left out
(``not_applied``).
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from django.db import transaction
from django.utils import timezone

from apps.control import audit
from apps.control.audit import ControlError, check_reason
from apps.control.services import Actor
from apps.engine.calibration.fit import CalibrationConfig, CalibrationResult, calibrate, check_split, collect
from apps.review.models import CalibrationRun

__all__ = ["apply", "create_run", "execute", "queue", "recording_split", "reject", "run_on_events"]


def baseline_strategy(preset: str) -> dict[str, Any]:
    """The ``strategy`` values a preset sets (the old values of the proposal; the engine defaults elsewhere)."""
    from apps.control.presets import preset_params

    return dict(preset_params(preset).get("strategy", {}))


def run_on_events(
    events: Iterable[Any],
    fit: tuple[int, int],
    validate: tuple[int, int],
    *,
    tick_size: float = 0.0,
    preset: str = "default",
) -> CalibrationResult:
    """Fit on ``fit`` and score on ``validate`` (ns ranges of local time) from one time-ordered event stream."""
    check_split(fit[0], fit[1], validate[0], validate[1])
    evs = list(events)
    fit_s = collect(evs, fit[0], fit[1], tick_size=tick_size)
    val_s = collect(evs, validate[0], validate[1], tick_size=fit_s.tick_size)
    return calibrate(fit_s, val_s, CalibrationConfig(baseline=baseline_strategy(preset)))


def create_run(
    actor: Actor,
    *,
    fit: tuple[int, int],
    validate: tuple[int, int],
    instrument_id: int | None = None,
    source: str = "stored",
    preset: str = "default",
) -> CalibrationRun:
    """A QUEUED run; ValueError naming the field when the ranges are empty or the validation overlaps the fit."""
    check_split(fit[0], fit[1], validate[0], validate[1])
    baseline_strategy(preset)  # ValueError naming the known presets
    return CalibrationRun.objects.create(
        instrument_id=instrument_id,
        source=source,
        fit_start_ns=fit[0],
        fit_end_ns=fit[1],
        validate_start_ns=validate[0],
        validate_end_ns=validate[1],
        baseline_preset=preset,
        created_by=actor.user,
    )


def queue(run: CalibrationRun) -> None:
    """Run it on a Celery worker after the creating transaction commits."""
    from apps.review.tasks import run_calibration

    transaction.on_commit(lambda: run_calibration.delay(run.pk))


def execute(run_id: int, events: Iterable[Any] | None = None, *, tick_size: float = 0.0) -> CalibrationRun:
    """Fit and validate a stored run (events from the stored range unless given) and store the proposal."""
    run = CalibrationRun.objects.select_related("instrument").get(pk=run_id)
    CalibrationRun.objects.filter(pk=run_id).update(status=CalibrationRun.Status.RUNNING)
    try:
        if events is None:
            if run.instrument is None:
                raise ValueError("instrument: a stored-range calibration needs an instrument")
            from apps.marketdata.replay import replay

            events = replay(run.instrument_id, run.fit_start_ns, run.validate_end_ns)
        tick = tick_size or (run.instrument.tick_size if run.instrument else 0.0)
        result = run_on_events(
            events,
            (run.fit_start_ns, run.fit_end_ns),
            (run.validate_start_ns, run.validate_end_ns),
            tick_size=tick,
            preset=run.baseline_preset,
        )
    except (ValueError, OSError) as exc:
        run.status, run.error = CalibrationRun.Status.FAILED, str(exc)
        run.save(update_fields=["status", "error"])
        return run
    run.estimates = [e.as_dict() for e in result.estimates]
    run.scores = [s.as_dict() for s in result.scores]
    run.plots = result.plots
    run.summary = result.summary
    run.status = CalibrationRun.Status.PROPOSED
    run.save(update_fields=["estimates", "scores", "plots", "summary", "status"])
    return run


def recording_split(events: Iterable[Any], split: float) -> tuple[list[Any], tuple[int, int], tuple[int, int]]:
    """Events of a recording and its time split: fit on the first ``split`` of the time span, validate on the rest."""
    if not 0.0 < split < 1.0:
        raise ValueError(f"split must be between 0 and 1 (exclusive), got {split!r}")
    evs = [e for e in events if hasattr(e, "ts_local_ns")]
    if len(evs) < 2:
        raise ValueError("data: fewer than 2 market events in the recording")
    t0, t1 = evs[0].ts_local_ns, evs[-1].ts_local_ns + 1
    cut = t0 + int((t1 - t0) * split)
    return evs, (t0, cut), (cut, t1)


def merged(streams: list[Iterator[Any]]) -> Iterator[Any]:
    return heapq.merge(*streams, key=lambda e: e.ts_local_ns) if len(streams) > 1 else streams[0]


def parse_recordings(paths: list[Path], fmt: str) -> Iterator[Any]:
    from apps.marketdata.parsers import parse_file

    return merged([(e for e in parse_file(fmt, p) if hasattr(e, "ts_local_ns")) for p in paths])


def apply(actor: Actor, run_id: int, session_id: int, reason: str) -> Any:
    """Apply a PROPOSED run's changes to a session as a new parameter version (audited); returns the version.
    ControlError naming the problem when the run is not proposed, proposes nothing, or the engine refuses a value."""
    check_reason(reason, required=True, what="applying a calibration")
    from apps.control import params

    with transaction.atomic():
        run = CalibrationRun.objects.select_for_update().get(pk=run_id)
        if run.status != CalibrationRun.Status.PROPOSED:
            raise ControlError(f"calibration #{run.pk} is {run.status}, only a proposed one can be applied")
        changes = run.changes()
        if not changes:
            raise ControlError(f"calibration #{run.pk} proposes no session parameter change")
        changes, left_out = split_for_session(changes, session_id)
        if not changes:
            raise ControlError(
                f"calibration #{run.pk} proposes only estimator priors ({', '.join(sorted(left_out))}), which are set "
                f"before a session starts and session #{session_id} has started: apply it to a new session"
            )
        version = params.change(actor, session_id, changes, reason)
        run.status = CalibrationRun.Status.APPLIED
        run.decided_by, run.decided_at, run.decision_reason = actor.user, timezone.now(), reason
        run.applied_session_id, run.applied_version = session_id, version.version
        run.save()
        audit.record(
            actor.label,
            actor.user,
            "calibration.apply",
            version.session,
            reason,
            run=run.pk,
            version=version.version,
            changes=changes,
            **({"not_applied": left_out, "not_applied_why": params.ESTIMATORS_WHY} if left_out else {}),
        )
    return version


def split_for_session(changes: dict[str, float], session_id: int) -> tuple[dict[str, float], dict[str, float]]:
    """(the changes a session takes now, the estimator priors it cannot take): a session that has started keeps its
    estimators (:data:`apps.engine.core.ESTIMATOR_FIELDS`), so their priors are left out and named in the audit row;
    a session not yet started takes everything."""
    from apps.engine.core import ESTIMATOR_FIELDS
    from apps.trading.models import TradingSession

    status = TradingSession.objects.filter(pk=session_id).values_list("status", flat=True).first()
    if status is None or status == TradingSession.Status.CREATED:
        return dict(changes), {}  # a missing session: params.change names the problem
    estimator_paths = {f"strategy.{name}" for name in ESTIMATOR_FIELDS}
    now = {k: v for k, v in changes.items() if k not in estimator_paths}
    return now, {k: v for k, v in changes.items() if k in estimator_paths}


def reject(actor: Actor, run_id: int, reason: str) -> CalibrationRun:
    check_reason(reason, required=True, what="rejecting a calibration")
    with transaction.atomic():
        run = CalibrationRun.objects.select_for_update().get(pk=run_id)
        if run.status != CalibrationRun.Status.PROPOSED:
            raise ControlError(f"calibration #{run.pk} is {run.status}, only a proposed one can be rejected")
        run.status = CalibrationRun.Status.REJECTED
        run.decided_by, run.decided_at, run.decision_reason = actor.user, timezone.now(), reason
        run.save()
        audit.record(actor.label, actor.user, "calibration.reject", None, reason, run=run.pk)
    return run
