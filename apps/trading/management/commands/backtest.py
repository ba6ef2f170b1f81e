"""``manage.py backtest (--data FILES --format F | --venue V --symbol S [--start T] [--end T]) [--params JSON|FILE]
[--strategy S|all] [--compare] [--json]``.

``--params`` defaults to ``{}``: the engine's documented defaults. A known instrument
(:mod:`apps.marketdata.instruments`, picked by what the files' records say or by ``--venue``/``--symbol``) fills
in the venue's tick size, lot size and fees wherever ``--params`` leaves them out.

The data is recorded files, or a stored time range of one instrument's market data (``--start``/``--end`` are
ISO-8601, UTC when they carry no offset; an omitted bound is the first / last stored event). Thin: parses
arguments, calls :mod:`apps.trading.backtest`, prints the summary (a table, or JSON).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.engine.simulation.backtest import MIN_ANNUALISE_SPAN_S
from apps.marketdata import instruments
from apps.marketdata.identify import identify
from apps.marketdata.instruments import currencies
from apps.marketdata.parsers import FORMATS
from apps.trading.backtest import STORED, STRATEGIES, StoredRange, load_params, parse_time_ns, run_backtests
from apps.trading.models import TradingSession
from mmweb.dbready import ensure_migrated

# (summary key, label, kind): the kind picks the unit and the precision (see _fmt); {base}/{quote} are the
# instrument's currencies, {interval} the P&L sampling interval
ROWS: tuple[tuple[str, str, str], ...] = (
    ("events_processed", "market events processed", "count"),
    ("events_per_s", "events per second (backtest only)", "count"),
    ("fills_buy", "fills buy", "count"),
    ("fills_sell", "fills sell", "count"),
    ("volume", "volume ({base})", "base"),
    ("maker_share", "maker share", "percent"),
    ("avg_quoted_spread_bps", "avg quoted spread (bps)", "bps"),
    ("median_quoted_spread_bps", "median quoted spread (bps)", "bps"),
    ("median_market_spread_bps", "median market spread (bps)", "bps"),
    ("median_bid_distance_ticks", "median bid distance from touch (ticks)", "ticks"),
    ("median_ask_distance_ticks", "median ask distance from touch (ticks)", "ticks"),
    ("final_inventory", "final inventory ({base})", "base"),
    ("max_abs_inventory", "max |inventory| ({base})", "base"),
    ("pnl_total", "P&L total ({quote})", "money"),
    ("pnl.spread_capture", "  spread capture", "money"),
    ("pnl.adverse_selection", "  adverse selection", "money"),
    ("pnl.inventory", "  inventory", "money"),
    ("pnl.fees", "  fees", "money"),
    ("pnl.funding", "  funding", "money"),
    ("markout_mean_bps", "mean markout (bps)", "bps"),
    ("sharpe_per_interval", "Sharpe per interval ({interval}, not annualised)", "ratio"),
    ("sharpe_annualised", "Sharpe annualised (needs >= 1 day of data)", "annualised"),
    ("max_drawdown", "max drawdown ({quote})", "money"),
    ("wall_s", "run time (wall clock)", "duration"),
)


def duration(seconds: float) -> str:
    """``0.421 s``, ``1 s``, ``5 min 45 s``, ``2 h 03 min``, ``3 d 04 h``: the units a reader thinks in."""
    if seconds < 60:
        return f"{seconds:.3g} s"
    s = round(seconds)
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    if s < 86400:
        return f"{s // 3600} h {s % 3600 // 60:02d} min"
    return f"{s // 86400} d {s % 86400 // 3600:02d} h"


def _get(summary: dict[str, Any], key: str) -> Any:
    cur: Any = summary
    for part in key.split("."):
        cur = cur.get(part) if isinstance(cur, dict) else None
    return cur


def _fmt(v: Any, kind: str, summary: dict[str, Any] | None = None) -> str:
    if v is None:
        if kind == "annualised" and summary is not None and summary.get("span_s", 0) < MIN_ANNUALISE_SPAN_S:
            return "n/a (< 1 day)"
        return "—"
    if kind == "count":
        return f"{v:,.0f}"
    if kind == "money":  # cents; an amount below a cent keeps two significant digits rather than print 0.00
        return f"{v:,.2f}" if v == 0 or abs(v) >= 0.01 else f"{v:.2g}"
    if kind == "base":
        return f"{v:,.6f}".rstrip("0").rstrip(".") or "0"
    if kind == "percent":
        return f"{v * 100:.1f} %"
    if kind == "bps":
        return f"{v:,.2f}"
    if kind == "ticks":
        return f"{v:,.1f}"
    if kind in ("ratio", "annualised"):
        return f"{v:,.3f}"
    if kind == "duration":
        return duration(v)
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
        parser.add_argument(
            "--params",
            default="{}",
            help="parameters: a JSON object or the path of a JSON file (default {}: the documented defaults, with a "
            "known instrument's tick, lot and fees)",
        )
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

    def _with_instrument(self, params: dict[str, Any], source: list[str] | StoredRange, fmt: str) -> dict[str, Any]:
        """``params`` with the known instrument's venue grid and fees filled in where they are left out."""
        given = params.get("instrument") if isinstance(params.get("instrument"), dict) else {}
        if isinstance(source, StoredRange):
            venue, symbol = source.venue, source.symbol
        elif given.get("venue") and given.get("symbol"):
            venue, symbol = given["venue"], given["symbol"]
        else:
            missing = [f for f in source if not Path(f).is_file()]
            if missing:
                raise CommandError(f"data file not found: {', '.join(missing)}")
            found = identify(source, fmt)
            venue, symbol = (found.venue, found.symbol) if found else ("", "")
        known = instruments.lookup(venue, symbol)
        venue_given = params.get("venue") if isinstance(params.get("venue"), dict) else {}
        if known is None and not isinstance(source, StoredRange) and "tick_size" not in venue_given:
            what = f"{venue}:{symbol}" if venue else "the files do not name their instrument, which"
            raise CommandError(
                f"{what} is not a known instrument ({', '.join(instruments.known_keys())}): give its grid in "
                '--params, e.g. \'{"venue": {"tick_size": 0.1, "lot_size": 0.001}}\''
            )
        return instruments.with_instrument_defaults(params, known, grid=not isinstance(source, StoredRange))

    def handle(self, *args: Any, **opts: Any) -> None:
        strategies = list(STRATEGIES) if (opts["compare"] or opts["strategy"] == "all") else [opts["strategy"]]
        try:
            source, fmt = self._source(opts)
            ensure_migrated(self.stdout if not opts["json"] else None)
            params = self._with_instrument(load_params(opts["params"]), source, fmt)
            stored, data = run_backtests(source, fmt, params, strategies, seed=opts["seed"], name=opts["name"])
        except (ValueError, json.JSONDecodeError) as exc:
            raise CommandError(str(exc)) from exc
        # the review page's fill-rate/spreads aggregates, built now rather than on the page's first read (a command
        # run without workers has no beat to fold them)
        from apps.review.decision_aggregates import catch_up

        for s in stored:
            catch_up(s.session_id)
        summaries = [{**s.summary, "session_id": s.session_id, "run_id": s.run_id} for s in stored]
        if opts["json"]:
            self.stdout.write(json.dumps(summaries if len(summaries) > 1 else summaries[0], indent=2, sort_keys=True))
            return
        first = summaries[0]
        session = TradingSession.objects.select_related("instrument").get(pk=first["session_id"])
        inst = session.instrument
        base, quote = currencies(inst.symbol, inst.venue)
        if data.stored is not None:
            r = data.stored
            origin = f"stored {r['venue']}:{r['symbol']} [{r['start']}, {r['end']}), read in {duration(data.parse_s)}"
        else:
            origin = f"{len(data.stats)} file(s), parsed in {duration(data.parse_s)}, {data.quarantined:,} quarantined"
        when = ""
        if session.started_at and session.ended_at:
            when = f" ({session.started_at:%Y-%m-%d %H:%M:%S} to {session.ended_at:%Y-%m-%d %H:%M:%S} UTC)"
        interval = duration(first["sharpe_interval_s"])
        self.stdout.write(
            f"data: {inst.venue}:{inst.symbol}, {len(data.events):,} events from {origin}\n"
            f"span {duration(first['span_s'])}{when}; markout horizon {duration(first['markout_s'])}; "
            f"Sharpe from {first.get('sharpe_n_intervals', 0):,} P&L increments of {interval}"
        )
        labels = [label.format(base=base, quote=quote, interval=interval) for _, label, _ in ROWS]
        width = max(len(label) for label in labels)
        self.stdout.write(" " * width + " | " + " | ".join(f"{s['strategy']:>14}" for s in summaries))
        for (key, _, kind), label in zip(ROWS, labels, strict=True):
            cells = " | ".join(f"{_fmt(_get(s, key), kind, s):>14}" for s in summaries)
            self.stdout.write(label.ljust(width) + " | " + cells)
        self.stdout.write("sessions: " + ", ".join(f"{s['strategy']}=#{s['session_id']}" for s in summaries))
