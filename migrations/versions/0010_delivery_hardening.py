"""incidents whose workflow ended outside Vigil; notification attempts that survive a crash

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02 01:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("incidents") as batch:
        batch.add_column(sa.Column("workflow_status", sa.String(16), nullable=True))
        batch.add_column(sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True))
    # Attempts left `sending` by a worker killed before this release: their retries were recorded apart.
    op.execute(
        "UPDATE notification_attempts SET status = 'lost', error = 'no answer from this attempt''s worker' "
        "WHERE status = 'sending' AND EXISTS (SELECT 1 FROM notification_attempts AS later "
        "WHERE later.idempotency_key = notification_attempts.idempotency_key "
        "AND later.id > notification_attempts.id)"
    )


def downgrade() -> None:
    op.execute("UPDATE notification_attempts SET status = 'sending' WHERE status = 'lost'")
    with op.batch_alter_table("incidents") as batch:
        batch.drop_column("ended_at")
        batch.drop_column("workflow_status")
