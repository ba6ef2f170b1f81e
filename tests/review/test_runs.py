"""Backtests and sweeps from the browser: launch from the view, run on the real Celery worker with progress pushed
over the channel layer, bad inputs (400 naming the field, nothing created), roles, and a 2×2 sweep's heat map."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.test import Client

from apps.marketdata.importer import ImportOptions
from apps.marketdata.models import Instrument
from apps.marketdata.services import import_files
from apps.review.progress import ALL_RUNS_GROUP, ProgressPublisher
from apps.trading.backtest import parse_params
from apps.trading.models import BacktestRun, SweepRun, TradingSession
from mmweb.asgi import application
from tests.roles import make_user
from tests.security.conftest import cookie_for
from tests.trading.test_backtest_command import SP, write_binance_raw

pytestmark = pytest.mark.django_db(transaction=True)

VENUE = "sim-stored"
# small, fast runs: σ and κ warm up quickly on the simulator's market
OVERRIDES = {"strategy": {"sigma_bucket_s": 0.25, "sigma_min_buckets": 8, "kappa_min_volume": 0.05}}


@pytest.fixture
def stored(tmp_path: Path) -> Instrument:
    """20 s of simulated market imported as stored ticks of ``sim-stored:BTCUSDT``."""
    path = write_binance_raw(tmp_path / "feed.txt", 20, seed=7)
    summary = import_files(
        [path],
        fmt="binance-raw",
        venue=VENUE,
        symbol="BTCUSDT",
        kind="perp",
        tick_size=SP.tick_size,
        lot_size=SP.lot_size,
        options=ImportOptions(spill_dir=tmp_path / "spill"),
    )
    assert summary.files[0].error == ""
    return Instrument.objects.get(venue=VENUE, symbol="BTCUSDT")


def client_for(role: str) -> Client:
    c = Client()
    c.force_login(make_user(role, f"{role}-runs"))
    return c


def backtest_post(**over: Any) -> dict[str, Any]:
    data = {
        "source": "stored",
        "stored": f"{VENUE}:BTCUSDT",
        "strategy": "glft",
        "preset": "default",
        "overrides": json.dumps(OVERRIDES),
        "max_events": "500",
        "seed": "1",
        "name": "from the browser",
    }
    data.update(over)
    return {f"bt-{k}": v for k, v in data.items()}


def sweep_post(**over: Any) -> dict[str, Any]:
    data = {k[3:]: v for k, v in backtest_post().items()}
    data.update({"param1": "strategy.gamma", "values1": "1000, 20000", "param2": "strategy.adverse_selection_bps"})
    data.update({"values2": "0.5, 2", "max_events": "400", "name": "grid"})
    data.update(over)
    return {f"sw-{k}": v for k, v in data.items()}


def nothing_created() -> bool:
    return not (BacktestRun.objects.exists() or SweepRun.objects.exists() or TradingSession.objects.exists())


def receive_until_end(layer: Any, channel: str, run_id: int, timeout_s: float = 90) -> list[dict[str, Any]]:
    """This run's events from the all-runs group, up to and including its final ``status`` event."""
    got: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout_s

    async def one() -> dict[str, Any]:
        import asyncio

        return await asyncio.wait_for(layer.receive(channel), timeout=max(0.1, deadline - time.monotonic()))

    while time.monotonic() < deadline:
        event = async_to_sync(one)()["event"]
        if event["run_id"] != run_id:
            continue
        got.append(event)
        if event["kind"] == "status" and event["status"] in ("done", "failed"):
            return got
    raise AssertionError(f"run {run_id} did not finish in {timeout_s}s; got {got}")


# --- launch, run on the worker, progress --------------------------------------------------------------------------


def test_a_backtest_launched_from_the_page_runs_on_the_worker_and_pushes_progress(live_stack, stored):
    layer = get_channel_layer()
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(ALL_RUNS_GROUP, channel)

    op = client_for("operator")
    page = op.get("/review/backtests/")
    assert page.status_code == 200
    assert f"{VENUE}:BTCUSDT" in page.content.decode()  # the stored span is offered
    resp = op.post("/review/backtests/launch/", backtest_post())
    assert resp.status_code == 302, resp.content.decode()[:2000]
    run = BacktestRun.objects.get()
    assert resp["Location"] == f"/review/backtests/{run.pk}/"
    assert run.data_format == "stored" and run.params["backtest"]["max_events"] == 500

    events = receive_until_end(layer, channel, run.pk)
    progress = [e for e in events if e["kind"] == "progress"]
    assert events[-1]["status"] == "done", events[-1]
    assert len(progress) >= 2
    assert progress[0]["processed"] == 0 and progress[-1]["processed"] == progress[-1]["total"] == 500
    assert [p["processed"] for p in progress] == sorted(p["processed"] for p in progress)
    assert all(p["elapsed_s"] >= 0 for p in progress) and progress[-1]["eta_s"] == 0
    run.refresh_from_db()
    assert run.status == "done" and run.summary["data"]["events"] == 500
    assert events[-1]["review_url"] == f"/review/sessions/{run.session_id}/"

    # the run page links to the session's review page, and says the same over its own socket on connect
    body = op.get(f"/review/backtests/{run.pk}/").content.decode()
    assert f'href="/review/sessions/{run.session_id}/"' in body
    state = op.get(f"/review/backtests/{run.pk}/", HTTP_ACCEPT="application/json").json()
    assert state["status"] == "done" and state["summary"]["pnl_total"] is not None


def test_progress_is_throttled_to_four_a_second_with_the_first_and_last_always_sent():
    now = [0.0]
    sent: list[dict[str, Any]] = []
    pub = ProgressPublisher(1, clock=lambda: now[0])
    pub.event = lambda p, t, e, _orig=pub.event: sent.append(_orig(p, t, e)) or sent[-1]  # record what goes out
    for i in range(0, 10_001, 100):  # 10,000 events over 5 s of wall time
        now[0] = i / 2000
        pub(i, 10_000)
    assert 18 <= pub.sent <= 22  # ≤ 4/s over 5 s, plus the first and the last
    assert sent[0]["processed"] == 0 and sent[-1]["processed"] == 10_000 and sent[-1]["eta_s"] == 0
    mid = sent[len(sent) // 2]
    assert mid["eta_s"] == pytest.approx(mid["elapsed_s"] * (10_000 - mid["processed"]) / mid["processed"], abs=0.01)


# --- bad inputs -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("over", "field", "words"),
    [
        ({"stored": "nowhere:XYZ"}, "stored", "Select a valid choice"),
        ({"stored": ""}, "stored", "choose one of the stored"),
        ({"start": "yesterday"}, "start", "ISO-8601"),
        ({"start": "2001-01-01T00:00:00Z", "end": "2001-01-01T00:00:01Z"}, "start", "no stored events"),
        ({"start": "2030-01-01T00:00:00Z", "end": "2029-01-01T00:00:00Z"}, "start", "must be before"),
        ({"strategy": "martingale"}, "strategy", "Select a valid choice"),
        ({"preset": "yolo"}, "preset", "Select a valid choice"),
        ({"overrides": "{not json"}, "overrides", "not valid JSON"),
        ({"overrides": "[1]"}, "overrides", "JSON object"),
        ({"overrides": '{"strategy": {"gamma": -1}}'}, "overrides", "gamma"),
        ({"overrides": '{"strategy": {"nope": 1}}'}, "overrides", "nope"),
        ({"max_events": "0"}, "max_events", "greater than or equal to 1"),
        ({"max_events": "lots"}, "max_events", "whole number"),
        ({"seed": "-1"}, "seed", "greater than or equal to 0"),
        ({"source": "recording", "recording": "../../etc/passwd"}, "recording", "Select a valid choice"),
        ({"source": "recording", "recording": ""}, "recording", "choose one of the recordings"),
        ({"source": "s3"}, "source", "Select a valid choice"),
    ],
)
def test_a_bad_backtest_input_is_a_400_naming_the_field_and_creates_nothing(stored, over, field, words):
    Instrument.objects.filter(pk=stored.pk)  # stored data exists; nothing else
    sessions_before = TradingSession.objects.count()
    op = client_for("operator")
    resp = op.post("/review/backtests/launch/", backtest_post(**over), HTTP_ACCEPT="application/json")
    assert resp.status_code == 400
    errors = resp.json()["errors"]
    assert field in errors, errors
    assert any(words in e for e in errors[field]), errors
    assert not BacktestRun.objects.exists() and TradingSession.objects.count() == sessions_before
    page = op.post("/review/backtests/launch/", backtest_post(**over))  # the page: the form again, with the error
    assert page.status_code == 400 and f'data-field="{field}"' in page.content.decode()


@pytest.mark.parametrize(
    ("over", "field", "words"),
    [
        ({"param1": "gamma"}, "param1", "section.field"),
        ({"param1": "strategy.nope"}, "param1", "nope"),
        ({"values1": "1, x"}, "values1", "'x' is not a number"),
        ({"values1": "1,,2"}, "values1", "empty value"),
        ({"values1": "1, 1"}, "values1", "repeated"),
        ({"values1": "-1, 5"}, "values1", "gamma"),
        ({"param2": "strategy.gamma"}, "param2", "already"),
        ({"param2": "", "values2": "1, 2"}, "param2", "give the parameter"),
        ({"values1": ",".join(str(i + 1) for i in range(13))}, "values1", "at most 12"),
        ({"values1": "1,2,3,4,5,6,7", "values2": "1,2,3,4,5,6"}, "values2", "42 points; at most 36"),
    ],
)
def test_a_bad_sweep_input_is_a_400_naming_the_field_and_creates_nothing(stored, over, field, words):
    op = client_for("operator")
    resp = op.post("/review/sweeps/launch/", sweep_post(**over), HTTP_ACCEPT="application/json")
    assert resp.status_code == 400
    errors = resp.json()["errors"]
    assert field in errors and any(words in e for e in errors[field]), errors
    assert not SweepRun.objects.exists() and not BacktestRun.objects.exists()


def test_a_recording_is_offered_by_key_and_its_run_takes_the_instruments_grid():
    from apps.dashboard.start_form import find_recordings
    from apps.review.runs_forms import BacktestForm

    recs = [r for r in find_recordings() if r.key.endswith("usdm_btcusdt_20240808.gz")]
    if not recs:
        pytest.skip("shared recordings not present (a user's clone has no ../shared)")
    form = BacktestForm(backtest_post(source="recording", stored="", recording=recs[0].key), prefix="bt")
    assert form.is_valid(), form.errors
    assert form.data_source == [recs[0].path] and form.fmt == recs[0].fmt
    p = parse_params(form.params)
    assert (p.venue.tick_size, p.venue.lot_size) == (0.1, 0.001) and p.max_events == 500


# --- roles ------------------------------------------------------------------------------------------------------


def test_a_viewer_reads_the_pages_but_cannot_launch(stored):
    viewer = client_for("viewer")
    page = viewer.get("/review/backtests/").content.decode()
    assert "needs the operator role" in page and "backtest-form" not in page
    assert viewer.post("/review/backtests/launch/", backtest_post()).status_code == 403
    assert viewer.post("/review/sweeps/launch/", sweep_post()).status_code == 403
    assert client_for("none").get("/review/backtests/").status_code == 403
    assert Client().get("/review/backtests/").status_code == 302  # to the login page
    assert client_for("operator").get("/review/backtests/launch/").status_code == 405
    assert nothing_created()


def test_the_progress_socket_checks_the_role_and_the_run():
    cookies = {role: cookie_for(make_user(role, f"ws-{role}")) for role in ("none", "viewer")}

    async def connect(path: str, cookie: str | None) -> tuple[bool, Any]:
        headers = [(b"origin", b"http://127.0.0.1:8000")] + ([(b"cookie", cookie.encode())] if cookie else [])
        comm = WebsocketCommunicator(application, path, headers=headers)
        ok, code = await comm.connect(timeout=20)
        first = json.loads(await comm.receive_from(timeout=20)) if ok and path != "/ws/backtests/" else None
        await comm.disconnect()
        return ok, first if ok else code

    from apps.trading.models import BacktestRun as Run

    run = Run.objects.create(strategy="glft", data_format="stored", status="pending")
    path = f"/ws/backtests/{run.pk}/"
    assert async_to_sync(connect)(path, None) == (False, 4401)
    assert async_to_sync(connect)(path, cookies["none"]) == (False, 4403)
    assert async_to_sync(connect)(f"/ws/backtests/{run.pk + 1}/", cookies["viewer"]) == (False, 4404)
    ok, first = async_to_sync(connect)(path, cookies["viewer"])
    assert ok and first["event"]["kind"] == "status" and first["event"]["status"] == "pending"
    assert async_to_sync(connect)("/ws/backtests/", cookies["viewer"]) == (True, None)
    assert async_to_sync(connect)("/ws/backtests/abc/", cookies["viewer"]) == (False, 4404)


# --- a sweep ----------------------------------------------------------------------------------------------------


def test_a_two_by_two_sweep_finishes_and_its_heat_map_has_four_linked_cells(live_stack, stored):
    op = client_for("operator")
    resp = op.post("/review/sweeps/launch/", sweep_post())
    assert resp.status_code == 302, resp.content.decode()[:2000]
    sweep = SweepRun.objects.get()
    assert resp["Location"] == f"/review/sweeps/{sweep.pk}/"
    assert sweep.n_points == 4 and sweep.grid == {
        "strategy.gamma": [1000, 20000],
        "strategy.adverse_selection_bps": [0.5, 2],
    }
    running = op.get(f"/review/sweeps/{sweep.pk}/").content.decode()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        sweep.refresh_from_db()
        if sweep.status != "running":
            break
        time.sleep(0.3)
    assert sweep.status == "done", [(r.status, r.error) for r in sweep.runs.all()] + [live_stack.log("worker")[-3000:]]
    if 'hx-trigger="every 1s"' not in running:
        assert "4/4 finished" in running  # it was already done when first shown
    body = op.get(f"/review/sweeps/{sweep.pk}/results/").content.decode()
    assert 'hx-trigger="every 1s"' not in body  # done: the partial stops polling itself
    assert body.count('class="heat-cell heat-') == 4
    for run in sweep.runs.all():
        assert f'href="/review/sessions/{run.session_id}/"' in body
        assert run.summary["data"]["events"] == 400
    table = op.get(f"/review/sweeps/{sweep.pk}/", HTTP_ACCEPT="application/json").json()
    assert {(r["strategy.gamma"], r["strategy.adverse_selection_bps"]) for r in table["rows"]} == {
        (1000, 0.5),
        (1000, 2),
        (20000, 0.5),
        (20000, 2),
    }
    assert all(r["status"] == "done" and r["pnl_total"] is not None for r in table["rows"])
