"""The fault scenarios of `make chaos`, run against a private real stack (own PostgreSQL, Redis, daphne, Celery
workers and beat), asserting the safety numbers. The harness runs in a subprocess: it restarts its own servers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

BASE_DIR = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.stack


@pytest.fixture(scope="module")
def chaos_rows() -> dict[str, dict]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "MM_VAR_DIR")}
    res = subprocess.run(
        [sys.executable, "-m", "benchmarks.chaos", "8", "--json"],
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    line = next((ln for ln in res.stdout.splitlines() if ln.startswith("CHAOS-JSON ")), None)
    assert line is not None, f"no result (exit {res.returncode}):\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
    print(res.stdout)
    return {r["name"]: r for r in json.loads(line.removeprefix("CHAOS-JSON "))}


def test_every_scenario_ran(chaos_rows):
    failed = [n for n in chaos_rows if "FAILED" in n]
    assert not failed, [chaos_rows[n]["note"] for n in failed]


def test_the_kill_switch_cancels_everything_well_within_half_a_second(chaos_rows):
    p99 = next(r for n, r in chaos_rows.items() if n.startswith("kill switch: click → orders cancelled in DB, p99"))
    assert p99["value"] < 500
    assert chaos_rows["kill switch: orders left open after 10 s"]["value"] == 0


def test_a_killed_worker_is_made_safe_and_resumed_without_losing_anything(chaos_rows):
    assert chaos_rows["worker SIGKILL → orders cancelled (dead-man's switch)"]["value"] < 10
    assert chaos_rows["worker SIGKILL: orders left open"]["value"] == 0
    assert chaos_rows["worker SIGKILL: fills logged by the loop but not in DB"]["value"] == 0
    assert chaos_rows["worker SIGKILL: trade ticks the dead loop saw but never stored"]["value"] == 0
    assert chaos_rows["worker SIGKILL: trade ticks missing (gaps in trade ids)"]["value"] == 0
    assert chaos_rows["worker SIGKILL: resumed with position rebuilt from fills"]["value"] == 1


def test_redis_and_postgresql_restarts_lose_nothing_and_never_unhalt(chaos_rows):
    assert chaos_rows["Redis restart: session still HALTED after restart"]["value"] == 1
    assert chaos_rows["Redis restart: new task reached a worker after restart"]["value"] == 1
    assert chaos_rows["Redis restart: trade ticks missing"]["value"] == 0
    assert chaos_rows["PostgreSQL restart: quoting resumed after recovery"]["value"] == 1
    assert chaos_rows["PostgreSQL restart: trade ticks missing"]["value"] == 0
    assert chaos_rows["PostgreSQL restart: fills logged but not in DB"]["value"] == 0
    assert chaos_rows["PostgreSQL restart: orders left open after stop"]["value"] == 0


def test_a_feed_disconnect_pulls_quotes_and_resyncs(chaos_rows):
    assert chaos_rows["feed disconnect → quotes pulled"]["value"] < 500
    assert chaos_rows["feed disconnect: orders sent while the feed was down"]["value"] == 0
    assert chaos_rows["feed disconnect: quoting resumed after resync"]["value"] == 1


def test_the_per_fault_table_has_the_issue_columns_and_no_losses(chaos_rows):
    from benchmarks.chaos import summary_lines

    lines = summary_lines(list(chaos_rows.values()))
    assert lines[0].split(" | ")[0].strip() == "fault" and "rows lost" in lines[0]
    for line in lines[2:]:
        _fault, _t, left, fills, rows = (c.strip() for c in line.split(" | "))
        assert left in ("0", "n/a") and fills in ("0", "n/a") and rows in ("0", "n/a"), line
