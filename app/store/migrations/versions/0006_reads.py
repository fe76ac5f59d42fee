"""The reading loop (issue 31): radiologists' reads of studies, and the film as the study view
shows it.

- reads: one per study (the finding, who and when, and the model's answer it judged), for
  live performance (GET /operations/performance), deleted with its study;
- films.display: the film at display size, as the model saw it (a PNG), kept only while
  PNEUMONIA_WORKLIST_THUMBNAILS is on, as the thumbnail is;
- films.window: the window the DICOM display pipeline applied.

Nothing to fill in: no study has been read yet, and the films stored before have no display
copy (the study view then says the film is in the PACS) and no recorded window.

Downgrade drops them: the reads are lost (their audit records stay).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-13
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "reads",
        sa.Column("id", BigId, nullable=False),
        sa.Column("study_id", BigId, nullable=False),
        sa.Column("finding", sa.String(16), nullable=False),
        sa.Column("read_by", sa.String(256), nullable=False),
        sa.Column("read_at", sa.DateTime(), nullable=False),
        sa.Column("model_group", sa.String(16), nullable=False),
        sa.Column("model_name", sa.String(64)),
        sa.Column("model_version", sa.String(16)),
        sa.Column("threshold", sa.Double()),
        sa.ForeignKeyConstraint(["study_id"], ["studies.id"], ondelete="CASCADE",
                                name=op.f("fk_reads_study_id_studies")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reads")),
        sa.UniqueConstraint("study_id", name=op.f("uq_reads_study_id")),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_reads_read_at", "reads", ["read_at"])
    op.add_column("films", sa.Column("display", sa.LargeBinary()))
    op.add_column("films", sa.Column("window", sa.String(64)))


def downgrade() -> None:
    # Plain ALTER TABLE ... DROP COLUMN (SQLite 3.35 and later), as 0003's downgrade.
    op.drop_column("films", "window")
    op.drop_column("films", "display")
    op.drop_table("reads")
