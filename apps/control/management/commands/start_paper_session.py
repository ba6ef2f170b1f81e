from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandError

from apps.control import presets
from apps.control.services import Actor, create_paper_session
from mmweb.dbready import ensure_migrated


class Command(BaseCommand):
    help = "Create a paper-trading session on the built-in market simulator and queue its quoting loop."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--name", default="paper-sim")
        parser.add_argument("--seed", type=int, default=1)
        parser.add_argument(
            "--preset",
            default="default",
            choices=presets.names(),
            help="named parameter preset (apps/control/presets.py); --params is merged over it, section by section",
        )
        parser.add_argument("--params", default="{}", help='JSON, e.g. {"strategy": {"gamma": 500}}')
        parser.add_argument("--no-start", action="store_true", help="create only, do not queue the loop")

    def handle(self, *args, **opts) -> None:
        ensure_migrated(self.stderr)  # stdout is the session id (make run reads it)
        try:
            params = json.loads(opts["params"])
        except json.JSONDecodeError as exc:
            raise CommandError(f"--params is not valid JSON: {exc}") from exc
        if not isinstance(params, dict):
            raise CommandError("--params must be a JSON object")
        base = presets.preset_params(opts["preset"])
        for section, values in params.items():
            merged = base.get(section)
            base[section] = {**merged, **values} if isinstance(merged, dict) and isinstance(values, dict) else values
        params = base
        try:
            session = create_paper_session(
                Actor(label="manage.py start_paper_session"),
                name=opts["name"],
                params=params,
                seed=opts["seed"],
                start=not opts["no_start"],
            )
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(str(session.pk))
