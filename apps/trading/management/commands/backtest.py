"""``manage.py backtest (--data FILES --format F | --venue V --symbol S [--start T] [--end T]) --params JSON|FILE
[--strategy S|all] [--compare] [--json]``.

The data is recorded files, or a stored time range of one instrument's market data (``--start``/``--end`` are
ISO-8601, UTC when they carry no offset; an omitted bound is the first / last stored event). Thin: parses
arguments, calls :mod:`apps.trading.backtest`, prints the summary (a table, or JSON).
"""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.marketdata.parsers import FORMATS
from apps.trading.backtest import STORED, STRATEGIES, StoredRange, load_params, parse_time_ns, run_backtests

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
        parser.add_argument("--data", nargs="+", help="recorded data file(s), merged by local time")
        parser.add_argument("--format", choices=sorted(FORMATS), help="file format (with --data)")
        parser.add_argument("--venue", help="stored range: the instrument's venue (instead of --data)")
        parser.add_argument("--symbol", help="stored range: the instrument's symbol")
        parser.add_argument("--start", help="stored range start, ISO-8601 (UTC if no offset); default: first stored")
        parser.add_argument("--end", help="stored range end (exclusive), ISO-8601; default: just after the last")
        parser.add_argument("--params", required=True, help="parameters: a JSON object or the path of a JSON file")
        parser.add_argument("--strategy", default="glft", choices=[*STRATEGIES, "all"])
        parser.add_argument("--compare", action="store_true", help="GLFT and both baselines side by side")
        parser.add_argument("--seed", type=int, default=0, help="the paper venue's random seed (latency draws)")
        parser.add_argument("--name", default="", help="session name prefix")
        parser.add_argument("--json", action="store_true", help="print the summaries as JSON")

    def _source(self, opts: dict[str, Any]) -> tuple[list[str] | StoredRange, str]:
        """Exactly one data source: files (--data + --format) or a stored range (--venue + --symbol)."""
        files, fmt = opts["data"], opts["format"]
        stored = {k: opts[k] for k in ("venue", "symbol", "start", "end") if opts[k] is not None}
        usage = "give --data FILES --format F, or --venue V --symbol S [--start T] [--end T] for a stored range"
        if files and stored:
            raise CommandError(f"--data and {'/'.join('--' + k for k in stored)} are two data sources: {usage}")
        if files:
            if not fmt:
                raise CommandError(f"--data needs --format (one of {', '.join(sorted(FORMATS))})")
            return list(files), fmt
        if fmt:
            raise CommandError(f"--format applies to --data files only; {usage}")
        if not stored:
            raise CommandError(f"no data: {usage}")
        missing = [f"--{k}" for k in ("venue", "symbol") if not opts[k]]
        if missing:
            raise CommandError(f"a stored range needs {' and '.join(missing)} (given: {stored}); {usage}")
        start = parse_time_ns(opts["start"], "--start") if opts["start"] is not None else None
        end = parse_time_ns(opts["end"], "--end") if opts["end"] is not None else None
        if start is not None and end is not None and start >= end:
            raise CommandError(f"--start {opts['start']} must be before --end {opts['end']}")
        return StoredRange(opts["venue"], opts["symbol"], start, end), STORED

    def handle(self, *args: Any, **opts: Any) -> None:
        strategies = list(STRATEGIES) if (opts["compare"] or opts["strategy"] == "all") else [opts["strategy"]]
        try:
            source, fmt = self._source(opts)
            params = load_params(opts["params"])
            stored, data = run_backtests(source, fmt, params, strategies, seed=opts["seed"], name=opts["name"])
        except (ValueError, json.JSONDecodeError) as exc:
            raise CommandError(str(exc)) from exc
        summaries = [{**s.summary, "session_id": s.session_id, "run_id": s.run_id} for s in stored]
        if opts["json"]:
            self.stdout.write(json.dumps(summaries if len(summaries) > 1 else summaries[0], indent=2, sort_keys=True))
            return
        first = summaries[0]
        if data.stored is not None:
            r = data.stored
            origin = f"stored {r['venue']}:{r['symbol']} [{r['start']}, {r['end']}), read in {data.parse_s:.2f} s"
        else:
            origin = f"{len(data.stats)} file(s), parsed in {data.parse_s:.2f} s, {data.quarantined} quarantined"
        self.stdout.write(
            f"data: {len(data.events):,} events from {origin}; span {first['span_s']:.1f} s; "
            f"markout horizon {first['markout_s']} s; Sharpe over {first['sharpe_interval_s']} s P&L increments"
        )
        width = max(len(label) for _, label in ROWS)
        self.stdout.write(" " * width + " | " + " | ".join(f"{s['strategy']:>14}" for s in summaries))
        for key, label in ROWS:
            self.stdout.write(label.ljust(width) + " | " + " | ".join(f"{_fmt(_get(s, key)):>14}" for s in summaries))
        self.stdout.write("sessions: " + ", ".join(f"{s['strategy']}=#{s['session_id']}" for s in summaries))
