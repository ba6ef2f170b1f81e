"""The session's parameter page: the form generated from the engine's dataclasses, the version history, revert.

Thin: reads through :mod:`apps.control.params` / :mod:`apps.control.param_form`, writes only through
:func:`apps.control.params.change` and :func:`~apps.control.params.revert`. Any role reads; only an admin posts.
A page (htmx) gets the panel back, with the error naming the field on a 400; an API client (``Accept:
application/json``) sends ``{"changes": {"strategy.gamma": 4000}, "reason": "..."}`` as JSON and gets JSON.
"""

from __future__ import annotations

import json
from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, render
from django.views.decorators.http import require_GET

from apps.control import params as param_service
from apps.control.audit import ControlError
from apps.control.param_form import FormError, display, form_fields, overridden_paths, submitted_changes
from apps.control.params import LIVE_SECTIONS, field_error
from apps.control.services import Actor
from apps.dashboard.access import admin_view, read_view, wants_json
from apps.trading.models import TradingSession

GROUP_TITLES = {
    "strategy": "Strategy: quoting (applies at the loop's next step)",
    "strategy (estimators)": "Strategy: estimators (set before the session starts)",
    "risk": "Risk: capital (applies at the loop's next step)",
}


@read_view
@require_GET
def parameters(request: HttpRequest, session_id: int) -> HttpResponse:
    session = get_object_or_404(TradingSession.objects.select_related("instrument"), pk=session_id)
    if wants_json(request):
        return JsonResponse(_api_body(session))
    return render(request, "dashboard/parameters.html", _context(session))


@admin_view
def change(request: HttpRequest, session_id: int) -> HttpResponse:
    session = get_object_or_404(TradingSession, pk=session_id)
    posted: dict[str, str] = {}
    try:
        if request.content_type == "application/json":
            body = _json_body(request)
            changes, reason = body.get("changes"), body.get("reason", "")
            if not isinstance(reason, str):
                raise ControlError("reason must be a string")
        else:
            posted = {k: v for k, v in request.POST.items() if "." in k}
            changes, reason = _form_changes(session, posted), request.POST.get("reason", "")
        version = param_service.change(Actor.of(request.user), session_id, changes, reason.strip())
    except (ControlError, FormError) as exc:
        return _answer(request, session, error=str(exc), posted=posted)
    return _answer(request, session, done=f"saved as version {version.version}", version=version)


@admin_view
def revert(request: HttpRequest, session_id: int, version: int) -> HttpResponse:
    session = get_object_or_404(TradingSession, pk=session_id)
    if request.content_type == "application/json":
        try:
            reason = _json_body(request).get("reason", "")
        except ControlError as exc:
            return _answer(request, session, error=str(exc))
    else:
        reason = request.POST.get("reason", "")
    try:
        new = param_service.revert(Actor.of(request.user), session_id, version, str(reason).strip())
    except ControlError as exc:
        return _answer(request, session, error=str(exc))
    return _answer(request, session, done=f"version {version} restored as version {new.version}", version=new)


def _json_body(request: HttpRequest) -> dict[str, Any]:
    try:
        body = json.loads(request.body or b"{}")
    except ValueError:
        raise ControlError("the body is not valid JSON") from None
    if not isinstance(body, dict):
        raise ControlError('the body must be an object: {"changes": {...}, "reason": "..."}')
    return body


def _form_changes(session: TradingSession, posted: dict[str, str]) -> dict[str, Any]:
    """The form's fields that differ from what is in force; a dotted name the form does not have is refused."""
    paths = {f.path for f in form_fields()}
    stray = sorted(set(posted) - paths)
    if stray:
        raise FormError(f"{stray[0]}: not a field of this form (the JSON API sets any parameter)")
    in_force = _in_force(session)[0]
    changes = submitted_changes(posted, in_force, overridden_paths(session.params))
    if not changes:
        raise FormError("nothing changes: every value is the one in force")
    return changes


def _answer(
    request: HttpRequest,
    session: TradingSession,
    *,
    error: str = "",
    done: str = "",
    version: Any = None,
    posted: dict[str, str] | None = None,
) -> HttpResponse:
    status = 400 if error else 200
    session.refresh_from_db()
    if wants_json(request):
        if error:
            return JsonResponse({"error": error, "version": session.params_version}, status=status)
        return JsonResponse(
            {
                "session": session.pk,
                "version": version.version,
                "changes": version.changes,
                "reverted_from": version.reverted_from,
            }
        )
    ctx = _context(session, error=error, done=done, posted=posted or {})
    if request.headers.get("HX-Request"):
        return render(request, "dashboard/partials/parameters_panel.html", ctx, status=status)
    return render(request, "dashboard/parameters.html", ctx, status=status)


def _in_force(session: TradingSession) -> tuple[dict[str, Any], str]:
    try:
        return param_service.effective(session.params, int(session.seed)), ""
    except ValueError as exc:  # stored before validation: shown, and the first edit must fix it
        return {}, field_error(str(exc))


def _context(
    session: TradingSession, *, error: str = "", done: str = "", posted: dict[str, str] | None = None
) -> dict[str, Any]:
    in_force, invalid = _in_force(session)
    overridden = overridden_paths(session.params)
    started = session.status != TradingSession.Status.CREATED
    posted = posted or {}
    groups: list[dict[str, Any]] = []
    for f in form_fields():
        if not groups or groups[-1]["name"] != f.group:
            groups.append(
                {"name": f.group, "title": GROUP_TITLES.get(f.group, f"Risk rule: {f.group[5:]}"), "rows": []}
            )
        value = posted[f.path] if f.path in posted else display(in_force.get(f.path, f.default))
        groups[-1]["rows"].append(
            {
                "f": f,
                "value": value,
                "default": display(f.default),
                "overridden": f.path in overridden,
                "locked": started and not f.live,
            }
        )
    fixed = {k: v for k, v in (session.params or {}).items() if k not in LIVE_SECTIONS}
    return {
        "session": session,
        "groups": groups,
        "versions": param_service.history(session),
        "fixed": json.dumps(fixed, indent=1, sort_keys=True) if fixed else "",
        "started": started,
        "invalid": invalid,
        "error": error,
        "done": done,
    }


def _api_body(session: TradingSession) -> dict[str, Any]:
    in_force, invalid = _in_force(session)
    body: dict[str, Any] = {
        "session": session.pk,
        "version": session.params_version,
        "params": session.params,
        "in_force": in_force,
        "versions": [
            {
                "version": v.version,
                "ts": v.ts.isoformat(),
                "actor": v.actor_label,
                "reason": v.reason,
                "changes": v.changes,
                "reverted_from": v.reverted_from,
            }
            for v in param_service.history(session)
        ],
    }
    if invalid:
        body["invalid"] = invalid
    return body
