"""``manage.py evaluate [--data-dir DIR] [--recording NAME ...] [--fit-fraction F] [--params JSON] [--png-dir DIR]
[--no-calibrate] [--skew-ratio R]``, or on files the project does not hold: ``manage.py evaluate --files F [F ...]
--format FMT [--name NAME] [--tick-size T] [--lot-size L] [--order-size S] [--max-inventory Q] [...]``.

Our strategy and the baselines (fixed spread, Avellaneda–Stoikov, join-the-touch) through the same paper venue on
every shared Binance recording, walk-forward (:mod:`apps.engine.simulation.evaluate`): the fit part only warms
the strategies up, the table is the evaluated part. Venue assumptions default to issue 16's (0.01 orders, 0.2 max,
10 ms latency, risk-averse queue, maker −0.5 bps, taker 7 bps). ``--params`` (our strategy's flat parameters) is
fixed before any recording is read; our γ₀ is calibrated on each recording's fit part unless ``--params`` sets
``gamma`` or ``--no-calibrate`` (the row ``ours_default`` is the same strategy uncalibrated). One PNG per recording
(quotes, fills and mid; P&L by part; every strategy's P&L) goes to ``--png-dir`` (default ``var/evaluate``). Under
each table, ours minus every other row, net and without inventory P&L, with ± 2 standard errors from the P&L series
(:func:`~apps.engine.simulation.evaluate.pnl_difference`). Thin: reads the files, prints the table, writes the
charts. No database.

``--files`` evaluates a recording of one's own in the same way (several files, e.g. Tardis quotes and trades, are
merged by local time). The tick and lot come from the registry when the files' records name a known instrument
(``apps/marketdata/instruments.py``), else from ``--tick-size`` (inferred from the prices when omitted) and
``--lot-size`` (required); the order size and Q_max default to issue 16's 0.01 and 0.2 base units.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.engine.simulation.evalchart import write_evaluation_png
from apps.engine.simulation.evaluate import (
    EvaluationConfig,
    cut_to_book,
    evaluate_recording,
    mid_path,
    pnl_difference,
)
from apps.marketdata.recordings import EVALUATION_RECORDINGS, load_files, load_recording, recording_for_files

FORMATS = ("binance-raw", "tardis", "lobster", "hyperliquid")

RECORDINGS = EVALUATION_RECORDINGS


def _f(x: float, nd: int = 3) -> str:
    return "—" if not math.isfinite(x) else f"{x:.{nd}f}"


class Command(BaseCommand):
    help = "Walk-forward evaluation of the strategy and its baselines on the shared recordings."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--data-dir", default=str(Path(settings.BASE_DIR).parent / "shared" / "data"))
        parser.add_argument("--recording", action="append", choices=sorted(RECORDINGS), default=None)
        parser.add_argument("--fit-fraction", type=float, default=EvaluationConfig().fit_fraction)
        parser.add_argument("--params", default="{}", help="our strategy's flat parameters, JSON")
        parser.add_argument("--png-dir", default=str(Path(settings.BASE_DIR) / "var" / "evaluate"))
        parser.add_argument("--no-calibrate", action="store_true", help="run our strategy with its γ₀ as given")
        parser.add_argument(
            "--skew-ratio",
            type=float,
            default=EvaluationConfig().skew_ratio_at_qmax,
            help="the γ₀ calibration's skew at Q_max, in half-spreads (default 1)",
        )
        own = parser.add_argument_group("a recording of one's own (instead of the shared ones)")
        own.add_argument("--files", nargs="+", default=None, help="recorded files, merged by local time")
        own.add_argument("--format", choices=FORMATS, dest="fmt", default=None, help="the files' format")
        own.add_argument("--name", default=None, help="the table's and the PNG's name (default: the first file's)")
        own.add_argument("--tick-size", type=float, default=0.0, help="price tick (default: the instrument's)")
        own.add_argument("--lot-size", type=float, default=0.0, help="size step, base units (default: instrument's)")
        own.add_argument("--order-size", type=float, default=0.01, help="quote size, base units (default 0.01)")
        own.add_argument("--max-inventory", type=float, default=0.2, help="Q_max, base units (default 0.2)")

    def _differences(self, rows: list) -> None:
        """Ours against each other row, net and without inventory P&L, ± 2 Newey–West standard errors."""
        ours = next((r for r in rows if r.strategy == "ours"), None)
        others = [r for r in rows if r is not ours]
        if ours is None or not others or ours.series is None or len(ours.series.pnl_ts) < 2:
            return
        parts = []
        for r in others:
            d = pnl_difference(ours, r)
            net = f"{d.net:+.3f} ± {2 * d.net_se:.3f}"
            parts.append(f"{r.strategy} {net} (without inventory {d.edge:+.3f} ± {2 * d.edge_se:.3f})")
        n = len(ours.series.pnl_ts)
        self.stdout.write(f"ours − each, ± 2 s.e. (Newey–West over {n} P&L samples): " + "; ".join(parts))
        edges = [
            f"{r.strategy} {_f(r.edge_1s_bps, 2)} ± {_f(2 * r.edge_1s_se_bps, 2)}"
            for r in rows
            if math.isfinite(r.edge_1s_bps)
        ]
        if edges:
            self.stdout.write(
                "1 s edge per maker fill, bps before fees (spread capture + 1 s adverse selection; ± 2 s.e., "
                "fills at one time as one cluster): " + "; ".join(edges)
            )

    def _own_recording(self, opts: dict[str, Any]) -> tuple[str, Any, list]:
        """(name, Recording, events) of ``--files``; CommandError for a bad combination, a missing or unreadable file,
        or sizes it cannot tell."""
        if opts["recording"]:
            raise CommandError("--files and --recording are exclusive: --files evaluates the given files only")
        if not opts["fmt"]:
            raise CommandError(f"--files needs --format (one of {', '.join(FORMATS)})")
        paths = [Path(f).resolve() for f in opts["files"]]
        missing = [str(p) for p in paths if not p.is_file()]
        if missing:
            raise CommandError(f"file(s) not found: {', '.join(missing)}")
        try:
            events = load_files(opts["fmt"], paths)
        except (OSError, ValueError, UnicodeDecodeError) as exc:
            raise CommandError(f"cannot read the files as {opts['fmt']}: {exc}") from None
        if not events:
            raise CommandError(f"no market events parsed from {', '.join(map(str, paths))} as {opts['fmt']}")
        try:
            rec = recording_for_files(
                paths,
                opts["fmt"],
                events,
                tick=opts["tick_size"],
                lot=opts["lot_size"],
                order_size=opts["order_size"],
                max_inventory=opts["max_inventory"],
            )
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        name = opts["name"] or paths[0].name.split(".")[0]
        if "/" in name or name in ("", ".", ".."):
            raise CommandError(f"--name must be a plain file name, got {name!r}")
        return name, rec, events

    def handle(self, *args: Any, **opts: Any) -> None:
        try:
            ours = json.loads(opts["params"])
            if not isinstance(ours, dict):
                raise ValueError(f"--params must be a JSON object, got {opts['params']!r}")
            cfg = EvaluationConfig(
                fit_fraction=opts["fit_fraction"],
                calibrate_gamma=not opts["no_calibrate"],
                skew_ratio_at_qmax=opts["skew_ratio"],
            ).validate()
        except (ValueError, json.JSONDecodeError) as exc:
            raise CommandError(str(exc)) from None
        data_dir = Path(opts["data_dir"])
        todo: list[tuple[str, Any, list | None]] = []  # (name, Recording, its events when already read)
        if opts["files"]:
            todo.append(self._own_recording(opts))
        else:
            if opts["fmt"]:
                raise CommandError("--format goes with --files")
            todo += [(name, RECORDINGS[name], None) for name in opts["recording"] or sorted(RECORDINGS)]
        head = (
            f"{'strategy':<13}{'net':>9}{'spread':>9}{'adverse':>9}{'invent':>9}{'fees':>8}{'fund':>6}"
            f"{'fills b/s':>11}{'maker vol b/s':>16}{'mk1s':>7}{'mk5s':>7}{'med hs':>8}{'max|q|':>8}{'both':>6}"
            f"{'room':>6}"
        )
        for name, rec, events in todo:
            if events is None:
                missing = [f for f in rec.files if not (data_dir / f).exists()]
                if missing:
                    self.stdout.write(f"{name}: skipped, missing {missing}")
                    continue
                events = load_recording(data_dir, rec)
            here = dataclasses.replace(cfg, order_size=rec.order_size, max_inventory=rec.max_inventory)
            try:
                split_ns, rows = evaluate_recording(events, rec.tick, rec.lot, here, ours)
            except ValueError as exc:
                raise CommandError(f"{name}: {exc}") from None
            self.stdout.write(
                f"\n{name}: evaluated from {split_ns} ns (fit part {cfg.fit_fraction:.0%} of the span); "
                "P&L in quote ccy, markouts and half-spread in bps, both = share of time quoting both sides, "
                "room = the same over the time with room for a fill on both sides"
            )
            self.stdout.write(
                f"order size {rec.order_size:g}, Q_max {rec.max_inventory:g}" + (f"; {rec.note}" if rec.note else "")
            )
            if rows and rows[0].events_after_book:
                self.stdout.write(
                    f"cut at the last top of book: the {rows[0].events_after_book:,} events after it are left out "
                    "(no mid to value a fill by)"
                )
            for r in rows:
                if r.note:
                    self.stdout.write(f"{r.strategy}: {r.note}")
                if r.params:
                    shown = ", ".join(
                        f"{k}={v:.6g}" if isinstance(v, float) else f"{k}={v}" for k, v in r.params.items()
                    )
                    calibrated = r.strategy == "ours" and cfg.calibrate_gamma and "gamma" not in ours
                    how = " (γ₀ calibrated on the fit part)" if calibrated else ""
                    self.stdout.write(f"{r.strategy}: {shown}{how}")
            self.stdout.write(head)
            for r in rows:
                p = r.pnl
                self.stdout.write(
                    f"{r.strategy:<13}{_f(r.pnl_total):>9}{_f(p['spread_capture']):>9}"
                    f"{_f(p['adverse_selection']):>9}{_f(p['inventory']):>9}{_f(p['fees']):>8}{_f(p['funding'], 2):>6}"
                    f"{f'{r.fills_buy}/{r.fills_sell}':>11}"
                    f"{f'{r.maker_volume_buy:.4g}/{r.maker_volume_sell:.4g}':>16}"
                    f"{_f(r.markout_1s_bps, 2):>7}{_f(r.markout_5s_bps, 2):>7}{_f(r.median_half_spread_bps, 2):>8}"
                    f"{_f(r.max_abs_inventory):>8}{_f(r.both_sides_share, 2):>6}"
                    f"{_f(r.both_sides_share_with_room, 2):>6}"
                )
            self._differences(rows)
            events, _ = cut_to_book(events)
            ts, mids = mid_path(events)
            caption = write_evaluation_png(
                Path(opts["png_dir"]) / f"{name}.png", rows, ts, mids, split_ns, events[-1].ts_local_ns
            )
            self.stdout.write(caption)
