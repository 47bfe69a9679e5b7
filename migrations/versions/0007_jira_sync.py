"""jira issues and the jira sync log

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-22 11:58:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

BigInt = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "jira_issues",
        sa.Column("incident_number", BigInt, nullable=False),
        sa.Column("jira_key", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["incident_number"], ["incidents.number"], name=op.f("fk_jira_issues_incident_number_incidents")
        ),
        sa.PrimaryKeyConstraint("incident_number", name=op.f("pk_jira_issues")),
        sa.UniqueConstraint("jira_key", name=op.f("uq_jira_issues_jira_key")),
    )
    op.create_table(
        "jira_sync_log",
        sa.Column("id", BigInt, autoincrement=True, nullable=False),
        sa.Column("incident_number", sa.Integer(), nullable=True),
        sa.Column("direction", sa.String(length=8), nullable=False),
        sa.Column("operation", sa.String(length=64), nullable=False),
        sa.Column("jira_key", sa.String(length=64), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("jira_id", sa.String(length=64), nullable=True),
        sa.Column("latency_ms", sa.Integer(), nullable=True),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_jira_sync_log")),
    )
    op.create_index(op.f("ix_jira_sync_log_incident_number"), "jira_sync_log", ["incident_number"], unique=False)
    op.create_index(op.f("ix_jira_sync_log_jira_id"), "jira_sync_log", ["jira_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_jira_sync_log_jira_id"), table_name="jira_sync_log")
    op.drop_index(op.f("ix_jira_sync_log_incident_number"), table_name="jira_sync_log")
    op.drop_table("jira_sync_log")
    op.drop_table("jira_issues")
