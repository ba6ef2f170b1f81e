"""``manage.py estimate FILES... --format FMT [--json]``: run the engine's estimators over recorded data."""

from __future__ import annotations

import heapq
import json
import math
from itertools import chain, islice
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from apps.engine.estimators.market import estimate_events
from apps.marketdata.parsers import ParseStats, parse_file
from apps.marketdata.recordings import known_instrument, tick_for_files

FORMATS = ("binance-raw", "tardis", "lobster", "hyperliquid")


class Command(BaseCommand):
    help = (
        "Run the estimators (kappa, A, sigma, lambda, Hawkes, drift, ...) over recorded market data and print the "
        "final snapshot of each."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("files", nargs="+", help="recorded files; several are merged by local timestamp")
        parser.add_argument("--format", required=True, choices=FORMATS, dest="fmt")
        parser.add_argument("--json", action="store_true", help="print the report as JSON")
        parser.add_argument(
            "--tick-size",
            type=float,
            default=0.0,
            help="price tick; default: inferred from the quotes, or a known instrument's (named by the files' records) "
            "when the prices sit on no finer grid than it",
        )

    def handle(self, *args, **opts) -> None:
        paths = [Path(f) for f in opts["files"]]
        missing = [str(p) for p in paths if not p.is_file()]
        if missing:
            raise CommandError(f"file(s) not found: {', '.join(missing)}")
        if not (opts["tick_size"] >= 0 and math.isfinite(opts["tick_size"])):
            raise CommandError(f"--tick-size must be a finite number >= 0 (0: from the files), got {opts['tick_size']}")
        stats = ParseStats()
        try:
            # several files (e.g. Tardis quotes + trades) are merged by local time, not concatenated
            streams = [(e for e in parse_file(opts["fmt"], p, stats=stats) if hasattr(e, "ts_local_ns")) for p in paths]
            stream = heapq.merge(*streams, key=lambda e: e.ts_local_ns) if len(streams) > 1 else streams[0]
            head = list(islice(stream, 5000))
        except (OSError, ValueError, UnicodeDecodeError) as exc:
            raise CommandError(f"cannot read {opts['fmt']} data: {exc}") from exc
        if not any(hasattr(e, "ts_local_ns") for e in head):
            raise CommandError(f"no market events parsed from {', '.join(map(str, paths))} as {opts['fmt']}")
        # the same rule as ``evaluate --files``: an older recording may sit on a finer grid than the registry's tick
        try:
            tick, how = tick_for_files(known_instrument(paths, opts["fmt"]), head, opts["tick_size"])
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        try:
            report = estimate_events(chain(head, stream), tick_size=tick)
        except (OSError, ValueError, UnicodeDecodeError) as exc:
            raise CommandError(f"cannot read {opts['fmt']} data: {exc}") from exc
        report["tick_size"] = tick
        report["tick_source"] = how
        report["files"] = [str(p) for p in paths]
        report["format"] = opts["fmt"]
        if opts["json"]:
            self.stdout.write(json.dumps(report, indent=2, sort_keys=True))
        else:
            self.stdout.write(_text(report))


def _fmt(v) -> str:
    if v is None:
        return "—"
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


def _text(r: dict) -> str:
    k, s, lam, h, d, fit = r["kappa"], r["sigma"], r["lambda_per_s"], r["hawkes"], r["drift"], r["intensity_fit"]
    ft = k["fit_test"]
    o = r["taker_orders"]
    lines = [
        f"files: {', '.join(r['files'])} ({r['format']}), tick {r['tick_size']:g} ({r['tick_source']})",
        f"events {r['events_seen']}, trades seen {r['trades_seen']}, non-market trades excluded "
        f"{r['non_market_trades_excluded']}, {r['duration_s']:.1f} s",
        f"kappa   {_fmt(k['value'])} [{_fmt(k['ci_low'])}, {_fmt(k['ci_high'])}] ({k['state']}) {k['message']}",
        f"        avg order distance {_fmt(k['avg_trade_distance_bps'])} bps, beyond touch "
        f"{_fmt(k['avg_distance_beyond_touch_bps'])} bps, raw kappa {_fmt(k['kappa_raw'])}",
        f"        fit test: KS {_fmt(ft['ks_stat'])} p={_fmt(ft['ks_p'])}; "
        f"power-law alpha {_fmt(ft['powerlaw_alpha'])}, "
        f"loglik(exp - powerlaw) {_fmt(ft['loglik_ratio'])} p={_fmt(ft['loglik_ratio_p'])}",
        f"A       {_fmt(r['A_per_s'])} /s; joint fit A {_fmt(fit.get('a_per_s'))} kappa {_fmt(fit.get('kappa'))}",
        f"orders  {o['orders']} taker orders from {o['prints']} prints ({_fmt(o['prints_per_order'])} per order): "
        f"{_fmt(o['orders_per_s'])} /s; kappa per order {_fmt(o['kappa_per_order'])} "
        f"({o['orders_through_touch']} through the touch; whole recording, no prior or window: cross-check)",
        f"sigma   clean {_fmt(s['sigma_clean'])} total {_fmt(s['sigma_total'])} per sqrt(s) ({s['state']})",
        f"lambda  {_fmt(lam['value'])} /s [{_fmt(lam['ci_low'])}, {_fmt(lam['ci_high'])}] ({lam['state']})",
        f"hawkes  mu {_fmt(h.get('mu_per_s'))} alpha {_fmt(h.get('alpha_per_s'))} beta {_fmt(h.get('beta_per_s'))} "
        f"n={_fmt(h.get('branching_ratio'))} ({h['state']})",
        f"drift   {_fmt(d['mean_per_s'])} ± {_fmt(d['std_per_s'])} per s ({d['state']})",
    ]
    return "\n".join(lines)
