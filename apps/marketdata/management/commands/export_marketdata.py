"""``python manage.py export_marketdata --venue V --symbol S --start ISO --end ISO --out file.parquet [--table T]``."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.marketdata.export import TABLES, export_parquet
from apps.marketdata.models import Instrument
from mmweb.dbready import ensure_migrated


def _when(text: str) -> datetime:
    try:
        dt = datetime.fromisoformat(text)
    except ValueError as exc:
        raise CommandError(f"not an ISO date/time: {text!r}") from exc
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


class Command(BaseCommand):
    help = "Export one table of an instrument's stored market data for a time range to Parquet."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--venue", required=True)
        parser.add_argument("--symbol", required=True)
        parser.add_argument("--start", required=True, help="ISO time, UTC unless an offset is given")
        parser.add_argument("--end", required=True)
        parser.add_argument("--out", required=True)
        parser.add_argument("--table", choices=TABLES, default="trades")

    def handle(self, *args: object, **opts: object) -> None:
        ensure_migrated(self.stdout)
        inst = Instrument.objects.filter(venue=opts["venue"], symbol=opts["symbol"]).first()
        if inst is None:
            raise CommandError(f"no instrument {opts['venue']}:{opts['symbol']}")
        try:
            res = export_parquet(inst.pk, opts["table"], _when(opts["start"]), _when(opts["end"]), Path(opts["out"]))
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(f"wrote {res.rows:,} {res.table} rows of {inst} to {res.path}")
