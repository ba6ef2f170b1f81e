"""Storage mode: TimescaleDB hypertables, compression and continuous aggregates when the server has the extension;
BRIN time indexes on plain PostgreSQL (see apps.marketdata.timescale). Not atomic: continuous aggregates cannot be
created inside a transaction block. Every statement is idempotent, so a half-applied run can simply be re-run."""

from django.db import migrations

from apps.marketdata.timescale import migrate_storage


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("marketdata", "0002_store"),
    ]

    operations = [
        migrations.RunPython(migrate_storage, migrations.RunPython.noop, elidable=False),
    ]
