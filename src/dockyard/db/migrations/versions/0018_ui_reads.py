"""The web UI's reads at scale: a repository's last push kept on its row (the repositories and
projects pages sort and show it without reading every tag), a manifest's tags by name and by push
time (an image under 100,000 tags), and name search by trigrams on PostgreSQL.

Revision ID: 0018
Revises: 0017
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("repositories") as batch_op:
        batch_op.add_column(sa.Column("pushed_at", sa.Float(), server_default="0", nullable=False))
    # What the pages showed before: the newest tag change, else the newest manifest.
    op.execute(
        "UPDATE repositories SET pushed_at = COALESCE("
        "(SELECT MAX(t.updated_at) FROM tags t WHERE t.repository_id = repositories.id),"
        "(SELECT MAX(m.created_at) FROM manifests m WHERE m.repository_id = repositories.id), 0)"
    )
    op.drop_index("ix_repositories_project", table_name="repositories")
    op.create_index("ix_repositories_project_pushed", "repositories", ["project_id", "pushed_at"])
    op.drop_index("ix_tags_manifest", table_name="tags")
    op.create_index("ix_tags_manifest_name", "tags", ["manifest_id", "name"])
    op.create_index("ix_tags_manifest_updated", "tags", ["manifest_id", "updated_at"])
    if op.get_bind().dialect.name == "postgresql":
        _trigram_indexes()


def _trigram_indexes() -> None:
    """Tag and repository search (`LIKE '%…%'`) through trigram indexes, where the database lets
    us add pg_trgm (a trusted extension: the database owner may). Without it, search reads the one
    repository's tags or the one project's repositories."""
    bind = op.get_bind()
    with bind.begin_nested() as savepoint:
        try:
            bind.exec_driver_sql("CREATE EXTENSION IF NOT EXISTS pg_trgm")
        except sa.exc.DBAPIError:
            savepoint.rollback()
            return
    for table in ("tags", "repositories"):
        op.create_index(
            f"ix_{table}_name_trgm",
            table,
            ["name"],
            postgresql_using="gin",
            postgresql_ops={"name": "gin_trgm_ops"},
        )


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS ix_repositories_name_trgm")
    op.execute("DROP INDEX IF EXISTS ix_tags_name_trgm")
    op.drop_index("ix_tags_manifest_updated", table_name="tags")
    op.drop_index("ix_tags_manifest_name", table_name="tags")
    op.create_index("ix_tags_manifest", "tags", ["manifest_id"])
    op.drop_index("ix_repositories_project_pushed", table_name="repositories")
    op.create_index("ix_repositories_project", "repositories", ["project_id"])
    with op.batch_alter_table("repositories") as batch_op:
        batch_op.drop_column("pushed_at")
