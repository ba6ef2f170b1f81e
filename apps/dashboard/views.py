from __future__ import annotations

from collections.abc import Callable

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, render
from django.views.decorators.http import require_GET, require_POST

from apps.control import services
from apps.control.models import AuditEvent, GlobalKillSwitch
from apps.control.services import Actor, ControlError
from apps.trading.models import FillRecord, Order, TradingSession


def _global_ctx() -> dict:
    return {"global_switch": GlobalKillSwitch.current()}


@login_required
@require_GET
def home(request: HttpRequest) -> HttpResponse:
    sessions = TradingSession.objects.select_related("instrument")[:200]
    return render(request, "dashboard/home.html", {"sessions": sessions, **_global_ctx()})


@login_required
@require_GET
def session_detail(request: HttpRequest, session_id: int) -> HttpResponse:
    session = get_object_or_404(TradingSession.objects.select_related("instrument"), pk=session_id)
    ctx = {
        "session": session,
        "audit": AuditEvent.objects.filter(session=session).select_related("actor")[:20],
        "recent_fills": FillRecord.objects.filter(session=session).order_by("-ts")[:15],
        "open_orders": Order.objects.filter(session=session, status__in=Order.OPEN_STATUSES).order_by("side"),
        **_global_ctx(),
    }
    return render(request, "dashboard/session.html", ctx)


@login_required
@require_GET
def controls(request: HttpRequest, session_id: int) -> HttpResponse:
    session = get_object_or_404(TradingSession, pk=session_id)
    return render(request, "dashboard/partials/control_card.html", {"session": session})


@login_required
@require_GET
def kill_switch(request: HttpRequest, session_id: int) -> HttpResponse:
    session = get_object_or_404(TradingSession, pk=session_id)
    confirm = request.GET.get("confirm") == "1"
    return render(request, "dashboard/partials/kill_switch.html", {"session": session, "confirm": confirm})


@login_required
@require_POST
def halt(request: HttpRequest, session_id: int) -> HttpResponse:
    """The kill switch. From the page (htmx) it answers with the panel; an API client sending
    ``Accept: application/json`` (session auth + CSRF token, like any write) gets JSON."""
    reason = request.POST.get("reason", "").strip()
    wants_json = "application/json" in request.headers.get("Accept", "") and not request.headers.get("HX-Request")
    try:
        session = services.halt_session(Actor.of(request.user), session_id, reason)
        status, ctx = 200, {"session": session}
    except ControlError as exc:
        session = get_object_or_404(TradingSession, pk=session_id)
        status, ctx = 400, {"session": session, "confirm": True, "error": str(exc)}
    if wants_json:
        body = {"session": session.pk, "status": session.status, "reason": session.status_reason}
        if "error" in ctx:
            body["error"] = ctx["error"]
        return JsonResponse(body, status=status)
    return render(request, "dashboard/partials/kill_switch.html", ctx, status=status)


# Lifecycle actions other than the kill switch: one POST each, a reason where the service needs one.
_ACTIONS: dict[str, Callable[..., TradingSession]] = {
    "pause": services.pause_session,
    "resume": services.resume_session,
    "reduce": services.reduce_session,
    "rearm": services.rearm_session,
    "stop": services.stop_session,
}


@login_required
@require_POST
def session_action(request: HttpRequest, session_id: int, action: str) -> HttpResponse:
    fn = _ACTIONS.get(action)
    if fn is None:
        return HttpResponse(f"unknown action {action!r}", status=404)
    reason = request.POST.get("reason", "").strip() or f"operator {action}"
    kwargs = {}
    if action == "stop" and request.POST.get("flatten") == "1":
        kwargs["flatten"] = True
        try:
            kwargs["max_slippage_bps"] = float(request.POST.get("max_slippage_bps", "10"))
        except ValueError:
            kwargs["max_slippage_bps"] = float("nan")
    error = ""
    try:
        fn(Actor.of(request.user), session_id, reason, **kwargs)
    except ControlError as exc:
        error = str(exc)
    except TradingSession.DoesNotExist:
        return HttpResponse(f"no session #{session_id}", status=404)
    session = get_object_or_404(TradingSession, pk=session_id)
    return render(
        request, "dashboard/partials/controls.html", {"session": session, "error": error}, status=400 if error else 200
    )


@login_required
@require_POST
def global_switch(request: HttpRequest) -> HttpResponse:
    action = request.POST.get("action", "")
    reason = request.POST.get("reason", "").strip()
    fns = {"halt": services.halt_all, "reduce": services.reduce_all, "rearm": services.rearm_all}
    error = ""
    if action not in fns:
        error = f"unknown action {action!r}"
    else:
        try:
            fns[action](Actor.of(request.user), reason)
        except ControlError as exc:
            error = str(exc)
    return render(
        request,
        "dashboard/partials/global_switch.html",
        {**_global_ctx(), "error": error},
        status=400 if error else 200,
    )
