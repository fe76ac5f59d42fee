"""The worklist: studies, their films, the audit log.

Revision ID: 0001
Revises:
Create Date: 2026-11-29

Written out here rather than imported from app.store.models, so that this revision keeps
creating what it created when the models move on. Times are naive UTC (models.UTCDateTime).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "studies",
        sa.Column("id", BigId, nullable=False),
        sa.Column("study_instance_uid", sa.String(64), nullable=False),
        sa.Column("accession_number", sa.String(16)),
        sa.Column("patient_age", sa.String(16)),
        sa.Column("patient_sex", sa.String(16)),
        sa.Column("study_date", sa.Date()),
        sa.Column("study_time", sa.Time()),
        sa.Column("source", sa.String(64), nullable=False),
        sa.Column("received_at", sa.DateTime(), nullable=False),
        sa.Column("last_received_at", sa.DateTime(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("status_by", sa.String(256)),
        sa.Column("status_at", sa.DateTime()),
        sa.Column("priority", sa.Double()),
        sa.Column("flagged", sa.Boolean(), nullable=False),
        sa.Column("film_count", sa.Integer(), nullable=False),
        sa.Column("sort_group", sa.Integer(), nullable=False),
        sa.Column("sort_rank", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_studies")),
        sa.UniqueConstraint("study_instance_uid", name=op.f("uq_studies_study_instance_uid")),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_studies_received_at", "studies", ["received_at"])
    op.create_index("ix_studies_last_received_at", "studies", ["last_received_at"])
    op.create_index("ix_studies_worklist_order", "studies",
                    ["sort_group", "sort_rank", "received_at", "id"])
    op.create_index("ix_studies_status_worklist_order", "studies",
                    ["status", "sort_group", "sort_rank", "received_at", "id"])

    op.create_table(
        "films",
        sa.Column("id", BigId, nullable=False),
        sa.Column("study_id", BigId, nullable=False),
        sa.Column("sop_instance_uid", sa.String(64), nullable=False),
        sa.Column("series_instance_uid", sa.String(64)),
        sa.Column("modality", sa.String(16)),
        sa.Column("view_position", sa.String(16)),
        sa.Column("body_part", sa.String(16)),
        sa.Column("source", sa.String(64), nullable=False),
        sa.Column("received_at", sa.DateTime(), nullable=False),
        sa.Column("scored_at", sa.DateTime()),
        sa.Column("model_name", sa.String(64)),
        sa.Column("model_version", sa.String(16)),
        sa.Column("probability", sa.Double()),
        sa.Column("threshold", sa.Double()),
        sa.Column("flagged", sa.Boolean()),
        sa.Column("assessable", sa.Boolean(), nullable=False),
        sa.Column("reasons", sa.JSON(), nullable=False),
        sa.Column("warnings", sa.JSON(), nullable=False),
        sa.Column("error_code", sa.String(64)),
        sa.Column("error_detail", sa.Text()),
        sa.Column("thumbnail", sa.LargeBinary()),
        sa.ForeignKeyConstraint(["study_id"], ["studies.id"], ondelete="CASCADE",
                                name=op.f("fk_films_study_id_studies")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_films")),
        sa.UniqueConstraint("sop_instance_uid", name=op.f("uq_films_sop_instance_uid")),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_films_study_id", "films", ["study_id"])

    op.create_table(
        "audit_log",
        sa.Column("id", BigId, nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.Column("actor", sa.String(256), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("entry_id", BigId),
        sa.Column("study_instance_uid", sa.String(64)),
        sa.Column("detail", sa.JSON()),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_log")),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_audit_log_at", "audit_log", ["at"])
    op.create_index("ix_audit_log_entry_id", "audit_log", ["entry_id"])


def downgrade() -> None:
    op.drop_table("audit_log")
    op.drop_table("films")
    op.drop_table("studies")
