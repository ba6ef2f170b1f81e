"""The sessions overview and the start form, on real PostgreSQL (and a real Celery worker for the queued loop)."""

from __future__ import annotations

import re
import time
from datetime import timedelta

import pytest
from django.utils import timezone

from apps.control.models import AuditEvent, GlobalKillSwitch
from apps.control.presets import PRESETS
from apps.control.services import Actor, create_paper_session, halt_session
from apps.dashboard.overview_views import PAGE_SIZE
from apps.trading.models import BacktestRun, TradingSession
from apps.trading.runtime import build_session_config
from tests.conftest import shared_data, wait_until
from tests.roles import make_user

HL_FILE = ("hftbacktest-hyperliquid-btc-20250126-tiny", "raw", "hyperliquid_btc_20250126.gz")
FAST = {"strategy": {"sigma_bucket_s": 0.25, "sigma_min_buckets": 8, "kappa_min_volume": 0.05}}


def _cells(html: str, session_id: int) -> dict[str, str]:
    """The row of ``session_id`` as {data-col: text}."""
    row = re.search(rf'<tr data-session="{session_id}">(.*?)</tr>', html, re.S)
    assert row, f"no row for session {session_id}"
    cells = re.findall(r'<td data-col="([\w-]+)"[^>]*>(.*?)</td>', row.group(1), re.S)
    return {k: re.sub(r"<[^>]+>", "", v).strip() for k, v in cells}


def _paper(name: str = "p", seed: int = 1) -> TradingSession:
    return create_paper_session(Actor(label="test"), name=name, params=FAST, seed=seed, start=False)


@pytest.fixture
def viewer(client):
    user = make_user("viewer")
    client.force_login(user)
    return user


@pytest.fixture
def op_client(client):
    client.force_login(make_user("operator"))
    return client


def _form(**over) -> dict:
    return {
        "name": "from the page",
        "instrument": "simulator",
        "source": "simulator",
        "preset": "default",
        "seed": "4",
    } | over


# --- the table ------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_table_shows_each_sessions_mode_venue_status_inventory_pnl_switch_estimators_and_feed_age(client, viewer):
    now_ns = time.time_ns()
    running = _paper("running one")
    TradingSession.objects.filter(pk=running.pk).update(
        status="running",
        started_at=timezone.now(),
        heartbeat_at=timezone.now() - timedelta(seconds=1),
        last_state={
            "ts_ns": now_ns - 2_000_000_000,
            "inventory": 0.012,
            "pnl": -3.456,
            "kappa_state": "ok",
            "sigma_state": "warming",
        },
    )
    halted = _paper("halted one", seed=2)
    TradingSession.objects.filter(pk=halted.pk).update(status="running", last_state={"ts_ns": now_ns - 9 * 10**9})
    halt_session(Actor(label="test"), halted.pk, "test halt")
    stopped = _paper("stopped one", seed=3)
    TradingSession.objects.filter(pk=stopped.pk).update(status="stopped", last_state={"ts_ns": now_ns - 10**12})

    html = client.get("/").content.decode()
    r = _cells(html, running.pk)
    assert r["mode"] == "paper" and r["venue"] == "sim" and r["symbol"] == "SIM-BTCUSDT-1" and r["feed"] == "simulator"
    assert r["status"] == "running"
    assert r["inventory"] == "0.012 BTC" and r["pnl"] == "-3.46 USDT"
    assert r["kill-switch"] == "armed"
    assert r["kappa-state"] == "ok" and r["sigma-state"] == "warming"
    age = float(r["feed-age"].split(" s")[0])
    assert 1.5 < age < 10 and "(hb " in r["feed-age"]

    h = _cells(html, halted.pk)
    assert h["status"] == "halted" and h["kill-switch"] == "halted (session)"
    assert h["inventory"] == "—" and h["pnl"] == "—" and h["kappa-state"] == "—"
    assert 'class="error"' in re.search(rf'<tr data-session="{halted.pk}">(.*?)</tr>', html, re.S).group(1)  # stale

    s = _cells(html, stopped.pk)
    assert s["status"] == "stopped" and s["feed-age"] == "—"  # an ended session has no feed to age


@pytest.mark.django_db
def test_under_a_global_halt_governed_sessions_show_halted_by_the_global_switch_and_backtests_do_not(client, viewer):
    paper = _paper()
    TradingSession.objects.filter(pk=paper.pk).update(status="running")
    backtest = TradingSession.objects.create(name="bt", instrument=paper.instrument, mode="backtest", status="stopped")
    GlobalKillSwitch.objects.update_or_create(singleton=True, defaults={"state": "halted", "reason": "test"})

    html = client.get("/").content.decode()
    assert _cells(html, paper.pk)["status"] == "halted"
    assert _cells(html, paper.pk)["kill-switch"] == "halted (global)"
    assert _cells(html, backtest.pk)["status"] == "stopped" and _cells(html, backtest.pk)["kill-switch"] == "armed"
    # the filter counts the status shown, not the stored one
    halted_page = client.get("/?status=halted").content.decode()
    assert f'data-session="{paper.pk}"' in halted_page and f'data-session="{backtest.pk}"' not in halted_page
    assert f'data-session="{paper.pk}"' not in client.get("/?status=running").content.decode()


@pytest.mark.django_db
def test_the_table_is_paginated_filtered_by_status_and_refreshes_itself(client, viewer):
    sessions = [_paper(f"s{i}", seed=i) for i in range(PAGE_SIZE + 3)]
    TradingSession.objects.filter(pk=sessions[0].pk).update(status="paused")

    first = client.get("/").content.decode()
    assert first.count("<tr data-session=") == PAGE_SIZE and "page 1 of 2" in first
    second = client.get("/?page=2").content.decode()
    assert second.count("<tr data-session=") == 3 and f'data-session="{sessions[0].pk}"' in second

    paused = client.get("/?status=paused").content.decode()
    assert paused.count("<tr data-session=") == 1
    assert client.get("/?status=failed").content.decode().count("<tr data-session=") == 0
    assert client.get("/?status=nonsense").content.decode().count("<tr data-session=") == PAGE_SIZE  # shows all

    part = client.get("/sessions/table/?status=paused&page=1")
    assert part.status_code == 200
    body = part.content.decode()
    assert body.startswith('<div id="sessions-table"') and 'hx-trigger="every 3s"' in body
    assert 'hx-get="/sessions/table/?status=paused&amp;page=1"' in body and "<html" not in body


# --- roles ----------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_viewer_sees_no_start_form_and_a_post_from_a_viewer_is_refused_with_403(client, viewer):
    page = client.get("/").content.decode()
    assert 'id="start-session"' not in page and "needs the operator role" in page
    resp = client.post("/sessions/start/", _form())
    assert resp.status_code == 403
    assert client.post("/sessions/start/", _form(), HTTP_ACCEPT="application/json").status_code == 403
    assert not TradingSession.objects.exists()


@pytest.mark.django_db
def test_anonymous_and_roleless_users_cannot_start_a_session(client):
    assert client.post("/sessions/start/", _form()).status_code == 302
    assert client.post("/sessions/start/", _form(), HTTP_ACCEPT="application/json").status_code == 401
    client.force_login(make_user("none"))
    assert client.post("/sessions/start/", _form()).status_code == 403
    assert not TradingSession.objects.exists()


# --- starting sessions ----------------------------------------------------------------------------


@pytest.mark.django_db
def test_an_operator_starts_a_simulator_session_with_a_preset_and_it_is_audited(op_client):
    assert 'id="start-session"' in op_client.get("/").content.decode()
    resp = op_client.post("/sessions/start/", _form(preset="conservative"))
    assert resp.status_code == 303
    session = TradingSession.objects.get()
    assert resp["Location"] == f"/sessions/{session.pk}/"
    assert (session.name, session.mode, session.feed, session.seed) == ("from the page", "paper", "simulator", 4)
    assert session.params["strategy"]["gamma"] == 10000.0
    audit = AuditEvent.objects.get(session=session, action="session.create")
    assert audit.actor_label == "operator-user" and audit.detail["start"] is True

    htmx = op_client.post("/sessions/start/", _form(name="htmx"), HTTP_HX_REQUEST="true")
    assert htmx.status_code == 204 and htmx["HX-Redirect"].startswith("/sessions/")
    api = op_client.post("/sessions/start/", _form(name="api"), HTTP_ACCEPT="application/json")
    assert api.status_code == 201 and TradingSession.objects.filter(pk=api.json()["session"], name="api").exists()


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("over", "field", "message"),
    [
        ({"name": ""}, "name", "This field is required"),
        ({"instrument": "binance-usdm:DOGEUSDT"}, "instrument", "Select a valid choice"),
        ({"instrument": "binance-usdm:BTCUSDT"}, "source", "the simulator makes its own market"),
        ({"source": "stored"}, "instrument", "a replay needs a known instrument"),
        ({"source": "carrier-pigeon"}, "source", "Select a valid choice"),
        ({"preset": "yolo"}, "preset", "Select a valid choice"),
        ({"seed": "-1"}, "seed", "greater than or equal to 0"),
        ({"seed": "one"}, "seed", "Enter a whole number"),
        (
            {"instrument": "binance-usdm:BTCUSDT", "source": "recording", "recording": "/etc/passwd"},
            "recording",
            "Select a valid choice",
        ),
        ({"recording": "shared/data/x.gz"}, "recording", "Select a valid choice"),
        ({"instrument": "binance-usdm:ETHUSDT", "source": "stored"}, "source", "no market data stored"),
    ],
)
def test_every_bad_input_is_refused_with_the_field_named_and_nothing_is_created(op_client, over, field, message):
    resp = op_client.post("/sessions/start/", _form(**over), HTTP_HX_REQUEST="true")
    assert resp.status_code == 400
    body = resp.content.decode()
    errors = re.findall(rf'<span class="error" data-field="{field}">(.*?)</span>', body, re.S)
    assert errors and message in " ".join(errors), body
    api = op_client.post("/sessions/start/", _form(**over), HTTP_ACCEPT="application/json")
    assert api.status_code == 400 and field in api.json()["fields"] and api.json()["error"].startswith(field)
    assert not TradingSession.objects.exists()
    assert not AuditEvent.objects.filter(action="session.create").exists()


@pytest.mark.django_db
def test_a_recording_of_a_known_instrument_starts_a_replay_session_on_its_grid_and_fees(op_client):
    path = shared_data(*HL_FILE)
    page = op_client.get("/").content.decode()
    key = "shared/data/" + "/".join(HL_FILE)
    assert f'value="{key}"' in page  # offered, labelled with the instrument its records name

    wrong = op_client.post(
        "/sessions/start/",
        _form(instrument="binance-usdm:BTCUSDT", source="recording", recording=key),
        HTTP_HX_REQUEST="true",
    )
    assert wrong.status_code == 400 and "this recording holds hyperliquid:BTC" in wrong.content.decode()

    resp = op_client.post(
        "/sessions/start/", _form(instrument="hyperliquid:BTC", source="recording", recording=key, preset="wide")
    )
    assert resp.status_code == 303, resp.content.decode()[:2000]
    session = TradingSession.objects.get()
    assert session.feed == "replay" and session.mode == "paper"
    assert (session.instrument.venue, session.instrument.symbol) == ("hyperliquid", "BTC")
    assert (session.instrument.tick_size, session.instrument.lot_size) == (1.0, 0.00001)
    assert session.params["replay"] == {"files": [str(path)], "format": "hyperliquid"}
    assert session.params["venue"] == {"maker_fee": 0.00015, "taker_fee": 0.00045}
    assert session.params["strategy"]["levels"] == 3 and session.params["strategy"]["taker_fee_bps"] == 4.5
    build_session_config(session.params, session.seed)  # what the loop will build


@pytest.mark.django_db(transaction=True)
def test_a_replay_of_stored_ticks_covers_everything_stored_for_the_instrument(op_client):
    from django.core.management import call_command

    path = shared_data(*HL_FILE)
    call_command("import_marketdata", str(path), "--format", "hyperliquid")
    resp = op_client.post("/sessions/start/", _form(instrument="hyperliquid:BTC", source="stored"))
    assert resp.status_code == 303
    replay = TradingSession.objects.get(mode="paper").params["replay"]
    assert set(replay) == {"instrument_id", "start_ns", "end_ns"} and replay["end_ns"] > replay["start_ns"]


def test_every_preset_is_valid_for_build_session_config():
    assert [p.name for p in PRESETS][:3] == ["default", "conservative", "wide"]
    for p in PRESETS:
        config = build_session_config(p.params, 0)
        assert config.strategy.max_inventory > 0, p.name
    assert build_session_config(PRESETS[1].params, 0).strategy.quoter.gamma_base == 10000.0


@pytest.mark.stack
@pytest.mark.django_db(transaction=True)
def test_a_session_started_from_the_page_is_run_by_the_real_celery_worker(op_client, tmp_path, purge_queues):
    from tests.conftest import _stop, stack_env, start_worker

    logs = tmp_path / "logs"
    logs.mkdir()
    worker = start_worker(stack_env(), logs, queues="quoting", concurrency=1)
    try:
        resp = op_client.post("/sessions/start/", _form(name="queued"))
        assert resp.status_code == 303
        session = TradingSession.objects.get(name="queued")

        def quoting() -> bool:
            session.refresh_from_db()
            return session.status == "running" and bool(session.last_state.get("ts_ns"))

        assert wait_until(quoting, 60), (session.status, (logs / "worker.log").read_text()[-2000:])
        assert AuditEvent.objects.filter(session=session, action="loop.start").exists()
        row = _cells(op_client.get("/").content.decode(), session.pk)
        assert row["status"] == "running" and row["feed-age"] != "—"
    finally:
        TradingSession.objects.filter(name="queued").update(status="stopped")
        _stop({"worker": worker})
    assert not BacktestRun.objects.exists()


@pytest.mark.django_db
def test_start_paper_session_takes_a_preset_and_merges_params_over_it():
    import io

    from django.core.management import CommandError, call_command

    out = io.StringIO()
    call_command(
        "start_paper_session", "--preset", "wide", "--params", '{"strategy": {"levels": 2}}', "--no-start", stdout=out
    )
    session = TradingSession.objects.get(pk=int(out.getvalue()))
    assert session.params["strategy"] == {"adverse_selection_bps": 2.0, "levels": 2, "level_spacing_bps": 2.0}
    with pytest.raises(CommandError, match="invalid choice: 'yolo'"):
        call_command("start_paper_session", "--preset", "yolo", "--no-start", stdout=io.StringIO())


@pytest.mark.browser
@pytest.mark.stack
def test_in_chromium_an_operator_starts_a_session_from_the_overview_and_watches_its_row_go_live(
    live_stack, operator, tmp_path
):
    """Under the console's CSP (no inline script, no eval): the htmx form posts, the browser lands on the new
    session's page, and back on the overview the polled table shows it running with a feed age."""
    import os

    from tests.test_browser import CHROMIUM, CHROMIUM_ARGS, _wait_js

    if not os.path.exists(CHROMIUM):
        pytest.skip("Debian's chromium is not installed")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    from playwright.sync_api import sync_playwright

    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            try:
                page.goto(f"{live_stack.url}/")
                page.fill("#id_username", "op")
                page.fill("#id_password", "op-password-123")
                page.click("#login-submit")
                page.wait_for_selector("#start-session")
                # a bad combination first: the form comes back (htmx, 400) with the field named
                page.select_option("#id_source", "stored")
                page.click("#start-session button[type=submit]")
                page.wait_for_selector('span.error[data-field="instrument"]')
                assert not TradingSession.objects.exists()
                page.select_option("#id_source", "simulator")
                page.fill("#id_name", "from chromium")
                page.fill("#id_seed", "5")
                page.select_option("#id_preset", "conservative")
                page.click("#start-session button[type=submit]")
                page.wait_for_url("**/sessions/*/")
                session = TradingSession.objects.get(name="from chromium")
                assert page.url.endswith(f"/sessions/{session.pk}/")
                page.goto(f"{live_stack.url}/")
                sel = f'tr[data-session="{session.pk}"] td[data-col="status"]'
                _wait_js(page, f"document.querySelector('{sel}').innerText.trim() === 'running'", 60_000)
                age = f'tr[data-session="{session.pk}"] td[data-col="feed-age"]'
                _wait_js(page, f"document.querySelector('{age}').innerText.trim() !== '—'", 60_000)
                page.screenshot(path=os.environ.get("MM_SCREENSHOT_OVERVIEW") or str(tmp_path / "overview.png"))
            finally:
                browser.close()
    finally:
        from django.db import connections

        TradingSession.objects.update(status="stopped")
        connections.close_all()
        os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
