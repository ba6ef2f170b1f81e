"""Estimator histories of a session: an htmx partial with the charts, and the JSON behind them.

``review:estimators`` is a partial for the review page's slot (a whole page when opened directly), whose charts
``static/review/estimators.js`` draws from ``review:estimators_json`` (at most ``points`` points per series,
downsampled in SQL; see :mod:`apps.review.estimator_selectors`).
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.views.decorators.http import require_GET

from apps.dashboard.access import read_view, refuse
from apps.review.estimator_selectors import (
    DEFAULT_POINTS,
    MAX_POINTS,
    SERIES,
    STATES,
    estimator_history,
    has_snapshots,
    parse_ns,
    parse_points,
)
from apps.trading.models import TradingSession

# the charts of the partial: one per panel, each with the series it overlays
CHARTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("kappa", ("kappa",)),
    ("sigma", ("sigma_clean", "sigma_total")),
    ("lambda", ("lambda",)),
    ("flow", ("flow",)),
    ("drift", ("drift",)),
    ("microprice", ("microprice",)),
    ("gamma", ("gamma",)),
)


@read_view
@require_GET
def estimators(request: HttpRequest, session_id: int) -> HttpResponse:
    """The estimator charts (κ, σ, λ, flow, drift, microprice, γ and its contributions) with intervals and states."""
    session = get_object_or_404(TradingSession, pk=session_id)
    try:
        points = parse_points(request.GET.get("points"))
    except ValueError as exc:
        return refuse(request, 400, str(exc))
    ctx = {
        "session": session,
        "data_url": f"{reverse('review:estimators_json', args=[session.pk])}?points={points}",
        "charts": [{"key": key, "series": [{"name": n, **SERIES[n].__dict__} for n in names]} for key, names in CHARTS],
        "states": STATES,
        "recorded": has_snapshots(session.pk),
        "points": points,
    }
    partial = request.headers.get("HX-Request") or request.GET.get("partial") == "1"
    template = "review/partials/estimators.html" if partial else "review/partials/estimators_page.html"
    return render(request, template, ctx)


@read_view
@require_GET
def estimators_json(request: HttpRequest, session_id: int) -> HttpResponse:
    """The estimator series as JSON: ``?points=N`` (2…5000, default 600) caps the points per series;
    ``start_ns``/``end_ns`` (ns since the epoch, UTC) bound the range."""
    session = get_object_or_404(TradingSession, pk=session_id)
    try:
        points = parse_points(request.GET.get("points"))
        start_ns = parse_ns("start_ns", request.GET.get("start_ns"))
        end_ns = parse_ns("end_ns", request.GET.get("end_ns"))
        if start_ns is not None and end_ns is not None and end_ns <= start_ns:
            raise ValueError("end_ns must be after start_ns")
    except ValueError as exc:
        return refuse(request, 400, str(exc), api=True)
    data = estimator_history(session.pk, points=points, start_ns=start_ns, end_ns=end_ns)
    return JsonResponse(data)


__all__ = ["DEFAULT_POINTS", "MAX_POINTS", "estimators", "estimators_json"]
