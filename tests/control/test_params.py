"""Parameter versions through the one service: validated by the engine, audited, one transaction, revertible."""

from __future__ import annotations

import pytest

from apps.control.models import AuditEvent, ParameterVersion
from apps.control.params import change, effective, revert
from apps.control.services import Actor, ControlError, create_paper_session
from apps.trading.models import TradingSession


def _session(**params) -> TradingSession:
    return create_paper_session(Actor(label="test"), name="p", params=params or None, seed=3, start=False)


def _state(session: TradingSession) -> tuple:
    session.refresh_from_db()
    return (
        session.params,
        session.params_version,
        ParameterVersion.objects.filter(session=session).count(),
        AuditEvent.objects.filter(session=session, action__startswith="params.").count(),
    )


@pytest.mark.django_db
def test_a_session_starts_at_version_1_with_its_creation_params():
    session = _session(strategy={"gamma": 4000})
    v1 = ParameterVersion.objects.get(session=session)
    assert (v1.version, v1.params, v1.actor_label) == (1, {"strategy": {"gamma": 4000}}, "test")
    assert session.params_version == 1


@pytest.mark.django_db
def test_a_change_is_a_new_version_with_who_why_and_old_new_values(django_user_model):
    user = django_user_model.objects.create_user("alice")
    session = _session()
    v = change(Actor.of(user), session.pk, {"strategy.gamma": 2500, "risk.drawdown.max_drawdown_frac": 0.02}, "wider")
    assert v.version == 2 and v.actor == user and v.reason == "wider"
    assert v.changes["strategy.gamma"] == [5000.0, 2500]
    assert v.changes["risk.drawdown.max_drawdown_frac"] == [0.05, 0.02]
    session.refresh_from_db()
    assert session.params_version == 2
    assert session.params == {"strategy": {"gamma": 2500}, "risk": {"drawdown": {"max_drawdown_frac": 0.02}}}
    row = AuditEvent.objects.get(session=session, action="params.change")
    assert row.actor == user and row.reason == "wider"
    assert row.detail == {"version": 2, "changes": v.changes}


@pytest.mark.django_db
def test_a_revert_restores_an_earlier_version_as_a_new_one():
    session = _session()
    change(Actor(label="a"), session.pk, {"strategy.gamma": 2500}, "try")
    change(Actor(label="a"), session.pk, {"strategy.order_size": 0.01}, "bigger")
    v = revert(Actor(label="b"), session.pk, 1, "back to the start")
    assert (v.version, v.reverted_from) == (4, 1)
    assert v.changes == {"strategy.gamma": [2500, 5000.0], "strategy.order_size": [0.01, 0.005]}
    session.refresh_from_db()
    assert session.params == {} and session.params_version == 4
    assert AuditEvent.objects.get(session=session, action="params.revert").detail["reverted_from"] == 1
    with pytest.raises(ControlError, match="version 4 is the current one"):
        revert(Actor(label="b"), session.pk, 4, "again")
    with pytest.raises(ControlError, match="no parameter version 9"):
        revert(Actor(label="b"), session.pk, 9, "nope")


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"strategy.gamma": -1}, "strategy.gamma: must be > 0, got -1"),
        ({"strategy.levels": 0}, "strategy.levels: must be an integer >= 1, got 0"),
        ({"risk.drawdown.max_drawdown_frac": 2}, r"risk.drawdown.max_drawdown_frac: must be in \(0, 1\], got 2"),
        ({"risk.drawdown.action": "panic"}, "risk.drawdown.action: must be one of"),
        ({"risk.capital_quote": 0}, "risk.capital_quote: must be a positive number"),
        ({"strategy.gamma": "big"}, "strategy.gamma: must be a finite number, got 'big'"),
        ({"strategy.gamma": float("nan")}, "strategy.gamma: must be a finite number"),
        ({"strategy.gamm": 1}, "strategy.gamm: unknown parameter"),
        ({"risk.positon_limit.max_position": 1}, "unknown risk rule 'positon_limit'"),
        ({"gamma": 1}, "not a parameter"),
        ({"strategy.risk_aversion.beta_thin_book": "x"}, "strategy.risk_aversion.beta_thin_book: must be a finite"),
        ({"strategy.risk_aversion.beta_thin_book": True}, "strategy.risk_aversion.beta_thin_book: must be a finite"),
        ({"strategy.risk_aversion.gamma_min": 1}, r"strategy.risk_aversion.gamma_min: unknown parameter"),
        ({"strategy.risk_aversion": 2}, "strategy.risk_aversion: must be an object of βs, got int"),
        ({"strategy.kappa_prior": 0}, "strategy.kappa_prior: must be > 0, got 0"),
        ({"strategy.drift_obs_var_microprice": -1e-9}, "strategy.drift_obs_var_microprice: must be > 0"),
        ({"strategy.hawkes_prior_alpha_per_s": 2.0}, "strategy.hawkes_prior_alpha_per_s: must be < hawkes_prior_beta"),
        ({}, "no parameter given"),
    ],
)
def test_an_invalid_value_is_refused_naming_the_field_and_nothing_changes(changes, message):
    session = _session()
    before = _state(session)
    with pytest.raises(ControlError, match=message):
        change(Actor(label="a"), session.pk, changes, "bad")
    assert _state(session) == before


@pytest.mark.django_db
def test_a_change_needs_a_reason_and_a_difference():
    session = _session()
    with pytest.raises(ControlError, match="needs a reason"):
        change(Actor(label="a"), session.pk, {"strategy.gamma": 1000}, "  ")
    with pytest.raises(ControlError, match="nothing changes"):
        change(Actor(label="a"), session.pk, {"strategy.gamma": 5000.0}, "same")
    assert _state(session)[1:] == (1, 1, 0)


@pytest.mark.django_db
def test_start_only_fields_are_refused_once_the_session_has_started_and_say_why():
    session = _session()
    change(Actor(label="a"), session.pk, {"sim.sigma": 2e-4, "strategy.kappa_window_s": 30}, "before start")
    TradingSession.objects.filter(pk=session.pk).update(status="running")
    before = _state(session)
    with pytest.raises(ControlError, match=r"sim.sigma: cannot change once the session has started .*simulator"):
        change(Actor(label="a"), session.pk, {"sim.sigma": 3e-4}, "live")
    with pytest.raises(ControlError, match=r"strategy.kappa_window_s: cannot change .*estimators"):
        change(Actor(label="a"), session.pk, {"strategy.kappa_window_s": 90}, "live")
    with pytest.raises(ControlError, match=r"sim.sigma: cannot change"):
        revert(Actor(label="a"), session.pk, 1, "back")
    assert _state(session) == before
    change(Actor(label="a"), session.pk, {"strategy.gamma": 3000}, "live is fine")
    for path, value in (
        ("strategy.kappa_prior", 3000.0),
        ("strategy.drift_obs_var_trade_flow", 1e-9),
        ("strategy.hawkes_prior_mu_per_s", 2.0),
    ):
        with pytest.raises(ControlError, match=rf"{path}: cannot change once the session has started .*estimators"):
            change(Actor(label="a"), session.pk, {path: value}, "live")
    v = change(Actor(label="a"), session.pk, {"strategy.risk_aversion.beta_drawdown": 2.0}, "a β is live")
    assert v.changes == {"strategy.risk_aversion.beta_drawdown": [1.0, 2.0]}
    assert v.params["strategy"]["risk_aversion"] == {"beta_drawdown": 2.0}


@pytest.mark.django_db
def test_the_estimator_priors_and_the_betas_are_set_before_start_and_reach_the_engine():
    from apps.trading.runtime import build_session_config

    session = _session()
    changes = {
        "strategy.kappa_prior": 3500.0,
        "strategy.drift_obs_var_trade_flow": 1e-9,
        "strategy.drift_obs_var_momentum": 2e-9,
        "strategy.drift_obs_var_microprice": 3e-10,
        "strategy.hawkes_prior_mu_per_s": 4.0,
        "strategy.hawkes_prior_alpha_per_s": 0.2,
        "strategy.hawkes_prior_beta_per_s": 2.0,
        "strategy.risk_aversion.beta_thin_book": 0.25,
    }
    v = change(Actor(label="a"), session.pk, changes, "calibrated priors")
    assert set(v.changes) == set(changes)
    cfg = build_session_config(v.params, 1).strategy.estimator_config(0.1)
    assert cfg.kappa.prior_kappa == 3500.0
    assert (cfg.drift.obs_var_trade_flow, cfg.drift.obs_var_momentum, cfg.drift.obs_var_microprice) == (
        1e-9,
        2e-9,
        3e-10,
    )
    assert (cfg.hawkes_prior.mu_per_s, cfg.hawkes_prior.alpha_per_s, cfg.hawkes_prior.beta_per_s) == (4.0, 0.2, 2.0)
    assert build_session_config(v.params, 1).strategy.risk_aversion.beta_thin_book == 0.25
    reset = change(Actor(label="a"), session.pk, {"strategy.risk_aversion.beta_thin_book": None}, "default again")
    assert "risk_aversion" not in reset.params["strategy"]
    assert reset.changes == {"strategy.risk_aversion.beta_thin_book": [0.25, 0.5]}


@pytest.mark.django_db
def test_a_stopped_session_keeps_its_parameters():
    session = _session()
    TradingSession.objects.filter(pk=session.pk).update(status="stopped")
    with pytest.raises(ControlError, match="is stopped"):
        change(Actor(label="a"), session.pk, {"strategy.gamma": 3000}, "late")


@pytest.mark.django_db
def test_an_older_session_gets_its_version_1_lazily_and_a_reset_removes_the_override():
    session = TradingSession.objects.create(
        name="old", instrument=_session().instrument, params={"strategy": {"gamma": 3000}}
    )
    assert not ParameterVersion.objects.filter(session=session).exists()
    v = change(Actor(label="a"), session.pk, {"strategy.gamma": None}, "back to the default")
    assert list(ParameterVersion.objects.filter(session=session).values_list("version", flat=True)) == [2, 1]
    assert v.changes == {"strategy.gamma": [3000, 5000.0]}
    session.refresh_from_db()
    assert session.params == {}


def test_effective_values_are_json_safe_and_name_every_rule():
    eff = effective({}, 0)
    assert eff["strategy.gamma"] == 5000.0
    assert eff["risk.drawdown.max_drawdown_quote"] == "inf"
    assert eff["risk.position_limit.max_position"] == 0.1  # 2·Q_max by default
    assert eff["risk.drawdown.action"] == "halt"


# --- the page and its endpoints -------------------------------------------------------------------------------


def _login(client, role: str):
    from tests.roles import make_user

    user = make_user(role, f"{role}-params")
    client.force_login(user)
    return user


def _page(session: TradingSession) -> str:
    return f"/sessions/{session.pk}/parameters/"


def _url(session: TradingSession, version: int | None = None) -> str:
    """Where a change (no version) or a revert to ``version`` is POSTed."""
    if version is None:
        return f"/sessions/{session.pk}/parameters/change/"
    return f"/sessions/{session.pk}/parameters/revert/{version}/"


def _row(html: str, path: str) -> str:
    import re

    from django.utils.text import slugify

    m = re.search(rf'<tr id="param-{slugify(path)}" data-path="{re.escape(path)}">(.*?)</tr>', html, re.S)
    assert m, f"no form row for {path}"
    return m[1]


@pytest.mark.django_db
def test_the_form_renders_every_editable_field_with_its_unit_bounds_and_help(client):
    from django.utils.html import escape

    from apps.control.param_form import form_fields

    _login(client, "admin")
    session = _session()
    html = client.get(_page(session)).content.decode()
    fields = form_fields()
    assert len(fields) > 50
    assert {"strategy.gamma", "strategy.max_inventory", "risk.drawdown.max_drawdown_frac", "risk.capital_quote"} <= {
        f.path for f in fields
    }
    for f in fields:
        assert f.unit, f"{f.path} has no unit"
        assert f.help, f"{f.path} has no help text"
        row = _row(html, f.path)
        assert f'<td class="unit">{escape(f.unit)}</td>' in row, f.path
        assert f'name="{f.path}"' in row and " disabled" not in row, f.path
    gamma = _row(html, "strategy.gamma")
    assert 'value="5000.0"' in gamma and "&gt; 0" in gamma and "risk aversion" in gamma
    # the γ model's βs (live) and the estimators' priors (set before start) are on the form too
    by_path = {f.path: f for f in fields}
    beta = by_path["strategy.risk_aversion.beta_thin_book"]
    assert beta.live and beta.unit == "nats per unit feature" and beta.default == 0.5 and "square-root" in beta.help
    assert 'value="0.5"' in _row(html, beta.path)
    prior = by_path["strategy.kappa_prior"]
    assert not prior.live and prior.bounds == "> 0" and "Set before the session starts" in prior.help
    assert by_path["strategy.hawkes_prior_alpha_per_s"].unit == "1/s"
    assert by_path["strategy.drift_obs_var_microprice"].unit == "1/s²"
    assert "< hawkes_prior_beta_per_s" in by_path["strategy.hawkes_prior_alpha_per_s"].bounds
    assert 'id="params-save"' in html and 'id="revert-reason"' in html


@pytest.mark.django_db
def test_a_viewer_and_an_operator_see_the_page_read_only_and_cannot_post(client):
    session = _session()
    change(Actor(label="a"), session.pk, {"strategy.gamma": 3000}, "earlier")
    for role in ("viewer", "operator"):
        client.logout()
        _login(client, role)
        html = client.get(_page(session)).content.decode()
        assert 'id="params-read-only"' in html and 'id="params-save"' not in html and "revert-1" not in html
        assert " disabled" in _row(html, "strategy.gamma")
        assert client.post(_url(session), {"strategy.gamma": "1000", "reason": "x"}).status_code == 403
        assert client.post(_url(session, 1), {"reason": "x"}).status_code == 403
        api = client.post(
            _url(session),
            {"changes": {"strategy.gamma": 1}, "reason": "x"},
            content_type="application/json",
            HTTP_ACCEPT="application/json",
        )
        assert api.status_code == 403
    session.refresh_from_db()
    assert session.params_version == 2


@pytest.mark.django_db
def test_an_admin_changes_and_reverts_from_the_page(client):
    admin = _login(client, "admin")
    session = _session()
    resp = client.post(
        _url(session), {"strategy.gamma": "2500", "strategy.levels": "1", "reason": "tighter"}, HTTP_HX_REQUEST="true"
    )
    assert resp.status_code == 200, resp.content[:300]
    html = resp.content.decode()
    assert "saved as version 2" in html and "strategy.gamma</code>: 5000.0 → 2500" in html
    v2 = ParameterVersion.objects.get(session=session, version=2)
    assert v2.actor == admin and v2.changes == {"strategy.gamma": [5000.0, 2500]}  # levels was unchanged
    resp = client.post(_url(session, 1), {"reason": "undo"}, HTTP_HX_REQUEST="true")
    assert resp.status_code == 200 and "version 1 restored as version 3" in resp.content.decode()
    session.refresh_from_db()
    assert session.params == {} and session.params_version == 3


@pytest.mark.django_db
def test_the_whole_form_posted_back_with_one_edit_is_that_one_change(client):
    """What a browser sends: every input as the page rendered it (defaults of ``inf`` included), one of them edited."""
    import re
    from html import unescape

    _login(client, "admin")
    session = _session()
    html = client.get(_page(session)).content.decode()
    form = html[html.index('id="params-form"') : html.index("</form>", html.index('id="params-form"'))]
    posted = {unescape(n): unescape(v) for n, v in re.findall(r'<input name="([^"]+)"[^>]*?value="([^"]*)"', form)}
    assert "inf" in posted.values() and len(posted) > 20  # the form does show infinite defaults
    posted.update({"strategy.gamma": "6000", "reason": "only γ"})
    resp = client.post(_url(session), posted, HTTP_HX_REQUEST="true")
    assert resp.status_code == 200 and "saved as version 2" in resp.content.decode(), resp.content[:300]
    assert ParameterVersion.objects.get(session=session, version=2).changes == {"strategy.gamma": [5000.0, 6000]}


@pytest.mark.django_db
def test_an_invalid_value_from_the_page_names_the_field_and_changes_nothing(client):
    _login(client, "admin")
    session = _session()
    before = _state(session)
    resp = client.post(_url(session), {"strategy.gamma": "-1", "reason": "bad"}, HTTP_HX_REQUEST="true")
    assert resp.status_code == 400
    assert "strategy.gamma: must be &gt; 0, got -1" in resp.content.decode()
    assert 'value="-1"' in _row(resp.content.decode(), "strategy.gamma")  # what was typed stays to be fixed
    resp = client.post(_url(session), {"strategy.gamma": "abc", "reason": "bad"}, HTTP_HX_REQUEST="true")
    assert resp.status_code == 400 and "strategy.gamma: must be a number (1/base unit)" in resp.content.decode()
    resp = client.post(_url(session), {"strategy.gamma": "1000", "reason": ""}, HTTP_HX_REQUEST="true")
    assert resp.status_code == 400 and "needs a reason" in resp.content.decode()
    assert _state(session) == before


@pytest.mark.django_db
def test_the_json_api_changes_reverts_and_reports(client):
    _login(client, "admin")
    session = _session()
    post = {"content_type": "application/json", "HTTP_ACCEPT": "application/json"}
    bad = client.post(_url(session), {"changes": {"risk.drawdown.max_drawdown_frac": 3}, "reason": "x"}, **post)
    assert bad.status_code == 400
    assert bad.json()["error"] == "risk.drawdown.max_drawdown_frac: must be in (0, 1], got 3"
    ok = client.post(_url(session), {"changes": {"risk.drawdown.max_drawdown_frac": 0.03}, "reason": "x"}, **post)
    assert ok.status_code == 200
    assert ok.json() == {
        "session": session.pk,
        "version": 2,
        "changes": {"risk.drawdown.max_drawdown_frac": [0.05, 0.03]},
        "reverted_from": None,
    }
    back = client.post(_url(session, 1), {"reason": "undo"}, **post)
    assert back.status_code == 200 and back.json()["reverted_from"] == 1
    got = client.get(_page(session), HTTP_ACCEPT="application/json").json()
    assert got["version"] == 3 and [v["version"] for v in got["versions"]] == [3, 2, 1]
    assert got["in_force"]["risk.drawdown.max_drawdown_frac"] == 0.05


@pytest.mark.django_db
def test_the_session_page_links_to_the_parameters(client):
    _login(client, "viewer")
    session = _session()
    assert f'href="{_page(session)}"' in client.get(f"/sessions/{session.pk}/").content.decode()


@pytest.mark.django_db
def test_the_admin_changes_parameters_only_through_the_service(client, django_user_model):
    """The raw JSON is read-only in the admin; its parameter-change field goes through apps.control.params (validated,
    versioned, audited): a refused value names the field and nothing is saved, not even the other fields."""
    user = django_user_model.objects.create_superuser("root-params", "r@example.invalid", "root-password-123")
    client.force_login(user)
    session = _session(strategy={"gamma": 4000})
    url = f"/admin/trading/tradingsession/{session.pk}/change/"
    html = client.get(url).content.decode()
    assert 'name="params"' not in html and 'name="param_changes"' in html and _page(session) in html
    # the raw JSON field is ignored; a bad value is refused with the field named; no reason is refused
    client.post(url, {"name": "p", "params": '{"strategy": {"gamma": -1}}'})
    resp = client.post(url, {"name": "renamed", "param_changes": '{"strategy.gamma": -1}', "param_reason": "x"})
    assert resp.status_code == 302
    shown = client.get(resp["Location"]).content.decode()
    assert "nothing saved: strategy.gamma: must be &gt; 0, got -1" in shown.lower()
    resp = client.post(url, {"name": "renamed", "param_changes": '{"strategy.gamma": 6000}', "param_reason": ""})
    assert resp.status_code == 200 and "param_reason" in resp.content.decode()
    resp = client.post(url, {"name": "renamed", "param_changes": "{not json", "param_reason": "x"})
    assert resp.status_code == 200 and "not JSON" in resp.content.decode()
    session.refresh_from_db()
    assert session.params == {"strategy": {"gamma": 4000}} and session.params_version == 1 and session.name == "p"
    # a good change: a new version by this user, with its audit row; the name saved with it
    resp = client.post(url, {"name": "renamed", "param_changes": '{"strategy.gamma": 6000}', "param_reason": "wider"})
    assert resp.status_code == 302
    session.refresh_from_db()
    assert session.params == {"strategy": {"gamma": 6000}} and session.params_version == 2 and session.name == "renamed"
    v2 = ParameterVersion.objects.get(session=session, version=2)
    assert v2.actor == user and v2.reason == "wider" and v2.changes == {"strategy.gamma": [4000, 6000]}
    assert AuditEvent.objects.filter(session=session, action="params.change").count() == 1
    # sessions are created on the console (validated, loop queued), not in the admin
    assert client.get("/admin/trading/tradingsession/add/").status_code == 403


@pytest.mark.django_db(transaction=True)
def test_a_change_is_pushed_to_the_sessions_browsers_after_commit():
    """Through the live page's own layer (pub/sub, apps.live.layers): the refused change sends nothing, the
    accepted one a ``params`` event (beside the ``audit`` event of its audit row)."""
    import asyncio

    from asgiref.sync import async_to_sync
    from channels.layers import get_channel_layer

    from apps.live.broadcast import session_group
    from apps.live.layers import LIVE_LAYER

    session = _session()
    layer = get_channel_layer(LIVE_LAYER)

    async def params_events() -> list[dict]:
        channel = await layer.new_channel()
        await layer.group_add(session_group(session.pk), channel)
        await asyncio.sleep(0.2)  # the subscription is in place before anything is published
        try:
            await asyncio.to_thread(_change_bad_then_good)
            got: list[dict] = []
            while True:
                try:
                    msg = await asyncio.wait_for(layer.receive(channel), timeout=5)
                except TimeoutError:
                    return got
                if msg.get("type") == "session.event" and msg["event"].get("kind") == "params":
                    got.append(msg)
                    return got
        finally:
            await layer.group_discard(session_group(session.pk), channel)

    def _change_bad_then_good() -> None:
        with pytest.raises(ControlError):
            change(Actor(label="ops"), session.pk, {"strategy.gamma": -1}, "bad")
        change(Actor(label="ops"), session.pk, {"strategy.gamma": 2500}, "tighter")

    got = async_to_sync(params_events)()
    assert len(got) == 1, got
    message = got[0]
    event = message["event"]
    assert message["type"] == "session.event"
    assert {k: event[k] for k in ("kind", "version", "changes", "actor", "reason")} == {
        "kind": "params",
        "version": 2,
        "changes": {"strategy.gamma": [5000.0, 2500]},
        "actor": "ops",
        "reason": "tighter",
    }
    assert event["ts_ns"] > 0
