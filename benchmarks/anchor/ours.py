"""Our side of ``make bench-anchor``: the product's GLFT backtest on the shared USD-M recording, timed.

Runs under the project's virtualenv, in a fresh process per round (as hftbacktest's side does); the time is
the best of ``passes`` runs in that process, each with a new loop, strategy and venue.
The recording is parsed first and not timed (hftbacktest's conversion to ``.npz`` is not timed either); the
timed part is what ``apps.trading.backtest`` runs for a session minus its database writes: the one driver
(:class:`~apps.engine.simulation.backtest.EngineLoop`) with the GLFT :class:`~apps.engine.core.StrategyCore`,
the paper venue (full L2 book, risk-averse queue model, constant latency, no partial fills), the session's default
risk rules and the P&L ledger; no sink. Prints one JSON object on its last stdout line.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import replace
from pathlib import Path

from apps.engine.core import StrategyCore, StrategyParams
from apps.engine.execution.paper import PaperVenue, PaperVenueConfig
from apps.engine.market.events import Side
from apps.engine.quoting.quoter import QuoterParams
from apps.engine.risk.session import SessionRisk, build_risk_engine
from apps.engine.simulation.backtest import BacktestConfig, EngineLoop
from apps.marketdata.parsers import ParseStats, Quarantined, parse_file

# The venue assumptions (same values as hftbacktest's side, benchmarks/anchor/theirs.py)
TICK_SIZE = 0.1  # USDT
LOT_SIZE = 0.001  # BTC
ORDER_SIZE = 0.01  # BTC
MAX_INVENTORY = 0.2  # BTC
LATENCY_NS = 10_000_000  # constant, each way (order entry and response)
MAKER_FEE_BPS = -0.5  # a rebate
TAKER_FEE_BPS = 7.0
PARTIAL_FILLS = False  # an order fills whole or not at all, as hftbacktest's no_partial_fill_exchange()
# The recorder's clock runs ~1.27 s behind Binance's (MANIFEST.md, quirk 1): the session default (1000 ms) would
# pull quotes for the whole run, so the bound is raised as the project's own tests do for this file.
RISK = {"clock_skew": {"max_abs_skew_ms": 2000.0}}


def make_loop(*, keep_decisions: bool = False) -> EngineLoop:
    """The backtest as a session would run it, with the issue's assumptions in place of the session's.

    ``keep_decisions`` keeps every changed decision in the result (``BacktestConfig``'s default; a session's
    backtest does not keep them, and neither does the anchor)."""
    quoter = replace(
        QuoterParams(),
        order_size=ORDER_SIZE,
        max_inventory=MAX_INVENTORY,
        levels=1,
        maker_fee_bps=MAKER_FEE_BPS,
        taker_fee_bps=TAKER_FEE_BPS,
    )
    core = StrategyCore(StrategyParams(quoter=quoter).validate(), tick_size=TICK_SIZE, lot_size=LOT_SIZE)
    venue = PaperVenue(
        PaperVenueConfig(
            TICK_SIZE,
            LOT_SIZE,
            maker_fee=MAKER_FEE_BPS / 1e4,
            taker_fee=TAKER_FEE_BPS / 1e4,
            entry_latency_ns=LATENCY_NS,
            response_latency_ns=LATENCY_NS,
            queue_model="risk_averse",
            partial_fills=PARTIAL_FILLS,
        ),
        seed=1,
    )
    engine, capital = build_risk_engine(RISK, MAX_INVENTORY)
    risk = SessionRisk(engine, capital, MAX_INVENTORY)
    return EngineLoop(core, venue, BacktestConfig(keep_decisions=keep_decisions), name="glft", risk=risk)


def run(raw: Path, passes: int = 2) -> dict:
    stats = ParseStats()
    t0 = time.perf_counter()
    events = [e for e in parse_file("binance-raw", raw, stats=stats) if not isinstance(e, Quarantined)]
    parse_s = time.perf_counter() - t0
    wall_s = float("inf")
    for _ in range(passes):  # best of ``passes``, each a new loop on the same parsed events
        loop = make_loop()
        t0 = time.perf_counter()
        result = loop.run(events)
        wall_s = min(wall_s, time.perf_counter() - t0)
    summary = result.summary()
    spread = summary["avg_quoted_spread_bps"]
    return {
        "fills_buy": summary["fills_buy"],
        "fills_sell": summary["fills_sell"],
        "orders_filled_buy": len({f.client_order_id for f in result.fills if f.side is Side.BUY}),
        "orders_filled_sell": len({f.client_order_id for f in result.fills if f.side is Side.SELL}),
        "volume_buy": sum(f.size for f in result.fills if f.side is Side.BUY),
        "volume_sell": sum(f.size for f in result.fills if f.side is Side.SELL),
        "position": summary["final_inventory"],
        "pnl": summary["pnl_total"],
        "fees": sum(f.fee for f in result.fills),
        "mean_half_spread_bps": spread / 2.0 if spread is not None else None,
        "risk_events": [t["rule"] for t in summary.get("risk_events", [])],
        "messages": len(events),
        "wall_s": wall_s,
        "parse_s": parse_s,
    }


if __name__ == "__main__":
    print(json.dumps(run(Path(sys.argv[1]), int(sys.argv[2]))))
