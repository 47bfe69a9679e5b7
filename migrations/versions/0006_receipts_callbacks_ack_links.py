"""notification receipts, provider callback dedup, single-use acknowledge links

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-22 10:58:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

BigInt = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("notification_attempts") as batch:
        batch.add_column(sa.Column("recipient", sa.String(length=200), nullable=True))
        batch.add_column(sa.Column("receipt", sa.String(length=32), nullable=True))
        batch.add_column(sa.Column("receipt_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("receipt_error", sa.Text(), nullable=True))
        batch.create_index(
            batch.f("ix_notification_attempts_provider_message_id"), ["provider_message_id"], unique=False
        )
    op.create_table(
        "provider_callbacks",
        sa.Column("id", BigInt, autoincrement=True, nullable=False),
        sa.Column("provider", sa.String(length=64), nullable=False),
        sa.Column("event_id", sa.String(length=255), nullable=False),
        sa.Column("type", sa.String(length=32), nullable=False),
        sa.Column("incident_number", sa.Integer(), nullable=True),
        sa.Column("outcome", sa.String(length=200), nullable=False),
        sa.Column("body", sa.JSON(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_provider_callbacks")),
        sa.UniqueConstraint("provider", "event_id", name=op.f("uq_provider_callbacks_provider")),
    )
    op.create_index(
        op.f("ix_provider_callbacks_incident_number"), "provider_callbacks", ["incident_number"], unique=False
    )
    op.create_table(
        "ack_link_uses",
        sa.Column("nonce", sa.String(length=64), nullable=False),
        sa.Column("incident_number", sa.Integer(), nullable=False),
        sa.Column("recipient", sa.String(length=320), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("nonce", name=op.f("pk_ack_link_uses")),
    )
    op.create_index(op.f("ix_ack_link_uses_incident_number"), "ack_link_uses", ["incident_number"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_ack_link_uses_incident_number"), table_name="ack_link_uses")
    op.drop_table("ack_link_uses")
    op.drop_index(op.f("ix_provider_callbacks_incident_number"), table_name="provider_callbacks")
    op.drop_table("provider_callbacks")
    with op.batch_alter_table("notification_attempts") as batch:
        batch.drop_index(batch.f("ix_notification_attempts_provider_message_id"))
        batch.drop_column("receipt_error")
        batch.drop_column("receipt_at")
        batch.drop_column("receipt")
        batch.drop_column("recipient")
