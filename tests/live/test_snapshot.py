"""The live snapshot, built from the real engine (simulator → paper venue → strategy core → driver), and the
plain-words table for the quoter's reasons."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import pytest

from apps.engine.core import StrategyCore, StrategyParams
from apps.engine.execution.paper import PaperVenue, PaperVenueConfig
from apps.engine.simulation.backtest import BacktestConfig, EngineLoop
from apps.engine.simulation.simulator import MarketSimulator, SimulatorParams
from apps.live.broadcast import to_json
from apps.live.snapshot import FILLS_KEPT, TRADES_KEPT, LiveTape, attach_tape, build_snapshot
from apps.live.wording import explain

SP = SimulatorParams()
FAST = {"sigma_bucket_s": 0.25, "sigma_min_buckets": 8, "kappa_min_volume": 0.05}
BASE = Path(__file__).resolve().parents[2]


class _CountingSink:
    """A recorder stand-in that counts what reaches it (the tape must forward every call)."""

    def __init__(self) -> None:
        self.calls: dict[str, int] = {}

    def __getattr__(self, name: str):
        def call(*args, **kwargs):
            self.calls[name] = self.calls.get(name, 0) + 1

        return call


def _run(seconds: float = 90.0) -> tuple[StrategyCore, EngineLoop, LiveTape, _CountingSink]:
    core = StrategyCore(StrategyParams.from_dict(FAST), tick_size=SP.tick_size, lot_size=SP.lot_size)
    venue = PaperVenue(
        PaperVenueConfig(tick_size=SP.tick_size, lot_size=SP.lot_size, maker_fee=-0.0001, taker_fee=0.0004), seed=1
    )
    inner = _CountingSink()
    driver = EngineLoop(core, venue, BacktestConfig(keep_decisions=False, cancel_at_end=False), sink=inner)
    tape = attach_tape(driver)
    assert attach_tape(driver) is tape and driver.sink is tape  # installed once
    for ev in MarketSimulator(SP, seed=4).events(until_ns=SP.start_ts_ns + int(seconds * 1e9)):
        driver.on_market(ev)
    return core, driver, tape, inner


@pytest.fixture(scope="module")
def ran():
    return _run()


def test_the_snapshot_holds_every_part_of_the_live_page_with_json_safe_numbers(ran):
    core, driver, tape, _ = ran
    snap = build_snapshot(core, driver, tape, session_id=7, status="running")
    text = to_json(snap)
    back = json.loads(text)  # strict JSON: a NaN would have failed in the browser's JSON.parse
    assert "NaN" not in text and "Infinity" not in text
    for key in ("market", "quotes", "estimators", "gamma", "inventory", "pnl", "trades", "fills", "risk", "decision"):
        assert key in back, key
    m = back["market"]
    assert m["best_bid"] < m["mid"] < m["best_ask"] and m["spread_bps"] > 0
    k = back["estimators"]["kappa"]
    assert k["state"] == "ok" and k["ci_low"] <= k["value"] <= k["ci_high"]
    assert back["estimators"]["sigma"]["clean_bps"] > 0
    assert back["gamma"]["contributions"], "γ's named contributions are missing"
    # the ladder is what rests at the venue: the core's open orders, best first
    bids, asks = back["quotes"]["bids"], back["quotes"]["asks"]
    assert len(bids) + len(asks) == len(core.tracker.open_orders()) == back["counts"]["open_orders"]
    assert [b["px"] for b in bids] == sorted((b["px"] for b in bids), reverse=True)
    assert back["decision"]["inputs"]["mid"] is not None and isinstance(back["decision"]["reasons"], list)


def test_the_pnl_split_is_the_drivers_ledger_and_sums_to_its_total(ran):
    core, driver, tape, _ = ran
    snap = build_snapshot(core, driver, tape, session_id=7, status="running")
    pnl = snap["pnl"]
    assert core.fills > 0, "the run should have filled"
    assert pnl["fills_this_run"] == driver.ledger.fills == core.fills
    assert math.isclose(sum(pnl["parts"].values()), pnl["total"], rel_tol=1e-9, abs_tol=1e-9)
    assert math.isclose(pnl["total"], driver.ledger.snapshot().total)


def test_rolling_windows_are_bounded_carry_ids_and_the_tape_forwards_every_call(ran):
    core, driver, tape, inner = ran
    snap = build_snapshot(core, driver, tape, session_id=7, status="running")
    trades, fills = snap["trades"], snap["fills"]
    assert 0 < len(trades) <= TRADES_KEPT and 0 < len(fills) <= FILLS_KEPT
    assert len({t["id"] for t in trades}) == len(trades) and len({f["id"] for f in fills}) == len(fills)
    assert [t["ts_ns"] for t in trades] == sorted(t["ts_ns"] for t in trades)
    assert fills[-1]["id"] == driver.result.fills[-1].fill_id
    assert inner.calls["market"] == driver.result.stats.market_events
    assert inner.calls["order_event"] == driver.result.stats.order_events
    assert inner.calls.get("decision", 0) == driver.result.stats.decisions


def test_a_pulled_quote_says_which_source_holds_it_and_why():
    from apps.engine.risk.gateway import Mode

    core, driver, tape, _ = _run(40.0)
    driver.set_mode("feed", Mode.PAUSED, driver.now_ns, "feed disconnected: test")
    snap = build_snapshot(core, driver, tape, session_id=7, status="running")
    risk = snap["risk"]
    assert risk["mode"] == "paused" and risk["quoting"] is False
    assert {"source": "feed", "mode": "paused"}.items() <= risk["holding"][0].items()
    assert risk["pulls"][-1]["reason"] == "feed disconnected: test"
    assert snap["counts"]["open_orders"] == 0


@pytest.mark.parametrize(
    ("raw", "code", "words"),
    [
        ("skew_too_small: |q|=0.015 > 0.1·Q_max but |skew|=0.000 bps < 0.5 bps", "skew_too_small", "barely skewed"),
        (
            "gamma_bound_binding: model log-contribution 3.100 nats compressed to 1.990 (bound ±2)",
            "gamma_bound_binding",
            "bound",
        ),
        (
            "bid L1 dropped: expected P&L -0.01 < 0 (edge 0.1 bps vs adverse 0.5 + fee 0.1 bps, p_fill 0.3)",
            "level_negative_epnl",
            "Buy level 2",
        ),
        (
            "no ask at L0: a fill would take q=-0.1 past -max_inventory 0.1 (room 0)",
            "level_no_room",
            "No sell quote at level 1",
        ),
        ("kappa warming: 0.01 of 0.05 volume", "estimator_state", "κ"),
        ("sigma stale: no bucket for 30 s", "estimator_state", "stale"),
        ("ask would cross the bid: placed one tick above the best bid (post-only)", "post_only_clamp", "sell"),
        ("emergency taker: |q|=0.09 >= 0.9·Q_max; sell 0.01 where ...", "emergency_taker", "market-taking"),
        ("drift not usable: drift term is 0", "drift_unusable", "trend"),
        ("something new", "other", "something new"),
    ],
)
def test_reasons_read_in_plain_words_and_keep_the_raw_text(raw, code, words):
    out = explain(raw)
    assert out["code"] == code and words in out["text"] and out["raw"] == raw


def test_the_vendored_chart_library_matches_its_checksums():
    folder = BASE / "static" / "vendor" / "uplot"
    lines = (folder / "SHA256SUMS").read_text().split("\n")
    entries = [line.split() for line in lines if line.strip()]
    assert {name for _, name in entries} >= {"uPlot.iife.min.js", "uPlot.min.css", "LICENSE"}
    for digest, name in entries:
        assert hashlib.sha256((folder / name).read_bytes()).hexdigest() == digest, name
