"""The alert rules: what the sweep looks at, as findings (no writes here).

Two kinds of rule:

* **Event rules** read new :class:`~apps.trading.models.RiskEventRecord` rows (the engine's risk rules as they
  trip, written by the quoting loop's recorder): ``drawdown`` (the DrawdownRule), ``skew_alarm`` (the
  SkewAlarmRule) and ``risk_trip`` (any other rule whose action is halt, reduce or pull_quotes). Each new row is one
  occurrence.
* **State rules** read each live session's saved state (``TradingSession.last_state``, saved on every heartbeat,
  and ``heartbeat_at``): ``estimator_failed`` (κ or σ in a state named in ``MM_ALERT_ESTIMATOR_STATES``) and
  ``feed_stale`` (the loop's heartbeat older than ``MM_ALERT_HEARTBEAT_STALE_S``, or, with a fresh heartbeat, the
  latest market event older than ``MM_ALERT_FEED_STALE_S``). Each sweep that sees the condition is one occurrence.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings

from apps.ops.models import Alert
from apps.trading.models import RiskEventRecord, TradingSession

Rule, Severity = Alert.Rule, Alert.Severity
RISK_ACTIONS = ("halt", "reduce", "pull_quotes")
# sessions whose loop should be alive (it keeps reading the market while paused, reducing or halted)
LIVE_STATUSES = (
    TradingSession.Status.RUNNING,
    TradingSession.Status.PAUSED,
    TradingSession.Status.REDUCING,
    TradingSession.Status.HALTED,
)
ESTIMATORS = (("kappa", "κ", "kappa_state"), ("sigma", "σ", "sigma_state"))
MAX_EVENTS_PER_SWEEP = 5000


@dataclass(frozen=True)
class Finding:
    session_id: int | None
    rule: str
    subject: str
    severity: str
    message: str
    values: dict[str, Any] = field(default_factory=dict)
    persistent: bool = False  # a state rule: an acknowledged condition that persists is not raised again


def risk_event_findings(after_id: int | None, now: datetime) -> tuple[list[Finding], int | None]:
    """Findings from risk events after ``after_id`` (None: the first sweep reads the last ``MM_ALERT_LOOKBACK_S``),
    and the last id read."""
    rows = RiskEventRecord.objects.order_by("id")
    if after_id is None:
        rows = rows.filter(ts__gte=now - timedelta(seconds=settings.MM_ALERT_LOOKBACK_S))
    else:
        rows = rows.filter(id__gt=after_id)
    last_id = after_id
    findings = []
    for row in rows[:MAX_EVENTS_PER_SWEEP]:
        last_id = row.pk
        finding = _from_risk_event(row)
        if finding is not None:
            findings.append(finding)
    return findings, last_id


def _from_risk_event(row: RiskEventRecord) -> Finding | None:
    if row.action == "cleared":
        return None
    values = {"risk_rule": row.rule, "action": row.action, "risk_event_id": row.pk, **(row.values or {})}
    text = f"{row.rule} ({row.action}): {row.message}" if row.message else f"{row.rule} ({row.action})"
    if row.rule == "drawdown":
        return Finding(row.session_id, Rule.DRAWDOWN, row.rule, Severity.CRITICAL, f"Drawdown limit: {text}", values)
    if row.rule == "skew_alarm":
        return Finding(row.session_id, Rule.SKEW_ALARM, row.rule, Severity.WARNING, f"Skew alarm: {text}", values)
    if row.action in RISK_ACTIONS:
        severity = Severity.CRITICAL if row.action == "halt" else Severity.WARNING
        return Finding(row.session_id, Rule.RISK_TRIP, row.rule, severity, f"Risk rule tripped: {text}", values)
    return None


def session_state_findings(now: datetime) -> list[Finding]:
    findings: list[Finding] = []
    sessions = TradingSession.objects.filter(status__in=LIVE_STATUSES).exclude(mode=TradingSession.Mode.BACKTEST)
    for s in sessions.only("id", "name", "status", "heartbeat_at", "started_at", "last_state"):
        findings += _estimator_findings(s)
        findings += _feed_findings(s, now)
    return findings


def _estimator_findings(s: TradingSession) -> list[Finding]:
    out = []
    bad_states = set(settings.MM_ALERT_ESTIMATOR_STATES)
    state = s.last_state or {}
    for name, symbol, key in ESTIMATORS:
        value = state.get(key)
        if value in bad_states:
            out.append(
                Finding(
                    s.pk,
                    Rule.ESTIMATOR_FAILED,
                    name,
                    Severity.CRITICAL,
                    f"{symbol} estimator is {value} in session #{s.pk} {s.name}",
                    {"estimator": name, "state": value},
                    persistent=True,
                )
            )
    return out


def _feed_findings(s: TradingSession, now: datetime) -> list[Finding]:
    beat = s.heartbeat_at or s.started_at
    if beat is None:
        return []  # queued, never started: the dead-man's switch watches that
    heartbeat_age_s = (now - beat).total_seconds()
    limit = settings.MM_ALERT_HEARTBEAT_STALE_S
    if heartbeat_age_s > limit:
        message = f"no heartbeat from the quoting loop of session #{s.pk} {s.name} for {heartbeat_age_s:.1f} s"
        values = {"heartbeat_age_s": round(heartbeat_age_s, 3), "threshold_s": limit}
        return [Finding(s.pk, Rule.FEED_STALE, "heartbeat", Severity.CRITICAL, message, values, persistent=True)]
    ts_ns = (s.last_state or {}).get("ts_ns")
    limit = settings.MM_ALERT_FEED_STALE_S
    if ts_ns:
        feed_age_s = now.timestamp() - ts_ns / 1e9
        what = f"last market event {feed_age_s:.1f} s ago"
    else:
        feed_age_s = (now - s.started_at).total_seconds() if s.started_at else 0.0
        what = f"no market event in {feed_age_s:.1f} s"
    if feed_age_s <= limit:
        return []
    message = f"market feed of session #{s.pk} {s.name} is stale: {what}"
    values = {"feed_age_s": round(feed_age_s, 3), "threshold_s": limit}
    return [Finding(s.pk, Rule.FEED_STALE, "market", Severity.WARNING, message, values, persistent=True)]
