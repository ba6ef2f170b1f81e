"""``python manage.py import_marketdata FILES... --format F --venue V --symbol S [--tick-size --lot-size --kind]``."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.marketdata.importer import ImportOptions
from apps.marketdata.models import Instrument
from apps.marketdata.parsers import FORMATS
from apps.marketdata.services import import_files


class Command(BaseCommand):
    help = "Import recorded market data files (streaming, idempotent) and print a summary."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("files", nargs="+")
        parser.add_argument("--format", dest="fmt", required=True, choices=sorted(FORMATS))
        parser.add_argument("--venue", required=True)
        parser.add_argument("--symbol", required=True)
        parser.add_argument("--kind", choices=Instrument.Kind.values, default=None)
        parser.add_argument("--tick-size", type=float, default=None, help="needed when the instrument is new")
        parser.add_argument("--lot-size", type=float, default=None, help="needed when the instrument is new")
        parser.add_argument("--batch-rows", type=int, default=ImportOptions.batch_rows)
        parser.add_argument("--no-book-check", action="store_true", help="skip the binance-raw book rebuild check")
        parser.add_argument(
            "--no-sidecar",
            action="store_true",
            help="binance-raw: do everything in this process (by default a forked process shares the work)",
        )

    def handle(self, *args: object, **opts: object) -> None:
        try:
            summary = import_files(
                opts["files"],
                fmt=opts["fmt"],
                venue=opts["venue"],
                symbol=opts["symbol"],
                kind=opts["kind"],
                tick_size=opts["tick_size"],
                lot_size=opts["lot_size"],
                options=ImportOptions(
                    batch_rows=opts["batch_rows"], book_check=not opts["no_book_check"], sidecar=not opts["no_sidecar"]
                ),
            )
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(summary.format())
