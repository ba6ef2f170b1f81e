"""Structured logs: the real quoting loop's and the services' log lines, through the configured console formatter,
are JSON objects with session_id (and order_id where there is one)."""

from __future__ import annotations

import io
import json
import logging
import time

import pytest

from apps.control.services import Actor, create_paper_session
from apps.engine.market.events import Fill, Side
from apps.trading.loop import QuotingLoop

FAST = {"strategy": {"sigma_bucket_s": 0.25, "sigma_min_buckets": 8, "kappa_min_volume": 0.05}}


@pytest.fixture
def json_lines():
    """The root logger's configured console formatter (settings.LOGGING), writing into a buffer."""
    console = next(h for h in logging.getLogger().handlers if h.get_name() == "console")
    buf = io.StringIO()
    handler = logging.StreamHandler(buf)
    handler.setFormatter(console.formatter)
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield lambda: [json.loads(line) for line in buf.getvalue().splitlines() if line.strip()]
    finally:
        root.removeHandler(handler)


@pytest.mark.django_db(transaction=True)
def test_the_loops_log_lines_are_json_with_the_session_and_order_ids(json_lines):
    session = create_paper_session(Actor(label="t"), name="logs", params=FAST, seed=2, start=False)
    loop = QuotingLoop(session.pk, publish=lambda *a: None)
    assert loop.start()
    try:
        for _ in range(5):
            loop.step()
            time.sleep(0.02)
        # a fill as the venue reports it, through the loop's own recording sink
        now = time.time_ns()
        fill = Fill(now, now, f"s{session.pk}-x-1", "f1", Side.BUY, 60_000.0, 0.001)
        loop.sink.order_event(fill, None)
    finally:
        loop.finish()
    lines = json_lines()
    started = [r for r in lines if "started" in r["event"] and r["logger"] == "apps.trading.loop"]
    assert started and started[0]["session_id"] == session.pk and started[0]["level"] == "info"
    assert started[0]["timestamp"].endswith("Z") and started[0]["loop"] == loop.owner
    fills = [r for r in lines if r.get("order_id") == fill.client_order_id]
    assert (
        len(fills) == 1 and fills[0]["session_id"] == session.pk and f"session {session.pk} fill" in fills[0]["event"]
    )
    finished = [r for r in lines if "finished" in r["event"]]
    assert finished and finished[-1]["session_id"] == session.pk
    # the context ends with the loop: later lines of this thread carry no session
    logging.getLogger("apps.after").warning("after the loop")
    assert "session_id" not in json_lines()[-1]


@pytest.mark.django_db(transaction=True)
def test_a_service_called_from_a_session_url_logs_with_the_session_and_user(client, json_lines):
    from django.utils import timezone

    from apps.ops.models import Alert
    from tests.roles import make_user

    session = create_paper_session(Actor(label="t"), name="logs", params=FAST, seed=2, start=False)
    now = timezone.now()
    alert = Alert.objects.create(
        session=session, rule="drawdown", severity="critical", message="dd", first_seen=now, last_seen=now
    )
    op = make_user("operator")
    client.force_login(op)
    assert client.post(f"/alerts/{alert.pk}/acknowledge/").status_code == 302
    acked = [r for r in json_lines() if r["event"].startswith(f"alert {alert.pk} acknowledged")]
    assert acked and acked[0]["session_id"] == session.pk and acked[0]["alert_id"] == alert.pk
    assert acked[0]["user"] == op.username  # bound by the request's log context


def test_plain_text_format_for_a_terminal():
    from apps.ops.logs import plain_formatter

    record = logging.LogRecord("x", logging.INFO, __file__, 1, "hello %s", ("there",), None)
    record.session_id = 7
    text = plain_formatter().format(record)
    assert "hello there" in text and "session_id=7" in text and not text.lstrip().startswith("{")
