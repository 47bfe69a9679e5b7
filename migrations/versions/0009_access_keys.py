"""api keys with names, expiry and last use; the audit log; jira webhook body hashes; webhook secrets encrypted

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02 01:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

BigInt = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("api_keys") as batch:
        batch.add_column(sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True))
    op.create_table(
        "audit_log",
        sa.Column("id", BigInt, autoincrement=True, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("actor_user_id", sa.BigInteger(), nullable=True),
        sa.Column("actor", sa.String(length=320), nullable=False),
        sa.Column("subject_user_id", sa.BigInteger(), nullable=True),
        sa.Column("key_id", sa.BigInteger(), nullable=True),
        sa.Column("key_prefix", sa.String(length=16), nullable=True),
        sa.Column("client", sa.String(length=64), nullable=True),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_log")),
    )
    op.create_index(op.f("ix_audit_log_at"), "audit_log", ["at"], unique=False)
    op.create_index(op.f("ix_audit_log_subject_user_id"), "audit_log", ["subject_user_id"], unique=False)
    with op.batch_alter_table("jira_sync_log") as batch:
        batch.add_column(sa.Column("body_hash", sa.String(length=64), nullable=True))
        batch.create_index(op.f("ix_jira_sync_log_body_hash"), ["body_hash"], unique=False)
    _encrypt_webhook_secrets()


def _encrypt_webhook_secrets() -> None:
    """Secrets stored before 0009 are plain text; encrypt them with the install's key (vigil.crypto)."""
    from vigil import crypto  # noqa: PLC0415 - reads the settings of the install being migrated

    conn = op.get_bind()
    webhooks = sa.table("webhooks", sa.column("id"), sa.column("secret"))
    for row_id, secret in conn.execute(sa.select(webhooks.c.id, webhooks.c.secret).where(webhooks.c.secret.is_not(None))):
        if not crypto.is_encrypted(secret):
            conn.execute(webhooks.update().where(webhooks.c.id == row_id).values(secret=crypto.encrypt(secret)))


def downgrade() -> None:
    from vigil import crypto  # noqa: PLC0415

    conn = op.get_bind()
    webhooks = sa.table("webhooks", sa.column("id"), sa.column("secret"))
    for row_id, secret in conn.execute(sa.select(webhooks.c.id, webhooks.c.secret).where(webhooks.c.secret.is_not(None))):
        conn.execute(webhooks.update().where(webhooks.c.id == row_id).values(secret=crypto.decrypt(secret)))
    with op.batch_alter_table("jira_sync_log") as batch:
        batch.drop_index(op.f("ix_jira_sync_log_body_hash"))
        batch.drop_column("body_hash")
    op.drop_index(op.f("ix_audit_log_subject_user_id"), table_name="audit_log")
    op.drop_index(op.f("ix_audit_log_at"), table_name="audit_log")
    op.drop_table("audit_log")
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_column("last_used_at")
        batch.drop_column("expires_at")
