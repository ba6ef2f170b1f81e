"""Estimator histories on the review page (issue 18): the partial, the JSON, and the point cap in SQL.

Real PostgreSQL: snapshot rows are written as the recorder writes them (or in bulk with generate_series for a
long session), read back through the real views; the chart in headless Chromium under the CSP.
"""

from __future__ import annotations

import json
import re
import time

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from apps.control.services import Actor, create_paper_session
from apps.engine.estimators.base import EstimatorSnapshot, EstimatorState
from apps.engine.simulation.snapshots import NAMES
from apps.marketdata.writer import BatchedWriter
from apps.review.estimator_selectors import MAX_POINTS, bucket_width_us
from apps.trading.models import EstimatorSnapshotRecord
from apps.trading.recording import Recorder, make_writer
from tests.roles import PASSWORD, make_user
from tests.security.conftest import bare_daphne  # noqa: F401  (the fixture)
from tests.test_browser import browser_page  # noqa: F401  (the fixture)

_NS = 1_000_000_000
T0 = 1_723_161_255 * _NS  # 2024-08-08 23:54:15 UTC, whole second


def _session(name: str = "est"):
    return create_paper_session(Actor(label="test"), name=name, seed=3, start=False)


def _record(session_id: int, snaps_at: list[tuple[int, list[EstimatorSnapshot]]]) -> None:
    """Through the recorder and the batched writer, as the driver's sink writes them."""
    writer: BatchedWriter = make_writer(60.0, None)
    rec = Recorder(writer, session_id, 0)
    for ts, snaps in snaps_at:
        rec.estimator_snapshot(ts, snaps)
    assert writer.flush(), writer.stats.last_error


def _kappa(v: float, state: EstimatorState = EstimatorState.OK) -> EstimatorSnapshot:
    return EstimatorSnapshot("kappa", v, 100.0, state, T0, v - 200.0, v + 200.0, {"a_per_s": 5.0, "x": float("nan")})


def _bulk(session_id: int, seconds: int) -> None:
    """``seconds`` snapshots of every estimator, one a second (a long session), in one INSERT ... generate_series."""
    with connection.cursor() as cur:
        cur.execute(
            f"""
            INSERT INTO {EstimatorSnapshotRecord._meta.db_table}
                (session_id, ts, ts_ns, name, value, std, state, ci_low, ci_high, detail)
            SELECT %(sid)s, to_timestamp((%(t0)s + i::bigint * 1000000000) / 1e9), %(t0)s + i::bigint * 1000000000,
                   n, 1000 + i %% 100, 10, CASE WHEN i = 5000 THEN 'failed' WHEN i < 60 THEN 'warming' ELSE 'ok' END,
                   990 + i %% 100, 1010 + i %% 100,
                   CASE WHEN n = 'gamma' THEN jsonb_build_object('gamma_contrib_drawdown', 0.5,
                        'gamma_contrib_thin_book', -0.25, 'gamma_base', 5000) ELSE '{{}}'::jsonb END
            FROM generate_series(0, %(n)s - 1) i, unnest(%(names)s::text[]) n
            """,
            {"sid": session_id, "t0": T0, "n": seconds, "names": list(NAMES)},
        )


@pytest.mark.django_db(transaction=True)
def test_recorded_snapshots_come_back_point_for_point_with_intervals_and_states(client) -> None:
    session = _session()
    _record(
        session.pk,
        [
            (T0, [_kappa(3000.0, EstimatorState.WARMING)]),
            (T0 + _NS, [_kappa(3100.0)]),
            (T0 + 2 * _NS, [_kappa(3200.0, EstimatorState.STALE)]),
        ],
    )
    row = EstimatorSnapshotRecord.objects.filter(session=session).order_by("ts_ns").first()
    assert row.detail["x"] is None and row.detail["a_per_s"] == 5.0  # NaN is stored as null, not as invalid JSON
    client.force_login(make_user("viewer"))
    data = client.get(reverse("review:estimators_json", args=[session.pk])).json()
    assert data["downsampled"] is False and data["bucket_s"] is None
    [k] = data["series"]
    assert k["name"] == "kappa" and k["rows"] == 3
    assert k["t"] == [T0 / 1e9, T0 / 1e9 + 1, T0 / 1e9 + 2]
    assert k["value"] == [3000.0, 3100.0, 3200.0]
    assert k["lo"] == [2800.0, 2900.0, 3000.0] and k["hi"] == [3200.0, 3300.0, 3400.0]
    assert k["state"] == ["warming", "ok", "stale"]
    assert "fraction of mid" in k["unit"] and k["band"] == "interval"
    # a range
    part = client.get(
        reverse("review:estimators_json", args=[session.pk]), {"start_ns": T0 + _NS, "end_ns": T0 + 2 * _NS}
    ).json()
    assert part["series"][0]["value"] == [3100.0]


@pytest.mark.django_db(transaction=True)
def test_a_long_session_is_downsampled_in_sql_to_at_most_the_requested_points(client) -> None:
    session = _session()
    _bulk(session.pk, 20_000)  # 5.6 h at one snapshot a second: 160,000 rows
    client.force_login(make_user("viewer"))
    url = reverse("review:estimators_json", args=[session.pk])
    for points in (2, 7, 300, 600, 19_999 // 4):
        data = client.get(url, {"points": points}).json()
        assert data["downsampled"] is True and data["points_max"] == points
        assert {s["name"] for s in data["series"]} == set(NAMES)
        for s in data["series"]:
            assert 0 < len(s["t"]) <= points, (s["name"], points, len(s["t"]))
            assert sum(s["n"]) == 20_000 == s["rows"]  # every row counted in exactly one bucket
        assert len(data["gamma_contributions"]["t"]) <= points
    data = client.get(url, {"points": 300}).json()
    kappa = next(s for s in data["series"] if s["name"] == "kappa")
    # the worst state of a bucket shows: the one failed second (i = 5000) is not averaged away
    failed_at = (T0 / 1e9) + 5000
    [i] = [j for j, st in enumerate(kappa["state"]) if st == "failed"]
    assert kappa["t"][i] <= failed_at < kappa["t"][i] + data["bucket_s"]
    assert kappa["state"][0] == "warming"
    # the band is the envelope of the rows' intervals: never narrower than a row's
    assert all(lo <= v - 10 + 1e-9 for lo, v in zip(kappa["lo"], kappa["value"], strict=True))
    contrib = data["gamma_contributions"]["series"]
    assert set(contrib) == {"drawdown", "thin_book"} and contrib["drawdown"][0] == pytest.approx(0.5)
    # the same queries for 30 rows and for 160,000, both downsampled (the cap is in SQL, nothing paged in Python):
    # session, user and role (3), savepoint pair (2), counts, TimescaleDB?, series, γ contributions (4)
    small = _session("small")
    _bulk(small.pk, 30)
    counts = []
    for sid in (small.pk, session.pk):
        with CaptureQueriesContext(connection) as q:
            r = client.get(url.replace(str(session.pk), str(sid)), {"points": 5})
            assert r.status_code == 200 and r.json()["downsampled"]
        counts.append(len(q))
    assert counts[0] == counts[1] <= 9, counts


def test_the_bucket_width_keeps_any_span_within_the_cap() -> None:
    for span in (1, 999, 10**9, 86_400 * 10**9, 7 * 86_400 * 10**9 + 12345):
        for points in (2, 3, 600, MAX_POINTS):
            for first in (T0, T0 + 123_456_789):
                w = bucket_width_us(first, first + span, points) * 1000
                assert (first + span) // w - first // w + 1 <= points


@pytest.mark.django_db(transaction=True)
def test_bad_parameters_are_refused_naming_the_field(client) -> None:
    session = _session()
    client.force_login(make_user("viewer"))
    url = reverse("review:estimators_json", args=[session.pk])
    for params, field in (
        ({"points": "1"}, "points"),
        ({"points": "abc"}, "points"),
        ({"points": str(MAX_POINTS + 1)}, "points"),
        ({"start_ns": "yesterday"}, "start_ns"),
        ({"end_ns": "-5"}, "end_ns"),
        ({"start_ns": "10", "end_ns": "5"}, "end_ns"),
    ):
        r = client.get(url, params)
        assert r.status_code == 400 and field in r.json()["error"], (params, r.content)
    r = client.get(reverse("review:estimators", args=[session.pk]), {"points": "0"})
    assert r.status_code == 400 and b"points" in r.content
    assert client.get(reverse("review:estimators_json", args=[999_999])).status_code == 404


@pytest.mark.django_db(transaction=True)
def test_the_partial_is_a_fragment_for_htmx_and_a_page_on_its_own(client) -> None:
    session = _session()
    _bulk(session.pk, 10)
    url = reverse("review:estimators", args=[session.pk])
    assert client.get(url).status_code == 302  # logged out: to the login page
    client.force_login(make_user("none", "norole"))
    assert client.get(url).status_code == 403
    client.force_login(make_user("viewer"))
    frag = client.get(url, HTTP_HX_REQUEST="true").content.decode()
    assert "<html" not in frag and "<script" not in frag  # no inline script: the page's estimators.js draws it
    assert re.search(r'data-estimators-url="/review/sessions/\d+/estimators\.json\?points=600"', frag)
    for chart in ("kappa", "sigma", "lambda", "flow", "drift", "microprice", "gamma", "gamma-contributions"):
        assert f'id="est-chart-{chart}"' in frag, chart
    assert "bps/√s" in frag and "UTC" in frag and "estimators-empty" not in frag
    page = client.get(url).content.decode()
    assert "<html" in page and "review/estimators.js" in page and "vendor/uplot/uPlot.iife.min.js" in page
    assert " style=" not in page and "onload" not in page  # nothing the CSP would refuse
    empty = _session("empty")
    assert "estimators-empty" in client.get(reverse("review:estimators", args=[empty.pk])).content.decode()


@pytest.mark.browser
@pytest.mark.stack
def test_the_charts_draw_under_the_csp_with_bands_and_state_strips(
    bare_daphne,  # noqa: F811 - the fixture imported above
    browser_page,  # noqa: F811
) -> None:
    session = _session("browser")
    _bulk(session.pk, 3000)
    make_user("viewer", "est-viewer")
    page = browser_page
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" or "CSP" in m.text else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    missing: list[str] = []
    page.on("response", lambda r: missing.append(r.url) if r.status == 404 else None)
    page.add_init_script(
        "document.addEventListener('securitypolicyviolation', function (e) {"
        " console.error('CSP ' + e.violatedDirective); });"
    )
    path = f"/review/sessions/{session.pk}/estimators/"
    page.goto(f"{bare_daphne.url}{path}")
    page.fill("#id_username", "est-viewer")
    page.fill("#id_password", PASSWORD)
    page.click("#login-submit")
    page.wait_for_url(f"**{path}")
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and page.locator("#estimators canvas").count() < 8:
        time.sleep(0.1)
    assert page.locator("#estimators canvas").count() >= 8  # seven estimator charts and the γ contributions
    status = page.locator("#estimators-status").inner_text()
    assert "points per series at most (cap 600)" in status and "averaged in the database" in status, status
    points = json.loads(
        page.evaluate("JSON.stringify([...document.querySelectorAll('.est-chart')].map(f => +f.dataset.points))")
    )
    assert all(0 < p <= 600 for p in points), points
    legend = page.locator("#est-chart-sigma").inner_text()
    assert "σ clean" in legend and "σ total" in legend and "time (UTC)" in legend
    assert [u for u in missing if not u.endswith("/favicon.ico")] == []
    assert [p for p in problems if "404" not in p] == [], problems
