"""Storage mode: TimescaleDB hypertables, compression and continuous aggregates when the server has the extension;
BRIN time indexes on plain PostgreSQL (see apps.marketdata.timescale). Not atomic: continuous aggregates cannot be
created inside a transaction block. Every statement is idempotent, so a half-applied run can simply be re-run."""

from django.db import migrations


def forward(apps, schema_editor):
    from apps.marketdata.timescale import apply_storage

    with schema_editor.connection.cursor() as cursor:
        apply_storage(cursor)


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("marketdata", "0002_store"),
    ]

    operations = [
        migrations.RunPython(forward, migrations.RunPython.noop, elidable=False),
    ]
