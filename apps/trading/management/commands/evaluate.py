"""``manage.py evaluate [--data-dir DIR] [--recording NAME ...] [--fit-fraction F] [--params JSON]``.

Our strategy and the baselines (fixed spread, Avellaneda–Stoikov, join-the-touch) through the same paper venue on
every shared Binance recording, walk-forward (:mod:`apps.engine.simulation.evaluate`): the fit part only warms
the strategies up, the table is the evaluated part. Venue assumptions default to issue 16's (0.01 orders, 0.2 max,
10 ms latency, risk-averse queue, maker −0.5 bps, taker 7 bps). ``--params`` (our strategy's flat parameters) is
fixed before any recording is read. Thin: reads the files, prints the table. No database.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.engine.simulation.evaluate import EvaluationConfig, evaluate_recording
from apps.marketdata.recordings import BINANCE_RAW_RECORDINGS, load_binance_raw

RECORDINGS = BINANCE_RAW_RECORDINGS


def _f(x: float, nd: int = 3) -> str:
    return "—" if not math.isfinite(x) else f"{x:.{nd}f}"


class Command(BaseCommand):
    help = "Walk-forward evaluation of the strategy and its baselines on the shared recordings."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--data-dir", default=str(Path(settings.BASE_DIR).parent / "shared" / "data"))
        parser.add_argument("--recording", action="append", choices=sorted(RECORDINGS), default=None)
        parser.add_argument("--fit-fraction", type=float, default=EvaluationConfig().fit_fraction)
        parser.add_argument("--params", default="{}", help="our strategy's flat parameters, JSON")

    def handle(self, *args: Any, **opts: Any) -> None:
        try:
            ours = json.loads(opts["params"])
            cfg = EvaluationConfig(fit_fraction=opts["fit_fraction"]).validate()
        except (ValueError, json.JSONDecodeError) as exc:
            raise CommandError(str(exc)) from None
        data_dir = Path(opts["data_dir"])
        head = (
            f"{'strategy':<11}{'net':>9}{'spread':>9}{'adverse':>9}{'invent':>9}{'fees':>8}{'fund':>6}"
            f"{'fills b/s':>11}{'maker vol b/s':>16}{'mk1s':>7}{'mk5s':>7}{'med hs':>8}{'max|q|':>8}{'both':>6}"
        )
        for name in opts["recording"] or sorted(RECORDINGS):
            files, tick, lot = RECORDINGS[name]
            missing = [f for f in files if not (data_dir / f).exists()]
            if missing:
                self.stdout.write(f"{name}: skipped, missing {missing}")
                continue
            split_ns, rows = evaluate_recording(load_binance_raw(data_dir, files), tick, lot, cfg, ours)
            self.stdout.write(
                f"\n{name}: evaluated from {split_ns} ns (fit part {cfg.fit_fraction:.0%} of the span); "
                "P&L in quote ccy, markouts and half-spread in bps, both = share of time quoting both sides"
            )
            self.stdout.write(head)
            for r in rows:
                p = r.pnl
                self.stdout.write(
                    f"{r.strategy:<11}{_f(r.pnl_total):>9}{_f(p['spread_capture']):>9}"
                    f"{_f(p['adverse_selection']):>9}{_f(p['inventory']):>9}{_f(p['fees']):>8}{_f(p['funding'], 2):>6}"
                    f"{f'{r.fills_buy}/{r.fills_sell}':>11}"
                    f"{f'{r.maker_volume_buy:.3f}/{r.maker_volume_sell:.3f}':>16}"
                    f"{_f(r.markout_1s_bps, 2):>7}{_f(r.markout_5s_bps, 2):>7}{_f(r.median_half_spread_bps, 2):>8}"
                    f"{_f(r.max_abs_inventory):>8}{_f(r.both_sides_share, 2):>6}"
                )
