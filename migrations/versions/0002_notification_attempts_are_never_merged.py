"""notification attempts are never merged

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22 08:37:53.981028
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A page sent twice must show as two rows; the (key, attempt) constraint merged them.
    with op.batch_alter_table('notification_attempts', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('uq_notification_attempts_idempotency_key'), type_='unique')


def downgrade() -> None:
    with op.batch_alter_table('notification_attempts', schema=None) as batch_op:
        batch_op.create_unique_constraint(batch_op.f('uq_notification_attempts_idempotency_key'), ['idempotency_key', 'attempt'])

