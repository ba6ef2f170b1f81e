"""Backtests and sweeps from the browser: list and launch (``/review/backtests/``), one run's progress page, a
sweep's results table and heat map. Thin: the forms validate, :mod:`apps.trading.backtest` creates and queues,
:mod:`apps.review.progress` pushes progress; a run page follows it over ``/ws/backtests/<run_id>/``."""

from __future__ import annotations

from typing import Any

from django.db.models import Count, Q
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET

from apps.dashboard.access import action_view, read_view, wants_json
from apps.review.progress import review_url, run_state
from apps.review.runs_forms import BacktestForm, SweepForm
from apps.trading.backtest import sweep_table
from apps.trading.models import BacktestRun, SweepRun

LIST_RUNS = 50
LIST_SWEEPS = 20
HEAT_CLASSES = 9  # heat-0 (lowest net P&L) … heat-8 (highest), static/review/runs.css


def _page(request: HttpRequest, form: BacktestForm | None = None, sweep_form: SweepForm | None = None, status=200):
    runs = BacktestRun.objects.filter(sweep__isnull=True).select_related("session__instrument")[:LIST_RUNS]
    sweeps = SweepRun.objects.annotate(n_done=Count("runs", filter=Q(runs__status__in=["done", "failed"]))).order_by(
        "-id"
    )[:LIST_SWEEPS]
    context: dict[str, Any] = {"runs": runs, "sweeps": sweeps, "form": form, "sweep_form": sweep_form}
    if context["form"] is None:
        context["form"] = BacktestForm(prefix="bt")
    if context["sweep_form"] is None:
        context["sweep_form"] = SweepForm(prefix="sw")
    return render(request, "review/backtests.html", context, status=status)


def _invalid(request: HttpRequest, form: BacktestForm, which: str) -> HttpResponse:
    """400 naming every bad field (JSON for an API client), and nothing created."""
    if wants_json(request):
        return JsonResponse({"errors": {k: [str(e) for e in v] for k, v in form.errors.items()}}, status=400)
    return _page(request, **{which: form}, status=400)


@read_view
@require_GET
def backtests(request: HttpRequest) -> HttpResponse:
    return _page(request)


@action_view
def launch_backtest(request: HttpRequest) -> HttpResponse:
    from apps.trading.backtest import start_run

    form = BacktestForm(request.POST, prefix="bt")
    if not form.is_valid():
        return _invalid(request, form, "form")
    d = form.cleaned_data
    try:
        run = start_run(form.data_source, form.fmt, form.params, d["strategy"], name=form.describe(), seed=d["seed"])
    except ValueError as exc:  # validated above; the data may have changed since (e.g. deleted)
        form.add_error(None, str(exc))
        return _invalid(request, form, "form")
    if wants_json(request):
        return JsonResponse({"run_id": run.pk, "session_id": run.session_id, "url": f"/review/backtests/{run.pk}/"})
    return redirect("review:backtest_run", run_id=run.pk)


@action_view
def launch_sweep(request: HttpRequest) -> HttpResponse:
    from apps.trading.backtest import start_sweep

    form = SweepForm(request.POST, prefix="sw")
    if not form.is_valid():
        return _invalid(request, form, "sweep_form")
    d = form.cleaned_data
    try:
        sweep = start_sweep(
            form.data_source,
            form.fmt,
            form.params,
            form.grid,
            strategy=d["strategy"],
            name=form.describe(),
            seed=d["seed"],
        )
    except ValueError as exc:
        form.add_error(None, str(exc))
        return _invalid(request, form, "sweep_form")
    if wants_json(request):
        return JsonResponse({"sweep_id": sweep.pk, "url": f"/review/sweeps/{sweep.pk}/"})
    return redirect("review:sweep", sweep_id=sweep.pk)


@read_view
@require_GET
def backtest_run(request: HttpRequest, run_id: int) -> HttpResponse:
    run = get_object_or_404(BacktestRun.objects.select_related("session__instrument", "sweep"), pk=run_id)
    state = run_state(run)
    if wants_json(request):
        return JsonResponse(state)
    return render(request, "review/backtest_run.html", {"run": run, "state": state})


# --- sweeps --------------------------------------------------------------------------------------------------


def _net(row: dict[str, Any]) -> float | None:
    v = row.get("pnl_total")
    return float(v) if isinstance(v, (int, float)) else None


def _heat(rows: list[dict[str, Any]]) -> None:
    """Give every finished row a colour class by its net P&L, scaled over the sweep's range."""
    nets = [n for n in (_net(r) for r in rows) if n is not None]
    lo, hi = (min(nets), max(nets)) if nets else (0.0, 0.0)
    for r in rows:
        n = _net(r)
        if n is None:
            r["heat"] = "heat-none"
        else:
            frac = 0.5 if hi == lo else (n - lo) / (hi - lo)
            r["heat"] = f"heat-{min(HEAT_CLASSES - 1, int(frac * HEAT_CLASSES))}"
        r["review_url"] = review_url(r["session_id"]) if r["status"] == "done" else None


def sweep_context(sweep: SweepRun) -> dict[str, Any]:
    """The results table and the heat map: one parameter → bars; two → a grid, rows param 1, columns param 2."""
    rows = sweep_table(sweep.pk)
    _heat(rows)
    keys = list(sweep.grid)
    ctx: dict[str, Any] = {"sweep": sweep, "rows": rows, "keys": keys, "running": sweep.status == "running"}
    ctx["n_done"] = sum(r["status"] in ("done", "failed") for r in rows)
    for r in rows:
        r["values"] = [r.get(k) for k in keys]
    if len(keys) == 1:
        nets = [abs(n) for n in (_net(r) for r in rows) if n is not None]
        scale = max(nets) if nets and max(nets) > 0 else 1.0
        bar_w, gap, half_h = 48, 12, 80
        for i, r in enumerate(rows):
            n = _net(r)
            h = 0 if n is None else round(abs(n) / scale * half_h, 1)
            r["bar"] = {"x": i * (bar_w + gap) + gap, "w": bar_w, "h": h, "y": half_h - h if (n or 0) >= 0 else half_h}
            r["bar"]["cls"] = "bar-none" if n is None else "bar-pos" if n >= 0 else "bar-neg"
            r["bar"]["label_y"] = 2 * half_h + 14
        ctx["chart"] = {"width": len(rows) * (bar_w + gap) + gap, "height": 2 * half_h + 20, "zero_y": half_h}
    elif len(keys) == 2:
        by = {(r[keys[0]], r[keys[1]]): r for r in rows}
        ctx["grid_cols"] = sweep.grid[keys[1]]
        ctx["grid_rows"] = [(v1, [by.get((v1, v2)) for v2 in sweep.grid[keys[1]]]) for v1 in sweep.grid[keys[0]]]
    return ctx


@read_view
@require_GET
def sweep(request: HttpRequest, sweep_id: int) -> HttpResponse:
    sw = get_object_or_404(SweepRun, pk=sweep_id)
    ctx = sweep_context(sw)
    if wants_json(request):
        cols = ("run_id", "session_id", "status", "review_url")
        return JsonResponse(
            {
                "sweep_id": sw.pk,
                "status": sw.status,
                "grid": sw.grid,
                "rows": [
                    {**{k: r.get(k) for k in (*ctx["keys"], *cols)}, "pnl_total": r.get("pnl_total")}
                    for r in ctx["rows"]
                ],
            }
        )
    return render(request, "review/sweep.html", ctx)


@read_view
@require_GET
def sweep_results(request: HttpRequest, sweep_id: int) -> HttpResponse:
    """The table and the heat map (an htmx partial that polls itself while the sweep runs)."""
    sw = get_object_or_404(SweepRun, pk=sweep_id)
    return render(request, "review/partials/sweep_results.html", sweep_context(sw))
