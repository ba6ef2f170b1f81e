"""``python manage.py import_marketdata FILES... --format F [--venue V --symbol S] [--tick-size --lot-size --kind]``.

The instrument is ``--venue``/``--symbol``, or what the files' own records say (:mod:`apps.marketdata.identify`).
A known instrument (:mod:`apps.marketdata.instruments`) brings its tick size, lot size and kind; any other new
instrument needs ``--tick-size`` and ``--lot-size``.
"""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.marketdata import instruments
from apps.marketdata.identify import identify
from apps.marketdata.importer import ImportOptions
from apps.marketdata.models import Instrument
from apps.marketdata.parsers import FORMATS
from apps.marketdata.services import import_files
from mmweb.dbready import ensure_migrated


class Command(BaseCommand):
    help = (
        "Import recorded market data files (streaming, idempotent) and print a summary. Known instruments "
        f"({', '.join(instruments.known_keys())}) need no --tick-size/--lot-size."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("files", nargs="+")
        parser.add_argument("--format", dest="fmt", required=True, choices=sorted(FORMATS))
        parser.add_argument("--venue", help="default: what the files' records say (e.g. binance-usdm)")
        parser.add_argument("--symbol", help="default: what the files' records say (e.g. BTCUSDT)")
        parser.add_argument("--kind", choices=Instrument.Kind.values, default=None)
        parser.add_argument(
            "--tick-size", type=float, default=None, help="needed when the instrument is new and not a known one"
        )
        parser.add_argument(
            "--lot-size", type=float, default=None, help="needed when the instrument is new and not a known one"
        )
        parser.add_argument("--batch-rows", type=int, default=ImportOptions.batch_rows)
        parser.add_argument("--no-book-check", action="store_true", help="skip the binance-raw book rebuild check")
        parser.add_argument(
            "--no-sidecar",
            action="store_true",
            help="binance-raw: do everything in this process (by default a forked process shares the work)",
        )

    def _instrument(self, opts: dict) -> tuple[str, str]:
        venue, symbol = opts["venue"], opts["symbol"]
        if venue and symbol:
            return venue, symbol
        try:
            found = identify(opts["files"], opts["fmt"])
        except (OSError, ValueError) as exc:
            raise CommandError(f"cannot tell the instrument from the files ({exc}); give --venue and --symbol") from exc
        if found is None:
            missing = " and ".join(f"--{k}" for k in ("venue", "symbol") if not opts[k])
            raise CommandError(f"the files' records do not name their instrument: give {missing}")
        return venue or found.venue, symbol or found.symbol

    def handle(self, *args: object, **opts: object) -> None:
        ensure_migrated(self.stdout)
        venue, symbol = self._instrument(opts)
        known = instruments.lookup(venue, symbol)
        tick, lot, kind = opts["tick_size"], opts["lot_size"], opts["kind"]
        if known is not None and not Instrument.objects.filter(venue=venue, symbol=known.symbol).exists():
            # a new known instrument: the registry's grid and kind (a stored one keeps its own row)
            symbol = known.symbol
            tick = known.tick_size if tick is None else tick
            lot = known.lot_size if lot is None else lot
            kind = known.kind if kind is None else kind
        try:
            summary = import_files(
                opts["files"],
                fmt=opts["fmt"],
                venue=venue,
                symbol=symbol,
                kind=kind,
                tick_size=tick,
                lot_size=lot,
                options=ImportOptions(
                    batch_rows=opts["batch_rows"], book_check=not opts["no_book_check"], sidecar=not opts["no_sidecar"]
                ),
            )
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(summary.format())
