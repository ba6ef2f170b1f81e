"""/metrics: the real quoting loop's counters and histograms, saved with its state, rendered by the collector."""

from __future__ import annotations

import time

import pytest
from prometheus_client.parser import text_string_to_metric_families

from apps.control.models import GlobalKillSwitch
from apps.control.services import Actor, create_paper_session
from apps.trading.loop import QuotingLoop
from apps.trading.models import OrderEventRecord, TradingSession
from tests.roles import make_user

FAST = {"strategy": {"sigma_bucket_s": 0.25, "sigma_min_buckets": 8, "kappa_min_volume": 0.05}}
TOKEN = "scrape-token-for-tests-0123456789"


def _samples(text: str) -> dict[tuple[str, tuple], float]:
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def _get(samples, name, **labels):
    return samples.get((name, tuple(sorted((k, str(v)) for k, v in labels.items()))))


@pytest.mark.django_db(transaction=True)
def test_the_loops_quotes_orders_and_latencies_reach_metrics(client, settings):
    settings.MM_METRICS_TOKEN = TOKEN
    session = create_paper_session(Actor(label="t"), name="metrics", params=FAST, seed=7, start=False)
    loop = QuotingLoop(session.pk, publish=lambda *a: None)
    assert loop.start()
    try:
        deadline = time.monotonic() + 30
        placed = OrderEventRecord.objects.filter(session=session, kind="place")
        while time.monotonic() < deadline and placed.count() < 4:
            loop.step()
            time.sleep(0.05)
        for _ in range(10):  # let the acks of those orders arrive
            loop.step()
            time.sleep(0.05)
        loop._save_state()  # what the heartbeat does every second
    finally:
        TradingSession.objects.filter(pk=session.pk).update(status="running")
    saved = TradingSession.objects.get(pk=session.pk).last_state["metrics"]
    resp = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    loop.finish()
    assert resp.status_code == 200 and resp["Content-Type"].startswith("text/plain")
    s = _samples(resp.content.decode())
    sid = session.pk
    assert _get(s, "mm_quotes_total", session_id=sid) == saved["quotes"] > 0
    assert _get(s, "mm_orders_total", session_id=sid) == saved["orders"] >= 4
    assert _get(s, "mm_fills_total", session_id=sid) == saved["fills"]
    assert _get(s, "mm_rejects_total", session_id=sid) == saved["rejects"]
    n = _get(s, "mm_event_to_decision_seconds_count", session_id=sid)
    assert n == saved["quotes"] and _get(s, "mm_event_to_decision_seconds_bucket", session_id=sid, le="+Inf") == n
    assert 0 <= _get(s, "mm_event_to_decision_seconds_sum", session_id=sid) < n * 1.0  # well under 1 s each
    acks = _get(s, "mm_decision_to_ack_seconds_count", session_id=sid)
    # the paper venue's latency (0 unless the session configures one): every ack is in the first bucket
    assert acks >= 1 and _get(s, "mm_decision_to_ack_seconds_sum", session_id=sid) >= 0
    assert _get(s, "mm_decision_to_ack_seconds_bucket", session_id=sid, le="+Inf") == acks
    kappa = [
        _get(s, "mm_estimator_state", session_id=sid, estimator="kappa", state=st)
        for st in ("warming", "ok", "stale", "failed")
    ]
    assert sorted(kappa) == [0.0, 0.0, 0.0, 1.0]
    assert _get(s, "mm_inventory", session_id=sid) is not None and _get(s, "mm_pnl", session_id=sid) is not None
    assert 0 <= _get(s, "mm_feed_age_seconds", session_id=sid) < 30
    assert _get(s, "mm_global_kill_switch", state="armed") == 1.0
    assert _get(s, "mm_session_kill_switch", session_id=sid) == 0.0
    assert _get(s, "mm_session_status", session_id=sid, status="running") == 1.0


@pytest.mark.django_db
def test_kill_switches_show_as_gauges(client, settings):
    settings.MM_METRICS_TOKEN = TOKEN
    session = create_paper_session(Actor(label="t"), name="k", params=FAST, seed=1, start=False)
    TradingSession.objects.filter(pk=session.pk).update(status="halted")
    GlobalKillSwitch.objects.update_or_create(singleton=True, defaults={"state": "halted"})
    s = _samples(client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}").content.decode())
    assert _get(s, "mm_session_kill_switch", session_id=session.pk) == 1.0
    assert _get(s, "mm_global_kill_switch", state="halted") == 1.0
    assert _get(s, "mm_global_kill_switch", state="armed") == 0.0


@pytest.mark.django_db
def test_metrics_need_the_token_or_an_admin(client, settings):
    settings.MM_METRICS_TOKEN = TOKEN
    anon = client.get("/metrics")
    assert anon.status_code == 401 and anon["WWW-Authenticate"].startswith("Bearer")
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION=f"Basic {TOKEN}").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}").status_code == 200
    for role in ("none", "viewer", "operator"):
        client.force_login(make_user(role))
        assert client.get("/metrics").status_code == 403, role
    client.force_login(make_user("admin"))
    assert client.get("/metrics").status_code == 200
    assert client.post("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}").status_code == 405
    client.logout()
    settings.MM_METRICS_TOKEN = None  # no token configured: no bearer access at all
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer ").status_code == 401
