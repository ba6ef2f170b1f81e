"""Fills become time-keyed so that they can be a TimescaleDB hypertable with per-session P&L and inventory
continuous aggregates (apps.marketdata.timescale); on plain PostgreSQL they get a BRIN time index and the
(session, ts) index serves the same per-session sums from the raw rows. Not atomic: continuous aggregates cannot
be created inside a transaction block; every storage statement is idempotent."""

from django.db import migrations, models

from apps.marketdata.timescale import migrate_storage


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("trading", "0002_backtest"),
        ("marketdata", "0004_writer_progress"),
    ]

    operations = [
        migrations.RemoveConstraint(
            model_name="fillrecord",
            name="fill_session_fillid_uniq",
        ),
        migrations.AddIndex(
            model_name="fillrecord",
            index=models.Index(fields=["session", "ts"], name="fill_session_ts"),
        ),
        migrations.AddConstraint(
            model_name="fillrecord",
            constraint=models.UniqueConstraint(fields=("session", "fill_id", "ts"), name="fill_session_fillid_ts_uniq"),
        ),
        migrations.RunPython(migrate_storage, migrations.RunPython.noop, elidable=False),
    ]
