"""Upload sessions keep the store's upload state (size, multipart id and parts, resumable hash state).

Sessions open before this revision have none: they are answered as unknown (the client starts the
upload again) and the collector removes them with their staged bytes at their idle expiry.

Revision ID: 0013
Revises: 0012
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("upload_sessions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("store_state", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("upload_sessions", schema=None) as batch_op:
        batch_op.drop_column("store_state")
