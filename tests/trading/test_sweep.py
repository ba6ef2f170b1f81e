"""Parameter sweeps: a grid over γ (and latency) run as Celery tasks on a real worker, stored and comparable."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.db import transaction

from apps.trading.backtest import apply_point, create_sweep, expand_grid, start_sweep, sweep_table
from apps.trading.models import BacktestRun, PnlPoint, SweepRun, TradingSession
from tests.conftest import BASE_DIR, _stop, _wait_worker_ready, stack_env
from tests.trading.test_backtest_command import PARAMS, write_binance_raw


def test_the_grid_expands_to_every_combination_in_order() -> None:
    points = expand_grid({"strategy.gamma": [10.0, 100.0], "venue.entry_latency_ns": [0, 5_000_000]})
    assert points == [
        {"strategy.gamma": 10.0, "venue.entry_latency_ns": 0},
        {"strategy.gamma": 10.0, "venue.entry_latency_ns": 5_000_000},
        {"strategy.gamma": 100.0, "venue.entry_latency_ns": 0},
        {"strategy.gamma": 100.0, "venue.entry_latency_ns": 5_000_000},
    ]
    assert apply_point(PARAMS, points[3])["venue"]["entry_latency_ns"] == 5_000_000
    assert PARAMS["venue"]["entry_latency_ns"] == 2_000_000  # the base is not modified
    with pytest.raises(ValueError, match=r"section\.field"):
        expand_grid({"gamma": [1.0]})
    with pytest.raises(ValueError, match="non-empty list"):
        expand_grid({"strategy.gamma": []})
    with pytest.raises(ValueError, match=r"section\.field"):
        expand_grid({"strategy..beta": [1.0]})
    # a nested field (the γ model's βs live under strategy.risk_aversion) is set where it belongs
    nested = apply_point(PARAMS, expand_grid({"strategy.risk_aversion.beta_thin_book": [0.0, 1.0]})[1])
    assert nested["strategy"]["risk_aversion"] == {"beta_thin_book": 1.0}
    from apps.trading.backtest import parse_params

    assert parse_params(nested).glft.risk_aversion.beta_thin_book == 1.0


@pytest.mark.django_db(transaction=True)
def test_a_bad_point_creates_nothing(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"sweep point \{'strategy.gamma': -1.0\}"):
        create_sweep([tmp_path / "x"], "binance-raw", PARAMS, {"strategy.gamma": [1.0, -1.0]})
    assert not SweepRun.objects.exists() and not TradingSession.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_a_gamma_grid_runs_in_parallel_on_a_celery_worker_and_the_results_compare(tmp_path: Path) -> None:
    data = write_binance_raw(tmp_path / "feed.txt", 60, seed=5)
    queue = f"backtest-test-{os.getpid()}"  # our own queue: other test runs' workers never take these tasks
    logs = tmp_path / "logs"
    logs.mkdir()
    log = logs / "sweep-worker.log"
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "mmweb",
            "worker",
            "-I",
            "apps.trading.tasks_sweep",
            "-Q",
            queue,
            "-c",
            "2",
            "--prefetch-multiplier=1",
            "-n",
            f"sweep-{os.getpid()}@%h",
            "-l",
            "INFO",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
        ],
        cwd=BASE_DIR,
        env=stack_env(),
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        _wait_worker_ready(log, worker)
        grid = {"strategy.gamma": [100.0, 1000.0, 10000.0]}
        with transaction.atomic():
            sweep = start_sweep([data], "binance-raw", PARAMS, grid, strategy="glft", name="gamma", queue=queue)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            sweep.refresh_from_db()
            if sweep.status != SweepRun.Status.RUNNING:
                break
            time.sleep(0.5)
        assert sweep.status == SweepRun.Status.DONE, log.read_text(errors="replace")[-3000:]
    finally:
        _stop({"worker": worker})
    rows = sweep_table(sweep.pk)
    assert [r["strategy.gamma"] for r in rows] == [100.0, 1000.0, 10000.0]
    assert all(r["status"] == "done" and r["pnl_total"] is not None for r in rows)
    for r in rows:
        assert PnlPoint.objects.filter(session_id=r["session_id"]).count() > 30
        run = BacktestRun.objects.get(pk=r["run_id"])
        assert run.params["strategy"]["gamma"] == r["strategy.gamma"]
    assert all(r["max_abs_inventory"] <= 0.05 + 1e-12 for r in rows)
    worker_log = log.read_text(errors="replace")
    assert worker_log.count("run_backtest_point") >= 3
