"""A management command on a fresh checkout: the database's tables exist before the command uses them.

On the embedded PostgreSQL (``DATABASE_URL`` unset) the project owns the database, so an unmigrated one is
migrated first, with one line saying so. On a database someone else runs (``DATABASE_URL`` set) nothing is
changed behind their back: the command stops and says exactly what to run.
"""

from __future__ import annotations

from typing import TextIO

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connections
from django.db.migrations.executor import MigrationExecutor


def pending_migrations(database: str = "default") -> list[str]:
    """``app.migration`` names not yet applied to ``database``, in the order ``migrate`` would apply them."""
    executor = MigrationExecutor(connections[database])
    plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
    return [f"{m.app_label}.{m.name}" for m, _backwards in plan]


def ensure_migrated(stdout: TextIO | None = None, database: str = "default") -> None:
    """Migrate the embedded database when it has unapplied migrations; on any other database raise a
    :class:`CommandError` naming the command to run."""
    pending = pending_migrations(database)
    if not pending:
        return
    if getattr(settings, "EMBEDDED_POSTGRES", False):
        if stdout is not None:
            stdout.write(f"the embedded database has {len(pending)} unapplied migration(s): migrating it first\n")
        call_command("migrate", database=database, interactive=False, verbosity=0)
        return
    shown = ", ".join(pending[:5]) + (f" and {len(pending) - 5} more" if len(pending) > 5 else "")
    raise CommandError(
        f"the database (DATABASE_URL) has {len(pending)} unapplied migration(s) ({shown}); "
        "run `python manage.py migrate` first"
    )
