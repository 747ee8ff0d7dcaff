"""upload sessions: owner, staged size and the append claim

Revision ID: 0006
Revises: 0005
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("upload_sessions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("owner", sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column("size", sa.BigInteger(), server_default="0", nullable=False))
        batch_op.add_column(sa.Column("claim", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("claimed_until", sa.Float(), nullable=True))
        batch_op.create_index("ix_upload_sessions_owner", ["owner"], unique=False)
        batch_op.create_index("ix_upload_sessions_repository", ["repository_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("upload_sessions", schema=None) as batch_op:
        batch_op.drop_index("ix_upload_sessions_repository")
        batch_op.drop_index("ix_upload_sessions_owner")
        batch_op.drop_column("claimed_until")
        batch_op.drop_column("claim")
        batch_op.drop_column("size")
        batch_op.drop_column("owner")
