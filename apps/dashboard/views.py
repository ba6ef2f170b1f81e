from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.views.decorators.http import require_GET, require_POST

from apps.control.services import Actor, ControlError, halt_session
from apps.trading.models import TradingSession


@login_required
@require_GET
def home(request: HttpRequest) -> HttpResponse:
    sessions = TradingSession.objects.select_related("instrument")[:200]
    return render(request, "dashboard/home.html", {"sessions": sessions})


@login_required
@require_GET
def session_detail(request: HttpRequest, session_id: int) -> HttpResponse:
    session = get_object_or_404(TradingSession.objects.select_related("instrument"), pk=session_id)
    return render(request, "dashboard/session.html", {"session": session})


@login_required
@require_GET
def kill_switch(request: HttpRequest, session_id: int) -> HttpResponse:
    session = get_object_or_404(TradingSession, pk=session_id)
    confirm = request.GET.get("confirm") == "1"
    return render(request, "dashboard/partials/kill_switch.html", {"session": session, "confirm": confirm})


@login_required
@require_POST
def halt(request: HttpRequest, session_id: int) -> HttpResponse:
    reason = request.POST.get("reason", "").strip()
    try:
        session = halt_session(Actor.of(request.user), session_id, reason)
        status = 200
        ctx = {"session": session}
    except ControlError as exc:
        session = get_object_or_404(TradingSession, pk=session_id)
        status = 400
        ctx = {"session": session, "confirm": True, "error": str(exc)}
    except TradingSession.DoesNotExist:
        return HttpResponse(f"no session #{session_id}", status=404)
    return render(request, "dashboard/partials/kill_switch.html", ctx, status=status)
