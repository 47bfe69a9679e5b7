"""heartbeat monitors: one row per monitor (its timer is the workflow vigil-heartbeat-<id>)

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-02 04:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

BigInt = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Time = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "heartbeat_monitors",
        sa.Column("id", BigInt, autoincrement=True, nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("service", sa.String(200), nullable=False),
        sa.Column("severity", sa.String(16), nullable=False),
        sa.Column("interval_seconds", sa.Integer(), nullable=False),
        sa.Column("grace_seconds", sa.Integer(), nullable=False),
        sa.Column("paused", sa.Boolean(), nullable=False),
        sa.Column("token_prefix", sa.String(16), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("created_by", sa.String(200), nullable=False),
        sa.Column("created_at", Time, nullable=False),
        sa.Column("last_check_in_at", Time, nullable=True),
        sa.Column("down_since", Time, nullable=True),
        sa.Column("misses", sa.Integer(), nullable=False),
        sa.Column("incident_number", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_heartbeat_monitors")),
        sa.UniqueConstraint("name", name=op.f("uq_heartbeat_monitors_name")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_heartbeat_monitors_token_hash")),
        # Monitor ids are workflow ids (vigil-heartbeat-<id>): never reused.
        sqlite_autoincrement=True,
    )


def downgrade() -> None:
    op.drop_table("heartbeat_monitors")
