"""Why a film's results will not reach the PACS (issue 27): a `results_error` column on the
films, holding a reason code from app/dicom/failures.py (identity, build, queue_full), so
that the worklist shows a result that cannot be made or sent instead of losing it silently.

Nothing to fill in: films stored before this revision had their results made or lost without
trace, and their reason is unknown. Downgrade drops the column.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("films", sa.Column("results_error", sa.String(64)))


def downgrade() -> None:
    # A plain ALTER TABLE ... DROP COLUMN (SQLite 3.35 and later), as 0003's downgrade.
    op.drop_column("films", "results_error")
