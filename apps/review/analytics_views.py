"""The review page's analytics: an htmx partial with its charts and four JSON endpoints that feed them.

Thin views: parse and check the query string (a bad value is a 400 naming the field), call
:mod:`apps.review.analytics_data`, answer. Every view is a ``read_view`` (viewer and above).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.views.decorators.http import require_GET

from apps.dashboard.access import read_view, refuse
from apps.review import analytics_data as data
from apps.trading.models import TradingSession


def _session(session_id: int) -> TradingSession | None:
    return TradingSession.objects.select_related("instrument").filter(pk=session_id).first()


def _float(request: HttpRequest, name: str, default: float, lo: float, hi: float) -> float:
    raw = request.GET.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{name} must be a number") from None
    if not (math.isfinite(value) and lo <= value <= hi):
        raise ValueError(f"{name} must be between {lo:g} and {hi:g}")
    return value


def _mid_choice(request: HttpRequest) -> str | None:
    raw = request.GET.get("mid_source") or None
    if raw is not None and raw not in data.MID_SOURCES:
        raise ValueError(f"mid_source must be one of {', '.join(data.MID_SOURCES)}")  # the value is not echoed
    return raw


def _json(request: HttpRequest, session_id: int, build: Callable[[TradingSession], dict[str, Any]]) -> HttpResponse:
    session = _session(session_id)
    if session is None:
        return refuse(request, 404, "no such session", api=True)
    try:
        body = build(session)
    except ValueError as exc:
        return refuse(request, 400, str(exc), api=True)
    body["session_id"] = session.pk
    return JsonResponse(body, json_dumps_params={"allow_nan": False})


@read_view
@require_GET
def analytics(request: HttpRequest, session_id: int) -> HttpResponse:
    """The analytics panel (htmx partial); opened directly, the same panel on a page of its own."""
    session = get_object_or_404(TradingSession.objects.select_related("instrument"), pk=session_id)
    urls = {
        name: reverse(f"review:{name}", args=[session.pk])
        for name in ("markouts", "fill_rate", "spreads", "kappa_diagnostics")
    }
    ctx = {"session": session, "urls": urls, "max_fills": data.MAX_FILLS, "max_trades": data.MAX_TRADES}
    if request.headers.get("HX-Request"):
        return render(request, "review/partials/analytics.html", ctx)
    return render(request, "review/partials/analytics_page.html", ctx)


@read_view
@require_GET
def markouts(request: HttpRequest, session_id: int) -> HttpResponse:
    """Markout curves by side at 100 ms, 1 s, 5 s, 30 s, 60 s (bps and quote currency, mean, 95 % CI, count)."""
    return _json(request, session_id, lambda s: data.load_markouts(s, _mid_choice(request)))


@read_view
@require_GET
def fill_rate(request: HttpRequest, session_id: int) -> HttpResponse:
    """Fill rate per quote-distance bucket (``bin_bps``, ``max_bps``), ours and implied by public trades."""

    def build(s: TradingSession) -> dict[str, Any]:
        bin_bps = _float(request, "bin_bps", 1.0, 1e-4, 1e4)
        max_bps = _float(request, "max_bps", 20.0, 1e-4, 1e5)
        return data.load_fill_rate(s, bin_bps, max_bps, _mid_choice(request))

    return _json(request, session_id, build)


@read_view
@require_GET
def spreads(request: HttpRequest, session_id: int) -> HttpResponse:
    """Our quoted spread against the market's over time (``points`` buckets) and as time-weighted distributions."""

    def build(s: TradingSession) -> dict[str, Any]:
        points = _float(request, "points", 300, 2, 2000)
        if points != int(points):
            raise ValueError("points must be a whole number")
        return data.load_spreads(s, int(points))

    return _json(request, session_id, build)


@read_view
@require_GET
def kappa_diagnostics(request: HttpRequest, session_id: int) -> HttpResponse:
    """Trade distances from the mid with the fitted exponential, the power law and their K–S statistics."""
    return _json(request, session_id, lambda s: data.load_kappa(s, _mid_choice(request)))
