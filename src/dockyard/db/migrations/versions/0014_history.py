"""Tag history (every move and deletion of a tag) and the audit index of the exposure query.

Revision ID: 0014
Revises: 0013
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "tag_history",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("project", sa.String(255), nullable=False),
        sa.Column("repository", sa.String(255), nullable=False),
        sa.Column("tag", sa.String(128), nullable=False),
        sa.Column("digest", sa.String(150), nullable=False),
        sa.Column("previous_digest", sa.String(150), nullable=True),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("at", sa.Float, nullable=False),
        sa.Column("actor", sa.String(255), nullable=False),
        sa.Column("actor_kind", sa.String(16), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tag_history")),
    )
    op.create_index("ix_tag_history_tag", "tag_history", ["repository", "tag", "at", "id"])
    op.create_index("ix_tag_history_digest", "tag_history", ["digest", "at"])
    op.create_index("ix_tag_history_previous", "tag_history", ["previous_digest", "at"])
    op.create_index("ix_audit_events_action_digest", "audit_events", ["action", "digest", "ts"])


def downgrade() -> None:
    op.drop_index("ix_audit_events_action_digest", table_name="audit_events")
    op.drop_table("tag_history")
