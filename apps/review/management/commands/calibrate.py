"""``manage.py calibrate``: fit the strategy's parameters on a range and validate them on a later one.

Stored data:  ``--venue V --symbol S --fit-start T --fit-end T --validate-start T --validate-end T`` (ISO times)
Recordings:   ``--data FILE [FILE ...] --format F --split 0.7`` (fit on the first 70 % of the time span)

The proposal is stored (``/review/calibration/<id>/``) and printed as a table; nothing is applied.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from apps.control.services import Actor
from apps.review import calibration_services as svc

FORMATS = ("binance-raw", "tardis", "lobster", "hyperliquid")


def _ns(name: str, value: str | None) -> int:
    if not value:
        raise CommandError(f"--{name} is required for a stored range")
    try:
        dt = datetime.fromisoformat(value)
    except ValueError:
        raise CommandError(f"--{name} must be an ISO date-time (e.g. 2024-08-08T12:00:00Z), got {value!r}") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return int(dt.timestamp() * 1_000_000_000)


class Command(BaseCommand):
    help = "Fit parameters on a range of market data, validate on a later held-out range, store the proposal."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--venue")
        parser.add_argument("--symbol")
        for name in ("fit-start", "fit-end", "validate-start", "validate-end"):
            parser.add_argument(f"--{name}")
        parser.add_argument("--data", nargs="+", help="recorded files (merged by local time)")
        parser.add_argument("--format", choices=FORMATS, dest="fmt")
        parser.add_argument("--split", type=float, default=0.7, help="fraction of the recording's time span to fit on")
        parser.add_argument("--tick-size", type=float, default=0.0)
        parser.add_argument("--preset", default="default", help="the preset whose values are the proposal's old ones")
        parser.add_argument("--queue", action="store_true", help="run on a Celery worker instead of here")

    def handle(self, *args, **o) -> None:
        actor = Actor(label="manage.py calibrate")
        try:
            run = self._recording(actor, o) if o["data"] else self._stored(actor, o)
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        if run is None:
            return
        if run.status == run.Status.FAILED:
            raise CommandError(f"calibration #{run.pk} failed: {run.error}")
        self.stdout.write(table(run))

    def _stored(self, actor: Actor, o: dict):
        from apps.marketdata.models import Instrument

        if not (o["venue"] and o["symbol"]):
            raise CommandError("give --venue and --symbol (a stored range) or --data FILES --format F (recordings)")
        inst = Instrument.objects.filter(venue=o["venue"], symbol=o["symbol"]).first()
        if inst is None:
            raise CommandError(f"--venue/--symbol: no stored instrument {o['venue']}:{o['symbol']}")
        fit = (_ns("fit-start", o["fit_start"]), _ns("fit-end", o["fit_end"]))
        val = (_ns("validate-start", o["validate_start"]), _ns("validate-end", o["validate_end"]))
        run = svc.create_run(actor, fit=fit, validate=val, instrument_id=inst.pk, preset=o["preset"])
        if o["queue"]:
            from apps.review.tasks import run_calibration

            run_calibration.delay(run.pk)
            self.stdout.write(f"calibration #{run.pk} queued: /review/calibration/{run.pk}/")
            return None
        return svc.execute(run.pk)

    def _recording(self, actor: Actor, o: dict):
        if not o["fmt"]:
            raise CommandError("--format is required with --data")
        paths = [Path(p) for p in o["data"]]
        missing = [str(p) for p in paths if not p.is_file()]
        if missing:
            raise CommandError(f"--data: file(s) not found: {', '.join(missing)}")
        try:
            events, fit, val = svc.recording_split(svc.parse_recordings(paths, o["fmt"]), o["split"])
        except (OSError, UnicodeDecodeError) as exc:
            raise CommandError(f"--data: cannot read {o['fmt']} data: {exc}") from exc
        source = f"{o['fmt']}: " + ", ".join(p.name for p in paths)
        run = svc.create_run(actor, fit=fit, validate=val, source=source[:500], preset=o["preset"])
        if o["tick_size"] < 0:
            raise CommandError(f"--tick-size must be >= 0, got {o['tick_size']}")
        return svc.execute(run.pk, events, tick_size=o["tick_size"])


def _f(v) -> str:
    if v is None:
        return "—"
    return f"{v:.6g}" if isinstance(v, float) else str(v)


def table(run) -> str:
    lines = [
        f"calibration #{run.pk} ({run.status}): fit {run.fit_start:%Y-%m-%d %H:%M:%S} → {run.fit_end:%H:%M:%S}, "
        f"validate {run.validate_start:%Y-%m-%d %H:%M:%S} → {run.validate_end:%H:%M:%S}",
        f"{'parameter':46} {'old':>11} {'new':>11} {'95% interval':>26}  status",
    ]
    for e in run.estimates:
        ci = f"[{_f(e['ci_low'])}, {_f(e['ci_high'])}]"
        status = ("apply" if e["proposed"] else "kept") if e["settable"] else ("review" if e["proposed"] else "kept")
        lines.append(f"{e['param']:46} {_f(e['old']):>11} {_f(e['new']):>11} {ci:>26}  {status} {e['note']}")
    lines.append(f"{'score':20} {'metric':52} {'in fit':>11} {'in old':>11} {'out fit':>11} {'out old':>11}")
    for s in run.scores:
        lines.append(
            f"{s['name']:20} {s['metric'][:52]:52} {_f(s['in_fitted']):>11} {_f(s['in_old']):>11} "
            f"{_f(s['out_fitted']):>11} {_f(s['out_old']):>11}"
        )
    lines.append(f"proposed changes: {run.changes() or 'none'}  (apply on /review/calibration/{run.pk}/)")
    return "\n".join(lines)
