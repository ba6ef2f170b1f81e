"""Alert pages and the Prometheus endpoint. Thin: read, call one service, render."""

from __future__ import annotations

import hmac

from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed
from django.shortcuts import redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET

from apps.control.audit import ControlError
from apps.control.permissions import can_admin
from apps.dashboard.access import action_view, read_view, refuse, wants_json
from apps.ops import services
from apps.ops.context_processors import alerts as alert_context
from apps.ops.selectors import recent_alerts


@read_view
@require_GET
def alert_list(request: HttpRequest) -> HttpResponse:
    return render(request, "ops/alerts.html", {"alerts": recent_alerts()})


@read_view
@require_GET
def banner(request: HttpRequest) -> HttpResponse:
    """The banner alone, for its htmx refresh."""
    return render(request, "ops/alert_banner.html", alert_context(request))


@action_view
def acknowledge(request: HttpRequest, alert_id: int) -> HttpResponse:
    try:
        alert = services.acknowledge(alert_id, request.user)
    except ControlError as exc:
        status = 404 if str(exc).startswith("no alert") else 409
        if request.headers.get("HX-Request"):
            ctx = {**alert_context(request), "banner_error": str(exc)}
            return render(request, "ops/alert_banner.html", ctx)
        return refuse(request, status, str(exc))
    if wants_json(request):
        from django.http import JsonResponse

        return JsonResponse(
            {"id": alert.pk, "acknowledged_by": alert.acknowledged_by_label, "acknowledged_at": alert.acknowledged_at}
        )
    if request.headers.get("HX-Request"):
        return render(request, "ops/alert_banner.html", {**alert_context(request), "acknowledged": alert})
    back = request.POST.get("next", "")
    if not url_has_allowed_host_and_scheme(back, {request.get_host()}, require_https=request.is_secure()):
        back = "ops:alerts"
    return redirect(back)


def metrics(request: HttpRequest) -> HttpResponse:
    """Prometheus exposition. ``Authorization: Bearer <MM_METRICS_TOKEN>``, or a logged-in admin's session.
    Who asks is checked before the method, so an anonymous client learns nothing (401 whatever it sends)."""
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

    from apps.ops.collector import ConsoleCollector

    allowed = _bearer_ok(request) or can_admin(getattr(request, "user", None))
    if not allowed:
        if request.user.is_authenticated and not request.headers.get("Authorization"):
            return HttpResponse(
                "metrics need the admin role or the bearer token\n", status=403, content_type="text/plain"
            )
        resp = HttpResponse(
            "authentication required: Authorization: Bearer <token>\n", status=401, content_type="text/plain"
        )
        resp["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return resp
    if request.method not in ("GET", "HEAD"):
        return HttpResponseNotAllowed(["GET", "HEAD"])
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ConsoleCollector())
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)


def _bearer_ok(request: HttpRequest) -> bool:
    token = settings.MM_METRICS_TOKEN
    header = request.headers.get("Authorization", "")
    if not token or not header.startswith("Bearer "):
        return False
    return hmac.compare_digest(header.removeprefix("Bearer ").strip().encode(), token.encode())
