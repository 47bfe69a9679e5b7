"""alerts and held alerts keep the links and images their source attached (PagerDuty `links`, `images`)

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-02 05:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for table in ("alerts", "held_alerts"):
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("links", sa.JSON(), nullable=True))


def downgrade() -> None:
    for table in ("alerts", "held_alerts"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("links")
