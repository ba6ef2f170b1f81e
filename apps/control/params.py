"""The single writer of a session's parameters: versioned, validated by the engine, audited, pushed after commit.

A session's parameters are its ``params`` JSON (sections sim, strategy, venue, risk, feed, replay; see
:func:`apps.trading.runtime.build_session_config`). Every change makes a new :class:`ParameterVersion` (1, 2, ...):
:func:`change` sets fields by dotted path (``{"strategy.gamma": 4000, "risk.drawdown.max_drawdown_frac": 0.02}``;
``None`` removes an override, so the engine's default applies), :func:`revert` restores an earlier version as a
new one. Both run in one transaction (version row, session params and number, audit row) and push a ``params``
event to the session's browsers after commit. The running loop sees the new number in its next control read and
applies it (:meth:`apps.trading.loop.QuotingLoop._apply_params`).

What applies to a running session (any status but CREATED): the ``strategy`` section except the estimator
fields (:data:`apps.engine.core.ESTIMATOR_FIELDS`: windows, refresh schedule and the κ, drift and Hawkes priors),
the γ model's βs included (``strategy.risk_aversion.beta_<feature>``), and the ``risk`` section. The simulator,
venue, feed and replay, and the estimators, are built once when the loop starts: they may change only while the
session is CREATED. A stopped or failed session, and a backtest, keep the parameters they ran with.
"""

from __future__ import annotations

import copy
import dataclasses
import enum
import logging
import math
import re
import time
from typing import Any

from django.db import transaction

from apps.control import audit
from apps.control.audit import ControlError, check_reason
from apps.control.models import ParameterVersion
from apps.control.services import Actor
from apps.trading.models import TradingSession

logger = logging.getLogger(__name__)

LIVE_SECTIONS = ("strategy", "risk")
START_ONLY_SECTIONS = {
    "sim": "the market simulator is built once, when the session's loop starts",
    "venue": "the paper venue is built once, when the session's loop starts",
    "feed": "the feed is built once, when the session's loop starts",
    "replay": "the recording a replay plays is loaded once, when the session's loop starts",
}
ESTIMATORS_WHY = "the estimators are built from it once, when the loop starts (a new one would start cold)"

__all__ = ["LIVE_SECTIONS", "change", "effective", "ensure_initial", "history", "record_initial", "revert"]


# --- reads ---------------------------------------------------------------------------------------------------


def effective(params: dict[str, Any], seed: int) -> dict[str, Any]:
    """Every value the engine runs with for ``params``, engine defaults included, by dotted path (JSON-safe).

    Raises ValueError (the engine's message) when ``params`` do not validate."""
    from apps.engine.risk.session import build_risk_engine
    from apps.trading.runtime import build_session_config

    config = build_session_config(params, seed)
    strategy = config.strategy.as_dict()
    risk_aversion = strategy.pop("risk_aversion")
    out: dict[str, Any] = {f"strategy.{k}": v for k, v in strategy.items()}
    out.update({f"strategy.risk_aversion.{k}": v for k, v in risk_aversion.items()})
    engine, capital = build_risk_engine(config.risk, config.strategy.max_inventory)
    out["risk.capital_quote"] = capital
    for rule in engine.rules:
        out.update(
            {f"risk.{rule.kind}.{f.name}": getattr(rule.params, f.name) for f in dataclasses.fields(rule.params)}
        )
    for section, obj in (("sim", config.sim), ("venue", config.venue), ("feed.backoff", config.backoff)):
        out.update({f"{section}.{f.name}": getattr(obj, f.name) for f in dataclasses.fields(obj)})
    out["feed.outages"] = [list(o) for o in config.outages]
    if config.replay is not None:
        out.update({f"replay.{k}": v for k, v in config.replay.items()})
    return {k: _json_safe(v) for k, v in out.items()}


def _json_safe(v: Any) -> Any:
    if isinstance(v, enum.Enum):
        return v.value
    if isinstance(v, tuple):
        return [_json_safe(x) for x in v]
    if isinstance(v, float) and not math.isfinite(v):
        return repr(v)  # "inf": PostgreSQL's jsonb has no infinity
    return v


def history(session: TradingSession) -> list[ParameterVersion]:
    """The session's versions, newest first (version 1 created on first read for sessions older than versions)."""
    ensure_initial(session)
    return list(ParameterVersion.objects.filter(session=session).select_related("actor").order_by("-version"))


def ensure_initial(session: TradingSession) -> None:
    """Sessions created before versioning (or outside :func:`apps.control.services.create_paper_session`) get
    their current params recorded as their current version, once."""
    if not ParameterVersion.objects.filter(session=session).exists():
        ParameterVersion.objects.get_or_create(
            session=session,
            version=session.params_version,
            defaults={
                "params": session.params,
                "actor_label": "system",
                "reason": "parameters in force when versioning started",
            },
        )


def record_initial(actor: Actor, session: TradingSession) -> ParameterVersion:
    """Version 1: the session's params at creation (called by ``create_paper_session`` in its transaction)."""
    return ParameterVersion.objects.create(
        session=session,
        version=1,
        params=session.params,
        actor=actor.user,
        actor_label=actor.label,
        reason="session created",
    )


# --- writes ---------------------------------------------------------------------------------------------------


def change(actor: Actor, session_id: int, changes: dict[str, Any], reason: str) -> ParameterVersion:
    """Set fields by dotted path (``None`` = back to the engine's default) as a new version. Raises ControlError
    naming the field when the engine refuses a value or the field cannot change now; nothing is written then."""
    check_reason(reason, required=True, what="a parameter change")
    if not isinstance(changes, dict) or not changes:
        raise ControlError("no parameter given to change")
    with transaction.atomic():
        session = _lock(session_id)
        new = copy.deepcopy(session.params) if isinstance(session.params, dict) else {}
        for path, value in changes.items():
            _set(new, _check_path(path), value)
        return _write(actor, session, new, reason, "params.change")


def revert(actor: Actor, session_id: int, version: int, reason: str) -> ParameterVersion:
    """Make an earlier version's params the current ones again, as a new version that says which it restores."""
    check_reason(reason, required=True, what="a parameter revert")
    with transaction.atomic():
        session = _lock(session_id)
        target = ParameterVersion.objects.filter(session=session, version=version).first()
        if target is None:
            raise ControlError(f"session #{session_id} has no parameter version {version}")
        if version == session.params_version:
            raise ControlError(f"version {version} is the current one: nothing to revert")
        return _write(actor, session, copy.deepcopy(target.params), reason, "params.revert", reverted_from=version)


def _lock(session_id: int) -> TradingSession:
    try:
        session = TradingSession.objects.select_for_update().get(pk=session_id)
    except TradingSession.DoesNotExist:
        raise ControlError(f"no session #{session_id}") from None
    if session.mode == TradingSession.Mode.BACKTEST:
        raise ControlError("a backtest's parameters are the record of what it ran: start a new backtest instead")
    if session.status in (TradingSession.Status.STOPPED, TradingSession.Status.FAILED):
        raise ControlError(f"session #{session_id} is {session.status}: its parameters are the record of its run")
    ensure_initial(session)
    return session


def _write(
    actor: Actor,
    session: TradingSession,
    new: dict[str, Any],
    reason: str,
    action: str,
    reverted_from: int | None = None,
) -> ParameterVersion:
    try:
        before = effective(session.params, int(session.seed))
    except ValueError:
        before = {}  # stored before validation existed: every value the new set has counts as changed
    try:
        after = effective(new, int(session.seed))
    except ValueError as exc:
        raise ControlError(field_error(str(exc))) from None
    diff = {
        k: [before.get(k), after.get(k)] for k in sorted(before.keys() | after.keys()) if before.get(k) != after.get(k)
    }
    if not diff:
        raise ControlError(f"nothing changes: these are the values in force (version {session.params_version})")
    if session.status != TradingSession.Status.CREATED:
        for path in diff:
            why = _start_only(path)
            if why:
                raise ControlError(f"{path}: cannot change once the session has started ({session.status}): {why}")
    version = ParameterVersion.objects.create(
        session=session,
        version=session.params_version + 1,
        params=new,
        actor=actor.user,
        actor_label=actor.label,
        reason=reason,
        changes=diff,
        reverted_from=reverted_from,
    )
    TradingSession.objects.filter(pk=session.pk).update(params=new, params_version=version.version)
    detail: dict[str, Any] = {"version": version.version, "changes": diff}
    if reverted_from is not None:
        detail["reverted_from"] = reverted_from
    audit.record(actor.label, actor.user, action, session, reason, **detail)
    event = {"kind": "params", "ts_ns": 0, "actor": actor.label, "reason": reason, **detail}
    transaction.on_commit(lambda: _publish(session.pk, event))
    return version


def _publish(session_id: int, event: dict[str, Any]) -> None:
    from apps.live.broadcast import publish_session_event

    # committed in PostgreSQL; a Redis outage delays the browsers' marker, never undoes the change
    try:
        publish_session_event(session_id, {**event, "ts_ns": time.time_ns()})
    except Exception as exc:  # noqa: BLE001 - any broker error
        logger.warning("session %s: params event not sent (%s)", session_id, exc)


# --- paths and messages ---------------------------------------------------------------------------------------


def _known_paths() -> dict[str, set[str]]:
    """Section (``strategy``, ``risk.<kind>``, ...) -> its field names."""
    from apps.engine.core import FLAT_QUOTER_NAMES, RISK_AVERSION_FIELDS, StrategyParams
    from apps.engine.execution.paper import PaperVenueConfig
    from apps.engine.market.feeds import BackoffParams
    from apps.engine.risk.session import OPTIONAL_RULES, RULES
    from apps.engine.simulation.simulator import SimulatorParams

    out = {"strategy": set(FLAT_QUOTER_NAMES) | {f.name for f in dataclasses.fields(StrategyParams)} - {"quoter"}}
    out["strategy.risk_aversion"] = set(RISK_AVERSION_FIELDS)
    for cls in (*RULES, *OPTIONAL_RULES):
        out[f"risk.{cls.kind}"] = {f.name for f in dataclasses.fields(cls().params)}
    out["sim"] = {f.name for f in dataclasses.fields(SimulatorParams)}
    out["venue"] = {f.name for f in dataclasses.fields(PaperVenueConfig)}
    out["feed.backoff"] = {f.name for f in dataclasses.fields(BackoffParams)}
    return out


def _check_path(path: Any) -> list[str]:
    if not isinstance(path, str) or not re.fullmatch(r"[a-z_]+(\.[A-Za-z0-9_]+)+", path):
        raise ControlError(f"{path!r}: not a parameter (expected a dotted path such as strategy.gamma)")
    if path in ("risk.capital_quote", "feed.outages") or path.startswith("replay."):
        return path.split(".")
    section, _, name = path.rpartition(".")
    known = _known_paths()
    if section not in known:
        sections = sorted({s.split(".")[0] for s in known} | {"replay"})
        if section.startswith("risk."):
            kinds = sorted(s.removeprefix("risk.") for s in known if s.startswith("risk."))
            raise ControlError(f"{path}: unknown risk rule {section.removeprefix('risk.')!r}; known: {kinds}")
        raise ControlError(f"{path}: unknown section; known: {sections}")
    if name not in known[section]:
        raise ControlError(f"{path}: unknown parameter; {section} has {sorted(known[section])}")
    return path.split(".")


def _set(params: dict[str, Any], keys: list[str], value: Any) -> None:
    if isinstance(value, float) and not math.isfinite(value):
        raise ControlError(f"{'.'.join(keys)}: must be a finite number, got {value!r} (leave it empty for the default)")
    node = params
    for key in keys[:-1]:
        child = node.get(key)
        if not isinstance(child, dict):
            child = node[key] = {}
        node = child
    if value is None:
        node.pop(keys[-1], None)
        _prune(params, keys[:-1])
    else:
        node[keys[-1]] = value


def _prune(params: dict[str, Any], keys: list[str]) -> None:
    """Drop the objects a reset left empty (``{"risk": {"drawdown": {}}}`` -> ``{}``)."""
    for depth in range(len(keys), 0, -1):
        parent = params
        for key in keys[: depth - 1]:
            parent = parent[key]
        if parent.get(keys[depth - 1]) == {}:
            del parent[keys[depth - 1]]


def _start_only(path: str) -> str:
    from apps.engine.core import ESTIMATOR_FIELDS

    section = path.split(".")[0]
    if section in START_ONLY_SECTIONS:
        return START_ONLY_SECTIONS[section]
    if section == "strategy" and path.split(".", 1)[1] in ESTIMATOR_FIELDS:
        return ESTIMATORS_WHY
    return ""


_OWNER_FIELD = re.compile(r"^params\.([\w.]+): (?:\w+(?:Params|Config)\.)?([\w.]+) (must .*)$", re.S)
_SECTION_FIELD = re.compile(r"^params\.([\w.]+) (must .*)$", re.S)


def field_error(message: str) -> str:
    """The engine's message with the field as a dotted path first: ``params.strategy: StrategyParams.gamma must be
    > 0, got -1`` -> ``strategy.gamma: must be > 0, got -1``."""
    m = _OWNER_FIELD.match(message)
    if m:
        return f"{m[1]}.{m[2]}: {m[3]}"
    m = _SECTION_FIELD.match(message)
    if m:
        return f"{m[1]}: {m[2]}"
    return message.removeprefix("params.")
