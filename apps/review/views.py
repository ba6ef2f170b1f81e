"""The session review page and its data: chart series at screen resolution, the decision at a clicked instant,
exports and the two-session comparison. Thin: reads are in :mod:`apps.review.queries` and friends."""

from __future__ import annotations

from typing import Any

from django.http import FileResponse, HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, render
from django.urls import NoReverseMatch, reverse
from django.views.decorators.http import require_GET

from apps.control.models import AuditEvent
from apps.dashboard.access import read_view, refuse
from apps.review import compare as compare_mod
from apps.review import export, queries
from apps.trading.models import RiskEventRecord, TradingSession

LISTED_EVENTS = 50


def _slot_url(name: str, session_id: int) -> str | None:
    """The URL of a partial another part of the review app serves, or None until that part exists."""
    try:
        return reverse(name, args=[session_id])
    except NoReverseMatch:
        return None


def _session(session_id: int) -> TradingSession:
    return get_object_or_404(TradingSession.objects.select_related("instrument", "backtest__sweep"), pk=session_id)


def _backtest(session: TradingSession) -> Any:
    try:
        return session.backtest
    except TradingSession.backtest.RelatedObjectDoesNotExist:
        return None


@read_view
@require_GET
def review_page(request: HttpRequest, session_id: int) -> HttpResponse:
    session = _session(session_id)
    span = queries.session_span(session)
    summary = queries.page_summary(session)
    ctx = {
        "session": session,
        "backtest": _backtest(session),
        "span": span,
        "span_from": queries.ns_to_dt(span.start_ns),
        "span_to": queries.ns_to_dt(span.end_ns),
        "summary": summary,
        "summary_parts": [(part.replace("_", " "), summary.get(part)) for part in queries.PNL_PARTS],
        "parts": queries.PNL_PARTS,
        "param_changes": list(
            AuditEvent.objects.filter(session=session, action__startswith="params.").order_by("ts")[:LISTED_EVENTS]
        ),
        "risk_events": list(RiskEventRecord.objects.filter(session=session).order_by("ts")[:LISTED_EVENTS]),
        "analytics_url": _slot_url("review:analytics", session.pk),
        "estimators_url": _slot_url("review:estimators", session.pk),
        "points": queries.DEFAULT_POINTS,
        "formats": export.FORMATS,
        "tables": tuple(export.TABLES),
    }
    return render(request, "review/session.html", ctx)


def _bad(request: HttpRequest, message: str) -> HttpResponse:
    return refuse(request, 400, message, api=True)


@read_view
@require_GET
def series_json(request: HttpRequest, session_id: int) -> HttpResponse:
    session = get_object_or_404(TradingSession, pk=session_id)
    try:
        points = queries.parse_points(request.GET.get("points"))
        span = None
        if request.GET.get("from"):
            start_ns = queries.parse_instant(request.GET["from"], "from")
        else:
            span = queries.session_span(session)
            start_ns = span.start_ns
        if request.GET.get("to"):
            end_ns = queries.parse_instant(request.GET["to"], "to")
        else:
            span = span or queries.session_span(session)
            end_ns = span.end_ns
        data = queries.series(session.pk, start_ns, end_ns, points)
    except ValueError as e:
        return _bad(request, str(e))
    return JsonResponse(data)


def _decision(request: HttpRequest, session_id: int) -> tuple[TradingSession, dict | None, str | None]:
    session = get_object_or_404(TradingSession, pk=session_id)
    try:
        at_ns = queries.parse_instant(request.GET.get("at", ""), "at")
    except ValueError as e:
        return session, None, str(e)
    return session, queries.decision_at(session, at_ns), None


@read_view
@require_GET
def decision_json(request: HttpRequest, session_id: int) -> HttpResponse:
    _session_obj, found, error = _decision(request, session_id)
    if error:
        return _bad(request, error)
    if found is None:
        return JsonResponse({"error": "no decision at or before at", "session": session_id}, status=404)
    return JsonResponse(found)


@read_view
@require_GET
def decision_partial(request: HttpRequest, session_id: int) -> HttpResponse:
    session, found, error = _decision(request, session_id)
    if error:
        return refuse(request, 400, error)
    inputs = sorted((found["decision"]["inputs"] if found else {}).items())
    return render(request, "review/partials/decision.html", {"session": session, "found": found, "inputs": inputs})


@read_view
@require_GET
def export_view(request: HttpRequest, session_id: int, table: str, fmt: str) -> HttpResponse:
    if table not in export.TABLES:
        return refuse(request, 400, f"table must be one of {', '.join(export.TABLES)}")
    if fmt not in export.FORMATS:
        return refuse(request, 400, f"format must be one of {', '.join(export.FORMATS)}")
    session = get_object_or_404(TradingSession, pk=session_id)
    filename = f"session-{session.pk}-{table}.{fmt}"
    if fmt == "csv":
        resp = StreamingHttpResponse(export.csv_lines(table, session.pk), content_type="text/csv; charset=utf-8")
        resp["Content-Disposition"] = f'attachment; filename="{filename}"'
        return resp
    return FileResponse(
        export.write_parquet(table, session.pk),
        as_attachment=True,
        filename=filename,
        content_type="application/vnd.apache.parquet",
    )


def _session_param(request: HttpRequest, field: str) -> TradingSession | str:
    raw = request.GET.get(field, "")
    if not raw.isdigit():
        return f"{field} must be a session id (a whole number)"
    s = TradingSession.objects.select_related("instrument").filter(pk=int(raw)).first()
    return s if s is not None else f"{field}: no session #{int(raw)}"


@read_view
@require_GET
def compare_view(request: HttpRequest) -> HttpResponse:
    a, b = _session_param(request, "a"), _session_param(request, "b")
    for s in (a, b):
        if isinstance(s, str):
            return refuse(request, 400 if "must" in s else 404, s)
    data = compare_mod.compare(a, b)
    rows = []
    for part in ("total", *queries.PNL_PARTS, "position"):
        rows.append((part, data["a"].result.get(part), data["b"].result.get(part)))
    ctx = {**data, "result_rows": rows, "points": queries.DEFAULT_POINTS // 2}
    return render(request, "review/compare.html", ctx)
