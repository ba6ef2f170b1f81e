"""The sessions overview (the home page) and starting a session from it.

Every session with its mode, venue, symbol, status (effective: the global kill switch counted), inventory and
P&L with their units, kill-switch state, estimator health (κ and σ fit states from the loop's last state) and feed
age. The table is a partial the page re-fetches every few seconds (``hx-trigger="every 3s"``); it is paginated and
filtered by the status shown. Operators also get the start form (:mod:`apps.dashboard.start_form`); admins also the
live-on-Hyperliquid form, whose endpoint (:func:`start_live_session`) refuses anyone below admin with 403.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from django.core.paginator import Paginator
from django.db.models import Q, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_GET

from apps.control import presets, services
from apps.control.models import GlobalKillSwitch
from apps.control.permissions import Role, can_operate, role_of
from apps.control.selectors import SessionStatus, effective_status, session_status
from apps.control.services import Actor, ControlError
from apps.dashboard.access import action_view, admin_view, read_view, wants_json
from apps.dashboard.start_form import LIVE_DATA, SIMULATOR, StartLiveSessionForm, StartSessionForm
from apps.marketdata.instruments import currencies
from apps.marketdata.timescale import db_mode
from apps.trading.models import TradingSession

PAGE_SIZE = 25
REFRESH_S = 3
ACTIVE = ("created", "running", "reducing", "paused", "halted")
STATUS_FILTERS = ("all", "active", *TradingSession.Status.values)
# a feed that said nothing for longer than this is flagged (the stale-feed risk rule has its own bound)
FEED_STALE_S = 5.0


@dataclass(frozen=True)
class SessionRow:
    session: TradingSession
    status: SessionStatus
    base: str
    quote: str
    inventory: float | None
    pnl: float | None
    kappa_state: str
    sigma_state: str
    feed_age_s: float | None  # now − the last state's event time; None when there is no live feed to age
    heartbeat_age_s: float | None
    feed_state: str = ""  # a live connector's connection state (connecting/syncing/live/backoff); "" otherwise

    @property
    def kill_switch(self) -> str:
        """What the kill switches do to this session: its own latch, or the global switch's state."""
        if self.session.status == TradingSession.Status.HALTED:
            return "halted (session)"
        if self.status.by_global:
            return f"{self.status.global_state} (global)"
        return "armed"

    @property
    def inventory_text(self) -> str:
        """Base units to 8 decimals (a satoshi), trailing zeros dropped: ``0.012 BTC``."""
        if self.inventory is None:
            return "—"
        text = f"{self.inventory:.8f}".rstrip("0").rstrip(".")
        return f"{'0' if text == '-0' else text} {self.base}"

    @property
    def pnl_text(self) -> str:
        return "—" if self.pnl is None else f"{self.pnl:,.2f} {self.quote}"

    @property
    def feed_stale(self) -> bool:
        return self.feed_age_s is not None and self.feed_age_s > FEED_STALE_S


def _row(s: TradingSession, switch: GlobalKillSwitch, now_ns: int) -> SessionRow:
    st = s.last_state or {}
    base, quote = currencies(s.instrument.symbol, s.instrument.venue)
    if s.instrument.venue == "sim":
        base, quote = "BTC", "USDT"  # the simulator's SIM-BTCUSDT market
    live = s.mode != TradingSession.Mode.BACKTEST and s.status in ACTIVE
    ts_ns = st.get("ts_ns")
    feed_age = (now_ns - ts_ns) / 1e9 if (live and isinstance(ts_ns, int) and ts_ns > 0) else None
    hb_age = (now_ns / 1e9 - s.heartbeat_at.timestamp()) if (live and s.heartbeat_at) else None
    return SessionRow(
        session=s,
        status=session_status(s, switch),
        base=base,
        quote=quote,
        inventory=st.get("inventory"),
        pnl=st.get("pnl"),
        kappa_state=st.get("kappa_state") or "—",
        sigma_state=st.get("sigma_state") or "—",
        feed_age_s=feed_age,
        heartbeat_age_s=hb_age,
        feed_state=str((st.get("feed") or {}).get("state") or "") if live else "",
    )


def filter_by_status(qs: QuerySet[TradingSession], wanted: str, switch: GlobalKillSwitch) -> QuerySet:
    """Sessions whose *effective* status (what the page shows) is ``wanted``, or any active one: the same
    :func:`effective_status` the rows use, turned into a query over (own status, backtest or not)."""
    if wanted == "all":
        return qs
    wanted_set = set(ACTIVE) if wanted == "active" else {wanted}
    cond = Q(pk__in=[])
    for own in TradingSession.Status.values:
        backtest = Q(status=own, mode=TradingSession.Mode.BACKTEST)
        governed = Q(status=own) & ~Q(mode=TradingSession.Mode.BACKTEST)
        if own in wanted_set:
            cond |= backtest
        if effective_status(own, switch.state) in wanted_set:
            cond |= governed
    return qs.filter(cond)


def _table_ctx(request: HttpRequest) -> dict[str, Any]:
    switch = GlobalKillSwitch.current()
    wanted = request.GET.get("status", "all")
    if wanted not in STATUS_FILTERS:
        wanted = "all"  # an unknown filter shows everything rather than an error page that refreshes itself
    qs = filter_by_status(TradingSession.objects.select_related("instrument").order_by("-id"), wanted, switch)
    page = Paginator(qs, PAGE_SIZE).get_page(request.GET.get("page"))
    now_ns = time.time_ns()
    query = {"status": wanted, "page": page.number}
    return {
        "rows": [_row(s, switch, now_ns) for s in page.object_list],
        "page": page,
        "status_filter": wanted,
        "status_filters": STATUS_FILTERS,
        "table_query": urlencode(query),
        "refresh_s": REFRESH_S,
        "global_switch": switch,
    }


@read_view
@require_GET
def home(request: HttpRequest) -> HttpResponse:
    ctx = {**_table_ctx(request), "storage_mode": db_mode()}
    if can_operate(request.user):
        ctx["form"] = StartSessionForm(initial={"instrument": SIMULATOR})
    if role_of(request.user) >= Role.ADMIN:
        ctx["live_form"] = StartLiveSessionForm()
    return render(request, "dashboard/home.html", ctx)


@read_view
@require_GET
def sessions_table(request: HttpRequest) -> HttpResponse:
    """The table alone: what the home page re-fetches every ``REFRESH_S`` seconds."""
    return render(request, "dashboard/partials/sessions_table.html", _table_ctx(request))


def _create(form: StartSessionForm, request: HttpRequest) -> TradingSession:
    data = form.cleaned_data
    params = presets.preset_params(data["preset"])
    actor = Actor.of(request.user)
    if data["source"] == LIVE_DATA:
        return services.create_live_data_session(
            actor, name=data["name"], instrument=data["instrument"], params=params, seed=data["seed"]
        )
    replay = form.replay()
    if replay is None:
        return services.create_paper_session(actor, name=data["name"], params=params, seed=data["seed"])
    return services.create_replay_session(
        actor, name=data["name"], instrument=data["instrument"], replay=replay, params=params, seed=data["seed"]
    )


# which form field a service error is about, by the start of its message
_ERROR_FIELDS = (
    ("replay", "source"),
    ("params", "preset"),
    ("seed", "seed"),
    ("unknown instrument", "instrument"),
    ("instrument", "instrument"),
)


def _answer_created(request: HttpRequest, session: TradingSession) -> HttpResponse:
    url = reverse("dashboard:session", args=[session.pk])
    if wants_json(request):
        return JsonResponse({"session": session.pk, "url": url, "status": session.status}, status=201)
    if request.headers.get("HX-Request"):
        resp = HttpResponse(status=204)
        resp["HX-Redirect"] = url
        return resp
    return HttpResponseRedirect(url, status=303)


def _answer_invalid(request: HttpRequest, form: Any, partial: str, ctx_key: str) -> HttpResponse:
    if wants_json(request):
        fields = {k: [str(e) for e in v] for k, v in form.errors.items()}
        first = next(iter(fields.items()), ("form", ["invalid"]))
        return JsonResponse({"error": f"{first[0]}: {first[1][0]}", "fields": fields}, status=400)
    if request.headers.get("HX-Request"):
        return render(request, partial, {ctx_key: form}, status=400)
    ctx = {**_table_ctx(request), "storage_mode": db_mode(), ctx_key: form}
    if ctx_key != "form" and can_operate(request.user):
        ctx["form"] = StartSessionForm(initial={"instrument": SIMULATOR})
    return render(request, "dashboard/home.html", ctx, status=400)


@admin_view
def start_live_session(request: HttpRequest) -> HttpResponse:
    """Create a LIVE session on Hyperliquid from the admin's form (real orders) and queue its loop. The form checks
    the confirmation and that credentials are configured; :func:`apps.control.services.create_live_session`
    validates the rest and writes the audit row. Answers as :func:`start_session` does."""
    form = StartLiveSessionForm(request.POST)
    session = None
    if form.is_valid():
        data = form.cleaned_data
        try:
            session = services.create_live_session(
                Actor.of(request.user),
                name=data["name"],
                instrument=data["instrument"],
                params=presets.preset_params(data["preset"]),
            )
        except (ValueError, ControlError) as exc:
            msg = str(exc)
            field = next((f for prefix, f in _ERROR_FIELDS if msg.startswith(prefix)), None)
            form.add_error(field if field in form.fields else None, msg)
    if session is None:
        return _answer_invalid(request, form, "dashboard/partials/start_live_form.html", "live_form")
    return _answer_created(request, session)


@action_view
def start_session(request: HttpRequest) -> HttpResponse:
    """Create a paper session (simulator), a replay session or a paper session on live Binance data from the start
    form and queue its loop.

    Answers: htmx, the form again (400 with the errors) or a redirect to the new session's page (``HX-Redirect``);
    a plain form POST, the same as a page (400) or a 303 to the session; JSON, ``{"session": id}`` (201) or
    ``{"error": ..., "fields": {field: [messages]}}`` (400)."""
    form = StartSessionForm(request.POST)
    session = None
    if form.is_valid():
        try:
            session = _create(form, request)
        except (ValueError, ControlError) as exc:
            msg = str(exc)
            field = next((f for prefix, f in _ERROR_FIELDS if msg.startswith(prefix)), None)
            form.add_error(field, msg)
    if session is None:
        return _answer_invalid(request, form, "dashboard/partials/start_form.html", "form")
    return _answer_created(request, session)
