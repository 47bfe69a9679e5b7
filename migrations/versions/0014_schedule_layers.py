"""schedule layers: each schedule's weekly rotation becomes its one layer; calendar feeds

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-02 04:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

BigInt = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Time = sa.DateTime(timezone=True)
ROTATION = ("handoff_weekday", "handoff_time", "rotation_start")


def upgrade() -> None:
    op.create_table(
        "schedule_layers",
        sa.Column("id", BigInt, autoincrement=True, nullable=False),
        sa.Column("schedule_id", BigInt, nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("every", sa.Integer(), nullable=False),
        sa.Column("handoff_weekday", sa.Integer(), nullable=False),
        sa.Column("handoff_time", sa.String(5), nullable=False),
        sa.Column("rotation_start", sa.Date(), nullable=False),
        sa.Column("restrict_weekdays", sa.JSON(), nullable=True),
        sa.Column("restrict_start", sa.String(5), nullable=True),
        sa.Column("restrict_end", sa.String(5), nullable=True),
        sa.ForeignKeyConstraint(["schedule_id"], ["schedules.id"], name=op.f("fk_schedule_layers_schedule_id_schedules"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_schedule_layers")),
    )
    op.create_index(op.f("ix_schedule_layers_schedule_id"), "schedule_layers", ["schedule_id"])
    # Each schedule's rotation becomes its base layer (position 0), with the same participants.
    op.execute(
        "INSERT INTO schedule_layers (schedule_id, position, name, kind, every, handoff_weekday, handoff_time,"
        " rotation_start) SELECT id, 0, '', 'weekly', 1, handoff_weekday, handoff_time, rotation_start FROM schedules"
    )
    with op.batch_alter_table("schedule_participants") as batch:
        batch.add_column(sa.Column("layer_id", BigInt, nullable=True))
    op.execute(
        "UPDATE schedule_participants SET layer_id = (SELECT l.id FROM schedule_layers l"
        " WHERE l.schedule_id = schedule_participants.schedule_id AND l.position = 0)"
    )
    with op.batch_alter_table("schedule_participants") as batch:
        batch.alter_column("layer_id", existing_type=BigInt, nullable=False)
        batch.create_foreign_key(op.f("fk_schedule_participants_layer_id_schedule_layers"), "schedule_layers",
                                 ["layer_id"], ["id"], ondelete="CASCADE")
        batch.create_index(op.f("ix_schedule_participants_layer_id"), ["layer_id"])
    # Not batch mode: on SQLite that recreates the table, and dropping the old one (foreign keys on) would cascade
    # to its layers, participants and overrides. SQLite has dropped columns in place since 3.35.
    for column in ROTATION:
        op.execute(f"ALTER TABLE schedules DROP COLUMN {column}")

    op.create_table(
        "calendar_feeds",
        sa.Column("id", BigInt, autoincrement=True, nullable=False),
        sa.Column("schedule_id", BigInt, nullable=True),
        sa.Column("user_id", BigInt, nullable=True),
        sa.Column("owner_id", BigInt, nullable=True),
        sa.Column("prefix", sa.String(16), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("created_at", Time, nullable=False),
        sa.Column("revoked_at", Time, nullable=True),
        sa.CheckConstraint("(schedule_id IS NULL) <> (user_id IS NULL)", name=op.f("ck_calendar_feeds_one_subject")),
        sa.ForeignKeyConstraint(["schedule_id"], ["schedules.id"], name=op.f("fk_calendar_feeds_schedule_id_schedules"),
                                ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_calendar_feeds_user_id_users"),
                                ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["owner_id"], ["users.id"], name=op.f("fk_calendar_feeds_owner_id_users"),
                                ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_calendar_feeds")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_calendar_feeds_token_hash")),
        sqlite_autoincrement=True,
    )
    for column in ("schedule_id", "user_id", "owner_id"):
        op.create_index(op.f(f"ix_calendar_feeds_{column}"), "calendar_feeds", [column])


def downgrade() -> None:
    """Back to one weekly rotation per schedule: its base layer's (other layers and their turns are lost)."""
    op.drop_table("calendar_feeds")
    kinds = (sa.Integer(), sa.String(5), sa.Date())
    for column, kind in zip(ROTATION, kinds, strict=True):
        op.add_column("schedules", sa.Column(column, kind, nullable=True))
    for column in ROTATION:
        op.execute(
            f"UPDATE schedules SET {column} = (SELECT l.{column} FROM schedule_layers l"  # noqa: S608 - fixed names
            f" WHERE l.schedule_id = schedules.id ORDER BY l.position LIMIT 1)"
        )
    # SQLite keeps them nullable: NOT NULL there means recreating the table, which would cascade (above).
    if op.get_bind().dialect.name != "sqlite":
        for column, kind in zip(ROTATION, kinds, strict=True):
            op.alter_column("schedules", column, existing_type=kind, nullable=False)
    op.execute(
        "DELETE FROM schedule_participants WHERE layer_id NOT IN (SELECT l.id FROM schedule_layers l"
        " WHERE l.position = (SELECT MIN(m.position) FROM schedule_layers m WHERE m.schedule_id = l.schedule_id))"
    )
    with op.batch_alter_table("schedule_participants") as batch:
        batch.drop_index(op.f("ix_schedule_participants_layer_id"))
        batch.drop_constraint(op.f("fk_schedule_participants_layer_id_schedule_layers"), type_="foreignkey")
        batch.drop_column("layer_id")
    op.drop_index(op.f("ix_schedule_layers_schedule_id"), table_name="schedule_layers")
    op.drop_table("schedule_layers")
