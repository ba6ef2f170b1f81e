"""Starting a LIVE Hyperliquid session from the overview: the admin's form alone, a confirmation, a clear refusal
without credentials, and a session that quotes on the local Hyperliquid-protocol server (127.0.0.1) and whose page
shows its feed (connection, clock offset, round trip).

Operators and viewers never see the form and their POST is refused with 403 (the endpoint is an ``admin_view``;
tests/security/test_permission_matrix.py covers every role by the marker, these tests by behaviour).
"""

from __future__ import annotations

import re

import pytest

from apps.control.models import AuditEvent
from apps.trading.models import TradingSession
from tests.roles import make_user
from tests.venues.test_hyperliquid_live import PARAMS, Market, _loop, _on_server, _run_until, _two_sided
from tests.venues.test_hyperliquid_live import server as server  # the local venue fixture (settings + env)

URL = "/sessions/start-live/"
FORM_ID = 'id="start-live-session"'


def _form(**over) -> dict:
    base = {"name": "live from the page", "instrument": "hyperliquid:BTC", "preset": "conservative", "confirm": "BTC"}
    return base | over


@pytest.fixture
def credentials(monkeypatch):
    from tests.venues.test_hyperliquid import ACCOUNT, FAKE_KEY

    monkeypatch.setenv("MM_HYPERLIQUID_SECRET_KEY", FAKE_KEY)
    monkeypatch.setenv("MM_HYPERLIQUID_ACCOUNT_ADDRESS", ACCOUNT)


@pytest.mark.django_db
@pytest.mark.parametrize("role", ["viewer", "operator"])
def test_below_admin_the_live_form_is_not_shown_and_a_post_is_refused_with_403(client, credentials, role):
    client.force_login(make_user(role))
    page = client.get("/").content.decode()
    assert FORM_ID not in page and "LIVE" not in page and URL not in page
    assert client.post(URL, _form()).status_code == 403
    api = client.post(URL, _form(), HTTP_ACCEPT="application/json")
    assert api.status_code == 403 and "admin" in api.json()["error"]
    assert client.post(URL, _form(), HTTP_HX_REQUEST="true").status_code == 403
    assert not TradingSession.objects.exists()
    assert not AuditEvent.objects.filter(action="session.create").exists()


@pytest.mark.django_db
def test_anonymous_and_roleless_users_cannot_start_a_live_session(client, credentials):
    assert client.post(URL, _form()).status_code == 302
    assert client.post(URL, _form(), HTTP_ACCEPT="application/json").status_code == 401
    client.force_login(make_user("none"))
    assert client.post(URL, _form()).status_code == 403
    assert not TradingSession.objects.exists()


@pytest.mark.django_db
def test_an_admin_sees_the_live_form_beside_the_paper_form(client):
    client.force_login(make_user("admin"))
    page = client.get("/").content.decode()
    assert FORM_ID in page and 'id="start-session"' in page
    form = page[page.index(FORM_ID) :]
    assert f'action="{URL}"' in form and 'name="confirm"' in form
    assert re.search(r'<option value="hyperliquid:BTC"', form)
    assert "binance-usdm:BTCUSDT" not in form[: form.index("</form>")]  # Hyperliquid perps only


@pytest.mark.django_db
def test_without_credentials_the_form_names_the_missing_variable_and_nothing_is_created(client, monkeypatch):
    for var in ("MM_HYPERLIQUID_SECRET_KEY", "MM_HYPERLIQUID_SECRET_KEY_FILE", "MM_HYPERLIQUID_ACCOUNT_ADDRESS"):
        monkeypatch.delenv(var, raising=False)
    client.force_login(make_user("admin"))
    resp = client.post(URL, _form(), HTTP_HX_REQUEST="true")
    assert resp.status_code == 400
    body = resp.content.decode()
    errors = re.search(r'<div class="error" id="start-live-errors">(.*?)</div>', body, re.S)
    assert errors and "no Hyperliquid credentials configured" in errors.group(1)
    assert "MM_HYPERLIQUID_SECRET_KEY" in errors.group(1)
    api = client.post(URL, _form(), HTTP_ACCEPT="application/json")
    assert api.status_code == 400 and "MM_HYPERLIQUID_SECRET_KEY" in api.json()["error"]
    page = client.post(URL, _form())  # a plain POST: the whole page again, the message in the live form
    assert page.status_code == 400 and "MM_HYPERLIQUID_SECRET_KEY" in page.content.decode()
    assert not TradingSession.objects.exists()
    assert not AuditEvent.objects.filter(action="session.create").exists()


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("over", "field", "message"),
    [
        ({"confirm": ""}, "confirm", "This field is required"),
        ({"confirm": "btc"}, "confirm", "type BTC exactly"),
        ({"confirm": "ETH"}, "confirm", "type BTC exactly"),
        ({"instrument": "binance-usdm:BTCUSDT"}, "instrument", "Select a valid choice"),
        ({"preset": "yolo"}, "preset", "Select a valid choice"),
        ({"name": ""}, "name", "This field is required"),
    ],
)
def test_a_wrong_confirmation_or_bad_field_is_refused_by_name(client, credentials, over, field, message):
    client.force_login(make_user("admin"))
    resp = client.post(URL, _form(**over), HTTP_HX_REQUEST="true")
    assert resp.status_code == 400
    errors = re.findall(rf'<span class="error" data-field="{field}">(.*?)</span>', resp.content.decode(), re.S)
    assert errors and message in " ".join(errors)
    assert not TradingSession.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_an_admin_starts_a_live_session_that_quotes_on_the_local_venue_and_its_page_shows_the_feed(client, server):
    admin = make_user("admin")
    client.force_login(admin)
    resp = client.post(URL, _form())
    assert resp.status_code == 303, resp.content.decode()[:2000]
    session = TradingSession.objects.get()
    assert resp["Location"] == f"/sessions/{session.pk}/"
    assert (session.name, session.mode, session.feed) == ("live from the page", "live", "hyperliquid")
    assert session.params["feed"]["source"] == "hyperliquid" and session.instrument.symbol == "BTC"
    audit = AuditEvent.objects.get(session=session, action="session.create")
    assert audit.actor_label == admin.username and audit.detail["mode"] == "live"

    # the served book is a dollar wide and moves only when the test moves it: the live tests' quick estimators and
    # stale-feed bound over the preset, so that this session quotes within seconds (as test_hyperliquid_live's do)
    p = session.params
    tuned = {**p, **{k: {**p.get(k, {}), **PARAMS[k]} for k in ("strategy", "risk", "feed")}}
    TradingSession.objects.filter(pk=session.pk).update(params=tuned)
    loop = _loop(session)  # the loop a worker would run, here in the test so it can be watched
    market = Market(server)
    try:
        _run_until(loop, lambda: _two_sided(loop) and len(_on_server(server, loop)) >= 2, 30, "quoting", market)
        _run_until(loop, lambda: (loop.feed_status().get("clock_samples") or 0) >= 3, 10, "the clock", market)
        loop._save_state()  # what the heartbeat saves every few seconds
        page = client.get(f"/sessions/{session.pk}/").content.decode()
        line = re.search(r'<p class="small" id="feed-line".*?</p>', page, re.S)
        assert line, page[:3000]
        text = line.group(0)
        assert re.search(r'id="feed-state" class="ok">connected<', text)
        offset = re.search(r'id="feed-clock-offset">(-?[\d.]+) ms<', text)
        rtt = re.search(r'id="feed-rtt">([\d.]+) ms<', text)
        assert offset and abs(float(offset.group(1))) < 200  # the local server's clock is ours
        assert rtt and 0 < float(rtt.group(1)) < 500
    finally:
        TradingSession.objects.filter(pk=session.pk).update(status="stopped")
        loop.finish()
    assert server.orders == {}
