from __future__ import annotations

import pytest
from django.core.management import call_command
from django.db import connection
from django.db.migrations.executor import MigrationExecutor


@pytest.mark.django_db
def test_every_migration_is_applied_on_postgresql():
    executor = MigrationExecutor(connection)
    assert executor.migration_plan(executor.loader.graph.leaf_nodes()) == []
    tables = set(connection.introspection.table_names())
    for t in (
        "marketdata_tradetick",
        "marketdata_quotetick",
        "trading_tradingsession",
        "trading_order",
        "trading_fillrecord",
        "trading_quotedecisionrecord",
        "control_auditevent",
    ):
        assert t in tables


@pytest.mark.django_db
def test_models_and_migrations_agree():
    call_command("makemigrations", "--check", "--dry-run", verbosity=0)
