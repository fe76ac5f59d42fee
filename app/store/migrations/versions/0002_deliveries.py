"""Results waiting to reach the PACS: one row per film whose SR and secondary capture are
not yet delivered (issue 19). Deleted once delivered.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "deliveries",
        sa.Column("id", BigId, nullable=False),
        sa.Column("study_id", BigId, nullable=False),
        sa.Column("sop_instance_uid", sa.String(64), nullable=False),
        sa.Column("payload", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text()),
        sa.ForeignKeyConstraint(["study_id"], ["studies.id"], ondelete="CASCADE",
                                name=op.f("fk_deliveries_study_id_studies")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_deliveries")),
        sa.UniqueConstraint("sop_instance_uid", name=op.f("uq_deliveries_sop_instance_uid")),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_deliveries_next_attempt_at", "deliveries", ["next_attempt_at"])
    op.create_index("ix_deliveries_study_id", "deliveries", ["study_id"])


def downgrade() -> None:
    op.drop_table("deliveries")
