"""Review analytics: markouts and the fill-rate curve against a direct computation on a hand-built session, κ
diagnostics on drawn samples, the endpoints on a stored session, empty sessions."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from django.urls import reverse
from scipy import stats

from apps.marketdata.models import Instrument, QuoteTick, TradeTick
from apps.review import analytics, analytics_data
from apps.trading.models import FillRecord, QuoteDecisionRecord, TradingSession
from tests.roles import make_user

T0 = datetime(2024, 1, 1, tzinfo=UTC)
T0_NS = int(T0.timestamp()) * 10**9

# decisions: (seconds after T0, mid, bid and ask distance in bps or None); each is in force until the next
DECISIONS = [(0, 100.0, 1.5, 2.5), (10, 100.2, 3.5, 2.5), (40, 99.9, 1.5, None), (100, 100.1, 1.5, 1.5)]
# fills: (seconds after T0, side, price, size)
FILLS = [(5, 1, 99.99, 1.0), (12, -1, 100.23, 2.0), (20, 1, 100.17, 1.0), (45, 1, 99.88, 0.5), (70, -1, 99.95, 1.0)]


def _at(s: float) -> tuple[datetime, int]:
    return T0 + timedelta(seconds=s), T0_NS + round(s * 1e9)


def _hand_built(symbol: str) -> TradingSession:
    inst = Instrument.objects.create(venue="hand", symbol=symbol, tick_size=0.001, lot_size=0.001)
    session = TradingSession.objects.create(name=f"hand {symbol}", mode="backtest", instrument=inst)
    for s, mid, bid_bps, ask_bps in DECISIONS:
        ts, ns = _at(s)
        QuoteDecisionRecord.objects.create(
            session=session,
            ts=ts,
            ts_ns=ns,
            mid=mid,
            bid_px=None if bid_bps is None else mid * (1 - bid_bps / 1e4),
            ask_px=None if ask_bps is None else mid * (1 + ask_bps / 1e4),
            bid_size=1.0,
            ask_size=1.0,
            inputs={"mid": mid, "best_bid": mid - 0.01, "best_ask": mid + 0.01},
        )
    for i, (s, side, px, size) in enumerate(FILLS):
        ts, ns = _at(s)
        FillRecord.objects.create(
            session=session, ts=ts, ts_ns=ns, client_order_id=f"o{i}", fill_id=f"f{i}", side=side, price=px, size=size
        )
    return session


@pytest.fixture
def hand(db) -> TradingSession:
    return _hand_built("A")


# The mids each fill sees, worked out by hand from DECISIONS (the last decision at or before t + h; strictly before t
# for m0; None past the last decision at 100 s): m0, then h = 0.1, 1, 5, 30, 60 s.
HAND_MIDS = [
    (100.0, [100.0, 100.0, 100.2, 100.2, 99.9]),  # t = 5: the 10 s decision is in force from 5 + 5 s on
    (100.2, [100.2, 100.2, 100.2, 99.9, 99.9]),  # t = 12
    (100.2, [100.2, 100.2, 100.2, 99.9, 99.9]),  # t = 20
    (99.9, [99.9, 99.9, 99.9, 99.9, None]),  # t = 45: 105 s is past the end
    (99.9, [99.9, 99.9, 99.9, 100.1, None]),  # t = 70
]


def _expected(side_filter: int, j: int, measure: str) -> dict:
    vals = []
    for (_, side, px, size), (m0, mids) in zip(FILLS, HAND_MIDS, strict=True):
        mh = mids[j]
        if mh is None or (side_filter and side != side_filter):
            continue
        vals.append(
            {
                "vs_fill_bps": 1e4 * side * (mh - px) / px,
                "vs_fill_quote": side * (mh - px) * size,
                "vs_mid_bps": 1e4 * side * (mh - m0) / m0,
                "vs_mid_quote": side * (mh - m0) * size,
            }[measure]
        )
    n = len(vals)
    mean = sum(vals) / n if n else None
    half = None
    if n > 1:
        sd = math.sqrt(sum((v - mean) ** 2 for v in vals) / (n - 1))
        half = stats.t.ppf(0.975, n - 1) * sd / math.sqrt(n)
    return {"n": n, "mean": mean, "half": half}


def test_markouts_match_a_direct_computation_on_a_hand_built_session(hand):
    out = analytics_data.load_markouts(hand)
    assert out["mid_source"] == "decisions" and out["n_fills_total"] == 5 and not out["capped"]
    assert out["horizons_s"] == [0.1, 1.0, 5.0, 30.0, 60.0]
    for name, side in (("buy", 1), ("sell", -1), ("all", 0)):
        for measure in ("vs_fill_bps", "vs_fill_quote", "vs_mid_bps", "vs_mid_quote"):
            for j in range(5):
                got = out["sides"][name][measure][j]
                want = _expected(side, j, measure)
                assert got["n"] == want["n"], (name, measure, j)
                assert got["mean"] == pytest.approx(want["mean"], abs=1e-9), (name, measure, j)
                if want["half"] is None:
                    assert got["ci_low"] is None
                else:
                    assert got["ci_low"] == pytest.approx(want["mean"] - want["half"], abs=1e-9)
                    assert got["ci_high"] == pytest.approx(want["mean"] + want["half"], abs=1e-9)
    # numbers worked fully by hand: the sell of 2 at 100.23, 60 s later against the mid 100.2 before it: the mid
    # fell to 99.9, +0.6 quote ccy; buys 5 s later against the fill: (100.2-99.99)/99.99, (100.2-100.17)/100.17 and
    # (99.9-99.88)/99.88, i.e. 21.0021, 2.9949 and 2.0024 bps
    assert out["sides"]["buy"]["vs_fill_bps"][2]["mean"] == pytest.approx((21.0021 + 2.9949 + 2.0024) / 3, abs=1e-4)
    assert out["sides"]["sell"]["vs_mid_quote"][4] == {
        "n": 1,
        "mean": pytest.approx(-2 * (99.9 - 100.2)),
        "ci_low": None,
        "ci_high": None,
        "sum": pytest.approx(0.6),
    }


def test_fill_rate_matches_a_direct_computation_on_a_hand_built_session(hand):
    out = analytics_data.load_fill_rate(hand, bin_bps=1.0, max_bps=5.0)
    assert out["edges_bps"] == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0] and out["duration_s"] == 100.0
    bid, ask = out["sides"]["bid"], out["sides"]["ask"]
    # bid at 1.5 bps for 0–10 s and 40–100 s, at 3.5 bps for 10–40 s; fills at 5 s and 45 s (1.5), 20 s (3.5)
    assert bid["quote_time_s"] == pytest.approx([0, 70, 0, 30, 0])
    assert bid["fills"] == [0, 2, 0, 1, 0]
    assert bid["ours_per_s"][1] == pytest.approx(2 / 70) and bid["ours_per_s"][3] == pytest.approx(1 / 30)
    assert bid["ours_per_s"][0] is None  # never quoted there: no rate, not zero
    # Garwood 95 % interval for 2 fills in 70 s
    assert bid["ours_ci_low"][1] == pytest.approx(stats.chi2.ppf(0.025, 4) / 2 / 70)
    assert bid["ours_ci_high"][1] == pytest.approx(stats.chi2.ppf(0.975, 6) / 2 / 70)
    # ask at 2.5 bps for 0–40 s; none 40–100 s (the sell at 70 s had no ask quote before it); 1.5 bps for 0 s
    assert ask["quote_time_s"] == pytest.approx([0, 0, 40, 0, 0]) and ask["fills"] == [0, 0, 1, 0, 0]
    assert ask["ours_per_s"][2] == pytest.approx(1 / 40)
    assert out["fills_unattributed"] == 1
    assert out["public"] == {"stored": False, "message": "no public trades stored for this range"}
    assert bid["public_per_s"] is None


def test_public_fill_rate_counts_trades_at_or_through_each_distance(db):
    session = _hand_built("B")
    inst = session.instrument
    for s, bid, ask in ((0, 99.99, 100.01), (30, 100.09, 100.11)):  # mids 100.0 then 100.1
        ts, ns = _at(s)
        QuoteTick.objects.create(
            instrument=inst, ts=ts, ts_exch_ns=ns, ts_local_ns=ns, bid_px=bid, bid_size=1, ask_px=ask, ask_size=1
        )
    # (s, aggressor, price): sells hit bids at 1.6 and 3.1 bps below the mid, a sell at the mid; buys lift asks at
    # 2.1 bps and 0.03/100.1 = 2.997 bps above it
    for i, (s, agg, px) in enumerate(
        ((5, -1, 99.984), (8, -1, 99.969), (20, 1, 100.021), (35, 1, 100.13), (40, -1, 100.1))
    ):
        ts, ns = _at(s)
        TradeTick.objects.create(
            instrument=inst, ts=ts, ts_exch_ns=ns, ts_local_ns=ns, price=px, size=1, aggressor=agg, trade_id=f"t{i}"
        )
    out = analytics_data.load_fill_rate(session, bin_bps=1.0, max_bps=5.0)
    assert out["mid_source"] == "ticks" and out["public"]["n_total"] == 5 and out["public"]["sample_1_in"] == 1
    # bucket centres 0.5, 1.5, 2.5, 3.5, 4.5 bps; 100 s observed
    assert out["sides"]["bid"]["public_trades_reaching"] == [2, 2, 1, 0, 0]
    assert out["sides"]["ask"]["public_trades_reaching"] == [2, 2, 1, 0, 0]
    assert out["sides"]["bid"]["public_per_s"] == pytest.approx([0.02, 0.02, 0.01, 0, 0])
    # with tick mids the markouts see 100.0 until 30 s, 100.1 after (the last tick): the buy at 5 s, at 5 s later
    m = analytics_data.load_markouts(session)
    assert m["mid_source"] == "ticks"
    assert m["sides"]["buy"]["vs_mid_bps"][2]["mean"] == pytest.approx(0.0)  # fills at 5, 20, 45: 5 s later
    assert m["sides"]["buy"]["vs_mid_bps"][2]["n"] == 2  # 45 + 5 s is past the last tick at 30 s
    k = analytics_data.load_kappa(session)
    assert k["n"] == 5 and k["exponential"]["mean_distance_bps"] == pytest.approx(
        (1.6 + 3.1 + 2.1 + 0.03 / 100.1 * 1e4 + 0) / 5, rel=1e-6
    )


def test_kappa_diagnostics_recover_the_rate_of_exponential_samples():
    rng = np.random.default_rng(18)
    kappa = 5000.0  # 2 bps mean distance
    out = analytics.kappa_diagnostics(rng.exponential(1 / kappa, 4000))
    e = out["exponential"]
    assert abs(e["kappa"] - kappa) < 3 * e["kappa_std"]
    assert e["ks_stat"] < 0.03 and e["ks_p"] > 0.01
    assert out["comparison"]["preferred"] == "exponential"
    assert sum(out["histogram"]["density_per_bp"]) * (out["histogram"]["edges_bps"][1]) == pytest.approx(
        1 - out["histogram"]["beyond_last_edge"] / 4000
    )


def test_kappa_diagnostics_prefer_the_power_law_on_pareto_samples():
    rng = np.random.default_rng(7)
    alpha = 2.5  # density ∝ δ^-2.5 above 1 bp
    out = analytics.kappa_diagnostics((rng.pareto(alpha - 1, 4000) + 1) * 1e-4)
    assert out["comparison"]["preferred"] == "power_law" and out["comparison"]["loglik_ratio"] < 0
    assert out["power_law"]["alpha"] == pytest.approx(alpha, abs=0.15)
    # a pure Pareto fits from any x_min above its scale; the K–S choice lands at or above the true 1 bp
    assert 0.99 <= out["power_law"]["x_min_bps"] < 5.0
    assert out["power_law"]["ks_stat"] < out["exponential"]["ks_stat"]


def test_pure_functions_answer_cleanly_on_empty_input():
    assert analytics.kappa_diagnostics(np.array([]))["exponential"] is None
    assert analytics.mean_ci(np.array([]))["mean"] is None
    m = analytics.markouts(*(np.array([]),) * 4, np.empty((0, 5)))
    assert m["sides"]["all"]["vs_fill_bps"][0]["n"] == 0
    with pytest.raises(ValueError, match="bin_bps"):
        analytics.distance_edges_bps(0, 10)


def test_the_endpoints_answer_on_a_stored_session(client, hand):
    client.force_login(make_user("viewer"))
    for name in ("markouts", "fill_rate", "spreads", "kappa_diagnostics"):
        resp = client.get(reverse(f"review:{name}", args=[hand.pk]), HTTP_ACCEPT="application/json")
        assert resp.status_code == 200, (name, resp.content)
        assert resp.json()["session_id"] == hand.pk
    spreads = client.get(reverse("review:spreads", args=[hand.pk])).json()
    # ours: 4 bps for 10 s, 6 bps for 30 s, none for 60 s (no ask), 3 bps for 0 s; the market: 0.02/mid always
    assert spreads["histogram"]["ours"]["seconds_total"] == pytest.approx(40.0)
    assert spreads["histogram"]["ours"]["time_weighted_mean_bps"] == pytest.approx((4 * 10 + 6 * 30) / 40, rel=1e-6)
    assert spreads["histogram"]["market"]["seconds_total"] == pytest.approx(100.0)
    assert len(spreads["series"]["t_s"]) <= 300
    kappa = client.get(reverse("review:kappa_diagnostics", args=[hand.pk])).json()
    assert kappa["empty"] and kappa["message"] == "no public trades stored for this range"

    page = client.get(reverse("review:analytics", args=[hand.pk]), HTTP_HX_REQUEST="true")
    html = page.content.decode()
    assert page.status_code == 200 and "<script" not in html  # the host page loads the scripts
    assert f'data-markouts-url="{reverse("review:markouts", args=[hand.pk])}"' in html
    full = client.get(reverse("review:analytics", args=[hand.pk])).content.decode()
    assert "review/analytics.js" in full and "vendor/uplot/uPlot.iife.min.js" in full


def test_bad_inputs_get_a_400_naming_the_field(client, hand):
    client.force_login(make_user("viewer"))
    url = reverse("review:fill_rate", args=[hand.pk])
    for query, field in (
        ({"bin_bps": "x"}, "bin_bps"),
        ({"max_bps": "-1"}, "max_bps"),
        ({"mid_source": "<b>"}, "mid_source"),
    ):
        resp = client.get(url, query, HTTP_ACCEPT="application/json")
        assert resp.status_code == 400 and field in resp.json()["error"] and "<b>" not in resp.json()["error"]
    resp = client.get(reverse("review:spreads", args=[hand.pk]), {"points": "2.5"}, HTTP_ACCEPT="application/json")
    assert resp.status_code == 400 and "points" in resp.json()["error"]
    resp = client.get(reverse("review:markouts", args=[999_999]), HTTP_ACCEPT="application/json")
    assert resp.status_code == 404


def test_an_empty_session_answers_cleanly(client, db):
    inst = Instrument.objects.create(venue="hand", symbol="EMPTY", tick_size=0.01, lot_size=0.001)
    session = TradingSession.objects.create(name="empty", mode="backtest", instrument=inst)
    client.force_login(make_user("viewer"))
    for name in ("markouts", "fill_rate", "spreads", "kappa_diagnostics"):
        body = client.get(reverse(f"review:{name}", args=[session.pk]), HTTP_ACCEPT="application/json").json()
        assert body["empty"] is True and body["message"], name
    # one decision, no fill: a short session
    ts, ns = _at(0)
    QuoteDecisionRecord.objects.create(
        session=session, ts=ts, ts_ns=ns, mid=100.0, bid_px=99.99, ask_px=100.01, bid_size=1, ask_size=1
    )
    for name in ("markouts", "fill_rate", "spreads", "kappa_diagnostics"):
        resp = client.get(reverse(f"review:{name}", args=[session.pk]), HTTP_ACCEPT="application/json")
        assert resp.status_code == 200, (name, resp.content)


def test_the_analytics_need_a_console_role(client, hand):
    url = reverse("review:markouts", args=[hand.pk])
    assert client.get(url, HTTP_ACCEPT="application/json").status_code == 401
    client.force_login(make_user("none"))
    assert client.get(url, HTTP_ACCEPT="application/json").status_code == 403


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_the_panel_draws_its_charts_in_chromium(live_server):
    """The panel's own page in headless Chromium: every chart drawn by static/review/analytics.js, no script error
    (the CSP allows 'self' only), the notes filled from the JSON."""
    from playwright.sync_api import sync_playwright

    from tests.roles import PASSWORD
    from tests.test_browser import _wait_js

    session = _hand_built("BROWSER")
    make_user("viewer", "analytics-viewer")
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path="/usr/bin/chromium",
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        try:
            page = browser.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(f"{live_server.url}/login/?next=/review/sessions/{session.pk}/analytics/")
            page.fill("input[name=username]", "analytics-viewer")
            page.fill("input[name=password]", PASSWORD)
            page.click("button[type=submit]")
            page.wait_for_selector("[data-role=spreads-hist-chart] .uplot", timeout=15_000)
            _wait_js(page, "document.querySelectorAll('.review-analytics .uplot').length === 5", timeout=15_000)
            assert errors == []
            assert "5 fills · mids from decisions" in page.text_content("[data-role=markouts-note]")
            assert page.text_content("[data-role=kappa-note]") == "no public trades stored for this range"
            assert page.locator("[data-role=markouts-table] tbody tr").count() == 15
        finally:
            browser.close()
