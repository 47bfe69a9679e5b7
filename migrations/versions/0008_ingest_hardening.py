"""alert dead letters and ingest hardening

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02 01:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("alerts") as batch:
        batch.add_column(sa.Column("delivery_attempts", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("delivery_error", sa.Text(), nullable=True))
        batch.add_column(sa.Column("dead_lettered_at", sa.DateTime(timezone=True), nullable=True))
        batch.create_index(batch.f("ix_alerts_dead_lettered_at"), ["dead_lettered_at"])


def downgrade() -> None:
    with op.batch_alter_table("alerts") as batch:
        batch.drop_index(batch.f("ix_alerts_dead_lettered_at"))
        batch.drop_column("dead_lettered_at")
        batch.drop_column("delivery_error")
        batch.drop_column("delivery_attempts")
