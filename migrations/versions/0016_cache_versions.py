"""cache_versions: a token per cached table, changed by triggers on every write to it, so API processes keep
integrations (keys and rules) and silences in memory and see any change at once (issue 11)

Every INSERT, UPDATE or DELETE (TRUNCATE on PostgreSQL) of `integrations` or `silences` sets a new random token
in the same transaction, whoever writes: the API, vigil.bootstrap, a migration, an operator's SQL. A reader reads
the token first, then the table, and keeps what it read until the token changes.

SQLite: a later migration that rebuilds either table with batch_alter_table drops its triggers; it must create
them again (create_triggers below). tests/test_ingest_cache.py fails if a change does not reach the caches.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-02 07:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

CACHED_TABLES = ("integrations", "silences")


def create_triggers(table: str) -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            f"CREATE TRIGGER {table}_cache_version AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON {table} "
            f"FOR EACH STATEMENT EXECUTE FUNCTION vigil_cache_changed('{table}')"
        )
        return
    for event in ("INSERT", "UPDATE", "DELETE"):
        op.execute(
            f"CREATE TRIGGER {table}_cache_version_{event.lower()} AFTER {event} ON {table} BEGIN "
            f"INSERT INTO cache_versions (name, token) VALUES ('{table}', lower(hex(randomblob(16)))) "
            "ON CONFLICT (name) DO UPDATE SET token = excluded.token; END"
        )


def drop_triggers(table: str) -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"DROP TRIGGER IF EXISTS {table}_cache_version ON {table}")
        return
    for event in ("insert", "update", "delete"):
        op.execute(f"DROP TRIGGER IF EXISTS {table}_cache_version_{event}")


def upgrade() -> None:
    op.create_table(
        "cache_versions",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("token", sa.String(64), nullable=False),
    )
    op.execute(
        "INSERT INTO cache_versions (name, token) VALUES "
        + ", ".join(f"('{table}', 'initial')" for table in CACHED_TABLES)
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "CREATE OR REPLACE FUNCTION vigil_cache_changed() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            "INSERT INTO cache_versions (name, token) VALUES (TG_ARGV[0], md5(random()::text || clock_timestamp()::text)) "
            "ON CONFLICT (name) DO UPDATE SET token = excluded.token; RETURN NULL; END $$"
        )
    for table in CACHED_TABLES:
        create_triggers(table)


def downgrade() -> None:
    for table in CACHED_TABLES:
        drop_triggers(table)
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS vigil_cache_changed()")
    op.drop_table("cache_versions")
