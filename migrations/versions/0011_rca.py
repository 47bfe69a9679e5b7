"""the RCA stage: postmortems and their sections, evidence series and queries, attachments; alerts keep their URL

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02 04:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

BigInt = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Time = sa.DateTime(timezone=True)


def upgrade() -> None:
    # Alertmanager's generatorURL carries the rule's PromQL (g0.expr), the alert's own metric evidence.
    for table in ("alerts", "held_alerts"):
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("url", sa.String(2048), nullable=True))
    op.create_table(
        "postmortems",
        sa.Column("incident_number", BigInt, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", Time, nullable=False),
        sa.Column("updated_at", Time, nullable=False),
        sa.Column("completed_by", sa.String(200), nullable=True),
        sa.Column("completed_at", Time, nullable=True),
        sa.Column("waived_by", sa.String(200), nullable=True),
        sa.Column("waived_at", Time, nullable=True),
        sa.Column("waived_reason", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["incident_number"], ["incidents.number"], name=op.f("fk_postmortems_incident_number_incidents")
        ),
        sa.PrimaryKeyConstraint("incident_number", name=op.f("pk_postmortems")),
    )
    op.create_table(
        "postmortem_sections",
        sa.Column("id", BigInt, autoincrement=True, nullable=False),
        sa.Column("incident_number", BigInt, nullable=False),
        sa.Column("key", sa.String(64), nullable=False),
        sa.Column("title", sa.String(200), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("edited", sa.Boolean(), nullable=False),
        sa.Column("updated_by", sa.String(200), nullable=False),
        sa.Column("updated_at", Time, nullable=False),
        sa.ForeignKeyConstraint(
            ["incident_number"], ["postmortems.incident_number"],
            name=op.f("fk_postmortem_sections_incident_number_postmortems"), ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_postmortem_sections")),
        sa.UniqueConstraint("incident_number", "key", name=op.f("uq_postmortem_sections_incident_number")),
    )
    op.create_index(
        op.f("ix_postmortem_sections_incident_number"), "postmortem_sections", ["incident_number"], unique=False
    )
    op.create_table(
        "evidence_series",
        sa.Column("id", BigInt, autoincrement=True, nullable=False),
        sa.Column("incident_number", BigInt, nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("promql", sa.Text(), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("step_seconds", sa.Integer(), nullable=False),
        sa.Column("points", sa.JSON(), nullable=False),
        sa.Column("threshold", sa.Float(), nullable=True),
        sa.Column("chart_key", sa.String(300), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("gathered_at", Time, nullable=False),
        sa.ForeignKeyConstraint(
            ["incident_number"], ["incidents.number"], name=op.f("fk_evidence_series_incident_number_incidents")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_evidence_series")),
        sa.UniqueConstraint("incident_number", "name", name=op.f("uq_evidence_series_incident_number")),
    )
    op.create_index(op.f("ix_evidence_series_incident_number"), "evidence_series", ["incident_number"], unique=False)
    op.create_table(
        "postmortem_attachments",
        sa.Column("id", BigInt, autoincrement=True, nullable=False),
        sa.Column("incident_number", BigInt, nullable=False),
        sa.Column("filename", sa.String(255), nullable=False),
        sa.Column("content_type", sa.String(100), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("artifact_key", sa.String(300), nullable=False),
        sa.Column("uploaded_by", sa.String(200), nullable=False),
        sa.Column("uploaded_at", Time, nullable=False),
        sa.ForeignKeyConstraint(
            ["incident_number"], ["incidents.number"],
            name=op.f("fk_postmortem_attachments_incident_number_incidents"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_postmortem_attachments")),
        sa.UniqueConstraint("artifact_key", name=op.f("uq_postmortem_attachments_artifact_key")),
    )
    op.create_index(
        op.f("ix_postmortem_attachments_incident_number"), "postmortem_attachments", ["incident_number"], unique=False
    )
    op.create_table(
        "evidence_queries",
        sa.Column("id", BigInt, autoincrement=True, nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("promql", sa.Text(), nullable=False),
        sa.Column("service", sa.String(200), nullable=True),
        sa.Column("integration_id", BigInt, nullable=True),
        sa.Column("threshold", sa.Float(), nullable=True),
        sa.Column("created_at", Time, nullable=False),
        # A query belongs to a service or to an integration, never both or neither.
        sa.CheckConstraint(
            "(service IS NULL) <> (integration_id IS NULL)", name=op.f("ck_evidence_queries_one_scope")
        ),
        sa.ForeignKeyConstraint(
            ["integration_id"], ["integrations.id"], name=op.f("fk_evidence_queries_integration_id_integrations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_evidence_queries")),
    )
    op.create_index(op.f("ix_evidence_queries_service"), "evidence_queries", ["service"], unique=False)
    op.create_index(op.f("ix_evidence_queries_integration_id"), "evidence_queries", ["integration_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_evidence_queries_integration_id"), table_name="evidence_queries")
    op.drop_index(op.f("ix_evidence_queries_service"), table_name="evidence_queries")
    op.drop_table("evidence_queries")
    op.drop_index(op.f("ix_postmortem_attachments_incident_number"), table_name="postmortem_attachments")
    op.drop_table("postmortem_attachments")
    op.drop_index(op.f("ix_evidence_series_incident_number"), table_name="evidence_series")
    op.drop_table("evidence_series")
    op.drop_index(op.f("ix_postmortem_sections_incident_number"), table_name="postmortem_sections")
    op.drop_table("postmortem_sections")
    op.drop_table("postmortems")
    for table in ("held_alerts", "alerts"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("url")
