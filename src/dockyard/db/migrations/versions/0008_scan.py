"""the vulnerability database an image's results were evaluated against (size, last update)

Revision ID: 0008
Revises: 0007
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("image_scans", schema=None) as batch_op:
        batch_op.add_column(sa.Column("vulndb_advisories", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("vulndb_updated_at", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("image_scans", schema=None) as batch_op:
        batch_op.drop_column("vulndb_updated_at")
        batch_op.drop_column("vulndb_advisories")
