"""change events: PagerDuty /v2/change/enqueue, shown on the incidents of their service

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-02 04:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

BigInt = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Time = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "change_events",
        sa.Column("id", BigInt, autoincrement=True, nullable=False),
        sa.Column("integration_id", BigInt, nullable=False),
        sa.Column("service", sa.String(200), nullable=False),
        sa.Column("summary", sa.String(1024), nullable=False),
        sa.Column("source", sa.String(255), nullable=True),
        sa.Column("at", Time, nullable=False),
        sa.Column("received_at", Time, nullable=False),
        sa.Column("custom_details", sa.JSON(), nullable=False),
        sa.Column("links", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["integration_id"], ["integrations.id"], name=op.f("fk_change_events_integration_id_integrations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_change_events")),
    )
    op.create_index(op.f("ix_change_events_integration_id"), "change_events", ["integration_id"], unique=False)
    op.create_index("ix_change_events_service_at", "change_events", ["service", "at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_change_events_service_at", table_name="change_events")
    op.drop_index(op.f("ix_change_events_integration_id"), table_name="change_events")
    op.drop_table("change_events")
