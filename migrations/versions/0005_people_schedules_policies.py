"""people, schedules, webhooks and escalation policies

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-22 10:39:01.012861
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('contact_groups',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_contact_groups')),
    sa.UniqueConstraint('name', name=op.f('uq_contact_groups_name'))
    )
    op.create_table('escalation_policies',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('steps', sa.JSON(), nullable=False),
    sa.Column('repeat', sa.Integer(), nullable=False),
    sa.Column('manager', sa.JSON(), nullable=True),
    sa.Column('ack_timeout_seconds', sa.Integer(), nullable=False),
    sa.Column('ivr_attempts', sa.Integer(), nullable=False),
    sa.Column('ivr_retry_seconds', sa.Integer(), nullable=False),
    sa.Column('severity_multipliers', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_escalation_policies')),
    sa.UniqueConstraint('name', name=op.f('uq_escalation_policies_name'))
    )
    op.create_table('schedules',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('timezone', sa.String(length=64), nullable=False),
    sa.Column('handoff_weekday', sa.Integer(), nullable=False),
    sa.Column('handoff_time', sa.String(length=5), nullable=False),
    sa.Column('rotation_start', sa.Date(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_schedules')),
    sa.UniqueConstraint('name', name=op.f('uq_schedules_name'))
    )
    op.create_table('webhooks',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('url', sa.String(length=2000), nullable=False),
    sa.Column('secret', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_webhooks')),
    sa.UniqueConstraint('name', name=op.f('uq_webhooks_name'))
    )
    op.create_table('contact_group_members',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('group_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.ForeignKeyConstraint(['group_id'], ['contact_groups.id'], name=op.f('fk_contact_group_members_group_id_contact_groups'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_contact_group_members_user_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_contact_group_members'))
    )
    with op.batch_alter_table('contact_group_members', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_contact_group_members_group_id'), ['group_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_contact_group_members_user_id'), ['user_id'], unique=False)

    op.create_table('escalation_routes',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('service', sa.String(length=200), nullable=False),
    sa.Column('severities', sa.JSON(), nullable=False),
    sa.Column('policy_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.ForeignKeyConstraint(['policy_id'], ['escalation_policies.id'], name=op.f('fk_escalation_routes_policy_id_escalation_policies')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_escalation_routes'))
    )
    with op.batch_alter_table('escalation_routes', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_escalation_routes_policy_id'), ['policy_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_escalation_routes_position'), ['position'], unique=False)

    op.create_table('schedule_overrides',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('schedule_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('user_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('starts_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('ends_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['schedule_id'], ['schedules.id'], name=op.f('fk_schedule_overrides_schedule_id_schedules'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_schedule_overrides_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_schedule_overrides'))
    )
    with op.batch_alter_table('schedule_overrides', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_schedule_overrides_schedule_id'), ['schedule_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_schedule_overrides_user_id'), ['user_id'], unique=False)

    op.create_table('schedule_participants',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('schedule_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.ForeignKeyConstraint(['schedule_id'], ['schedules.id'], name=op.f('fk_schedule_participants_schedule_id_schedules'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_schedule_participants_user_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_schedule_participants'))
    )
    with op.batch_alter_table('schedule_participants', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_schedule_participants_schedule_id'), ['schedule_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_schedule_participants_user_id'), ['user_id'], unique=False)

    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.add_column(sa.Column('timezone', sa.String(length=64), server_default='UTC', nullable=False))


def downgrade() -> None:
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_column('timezone')

    with op.batch_alter_table('schedule_participants', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_schedule_participants_user_id'))
        batch_op.drop_index(batch_op.f('ix_schedule_participants_schedule_id'))

    op.drop_table('schedule_participants')
    with op.batch_alter_table('schedule_overrides', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_schedule_overrides_user_id'))
        batch_op.drop_index(batch_op.f('ix_schedule_overrides_schedule_id'))

    op.drop_table('schedule_overrides')
    with op.batch_alter_table('escalation_routes', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_escalation_routes_position'))
        batch_op.drop_index(batch_op.f('ix_escalation_routes_policy_id'))

    op.drop_table('escalation_routes')
    with op.batch_alter_table('contact_group_members', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_contact_group_members_user_id'))
        batch_op.drop_index(batch_op.f('ix_contact_group_members_group_id'))

    op.drop_table('contact_group_members')
    op.drop_table('webhooks')
    op.drop_table('schedules')
    op.drop_table('escalation_policies')
    op.drop_table('contact_groups')
