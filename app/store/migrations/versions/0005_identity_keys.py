"""Study and instance integrity (issue 27): whose study it is and which pixels a SOP Instance
UID stands for, so that a film of another patient under a study's UID, or other pixels under
a stored instance's UID, is a conflict rather than merged or answered as a retry.

- studies.patient_key: a salted hash of the first film's Patient ID and Issuer (never the
  values; the salt is a per-install secret kept outside the database);
- studies.conflict_of: for an entry of status "conflict", the Study Instance UID its films
  carried;
- films.content_hash: SHA-256 of the film's encoded pixels.

Nothing to fill in: the header of a film stored before this revision is gone, so its study
takes the key of the first film that comes with one, and its films have no hash (a film sent
again is then taken as the same).

Downgrade: an entry of status "conflict" becomes "new" (the older code has no such status),
under its derived Study Instance UID, then the columns are dropped.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_studies = sa.table("studies", sa.column("status", sa.String()))


def upgrade() -> None:
    op.add_column("studies", sa.Column("patient_key", sa.String(64)))
    op.add_column("studies", sa.Column("conflict_of", sa.String(64)))
    op.add_column("films", sa.Column("content_hash", sa.String(64)))


def downgrade() -> None:
    op.execute(_studies.update().where(_studies.c.status == "conflict").values(status="new"))
    # Plain ALTER TABLE ... DROP COLUMN (SQLite 3.35 and later), as 0003's downgrade.
    op.drop_column("films", "content_hash")
    op.drop_column("studies", "conflict_of")
    op.drop_column("studies", "patient_key")
