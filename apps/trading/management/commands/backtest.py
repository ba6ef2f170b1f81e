"""``manage.py backtest --data FILES --format F --params JSON|FILE [--strategy S|all] [--compare] [--json]``.

Thin: parses arguments, calls :mod:`apps.trading.backtest`, prints the summary (a table, or JSON).
"""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.marketdata.parsers import FORMATS
from apps.trading.backtest import STRATEGIES, load_params, run_backtests

ROWS: tuple[tuple[str, str], ...] = (
    ("events_processed", "market events processed"),
    ("events_per_s", "events per second (backtest only)"),
    ("fills_buy", "fills buy"),
    ("fills_sell", "fills sell"),
    ("volume", "volume (base)"),
    ("maker_share", "maker share"),
    ("avg_quoted_spread_bps", "avg quoted spread (bps)"),
    ("median_quoted_spread_bps", "median quoted spread (bps)"),
    ("median_market_spread_bps", "median market spread (bps)"),
    ("median_bid_distance_ticks", "median bid distance from touch (ticks)"),
    ("median_ask_distance_ticks", "median ask distance from touch (ticks)"),
    ("final_inventory", "final inventory"),
    ("max_abs_inventory", "max |inventory|"),
    ("pnl_total", "P&L total"),
    ("pnl.spread_capture", "  spread capture"),
    ("pnl.adverse_selection", "  adverse selection"),
    ("pnl.inventory", "  inventory"),
    ("pnl.fees", "  fees"),
    ("pnl.funding", "  funding"),
    ("markout_mean_bps", "mean markout (bps)"),
    ("sharpe_per_interval", "Sharpe per interval"),
    ("sharpe_annualised", "Sharpe annualised"),
    ("max_drawdown", "max drawdown"),
)


def _get(summary: dict[str, Any], key: str) -> Any:
    cur: Any = summary
    for part in key.split("."):
        cur = cur.get(part) if isinstance(cur, dict) else None
    return cur


def _fmt(v: Any) -> str:
    if v is None:
        return "—"
    if isinstance(v, float):
        return f"{v:,.4f}" if abs(v) < 1e4 else f"{v:,.0f}"
    return str(v)


class Command(BaseCommand):
    help = "Run the quoting strategy over recorded data through the paper venue and store it as a session."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--data", nargs="+", required=True, help="recorded data file(s), merged by local time")
        parser.add_argument("--format", required=True, choices=sorted(FORMATS), help="file format")
        parser.add_argument("--params", required=True, help="parameters: a JSON object or the path of a JSON file")
        parser.add_argument("--strategy", default="glft", choices=[*STRATEGIES, "all"])
        parser.add_argument("--compare", action="store_true", help="GLFT and both baselines side by side")
        parser.add_argument("--seed", type=int, default=0, help="the paper venue's random seed (latency draws)")
        parser.add_argument("--name", default="", help="session name prefix")
        parser.add_argument("--json", action="store_true", help="print the summaries as JSON")

    def handle(self, *args: Any, **opts: Any) -> None:
        strategies = list(STRATEGIES) if (opts["compare"] or opts["strategy"] == "all") else [opts["strategy"]]
        try:
            params = load_params(opts["params"])
            stored, data = run_backtests(
                opts["data"], opts["format"], params, strategies, seed=opts["seed"], name=opts["name"]
            )
        except (ValueError, json.JSONDecodeError) as exc:
            raise CommandError(str(exc)) from exc
        summaries = [{**s.summary, "session_id": s.session_id, "run_id": s.run_id} for s in stored]
        if opts["json"]:
            self.stdout.write(json.dumps(summaries if len(summaries) > 1 else summaries[0], indent=2, sort_keys=True))
            return
        first = summaries[0]
        self.stdout.write(
            f"data: {len(data.events):,} events from {len(opts['data'])} file(s), parsed in {data.parse_s:.2f} s, "
            f"{data.quarantined} quarantined; span {first['span_s']:.1f} s; markout horizon {first['markout_s']} s; "
            f"Sharpe over {first['sharpe_interval_s']} s P&L increments"
        )
        width = max(len(label) for _, label in ROWS)
        self.stdout.write(" " * width + " | " + " | ".join(f"{s['strategy']:>14}" for s in summaries))
        for key, label in ROWS:
            self.stdout.write(label.ljust(width) + " | " + " | ".join(f"{_fmt(_get(s, key)):>14}" for s in summaries))
        self.stdout.write("sessions: " + ", ".join(f"{s['strategy']}=#{s['session_id']}" for s in summaries))
