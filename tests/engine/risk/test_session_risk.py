"""The session rule set (apps.engine.risk.session): configuration, and the margin rule where a venue reports margin."""

from __future__ import annotations

import pytest

from apps.engine.risk.rules import MarginRule, RuleAction
from apps.engine.risk.session import SessionRisk, build_risk_engine

STATE = {"pnl": 0.0, "inventory": 0.5, "mid": 100.0, "kappa_state": "ok", "sigma_state": "ok"}


def test_the_margin_rule_is_in_the_set_only_when_configured():
    engine, _ = build_risk_engine({}, 0.1)
    assert not any(isinstance(r, MarginRule) for r in engine.rules)
    engine, _ = build_risk_engine({"margin": {"max_margin_use": 0.2}}, 0.1)
    (rule,) = [r for r in engine.rules if isinstance(r, MarginRule)]
    assert rule.params.max_margin_use == 0.2
    with pytest.raises(ValueError, match=r"params\.risk\.margin: unknown field"):
        build_risk_engine({"margin": {"max_use": 0.2}}, 0.1)


def test_without_a_margin_report_the_configured_rule_does_not_apply():
    """The paper venue reports no margin: the rule is configured but has nothing to judge."""
    risk = SessionRisk(*build_risk_engine({"margin": {}}, 1.0), max_inventory=1.0)
    risk.on_market(10, 9)
    _, _, trips = risk.evaluate(10, STATE, {"best_bid": 99.9, "best_ask": 100.1})
    assert not [t for t in trips if t.kind == "margin"]


def test_a_venue_margin_report_near_liquidation_reduces():
    risk = SessionRisk(*build_risk_engine({"margin": {}}, 1.0), max_inventory=1.0)
    risk.on_market(10, 9)
    # 20x long from 104: liquidation near 99.3, 0.7 % below a mark of 100, inside the 5 % bound
    risk.on_margin(leverage=20.0, maint_margin_rate=0.004, wallet_balance=10_000.0, entry_price=104.0)
    started, _, _ = risk.evaluate(10, STATE, {"best_bid": 99.9, "best_ask": 100.1})
    (trip,) = [t for t in started if t.kind == "margin"]
    assert trip.action is RuleAction.REDUCE and trip.values["liq_distance_frac"] < 0.05


def test_json_lists_set_tuple_fields_and_are_still_validated():
    """A session's params are JSON, which has no tuples: a list sets a tuple field (bad_states, feeds)."""
    engine, _ = build_risk_engine(
        {"estimator_state": {"bad_states": ["failed"]}, "stale_feed": {"feeds": ["market"]}}, 0.1
    )
    by_name = {type(r).__name__: r for r in engine.rules}
    assert by_name["EstimatorStateRule"].params.bad_states == ("failed",)
    assert by_name["StaleFeedRule"].params.feeds == ("market",)
    with pytest.raises(ValueError, match=r"params.risk.estimator_state: bad_states must be among .*'nope'"):
        build_risk_engine({"estimator_state": {"bad_states": ["nope"]}}, 0.1)


def test_a_measured_clock_offset_replaces_the_per_event_difference():
    """Without a measurement the clock-skew rule reads the last event's local - exchange difference; once a live feed
    hands over its measured offset (on_clock), a late event no longer moves it."""
    ms = 1_000_000
    risk = SessionRisk(*build_risk_engine({}, 1.0), max_inventory=1.0)
    t = 1_700_000_000_000_000_000
    risk.on_market(t, t - 1500 * ms)  # one message 1.5 s late: the raw difference trips the 1 s bound
    _, _, trips = risk.evaluate(t, STATE, {"best_bid": 99.9, "best_ask": 100.1})
    assert [tr.values["clock_skew_ms"] for tr in trips if tr.kind == "clock_skew"] == [1500.0]
    risk.on_clock(3 * ms)  # the estimator's view: 3 ms
    risk.on_market(t + ms, t - 1500 * ms)  # another late message changes nothing now
    _, cleared, trips = risk.evaluate(t + ms, STATE, {"best_bid": 99.9, "best_ask": 100.1})
    assert risk.clock_skew_ns == 3 * ms and not [tr for tr in trips if tr.kind == "clock_skew"]
    assert "clock_skew" in cleared
    risk.on_clock(-1200 * ms)  # a measured skew over the bound trips it
    _, _, trips = risk.evaluate(t + 2 * ms, STATE, {"best_bid": 99.9, "best_ask": 100.1})
    assert [tr.values["clock_skew_ms"] for tr in trips if tr.kind == "clock_skew"] == [-1200.0]


def test_the_skew_alarm_reads_the_models_skew_not_the_capped_one():
    """The quoter records the skew it asked for (``skew_model_frac``) beside the one it quoted after the skew cap
    (``skew_frac``): a deliberate cap is not a mis-scaled model, a model that asks for no skew is."""
    book = {"best_bid": 99.9, "best_ask": 100.1}
    long_half = {**STATE, "inventory": 0.5}  # 50 % of Q_max = 1
    for inputs, alarm in (
        ({"skew_frac": 0.0, "skew_model_frac": 3e-4}, False),  # capped to 0 by the quoter: no alarm
        ({"skew_frac": 3e-4, "skew_model_frac": 0.0}, True),  # the model asks for none: the alarm
        ({"skew_frac": 0.0}, True),  # an older decision without the model's skew: the quoted one
    ):
        risk = SessionRisk(*build_risk_engine({}, 1.0), max_inventory=1.0)
        _, _, trips = risk.evaluate(10, long_half, book | inputs)
        assert any(t.rule == "skew_alarm" for t in trips) is alarm, inputs


@pytest.mark.parametrize("cls_name", ["SessionRisk", "PySessionRisk"])
def test_the_clocks_an_event_records_are_what_the_session_reads(cls_name):
    """on_market only records the event's two clocks; feed_last_ns and clock_skew_ns are applied from them when read
    or set. They read as the per-event writes would have left them: the newest event's local time, and the skew of
    the newest event that had an exchange time (an event without one leaves it), until a measured offset."""
    from apps.engine.risk import session as session_module

    cls = getattr(session_module, cls_name)
    risk = cls(*build_risk_engine({}, 1.0), max_inventory=1.0)
    assert risk.feed_last_ns == {} and risk.clock_skew_ns is None
    feeds = risk.feed_last_ns
    feeds["orders"] = 5  # another feed's entry, set by its owner, stays
    risk.on_market(100, 90)
    risk.on_market(110, 0)  # no exchange time: the skew stays the 100 - 90 of the event before
    assert risk.clock_skew_ns == 10
    assert risk.feed_last_ns is feeds and feeds == {"orders": 5, session_module.FEED: 110}
    risk.on_market(120, 0)
    risk.on_market(130, 125)
    risk.on_market(140, 0)
    assert (risk.clock_skew_ns, risk.feed_last_ns[session_module.FEED]) == (5, 140)
    # a value set by hand replaces what was recorded before it, and is not overwritten by that later
    risk.on_market(150, 100)
    risk.clock_skew_ns = -7
    risk.feed_last_ns = {"market": 1}
    assert (risk.clock_skew_ns, risk.feed_last_ns) == (-7, {"market": 1})
    # a measured offset: events recorded before it are applied first, none after it moves the skew
    risk.on_market(160, 150)
    risk.on_clock(3)
    risk.on_market(170, 100)
    assert (risk.clock_skew_ns, risk.feed_last_ns) == (3, {"market": 170})
    _, _, trips = risk.evaluate(170, STATE, {"best_bid": 99.9, "best_ask": 100.1})
    assert not [tr for tr in trips if tr.kind == "clock_skew"]
