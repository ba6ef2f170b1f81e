from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, render
from django.views.decorators.http import require_GET

from apps.control import services
from apps.control.models import GlobalKillSwitch
from apps.control.permissions import Role
from apps.control.selectors import session_audit, session_status
from apps.control.services import Actor, ControlError
from apps.dashboard.access import action_view, read_view, refuse, wants_json
from apps.trading.models import FillRecord, Order, TradingSession
from apps.trading.selectors import PnlBar, session_pnl

PNL_WIDTHS = ("1 second", "1 minute")  # the widths the continuous aggregates hold
_CHART_W, _CHART_H, _CHART_POINTS = 600, 80, 600


def _global_ctx() -> dict:
    return {"global_switch": GlobalKillSwitch.current()}


@read_view
@require_GET
def session_detail(request: HttpRequest, session_id: int) -> HttpResponse:
    session = get_object_or_404(TradingSession.objects.select_related("instrument"), pk=session_id)
    ctx = {
        "session": session,
        "audit": session_audit(session),  # with the global switch's events during the session
        "recent_fills": FillRecord.objects.filter(session=session).order_by("-ts")[:15],
        "open_orders": Order.objects.filter(session=session, status__in=Order.OPEN_STATUSES).order_by("side"),
        **_global_ctx(),
    }
    return render(request, "dashboard/session.html", ctx)


def _polyline(values: list[float]) -> str:
    """SVG polyline points for ``values`` scaled into the chart box (at most ``_CHART_POINTS`` of them)."""
    if len(values) > _CHART_POINTS:
        stride = len(values) / _CHART_POINTS
        values = [values[int(i * stride)] for i in range(_CHART_POINTS)] + [values[-1]]
    lo, hi = min(values), max(values)
    span = (hi - lo) or 1.0
    dx = _CHART_W / max(len(values) - 1, 1)
    return " ".join(f"{i * dx:.1f},{_CHART_H - (v - lo) / span * _CHART_H:.1f}" for i, v in enumerate(values))


@read_view
@require_GET
def session_pnl_view(request: HttpRequest, session_id: int) -> HttpResponse:
    """P&L and inventory of a session by bucket, from the per-session continuous aggregates (or raw fills)."""
    session = get_object_or_404(TradingSession, pk=session_id)
    width = request.GET.get("width", "1 minute")
    if width not in PNL_WIDTHS:
        # never echo the value back: it is whatever the link said
        return refuse(request, 400, f"width must be one of {', '.join(PNL_WIDTHS)}")
    bars: list[PnlBar] = session_pnl(session, width=width)
    marked = [b for b in bars if b.pnl is not None]
    ctx = {
        "session": session,
        "width": width,
        "widths": PNL_WIDTHS,
        "bars": bars[-30:][::-1],
        "n_bars": len(bars),
        "last": bars[-1] if bars else None,
        "pnl_points": _polyline([b.pnl for b in marked]) if len(marked) > 1 else "",
        "inv_points": _polyline([b.inventory for b in bars]) if len(bars) > 1 else "",
        "pnl_range": (min(b.pnl for b in marked), max(b.pnl for b in marked)) if marked else None,
        "inv_range": (min(b.inventory for b in bars), max(b.inventory for b in bars)) if bars else None,
        "chart_w": _CHART_W,
        "chart_h": _CHART_H,
    }
    return render(request, "dashboard/partials/session_pnl.html", ctx)


@read_view
@require_GET
def controls(request: HttpRequest, session_id: int) -> HttpResponse:
    session = get_object_or_404(TradingSession, pk=session_id)
    return render(request, "dashboard/partials/control_card.html", {"session": session})


@read_view
@require_GET
def kill_switch(request: HttpRequest, session_id: int) -> HttpResponse:
    session = get_object_or_404(TradingSession, pk=session_id)
    confirm = request.GET.get("confirm") == "1"
    return render(request, "dashboard/partials/kill_switch.html", {"session": session, "confirm": confirm})


@action_view
def halt(request: HttpRequest, session_id: int) -> HttpResponse:
    """The kill switch. From the page (htmx) it answers with the panel; an API client sending
    ``Accept: application/json`` (session auth + CSRF token, like any write) gets JSON."""
    reason = request.POST.get("reason", "").strip()
    try:
        session = services.halt_session(Actor.of(request.user), session_id, reason)
        status, ctx = 200, {"session": session}
    except ControlError as exc:
        session = get_object_or_404(TradingSession, pk=session_id)
        status, ctx = 400, {"session": session, "confirm": True, "error": str(exc)}
    if wants_json(request):
        body = _api_body(session)
        if "error" in ctx:
            body["error"] = ctx["error"]
        return JsonResponse(body, status=status)
    return render(request, "dashboard/partials/kill_switch.html", ctx, status=status)


def _api_body(session: TradingSession) -> dict:
    """A session as the JSON API reports it: ``status`` is what the loop obeys (the global switch counted),
    ``own_status`` what its operators set, and ``global_state`` the switch, so a client can tell them apart."""
    st = session_status(session)
    return {
        "session": session.pk,
        "status": st.status,
        "own_status": st.own,
        "global_state": st.global_state,
        "reason": st.global_reason if st.by_global else session.status_reason,
    }


# Lifecycle actions other than the kill switch: one POST each, a reason where the service needs one.
_ACTIONS: dict[str, Callable[..., TradingSession]] = {
    "pause": services.pause_session,
    "resume": services.resume_session,
    "reduce": services.reduce_session,
    "rearm": services.rearm_session,
    "stop": services.stop_session,
}


# Actions that may go without a reason record "operator <action>"; re-arm and reduce need one (see README).
_DEFAULT_REASON = ("pause", "resume", "stop")


@action_view(per_action={"rearm": Role.ADMIN})
def session_action(request: HttpRequest, session_id: int, action: str) -> HttpResponse:
    fn = _ACTIONS.get(action)
    if fn is None:
        return refuse(request, 404, "unknown action")
    reason = request.POST.get("reason", "").strip()
    if not reason and action in _DEFAULT_REASON:
        reason = f"operator {action}"
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
        return refuse(request, 404, f"no session #{session_id}")
    session = get_object_or_404(TradingSession, pk=session_id)
    if wants_json(request):
        body = _api_body(session)
        return JsonResponse({**body, "error": error} if error else body, status=400 if error else 200)
    return render(
        request, "dashboard/partials/controls.html", {"session": session, "error": error}, status=400 if error else 200
    )


@action_view(per_action={"rearm": Role.ADMIN})
def global_switch(request: HttpRequest) -> HttpResponse:
    action = request.POST.get("action", "")
    reason = request.POST.get("reason", "").strip()
    fns = {"halt": services.halt_all, "reduce": services.reduce_all, "rearm": services.rearm_all}
    error = ""
    if action not in fns:
        error = f"action must be one of {', '.join(fns)}"
    else:
        try:
            fns[action](Actor.of(request.user), reason)
        except ControlError as exc:
            error = str(exc)
    if wants_json(request):
        switch = GlobalKillSwitch.current()
        body = {"state": switch.state, "reason": switch.reason}
        return JsonResponse({**body, "error": error} if error else body, status=400 if error else 200)
    return render(
        request,
        "dashboard/partials/global_switch.html",
        {**_global_ctx(), "error": error},
        status=400 if error else 200,
    )
