"""The web UI's read indexes: a repository's tags by push time, a project's repositories.

Revision ID: 0016
Revises: 0015
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_tags_repository_updated", "tags", ["repository_id", "updated_at"])
    op.create_index("ix_repositories_project", "repositories", ["project_id"])


def downgrade() -> None:
    op.drop_index("ix_repositories_project", table_name="repositories")
    op.drop_index("ix_tags_repository_updated", table_name="tags")
