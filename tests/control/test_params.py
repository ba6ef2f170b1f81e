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
