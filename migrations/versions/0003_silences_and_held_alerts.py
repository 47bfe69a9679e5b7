"""silences and held alerts

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22 08:52:57.470992
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('silences',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('matchers', sa.JSON(), nullable=False),
    sa.Column('starts_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('ends_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('created_by', sa.String(length=320), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_silences'))
    )
    with op.batch_alter_table('silences', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_silences_ends_at'), ['ends_at'], unique=False)

    op.create_table('held_alerts',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('integration_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('group_key', sa.String(length=512), nullable=False),
    sa.Column('fingerprint', sa.String(length=255), nullable=False),
    sa.Column('disposition', sa.String(length=16), nullable=False),
    sa.Column('silence_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('summary', sa.String(length=1024), nullable=False),
    sa.Column('severity', sa.String(length=16), nullable=False),
    sa.Column('service', sa.String(length=200), nullable=False),
    sa.Column('source', sa.String(length=255), nullable=False),
    sa.Column('labels', sa.JSON(), nullable=False),
    sa.Column('annotations', sa.JSON(), nullable=False),
    sa.Column('starts_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('ends_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('first_seen', sa.DateTime(timezone=True), nullable=False),
    sa.Column('last_seen', sa.DateTime(timezone=True), nullable=False),
    sa.Column('count', sa.Integer(), nullable=False),
    sa.Column('released_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('released_to', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.ForeignKeyConstraint(['integration_id'], ['integrations.id'], name=op.f('fk_held_alerts_integration_id_integrations')),
    sa.ForeignKeyConstraint(['released_to'], ['incidents.number'], name=op.f('fk_held_alerts_released_to_incidents')),
    sa.ForeignKeyConstraint(['silence_id'], ['silences.id'], name=op.f('fk_held_alerts_silence_id_silences')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_held_alerts')),
    sa.UniqueConstraint('integration_id', 'group_key', 'fingerprint', 'disposition', name=op.f('uq_held_alerts_integration_id'))
    )
    with op.batch_alter_table('held_alerts', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_held_alerts_fingerprint'), ['fingerprint'], unique=False)
        batch_op.create_index(batch_op.f('ix_held_alerts_group_key'), ['group_key'], unique=False)

    with op.batch_alter_table('integrations', schema=None) as batch_op:
        batch_op.add_column(sa.Column('hold_resolution_seconds', sa.Integer(), server_default='0', nullable=False))



def downgrade() -> None:
    with op.batch_alter_table('integrations', schema=None) as batch_op:
        batch_op.drop_column('hold_resolution_seconds')

    with op.batch_alter_table('held_alerts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_held_alerts_group_key'))
        batch_op.drop_index(batch_op.f('ix_held_alerts_fingerprint'))

    op.drop_table('held_alerts')
    with op.batch_alter_table('silences', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_silences_ends_at'))

    op.drop_table('silences')
