"""``python manage.py record --venue binance-usdm --symbols BTCUSDT,ETHUSDT [--seconds N]``: live market data into
the market-data store (apps/venues/binance/recorder.py; docs/venues-binance.md). Ctrl-C stops it cleanly."""

from __future__ import annotations

import signal
import threading

from django.core.management.base import BaseCommand, CommandError, CommandParser

from mmweb.dbready import ensure_migrated


class Command(BaseCommand):
    help = "Record live market data (trades, top of book, L2 diffs and snapshots) through the batched writer."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--venue", required=True, choices=["binance-usdm", "binance-spot"])
        parser.add_argument("--symbols", required=True, help="comma-separated, e.g. BTCUSDT,ETHUSDT")
        parser.add_argument("--seconds", type=float, default=None, help="stop after this long (default: Ctrl-C)")
        parser.add_argument("--depth-speed", default="100ms", help="diff stream speed: 100ms (default), 0ms, 250ms")
        parser.add_argument(
            "--max-buffer-rows",
            type=int,
            default=200_000,
            help="rows kept in memory while the database is away before the oldest spill to disk (default 200000)",
        )

    def handle(self, *args: object, **opts: object) -> None:
        from apps.venues.binance.recorder import record

        symbols = [s for s in str(opts["symbols"]).split(",") if s.strip()]
        if not symbols:
            raise CommandError("--symbols: give at least one symbol, e.g. BTCUSDT")
        seconds = opts["seconds"]
        if seconds is not None and not seconds > 0:
            raise CommandError(f"--seconds must be > 0, got {seconds}")
        max_buffer_rows = opts["max_buffer_rows"]
        if not isinstance(max_buffer_rows, int) or max_buffer_rows < 1:
            raise CommandError(f"--max-buffer-rows must be an integer >= 1, got {max_buffer_rows!r}")
        ensure_migrated()
        stop = threading.Event()
        previous = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                previous[sig] = signal.signal(sig, lambda *_: stop.set())
        try:
            counts = record(
                str(opts["venue"]),
                symbols,
                seconds,
                progress=lambda line: self.stdout.write(line),
                should_stop=stop.is_set,
                depth_speed=str(opts["depth_speed"]),
                max_buffer_rows=max_buffer_rows,
            )
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        self.stdout.write(
            f"recorded trades={counts.trades} quotes={counts.quotes} depth_updates={counts.depth_updates} "
            f"depth_snapshots={counts.depth_snapshots} funding={counts.funding}"
        )
