"""The session review page, its chart data at screen resolution, and the decision in force at a clicked instant."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.urls import reverse

from apps.control.models import AuditEvent, ParameterVersion
from apps.marketdata.models import Instrument
from apps.review import queries
from apps.trading.models import (
    BacktestRun,
    FillRecord,
    Order,
    OrderEventRecord,
    PnlPoint,
    QuoteDecisionRecord,
    RiskEventRecord,
    TradingSession,
)
from tests.roles import make_user

T0 = datetime(2024, 8, 8, 12, 0, tzinfo=UTC)
T0_NS = int(T0.timestamp()) * 1_000_000_000
SEC = 1_000_000_000


def at(ns: int) -> datetime:
    return queries.ns_to_dt(ns)


def build_session(name: str = "bt", *, start_ns: int = T0_NS, gamma: float = 0.1, pnl: bool = True) -> TradingSession:
    """A stored backtest: 10 decisions 1 s apart, each placing a bid and an ask; 3 fills; P&L points; one parameter
    change and one risk event."""
    inst, _ = Instrument.objects.get_or_create(
        venue="binance-usdm", symbol="BTCUSDT", defaults={"tick_size": 0.1, "lot_size": 0.001}
    )
    s = TradingSession.objects.create(
        name=name,
        mode=TradingSession.Mode.BACKTEST,
        instrument=inst,
        status=TradingSession.Status.STOPPED,
        params={"strategy": {"gamma": gamma, "kappa": 3333}, "risk": {"q_max": 1.0}},
    )
    BacktestRun.objects.create(session=s, strategy="glft", data_format="hftbacktest-npz", status="done")
    ParameterVersion.objects.create(session=s, version=1, params=s.params, actor_label="test")
    decisions, events, orders = [], [], []
    for i in range(10):
        ts_ns = start_ns + i * SEC
        mid = 60_000.0 + i
        decisions.append(
            QuoteDecisionRecord(
                session=s,
                ts=at(ts_ns),
                ts_ns=ts_ns,
                mid=mid,
                bid_px=mid - 1,
                ask_px=mid + 1,
                bid_size=0.01,
                ask_size=0.01,
                inputs={"mid": mid, "sigma": 0.001 * (i + 1), "gamma": gamma, "i": i},
                reasons=[f"reason {i}"],
            )
        )
        for side, px in ((1, mid - 1), (-1, mid + 1)):
            clid = f"o{i}{'b' if side > 0 else 'a'}"
            events.append(
                OrderEventRecord(
                    session=s,
                    ts=at(ts_ns + 1000),
                    ts_ns=ts_ns + 1000,
                    client_order_id=clid,
                    kind="place",
                    detail={"side": side, "price": px, "size": 0.01, "tif": "GTX"},
                )
            )
            events.append(
                OrderEventRecord(
                    session=s, ts=at(ts_ns + 5000), ts_ns=ts_ns + 5000, client_order_id=clid, kind="ack_open"
                )
            )
            orders.append(
                Order(
                    session=s,
                    client_order_id=clid,
                    side=side,
                    price=px,
                    size=0.01,
                    status="cancelled",
                    created_ts=at(ts_ns),
                    updated_ts=at(ts_ns),
                )
            )
    QuoteDecisionRecord.objects.bulk_create(decisions)
    OrderEventRecord.objects.bulk_create(events)
    Order.objects.bulk_create(orders)
    for k, (i, side) in enumerate(((2, 1), (5, -1), (7, 1))):
        ts_ns = start_ns + i * SEC + 500_000_000
        FillRecord.objects.create(
            session=s,
            ts=at(ts_ns),
            ts_ns=ts_ns,
            client_order_id=f"o{i}{'b' if side > 0 else 'a'}",
            fill_id=f"f{k}",
            side=side,
            price=60_000.0 + i - side,
            size=0.01,
            fee=-0.01,
        )
    if pnl:
        PnlPoint.objects.bulk_create(
            PnlPoint(
                session=s,
                ts=at(start_ns + i * SEC),
                ts_ns=start_ns + i * SEC,
                mid=60_000.0 + i,
                position=0.01 * (i >= 3),
                cash=1.0,
                total=0.1 * i,
                spread_capture=0.05 * i,
                adverse_selection=-0.01 * i,
                inventory=0.02 * i,
                fees=0.01 * i,
                funding=0.0,
            )
            for i in range(10)
        )
    AuditEvent.objects.create(
        session=s, actor_label="admin", action="params.change", reason="wider", detail={"version": 2, "changes": {}}
    )
    RiskEventRecord.objects.create(
        session=s, ts=at(start_ns + 6 * SEC), ts_ns=start_ns + 6 * SEC, rule="max_inventory", action="reduce"
    )
    return s


@pytest.fixture
def viewer(client, db):
    user = make_user("viewer")
    client.force_login(user)
    return user


@pytest.fixture
def stored(db):
    return build_session()


def test_the_review_page_renders_a_stored_backtest_with_a_pinned_number_of_queries(
    client, viewer, stored, django_assert_num_queries
):
    url = reverse("review:session", args=[stored.pk])
    client.get(url)  # warm: the storage mode and content types are cached per process
    # auth session + user + groups (role), session with instrument/backtest/sweep, span, last P&L point, parameter
    # changes, risk events, the alert banner's read: 9, whatever the session's length
    with django_assert_num_queries(9):
        resp = client.get(url)
    html = resp.content.decode()
    assert resp.status_code == 200
    assert 'id="review-price"' in html and 'id="review-pnl"' in html and 'id="review-inventory"' in html
    assert "vendor/uplot/uPlot.iife.min.js" in html and "review/review.js" in html
    assert reverse("review:series", args=[stored.pk]) in html
    assert f'data-from="{T0_NS}"' in html  # the span starts at the first decision, exactly
    assert "max_inventory" in html and "params.change v2" in html
    assert "backtest run #" in html
    for table in ("fills", "decisions", "pnl"):
        assert reverse("review:export", args=[stored.pk, table, "parquet"]) in html


def test_the_session_page_and_the_overview_row_link_to_the_review(client, viewer, stored):
    review = reverse("review:session", args=[stored.pk])
    assert review in client.get(reverse("dashboard:session", args=[stored.pk])).content.decode()
    assert review in client.get(reverse("dashboard:sessions_table"), {"status": "all"}).content.decode()


def test_the_analytics_and_estimator_slots_load_their_partials_when_those_routes_exist(client, viewer, stored):
    html = client.get(reverse("review:session", args=[stored.pk])).content.decode()
    from django.urls import NoReverseMatch

    for name, slot in (("review:analytics", "review-analytics"), ("review:estimators", "review-estimators")):
        try:
            url = reverse(name, args=[stored.pk])
        except NoReverseMatch:
            assert f'id="{slot}"' not in html
        else:
            assert f'id="{slot}" hx-get="{url}" hx-trigger="load"' in html


def test_a_running_session_with_nothing_recorded_still_renders(client, viewer, stored):
    s = TradingSession.objects.create(name="fresh", instrument=stored.instrument, status="running")
    resp = client.get(reverse("review:session", args=[s.pk]))
    assert resp.status_code == 200 and "nothing recorded yet" in resp.content.decode()
    data = client.get(reverse("review:series", args=[s.pk])).json()
    assert data["quotes"]["t"] == [] and data["pnl"]["source"] == "none"


def test_a_short_range_comes_back_raw_with_fills_markers_and_recorded_pnl_parts(client, viewer, stored):
    data = client.get(reverse("review:series", args=[stored.pk]), {"points": "100"}).json()
    q = data["quotes"]
    assert q["mode"] == "raw" and len(q["t"]) == 10 and q["mid"][0] == 60_000.0 and q["bid"][3] == 60_002.0
    assert q["t"][0] == T0_NS / 1e9
    assert data["fills"]["mode"] == "raw" and data["fills"]["side"] == [1, -1, 1]
    assert data["pnl"]["source"] == "recorded" and data["pnl"]["spread_capture"][4] == pytest.approx(0.2)
    kinds = {m["kind"] for m in data["markers"]}
    assert "risk" in kinds  # the audit row is stamped now (wall clock), outside this 2024 range
    # the range is honoured
    part = client.get(
        reverse("review:series", args=[stored.pk]),
        {"from": str(T0_NS + 2 * SEC), "to": (T0 + timedelta(seconds=4)).isoformat(), "points": "100"},
    ).json()
    assert part["quotes"]["mid"] == [60_002.0, 60_003.0, 60_004.0]


def test_bad_series_parameters_are_refused_naming_the_field(client, viewer, stored):
    url = reverse("review:series", args=[stored.pk])
    for params, field in (({"points": "0"}, "points"), ({"points": "x"}, "points"), ({"from": "yesterday"}, "from")):
        resp = client.get(url, params)
        assert resp.status_code == 400 and field in resp.json()["error"]
    resp = client.get(url, {"from": str(T0_NS + SEC), "to": str(T0_NS)})
    assert resp.status_code == 400 and "to" in resp.json()["error"]


def _long_session(n: int, step_ns: int) -> TradingSession:
    """n decisions (a spike in the middle), n P&L points and n/100 fills, written by generate_series in SQL."""
    s = build_session("long", start_ns=T0_NS - 10 * SEC)
    with connection.cursor() as cur:
        cur.execute(
            """
            INSERT INTO trading_quotedecisionrecord
              (session_id, ts, ts_ns, mid, bid_px, ask_px, bid_size, ask_size, inputs, reasons)
            SELECT %(sid)s, to_timestamp((%(t0)s::bigint + g * %(step)s::bigint) / 1e9),
                   %(t0)s::bigint + g * %(step)s::bigint,
                   CASE WHEN g = %(spike)s THEN 70000 ELSE 60000 + sin(g / 1000.0) END,
                   59999, 60001, 0.01, 0.01, '{}'::jsonb, '[]'::jsonb
            FROM generate_series(0, %(n)s - 1) g;
            INSERT INTO trading_pnlpoint (session_id, ts, ts_ns, mid, position, cash, total, spread_capture,
                                          adverse_selection, inventory, fees, funding)
            SELECT %(sid)s, to_timestamp((%(t0)s::bigint + g * %(step)s::bigint) / 1e9),
                   %(t0)s::bigint + g * %(step)s::bigint,
                   60000, 0, 0, g, g, 0, 0, 0, 0 FROM generate_series(0, %(n)s - 1) g;
            INSERT INTO trading_fillrecord (session_id, ts, ts_ns, client_order_id, fill_id, side, price, size, fee,
                                            liquidity)
            SELECT %(sid)s, to_timestamp((%(t0)s::bigint + g * %(step)s::bigint) / 1e9),
                   %(t0)s::bigint + g * %(step)s::bigint,
                   'x', 'g' || g, CASE WHEN g %% 2 = 0 THEN 1 ELSE -1 END, 60000, 0.001, 0, 'maker'
            FROM generate_series(0, %(n)s - 1, 100) g;
            """,
            {"sid": s.pk, "t0": T0_NS, "step": step_ns, "n": n, "spike": n // 2 + 7},
        )
    return s


def test_the_series_returns_at_most_the_requested_points_for_a_long_session_and_keeps_spikes(client, viewer):
    s = _long_session(60_000, 100_000_000)  # 100 minutes at 10 decisions/s
    url = reverse("review:series", args=[s.pk])
    for points in (50, 500, 2000):
        data = client.get(url, {"points": str(points)}).json()
        assert data["quotes"]["mode"] == "bucketed"
        assert 0 < len(data["quotes"]["t"]) <= points
        assert len(data["pnl"]["t"]) <= points and len(data["fills"]["t"]) <= points
        assert max(data["quotes"]["mid_hi"]) == 70_000  # the one-row spike survives as a bucket's max
        assert sum(data["quotes"]["n"]) == 60_010  # every decision is in exactly one bucket
        assert data["pnl"]["total"][-1] == 59_999  # the last bucket's last P&L point
    few = client.get(url, {"points": "50"}).json()
    assert few["fills"]["mode"] == "bucketed" and sum(few["fills"]["n"]) == 603
    # zoomed into 3 s: raw events again, exact times
    zoom = client.get(url, {"from": str(T0_NS + 1000 * SEC), "to": str(T0_NS + 1003 * SEC), "points": "100"}).json()
    assert zoom["quotes"]["mode"] == "raw" and len(zoom["quotes"]["t"]) == 31


def test_pnl_without_recorded_points_is_computed_from_fills_and_mids_and_says_so(client, viewer):
    s = build_session("nopnl", pnl=False)
    data = client.get(reverse("review:series", args=[s.pk]), {"points": "100"}).json()
    pnl = data["pnl"]
    assert pnl["source"] == "computed" and "not available" in pnl["note"]
    # fills: buy at 2.5 s, sell at 5.5 s, buy at 7.5 s (0.01 each); the grid puts each at its bucket
    assert pnl["position"][-1] == pytest.approx(0.01)
    assert pnl["position"][0] == 0


def test_the_decision_in_force_is_the_latest_at_or_before_with_its_orders_and_version(client, viewer, stored):
    url = reverse("review:decision", args=[stored.pk])
    d = client.get(url, {"at": str(T0_NS + 3 * SEC + SEC // 2)}).json()
    assert d["decision"]["ts_ns"] == T0_NS + 3 * SEC and d["decision"]["inputs"]["i"] == 3
    assert [o["client_order_id"] for o in d["orders"]] == ["o3b", "o3a"]
    assert (
        d["orders"][0]["side"] == 1 and d["orders"][0]["price"] == 60_002.0 and d["orders"][0]["status"] == "cancelled"
    )
    assert d["params_version"] == 1 and "first version" in d["params_version_source"]
    assert d["next_decision_ns"] == T0_NS + 4 * SEC
    exact = client.get(url, {"at": str(T0_NS + 4 * SEC)}).json()  # at the very instant: that decision
    assert exact["decision"]["inputs"]["i"] == 4
    iso = client.get(url, {"at": (T0 + timedelta(seconds=9, milliseconds=1)).isoformat()}).json()
    assert iso["decision"]["inputs"]["i"] == 9 and iso["next_decision_ns"] is None
    assert client.get(url, {"at": str(T0_NS - 1)}).status_code == 404
    bad = client.get(url, {"at": "noon"})
    assert bad.status_code == 400 and "at" in bad.json()["error"]


def test_a_live_decision_carries_its_recorded_parameter_version(client, viewer, stored):
    QuoteDecisionRecord.objects.filter(session=stored).update(inputs={"params_version": 3, "mid": 1.0})
    d = client.get(reverse("review:decision", args=[stored.pk]), {"at": str(T0_NS + 5 * SEC)}).json()
    assert d["params_version"] == 3 and d["params_version_source"] == "recorded with the decision"


def test_the_decision_partial_shows_every_input_and_the_orders(client, viewer, stored):
    resp = client.get(reverse("review:decision_partial", args=[stored.pk]), {"at": str(T0_NS + 2 * SEC)})
    html = resp.content.decode()
    assert resp.status_code == 200
    assert "Decision #" in html and 'id="decision-version">1<' in html
    for key in ("sigma", "gamma", "mid"):
        assert f"<th>{key}</th>" in html
    assert "o2b" in html and "o2a" in html and "reason 2" in html
    none = client.get(reverse("review:decision_partial", args=[stored.pk]), {"at": str(T0_NS - SEC)})
    assert 'id="decision-none"' in none.content.decode()


def test_the_review_needs_a_role(client, stored):
    url = reverse("review:session", args=[stored.pk])
    assert client.get(url).status_code == 302
    client.force_login(make_user("none", "nobody"))
    assert client.get(url).status_code == 403
    assert client.get(reverse("review:series", args=[stored.pk])).status_code == 403


def test_an_unknown_session_is_a_404(client, viewer):
    assert client.get(reverse("review:session", args=[999_999])).status_code == 404
    assert client.get(reverse("review:series", args=[999_999])).status_code == 404


def test_series_json_is_plain_json(client, viewer, stored):
    resp = client.get(reverse("review:series", args=[stored.pk]))
    assert resp["Content-Type"].startswith("application/json")
    json.loads(resp.content)


@pytest.mark.browser
def test_in_chromium_the_charts_draw_and_a_click_shows_the_decision_in_force(live_server, transactional_db, tmp_path):
    import os

    from tests.roles import PASSWORD
    from tests.test_browser import CHROMIUM, CHROMIUM_ARGS, _wait_js

    if not os.path.exists(CHROMIUM):
        pytest.skip("Debian's chromium is not installed")
    s = build_session("in-chromium")
    other = build_session("other", start_ns=T0_NS + 3600 * SEC, gamma=0.3)  # no ORM call under Playwright's loop
    make_user("viewer", "chromium-viewer")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    from playwright.sync_api import sync_playwright

    errors: list[str] = []
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            try:
                page.goto(f"{live_server.url}/review/sessions/{s.pk}/")
                page.fill("#id_username", "chromium-viewer")
                page.fill("#id_password", PASSWORD)
                page.click("#login-submit")
                page.wait_for_selector("#review-price canvas", timeout=15_000)
                _wait_js(
                    page,
                    "document.getElementById('review-resolution').textContent.includes('10 decisions')",
                    timeout=30_000,
                )
                assert page.locator("#review-pnl canvas").count() == 1
                # click the middle of the price chart: the session runs 9 s, so about its 5th second
                box = page.locator("#review-price .u-over").bounding_box()
                page.mouse.click(box["x"] + box["width"] * 0.5, box["y"] + box["height"] * 0.5)
                page.wait_for_selector("#decision-panel .decision", timeout=10_000)
                text = page.locator("#decision-panel").inner_text()
                assert "Decision #" in text and "o4b" in text and "sigma" in text
                assert page.locator("#decision-version").inner_text() == "1"
                page.screenshot(path=str(tmp_path / "review.png"), full_page=True)
                # the comparison page draws both sessions too (here on different clocks: elapsed time)
                page.goto(f"{live_server.url}/review/compare/?a={s.pk}&b={other.pk}")
                page.wait_for_selector("#compare-price canvas", timeout=10_000)
                page.wait_for_selector("#compare-pnl canvas", timeout=10_000)
                assert "elapsed" in page.locator("#compare-alignment").inner_text()
            finally:
                browser.close()
    finally:
        os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        from django.db import connections

        connections.close_all()
    assert not [e for e in errors if "Content Security Policy" in e or "Uncaught" in e], errors
